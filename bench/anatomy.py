"""Anatomy benchmark: how well each lesion's side, compartment, region, volume and the
midline shift are read, on phantoms with known answers and on the real GE head, and
how long locating takes beside the model on a 300-slice series.

    .venv/bin/python bench/anatomy.py [--cache DIR] [--sets development,held-out] [-v]

Two sets of 69 phantom cases each, drawn the same way from different seeds
("development": the rules of assistant/analysis/anatomy were tuned on its first 61
cases, the prototype's; "held-out": looked at once the rules were fixed, except for the
shift, see docs/benchmarks.md): 20 of the generator's own positive cases, 25 with one
intraparenchymal lesion placed where its answer is known (posterior fossa, the
tentorium's V, middle fossa, deep, lobar, on the midline), 16 with a mass effect of
known size (2-12 mm; 15 too in the held-out set) and a large lesion on the side it
pushes from, and 8 subdural or epidural collections placed along the inner table.
Each is rendered at 512 by assistant/training/phantoms.py, written as DICOM by
phantom_dicom.write_case, read back with read_series and resampled to the anatomy's
128 grid; the lesion masks given to `place_lesion` are the phantom's blood mask on that
grid (a 4x4 block counts when half of it is blood), one connected lesion at a time,
scored against `PhantomCase.truth` of the blood it covers. Renders are cached in
--cache (about 320 MB with the 300-slice series; the first run renders for about 8
minutes, later runs take about one).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
from scipy import ndimage

from assistant.analysis.anatomy import PatientGrid, place_lesion, read_head
from assistant.analysis.imaging import SeriesGeometry, read_series
from assistant.analysis.imaging.cavity import intracranial_mask
from assistant.training.phantom_dicom import write_case
from assistant.training.phantoms import PhantomCase, PlacedLesion, make_case, placed

SIZE = 128
#: Bump when what a cached case holds, or how it is rendered, changes.
CACHE_VERSION = 1
GE_HEAD = (
    Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "ct" / "ge_head_tilted"
)
#: The region a placed kind has by construction ("posterior fossa": the phantom's
#: convention decides brainstem or cerebellum, see PhantomCase.truth).
PLACED_REGIONS = {
    "infra": "posterior fossa",
    "vermis": "cerebellum",
    "temporal": "temporal",
    "deep": "basal ganglia/thalamus",
}


@dataclass(frozen=True)
class Spec:
    name: str
    seed: int
    lesions: tuple[PlacedLesion, ...] | None = None
    shift_mm: float = 0.0
    compress: float = 0.0
    max_slices: int = 48
    #: Keep the DICOM files in the cache (for the model to read them).
    keep_dicom: bool = False


def specs(held_out: bool) -> list[Spec]:
    """The cases of a set; the first 61 draw exactly as the prototype's cases.py did."""
    out = [Spec(f"{'T' if held_out else ''}A{seed}", seed) for seed in _seeds(held_out, 0, 20)]
    rng = np.random.default_rng(99 if held_out else 2024)
    for kind, count in (("infra", 8), ("vermis", 3), ("temporal", 3), ("deep", 3)):
        out += [_placed_spec(rng, kind, len(out) + k, held_out) for k in range(count)]
    out += [_placed_spec(rng, "lobar", len(out) + k, held_out) for k in range(6)]
    out += [_placed_spec(rng, "midline", len(out) + k, held_out) for k in range(2)]
    for k in range(16):  # a mass effect, the mass on the side it pushes from
        sizes = [2, 3, 4, 5, 6, 8, 10, 12] + ([15] if held_out else [])
        shift = float(rng.choice([-1, 1]) * rng.choice(sizes))
        side = -np.sign(shift)
        at = (side * rng.uniform(0.35, 0.55), rng.uniform(-0.3, 0.3), rng.uniform(0.45, 0.7))
        compress = float(rng.uniform(0.0, 0.7 if held_out else 0.5))
        lesion = PlacedLesion("intraparenchymal", _floats(at), float(rng.uniform(25, 40)))
        seed = (29000 if held_out else 9000) + k
        out.append(Spec(f"{'T' if held_out else ''}C{k}", seed, (lesion,), shift, compress))
    extra = np.random.default_rng(77 if held_out else 7)  # not in the prototype's sets
    for k in range(8):
        kind = "subdural" if k % 2 == 0 else "epidural"
        angle = extra.uniform(-math.pi, math.pi)
        at = (0.9 * math.cos(angle), 0.9 * math.sin(angle), extra.uniform(0.5, 0.75))
        size = float(extra.uniform(25, 45))
        seed = (33000 if held_out else 13000) + k
        name = f"{'T' if held_out else ''}D-{kind}-{k}"
        out.append(Spec(name, seed, (PlacedLesion(kind, _floats(at), size),)))
    return out


