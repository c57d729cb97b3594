"""AdrenalMNIST3D (28³) with `radassist train`'s defaults, 3 seeds, beside the published
table and a baseline of plain shape measures. Everything is chosen on val (epoch,
threshold, penalty); test is scored once.

    .venv/bin/python bench/medmnist.py [--seeds 0 1 2] [--out var/bench-imbalance]
        [--data ../shared/data/medmnist/adrenalmnist3d_64.npz]

Models go to OUT/AdrenalMNIST3D/weights-seed{S}: the same runs as the `weights` rows of
bench/imbalance.py, so either command reuses what the other finished. Another --data
file gets a folder of its own (OUT/adrenalmnist3d_64/...). The published figures are at
28³; at 64³ (about 22 minutes a seed on 2 cores) they are printed for reference only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
from imbalance import trained_and_tested

from research.shape_baseline import BaselineResult, measure_all, shape_baseline

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "medmnist" / "adrenalmnist3d.npz"
#: Test AUC / ACC at 28³ from MedMNIST v2 (Yang et al., Scientific Data 10:41, 2023).
PUBLISHED = {
    "ResNet-18 (2.5D)": (0.718, 0.772),
    "ResNet-18 (3D)": (0.827, 0.721),
    "ResNet-18 (ACS)": (0.839, 0.754),
    "ResNet-50 (2.5D)": (0.732, 0.763),
    "ResNet-50 (3D)": (0.828, 0.745),
    "ResNet-50 (ACS)": (0.828, 0.758),
    "auto-sklearn": (0.828, 0.802),
    "AutoKeras": (0.804, 0.705),
}


def _shape_baseline(path: Path) -> tuple[int, BaselineResult]:
    """The volumes' edge length, and the shape baseline on their three splits."""
    with np.load(path) as data:
        size = int(data["test_images"].shape[-1])
        splits = [
            (measure_all(data[f"{split}_images"]), data[f"{split}_labels"].ravel())
            for split in ("train", "val", "test")
        ]
    return size, shape_baseline(*splits)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default=str(ROOT / "var" / "bench-imbalance"))
    parser.add_argument("--data", default=str(DATA))
    args = parser.parse_args()
    spec = f"medmnist:{args.data}"
    data = Path(args.data)
    out = Path(args.out) / ("AdrenalMNIST3D" if data.resolve() == DATA.resolve() else data.stem)
    rows = [
        trained_and_tested(spec, out / f"weights-seed{seed}", seed, epochs=None)
        for seed in args.seeds
    ]
    auc = np.array([r["auc"] for r in rows])
    acc = np.array([r["accuracy"] for r in rows])
    spread = (lambda v: v.std(ddof=1)) if len(rows) > 1 else (lambda v: 0.0)
    size, baseline = _shape_baseline(data)
    print(f"{data.name}: {size}³\n")
    print("| model | test AUC | test ACC |\n|---|---|---|")
    print(
        f"| radassist CNN-RNN, {len(rows)} seeds (mean ± sd) "
        f"| {auc.mean():.3f} ± {spread(auc):.3f} | {acc.mean():.3f} ± {spread(acc):.3f} |"
    )
    print(
        f"| logistic regression on {len(baseline.single_measure_auc)} shape measures "
        f"| {baseline.test.auc:.3f} | {baseline.test.accuracy:.3f} |"
    )
    for name, (published_auc, published_acc) in PUBLISHED.items():
        print(f"| {name} (published, 28³) | {published_auc:.3f} | {published_acc:.3f} |")
    print("\nper seed, with 95% bootstrap confidence intervals on the test split:")
    for seed, row in zip(args.seeds, rows, strict=True):
        ci = row.get("ci95")
        if ci is None:  # kept from a run scored before evaluate gave intervals
            print(f"  seed {seed}: AUC {row['auc']:.3f}, ACC {row['accuracy']:.3f} (no interval)")
            continue
        print(
            f"  seed {seed}: AUC {row['auc']:.3f} ({ci['auc'][0]:.3f}-{ci['auc'][1]:.3f}), "
            f"ACC {row['accuracy']:.3f} ({ci['accuracy'][0]:.3f}-{ci['accuracy'][1]:.3f})"
        )
    low, high = baseline.test_ci95["auc"]
    accuracy_low, accuracy_high = baseline.test_ci95["accuracy"]
    print(
        f"  shape baseline: AUC {baseline.test.auc:.3f} ({low:.3f}-{high:.3f}), "
        f"ACC {baseline.test.accuracy:.3f} ({accuracy_low:.3f}-{accuracy_high:.3f}); "
        f"penalty {baseline.penalty:g} chosen on val (AUC {baseline.val_auc:.3f})"
    )
    ranked = sorted(baseline.single_measure_auc.items(), key=lambda kv: -abs(kv[1] - 0.5))
    print(
        "  single measures, test AUC (below 0.5: smaller means positive): "
        + ", ".join(f"{name} {auc:.3f}" for name, auc in ranked[:4])
    )
    minutes = [r.get("seconds", 0) / 60 for r in rows]
    print(f"\ntraining + test per seed: {', '.join(f'{m:.1f} min' for m in minutes)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
