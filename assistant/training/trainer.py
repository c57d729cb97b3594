"""Training: class-weighted losses, early stopping and the threshold chosen on validation,
checkpoints that resume, progress bars.

Every choice (best epoch, decision threshold) is made on the validation split; the
test split is only ever scored by `evaluate` afterwards.
"""

from __future__ import annotations

import copy
import logging
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from assistant.analysis.model.network import CnnRnn, NetworkOutput
from assistant.training.datasets import Study, StudyDataset
from assistant.training.metrics import THRESHOLD_RULES, roc_auc

LOGGER = logging.getLogger(__name__)
CHECKPOINT_FILE = "checkpoint.pt"


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    batch_size: int = 4
    #: Stop after this many epochs without a better validation AUC.
    patience: int = 8
    seed: int = 0
    device: str = "cpu"
    #: "weights": weight the positive class by negatives/positives; "none": plain loss.
    class_balance: str = "weights"
    slice_loss_weight: float = 0.5
    mask_loss_weight: float = 0.5
    #: How the decision threshold is chosen on validation: "youden" (sensitivity +
    #: specificity) or "accuracy".
    threshold_rule: str = "youden"
    #: The dataset SPEC trained on: a checkpoint resumes only the same run.
    dataset: str = ""
    #: What picks the epoch kept: "auc" (validation AUC) or "loss" (validation loss,
    #: study + slice + mask terms: smoother than the AUC of a few dozen studies, and it
    #: counts where the model looks, not only what it says).
    select_by: str = "auc"
    #: Validate and keep a running average of the weights over about this many epochs
    #: of steps (an exponential moving average, Polyak averaging) instead of the last
    #: step's weights; 0: off. On a few hundred small batches the weights of single
    #: steps wander, and with them the validation AUC from one epoch to the next.
    average_epochs: float = 0.0


_Network = TypeVar("_Network", bound=nn.Module)


class WeightAverage(Generic[_Network]):
    """An exponential moving average of a network's weights and float buffers (batch
    norm statistics among them), updated after every optimiser step. Its `model` has
    the network's type."""

    def __init__(self, network: _Network, steps_per_epoch: int, epochs: float) -> None:
        self.model = copy.deepcopy(network).eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        self.decay = 1.0 - 1.0 / max(1.0, steps_per_epoch * epochs)
        self.updates = 0

    @torch.no_grad()
    def update(self, network: nn.Module) -> None:
        self.updates += 1
        # Early on the average would be held back by the random start: warm it up.
        decay = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        mine, theirs = self.model.state_dict(), network.state_dict()
        for key, value in theirs.items():
            if value.is_floating_point():
                mine[key].mul_(decay).add_(value.detach(), alpha=1.0 - decay)
            else:
                mine[key].copy_(value)


class CheckpointMismatch(ValueError):
    """The work folder holds a checkpoint of a different run."""


@dataclass
class TrainResult:
    best_epoch: int
    best_val_auc: float
    threshold: float
    history: list[dict[str, float]] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def collate(studies: Sequence[Study], mask_size: int | None) -> dict[str, torch.Tensor]:
    """Pad a list of studies to one batch; lengths say where each one ends."""
    longest = max(len(s.slices) for s in studies)
    first = studies[0].slices
    slices = torch.zeros((len(studies), longest, *first.shape[1:]), dtype=torch.float32)
    slice_labels = torch.zeros((len(studies), longest))
    has_slice_labels = torch.zeros(len(studies), dtype=torch.bool)
    masks = torch.zeros((len(studies), longest, mask_size, mask_size)) if mask_size else None
    has_masks = torch.zeros(len(studies), dtype=torch.bool)
    for i, study in enumerate(studies):
        n = len(study.slices)
        slices[i, :n] = torch.from_numpy(np.ascontiguousarray(study.slices))
        if study.slice_labels is not None:
            slice_labels[i, :n] = torch.from_numpy(study.slice_labels)
            has_slice_labels[i] = True
        if masks is not None and study.masks is not None:
            full = torch.from_numpy(np.ascontiguousarray(study.masks)).float()
            masks[i, :n] = nn.functional.adaptive_avg_pool2d(full, mask_size)
            has_masks[i] = True
    return {
        "slices": slices,
        "lengths": torch.tensor([len(s.slices) for s in studies]),
        "labels": torch.tensor([float(s.label) for s in studies]),
        "slice_labels": slice_labels,
        "has_slice_labels": has_slice_labels,
        "masks": masks if masks is not None else torch.zeros(0),
        "has_masks": has_masks,
    }


