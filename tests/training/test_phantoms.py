"""Synthetic head CT phantoms: deterministic, realistic HU, masks where the blood is."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from assistant.training import phantoms
from assistant.training.montage import write_montage
from assistant.training.phantoms import FINDING_KINDS, make_case, slice_profile


def test_same_seed_same_case() -> None:
    a, b = (
        make_case(11, True, max_slices=12, matrix=128),
        make_case(11, True, max_slices=12, matrix=128),
    )
    assert np.array_equal(a.hu, b.hu) and np.array_equal(a.mask, b.mask)
    assert not np.array_equal(a.hu, make_case(12, True, max_slices=12, matrix=128).hu)


@pytest.mark.parametrize("size", [128, 512])
def test_fields_upsample_by_linear_interpolation(size: int) -> None:
    """A field's slice is its coarse plane interpolated linearly in both axes, corner to
    corner: the same as scipy's order-1 resampling at those positions."""
    plane = np.random.default_rng(size).standard_normal((48, 48)).astype(np.float32)
    positions = np.linspace(0, 47, size)
    rows, cols = np.meshgrid(positions, positions, indexing="ij")
    expected = ndimage.map_coordinates(plane, [rows, cols], order=1)
    upsampled = phantoms._upsample(plane, *phantoms._upsampler(48, size))
    assert upsampled.shape == (size, size) and upsampled.dtype == np.float32
    assert np.allclose(upsampled, expected, atol=1e-5)
    assert upsampled[0, 0] == plane[0, 0] and upsampled[-1, -1] == plane[-1, -1]
    whole, window = (slice(None), slice(None)), (slice(3, 40), slice(10, 17))
    # heights 0, 0.25, ...
    field = phantoms._Field(np.random.default_rng(1), (5, 48, 48), size, whole)
    windowed = phantoms._Field(np.random.default_rng(1), (5, 48, 48), size, window)
    below, above = (
        phantoms._upsample(field.coarse[i], *phantoms._upsampler(48, size)) for i in (1, 2)
    )
    assert np.array_equal(field.slice(0.25), below)
    assert np.allclose(field.slice(0.375), (below + above) / 2, atol=1e-6)
    assert np.array_equal(windowed.slice(0.25), below[window])


def test_the_head_window_changes_no_pixel(monkeypatch: pytest.MonkeyPatch) -> None:
    """The anatomy is computed inside the head's window only: every slice and mask is
    the one computing it over the whole image gives, to the bit (every finding kind,
    tilted gantries, the face and neck below the skull base and the vertex above)."""
    windows = []

    def spy(*args: object) -> tuple[slice, slice]:
        windows.append(real(*args))
        return windows[-1]

    real = phantoms._head_window
    monkeypatch.setattr(phantoms, "_head_window", spy)
    cases = [make_case(seed, seed % 3 != 0, max_slices=40, matrix=256) for seed in range(12)]
    kinds = {lesion.kind for case in cases for lesion in case.lesions}
    assert kinds == set(FINDING_KINDS)
    assert any(case.acquisition.gantry_tilt_degrees for case in cases)
    # The window is a real crop: the head leaves a good part of the field of view out.
    assert all((w[0].stop - w[0].start) * (w[1].stop - w[1].start) < 0.8 * 256**2 for w in windows)
    monkeypatch.setattr(phantoms, "_head_window", lambda *args: (slice(None), slice(None)))
    for seed, case in enumerate(cases):
        whole = make_case(seed, seed % 3 != 0, max_slices=40, matrix=256)
        assert np.array_equal(case.hu, whole.hu) and np.array_equal(case.mask, whole.mask)


