"""Holes in a stack are found from the spacing (which may change along the series) and
from Images in Acquisition, and become the reader's warning."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread

from assistant.analysis.imaging import read_series
from assistant.analysis.imaging.gaps import find_gaps, gap_notes
from assistant.analysis.inference.predict import reading_notes
from tests.support.ct import dicom_files, shared_ct


def _copy_without(
    source: Path, target: Path, leave_out: set[int], images: int | None = None
) -> None:
    """Copy a series, leaving out the slices at these 0-based positions along the normal."""
    series = read_series(source)
    target.mkdir()
    for index, info in enumerate(series.slices):
        if index in leave_out:
            continue
        if images is None:
            shutil.copy(info.path, target / info.path.name)
        else:
            ds = dcmread(info.path)
            ds.ImagesInAcquisition = images
            ds.save_as(target / info.path.name)


def test_real_series_have_no_gaps() -> None:
    # The GE head changes from 4 mm to 7 mm (with one 1.1 mm step): not a hole.
    for name in ("ge_head_tilted", "philips_brain_phantom_5mm", "philips_phantom_141"):
        series = read_series(dicom_files(shared_ct(name)))
        assert find_gaps(series.positions) == [], name
        assert reading_notes(series) == [], name


@pytest.mark.parametrize("missing", [5, 20])  # one in the 4 mm part, one in the 7 mm part
def test_a_slice_missing_in_the_middle_is_a_gap(tmp_path: Path, missing: int) -> None:
    _copy_without(shared_ct("ge_head_tilted"), tmp_path / "s", {missing})
    series = read_series(tmp_path / "s")
    gaps = find_gaps(series.positions)
    assert [(g.after_index, g.missing) for g in gaps] == [(missing - 1, 1)]
    (note,) = reading_notes(series)
    assert note.startswith("Incomplete volume: about 1 slice missing between slices ")
    assert f"slices {missing} and {missing + 1}" in note


def test_two_slices_missing_together(tmp_path: Path) -> None:
    _copy_without(shared_ct("philips_brain_phantom_5mm"), tmp_path / "s", {10, 11})
    gaps = find_gaps(read_series(tmp_path / "s").positions)
    assert [(g.after_index, g.missing, round(g.end_mm - g.start_mm)) for g in gaps] == [(9, 2, 15)]


def test_a_slice_missing_at_an_end_shows_through_images_in_acquisition(tmp_path: Path) -> None:
    _copy_without(shared_ct("philips_brain_phantom_5mm"), tmp_path / "s", {12, 27}, images=28)
    (note,) = reading_notes(read_series(tmp_path / "s"))
    assert "about 1 slice missing between slices 12 and 13" in note
    assert "1 slice fewer than the 28 images the scanner made (missing at an end)" in note


def test_without_images_in_acquisition_an_end_is_not_guessed() -> None:
    positions = [0.0, 5.0, 10.0, 15.0]
    assert gap_notes(positions, [None] * 4) == []
    assert gap_notes(positions, [4, 4, 4, 4]) == []
    assert gap_notes(positions, [5, 6, 5, 5]) == []  # disagreeing values say nothing
    assert "1 slice fewer than the 5 images" in gap_notes(positions, [5] * 4)[0]


def test_a_wider_interval_near_an_end_is_not_a_gap() -> None:
    # The GE head's first 16 slices: 4 mm, a 1.1 mm step, then one 7 mm spacing at the end.
    positions = [4.0 * n for n in range(14)] + [52.0 + 1.08, 52.0 + 1.08 + 7.0]
    assert find_gaps(positions) == []
    assert [g.missing for g in find_gaps([0.0, 5.0, 10.0, 15.0, 25.0, 30.0, 35.0])] == [1]
    assert [g.missing for g in find_gaps([0.0, 5.0, 10.0, 15.0, 30.0, 35.0, 40.0])] == [2]


def test_a_lesion_beside_a_hole_is_not_measured_thicker(tmp_path: Path) -> None:
    from assistant.analysis.inference.predict import _lesions

    whole = read_series(shared_ct("philips_brain_phantom_5mm"))
    _copy_without(shared_ct("philips_brain_phantom_5mm"), tmp_path / "s", {10})
    holed = read_series(tmp_path / "s")

    def volume(series) -> float:  # type: ignore[no-untyped-def]
        masks = np.zeros((len(series.slices), 32, 32), dtype=bool)
        masks[9:11, 10:20, 10:20] = True  # the slices either side of the hole
        (lesion,), _ = _lesions(series, masks, np.full(len(series.slices), 0.9), 256)
        return lesion.volume_ml

    # Each slice stands for its 5 mm, with or without its neighbour missing.
    assert volume(holed) == pytest.approx(volume(whole), rel=1e-6)


@pytest.mark.parametrize(
    ("spacings", "holes"),
    [
        ([5, 5, 5, 10, 10, 10, 10, 5, 5, 5], [3, 4, 5, 6]),  # every other slice missing
        ([5, 5, 10, 5, 10, 5, 10, 5, 5], [2, 4, 6]),
        ([5, 10, 10, 5], [1, 2]),
        ([5, 5, 5, 5, 10, 10, 10, 10, 10], []),  # 5 mm then 10 mm to the end: a protocol
        ([10, 10, 10, 5, 5, 5, 5], []),  # and the other way round
        ([5, 5, 5, 5, 5, 5, 5, 10, 5], [7]),  # one slice missing near an end
    ],
)
def test_runs_of_holes_and_changes_of_interval(spacings: list[float], holes: list[int]) -> None:
    positions = np.concatenate([[0.0], np.cumsum(spacings)])
    assert [g.after_index for g in find_gaps(positions)] == holes