def _losses(
    output: NetworkOutput,
    batch: dict[str, torch.Tensor],
    pos_weight: torch.Tensor,
    config: TrainConfig,
) -> torch.Tensor:
    loss = nn.functional.binary_cross_entropy_with_logits(
        output.study_logit, batch["labels"], pos_weight=pos_weight
    )
    steps = batch["slices"].shape[1]
    valid = torch.arange(steps)[None, :] < batch["lengths"][:, None]
    if batch["has_slice_labels"].any() and config.slice_loss_weight:
        rows = batch["has_slice_labels"][:, None] & valid
        per_slice = nn.functional.binary_cross_entropy_with_logits(
            output.slice_logits, batch["slice_labels"], pos_weight=pos_weight, reduction="none"
        )
        loss = loss + config.slice_loss_weight * per_slice[rows].mean()
    if output.mask_logits is not None and batch["has_masks"].any() and config.mask_loss_weight:
        rows = batch["has_masks"][:, None] & valid
        logits, target = output.mask_logits[rows], batch["masks"][rows]
        bce = nn.functional.binary_cross_entropy_with_logits(
            logits, target, pos_weight=pos_weight * 4
        )
        probs = torch.sigmoid(logits)
        soft_dice = 1 - (2 * (probs * target).sum() + 1) / (probs.sum() + target.sum() + 1)
        loss = loss + config.mask_loss_weight * (bce + soft_dice)
    return loss


@torch.inference_mode()
def validation_loss(
    network: CnnRnn,
    dataset: StudyDataset,
    pos_weight: torch.Tensor,
    config: TrainConfig,
    mask_size: int | None,
) -> float:
    """The training loss on each study of `dataset` (its first view), averaged."""
    network.eval()
    device = next(network.parameters()).device
    pos_weight = pos_weight.to(device)
    total = 0.0
    for index in range(len(dataset)):
        batch = {k: v.to(device) for k, v in collate([dataset.views(index)[0]], mask_size).items()}
        output = network(batch["slices"], batch["lengths"])
        total += _losses(output, batch, pos_weight, config).item()
    return total / max(1, len(dataset))


