"""What a model found in one series, as plain validated data: no torch, no DICOM.

The analysis stage makes a `Findings`; the writers turn it into SR, KOS and SEG; the job
record keeps it as versioned JSON (`to_dict` / `from_dict`); the API, the dashboard and
`radassist predict` read it back. A value out of range (a probability of 1.3, a key
slice outside its lesion, an outline of two points) raises `FindingsError` where it is
made, not in a writer three steps later.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from assistant.findings.place import SEVERITIES, Place
from assistant.findings.wording import impression, lesion_description, percent

#: The version of the JSON that `Findings.to_dict` writes. Records without a version are
#: version 0 (before this module): the same fields, with the model as one "name version".
#: Version 2 adds the frame numbers of slices that are frames of a multi-frame object;
#: a record without them (every record before) reads as single-frame slices.
#: Version 3 adds where each lesion lies (`Place`), its ABC/2 volume, thickness and
#: severity, the midline shift and the impression line; earlier records read without.
FINDINGS_VERSION = 3
_READABLE_VERSIONS = (0, 1, 2, FINDINGS_VERSION)


class FindingsError(ValueError):
    """Findings that cannot be right: a value out of range or a record we cannot read."""


def _probability(value: float, what: str) -> float:
    if not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
        raise FindingsError(f"{what} must be a probability in [0, 1], not {value!r}")
    return float(value)


def _frame_number(value: int | None, what: str) -> None:
    """A frame number is None (a single-frame image) or a positive int (1-based)."""
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise FindingsError(f"{what} must be None or an integer >= 1, not {value!r}")


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _non_negative(value: float, what: str) -> float:
    if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
        raise FindingsError(f"{what} must be a finite number >= 0, not {value!r}")
    return float(value)


@dataclass(frozen=True)
class ModelIdentity:
    """Which model made the findings: what every result names."""

    name: str
    version: str
    weights_sha256: str = ""

    def __post_init__(self) -> None:
        if not self.name or not self.version:
            raise FindingsError("a model needs a name and a version")

    def __str__(self) -> str:
        return f"{self.name} {self.version}"

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "weights_sha256": self.weights_sha256}

    @classmethod
    def from_record(cls, value: object) -> ModelIdentity:
        """From `to_dict`'s output, or version 0's "name version" text."""
        if isinstance(value, dict):
            return cls(
                str(value["name"]), str(value["version"]), str(value.get("weights_sha256", ""))
            )
        name, _, version = str(value).rpartition(" ")
        return cls(name or str(value), version or "unknown")


@dataclass(frozen=True)
class SliceProbability:
    """The model's probability that one slice (by SOP Instance UID, and frame number for
    a frame of a multi-frame object) shows the finding."""

    sop_instance_uid: str
    probability: float
    #: 1-based frame of a multi-frame object; None for a single-frame image.
    frame_number: int | None = None

    def __post_init__(self) -> None:
        _probability(self.probability, f"slice {self.sop_instance_uid} probability")
        _frame_number(self.frame_number, f"slice {self.sop_instance_uid} frame number")

    @property
    def identity(self) -> tuple[str, int | None]:
        """(SOP Instance UID, frame number): what names a slice."""
        return self.sop_instance_uid, self.frame_number

    def to_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "sop_instance_uid": self.sop_instance_uid,
            "probability": self.probability,
        }
        if self.frame_number is not None:
            record["frame_number"] = self.frame_number
        return record

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SliceProbability:
        return cls(
            str(data["sop_instance_uid"]),
            float(data["probability"]),
            _optional_int(data.get("frame_number")),
        )


@dataclass(frozen=True)
class Lesion:
    """One connected finding: where in the stack, its outline on the key slice, its size."""

    first_slice: int
    last_slice: int
    key_slice: int
    key_sop_instance_uid: str
    #: Closed polygon on the key slice, (column, row) in the original image's pixels.
    outline: list[tuple[float, float]]
    area_mm2: float
    longest_diameter_mm: float
    volume_ml: float
    mean_hu: float
    probability: float
    #: The label of this lesion in Findings.lesion_labels.
    label: int = 0
    #: The key slice's frame when it is a frame of a multi-frame object (1-based).
    key_frame_number: int | None = None
    #: Where it lies (side, compartment, region, relation); None where not located.
    place: Place | None = None
    #: A·B·C/2 (mL): A the longest axial diameter, B perpendicular to it on the same
    #: slice, C the craniocaudal extent; None where not measured.
    abc2_volume_ml: float | None = None
    #: The thickest point of an extra-axial collection (mm); None for other lesions.
    thickness_mm: float | None = None
    #: "small", "medium" or "large" by the rule in docs/model-card.md; "" where unrated.
    severity: str = ""

    def __post_init__(self) -> None:
        if not 0 <= self.first_slice <= self.key_slice <= self.last_slice:
            raise FindingsError(
                f"a lesion's slices must satisfy 0 <= first <= key <= last, not "
                f"{self.first_slice}, {self.key_slice}, {self.last_slice}"
            )
        if not self.key_sop_instance_uid:
            raise FindingsError("a lesion needs its key slice's SOP Instance UID")
        _frame_number(self.key_frame_number, "a lesion's key frame number")
        if len(self.outline) < 3:
            raise FindingsError(
                f"a lesion's outline needs 3 points or more, not {len(self.outline)}"
            )
        for what in ("area_mm2", "longest_diameter_mm", "volume_ml"):
            _non_negative(getattr(self, what), what)
        if not math.isfinite(self.mean_hu):
            raise FindingsError(f"mean_hu must be finite, not {self.mean_hu!r}")
        _probability(self.probability, "a lesion's probability")
        for what in ("abc2_volume_ml", "thickness_mm"):
            if getattr(self, what) is not None:
                _non_negative(getattr(self, what), what)
        if self.severity and self.severity not in SEVERITIES:
            raise FindingsError(f"severity must be one of {SEVERITIES}, not {self.severity!r}")

    def summary(self) -> str:
        """One line a radiologist reads: what and where, how big, where in the stack, how
        sure.

        Slices are numbered 1..N in order along the slice normal, as the model reads them.
        """
        first, last = self.first_slice + 1, self.last_slice + 1
        where = f"slice {first}" if first == last else f"slices {first}\u2013{last}"
        return f"{lesion_description(self)}, {where}, probability {percent(self.probability)}"

    @property
    def key_identity(self) -> tuple[str, int | None]:
        """(SOP Instance UID, frame number) of the key slice."""
        return self.key_sop_instance_uid, self.key_frame_number

    def to_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "first_slice": self.first_slice,
            "last_slice": self.last_slice,
            "key_slice": self.key_slice,
            "key_sop_instance_uid": self.key_sop_instance_uid,
            "outline": [[x, y] for x, y in self.outline],
            "area_mm2": self.area_mm2,
            "longest_diameter_mm": self.longest_diameter_mm,
            "volume_ml": self.volume_ml,
            "mean_hu": self.mean_hu,
            "probability": self.probability,
            "label": self.label,
        }
        if self.key_frame_number is not None:
            record["key_frame_number"] = self.key_frame_number
        record["place"] = None if self.place is None else self.place.to_dict()
        record["abc2_volume_ml"] = self.abc2_volume_ml
        record["thickness_mm"] = self.thickness_mm
        record["severity"] = self.severity
        return record

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Lesion:
        return cls(
            first_slice=int(data["first_slice"]),
            last_slice=int(data["last_slice"]),
            key_slice=int(data["key_slice"]),
            key_sop_instance_uid=str(data["key_sop_instance_uid"]),
            outline=[(float(x), float(y)) for x, y in data["outline"]],
            area_mm2=float(data["area_mm2"]),
            longest_diameter_mm=float(data["longest_diameter_mm"]),
            volume_ml=float(data["volume_ml"]),
            mean_hu=float(data["mean_hu"]),
            probability=float(data["probability"]),
            label=int(data.get("label", 0)),
            key_frame_number=_optional_int(data.get("key_frame_number")),
            place=None if data.get("place") is None else Place.from_dict(data["place"]),
            abc2_volume_ml=_optional_float(data.get("abc2_volume_ml")),
            thickness_mm=_optional_float(data.get("thickness_mm")),
            severity=str(data.get("severity", "")),
        )


@dataclass(frozen=True)
class Findings:
    """A model's reading of one series: the study verdict, each slice's probability, the
    flagged slices and the lesions, and which model said so."""

    series_instance_uid: str
    study_probability: float
    positive: bool
    threshold: float
    slices: list[SliceProbability]
    flagged_instance_uids: list[str]
    model: ModelIdentity
    lesions: list[Lesion] = field(default_factory=list)
    #: What a reader should know about how the series was read (images left out, and
    #: why), one sentence each; shown with the verdict in every result.
    notes: list[str] = field(default_factory=list)
    #: Per slice, the lesion label of each pixel (0: none) at the mask head's size;
    #: None for a negative study or a model without a mask head. Not in to_dict().
    lesion_labels: np.ndarray | None = field(default=None, repr=False, compare=False)
    #: The slice probability from which a slice counts as flagged (the model card's);
    #: None in records before version 2, where flagged_instance_uids alone says it.
    slice_threshold: float | None = None
    #: The septum pellucidum's displacement from the midsagittal plane (mm, + towards the
    #: patient's left); None where it could not be read (see `anatomy_read`).
    midline_shift_mm: float | None = None
    #: Whether the head's anatomy was read (lesions located, the shift looked for):
    #: records before version 3, and negative studies, were not.
    anatomy_read: bool = False

    def __post_init__(self) -> None:
        _probability(self.study_probability, "the study probability")
        if self.midline_shift_mm is not None and not math.isfinite(self.midline_shift_mm):
            raise FindingsError(f"the midline shift must be finite, not {self.midline_shift_mm}")
        if self.slice_threshold is not None:
            _non_negative(self.slice_threshold, "the slice threshold")
        # Above 1: a model that never calls a study positive (a card can say so).
        _non_negative(self.threshold, "the threshold")
        if self.positive != (self.study_probability >= self.threshold):
            raise FindingsError(
                f"positive={self.positive} disagrees with probability {self.study_probability} "
                f"and threshold {self.threshold}"
            )
        known_uids = {s.sop_instance_uid for s in self.slices}
        known = {s.identity for s in self.slices}
        unknown = [uid for uid in self.flagged_instance_uids if uid not in known_uids]
        unknown += [
            les.key_sop_instance_uid for les in self.lesions if les.key_identity not in known
        ]
        if unknown:
            raise FindingsError(
                f"{len(unknown)} flagged or key slice(s) are not slices of the series"
            )
        if any(les.last_slice >= len(self.slices) for les in self.lesions):
            raise FindingsError(f"a lesion reaches past the series' {len(self.slices)} slices")
        if self.lesion_labels is not None and len(self.lesion_labels) != len(self.slices):
            raise FindingsError("lesion_labels needs one plane per slice")

    def verdict(self) -> str:
        """The verdict against the model's threshold, in one line."""
        verdict = "positive" if self.positive else "negative"
        head = (
            f"{verdict.capitalize()} for hyperdense lesion "
            f"(study probability {percent(self.study_probability)}, threshold {percent(self.threshold)})"
        )
        if self.positive and not self.lesions:
            head += "; no lesion could be outlined"
        return head

    def impression(self) -> str:
        """The impression line (see assistant.findings.wording.impression)."""
        return impression(self)

    def summary(self) -> str:
        """The verdict, the impression (of a positive study: a negative one's says no
        more than the verdict), the reading notes, then one line per lesion."""
        return "\n".join(
            [
                self.verdict(),
                *([self.impression()] if self.positive else []),
                *self.notes,
                *(lesion.summary() for lesion in self.lesions),
            ]
        )

    def flagged_slice_indices(self) -> list[int]:
        """Positions (0-based, along the stack) of the slices the model flagged: by the
        slice threshold where the record has it (a frame is judged alone, not with every
        frame of its object), else by flagged_instance_uids."""
        if not self.positive:
            return []
        if self.slice_threshold is not None:
            return [i for i, s in enumerate(self.slices) if s.probability >= self.slice_threshold]
        flagged = set(self.flagged_instance_uids)
        return [i for i, s in enumerate(self.slices) if s.sop_instance_uid in flagged]

    def to_dict(self) -> dict[str, Any]:
        """The versioned JSON record (what the job keeps and `predict --json` prints)."""
        return {
            "version": FINDINGS_VERSION,
            "series_instance_uid": self.series_instance_uid,
            "study_probability": self.study_probability,
            "positive": self.positive,
            "threshold": self.threshold,
            "slices": [s.to_dict() for s in self.slices],
            "flagged_instance_uids": list(self.flagged_instance_uids),
            "lesions": [lesion.to_dict() for lesion in self.lesions],
            "notes": list(self.notes),
            "slice_threshold": self.slice_threshold,
            "midline_shift_mm": self.midline_shift_mm,
            "anatomy_read": self.anatomy_read,
            "impression": self.impression(),
            # "name version", as every record before version 1 had it; the whole identity
            # (with the weights' sha256) beside it.
            "model": str(self.model),
            "model_identity": self.model.to_dict(),
            "summary": self.summary(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Findings:
        """Read `to_dict`'s record back (versions 0 to 3); FindingsError if it cannot be."""
        version = data.get("version", 0)
        if version not in _READABLE_VERSIONS:
            raise FindingsError(
                f"findings record version {version!r} is newer than this node reads"
            )
        try:
            return cls(
                series_instance_uid=str(data["series_instance_uid"]),
                study_probability=float(data["study_probability"]),
                positive=bool(data["positive"]),
                threshold=float(data["threshold"]),
                slices=[SliceProbability.from_dict(s) for s in data["slices"]],
                flagged_instance_uids=[str(u) for u in data["flagged_instance_uids"]],
                lesions=[Lesion.from_dict(lesion) for lesion in data.get("lesions", [])],
                notes=[str(note) for note in data.get("notes", [])],
                slice_threshold=_optional_float(data.get("slice_threshold")),
                midline_shift_mm=_optional_float(data.get("midline_shift_mm")),
                anatomy_read=bool(data.get("anatomy_read", False)),
                model=ModelIdentity.from_record(data.get("model_identity") or data["model"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            if isinstance(error, FindingsError):
                raise
            raise FindingsError(f"not a findings record: {error!r}") from error


__all__ = [
    "FINDINGS_VERSION",
    "Findings",
    "FindingsError",
    "Lesion",
    "ModelIdentity",
    "Place",
    "SliceProbability",
    "percent",
]
