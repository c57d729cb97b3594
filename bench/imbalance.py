"""Class-imbalance ablation: no balancing vs class weights vs ACGAN feature synthesis.

    .venv/bin/python bench/imbalance.py [--out var/bench-imbalance] [--seeds 0 1 2]
        [--only medmnist|synthetic] [--synthetic-epochs 8]

Two datasets: AdrenalMNIST3D (22 % positive; trained with the defaults of
`radassist train`) and a deliberately imbalanced synthetic set (5 % positive in every
split). Per seed, four models, every choice (epoch, head refit epoch, threshold) made on
the validation split, then scored once on test:

    none     radassist train --augment none
    weights  radassist train --augment weights (the default: class-weighted loss)
    acgan    the `none` model's study head refitted on real plus ACGAN-generated
             minority features: what `train --augment acgan` does after the same
             unweighted training (which is deterministic on CPU for a given seed)
    refit    the `none` model's study head refitted on real features with class
             weights only: the control that separates the GAN's share of any gain

Prints a Markdown table (mean ± sd over seeds) and writes results.json, the table and a
PCA picture of real and generated features (seed 0) under --out. Finished runs are kept
and skipped when the command is run again.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch
from PIL import Image, ImageDraw

from assistant.training.acgan import AcganConfig
from assistant.training.run import Rebalanced, Recipe, evaluate_model, train_model
from research.rebalance import rebalance_model

ROOT = Path(__file__).resolve().parent.parent
MEDMNIST = ROOT.parent / "shared" / "data" / "medmnist" / "adrenalmnist3d.npz"
SYNTHETIC = "synthetic:1200,positive=0.05,size=64,slices=12"
METHODS = ("none", "weights", "acgan", "refit")
REPORTED = ("auc", "balanced_accuracy", "sensitivity", "specificity", "accuracy")


def trained_and_tested(
    spec: str, model_dir: Path, seed: int, epochs: int | None, method: str = "weights"
) -> dict:
    """Test metrics of one model trained with `radassist train --augment METHOD`; kept
    in MODEL_DIR/test.json, so a finished run is never trained again."""
    done = model_dir / "test.json"
    if done.is_file():
        return json.loads(done.read_text())
    started = time.monotonic()
    command = f"radassist train --dataset {spec} --out {model_dir} --seed {seed} --augment {method}"
    train_model(
        spec,
        model_dir,
        Recipe(epochs=epochs, seed=seed, augment=method),
        command=command + (f" --epochs {epochs}" if epochs else ""),
        progress=False,
    )
    return _tested(model_dir, spec, started)


def _tested(model_dir: Path, spec: str, started: float) -> dict:
    metrics = evaluate_model(model_dir, spec, "test")
    metrics["seconds"] = round(time.monotonic() - started, 1)
    (model_dir / "test.json").write_text(json.dumps(metrics, indent=1))
    return metrics


def run_one(name: str, spec: str, seed: int, epochs: int | None, out: Path) -> None:
    """Train and test the four methods for one dataset and seed (finished ones are kept)."""
    for method in METHODS:
        model_dir = out / name / f"{method}-seed{seed}"
        if (model_dir / "test.json").is_file():
            continue
        if method in ("none", "weights"):
            metrics = trained_and_tested(spec, model_dir, seed, epochs, method)
        else:
            started = time.monotonic()
            _, rebalanced = rebalance_model(
                out / name / f"none-seed{seed}", model_dir, spec, method, AcganConfig(seed=seed)
            )
            if rebalanced is not None and seed == 0:
                feature_pca_png(rebalanced, out / f"{name}-features-pca.png", name)
            metrics = _tested(model_dir, spec, started)
        print(f"{name} seed {seed} {method}: test AUC {metrics['auc']}", flush=True)


def feature_pca_png(rebalanced: Rebalanced, path: Path, title: str) -> Path:
    """Real features of both classes and the generated minority, on the first two
    principal components of the real ones."""
    real, labels = rebalanced.real.features, rebalanced.real.labels
    made = rebalanced.generated[0]
    mean = real.mean(axis=0)
    _, _, components = np.linalg.svd(real - mean, full_matrices=False)
    project = lambda rows: (rows - mean) @ components[:2].T  # noqa: E731
    groups = [
        ("real majority", project(real[labels == 0]), (120, 120, 200)),
        ("generated minority", project(made), (240, 160, 40)),
        ("real minority", project(real[labels == 1]), (200, 30, 30)),
    ]
    every = np.concatenate([points for _, points, _ in groups])
    low, high = np.percentile(every, 0.5, axis=0), np.percentile(every, 99.5, axis=0)
    size, margin = 520, 40
    image = Image.new("RGB", (size, size + 40), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle([margin, margin, size - margin, size - margin], outline="black")
    for _, points, colour in groups:
        scaled = (points - low) / np.maximum(high - low, 1e-9)
        for x, y in np.clip(scaled, 0, 1):
            px, py = margin + x * (size - 2 * margin), size - margin - y * (size - 2 * margin)
            draw.ellipse([px - 2, py - 2, px + 2, py + 2], fill=colour)
    draw.text((margin, 12), f"{title}: study features, PCA of the real ones", fill="black")
    for row, (label, points, colour) in enumerate(groups):
        y = size + 4 + row * 12
        draw.rectangle([margin, y, margin + 8, y + 8], fill=colour)
        draw.text((margin + 14, y - 2), f"{label} ({len(points)})", fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def folder_of(name: str) -> str:
    return name.replace(" ", "-").replace("%", "pct")


def collect(out: Path, datasets: dict, seeds: list[int]) -> dict[str, dict[int, dict[str, dict]]]:
    """Test metrics of every finished run, by dataset, seed and method."""
    results: dict[str, dict[int, dict[str, dict]]] = {}
    for name in datasets:
        for seed in seeds:
            for method in METHODS:
                done = out / folder_of(name) / f"{method}-seed{seed}" / "test.json"
                if done.is_file():
                    by_seed = results.setdefault(name, {}).setdefault(seed, {})
                    by_seed[method] = json.loads(done.read_text())
    return results


def table(results: dict[str, dict[int, dict[str, dict]]]) -> str:
    lines = [
        "| data | method | test AUC | balanced acc. | minority recall | majority acc. "
        "| accuracy | seeds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, by_seed in results.items():
        for method in METHODS:
            rows = [by_seed[seed][method] for seed in sorted(by_seed) if method in by_seed[seed]]
            if not rows:
                continue
            cells = []
            for key in REPORTED:
                values = np.array([row[key] for row in rows], dtype=float)
                cells.append(
                    f"{values.mean():.3f} ± {values.std(ddof=1) if len(values) > 1 else 0:.3f}"
                )
            lines.append(f"| {name} | {method} | {' | '.join(cells)} | {len(rows)} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "var" / "bench-imbalance"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", choices=["medmnist", "synthetic"])
    parser.add_argument("--report", action="store_true", help="only print what is finished")
    parser.add_argument("--medmnist", default=str(MEDMNIST))
    parser.add_argument("--synthetic", default=SYNTHETIC)
    parser.add_argument("--synthetic-epochs", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    datasets = {
        "AdrenalMNIST3D": (f"medmnist:{args.medmnist}", None),
        "synthetic 5 %": (args.synthetic, args.synthetic_epochs),
    }
    for name, (spec, epochs) in datasets.items():
        if args.only and (args.only == "medmnist") != ("MNIST" in name):
            continue
        for seed in [] if args.report else args.seeds:
            run_one(folder_of(name), spec, seed, epochs, out)
    results = collect(out, datasets, args.seeds)  # what is finished, from every run so far
    text = table(results)
    print(text)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "table.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
