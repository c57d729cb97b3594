"""Lesions located on a real head: the GE head CT (gantry tilted 18.5°), with a lesion
the test inserts on a known side and lobe, read by the bundled model end to end; and
the clean scan's midline, read by the anatomy alone.

Places on the GE head's images, at the 128 grid (slice in stack order, row, column),
picked by looking at the scan: columns run towards the patient's left (LPS)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from assistant.analysis.anatomy import PatientGrid, place_lesion, read_head
from assistant.analysis.anatomy.lesions import ANATOMY_SIZE, anatomy_slices
from assistant.analysis.imaging import read_series
from assistant.analysis.inference import predict_series
from assistant.analysis.model.folder import LoadedModel, load_model
from assistant.cli import _bundled_model
from tests.support.ct import insert_lesion, shared_ct

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bundled() -> LoadedModel:
    return load_model(_bundled_model())


@pytest.mark.parametrize(
    ("slice_row_column", "side", "region"),
    [((22, 62, 84), "left", "parietal"), ((16, 95, 48), "right", "occipital")],
    ids=["left-parietal", "right-occipital"],
)
def test_an_inserted_lesion_is_placed_on_its_side_and_lobe(
    bundled: LoadedModel,
    tmp_path: Path,
    slice_row_column: tuple[int, int, int],
    side: str,
    region: str,
) -> None:
    index, row, column = slice_row_column
    folder = tmp_path / "series"
    insert_lesion(
        shared_ct("ge_head_tilted"),
        folder,
        radius_mm=12,
        centre=(index, row / ANATOMY_SIZE, column / ANATOMY_SIZE),
    )
    findings = predict_series(bundled, folder)
    assert findings.positive and findings.anatomy_read
    largest = max(findings.lesions, key=lambda lesion: lesion.volume_ml)
    assert largest.first_slice <= index <= largest.last_slice
    assert largest.place is not None
    assert (largest.place.side, largest.place.compartment) == (side, "supratentorial")
    assert largest.place.region == region
    assert largest.place.relation == "intra-axial"
    assert largest.abc2_volume_ml is not None and largest.severity == "small"
    # the inserted blob pushes nothing: the clean head's midline stays where it was
    assert findings.midline_shift_mm is not None and abs(findings.midline_shift_mm) < 2.0
    assert findings.impression().startswith(f"Small {side} {region} intraparenchymal")
    assert "no midline shift" in findings.impression()


def test_the_clean_scan_has_no_midline_shift() -> None:
    series = read_series(shared_ct("ge_head_tilted"))
    hu, cavity = anatomy_slices(series)
    grid = PatientGrid.of(series, ANATOMY_SIZE)
    assert grid is not None
    head = read_head(hu, cavity, grid)
    assert head is not None and head.midline is not None
    assert head.shift_mm is not None and abs(head.shift_mm) < 2.0
    # the heights rest on landmarks the scan shows: the skull base and the ventricles
    assert head.landmarks.base_top is not None and head.landmarks.septum_floor is not None


@pytest.mark.parametrize(
    ("slice_row_column", "side", "compartment", "region"),
    [
        ((6, 95, 52), "right", "infratentorial", "cerebellum"),
        ((6, 95, 76), "left", "infratentorial", "cerebellum"),
        ((8, 50, 40), "right", "supratentorial", "temporal"),
        ((18, 32, 50), "right", "supratentorial", "frontal"),
    ],
    ids=["right-cerebellum", "left-cerebellum", "right-temporal", "right-frontal"],
)
def test_a_region_on_the_real_head_is_named_by_the_rules(
    slice_row_column: tuple[int, int, int], side: str, compartment: str, region: str
) -> None:
    """The posterior fossa is where the bundled model (trained on phantoms) misses
    inserted blobs: the rules are checked on the mask itself (an 8 mm disc on three
    slices within the cavity)."""
    series = read_series(shared_ct("ge_head_tilted"))
    hu, cavity = anatomy_slices(series)
    grid = PatientGrid.of(series, ANATOMY_SIZE)
    assert grid is not None
    head = read_head(hu, cavity, grid)
    assert head is not None
    index, row, column = slice_row_column
    rows, columns = np.indices((ANATOMY_SIZE, ANATOMY_SIZE))
    disc = np.hypot(rows - row, columns - column) <= 8.0 / grid.pixel_mm[1]
    lesion = np.zeros_like(cavity)
    for near in (index - 1, index, index + 1):
        lesion[near] = disc & cavity[near]
    reading = place_lesion(head, lesion)
    assert (reading.side, reading.compartment, reading.region) == (side, compartment, region)
