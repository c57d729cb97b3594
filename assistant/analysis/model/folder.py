"""A model is a folder: model.json (the card) and the weights it names and hashes.

Loading checks the weights' sha256 against the card before torch reads a byte of them,
and reads them with ``weights_only=True``: a model folder from elsewhere cannot run code.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from assistant.analysis.model.card import CARD_FILE, ModelCard, read_card
from assistant.analysis.model.network import CnnRnn


class ModelIntegrityError(ValueError):
    """The weights are missing or are not the ones the card was written for."""


@dataclass
class LoadedModel:
    network: CnnRnn
    card: ModelCard
    folder: Path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_model(folder: Path, network: CnnRnn, card: ModelCard) -> ModelCard:
    """Write weights and card (weights first, card last, each atomically); return the
    card with the weights' hash and the torch version filled in."""
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / card.weights_file
    temp = weights.with_suffix(".tmp")
    torch.save({k: v.detach().cpu() for k, v in network.state_dict().items()}, temp)
    os.replace(temp, weights)
    card = card.with_updates(
        weights_sha256=sha256_of(weights),
        network=network.spec,
        pytorch_version=torch.__version__.split("+")[0],
    )
    card_temp = folder / f".{CARD_FILE}.tmp"
    card_temp.write_text(card.to_json(), encoding="utf-8")
    os.replace(card_temp, folder / CARD_FILE)
    return card


def load_model(folder: Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Read a model folder, refusing weights whose sha256 differs from the card's."""
    folder = Path(folder)
    card = read_card(folder)
    weights = folder / card.weights_file
    if not weights.is_file():
        raise ModelIntegrityError(f"{weights} is missing")
    actual = sha256_of(weights)
    if actual != card.weights_sha256:
        raise ModelIntegrityError(
            f"{weights.name} has sha256 {actual[:12]}…, the card expects {card.weights_sha256[:12]}…"
        )
    state = torch.load(weights, map_location=device, weights_only=True)
    network = CnnRnn(card.network)
    network.load_state_dict(state, strict=True)
    network.to(device).eval()
    return LoadedModel(network, card, folder)