def test_hounsfield_units_of_a_head() -> None:
    case = make_case(3, False, max_slices=24, matrix=256)
    hu = case.hu
    assert hu.shape[1:] == (256, 256)
    assert np.percentile(hu, 5) < -900  # air around the head
    assert hu.max() > 900  # skull
    middle = hu[len(hu) // 2, 100:156, 100:156]  # brain at mid-head
    assert 15 < np.median(middle) < 45
    assert not case.label and not case.mask.any()


@pytest.mark.parametrize("seed", [1, 5, 9])
def test_positive_cases_have_blood_where_the_mask_says(seed: int) -> None:
    case = make_case(seed, True, max_slices=32, matrix=256)
    assert case.label and case.slice_labels.any() and 1 <= len(case.lesions) <= 3
    blood = case.hu[case.mask]
    if blood.size >= 50:  # a few-pixel collection at the inner table reads as bone
        assert 35 < np.median(blood) < 100  # 50-90 HU blood plus noise and partial volume
    else:
        assert np.percentile(blood, 10) > 35
    assert all(lesion.kind in FINDING_KINDS for lesion in case.lesions)


def test_labelled_blood_never_reads_as_bone() -> None:
    """Blood in a pixel mostly of the inner table reads as bone: it is not labelled (it
    was, and taught the model that bright partial volume at the skull is blood)."""
    for seed in range(8):
        case = make_case(seed, True, max_slices=24, matrix=128)
        assert case.mask.any()
        assert np.percentile(case.hu[case.mask], 99) < 300


@pytest.mark.parametrize("thickness", [0.6, 2.5, 5.0, 7.0])
def test_the_slice_profile_is_a_box_with_soft_edges(thickness: float) -> None:
    box_offsets, box = slice_profile(thickness, 0.0)
    assert math.isclose(box.sum(), 1.0) and np.all(np.abs(box_offsets) <= thickness / 2)
    assert np.allclose(box, box[0])  # a flat box: every section alike
    offsets, weights = slice_profile(thickness, 0.3 * thickness)
    assert math.isclose(weights.sum(), 1.0) and np.allclose(weights, weights[::-1])
    assert np.abs(offsets).max() > thickness / 2  # tails beyond the nominal slab
    assert np.diff(offsets).max() <= phantoms.SECTION_MM + 1e-9
    if thickness >= 2.5:  # sampled finely enough to see: most weight stays inside
        assert 0.7 < weights[np.abs(offsets) <= thickness / 2].sum() < 0.95


def _last_island_near_bone(hu: np.ndarray, pixel_mm: float) -> float:
    """Median HU of the brain 2-5 mm from the bone around the largest island."""
    bone = hu > 300
    islands, count = ndimage.label(ndimage.binary_fill_holes(bone) & ~bone)
    sizes = ndimage.sum(islands > 0, islands, range(1, count + 1))
    island = islands == 1 + int(np.argmax(sizes))
    depth = ndimage.distance_transform_edt(island) * pixel_mm
    return float(np.median(hu[(depth > 2) & (depth <= 5)]))


def test_soft_slice_edges_brighten_the_brain_under_the_vertex() -> None:
    """A helical scan's profile reaches the dome above the last island of brain: bone
    partial volume brightens it millimetres in from its edge, as on real heads; an axial
    profile leaves it at brain density."""
    rng = np.random.default_rng(0)
    head = phantoms._draw_head(rng)
    drawn = phantoms._draw_acquisition(rng, head, 48)
    readings = {}
    for sigma in (0.0, 1.4):
        acquisition = replace(
            drawn, slice_thickness=4.0, profile_sigma=sigma, gantry_tilt_degrees=0.0
        )
        maker = phantoms._SliceMaker(np.random.default_rng(1), head, acquisition, (), 256)
        hu, _ = maker.make(head.height - 12.0)
        readings[sigma] = _last_island_near_bone(hu, maker.spacing)
    assert readings[0.0] < 60  # brain with a little partial volume
    assert readings[1.4] > readings[0.0] + 30


def test_acquisitions_vary_like_real_scanners() -> None:
    acquisitions = [
        make_case(s, s % 2 == 0, max_slices=16, matrix=64).acquisition for s in range(40)
    ]
    assert (
        min(a.slice_thickness for a in acquisitions) < 1.5
        and max(a.slice_thickness for a in acquisitions) > 4
    )
    assert {a.storage for a in acquisitions} == {"int16", "uint16"}
    assert any(a.gantry_tilt_degrees != 0 for a in acquisitions)
    assert all(0.4 <= a.pixel_spacing <= 0.5 for a in acquisitions)
    soft = [a.profile_sigma / a.slice_thickness for a in acquisitions]
    assert min(soft) < 0.1 and max(soft) > 0.3  # axial and helical slice profiles
    assert any(np.ptp(np.diff(a.positions)) > 0.5 for a in acquisitions)  # irregular spacing


def test_montage_is_a_png(tmp_path: Path) -> None:
    cases = [make_case(s, s == 1, max_slices=8, matrix=128) for s in (1, 2)]
    path = write_montage(cases, tmp_path / "montage.png", slices_per_case=3, size=64)
    with Image.open(path) as image:
        assert image.size == (3 * 64, 2 * 64)


def test_short_slabs_cross_the_brain_whatever_the_label() -> None:
    """A 24-slice slab cannot hold a whole thin-slice head: it must lie over the brain
    (with the first lesion inside it), and where it lies must not tell the label."""
    middles: dict[bool, list[float]] = {True: [], False: []}
    for seed in range(120):  # 60 a label: the medians' standard error is about 3 mm
        positive = seed % 2 == 0
        case = make_case(seed, positive, max_slices=24, matrix=32)
        positions = case.acquisition.positions
        if positive:
            assert positions[0] <= case.lesions[0].center[2] <= positions[-1]
        middles[positive].append(float(np.mean(positions)))
    # Brain levels are 40-120 mm above the skull base; necks lie below 0 (before slabs were
    # moved: medians 51 mm positive, 36 mm negative).
    assert min(np.median(middles[True]), np.median(middles[False])) > 50
    assert abs(np.median(middles[True]) - np.median(middles[False])) < 8
