"""What `radassist train` and `radassist evaluate` do, apart from parsing arguments."""

from __future__ import annotations

import csv
import datetime
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from assistant import __version__
from assistant.analysis.imaging import DEFAULT_WINDOWS
from assistant.analysis.model.card import ModelCard, NetworkSpec, read_card
from assistant.analysis.model.folder import load_model, save_model
from assistant.analysis.model.network import CnnRnn
from assistant.training.acgan import (
    AcganConfig,
    FeatureSet,
    balancing_features,
    extract_features,
    refit_study_head,
    train_acgan,
)
from assistant.training.datasets import (
    DatasetSpecError,
    DicomFolders,
    MedMNIST3D,
    MixedStudies,
    StudyDataset,
    parse_spec,
)
from assistant.training.metrics import (
    RESAMPLES,
    THRESHOLD_RULES,
    binary_metrics,
    bootstrap_intervals,
    clustered_auc_interval,
    dice,
    jaccard,
    mean_interval,
    roc_auc,
    roc_curve,
)
from assistant.training.trainer import TrainConfig, score, seed_everything, train

LOGGER = logging.getLogger(__name__)

#: Defaults per kind of data; the command line can override epochs and seed only, so a
#: model card's command reproduces the model.
DEFAULT_EPOCHS = {"medmnist": 30, "synthetic": 30, "dicom": 20}
DEFAULT_BATCH = {"medmnist": 32, "synthetic": 2, "dicom": 1}
#: Epochs without a better validation AUC before training stops. Phantoms get more: with
#: fresh cases drawn every epoch their validation AUC wanders while the loss still falls.
DEFAULT_PATIENCE = {"synthetic": 12}
#: What picks the epoch kept (see TrainConfig.select_by): phantoms have masks and slice
#: labels, and their 15 % validation split is small, so the whole loss says more there.
DEFAULT_SELECT_BY = {"synthetic": "loss"}
#: Phantoms in batches of two: at 2e-3 a run could sit at chance for its first 15 epochs
#: (the lesion never found); at 7e-4 it learns from the first epochs.
DEFAULT_LEARNING_RATE = {"synthetic": 7e-4}
#: A fine-tune's learning rate against training from scratch (docs/research.md: at the
#: full rate, fine-tuning on readers' corrections forgot what the model knew; at 0.3 it
#: learnt the missed class, faint blood, and kept the usual mix's AUC).
FINE_TUNE_LEARNING_RATE_FACTOR = 0.3
#: Validate and keep a running average of the weights over about an epoch (see
#: TrainConfig.average_epochs): the phantoms' validation AUC wandered by 0.15 from one
#: epoch to the next with the raw weights.
DEFAULT_AVERAGE_EPOCHS = {"synthetic": 1.0}
#: How the rarer class is given its weight: "weights" (the loss weights it by the class
#: ratio), "none", or "acgan" (trained unweighted, then the study head is refitted on
#: real plus GAN-generated minority features; see assistant.training.acgan).
AUGMENTS = ("weights", "none", "acgan")


def _kind(spec: str) -> str:
    return spec.partition(":")[0]


#: MedMNIST volumes up to this size (28³) go through a stride-1 stem; larger ones (64³)
#: through a stride-2 one.
MEDMNIST_FULL_SIZE_STEM = 32


def network_for(dataset: StudyDataset) -> NetworkSpec:
    if isinstance(dataset, MedMNIST3D):  # small volumes: the shape and its distance map
        return NetworkSpec(
            in_channels=dataset.in_channels,
            widths=(16, 32, 64),
            # 28² slices are read at full size; 64² ones halved by the stem, which keeps
            # a 64³ training on two CPU cores near 20 minutes instead of over an hour.
            stem_stride=1 if dataset.image_size <= MEDMNIST_FULL_SIZE_STEM else 2,
            gru_hidden=32,
            mask_head=False,
        )
    return NetworkSpec()