def _seeds(held_out: bool, start: int, stop: int) -> range:
    first = 3000 if held_out else 1000
    return range(first + start, first + stop)


def _floats(values: tuple[float, ...] | np.ndarray) -> tuple[float, float, float]:
    x, y, z = (float(v) for v in values)
    return x, y, z


def _placed_spec(rng: np.random.Generator, kind: str, number: int, held_out: bool) -> Spec:
    if kind == "infra":
        at = (rng.uniform(-0.4, 0.4), rng.uniform(0.25, 0.5), rng.uniform(0.17, 0.26))
    elif kind == "vermis":  # above the petrous ridge, inside the tentorium's V
        at = (rng.uniform(-0.08, 0.08), rng.uniform(0.42, 0.6), rng.uniform(0.33, 0.38))
    elif kind == "temporal":  # middle fossa, in front of the petrous ridge
        at = (
            rng.choice([-1, 1]) * rng.uniform(0.45, 0.6),
            rng.uniform(-0.3, -0.1),
            rng.uniform(0.2, 0.27),
        )
    elif kind == "deep":
        at = (
            rng.choice([-1, 1]) * rng.uniform(0.15, 0.3),
            rng.uniform(-0.1, 0.15),
            rng.uniform(0.38, 0.5),
        )
    elif kind == "midline":
        at = (rng.uniform(-0.02, 0.02), rng.uniform(-0.3, 0.3), rng.uniform(0.6, 0.8))
    else:  # lobar
        a, r = rng.uniform(0, 2 * math.pi), rng.uniform(0.3, 0.6)
        at = (r * math.cos(a), r * math.sin(a), rng.uniform(0.45, 0.85))
    size = float(rng.uniform(10, 30)) if kind != "midline" else float(rng.uniform(15, 25))
    lesion = PlacedLesion(
        "intraparenchymal", _floats(at), size, region=PLACED_REGIONS.get(kind, "")
    )
    seed = (25000 if held_out else 5000) + number
    return Spec(f"{'T' if held_out else ''}B-{kind}-{number}", seed, (lesion,))


# --- rendering, cached ----------------------------------------------------------------


@dataclass
class Rendered:
    """A case as the anatomy reads it, with the truth of each lesion on the grid."""

    hu: np.ndarray  # (n, SIZE, SIZE) float32
    grid: PatientGrid
    labels: np.ndarray  # (n, SIZE, SIZE) int: lesion k on the grid
    truths: list[dict[str, object]] = field(default_factory=list)
    lesion_count: int = 0
    true_shift: float = 0.0
    slices: int = 0


def render(spec: Spec, cache: Path) -> Rendered:
    path = cache / f"{spec.name}-v{CACHE_VERSION}.npz"
    if not path.exists():
        case = make_case(
            spec.seed,
            True,
            max_slices=spec.max_slices,
            lesions=spec.lesions,
            shift_mm=spec.shift_mm,
            compress=spec.compress,
        )
        with tempfile.TemporaryDirectory(prefix="radassist-anatomy-") as scratch:
            folder = dicom_folder(spec, cache) if spec.keep_dicom else Path(scratch)
            write_case(case, folder)
            series = read_series(folder)
            hu = np.stack([series.hu_resized(i, SIZE) for i in range(len(series.slices))])
            grid = PatientGrid.of(series, SIZE)
        if grid is None:
            raise SystemExit(f"{spec.name}: the series has no Image Position (Patient)")
        labels, truths = _grid_lesions(case)
        meta = dict(
            truths=truths,
            lesion_count=len(case.lesions),
            true_shift=case.shift_mm,
            spacing=list(grid.spacing),
            scale=list(grid.scale),
        )
        cache.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial.npz")
        np.savez_compressed(
            partial,
            hu=hu.astype(np.float32),
            labels=labels.astype(np.uint16),
            origins=grid.origins,
            axes=np.stack([grid.along_row, grid.along_column]),
            meta=np.array(json.dumps(meta)),
        )
        partial.replace(path)
    data = np.load(path)
    meta = json.loads(str(data["meta"]))
    sy, sx = meta["spacing"]
    ry, rx = meta["scale"]
    grid = PatientGrid(data["origins"], data["axes"][0], data["axes"][1], (sy, sx), (ry, rx), SIZE)
    return Rendered(
        data["hu"],
        grid,
        data["labels"].astype(int),
        meta["truths"],
        meta["lesion_count"],
        meta["true_shift"],
        len(data["hu"]),
    )


