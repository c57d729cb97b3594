"""Findings → a TID 1500 Imaging Measurement Report (Comprehensive 3D SR).

The report always has Qualitative Evaluations (the finding present or absent, the
impression line, the study probability and threshold), so a negative study says so
explicitly; each lesion is a planar ROI measurement group with its Tracking Identifier
(and where it lies, in words) and UID, the outline on its key slice (a closed 2D polyline
referencing that slice's SOP Instance, and its frame when the slice is a frame of a
multi-frame object), its finding site (region, laterality, intra- or extra-axial), its
measurements in UCUM units (the midline shift in the largest lesion's group) and its
size band. Every code is in ``concepts``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import highdicom as hd
import numpy as np
from pydicom import Dataset

from assistant.analysis.writers.context import (
    MANUFACTURER,
    WriterContext,
    quiet_person_names,
)
from assistant.findings import Findings, Lesion, concepts
from assistant.findings.wording import place_words, shift_side

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
    number: int,
    lesion: Lesion,
    header: Dataset,
    context: WriterContext,
    midline_shift_mm: float | None = None,
) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations:
    """One lesion's measurement group; `midline_shift_mm` is the study's shift when this
    lesion is the one taken to cause it (the largest)."""
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
    measurements = [
        _measurement(concepts.AREA, lesion.area_mm2, concepts.SQUARE_MILLIMETRE),
        _measurement(concepts.LONG_AXIS, lesion.longest_diameter_mm, concepts.MILLIMETRE),
        _measurement(concepts.VOLUME, lesion.volume_ml, concepts.MILLILITRE),
        _measurement(concepts.MEAN_ATTENUATION, lesion.mean_hu, concepts.HOUNSFIELD_UNIT),
        _measurement(concepts.PROBABILITY, round(100 * lesion.probability, 2), concepts.PERCENT),
        *_size_measurements(lesion, midline_shift_mm),
    ]
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=context.identity.uid(f"lesion-{number}"),
            identifier=tracking_identifier(number, lesion),
        ),
        referenced_region=region,
        finding_type=concepts.FINDING,
        finding_category=concepts.FINDING_CATEGORY,
        finding_sites=[finding_site(lesion)],
        algorithm_id=context.algorithm(),
        measurements=measurements,
        qualitative_evaluations=_lesion_evaluations(lesion, midline_shift_mm) or None,
    )


def tracking_identifier(number: int, lesion: Lesion) -> str:
    """The lesion's number and place, "Lesion 2 (right parietal)": OHIF shows the tracking
    identifier as the measurement's label, and of the finding site only its anatomy (not its laterality),
    so the side is said here. No colon: OHIF reads "<tool tag>:<tool>" identifiers as its
    own annotations. A lesion that was not located is "Lesion 2", as before."""
    place = lesion.place
    if place is None:
        return f"Lesion {number}"
    approximate = ", approximate" if place.approximate else ""
    return f"Lesion {number} ({place_words(place)}{approximate})"


def finding_site(lesion: Lesion) -> hd.sr.FindingSite:
    """The lesion's region with its side (Laterality) and its relation to the inner
    table (Topographical Modifier); Brain for a lesion that was not located."""
    place = lesion.place
    if place is None:
        return hd.sr.FindingSite(concepts.FINDING_SITE)
    return hd.sr.FindingSite(
        anatomic_location=concepts.REGIONS[place.region],
        laterality=concepts.LATERALITIES.get(place.side),
        topographical_modifier=concepts.RELATIONS[place.relation],
    )


def _size_measurements(lesion: Lesion, midline_shift_mm: float | None) -> list[hd.sr.Measurement]:
    """The ABC/2 volume and an extra-axial collection's thickness where measured, and
    the study's midline shift (its size: the direction is an evaluation) in the group of
    the lesion taken to cause it."""
    sizes = []
    if lesion.abc2_volume_ml is not None:
        sizes.append(
            hd.sr.Measurement(
                name=concepts.ABC2_VOLUME,
                value=float(lesion.abc2_volume_ml),
                unit=concepts.MILLILITRE,
                method=concepts.ABC2_METHOD,
            )
        )
    if lesion.thickness_mm is not None:
        sizes.append(_measurement(concepts.THICKNESS, lesion.thickness_mm, concepts.MILLIMETRE))
    if midline_shift_mm is not None:
        sizes.append(
            _measurement(
                concepts.MIDLINE_SHIFT, round(abs(midline_shift_mm), 1), concepts.MILLIMETRE
            )
        )
    return sizes


def _lesion_evaluations(
    lesion: Lesion, midline_shift_mm: float | None
) -> list[hd.sr.QualitativeEvaluation]:
    """The severity band as a size, the side the midline is pushed to (a shift read as
    one: NO_SHIFT_BELOW_MM or more), and a flag on a location that is a best guess."""
    evaluations = []
    if lesion.severity:
        evaluations.append(
            hd.sr.QualitativeEvaluation(concepts.SEVERITY, concepts.SEVERITIES[lesion.severity])
        )
    side = shift_side(midline_shift_mm)
    if side is not None:
        evaluations.append(
            hd.sr.QualitativeEvaluation(
                concepts.MIDLINE_SHIFT_DIRECTION, concepts.LATERALITIES[side]
            )
        )
    if lesion.place is not None and lesion.place.approximate:
        evaluations.append(hd.sr.QualitativeEvaluation(concepts.SITE_CERTAINTY, concepts.UNCERTAIN))
    return evaluations


def _shift_owner(lesions: Sequence[Lesion], prediction: Findings) -> int | None:
    """Index of the reported lesion that carries the study's midline shift: the largest
    by volume, as the mass effect it causes; None when no shift was measured."""
    if prediction.midline_shift_mm is None or not lesions:
        return None
    return max(range(len(lesions)), key=lambda i: lesions[i].volume_ml)


def _study_evaluations(prediction: Findings, context: WriterContext) -> hd.sr.ContainerContentItem:
    """TID 1500's Qualitative Evaluations of the whole report: the finding present or
    absent (so a negative study says so explicitly), the impression line, the study
    probability against the threshold, the reading notes, the use statement, and the
    algorithm (TID 4019: name, version, parameters) so that a negative report, which has
    no measurement group to carry it, still names the exact model.

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
                name=concepts.IMPRESSION, value=prediction.impression(), relationship_type=contains
            ),
            hd.sr.TextContentItem(
                name=concepts.COMMENT,
                value=prediction.verdict(),
                relationship_type=contains,
            ),
            *(
                hd.sr.TextContentItem(name=concepts.COMMENT, value=note, relationship_type=contains)
                for note in prediction.notes
            ),
            hd.sr.TextContentItem(
                name=concepts.COMMENT, value=context.use_statement(), relationship_type=contains
            ),
            *context.algorithm(),
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
    shift_owner = _shift_owner(lesions, prediction)
    groups: list = [
        _lesion_group(
            n,
            lesion,
            headers[lesion.key_sop_instance_uid],
            context,
            prediction.midline_shift_mm if n - 1 == shift_owner else None,
        )
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
    if _uses_private_codes(sr):
        # Type 3, added as highdicom's documentation says optional attributes are.
        sr.CodingSchemeIdentificationSequence = [_private_scheme()]
    return sr


def _uses_private_codes(item: Dataset) -> bool:
    """Whether any concept name or value in the content tree is one of our private codes."""
    for child in item.get("ContentSequence", []):
        for keyword in ("ConceptNameCodeSequence", "ConceptCodeSequence"):
            if any(
                code.CodingSchemeDesignator == concepts.PRIVATE_SCHEME
                for code in child.get(keyword, [])
            ):
                return True
        if _uses_private_codes(child):
            return True
    return False


def _private_scheme() -> Dataset:
    """A Coding Scheme Identification item (SOP Common, PS3.3 C.12.1) naming our private
    scheme, which no registry holds."""
    scheme = Dataset()
    scheme.CodingSchemeDesignator = concepts.PRIVATE_SCHEME
    scheme.CodingSchemeName = concepts.PRIVATE_SCHEME_NAME
    scheme.CodingSchemeResponsibleOrganization = MANUFACTURER
    return scheme
