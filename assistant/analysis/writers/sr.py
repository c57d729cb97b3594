"""Findings → a TID 1500 Imaging Measurement Report (Comprehensive 3D SR).

The report always has Qualitative Evaluations (the finding present or absent, the
study probability and threshold), so a negative study says so explicitly; each lesion
is a planar ROI measurement group with its Tracking Identifier and UID, the outline on its key slice (a closed
2D polyline referencing that slice's SOP Instance, and its frame when the slice is a frame
of a multi-frame object), and its measurements in UCUM units.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import highdicom as hd
import numpy as np
from pydicom import Dataset

from assistant.analysis.writers import concepts
from assistant.analysis.writers.context import WriterContext, quiet_person_names
from assistant.findings import Findings, Lesion

#: Most lesions one report lists (the largest ones); the SEG carries all of them.
MAX_REPORTED_LESIONS = 10


def _measurement(name, value: float, unit) -> hd.sr.Measurement:  # type: ignore[no-untyped-def]
    return hd.sr.Measurement(name=name, value=float(value), unit=unit)


def _closed_outline(lesion: Lesion, header: Dataset) -> np.ndarray:
    points = np.asarray(lesion.outline, dtype=np.float32)
    points[:, 0] = np.clip(points[:, 0], 0, float(header.Columns))
    points[:, 1] = np.clip(points[:, 1], 0, float(header.Rows))
    return np.vstack([points, points[:1]])  # a POLYLINE is closed by repeating its start


def _lesion_group(
    number: int, lesion: Lesion, header: Dataset, context: WriterContext
) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations:
    region = hd.sr.ImageRegion(
        graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
        graphic_data=_closed_outline(lesion, header),
        source_image=hd.sr.SourceImageForRegion(
            referenced_sop_class_uid=str(header.SOPClassUID),
            referenced_sop_instance_uid=str(header.SOPInstanceUID),
            referenced_frame_numbers=(
                None if lesion.key_frame_number is None else [lesion.key_frame_number]
            ),
        ),
    )
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=context.identity.uid(f"lesion-{number}"), identifier=f"Lesion {number}"
        ),
        referenced_region=region,
        finding_type=concepts.FINDING,
        finding_category=concepts.FINDING_CATEGORY,
        finding_sites=[hd.sr.FindingSite(concepts.FINDING_SITE)],
        algorithm_id=context.algorithm(),
        measurements=[
            _measurement(concepts.AREA, lesion.area_mm2, concepts.SQUARE_MILLIMETRE),
            _measurement(concepts.LONG_AXIS, lesion.longest_diameter_mm, concepts.MILLIMETRE),
            _measurement(concepts.VOLUME, lesion.volume_ml, concepts.MILLILITRE),
            _measurement(concepts.MEAN_ATTENUATION, lesion.mean_hu, concepts.HOUNSFIELD_UNIT),
            _measurement(
                concepts.PROBABILITY, round(100 * lesion.probability, 2), concepts.PERCENT
            ),
        ],
    )


def _study_evaluations(prediction: Findings, context: WriterContext) -> hd.sr.ContainerContentItem:
    """TID 1500's Qualitative Evaluations of the whole report: the finding present or
    absent (so a negative study says so explicitly), the study probability against the
    threshold, and the use statement.

    Not a measurement group: a group without an image region is valid TID 1501, but
    viewers that draw measurement groups (OHIF) expect every group to have one."""
    contains = hd.sr.RelationshipTypeValues.CONTAINS
    container = hd.sr.ContainerContentItem(
        name=concepts.QUALITATIVE_EVALUATIONS, relationship_type=contains
    )
    container.ContentSequence = hd.sr.ContentSequence(
        [
            hd.sr.CodeContentItem(
                name=concepts.FINDING,
                value=concepts.PRESENT if prediction.positive else concepts.ABSENT,
                relationship_type=contains,
            ),
            hd.sr.TextContentItem(
                name=concepts.COMMENT,
                value=prediction.summary().splitlines()[0],
                relationship_type=contains,
            ),
            *(
                hd.sr.TextContentItem(name=concepts.COMMENT, value=note, relationship_type=contains)
                for note in prediction.notes
            ),
            hd.sr.TextContentItem(
                name=concepts.COMMENT, value=context.use_statement(), relationship_type=contains
            ),
        ]
    )
    return container


@quiet_person_names()
def build_sr(
    prediction: Findings,
    headers: Mapping[str, Dataset],
    context: WriterContext,
    previous_versions: Sequence[Dataset] = (),
) -> hd.sr.Comprehensive3DSR:
    """The report of one analysis. `headers` maps every source SOP Instance UID to its
    header (evidence; a multi-frame object once); `previous_versions` are the SRs this
    one supersedes."""
    lesions = prediction.lesions[:MAX_REPORTED_LESIONS]
    # The image library describes a whole image by its position: a multi-frame object has
    # one per frame, so it is left out there (its outlines reference it, frame and all).
    key_headers = list(
        {
            lesion.key_sop_instance_uid: headers[lesion.key_sop_instance_uid]
            for lesion in lesions
            if lesion.key_frame_number is None
        }.values()
    )
    groups: list = [
        _lesion_group(n, lesion, headers[lesion.key_sop_instance_uid], context)
        for n, lesion in enumerate(lesions, start=1)
    ]
    if not groups:  # highdicom wants one group; TID 1500 does not: removed below
        groups = [
            hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(
                    uid=context.identity.uid("none"), identifier="none"
                )
            )
        ]
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(
            observer_device_context=context.device_observer()
        ),
        procedure_reported=concepts.PROCEDURE,
        imaging_measurements=groups,
        title=concepts.REPORT_TITLE,
        referenced_images=key_headers or None,
    )
    root = report[0]
    if not lesions:
        # TID 1500 asks for Imaging Measurements or Qualitative Evaluations (or both):
        # a report without lesions has the evaluations only.
        root.ContentSequence = hd.sr.ContentSequence(
            [
                item
                for item in root.ContentSequence
                if item.ConceptNameCodeSequence[0].CodeValue != concepts.IMAGING_MEASUREMENTS.value
            ],
            is_root=False,
        )
    root.ContentSequence.append(_study_evaluations(prediction, context))
    sr = hd.sr.Comprehensive3DSR(
        evidence=list(headers.values()),
        content=root,
        series_instance_uid=context.identity.uid("sr-series"),
        series_number=context.series_number("sr"),
        sop_instance_uid=context.identity.uid("sr"),
        instance_number=1,
        manufacturer="radassist",
        is_complete=True,
        previous_versions=list(previous_versions) or None,
    )
    sr.SeriesDescription = context.series_description("report")
    sr.SoftwareVersions = context.software_versions
    return sr