def dicom_folder(spec: Spec, cache: Path) -> Path:
    return cache / f"{spec.name}-v{CACHE_VERSION}-dicom"


def _grid_lesions(case: PhantomCase) -> tuple[np.ndarray, list[dict[str, object]]]:
    """The blood mask on the grid (a block counts when half of it is blood), labelled by
    connected piece, and the truth of the blood under each piece."""
    factor = case.mask.shape[-1] // SIZE
    n = len(case.mask)
    share = case.mask.reshape(n, SIZE, factor, SIZE, factor).mean(axis=(2, 4))
    labels, count = ndimage.label(share >= 0.5, structure=np.ones((3, 3, 3), bool))
    truths = []
    for k in range(1, count + 1):
        piece = (labels == k).repeat(factor, axis=1).repeat(factor, axis=2)
        near = ndimage.binary_dilation(piece, structure=np.ones((1, 5, 5), bool)) & case.mask
        truths.append(asdict(case.truth(near)))
    return labels, truths


# --- scoring --------------------------------------------------------------------------


def cavity_of(hu: np.ndarray, grid: PatientGrid) -> np.ndarray:
    return np.stack([intracranial_mask(h, grid.pixel_mm[1]) for h in hu])


@dataclass(frozen=True)
class CaseScore:
    case: str
    shift: float | None
    true_shift: float
    #: read_head and every place_lesion
    seconds: float


def score_case(spec: Spec, case: Rendered) -> tuple[list[dict[str, object]], CaseScore]:
    """One row per lesion on the grid (reading beside truth), and the case's shift and
    time (read_head and every place_lesion)."""
    cavity = cavity_of(case.hu, case.grid)
    start = time.perf_counter()
    head = read_head(case.hu, cavity, case.grid)
    readings = []
    for k in range(1, len(case.truths) + 1):
        readings.append(place_lesion(head, case.labels == k) if head is not None else None)
    seconds = time.perf_counter() - start
    rows = []
    for truth, reading in zip(case.truths, readings, strict=True):
        row: dict[str, object] = {f"true_{key}": value for key, value in truth.items()}
        row.update(case=spec.name, one_lesion=case.lesion_count == 1)
        if reading is not None:
            row.update(asdict(reading))
        rows.append(row)
    shift = head.shift_mm if head is not None else None
    return rows, CaseScore(spec.name, shift, case.true_shift, seconds)


def summarise(rows: list[dict], cases: list[CaseScore]) -> dict[str, str]:
    """The table's cells for one set, by measure."""
    out: dict[str, str] = {}
    n = len(rows)
    out["cases (lesions on the grid)"] = f"{len(cases)} ({n})"
    right = sum(r.get("side") == r["true_side"] for r in rows)
    out["side correct"] = f"{right}/{n}"
    clear = [r for r in rows if not r["true_ambiguous"]]
    right = sum(r.get("compartment") == r["true_compartment"] for r in clear)
    out["compartment correct (unambiguous lesions)"] = f"{right}/{len(clear)}"
    infra = [r for r in clear if r["true_compartment"] == "infratentorial"]
    called = [r for r in clear if r.get("compartment") == "infratentorial"]
    found = sum(r.get("compartment") == "infratentorial" for r in infra)
    called_right = sum(r["true_compartment"] == "infratentorial" for r in called)
    out["infratentorial found; called (right)"] = (
        f"{found}/{len(infra)}; {len(called)} ({called_right})"
    )
    sure = [r for r in clear if not r.get("approximate", True)]
    right = sum(r.get("compartment") == r["true_compartment"] for r in sure)
    out["compartment correct when not approximate"] = (
        f"{right}/{len(sure)} ({len(clear) - len(sure)} approximate)"
    )
    regional = [r for r in rows if r["true_region"]]
    right = sum(r.get("region") == r["true_region"] for r in regional)
    out["region correct (placed lesions)"] = f"{right}/{len(regional)}"
    out.update(_relations(rows))
    sized = [r for r in rows if r["true_volume_ml"] >= 0.5]
    volume = _relative(sized, "volume_ml")
    out["mask volume vs truth (≥ 0.5 mL): median / p90 abs error"] = (
        f"{_pct(np.median(np.abs(volume)))} / {_pct(np.percentile(np.abs(volume), 90))}"
    )
    abc2 = _relative(sized, "abc2_ml")
    out["ABC/2 vs truth: median signed / median abs / p90 abs"] = (
        f"{np.median(abc2) * 100:+.0f} % / {_pct(np.median(np.abs(abc2)))}"
        f" / {_pct(np.percentile(np.abs(abc2), 90))}"
    )
    out.update(_shifts(cases))
    seconds = np.array([c.seconds for c in cases])
    out["locating, per series (128 grid): median / max"] = (
        f"{np.median(seconds):.2f} / {seconds.max():.2f} s"
    )
    return out


