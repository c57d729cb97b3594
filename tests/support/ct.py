"""The real CT series of ../shared/data/ct (see its README), and a lesion inserted into
one of them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom import dcmread

from assistant.analysis.imaging import read_series
from tests.peers.tools import unavailable

SHARED_CT = Path(__file__).resolve().parents[3] / "shared" / "data" / "ct"


def shared_ct(name: str) -> Path:
    folder = SHARED_CT / name
    if not folder.is_dir():
        unavailable(f"shared test data {folder} is absent")
    return folder


def dicom_files(folder: Path) -> list[Path]:
    """The DICOM files of a shared series folder (not Philips' DIRFILE)."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "DIRFILE")


def insert_lesion(
    source: Path,
    target: Path,
    hu: float = 70.0,
    radius_mm: float = 12.0,
    centre: tuple[int, float, float] | None = None,
) -> list[str]:
    """Copy a series, adding an irregular hyperdense blob in the brain of five slices.

    `centre` is (slice index in stack order, row and column as fractions of the image);
    by default the middle slice, at row 0.42, column 0.60: on an axial image whose
    columns run towards the patient's left (LPS), the left frontoparietal lobe. Returns
    the SOP Instance UIDs of the slices that got blood."""
    series = read_series(source)
    target.mkdir(parents=True)
    middle, row_share, column_share = centre or (len(series.slices) // 2, 0.42, 0.60)
    touched = []
    rng = np.random.default_rng(0)
    for index, info in enumerate(series.slices):
        ds = dcmread(info.path)
        distance = abs(index - middle)
        if distance <= 2:
            pixels = ds.pixel_array.astype(np.float32)
            slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
            current = pixels * slope + intercept
            rows, cols = np.indices(current.shape)
            spacing = float(ds.PixelSpacing[0])
            cy, cx = current.shape[0] * row_share, current.shape[1] * column_share
            r = radius_mm * (1 - 0.3 * distance) / spacing
            angle = np.arctan2(rows - cy, cols - cx)
            edge = r * (1 + 0.2 * np.cos(3 * angle + 1.0)) - np.hypot(rows - cy, cols - cx)
            weight = np.clip(edge / 2.0 + 0.5, 0, 1)
            brain = (current > 0) & (current < 60)
            blood = hu + rng.normal(0, 4, current.shape)
            current = np.where(brain, current * (1 - weight) + blood * weight, current)
            stored = np.round((current - intercept) / slope)
            info_dtype = np.int16 if ds.PixelRepresentation == 1 else np.uint16
            ds.PixelData = stored.astype(info_dtype).tobytes()
            touched.append(str(ds.SOPInstanceUID))
        ds.save_as(target / info.path.name)
    return touched
