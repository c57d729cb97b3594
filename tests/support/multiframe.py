"""Multi-frame CT objects made from the real single-frame series of ../shared/data/ct:
Legacy Converted Enhanced CT (highdicom's converter) and, from that, Enhanced CT with
its geometry moved into per-frame functional groups."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import highdicom as hd
from pydicom import Dataset, dcmread
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import UID, generate_uid

ENHANCED_CT = UID("1.2.840.10008.5.1.4.1.1.2.1")


def legacy_converted(
    files: Sequence[Path], *, series_instance_uid: str | None = None, instance_number: int = 1
) -> Dataset:
    """The single-frame slices in `files` as one Legacy Converted Enhanced CT object
    (frames in the order highdicom sorts them), in the source series unless told."""
    sources = [dcmread(path) for path in files]
    with warnings.catch_warnings():  # the anonymised name "REMOVED" has one component
        warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person")
        return hd.legacy.LegacyConvertedEnhancedCTImage(
            legacy_datasets=sources,
            series_instance_uid=series_instance_uid or str(sources[0].SeriesInstanceUID),
            series_number=int(sources[0].get("SeriesNumber") or 1),
            sop_instance_uid=generate_uid(),
            instance_number=instance_number,
        )


def enhanced_ct(legacy: Dataset) -> Dataset:
    """A legacy converted object as Enhanced CT: another SOP class, the converter's
    leftovers gone, orientation and rescale moved from the shared functional group into
    each frame's (the converter keeps pixel measures per frame already), one stack
    (Stack ID, In-Stack Position Number) at one time."""
    dataset = copy.deepcopy(legacy)
    dataset.SOPClassUID = dataset.file_meta.MediaStorageSOPClassUID = ENHANCED_CT
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    shared = dataset.SharedFunctionalGroupsSequence[0]
    shared.pop("UnassignedSharedConvertedAttributesSequence", None)
    moved = [
        shared.pop(keyword)
        for keyword in ("PlaneOrientationSequence", "PixelValueTransformationSequence")
        if keyword in shared
    ]
    for number, item in enumerate(dataset.PerFrameFunctionalGroupsSequence, start=1):
        item.pop("UnassignedPerFrameConvertedAttributesSequence", None)
        item.pop("ConversionSourceAttributesSequence", None)
        for element in moved:
            item[element.tag] = copy.deepcopy(element)
        content = item.FrameContentSequence[0]
        content.StackID = "1"
        content.InStackPositionNumber = number
        content.TemporalPositionIndex = 1
    return dataset


def with_frames(dataset: Dataset, change: Callable[[int, Dataset], None]) -> Dataset:
    """A copy (new SOP Instance UID) with `change(frame_number, per_frame_item)` applied
    to each frame's functional group."""
    changed = copy.deepcopy(dataset)
    changed.SOPInstanceUID = changed.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    for number, item in enumerate(changed.PerFrameFunctionalGroupsSequence, start=1):
        change(number, item)
    return changed


def two_temporal_positions(dataset: Dataset, hu_added: int = 100) -> Dataset:
    """An Enhanced CT object holding its frames twice: at temporal position 1 as they
    are, then at temporal position 2 with `hu_added` to every stored value."""
    import numpy as np

    doubled = copy.deepcopy(dataset)
    doubled.SOPInstanceUID = doubled.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    frames = list(doubled.PerFrameFunctionalGroupsSequence)
    later = copy.deepcopy(frames)
    for item in later:
        item.FrameContentSequence[0].TemporalPositionIndex = 2
    doubled.PerFrameFunctionalGroupsSequence = DicomSequence(frames + later)
    pixels = dataset.pixel_array
    doubled.PixelData = np.concatenate([pixels, pixels + hu_added]).astype(pixels.dtype).tobytes()
    doubled.NumberOfFrames = 2 * len(frames)
    return doubled


def save(dataset: Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset.save_as(path, enforce_file_format=True)
    return path
