"""AdrenalMNIST3D (28³) with `radassist train`'s defaults, 3 seeds, beside the published
table. Everything is chosen on val (epoch, threshold); test is scored once.

    .venv/bin/python bench/medmnist.py [--seeds 0 1 2] [--out var/bench-imbalance]

Models go to OUT/AdrenalMNIST3D/weights-seed{S}: the same runs as the `weights` rows of
bench/imbalance.py, so either command reuses what the other finished.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
from imbalance import trained_and_tested

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default=str(ROOT / "var" / "bench-imbalance"))
    parser.add_argument("--data", default=str(DATA))
    args = parser.parse_args()
    spec = f"medmnist:{args.data}"
    out = Path(args.out) / "AdrenalMNIST3D"
    rows = [
        trained_and_tested(spec, out / f"weights-seed{seed}", seed, epochs=None)
        for seed in args.seeds
    ]
    auc = np.array([r["auc"] for r in rows])
    acc = np.array([r["accuracy"] for r in rows])
    spread = (lambda v: v.std(ddof=1)) if len(rows) > 1 else (lambda v: 0.0)
    print("| model | test AUC | test ACC |\n|---|---|---|")
    print(
        f"| radassist CNN-RNN, {len(rows)} seeds (mean ± sd) "
        f"| {auc.mean():.3f} ± {spread(auc):.3f} | {acc.mean():.3f} ± {spread(acc):.3f} |"
    )
    for name, (published_auc, published_acc) in PUBLISHED.items():
        print(f"| {name} (published) | {published_auc:.3f} | {published_acc:.3f} |")
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
    minutes = [r.get("seconds", 0) / 60 for r in rows]
    print(f"\ntraining + test per seed: {', '.join(f'{m:.1f} min' for m in minutes)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
