"""A Structured Report as indented text a person can read, as dcmtk's dsrdump shows it
but from pydicom, so the dashboard needs no external tool."""

from __future__ import annotations

from pathlib import Path

from pydicom import Dataset, dcmread


def _meaning(item: Dataset, keyword: str) -> str:
    codes = item.get(keyword)
    return str(codes[0].CodeMeaning) if codes else ""


def _value(item: Dataset) -> str:
    kind = item.get("ValueType", "")
    if kind == "CODE":
        return _meaning(item, "ConceptCodeSequence")
    if kind == "TEXT":
        return str(item.get("TextValue", ""))
    if kind == "NUM":
        measured = item.get("MeasuredValueSequence")
        if not measured:
            return "(no value)"
        unit = measured[0].MeasurementUnitsCodeSequence[0].CodeValue
        return f"{measured[0].NumericValue} {unit}"
    if kind == "UIDREF":
        return str(item.get("UID", ""))
    if kind in ("SCOORD", "SCOORD3D"):
        data = item.get("GraphicData", [])
        per_point = 2 if kind == "SCOORD" else 3
        return f"{item.get('GraphicType', '')} with {len(data) // per_point} points"
    if kind in ("IMAGE", "COMPOSITE"):
        refs = item.get("ReferencedSOPSequence")
        return f"instance {refs[0].ReferencedSOPInstanceUID}" if refs else ""
    if kind == "DATETIME":
        return str(item.get("DateTime", ""))
    if kind == "PNAME":
        return "(person name)"
    return ""


def _walk(items: list[Dataset], depth: int, lines: list[str]) -> None:
    for item in items:
        name = _meaning(item, "ConceptNameCodeSequence")
        value = _value(item)
        kind = item.get("ValueType", "")
        text = f"{name}: {value}" if name and value else (name or value or kind)
        lines.append("  " * depth + text)
        if "ContentSequence" in item:
            _walk(list(item.ContentSequence), depth + 1, lines)


def sr_as_text(path: Path) -> str:
    """The report's title and content tree, one item per line, children indented."""
    dataset = dcmread(path)
    lines = [
        f"{_meaning(dataset, 'ConceptNameCodeSequence')}",
        f"Completion: {dataset.get('CompletionFlag', '')}, "
        f"verification: {dataset.get('VerificationFlag', '')}",
        "",
    ]
    _walk(list(dataset.get("ContentSequence", [])), 0, lines)
    return "\n".join(lines) + "\n"
