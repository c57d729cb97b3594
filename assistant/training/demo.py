"""The demo's head CT: a phantom from our own generator with a clear hyperdense lesion,
written as a DICOM series (`radassist demo`, the dashboard's tests)."""

from __future__ import annotations

from pathlib import Path

from assistant.training.phantom_dicom import write_case
from assistant.training.phantoms import make_case

#: The demo's head CT: a phantom from our own generator with a clear hyperdense lesion.
DEMO_HEAD_SEED = 19


def write_demo_head(folder: Path, seed: int = DEMO_HEAD_SEED) -> list[Path]:
    """Write a synthetic head CT with a lesion (the training generator's, at 512²)."""
    case = make_case(seed, positive=True, max_slices=32, lesion_sizes=(18.0, 35.0))
    return write_case(case, folder, patient_id="DEMO-0001")