#: The relation and shape a kind of blood has (subarachnoid and intraventricular blood
#: are not scored: either relation is defensible for blood in a sulcus).
_RELATIONS = {
    "intraparenchymal": ("intra-axial", ""),
    "subdural": ("extra-axial", "crescent"),
    "epidural": ("extra-axial", "lens"),
}


def _relations(rows: list[dict]) -> dict[str, str]:
    """Intra- vs extra-axial (one-lesion cases: the truth's kind is the lesion's), the
    crescent/lens shape, and the extra-axial thickness."""
    scored = [r for r in rows if r["one_lesion"] and r["true_kind"] in _RELATIONS]
    right = sum(r.get("relation") == _RELATIONS[str(r["true_kind"])][0] for r in scored)
    extra = [r for r in scored if _RELATIONS[str(r["true_kind"])][0] == "extra-axial"]
    found = [r for r in extra if r.get("relation") == "extra-axial"]
    shaped = sum(r.get("shape") == _RELATIONS[str(r["true_kind"])][1] for r in found)
    out = {
        "relation correct (one-lesion cases); extra-axial found": (
            f"{right}/{len(scored)}; {len(found)}/{len(extra)}"
        ),
        "shape correct (subdural crescent, epidural lens), of those found": f"{shaped}/{len(found)}",
    }
    if found:
        error = np.array([r["thickness_mm"] - r["true_thickness_mm"] for r in found])
        out["extra-axial thickness error: median signed / max abs"] = (
            f"{np.median(error):+.1f} / {np.abs(error).max():.1f} mm"
        )
    return out


def _relative(rows: list[dict], key: str) -> np.ndarray:
    return np.array([(r.get(key, 0.0) - r["true_volume_ml"]) / r["true_volume_ml"] for r in rows])


def _pct(value: float) -> str:
    return f"{value * 100:.0f} %"


def _shifts(cases: list[CaseScore]) -> dict[str, str]:
    out = {}
    for label, group in (
        ("shift, mass effect 2-15 mm", [c for c in cases if c.true_shift]),
        ("shift, none", [c for c in cases if not c.true_shift]),
    ):
        errors = np.abs([c.shift - c.true_shift for c in group if c.shift is not None])
        cell = f"{len(errors)}/{len(group)} measured"
        if len(errors):
            cell += f", |error| mean {errors.mean():.1f} / max {errors.max():.1f} mm"
        out[f"{label}: measured, mean / max abs error"] = cell
    return out


def misses(rows: list[dict], cases: list[CaseScore]) -> list[str]:
    """What the table counts as wrong, case by case."""
    out = []
    for r in rows:
        wrong = [
            f"{key} {r.get(key)} (truth {r[f'true_{key}']})"
            for key in ("side", "compartment", "region")
            if r[f"true_{key}"]
            and r.get(key) != r[f"true_{key}"]
            and not (key == "compartment" and r["true_ambiguous"])
        ]
        relation = _RELATIONS.get(str(r["true_kind"]), ("", ""))
        if r["one_lesion"] and relation[0] and r.get("relation") != relation[0]:
            wrong.append(f"relation {r.get('relation')} (truth {relation[0]} {r['true_kind']})")
        elif r["one_lesion"] and relation[1] and r.get("shape") != relation[1]:
            wrong.append(f"shape {r.get('shape')} (truth {relation[1]}, {r['true_kind']})")
        if wrong:
            out.append(f"{r['case']} (height {r['true_height']:.2f}): " + ", ".join(wrong))
    for c in cases:
        if c.shift is not None and abs(c.shift - c.true_shift) > 1.5:
            out.append(f"{c.case}: shift {c.shift:+.1f} mm (truth {c.true_shift:+.1f})")
    return out


# --- the real head, and the time beside the model --------------------------------------


