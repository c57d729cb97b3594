"""A CT series as the model reads it: slices ordered along the slice normal.

Order comes from Image Position (Patient) projected on the normal of Image Orientation
(Patient), never from Instance Number, so gantry tilt and irregular spacing (such as
the GE head in ../shared/data/ct/ge_head_tilted) come out right. A slice is a
single-frame CT image or one frame of an Enhanced or Legacy Converted Enhanced CT object
(see assistant.analysis.imaging.frames). Objects and frames that are not CT slices of
the main stack are left out with a reason; a series the model cannot read at all raises
UnreadableSeries with the reason.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from assistant.analysis.imaging.cavity import (
    INTRACRANIAL,
    OUTSIDE_HU,
    apply_input_mask,
    intracranial_mask,
)
from assistant.analysis.imaging.frames import (
    CT_IMAGE_STORAGE,
    MULTI_FRAME_CT,
    Dimension,
    UnreadableFrames,
    is_multi_frame,
    read_frames,
)
from assistant.analysis.imaging.pixels import (
    DEFAULT_WINDOWS,
    NativePixels,
    Window,
    frame_hu,
    hu_pixels,
    native_hu,
    native_pixels,
    resize,
    to_windows,
)
from assistant.geometry import slice_normal

#: Orientations that differ by more than this (cosine distance) are not one stack.
_ORIENTATION_TOLERANCE = 1e-3
#: Slices closer than this along the normal are duplicates (two stacks in one series).
_MIN_SPACING_MM = 0.01


#: Values longer than this are not read with the header (the pixel data): their offset
#: is kept instead, so that uncompressed slices are later read with one read() each.
_DEFER_BYTES = 4096
_PIXEL_DATA = 0x7FE00010


class UnreadableSeries(ValueError):
    """The series cannot be read by the model; the message says why."""


@dataclass(frozen=True)
class SliceInfo:
    path: Path
    sop_instance_uid: str
    instance_number: int | None
    #: Position along the slice normal, mm.
    position: float
    #: Where its uncompressed pixels lie in the file; None when pydicom must decode them.
    pixels: NativePixels | None = None
    #: The header as read (Pixel Data deferred, not loaded): the writers' evidence. The
    #: frames of one multi-frame object share it.
    header: Dataset | None = field(default=None, compare=False, repr=False)
    #: The frame of a multi-frame object (1-based); None for a single-frame image.
    frame_number: int | None = None
    #: A frame's (Rescale Slope, Rescale Intercept) from its functional groups, for
    #: decoding it when `pixels` is None; None for a single-frame image (its file says).
    rescale: tuple[float, float] | None = None
    #: Image Position (Patient) of its first pixel (DICOM LPS, mm); None where unknown.
    origin: tuple[float, float, float] | None = None


@dataclass(frozen=True)
class SeriesGeometry:
    """Ordered slices of one series and what is known of their geometry."""

    series_instance_uid: str
    slices: tuple[SliceInfo, ...]
    rows: int
    columns: int
    #: (row spacing, column spacing) in mm.
    pixel_spacing: tuple[float, float]
    orientation: tuple[float, ...]
    #: Angle between the slice normal and the direction the slices advance, degrees:
    #: 0 for an ordinary axial stack, the gantry tilt for a tilted acquisition.
    tilt_degrees: float
    #: Files left out, each with the reason.
    skipped: tuple[tuple[Path, str], ...] = field(default=())

    @property
    def positions(self) -> np.ndarray:
        return np.array([s.position for s in self.slices])

    @property
    def spacings(self) -> np.ndarray:
        """Distance between neighbouring slices along the normal (len - 1 values), mm."""
        return np.diff(self.positions)

    def hu(self, index: int) -> np.ndarray:
        """One slice in HU at full size."""
        return self.hu_resized(index, None)

    def pixel_buffer(self) -> bytearray:
        """A buffer for `hu_resized` that holds one slice of this series."""
        return bytearray(self.rows * self.columns * 2)

    def hu_resized(
        self, index: int, size: int | None, buffer: bytearray | None = None
    ) -> np.ndarray:
        """One slice in HU, resampled to size x size (full size for None).

        `buffer`, reused from slice to slice, saves allocating a full-size array each time;
        the result is a float32 array of its own either way.
        """
        info = self.slices[index]
        if info.pixels is not None:
            return native_hu(info.path, info.pixels, size, buffer)
        if info.frame_number is not None:
            hu = frame_hu(info.path, info.frame_number, info.rescale or (1.0, 0.0))
        else:
            hu = hu_pixels(dcmread(info.path))
        return hu if size is None else resize(hu, size)

    def pixel_mm_at(self, size: int) -> float:
        """The width (mm) of a pixel of the slices resampled to size x size."""
        return self.pixel_spacing[1] * self.columns / size

    def model_slice(
        self,
        index: int,
        size: int,
        windows: tuple[Window, ...] = DEFAULT_WINDOWS,
        input_mask: str = "",
        out: np.ndarray | None = None,
        buffer: bytearray | None = None,
        keep_hu: np.ndarray | None = None,
        keep_cavity: np.ndarray | None = None,
    ) -> np.ndarray:
        """One slice as a model reads it: HU resampled to size x size, `input_mask`
        applied (see assistant.analysis.imaging.cavity), one [0, 1] channel per window.

        `keep_hu` (square, any size) receives the slice's HU before any mask, and
        `keep_cavity` (its size) the slice's intracranial cavity, for the anatomy that
        locates findings (assistant.analysis.anatomy) without decoding the slice again;
        the cavity found once also blanks the slice for an intracranial input mask."""
        hu = self.hu_resized(index, size, buffer)  # a new float32 array: masked in place
        cavity = None
        if keep_hu is not None:
            kept = hu if keep_hu.shape == hu.shape else resize(hu, keep_hu.shape[0])
            keep_hu[...] = kept
            if keep_cavity is not None:
                keep_cavity[...] = intracranial_mask(kept, self.pixel_mm_at(kept.shape[0]))
                cavity = keep_cavity if kept.shape == hu.shape else None
        if input_mask == INTRACRANIAL and cavity is not None:
            hu[~cavity] = OUTSIDE_HU
        elif input_mask:
            hu = apply_input_mask(hu, input_mask, self.pixel_mm_at(size))
        return to_windows(hu, windows, out=out)

    def batches(
        self,
        size: int,
        batch: int = 32,
        windows: tuple[Window, ...] = DEFAULT_WINDOWS,
        input_mask: str = "",
    ) -> Iterator[np.ndarray]:
        """Model input in slice order, `batch` slices at a time: (b, channels, size, size)
        float32. Only one batch is in memory at a time."""
        buffer = self.pixel_buffer()
        for start in range(0, len(self.slices), batch):
            count = min(batch, len(self.slices) - start)
            out = np.empty((count, len(windows), size, size), dtype=np.float32)
            for i in range(count):
                self.model_slice(start + i, size, windows, input_mask, out[i], buffer)
            yield out


def _files(source: Path | Iterable[Path]) -> list[Path]:
    if isinstance(source, (str, os.PathLike)):
        folder = Path(source)
        if not folder.is_dir():
            raise UnreadableSeries(f"{folder} is not a folder")
        # Hidden names are the store's own: a copy being written, the changes lock.
        return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    return sorted(Path(p) for p in source)


def _image_type(header: Dataset) -> list[str]:
    value = header.get("ImageType") or []
    values = [value] if isinstance(value, str) else list(value)
    return [str(v).strip().upper() for v in values]


def _skip_reason(header: Dataset) -> str | None:
    """Why an object is not read at all (None when it, or some of its frames, may be)."""
    if "PixelData" not in header and "Rows" not in header:
        return "not an image (no pixel data)"
    sop_class = str(header.get("SOPClassUID", ""))
    if sop_class != CT_IMAGE_STORAGE and sop_class not in MULTI_FRAME_CT:
        return f"not a CT image ({header.get('SOPClassUID', 'no SOP class')})"
    image_type = _image_type(header)
    if "LOCALIZER" in image_type:
        return "localizer (scout)"
    if "SCREEN SAVE" in image_type or "DOSE" in image_type:
        return "screen capture (dose report)"
    if str(header.get("PhotometricInterpretation", "")) not in {"MONOCHROME1", "MONOCHROME2"}:
        return f"photometric interpretation {header.get('PhotometricInterpretation')!r} is not greyscale"
    if is_multi_frame(header):
        return None
    if "ImageOrientationPatient" not in header or "ImagePositionPatient" not in header:
        return "no Image Orientation/Position (Patient): cannot order the slice"
    return None


@dataclass(frozen=True)
class _Image:
    """A slice before it is placed: a single-frame image, or one frame of an object."""

    path: Path
    header: Dataset
    #: 1-based frame of a multi-frame object; None for a single-frame image.
    frame: int | None
    orientation: tuple[float, ...]
    #: Image Position (Patient), mm.
    position: tuple[float, ...]
    #: Pixel Spacing as written; () when absent.
    pixel_spacing: tuple[Any, ...]
    #: A frame's (slope, intercept); None for a single-frame image.
    rescale: tuple[float, float] | None = None
    dimension: Dimension = ()

    @property
    def instance_number(self) -> int:
        return int(self.header.get("InstanceNumber") or 0)


def _single_frame(path: Path, header: Dataset) -> _Image:
    return _Image(
        path=path,
        header=header,
        frame=None,
        orientation=tuple(float(v) for v in header.ImageOrientationPatient),
        position=tuple(float(v) for v in header.ImagePositionPatient),
        pixel_spacing=tuple(header.get("PixelSpacing") or ()),
    )


def _frames(path: Path, header: Dataset, skipped: list[tuple[Path, str]]) -> list[_Image]:
    """The frames of a multi-frame object that may be slices; localizer frames join
    `skipped`, one entry a frame. UnreadableFrames when none can be placed."""
    images = []
    for frame in read_frames(header):
        if frame.localizer:
            skipped.append((path, "localizer (scout)"))
            continue
        images.append(
            _Image(
                path=path,
                header=header,
                frame=frame.number,
                orientation=frame.orientation,
                position=frame.position,
                pixel_spacing=frame.pixel_spacing,
                rescale=frame.rescale,
                dimension=frame.dimension,
            )
        )
    return images


def _load_deferred(header: Dataset) -> None:
    """Read every value left in the file but Pixel Data: the header is evidence the
    writers copy, and a copy cannot read a deferred value (it has no file name)."""
    for tag in list(header.keys()):
        if tag == _PIXEL_DATA:
            continue
        element = header.get_item(tag, keep_deferred=True)
        if isinstance(element, RawDataElement) and element.value is None:
            header[tag]  # reads it, in place


def _pixel_spacing(values: Sequence[Any]) -> list[float]:
    """Pixel Spacing (row, column) in mm; UnreadableSeries when absent or not positive:
    guessing 1 mm would report every lesion at the wrong size."""
    try:
        spacing = [float(v) for v in values]
    except (TypeError, ValueError):
        spacing = []
    if len(spacing) != 2 or min(spacing) <= 0 or not all(map(math.isfinite, spacing)):
        raise UnreadableSeries("no valid Pixel Spacing: lesions could not be measured in mm")
    return spacing


_StackKey = tuple[tuple[float, ...], tuple[int, int], tuple[Any, ...], Dimension]


def _stack_key(image: _Image) -> _StackKey:
    """What the slices of one stack share: orientation (rounded within tolerance),
    matrix, pixel spacing (to 0.1 µm: writers differ in the digits they keep) and, within
    a multi-frame object of several, the stack and temporal position."""
    orientation = tuple(round(v, 3) for v in image.orientation)
    try:
        spacing: tuple[Any, ...] = tuple(round(float(v), 4) for v in image.pixel_spacing)
    except (TypeError, ValueError):
        spacing = tuple(str(v) for v in image.pixel_spacing)
    matrix = (int(image.header.Rows), int(image.header.Columns))
    return orientation, matrix, spacing, image.dimension


def _differences(main: _StackKey, other: _StackKey) -> list[str]:
    """What sets a stack apart from the main one, in words."""
    differs = [
        what
        for what, ours, theirs in zip(
            ("orientation", "matrix size", "pixel spacing"), main[:3], other[:3], strict=True
        )
        if ours != theirs
    ]
    dimensions = {what for what, _ in set(main[3]) ^ set(other[3])}
    return differs + [what for what in ("stack", "temporal position") if what in dimensions]


def _main_stack(images: list[_Image], skipped: list[tuple[Path, str]]) -> list[_Image]:
    """The largest set of slices that form one stack; the others join `skipped` with
    what sets them apart. Of stacks as large, the one holding the lowest Instance Number
    (then the one read first: the earliest frames of an object).

    One stray image (a reformat, a slice of another matrix, a second temporal position
    of a multi-frame object) must not cost the series."""
    groups: dict[_StackKey, list[_Image]] = {}
    for image in images:
        groups.setdefault(_stack_key(image), []).append(image)

    def lowest_number(group: list[_Image]) -> int:
        return min(image.instance_number for image in group)

    main_key = max(groups, key=lambda k: (len(groups[k]), -lowest_number(groups[k])))
    for key, group in groups.items():
        if key != main_key:
            reason = f"not in the main stack (another {' and '.join(_differences(main_key, key))})"
            skipped.extend((image.path, reason) for image in group)
    return groups[main_key]


def _read_images(source: Path | Sequence[Path], skipped: list[tuple[Path, str]]) -> list[_Image]:
    """Every slice the series' files may hold; what is not joins `skipped`."""
    images: list[_Image] = []
    for path in _files(source):
        try:
            header = dcmread(path, defer_size=_DEFER_BYTES)
        except (InvalidDicomError, OSError) as exc:
            skipped.append((path, f"not a DICOM file ({exc})"))
            continue
        reason = _skip_reason(header)
        if reason:
            skipped.append((path, reason))
            continue
        _load_deferred(header)
        if not is_multi_frame(header):
            images.append(_single_frame(path, header))
            continue
        try:
            images.extend(_frames(path, header, skipped))
        except UnreadableFrames as exc:
            skipped.append((path, str(exc)))
    return images


