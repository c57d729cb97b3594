"""A model is a folder: model.json (the card) and the weights it names and hashes.

Loading checks the weights' sha256 against the card before torch reads a byte of them,
then reads them as the card's format says: our network's state dict with
``weights_only=True``, or a TorchScript archive (``torchscript``). A model folder from
elsewhere cannot run Python code: a pickle holding code is refused either way.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from assistant.analysis.model.card import CARD_FILE, ModelCard, read_card, sha256_of
from assistant.analysis.model.network import CnnRnn


class ModelIntegrityError(ValueError):
    """The weights are missing or are not the ones the card was written for."""


@dataclass
class LoadedModel:
    """A model ready to run: our network (format "state_dict") or a TorchScript program
    under the contract of assistant/analysis/model/torchscript.py (format "torchscript")."""

    network: CnnRnn | None
    card: ModelCard
    folder: Path
    program: torch.jit.ScriptModule | None = None

    def require_network(self) -> CnnRnn:
        """Our network, for what only it can do (training from it, exporting it);
        ModelIntegrityError for a TorchScript model, whose layers are not ours to read."""
        if self.network is None:
            raise ModelIntegrityError(
                f"{self.card.ref} is a TorchScript model: it can be run, not trained or exported"
            )
        return self.network


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
    """Read a model folder, refusing weights whose sha256 differs from the card's and
    weights that are not what the card's format says (ModelIntegrityError, one line)."""
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
    if card.format == "torchscript":
        from assistant.analysis.model.torchscript import load_torchscript

        return LoadedModel(None, card, folder, program=load_torchscript(weights, device))
    network = CnnRnn(card.network)
    network.load_state_dict(_state_dict(weights, device), strict=True)
    network.to(device).eval()
    return LoadedModel(network, card, folder)


def _state_dict(weights: Path, device: str | torch.device) -> dict[str, torch.Tensor]:
    """The tensors of a plain state dict, read with ``weights_only=True``."""
    if _is_torchscript_archive(weights):  # torch.load would warn, then refuse it
        raise ModelIntegrityError(
            f"{weights.name} is a TorchScript archive, but the card says format state_dict"
        )
    try:
        state = torch.load(weights, map_location=device, weights_only=True)
    except Exception as exc:
        # Bytes that are not a state dict fail in whatever way the unpickler trips on them.
        raise ModelIntegrityError(
            f"{weights.name} is not a plain state dict (weights_only refused it: "
            f"{_first_reason(exc)})"
        ) from exc
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ModelIntegrityError(f"{weights.name} is not a state dict (names → tensors)")
    return state


def _is_torchscript_archive(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("/constants.pkl") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _first_reason(exc: BaseException) -> str:
    """One line of what torch said: for weights_only, the line naming the refused global;
    torch's advice on loading it anyway is left out on purpose."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if "WeightsUnpickler error:" in line:
            return line.split("WeightsUnpickler error:", 1)[1].strip().split(". ")[0]
    return lines[0] if lines else type(exc).__name__
