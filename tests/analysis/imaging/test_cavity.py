"""The intracranial cavity: what a model with input_mask "intracranial" reads of a slice."""

from __future__ import annotations

import numpy as np
import pytest

from assistant.analysis.imaging import INTRACRANIAL, apply_input_mask, read_series
from assistant.analysis.imaging.cavity import BONE_HU, OUTSIDE_HU, intracranial_mask
from assistant.training.phantoms import FINDING_KINDS, MATRIX, make_case
from tests.support.ct import shared_ct


@pytest.fixture(scope="module")
def ge_head():
    return read_series(shared_ct("ge_head_tilted"))


def test_mid_head_cavity_is_the_brain_and_nothing_outside_the_skull(ge_head) -> None:
    index = len(ge_head.slices) * 2 // 3  # above the ventricles
    hu = ge_head.hu_resized(index, 256)
    pixel_mm = ge_head.pixel_spacing[1] * ge_head.columns / 256
    inside = intracranial_mask(hu, pixel_mm)
    area_cm2 = inside.sum() * pixel_mm**2 / 100
    assert 80 < area_cm2 < 200, area_cm2  # an adult brain's cross-section at that level
    assert not (hu[inside] > BONE_HU).any()  # bone itself is outside
    assert np.median(hu[inside]) == pytest.approx(32, abs=12)  # brain, not scalp or air
    # Soft tissue outside the skull (scalp, muscle) is not in the cavity.
    rows, cols = np.nonzero(hu > BONE_HU)
    outer = (hu > -200) & (hu < 100)
    outer[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] = False
    assert outer.any() and not (inside & outer).any()


def test_every_slice_is_blanked_outside_its_cavity(ge_head) -> None:
    size = 128
    pixel_mm = ge_head.pixel_spacing[1] * ge_head.columns / size
    for index in range(len(ge_head.slices)):
        hu = ge_head.hu_resized(index, size)
        inside = intracranial_mask(hu, pixel_mm)
        channels = ge_head.model_slice(index, size, input_mask=INTRACRANIAL)
        assert (channels[:, ~inside] == 0).all()  # air in every window
        plain = ge_head.model_slice(index, size)
        assert np.array_equal(channels[:, inside], plain[:, inside])


def test_a_slice_without_bone_has_no_cavity() -> None:
    soft = np.full((128, 128), 40.0, dtype=np.float32)
    assert not intracranial_mask(soft, 1.8).any()
    blanked = apply_input_mask(soft.copy(), INTRACRANIAL, 1.8)
    assert (blanked == OUTSIDE_HU).all()


def test_unknown_input_mask_is_refused() -> None:
    with pytest.raises(ValueError, match="input mask"):
        apply_input_mask(np.zeros((8, 8), dtype=np.float32), "skull", 1.0)


@pytest.mark.parametrize("seed", range(6))
def test_blood_of_every_kind_stays_inside_the_cavity(seed: int) -> None:
    """The mask must never hide a finding, including blood against the inner table.

    Blood pixels blurred with the skull until they read as bone are not counted: those
    are outside by definition, and read as bone to any model."""
    case = make_case(100 + seed, True, max_slices=24, matrix=128, lesion_sizes=(8, 30))
    pixel_mm = case.acquisition.pixel_spacing * MATRIX / 128
    blood = kept = 0
    for hu, mask in zip(case.hu, case.mask, strict=True):
        visible = mask & (hu <= BONE_HU)
        blood += visible.sum()
        kept += (visible & intracranial_mask(hu, pixel_mm)).sum()
    assert {lesion.kind for lesion in case.lesions} <= set(FINDING_KINDS)
    assert blood and kept / blood > 0.97, (kept, blood, [lesion.kind for lesion in case.lesions])
