"""Phantom heads read by the anatomy: a case rendered with lesions placed where asked
(and a mass effect), written as DICOM, read back on the anatomy's 128 grid as the node
reads a series, its lesions placed one by one, each beside its truth."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from assistant.analysis.anatomy import Head, LesionReading, PatientGrid, place_lesion, read_head
from assistant.analysis.imaging import read_series
from assistant.analysis.imaging.cavity import intracranial_mask
from assistant.training.phantom_dicom import write_case
from assistant.training.phantoms import LesionTruth, PhantomCase, PlacedLesion, make_case

GRID = 128


@dataclass(frozen=True)
class ReadPhantom:
    case: PhantomCase
    head: Head | None
    #: One per lesion on the grid, largest first, with the truth of the blood under it.
    lesions: list[tuple[LesionReading, LesionTruth]]

    @property
    def shift_mm(self) -> float | None:
        return None if self.head is None else self.head.shift_mm

    def lesion(self, kind: str = "", region: str = "") -> tuple[LesionReading, LesionTruth]:
        """The largest lesion of a kind and/or placed in a region."""
        for reading, truth in self.lesions:
            if kind in ("", truth.kind) and region in ("", truth.region):
                return reading, truth
        raise LookupError(f"no {kind or 'lesion'} {region} on the grid")


def read_phantom(
    folder: Path,
    seed: int,
    lesions: Sequence[PlacedLesion],
    shift_mm: float = 0.0,
    compress: float = 0.0,
    matrix: int = 256,
) -> ReadPhantom:
    """Render (at `matrix`: 256 keeps the noise on the grid near a 512 scan's and takes a
    third of the time), write into `folder`, read back and place every lesion."""
    case = make_case(
        seed, True, matrix=matrix, lesions=lesions, shift_mm=shift_mm, compress=compress
    )
    write_case(case, folder)
    series = read_series(folder)
    hu = np.stack([series.hu_resized(i, GRID) for i in range(len(series.slices))])
    grid = PatientGrid.of(series, GRID)
    assert grid is not None
    cavity = np.stack([intracranial_mask(h, grid.pixel_mm[1]) for h in hu])
    head = read_head(hu, cavity, grid)
    # the blood mask on the grid: a block counts when half of it is blood
    factor = matrix // GRID
    share = case.mask.reshape(len(hu), GRID, factor, GRID, factor).mean(axis=(2, 4))
    labels, count = ndimage.label(share >= 0.5, structure=np.ones((3, 3, 3), bool))
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    placed = []
    for k in np.argsort(-sizes, kind="stable") + 1:
        piece = labels == k
        under = piece.repeat(factor, axis=1).repeat(factor, axis=2)
        under = ndimage.binary_dilation(under, structure=np.ones((1, 3, 3), bool)) & case.mask
        assert head is not None
        placed.append((place_lesion(head, piece), case.truth(under)))
    return ReadPhantom(case, head, placed)