@dataclass(frozen=True)
class Recipe:
    """How a model is trained (`radassist train`'s options), by `train_model` and by each
    fold of a cross-validation alike: from scratch, or from `init` (a fine-tune).

    With `replay` (a second dataset SPEC, read alike), its train and val splits join the
    dataset's: fine-tuning on a site's reviewed series then keeps seeing what the model
    learnt from, instead of forgetting it (docs/research.md); a fold's test patients stay
    the site's own. A fine-tune's learning rate is 0.3 of training from scratch's unless
    `learning_rate` says otherwise (a full-rate fine-tune forgot what the model knew).
    """

    epochs: int | None = None
    seed: int = 0
    device: str = "cpu"
    init: Path | None = None
    augment: str = "weights"
    acgan_steps: int | None = None
    threshold_rule: str = ""
    learning_rate: float | None = None
    replay: str | None = None

    def config(self, spec: str, run_id: str = "") -> TrainConfig:
        """The training settings for this kind of data; `run_id` names a fold, so a
        fold's checkpoint never resumes another fold's run."""
        return train_config(
            spec,
            epochs=self.epochs,
            seed=self.seed,
            device=self.device,
            augment=self.augment,
            run_id=run_id,
            threshold_rule=self.threshold_rule,
            learning_rate=self.learning_rate,
            fine_tune=self.init is not None,
        )


def train_model(
    spec: str,
    out: Path,
    recipe: Recipe,
    *,
    command: str,
    progress: bool = True,
    name: str | None = None,
    version: str | None = None,
) -> ModelCard:
    """Train on the train split as `recipe` says, choose epoch and threshold on val, and
    write the model folder. With `recipe.init` the card names that model as its parent.
    `name` and `version` set the card's (the registry takes each pair once).
    """
    init, replay, augment, seed = recipe.init, recipe.replay, recipe.augment, recipe.seed
    if augment not in AUGMENTS:
        raise ValueError(f"augment must be one of {AUGMENTS}, not {augment!r}")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    kind = _kind(spec)
    train_set, val_set = parse_spec(spec, "train"), parse_spec(spec, "val")
    seed_everything(seed)  # the initial weights depend on the seed, nothing else
    if init is None:
        network, parent = CnnRnn(network_for(train_set)), None
    else:
        if isinstance(train_set, DicomFolders):  # a site's series: read as the model reads
            reads = read_card(init)
            for dataset in (train_set, val_set):
                dataset.image_size, dataset.input_mask = reads.image_size, reads.input_mask
        network, parent = _starting_point(init, train_set)
    if replay is not None:
        train_set = MixedStudies([train_set, parse_spec(replay, "train")])
        val_set = MixedStudies([val_set, parse_spec(replay, "val")])
    config = recipe.config(spec)
    result = train(network, train_set, val_set, config, out / "training", progress=progress)
    network.to("cpu")
    threshold = result.threshold
    augment_record: dict[str, object] = {"method": augment}
    if augment == "acgan":
        settings = AcganConfig(steps=recipe.acgan_steps or AcganConfig.steps, seed=seed)
        augment_record.update(balance_with_acgan(network, train_set, val_set, settings).record)
    val_scores, _ = score(network, val_set)
    if augment == "acgan":  # the refitted head needs its own threshold
        threshold = THRESHOLD_RULES[config.threshold_rule](val_set.labels(), val_scores)
    val_metrics = binary_metrics(val_set.labels(), val_scores, threshold)
    card = ModelCard(
        name=name or ("radassist-hyperdense" if kind != "medmnist" else "radassist-medmnist"),
        version=version or _default_version(init),
        parent=read_card(init).ref if init is not None else "",
        description=(
            "CNN-RNN: a 2D CNN per slice, a bidirectional GRU across slices; study, slice and mask heads."
        ),
        classes=("no finding", "hyperdense lesion")
        if kind != "medmnist"
        else ("normal", "adrenal mass"),
        network=network.spec,
        image_size=train_set.image_size,
        input_mask=train_set.input_mask,
        windows=DEFAULT_WINDOWS if train_set.in_channels == 3 else (),
        threshold=round(threshold, 6),
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
            "selected_by": f"validation {config.select_by}",
            "learning_rate": config.learning_rate,
            "weights_averaged_over_epochs": config.average_epochs,
            "augment": augment_record,
            "threshold_rule": config.threshold_rule,
            **({"init": parent} if parent is not None else {}),
            **({"replay": replay} if replay is not None else {}),
            "history": result.history,
            "date": datetime.date.today().isoformat(),
        },
        metrics={"val": val_metrics.to_dict()},
    )
    return save_model(out, network, card)


