"""A model trained with `--augment none`, its study head refitted afterwards: the
imbalance ablation's arms (bench/imbalance.py), not a step a user runs."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from assistant.analysis.model.card import ModelCard
from assistant.analysis.model.folder import load_model, save_model
from assistant.training.acgan import AcganConfig, extract_features, refit_study_head
from assistant.training.datasets import parse_spec
from assistant.training.metrics import THRESHOLD_RULES, binary_metrics
from assistant.training.run import Rebalanced, balance_with_acgan, threshold_rule_for
from assistant.training.trainer import score


def rebalance_model(
    source: Path, out: Path, spec: str, method: str, config: AcganConfig
) -> tuple[ModelCard, Rebalanced | None]:
    """A copy of a model trained with `--augment none` whose study head is refitted:
    `acgan` on real plus generated features (what `train --augment acgan` does after the
    same unweighted training), or `refit` on real features with class weights only,
    the control that tells the GAN's share of any gain from the refit's."""
    loaded = load_model(source)
    train_set, val_set = parse_spec(spec, "train"), parse_spec(spec, "val")
    network = loaded.require_network()
    rebalanced = None
    record: Mapping[str, object]
    if method == "acgan":
        rebalanced = balance_with_acgan(network, train_set, val_set, config)
        record = rebalanced.record
    elif method == "refit":
        record = refit_study_head(
            network,
            extract_features(network, train_set),
            extract_features(network, val_set),
            val_set.labels(),
            config,
            class_weights=True,
        )
    else:
        raise ValueError(f"method must be acgan or refit, not {method!r}")
    val_scores, _ = score(network, val_set)
    threshold = THRESHOLD_RULES[threshold_rule_for(spec)](val_set.labels(), val_scores)
    training = {**loaded.card.training, "augment": {"method": method, **record}}
    card = loaded.card.with_updates(
        threshold=round(threshold, 6),
        training=training,
        metrics={"val": binary_metrics(val_set.labels(), val_scores, threshold).to_dict()},
    )
    return save_model(out, network, card), rebalanced
