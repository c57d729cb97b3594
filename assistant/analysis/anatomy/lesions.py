"""The model's lesions, placed in the head: the step between the masks and the findings.

Given the slices the model read (HU and cavity on the anatomy grid, kept while the model
read them) and the lesion label volume at the mask head's size, every lesion gets its
place (side, compartment, region, relation), its ABC/2 volume, an extra-axial
collection's thickness and its severity, and the series its midline shift. Locating is
an addition to the verdict: where it cannot be done (no patient coordinates, no cavity:
not a head) the findings say so by `anatomy_read` being False and keep everything else.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np

from assistant.analysis.anatomy.grid import PatientGrid
from assistant.analysis.anatomy.location import place_lesion, read_head, severity
from assistant.analysis.imaging.series import SeriesGeometry
from assistant.findings import Lesion

logger = logging.getLogger(__name__)

#: The grid the anatomy is read on: at 256, noise split the CSF pools into false pairs
#: more often, and 128 read the GE head's and the phantoms' shifts better (docs/research.md).
ANATOMY_SIZE = 128
#: At most this many lesions (the surest first) are placed; the SR lists ten.
MAX_PLACED = 20


@dataclass(frozen=True)
class Located:
    """The lesions with their places, the midline shift, and whether the anatomy was read."""

    lesions: list[Lesion]
    midline_shift_mm: float | None
    anatomy_read: bool


def anatomy_slices(series: SeriesGeometry) -> tuple[np.ndarray, np.ndarray]:
    """The HU and cavity of every slice on the anatomy grid, read on their own (the
    analysis keeps them while the model reads the slices; benchmarks and tests that
    place lesions without a model read them here)."""
    shape = (len(series.slices), ANATOMY_SIZE, ANATOMY_SIZE)
    hu, cavity = np.empty(shape, dtype=np.float32), np.empty(shape, dtype=bool)
    buffer = series.pixel_buffer()
    for index in range(len(series.slices)):
        series.model_slice(
            index, ANATOMY_SIZE, buffer=buffer, keep_hu=hu[index], keep_cavity=cavity[index]
        )
    return hu, cavity


def locate_lesions(
    series: SeriesGeometry,
    hu: np.ndarray,
    cavity: np.ndarray,
    labels: np.ndarray,
    lesions: list[Lesion],
) -> Located:
    """Place `lesions` (label k in `labels`, (n, m, m), is lesion k) in the head read from
    `hu` and `cavity` ((n, ANATOMY_SIZE, ANATOMY_SIZE), slice order as `series`)."""
    grid = PatientGrid.of(series, hu.shape[-1])
    if grid is None:
        logger.info("lesions not located: a slice has no Image Position (Patient)")
        return Located(lesions, None, False)
    head = read_head(hu, cavity, grid)
    if head is None:
        logger.info("lesions not located: no intracranial cavity found")
        return Located(lesions, None, False)
    # each anatomy pixel takes the label of the mask pixel it lies in
    to_mask = np.arange(hu.shape[-1]) * labels.shape[-1] // hu.shape[-1]
    on_grid = labels[:, to_mask][:, :, to_mask]
    placed = []
    for lesion in lesions:
        if lesion.label > MAX_PLACED:
            placed.append(lesion)
            continue
        mask = on_grid == lesion.label
        if not mask.any():
            placed.append(lesion)
            continue
        reading = place_lesion(head, mask)
        thickness = reading.thickness_mm if reading.relation == "extra-axial" else None
        placed.append(
            replace(
                lesion,
                place=reading.place,
                abc2_volume_ml=reading.abc2_ml,
                thickness_mm=thickness,
                # by the volume the findings report, so the band and the number agree
                severity=severity(
                    reading.relation, lesion.volume_ml, reading.thickness_mm, head.shift_mm
                ),
            )
        )
    return Located(placed, head.shift_mm, True)
