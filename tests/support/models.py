"""Model folders for registry tests: variants of the bundled model under another name or
version (same weights, a new card), and folders made wrong on purpose."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from assistant.analysis.model.card import CARD_FILE, sha256_of
from assistant.settings import BUNDLED_MODEL_DIR


def model_variant(folder: Path, **card_changes: Any) -> Path:
    """A copy of the bundled model whose card says `card_changes` (name=, version=…)."""
    folder.mkdir(parents=True)
    card = json.loads((BUNDLED_MODEL_DIR / CARD_FILE).read_text())
    shutil.copyfile(BUNDLED_MODEL_DIR / card["weights_file"], folder / card["weights_file"])
    card.update(card_changes)
    (folder / CARD_FILE).write_text(json.dumps(card, indent=2))
    return folder


def rehash(folder: Path) -> None:
    """Make the card's weights_sha256 that of the weights file now there (a folder whose
    weights were swapped by someone who knew to update the card)."""
    card = json.loads((folder / CARD_FILE).read_text())
    card["weights_sha256"] = sha256_of(folder / card["weights_file"])
    (folder / CARD_FILE).write_text(json.dumps(card, indent=2))
