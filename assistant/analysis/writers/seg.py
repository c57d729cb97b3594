"""Lesion masks → a DICOM Segmentation on the source slices (binary, one segment).

Each SEG frame references the source image it was drawn on, and its frame when that is a
frame of a multi-frame object (Derivation Image: Referenced Frame Number).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import highdicom as hd
import numpy as np
from pydicom import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.sr.codedict import codes

from assistant.analysis.imaging.frames import frame_value
from assistant.analysis.writers.context import (
    MANUFACTURER,
    WriterContext,
    quiet_person_names,
)
from assistant.findings import Findings, SliceProbability, concepts


def _upsample(labels: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """Nearest-neighbour resize of per-slice masks to the images' matrix."""
    row_index = (np.arange(rows) * labels.shape[1] / rows).astype(np.intp)
    column_index = (np.arange(columns) * labels.shape[2] / columns).astype(np.intp)
    return labels[:, row_index][:, :, column_index]


@quiet_person_names()
def build_seg(
    prediction: Findings, headers: Mapping[str, Dataset], context: WriterContext
) -> hd.seg.Segmentation | None:
    """The lesions as one binary segment over the slices that have any; `headers` maps
    each source SOP Instance UID to its header (a multi-frame object once, with its
    functional groups). None without masks."""
    labels = prediction.lesion_labels
    if labels is None or not labels.any():
        return None
    with_lesion = np.flatnonzero(labels.reshape(len(labels), -1).any(axis=1))
    slices = [prediction.slices[int(i)] for i in with_lesion]
    first = headers[slices[0].sop_instance_uid]
    masks = _upsample(labels[with_lesion] > 0, int(first.Rows), int(first.Columns))
    segment = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="Hyperdense lesion",
        segmented_property_category=concepts.FINDING_CATEGORY,
        segmented_property_type=concepts.FINDING,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=context.segmentation_algorithm(),
    )
    sources = _sources(slices, headers)
    seg = hd.seg.Segmentation(
        **sources,
        pixel_array=masks,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment],
        series_instance_uid=context.identity.uid("seg-series"),
        series_number=context.series_number("seg"),
        sop_instance_uid=context.identity.uid("seg"),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=context.model_name,
        software_versions=context.software_versions,
        device_serial_number=context.identity.device_uid()[-16:],
        content_label="LESIONS",
        content_description=context.use_statement()[:64],
    )
    seg.SeriesDescription = context.series_description("lesion masks")
    if "plane_positions" in sources:
        _reference_sources(seg, slices, headers, sources["plane_positions"])
    return seg


def _sources(slices: Sequence[SliceProbability], headers: Mapping[str, Dataset]) -> dict[str, Any]:
    """highdicom's source arguments for SEG frames drawn on `slices`.

    Single-frame slices are the source images, one a frame. Where a multi-frame object
    holds any (highdicom takes one multi-frame source image), the object holding the
    most is the source image and any others further source images; each SEG frame is
    placed at its slice's position, and highdicom references the source frame there."""
    frames = [s for s in slices if s.frame_number is not None]
    if not frames:
        return {"source_images": [headers[s.sop_instance_uid] for s in slices]}
    counts: dict[str, int] = {}
    for s in frames:
        counts[s.sop_instance_uid] = counts.get(s.sop_instance_uid, 0) + 1
    main = max(counts, key=lambda uid: counts[uid])  # the first of equals, in slice order
    first_frame = next(s.frame_number for s in frames if s.sop_instance_uid == main)
    others = [headers[uid] for uid in dict.fromkeys(s.sop_instance_uid for s in slices)]
    return {
        "source_images": [_with_shared_geometry(headers[main], first_frame or 1)],
        "further_source_images": [h for h in others if str(h.SOPInstanceUID) != main] or None,
        "plane_positions": [_plane_position(headers[s.sop_instance_uid], s) for s in slices],
    }


#: What highdicom writes in each SEG frame's Derivation Image item.
_DERIVATION = hd.sr.CodedConcept.from_code(codes.cid7203.SegmentationImageDerivation)
_PURPOSE = hd.sr.CodedConcept.from_code(codes.cid7202.SourceImageForImageProcessingOperation)


def _reference_sources(
    seg: hd.seg.Segmentation,
    slices: Sequence[SliceProbability],
    headers: Mapping[str, Dataset],
    positions: Sequence[hd.PlanePositionSequence],
) -> None:
    """Derivation Image references for SEG frames highdicom left without: it matches
    frames to one source object, so frames on slices of several (single-frame slices and
    a multi-frame object in one series) get none. Each is matched here by its position."""
    by_position = [
        (np.array([float(v) for v in p[0].ImagePositionPatient]), s)
        for p, s in zip(positions, slices, strict=True)
    ]
    for item in seg.PerFrameFunctionalGroupsSequence:
        if item.DerivationImageSequence:
            continue
        written = np.array([float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient])
        _, slice_ = min(by_position, key=lambda pair: float(np.linalg.norm(pair[0] - written)))
        header = headers[slice_.sop_instance_uid]
        source = Dataset()
        source.ReferencedSOPClassUID = header.SOPClassUID
        source.ReferencedSOPInstanceUID = header.SOPInstanceUID
        if slice_.frame_number is not None:
            source.ReferencedFrameNumber = slice_.frame_number
        source.PurposeOfReferenceCodeSequence = [_PURPOSE]
        source.SpatialLocationsPreserved = "YES"
        derivation = Dataset()
        derivation.DerivationCodeSequence = [_DERIVATION]
        derivation.SourceImageSequence = [source]
        item.DerivationImageSequence = [derivation]


def _plane_position(header: Dataset, slice_: SliceProbability) -> hd.PlanePositionSequence:
    if slice_.frame_number is None:
        position = header.ImagePositionPatient
    else:
        position = frame_value(
            header, slice_.frame_number, "PlanePositionSequence", "ImagePositionPatient"
        )
    return hd.PlanePositionSequence(
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
        image_position=[float(v) for v in position],
    )


def _with_shared_geometry(header: Dataset, frame: int) -> Dataset:
    """`header`, or a copy whose shared functional group holds the plane orientation
    and pixel measures (of `frame`) where only its per-frame groups had them: highdicom
    reads a multi-frame source's geometry from the shared group. The frames of one stack
    share both (read_series keeps one stack)."""
    shared = (header.get("SharedFunctionalGroupsSequence") or [Dataset()])[0]
    missing = [
        keyword
        for keyword in ("PlaneOrientationSequence", "PixelMeasuresSequence")
        if keyword not in shared
    ]
    if not missing:
        return header
    per_frame = header.PerFrameFunctionalGroupsSequence[frame - 1]
    filled = Dataset()
    filled.update(shared)
    for keyword in missing:
        if keyword in per_frame:
            filled[keyword] = per_frame[keyword]
    copy = Dataset()
    copy.update(header)
    copy.file_meta = header.file_meta
    copy.SharedFunctionalGroupsSequence = DicomSequence([filled])
    return copy
