"""Lesion masks → a DICOM Segmentation on the source slices (binary, one segment)."""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
import numpy as np
from pydicom import Dataset

from assistant.analysis.writers import concepts
from assistant.analysis.writers.context import (
    MANUFACTURER,
    WriterContext,
    quiet_person_names,
)
from assistant.findings import Findings


def _upsample(labels: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """Nearest-neighbour resize of per-slice masks to the images' matrix."""
    row_index = (np.arange(rows) * labels.shape[1] / rows).astype(np.intp)
    column_index = (np.arange(columns) * labels.shape[2] / columns).astype(np.intp)
    return labels[:, row_index][:, :, column_index]


@quiet_person_names()
def build_seg(
    prediction: Findings, headers: Sequence[Dataset], context: WriterContext
) -> hd.seg.Segmentation | None:
    """The lesions as one binary segment over the slices that have any; `headers` are
    the source slices in the order of ``prediction.slices``. None without masks."""
    labels = prediction.lesion_labels
    if labels is None or not labels.any():
        return None
    with_lesion = np.flatnonzero(labels.reshape(len(labels), -1).any(axis=1))
    first = headers[0]
    masks = _upsample(labels[with_lesion] > 0, int(first.Rows), int(first.Columns))
    segment = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="Hyperdense lesion",
        segmented_property_category=concepts.FINDING_CATEGORY,
        segmented_property_type=concepts.FINDING,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=context.segmentation_algorithm(),
    )
    seg = hd.seg.Segmentation(
        source_images=[headers[int(i)] for i in with_lesion],
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
    return seg
