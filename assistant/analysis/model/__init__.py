"""Model folders: the card (``card``, readable without torch), the CNN-RNN
(``network``) and loading and saving weights (``folder``). torch is imported only by
``network`` and ``folder``, and elsewhere only by ``analysis.inference`` and
``assistant.training``; this ``__init__`` imports the card alone.
"""

from assistant.analysis.model.card import ModelCard, ModelCardError, NetworkSpec, read_card

__all__ = ["ModelCard", "ModelCardError", "NetworkSpec", "read_card"]