def read_series(source: Path | Sequence[Path]) -> SeriesGeometry:
    """Read the headers of a series folder (or files) and order its CT slices.

    Raises UnreadableSeries when no usable CT slice is left, when the slices belong to
    more than one series, orientation or matrix size, or when two share a position.
    """
    skipped: list[tuple[Path, str]] = []
    images = _read_images(source, skipped)
    if not images:
        reasons = sorted({reason for _, reason in skipped}) or ["no files"]
        raise UnreadableSeries(f"no CT image slices to read: {'; '.join(reasons)}")

    series_uids = {str(image.header.SeriesInstanceUID) for image in images}
    if len(series_uids) > 1:
        raise UnreadableSeries(f"files from {len(series_uids)} series mixed together")
    images = _main_stack(images, skipped)
    first = images[0]
    orientation = np.array(first.orientation)
    shape = (int(first.header.Rows), int(first.header.Columns))
    normal = np.array(slice_normal(orientation.tolist()))
    infos, positions_3d = [], []
    for image in images:
        ipp = np.array(image.position)
        number = image.header.get("InstanceNumber")
        infos.append(
            SliceInfo(
                path=image.path,
                sop_instance_uid=str(image.header.SOPInstanceUID),
                instance_number=int(number) if number not in (None, "") else None,
                position=float(np.dot(normal, ipp)),
                pixels=native_pixels(image.header, image.frame, image.rescale),
                header=image.header,
                frame_number=image.frame,
                rescale=image.rescale,
                origin=(float(ipp[0]), float(ipp[1]), float(ipp[2])),
            )
        )
        positions_3d.append(ipp)
    order = np.argsort([info.position for info in infos], kind="stable")
    ordered = tuple(infos[i] for i in order)
    positions = np.array([s.position for s in ordered])
    if len(positions) > 1 and np.diff(positions).min() < _MIN_SPACING_MM:
        raise UnreadableSeries("two slices share a position (more than one stack in the series)")

    tilt = 0.0
    if len(ordered) > 1:
        stacked = np.array(positions_3d)[order]
        advance = stacked[-1] - stacked[0]
        cosine = abs(float(np.dot(advance, normal))) / (float(np.linalg.norm(advance)) or 1.0)
        tilt = math.degrees(math.acos(min(1.0, cosine)))
    spacing = _pixel_spacing(first.pixel_spacing)
    return SeriesGeometry(
        series_instance_uid=str(first.header.SeriesInstanceUID),
        slices=ordered,
        rows=shape[0],
        columns=shape[1],
        pixel_spacing=(spacing[0], spacing[1]),
        orientation=tuple(float(v) for v in orientation),
        tilt_degrees=tilt,
        skipped=tuple(skipped),
    )
