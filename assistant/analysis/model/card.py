"""The model card: what a model is, what it reads, how it was made and how it did.

Stored as ``model.json`` beside the weights; tools read it, people read it too.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from assistant.analysis.imaging import DEFAULT_WINDOWS, INPUT_MASKS, Window

CARD_FILE = "model.json"
WEIGHTS_FILE = "weights.pt"
#: The two kinds of weights a model folder may hold: our network's state dict (read with
#: ``weights_only=True``), or a TorchScript program made elsewhere under the contract of
#: assistant/analysis/model/torchscript.py.
FORMATS = ("state_dict", "torchscript")
#: What every card must say; a card without one of them is refused, naming it.
REQUIRED_FIELDS = (
    "name",
    "version",
    "classes",
    "image_size",
    "windows",
    "threshold",
    "weights_file",
    "weights_sha256",
)
NOT_FOR_CLINICAL_USE = "Not for clinical use. Research and demonstration only."


@dataclass(frozen=True)
class NetworkSpec:
    """Architecture hyperparameters; saved in the model card, rebuilt from it."""

    in_channels: int = 3
    widths: tuple[int, ...] = (16, 32, 64, 128)
    stem_stride: int = 2
    gru_hidden: int = 64
    mask_head: bool = True
    dropout: float = 0.2

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "widths": list(self.widths)}

    @classmethod
    def from_dict(cls, values: dict[str, object]) -> NetworkSpec:
        data = dict(values)
        data["widths"] = tuple(data["widths"])  # type: ignore[arg-type]
        return cls(**data)  # type: ignore[arg-type]


#: A model's name and version become folder names in the registry: letters, digits and
#: ". _ - +" only, and not starting with a dot.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,31}")


def sha256_of(path: Path) -> str:
    """The sha256 of a file, read in 1 MB blocks (weights are checked against the card's)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ModelCardError(ValueError):
    """model.json is missing a field or has one the code cannot use."""


@dataclass(frozen=True)
class ModelCard:
    name: str
    version: str
    description: str = ""
    classes: tuple[str, str] = ("no finding", "finding")
    network: NetworkSpec = field(default_factory=NetworkSpec)
    #: Slices are resampled to image_size x image_size before the network sees them.
    image_size: int = 256
    #: One input channel per window (CT); empty for data already scaled to [0, 1].
    windows: tuple[Window, ...] = DEFAULT_WINDOWS
    #: What is blanked before the windows: "" nothing, "intracranial" everything outside
    #: the skull's inner table (assistant.analysis.imaging.cavity).
    input_mask: str = ""
    #: Study probability at or above which the study is called positive (chosen on val).
    threshold: float = 0.5
    slice_threshold: float = 0.5
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    weights_file: str = WEIGHTS_FILE
    weights_sha256: str = ""
    clinical_use: bool = False
    intended_use: str = NOT_FOR_CLINICAL_USE
    pytorch_version: str = ""
    #: "state_dict" or "torchscript" (FORMATS).
    format: str = "state_dict"
    #: "name:version" of the model this one was fine-tuned from, or "".
    parent: str = ""

    def __post_init__(self) -> None:
        # Name and version become folder names in the registry.
        if not _NAME.fullmatch(str(self.name)):
            raise ModelCardError(
                f"model name {self.name!r}: up to 64 letters, digits, '.', '_' or '-'"
            )
        if not _VERSION.fullmatch(str(self.version)):
            raise ModelCardError(
                f"model version {self.version!r}: up to 32 letters, digits, '.', '_', '-' or '+'"
            )

    @property
    def ref(self) -> str:
        """ "name:version", as the registry and the command line write a model."""
        return f"{self.name}:{self.version}"

    def to_json(self) -> str:
        data = asdict(self)
        data["network"] = self.network.to_dict()
        data["windows"] = [asdict(w) for w in self.windows]
        data["classes"] = list(self.classes)
        return json.dumps(data, indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError("it is not a JSON object")
            missing = [name for name in REQUIRED_FIELDS if name not in data]
            if missing:
                raise ValueError(f"missing field(s) {', '.join(missing)}")
            if data.get("format", "state_dict") not in FORMATS:
                raise ValueError(f"format must be one of {FORMATS}")
            if data.get("format", "state_dict") == "state_dict" and "network" not in data:
                raise ValueError("missing field network (a state_dict model needs it)")
            data["network"] = NetworkSpec.from_dict(data.get("network") or NetworkSpec().to_dict())
            data["windows"] = tuple(Window(**w) for w in data.get("windows", []))
            data["classes"] = tuple(data["classes"])
            if data.get("input_mask", "") not in INPUT_MASKS:
                raise ValueError(f"input_mask must be one of {INPUT_MASKS}")
            for name in ("name", "version", "weights_file", "weights_sha256"):
                if not isinstance(data[name], str) or not data[name].strip():
                    raise ValueError(f"{name} must be a non-empty text")
            if "/" in data["weights_file"] or data["weights_file"].startswith("."):
                raise ValueError("weights_file must be a file name in the model folder")
            return cls(**data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ModelCardError(f"model card is not valid: {exc}") from exc

    def with_updates(self, **changes: Any) -> ModelCard:
        return replace(self, **changes)


def read_card(folder: Path) -> ModelCard:
    path = folder / CARD_FILE
    if not path.is_file():
        raise ModelCardError(f"{folder} has no {CARD_FILE}: not a model folder")
    return ModelCard.from_json(path.read_text(encoding="utf-8"))