@torch.inference_mode()
def score(
    network: CnnRnn, dataset: StudyDataset, progress: bool = False
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Study probabilities (mean over each study's views) and per-slice probabilities."""
    network.eval()
    study_scores, slice_scores = [], []
    for index in tqdm(range(len(dataset)), desc="scoring", disable=not progress, leave=False):
        views = dataset.views(index)
        probabilities, per_slice = [], None
        for view in views:
            x = torch.from_numpy(np.ascontiguousarray(view.slices))[None]
            out = network(x)
            probabilities.append(torch.sigmoid(out.study_logit).item())
            if per_slice is None:
                per_slice = torch.sigmoid(out.slice_logits[0]).numpy()
        study_scores.append(float(np.mean(probabilities)))
        slice_scores.append(per_slice if per_slice is not None else np.zeros(0))
    return np.array(study_scores), slice_scores


def _save_checkpoint(path: Path, state: dict[str, object]) -> None:
    temp = path.with_suffix(".tmp")
    torch.save(state, temp)
    temp.replace(path)


def train(
    network: CnnRnn,
    train_set: StudyDataset,
    val_set: StudyDataset,
    config: TrainConfig,
    work_dir: Path,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train `network` in place, keeping the weights of the best validation epoch."""
    seed_everything(config.seed)
    work_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(config.device)
    network.to(device)
    optimizer = torch.optim.AdamW(
        network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    labels = train_set.labels()
    positives = max(1, int(labels.sum()))
    ratio = (len(labels) - positives) / positives if config.class_balance == "weights" else 1.0
    pos_weight = torch.tensor(ratio, dtype=torch.float32)
    mask_size = None
    if network.spec.mask_head:
        mask_size = train_set.image_size // (network.spec.stem_stride * 2)

    if config.select_by not in ("auc", "loss"):
        raise ValueError(f"select_by must be 'auc' or 'loss', not {config.select_by!r}")
    steps_per_epoch = math.ceil(len(train_set) / config.batch_size)
    average = (
        WeightAverage(network, steps_per_epoch, config.average_epochs)
        if config.average_epochs > 0
        else None
    )
    judged = average.model if average else network  # what validation reads and keeps
    start_epoch, best_merit, best_epoch, patience_left = 0, -math.inf, -1, config.patience
    best_state = {k: v.detach().clone() for k, v in network.state_dict().items()}
    history: list[dict[str, float]] = []
    rng = np.random.default_rng(config.seed)
    checkpoint = work_dir / CHECKPOINT_FILE
    if checkpoint.is_file():
        saved = torch.load(checkpoint, map_location=device, weights_only=True)
        now = asdict(config)
        if saved["config"] != now:
            changed = {  # a setting added since the checkpoint was made counts too
                key: (saved["config"].get(key), now.get(key))
                for key in {**saved["config"], **now}
                if now.get(key) != saved["config"].get(key)
            }
            raise CheckpointMismatch(
                f"{checkpoint} is the checkpoint of another run (checkpoint vs now: {changed}); "
                "delete it to start afresh, or train into another folder"
            )
        network.load_state_dict(saved["model"])
        if average is not None:
            average.model.load_state_dict(saved["average"])
            average.updates = saved["average_updates"]
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        start_epoch, best_merit, best_epoch = (
            saved["epoch"] + 1,
            saved["best_merit"],
            saved["best_epoch"],
        )
        best_state, history, patience_left = (
            saved["best_state"],
            saved["history"],
            saved["patience_left"],
        )
        rng.bit_generator.state = saved["rng"]
        torch.set_rng_state(saved["torch_rng"])
        LOGGER.info("resumed from epoch %d (best epoch %d)", start_epoch, best_epoch)

    for epoch in range(start_epoch, config.epochs):
        if patience_left <= 0:
            break
        network.train()
        order = rng.permutation(len(train_set))
        total, steps = 0.0, 0
        bar = tqdm(
            range(0, len(order), config.batch_size),
            desc=f"epoch {epoch + 1}/{config.epochs}",
            disable=not progress,
            leave=False,
        )
        for start in bar:
            studies = [
                train_set.training_view(int(i), rng)
                for i in order[start : start + config.batch_size]
            ]
            batch = collate(studies, mask_size)
            output = network(batch["slices"].to(device), batch["lengths"])
            loss = _losses(
                output, {k: v.to(device) for k, v in batch.items()}, pos_weight.to(device), config
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(network.parameters(), 5.0)
            optimizer.step()
            if average is not None:
                average.update(network)
            total, steps = total + loss.item(), steps + 1
            bar.set_postfix(loss=f"{total / steps:.4f}")
        scheduler.step()
        val_scores, _ = score(judged, val_set)
        val_auc = roc_auc(val_set.labels(), val_scores)
        record = {"epoch": epoch + 1, "train_loss": total / max(1, steps), "val_auc": val_auc}
        merit = val_auc
        if config.select_by == "loss":
            record["val_loss"] = validation_loss(judged, val_set, pos_weight, config, mask_size)
            merit = -record["val_loss"]
        history.append(record)
        if on_epoch:
            on_epoch(record)
        LOGGER.info(
            "epoch %d: %s",
            epoch + 1,
            ", ".join(f"{key} {value:.4f}" for key, value in record.items() if key != "epoch"),
        )
        if merit > best_merit:
            best_merit, best_epoch, patience_left = merit, epoch + 1, config.patience
            best_state = {k: v.detach().clone() for k, v in judged.state_dict().items()}
        else:
            patience_left -= 1
        _save_checkpoint(
            checkpoint,
            {
                "config": asdict(config),
                "model": network.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "epoch": epoch,
                "best_merit": best_merit,
                "best_epoch": best_epoch,
                "best_state": best_state,
                "history": history,
                "patience_left": patience_left,
                "rng": rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(),
                **(
                    {"average": average.model.state_dict(), "average_updates": average.updates}
                    if average is not None
                    else {}
                ),
            },
        )

    network.load_state_dict(best_state)
    val_scores, _ = score(network, val_set)
    threshold = THRESHOLD_RULES[config.threshold_rule](val_set.labels(), val_scores)
    best_auc = next((r["val_auc"] for r in history if r["epoch"] == best_epoch), -math.inf)
    return TrainResult(best_epoch, best_auc, threshold, history)
