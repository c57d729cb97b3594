"""Adding a model folder to the registry: check it, copy it in, record it.

The checks, in order, each refusing with a one-line reason: the card is complete and
valid; the weights file is there and its sha256 is the card's; the weights load as what
the card says they are (a plain state dict read with ``weights_only=True``, or a
TorchScript archive: never pickled code); and the model runs on a small synthetic series
and gives probabilities in [0, 1]. Only then are the card and weights copied, read-only,
under ``<data>/models/<name>/<version>/``.
"""

from __future__ import annotations

import logging
import math
import tempfile
from pathlib import Path

from assistant.analysis.model.card import CARD_FILE, ModelCard, read_card, sha256_of
from assistant.db import ModelState
from assistant.registry import ModelEntry, Registry

LOGGER = logging.getLogger(__name__)

#: Slices of the synthetic series a model must read before it is added.
TEST_RUN_SLICES = 16


class ModelCheckFailed(ValueError):
    """The model folder cannot be added: the message says why, in one line."""


def check_model_folder(folder: Path, *, test_run: bool = True) -> ModelCard:
    """The folder's card, once the checks above pass (the test run only when asked: it
    loads torch, which the receiving side never does)."""
    card = read_card(folder)  # ModelCardError names a missing or bad field
    weights = folder / card.weights_file
    if not weights.is_file():
        raise ModelCheckFailed(f"{weights} is missing (the card names it)")
    actual = sha256_of(weights)
    if actual != card.weights_sha256:
        raise ModelCheckFailed(
            f"{card.weights_file} has sha256 {actual[:12]}…, the card expects "
            f"{card.weights_sha256[:12]}…: the file is not the one the card was written for"
        )
    if test_run:
        _test_run(folder, card)
    return card


def _test_run(folder: Path, card: ModelCard) -> None:
    from assistant.analysis.imaging.synthetic import write_demo_series
    from assistant.analysis.inference import predict_series
    from assistant.analysis.model.folder import load_model

    loaded = load_model(folder)  # ModelIntegrityError: not what the card says
    with tempfile.TemporaryDirectory(prefix="radassist-model-check-") as scratch:
        write_demo_series(Path(scratch), count=TEST_RUN_SLICES)
        try:
            findings = predict_series(loaded, Path(scratch))
        except Exception as exc:
            raise ModelCheckFailed(
                f"{card.ref} fails on a {TEST_RUN_SLICES}-slice synthetic series: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
    values = [findings.study_probability, *(s.probability for s in findings.slices)]
    if not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in values):
        raise ModelCheckFailed(f"{card.ref} gives probabilities outside [0, 1] on a test series")
    if len(findings.slices) != TEST_RUN_SLICES:
        raise ModelCheckFailed(
            f"{card.ref} gives {len(findings.slices)} slice probabilities for "
            f"{TEST_RUN_SLICES} slices"
        )


def add_model(
    registry: Registry,
    folder: Path,
    *,
    state: ModelState,
    by: str,
    test_run: bool = True,
) -> ModelEntry:
    """Check `folder` and add it to the registry in `state` (RegistryError for a name and
    version already there; ModelCardError, ModelCheckFailed or ModelIntegrityError for a
    folder that fails a check)."""
    card = check_model_folder(folder, test_run=test_run)
    entry = registry.add(
        folder,
        (folder / CARD_FILE).read_text(encoding="utf-8"),
        (CARD_FILE, card.weights_file),
        name=card.name,
        version=card.version,
        format=card.format,
        weights_sha256=card.weights_sha256,
        state=state,
        by=by,
        parent=card.parent,
    )
    LOGGER.info("model %s added to the registry as %s by %s", card.ref, state.value, by)
    return entry