def _default_version(init: Path | None) -> str:
    """This package's version; for a fine-tuned model its parent's and the minute it was
    made ("0.1.0-ft202612051032"), so it never takes its parent's place in the registry."""
    if init is None:
        return __version__
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d%H%M")
    return f"{read_card(init).version}-ft{stamp}"[:32]


def _starting_point(init: Path, train_set: StudyDataset) -> tuple[CnnRnn, dict[str, str]]:
    """The network of the model in `init`, checked to read what `train_set` holds, and
    what the new card records of it."""
    loaded = load_model(init)  # its weights' sha256 checked against its card
    card = loaded.card
    windows = DEFAULT_WINDOWS if train_set.in_channels == 3 else ()
    mismatches = [
        f"{what}: {theirs} in the model, {ours} in the data"
        for what, theirs, ours in (
            ("input channels", card.network.in_channels, train_set.in_channels),
            ("image size", card.image_size, train_set.image_size),
            ("windows", [w.name for w in card.windows], [w.name for w in windows]),
            ("input mask", card.input_mask or "none", train_set.input_mask or "none"),
        )
        if theirs != ours
    ]
    if mismatches:
        raise DatasetSpecError(f"cannot start from {init}: " + "; ".join(mismatches))
    return loaded.require_network().train(), {
        "model": f"{card.name} {card.version}",
        "weights_sha256": card.weights_sha256,
    }


@dataclass
class Rebalanced:
    """What the ACGAN step did (for the model card) and the features it worked on."""

    record: dict[str, object]
    real: FeatureSet
    generated: tuple[np.ndarray, np.ndarray]


def balance_with_acgan(
    network: CnnRnn, train_set: StudyDataset, val_set: StudyDataset, config: AcganConfig
) -> Rebalanced:
    """Refit the study head of a trained network on real plus generated minority-class
    features."""
    train_features = extract_features(network, train_set)
    val_features = extract_features(network, val_set)
    acgan = train_acgan(train_features.features, train_features.labels, config)
    made = balancing_features(acgan, train_features.labels, seed=config.seed)
    refit = refit_study_head(
        network, train_features, val_features, val_set.labels(), config, extra=made
    )
    LOGGER.info("acgan: %d generated features; %s", len(made[0]), refit)
    record = {
        "settings": config.to_dict(),
        "real_features": len(train_features.labels),
        "generated_features": len(made[0]),
        "minority_mmd_first_last": [
            acgan.history[0]["minority_mmd"],
            acgan.history[-1]["minority_mmd"],
        ],
        **refit,
    }
    return Rebalanced(record, train_features, made)


def train_config(
    spec: str,
    *,
    epochs: int | None,
    seed: int,
    device: str,
    augment: str,
    run_id: str | None = None,
    threshold_rule: str = "",
    learning_rate: float | None = None,
    fine_tune: bool = False,
) -> TrainConfig:
    """The training settings `radassist train` uses for this kind of data (cross-validation
    uses them per fold: `run_id` then names the fold, so a fold's checkpoint never resumes
    another's run). A fine-tune starts from learnt weights and takes shorter steps."""
    kind = _kind(spec)
    if learning_rate is None:
        learning_rate = DEFAULT_LEARNING_RATE.get(kind, TrainConfig.learning_rate)
        learning_rate *= FINE_TUNE_LEARNING_RATE_FACTOR if fine_tune else 1.0
    return TrainConfig(
        epochs=epochs or DEFAULT_EPOCHS.get(kind, 20),
        batch_size=DEFAULT_BATCH.get(kind, 1),
        patience=DEFAULT_PATIENCE.get(kind, TrainConfig.patience),
        dataset=run_id or spec,
        select_by=DEFAULT_SELECT_BY.get(kind, "auc"),
        learning_rate=learning_rate,
        average_epochs=DEFAULT_AVERAGE_EPOCHS.get(kind, TrainConfig.average_epochs),
        seed=seed,
        device=device,
        threshold_rule=threshold_rule or threshold_rule_for(spec),
        class_balance="weights" if augment == "weights" else "none",
    )


