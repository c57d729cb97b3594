"""The frames of a multi-frame CT object as slices.

Enhanced CT and Legacy Converted Enhanced CT objects keep each frame's geometry in
functional groups (PS3.3 C.7.6.16): a frame's plane position, orientation, pixel
spacing, rescale and frame type are read from its per-frame item, falling back to the
shared item. A multi-frame object that cannot be read this way raises UnreadableFrames,
whose message starts "multi-frame object" and says why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"
LEGACY_CONVERTED_ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.2"
#: CT storage classes whose objects hold their slices as frames.
MULTI_FRAME_CT = frozenset({ENHANCED_CT_IMAGE_STORAGE, LEGACY_CONVERTED_ENHANCED_CT_IMAGE_STORAGE})

#: One frame's place among an object's stacks and temporal positions, as (what, value)
#: pairs; empty where the object holds one stack at one time, as most do.
Dimension = tuple[tuple[str, Any], ...]
#: What each value of Frame Content's (Stack ID, Temporal Position Index) is called.
_DIMENSIONS = ("stack", "temporal position")


class UnreadableFrames(ValueError):
    """A multi-frame object whose frames cannot be read as slices; the message says why."""


@dataclass(frozen=True)
class Frame:
    """One frame of a multi-frame object, as its functional groups describe it."""

    #: 1-based, as Referenced Frame Number counts.
    number: int
    position: tuple[float, float, float]
    orientation: tuple[float, ...]
    #: Pixel Spacing (row, column) as written; () when absent.
    pixel_spacing: tuple[Any, ...]
    #: (Rescale Slope, Rescale Intercept).
    rescale: tuple[float, float]
    localizer: bool
    dimension: Dimension = ()


def is_multi_frame(header: Dataset) -> bool:
    """Whether the object keeps its slices as frames (its class says so, or it has
    more than one; an unreadable Number of Frames counts, to be refused with a reason)."""
    if str(header.get("SOPClassUID", "")) in MULTI_FRAME_CT:
        return True
    try:
        return int(header.get("NumberOfFrames", 1) or 1) > 1
    except (TypeError, ValueError):
        return True


def frame_value(header: Dataset, frame: int, sequence: str, keyword: str) -> Any:
    """`keyword` of `sequence` in the frame's per-frame functional group, else in the
    shared one; None when neither has it."""
    for item in (_per_frame_item(header, frame), _shared_item(header)):
        if item is None:
            continue
        value = _nested(item, sequence, keyword)
        if value is not None:
            return value
    return None


def _per_frame_item(header: Dataset, frame: int) -> Dataset | None:
    groups = header.get("PerFrameFunctionalGroupsSequence")
    return groups[frame - 1] if groups and 0 < frame <= len(groups) else None


def _shared_item(header: Dataset) -> Dataset | None:
    groups = header.get("SharedFunctionalGroupsSequence")
    return groups[0] if groups else None


def _nested(item: Dataset, sequence: str, keyword: str) -> Any:
    inner = item.get(sequence)
    if not inner:
        return None
    value = inner[0].get(keyword)
    return None if value in (None, "") else value


def number_of_frames(header: Dataset) -> int:
    try:
        count = int(header.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        count = 0
    if count < 1:
        raise UnreadableFrames(
            f"multi-frame object with an invalid Number of Frames ({header.get('NumberOfFrames')!r})"
        )
    return count


def read_frames(header: Dataset) -> list[Frame]:
    """Every frame of a multi-frame object, in frame order; UnreadableFrames when its
    frames cannot be placed (no per-frame positions, no orientation, groups that do
    not match the frames)."""
    count = number_of_frames(header)
    per_frame = header.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and len(per_frame) != count:
        raise UnreadableFrames(
            f"multi-frame object with {len(per_frame)} per-frame functional groups "
            f"for its {count} frames"
        )
    if count > 1 and (
        per_frame is None
        or any(
            _nested(item, "PlanePositionSequence", "ImagePositionPatient") is None
            for item in per_frame
        )
    ):
        raise UnreadableFrames("multi-frame object without per-frame plane positions")
    content = [_frame_content(header, number) for number in range(1, count + 1)]
    # Only what varies within the object tells its frames apart: an object of one stack
    # at one time joins the single-frame slices of its series (and other such objects).
    varying = [i for i in range(2) if len({values[i] for values in content}) > 1]
    return [
        _frame(header, number, tuple((_DIMENSIONS[i], values[i]) for i in varying))
        for number, values in enumerate(content, start=1)
    ]


def _frame_content(header: Dataset, number: int) -> tuple[str, int | None]:
    """(Stack ID, Temporal Position Index) of one frame, "" and None where absent."""
    stack = frame_value(header, number, "FrameContentSequence", "StackID")
    temporal = frame_value(header, number, "FrameContentSequence", "TemporalPositionIndex")
    try:
        return str(stack or "").strip(), None if temporal is None else int(temporal)
    except (TypeError, ValueError):
        return str(stack or "").strip(), None


def _frame(header: Dataset, number: int, dimension: Dimension) -> Frame:
    position = _floats(
        frame_value(header, number, "PlanePositionSequence", "ImagePositionPatient"), 3
    )
    if position is None:
        raise UnreadableFrames("multi-frame object without valid plane positions")
    orientation = _floats(
        frame_value(header, number, "PlaneOrientationSequence", "ImageOrientationPatient"), 6
    )
    if orientation is None:
        raise UnreadableFrames("multi-frame object without a valid plane orientation")
    spacing = frame_value(header, number, "PixelMeasuresSequence", "PixelSpacing")
    if spacing is None:
        spacing = header.get("PixelSpacing")
    spacing = spacing if isinstance(spacing, list | tuple | MultiValue) else [spacing]
    frame_type = frame_value(header, number, "CTImageFrameTypeSequence", "FrameType") or []
    frame_type = [frame_type] if isinstance(frame_type, str) else list(frame_type)
    return Frame(
        number=number,
        position=(position[0], position[1], position[2]),
        orientation=orientation,
        pixel_spacing=tuple(v for v in spacing if v is not None),
        rescale=_rescale(header, number),
        localizer="LOCALIZER" in {str(v).strip().upper() for v in frame_type},
        dimension=dimension,
    )


def _rescale(header: Dataset, number: int) -> tuple[float, float]:
    """The frame's Rescale Slope and Intercept (Pixel Value Transformation), else the
    object's, else identity."""
    slope = frame_value(header, number, "PixelValueTransformationSequence", "RescaleSlope")
    intercept = frame_value(header, number, "PixelValueTransformationSequence", "RescaleIntercept")
    slope = header.get("RescaleSlope", 1) if slope is None else slope
    intercept = header.get("RescaleIntercept", 0) if intercept is None else intercept
    try:
        values = float(slope or 1), float(intercept or 0)
    except (TypeError, ValueError) as error:
        raise UnreadableFrames("multi-frame object with an invalid rescale") from error
    if not all(map(math.isfinite, values)):
        raise UnreadableFrames("multi-frame object with an invalid rescale")
    return values


def _floats(value: Any, count: int) -> tuple[float, ...] | None:
    try:
        values = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if len(values) != count or not all(map(math.isfinite, values)):
        return None
    return values