def real_head(folder: Path) -> str:
    """The GE head's midline shift as the node reads it (128 grid)."""
    if not folder.is_dir():
        return f"{folder.name}: not found (skipped)"
    series = read_series(folder)
    hu = np.stack([series.hu_resized(i, SIZE) for i in range(len(series.slices))])
    grid = PatientGrid.of(series, SIZE)
    if grid is None:
        return f"{folder.name}: no Image Position (Patient)"
    cavity = cavity_of(hu, grid)
    start = time.perf_counter()
    head = read_head(hu, cavity, grid)
    seconds = time.perf_counter() - start
    shift = None if head is None else head.shift_mm
    return (
        f"{folder.name} ({len(series.slices)} slices, clean, gantry tilted): "
        f"midline shift {shift} mm (truth 0: no mass effect), read_head {seconds:.2f} s"
    )


#: A 300-slice thin-slice series from below the skull base to the vertex (seed 674's
#: acquisition: 0.64 mm slices, no tilt) with three lesions and a 6 mm shift.
LONG = Spec(
    "S300",
    674,
    (
        placed("frontal", "right", 35.0),
        PlacedLesion("subdural", (0.3, 0.9, 0.65), 35.0),
        placed("cerebellum", "left", 20.0),
    ),
    shift_mm=6.0,
    compress=0.3,
    max_slices=300,
    keep_dicom=True,
)


def timing(cache: Path, threads: int, runs: int = 3) -> list[str]:
    """Locating (read_head + place_lesion for every lesion) beside the model's whole
    path (predict_series) on the same 300-slice series, medians of `runs`."""
    import torch  # only here: the accuracy part needs no torch

    from assistant.analysis.inference import predict_series
    from assistant.analysis.model.folder import load_model

    torch.set_num_threads(threads)
    case = render(LONG, cache)
    series: SeriesGeometry = read_series(dicom_folder(LONG, cache))
    start = time.perf_counter()
    hu = np.stack([series.hu_resized(i, SIZE) for i in range(len(series.slices))])
    cavity_of(hu, case.grid)
    decode = time.perf_counter() - start
    located = [score_case(LONG, case)[1].seconds for _ in range(runs)]
    bundled = (
        Path(__file__).resolve().parent.parent / "assistant" / "analysis" / "model" / "bundled"
    )
    loaded = load_model(bundled)
    findings = predict_series(loaded, series)  # warm-up
    predicted = []
    for _ in range(runs):
        start = time.perf_counter()
        findings = predict_series(loaded, series)
        predicted.append(time.perf_counter() - start)
    inside = bool(getattr(findings, "anatomy_read", False))
    n, lesions = len(series.slices), len(case.truths)
    return [
        f"| step, same series | seconds (median of {runs}) |",
        "|---|---|",
        f"| locating: read_head + place_lesion x {lesions} (128 grid) | "
        f"{np.median(located):.2f} ({min(located):.2f}-{max(located):.2f}) |",
        f"| predict_series, bundled model, {n} slices 512² → 128 "
        f"({'includes' if inside else 'without'} locating its own lesions) | "
        f"{np.median(predicted):.2f} ({min(predicted):.2f}-{max(predicted):.2f}) |",
        f"| HU + cavity at 128 read apart (the node keeps them from the model's decode) | "
        f"{decode:.2f} |",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "radassist-anatomy-bench"
    )
    parser.add_argument("--sets", default="development,held-out")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-timing", action="store_true", help="skip the 300-slice timing")
    parser.add_argument("-v", "--verbose", action="store_true", help="list every miss")
    args = parser.parse_args(argv)
    columns: dict[str, dict[str, str]] = {}
    notes: list[str] = []
    for name in args.sets.split(","):
        rows, cases = [], []
        for spec in specs(held_out=name == "held-out"):
            r, c = score_case(spec, render(spec, args.cache))
            rows += r
            cases.append(c)
        columns[name] = summarise(rows, cases)
        notes += [f"{name}: {line}" for line in misses(rows, cases)]
    measures = list(next(iter(columns.values())))
    print(f"\nPhantoms, 128 grid, {args.threads} threads\n")
    print("| measure | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for measure in measures:
        print(f"| {measure} | " + " | ".join(c.get(measure, "") for c in columns.values()) + " |")
    if args.verbose or len(notes) <= 20:
        print("\nMisses:\n" + "\n".join(notes or ["none"]))
    print("\nReal series: " + real_head(GE_HEAD))
    if not args.no_timing:
        print("\n" + "\n".join(timing(args.cache, args.threads)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
