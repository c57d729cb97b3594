"""The CNN-RNN and model folders (card + weights). torch is imported only here,
in assistant.training and in assistant.inference."""

from assistant.model.card import ModelCard, ModelCardError, read_card
from assistant.model.folder import (
    LoadedModel,
    ModelIntegrityError,
    load_model,
    save_model,
    sha256_of,
)
from assistant.model.network import CnnRnn, NetworkOutput, NetworkSpec, fused_for_inference

__all__ = [
    "CnnRnn",
    "LoadedModel",
    "ModelCard",
    "ModelCardError",
    "ModelIntegrityError",
    "NetworkOutput",
    "NetworkSpec",
    "fused_for_inference",
    "load_model",
    "read_card",
    "save_model",
    "sha256_of",
]
