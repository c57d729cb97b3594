"""Pixel data → Hounsfield units → resampled, windowed channels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset
from scipy import ndimage


@dataclass(frozen=True)
class Window:
    """A CT display window; the model sees each as one channel scaled to [0, 1]."""

    name: str
    center: float
    width: float


#: Brain, subdural and bone windows: the three a radiologist flips between for a head CT.
DEFAULT_WINDOWS: tuple[Window, ...] = (
    Window("brain", 40.0, 80.0),
    Window("subdural", 80.0, 200.0),
    Window("bone", 600.0, 2800.0),
)


def hu_pixels(dataset: Dataset) -> np.ndarray:
    """The slice in Hounsfield units (float32), decoding any supported compression.

    Rescale Slope and Intercept are applied; pixel padding is left as stored (it is far
    below air and windows to 0 like air does).
    """
    pixels = dataset.pixel_array
    slope = float(dataset.get("RescaleSlope", 1) or 1)
    intercept = float(dataset.get("RescaleIntercept", 0) or 0)
    hu = pixels.astype(np.float32, copy=False)
    if slope != 1:
        hu = hu * np.float32(slope)
    if intercept != 0:
        hu = hu + np.float32(intercept)
    return hu


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """Resample a square-ish slice to size x size: block means for integer factors
    (exact, fast), linear interpolation otherwise."""
    rows, cols = image.shape
    if (rows, cols) == (size, size):
        return image
    if rows == cols and rows % size == 0:
        factor = rows // size
        # A sum of strided views: several times faster than reshape().mean() here.
        total = np.zeros((size, size), dtype=np.float32)
        for i in range(factor):
            for j in range(factor):
                total += image[i::factor, j::factor]
        total *= np.float32(1.0 / (factor * factor))
        return total
    return ndimage.zoom(image, (size / rows, size / cols), order=1, prefilter=False).astype(
        np.float32
    )


def to_windows(hu: np.ndarray, windows: tuple[Window, ...] = DEFAULT_WINDOWS) -> np.ndarray:
    """Stack one [0, 1] channel per window: (len(windows), rows, cols) float32."""
    out = np.empty((len(windows), *hu.shape), dtype=np.float32)
    for channel, window in zip(out, windows, strict=True):
        low = window.center - window.width / 2
        np.subtract(hu, low, out=channel)
        channel *= 1.0 / window.width
        np.clip(channel, 0.0, 1.0, out=channel)
    return out
