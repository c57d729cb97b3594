"""Pixel data → Hounsfield units → resampled, windowed channels."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.pixels import pixel_array
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from scipy import ndimage

_PIXEL_DATA = 0x7FE00010
_NATIVE_SYNTAXES = frozenset({ExplicitVRLittleEndian, ImplicitVRLittleEndian})


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
    return _to_hu(dataset.pixel_array, *_rescale(dataset))


def frame_hu(path: Path, frame: int, rescale: tuple[float, float]) -> np.ndarray:
    """One frame (1-based) of a multi-frame object in HU (float32), decoding only that
    frame; `rescale` is the frame's (slope, intercept) from its functional groups."""
    return _to_hu(pixel_array(path, index=frame - 1), *rescale)


def _to_hu(stored: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    hu = stored.astype(np.float32, copy=False)
    if slope != 1:
        hu = hu * np.float32(slope)
    if intercept != 0:
        hu = hu + np.float32(intercept)
    return hu


def _rescale(dataset: Dataset) -> tuple[float, float]:
    slope = float(dataset.get("RescaleSlope", 1) or 1)
    intercept = float(dataset.get("RescaleIntercept", 0) or 0)
    return slope, intercept


@dataclass(frozen=True)
class NativePixels:
    """Where one slice's uncompressed 16-bit pixels lie in its file, and their rescale.

    Most CT arrives uncompressed; for it one read() into a reused buffer replaces a
    full pydicom parse and decode per slice, the largest cost of reading a series.
    """

    offset: int
    rows: int
    columns: int
    signed: bool
    bits_stored: int
    slope: float
    intercept: float


def native_pixels(
    header: Dataset, frame: int | None = None, rescale: tuple[float, float] | None = None
) -> NativePixels | None:
    """The location of a header's pixels when they are plain little-endian 16-bit
    samples, or None when pydicom's decoders are needed.

    `header` must have been read with a `defer_size`, so that its Pixel Data element
    is still a deferred raw element that knows its offset in the file. For a
    multi-frame object, `frame` (1-based) says which frame and `rescale` gives its
    (slope, intercept) from the functional groups; frames lie one after the other.
    """
    meta = getattr(header, "file_meta", None)
    if meta is None or meta.get("TransferSyntaxUID") not in _NATIVE_SYNTAXES:
        return None
    if _PIXEL_DATA not in header:
        return None
    element = header.get_item(_PIXEL_DATA, keep_deferred=True)
    if not isinstance(element, RawDataElement) or element.value is not None:
        return None
    try:
        rows, columns = int(header.Rows), int(header.Columns)
        bits_allocated = int(header.BitsAllocated)
        bits_stored = int(header.get("BitsStored", bits_allocated))
        signed = int(header.PixelRepresentation) == 1
        single = int(header.get("SamplesPerPixel", 1)) == 1
        frames = int(header.get("NumberOfFrames", 1) or 1)
        slope, intercept = _rescale(header) if rescale is None else rescale
    except (AttributeError, TypeError, ValueError):
        return None
    size = rows * columns * 2
    if (
        bits_allocated != 16
        or not 1 <= bits_stored <= 16
        or not single
        or (frames != 1 if frame is None else not 1 <= frame <= frames)
        or element.value_tell is None
        or element.length < frames * size
    ):
        return None
    offset = element.value_tell + ((frame or 1) - 1) * size
    return NativePixels(offset, rows, columns, signed, bits_stored, slope, intercept)


def read_native(path: Path, pixels: NativePixels, buffer: bytearray | None = None) -> np.ndarray:
    """The stored values of a slice (before rescale), as pydicom's pixel_array gives them.

    Reads into `buffer` when it is given and large enough (the result is then a view of
    it, valid until the next read into the same buffer).
    """
    count = pixels.rows * pixels.columns
    size = count * 2
    if buffer is None or len(buffer) < size:
        buffer = bytearray(size)
    view = memoryview(buffer)[:size]
    with open(path, "rb", buffering=0) as file:
        file.seek(pixels.offset)
        filled = 0
        while filled < size:
            got = file.readinto(view[filled:])
            if not got:
                raise ValueError(f"{path.name}: pixel data cut short")
            filled += got
    stored = np.frombuffer(view, dtype="<i2" if pixels.signed else "<u2").reshape(
        pixels.rows, pixels.columns
    )
    unused = 16 - pixels.bits_stored
    if unused:  # bits above High Bit are not part of the value (PS3.5 §8.1.1)
        if pixels.signed:
            np.left_shift(stored, unused, out=stored)
            np.right_shift(stored, unused, out=stored)  # arithmetic: extends the sign
        else:
            np.bitwise_and(stored, (1 << pixels.bits_stored) - 1, out=stored)
    return stored


def native_hu(
    path: Path, pixels: NativePixels, size: int | None = None, buffer: bytearray | None = None
) -> np.ndarray:
    """A slice in HU (float32), resampled to size x size when `size` is given.

    The stored integers are resampled first and rescaled after (the rescale is linear),
    so only the small image is ever made in float.
    """
    stored = read_native(path, pixels, buffer)
    small = stored if size is None else resize(stored, size)
    hu = small.astype(np.float32, copy=False)  # a copy exactly when `small` is the buffer
    if pixels.slope != 1:
        hu *= np.float32(pixels.slope)
    if pixels.intercept != 0:
        hu += np.float32(pixels.intercept)
    return hu


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """Resample a square-ish slice (float, or stored integers) to size x size: block
    means for integer factors (exact, fast), linear interpolation otherwise."""
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


def to_windows(
    hu: np.ndarray, windows: tuple[Window, ...] = DEFAULT_WINDOWS, out: np.ndarray | None = None
) -> np.ndarray:
    """Stack one [0, 1] channel per window: (len(windows), rows, cols) float32, written
    into `out` when given."""
    if out is None:
        out = np.empty((len(windows), *hu.shape), dtype=np.float32)
    for channel, window in zip(out, windows, strict=True):
        low = window.center - window.width / 2
        np.subtract(hu, low, out=channel)
        channel *= 1.0 / window.width
        np.clip(channel, 0.0, 1.0, out=channel)
    return out
