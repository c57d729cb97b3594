"""What `radassist train` and `radassist evaluate` do, apart from parsing arguments."""

from __future__ import annotations

import datetime
import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from assistant import __version__
from assistant.imaging import DEFAULT_WINDOWS
from assistant.model import CnnRnn, ModelCard, NetworkSpec, load_model, save_model
from assistant.training.datasets import MedMNIST3D, StudyDataset, parse_spec
from assistant.training.metrics import binary_metrics, dice, jaccard, roc_auc, roc_curve
from assistant.training.trainer import TrainConfig, score, seed_everything, train

LOGGER = logging.getLogger(__name__)

#: Defaults per kind of data; the command line can override epochs and seed only, so a
#: model card's command reproduces the model.
DEFAULT_EPOCHS = {"medmnist": 30, "synthetic": 14, "dicom": 20}
DEFAULT_BATCH = {"medmnist": 32, "synthetic": 2, "dicom": 1}


def _kind(spec: str) -> str:
    return spec.partition(":")[0]


def network_for(dataset: StudyDataset) -> NetworkSpec:
    if isinstance(dataset, MedMNIST3D):  # small single-channel volumes
        return NetworkSpec(
            in_channels=1, widths=(16, 32, 64), stem_stride=1, gru_hidden=32, mask_head=False
        )
    return NetworkSpec()


def train_model(
    spec: str,
    out: Path,
    *,
    epochs: int | None,
    seed: int,
    device: str,
    command: str,
    progress: bool = True,
) -> ModelCard:
    """Train on the train split, choose epoch and threshold on val, write the model folder."""
    torch.set_num_threads(max(1, torch.get_num_threads()))
    kind = _kind(spec)
    train_set, val_set = parse_spec(spec, "train"), parse_spec(spec, "val")
    seed_everything(seed)  # the initial weights depend on the seed, nothing else
    network = CnnRnn(network_for(train_set))
    config = TrainConfig(
        epochs=epochs or DEFAULT_EPOCHS.get(kind, 20),
        batch_size=DEFAULT_BATCH.get(kind, 1),
        seed=seed,
        device=device,
        # A benchmark reports accuracy; a clinical screen weighs sensitivity and specificity.
        threshold_rule="accuracy" if kind == "medmnist" else "youden",
    )
    result = train(network, train_set, val_set, config, out / "training", progress=progress)
    network.to("cpu")
    val_scores, _ = score(network, val_set)
    val_metrics = binary_metrics(val_set.labels(), val_scores, result.threshold)
    card = ModelCard(
        name="radassist-hyperdense" if kind != "medmnist" else "radassist-medmnist",
        version=__version__,
        description=(
            "CNN-RNN: a 2D CNN per slice, a bidirectional GRU across slices; study, slice and mask heads."
        ),
        classes=("no finding", "hyperdense lesion")
        if kind != "medmnist"
        else ("normal", "adrenal mass"),
        network=network.spec,
        image_size=train_set.image_size,
        windows=DEFAULT_WINDOWS if train_set.in_channels == 3 else (),
        threshold=round(result.threshold, 6),
        training={
            "dataset": spec,
            "command": command,
            "seed": seed,
            "epochs": config.epochs,
            "best_epoch": result.best_epoch,
            "train_studies": len(train_set),
            "train_positive_fraction": round(float(train_set.labels().mean()), 4),
            "val_studies": len(val_set),
            "class_balance": config.class_balance,
            "threshold_rule": config.threshold_rule,
            "history": result.history,
            "date": datetime.date.today().isoformat(),
        },
        metrics={"val": val_metrics.to_dict()},
    )
    return save_model(out, network, card)


def evaluate_model(
    model_dir: Path, spec: str, split: str, roc_png: Path | None = None
) -> dict[str, object]:
    """Metrics of a saved model on one split, at the threshold in its card."""
    loaded = load_model(model_dir)
    dataset = parse_spec(spec, split)
    scores, slice_scores = score(loaded.network, dataset)
    labels = dataset.labels()
    metrics = binary_metrics(labels, scores, loaded.card.threshold).to_dict()
    slice_truth, slice_pred = [], []
    dices, jaccards = [], []
    for index in range(len(dataset)):
        study = dataset[index]
        if study.slice_labels is not None and len(slice_scores[index]) == len(study.slice_labels):
            slice_truth.append(study.slice_labels)
            slice_pred.append(slice_scores[index])
        if study.masks is not None and loaded.network.mask_decoder is not None and study.label:
            predicted = _predicted_masks(loaded.network, study.slices, study.masks.shape[-1])
            dices.append(dice(predicted, study.masks))
            jaccards.append(jaccard(predicted, study.masks))
    if slice_truth:
        metrics["slice_auc"] = round(
            roc_auc(np.concatenate(slice_truth) > 0.5, np.concatenate(slice_pred)), 4
        )
    if dices:
        metrics["dice"] = round(float(np.mean(dices)), 4)
        metrics["jaccard"] = round(float(np.mean(jaccards)), 4)
    metrics.update(split=split, dataset=spec, model=f"{loaded.card.name} {loaded.card.version}")
    if roc_png is not None:
        write_roc_png(labels, scores, roc_png, title=f"{spec} {split}: AUC {metrics['auc']}")
    return metrics


@torch.inference_mode()
def _predicted_masks(network: CnnRnn, slices: np.ndarray, size: int) -> np.ndarray:
    out = network(torch.from_numpy(np.ascontiguousarray(slices))[None])
    probs = torch.sigmoid(out.mask_logits[0])[:, None]
    return torch.nn.functional.interpolate(probs, size=size, mode="bilinear")[:, 0].numpy() >= 0.5


def write_roc_png(labels: np.ndarray, scores: np.ndarray, path: Path, title: str = "") -> Path:
    """The ROC curve as a small PNG (PIL only; no plotting library needed)."""
    fpr, tpr, _ = roc_curve(labels, scores)
    size, margin = 400, 40
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    inner = size - 2 * margin
    draw.rectangle([margin, margin, size - margin, size - margin], outline="black")
    draw.line([(margin, size - margin), (size - margin, margin)], fill=(180, 180, 180))
    points = [
        (margin + f * inner, size - margin - t * inner) for f, t in zip(fpr, tpr, strict=True)
    ]
    draw.line(points, fill=(200, 30, 30), width=2)
    draw.text((margin, 12), title, fill="black")
    draw.text((size // 2 - 40, size - 25), "false-positive rate", fill="black")
    draw.text((4, margin - 14), "TPR", fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path