def threshold_rule_for(spec: str) -> str:
    # A benchmark reports accuracy; a clinical screen weighs sensitivity and specificity.
    return "accuracy" if _kind(spec) == "medmnist" else "youden"


def evaluate_model(
    model_dir: Path,
    spec: str,
    split: str,
    roc_png: Path | None = None,
    resamples: int = RESAMPLES,
    predictions_csv: Path | None = None,
) -> dict[str, object]:
    """Metrics of a saved model on one split, at the threshold in its card, each with its
    95 % bootstrap confidence interval under "ci95" (none when resamples is 0): a test split
    of a few hundred studies cannot tell 0.88 from 0.90, and the reader should see that.
    `predictions_csv` gets one row per study, for error analysis or other statistics."""
    loaded = load_model(model_dir)
    network = loaded.require_network()  # a TorchScript model is evaluated by the node only
    dataset = parse_spec(spec, split)
    scores, slice_scores = score(network, dataset)
    labels = dataset.labels()
    threshold = loaded.card.threshold
    metrics: dict[str, object] = dict(binary_metrics(labels, scores, threshold).to_dict())
    intervals: dict[str, tuple[float, float]] = (
        bootstrap_intervals(labels, scores, threshold, resamples) if resamples else {}
    )
    slice_truth, slice_pred = [], []
    dices, jaccards = [], []
    keys = []
    for index in range(len(dataset)):
        study = dataset[index]
        keys.append(study.key)
        if study.slice_labels is not None and len(slice_scores[index]) == len(study.slice_labels):
            slice_truth.append(study.slice_labels)
            slice_pred.append(slice_scores[index])
        if study.masks is not None and network.mask_decoder is not None and study.label:
            predicted = _predicted_masks(network, study.slices, study.masks.shape[-1])
            dices.append(dice(predicted, study.masks))
            jaccards.append(jaccard(predicted, study.masks))
    if slice_truth:
        slice_labels = [truth > 0.5 for truth in slice_truth]
        metrics["slice_auc"] = round(
            roc_auc(np.concatenate(slice_labels), np.concatenate(slice_pred)), 4
        )
        if resamples:
            intervals["slice_auc"] = clustered_auc_interval(slice_labels, slice_pred, resamples)
    if dices:
        metrics["dice"] = round(float(np.mean(dices)), 4)
        metrics["jaccard"] = round(float(np.mean(jaccards)), 4)
        if resamples:
            intervals["dice"] = mean_interval(np.array(dices), resamples)
            intervals["jaccard"] = mean_interval(np.array(jaccards), resamples)
    if intervals:
        metrics["ci95"] = {name: list(bounds) for name, bounds in intervals.items()}
        metrics["bootstrap_resamples"] = resamples
    metrics.update(split=split, dataset=spec, model=f"{loaded.card.name} {loaded.card.version}")
    if predictions_csv is not None:
        write_predictions_csv(predictions_csv, keys, labels, scores, threshold)
    if roc_png is not None:
        write_roc_png(labels, scores, roc_png, title=f"{spec} {split}: AUC {metrics['auc']}")
    return metrics


@torch.inference_mode()
def _predicted_masks(network: CnnRnn, slices: np.ndarray, size: int) -> np.ndarray:
    out = network(torch.from_numpy(np.ascontiguousarray(slices))[None])
    probs = torch.sigmoid(out.mask_logits[0])[:, None]
    return torch.nn.functional.interpolate(probs, size=size, mode="bilinear")[:, 0].numpy() >= 0.5


def write_predictions_csv(
    path: Path, keys: list[str], labels: np.ndarray, scores: np.ndarray, threshold: float
) -> Path:
    """One row per study: its key (series folder, phantom seed or volume index), the true
    label, the study probability and the call at the card's threshold."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["study", "label", "probability", "predicted"])
        for key, label, probability in zip(keys, labels, scores, strict=True):
            writer.writerow([key, int(label), f"{probability:.6f}", int(probability >= threshold)])
    return path


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
