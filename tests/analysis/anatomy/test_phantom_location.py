"""Lesions and a midline shift located on phantom heads whose answers are known: each
case is rendered with lesions placed where asked (assistant/training/phantoms.py),
written as DICOM, read back on the anatomy's 128 grid, and every lesion placed by
`read_head`/`place_lesion` beside the truth of the blood under it.

Tolerances are what the phantom sets of bench/anatomy.py support (docs/benchmarks.md):
shifts within 1.5 mm of a known mass effect, under 2 mm (or not read) without one; mask
volumes within 10 %; ABC/2 within 30 % from 5 mL (its p90 error there is about 20 %).
"""

from __future__ import annotations

import pytest

from assistant.training.phantoms import PlacedLesion, placed
from tests.support.phantom_heads import ReadPhantom, read_phantom


@pytest.fixture(scope="module")
def lobar(tmp_path_factory: pytest.TempPathFactory) -> ReadPhantom:
    """Seed 147: 33 slices of 5.7 mm from below the skull base to the vertex."""
    lesions = [placed("frontal", "right", 25.0), placed("parietal", "left", 25.0)]
    return read_phantom(tmp_path_factory.mktemp("lobar"), 147, lesions)


@pytest.fixture(scope="module")
def fossa(tmp_path_factory: pytest.TempPathFactory) -> ReadPhantom:
    """Seed 120: 36 slices of 5.1 mm, the gantry tilted 11 degrees; a cerebellar
    haematoma and a long subdural crescent over the left hemisphere."""
    lesions = [
        placed("cerebellum", "left", 20.0),
        PlacedLesion("subdural", (0.9, 0.1, 0.62), 70.0),
    ]
    return read_phantom(tmp_path_factory.mktemp("fossa"), 120, lesions)


@pytest.fixture(scope="module")
def pushed_left(tmp_path_factory: pytest.TempPathFactory) -> ReadPhantom:
    """Seed 153: a large right parietal haematoma pushing the septum 8 mm to the left,
    the right ventricle narrowed by 30 %; a small epidural lens at the right frontal
    convexity."""
    lesions = [
        placed("parietal", "right", 35.0),
        PlacedLesion("epidural", (-0.6, -0.7, 0.65), 22.0),
    ]
    return read_phantom(tmp_path_factory.mktemp("pushed"), 153, lesions, shift_mm=8.0, compress=0.3)


@pytest.fixture(scope="module")
def pushed_right(tmp_path_factory: pytest.TempPathFactory) -> ReadPhantom:
    lesions = [placed("parietal", "left", 35.0)]
    return read_phantom(tmp_path_factory.mktemp("pushed-right"), 147, lesions, shift_mm=-6.0)


@pytest.mark.parametrize(("region", "side"), [("frontal", "right"), ("parietal", "left")])
def test_a_lobar_lesion_is_placed_on_its_side_and_lobe(
    lobar: ReadPhantom, region: str, side: str
) -> None:
    reading, truth = lobar.lesion(region=region)
    assert truth.side == side  # the phantom's own: +x is the patient's left
    assert (reading.side, reading.compartment, reading.region) == (side, "supratentorial", region)
    assert (reading.relation, reading.shape) == ("intra-axial", "")


def test_a_posterior_fossa_lesion_is_infratentorial(fossa: ReadPhantom) -> None:
    reading, truth = fossa.lesion(kind="intraparenchymal")
    assert (truth.compartment, truth.ambiguous, truth.region) == (
        "infratentorial",
        False,
        "cerebellum",
    )
    assert (reading.side, reading.compartment, reading.region) == (
        "left",
        "infratentorial",
        "cerebellum",
    )


@pytest.mark.parametrize(("case", "shift"), [("pushed_left", 8.0), ("pushed_right", -6.0)])
def test_a_mass_effect_is_read_within_one_and_a_half_mm_with_its_sign(
    request: pytest.FixtureRequest, case: str, shift: float
) -> None:
    """+ is towards the patient's left: a right-sided mass pushes the septum left."""
    phantom: ReadPhantom = request.getfixturevalue(case)
    assert phantom.case.shift_mm == shift
    assert phantom.shift_mm is not None
    assert abs(phantom.shift_mm - shift) <= 1.5


@pytest.mark.parametrize("case", ["lobar", "fossa"])
def test_without_a_mass_effect_the_shift_is_near_zero_or_not_read(
    request: pytest.FixtureRequest, case: str
) -> None:
    phantom: ReadPhantom = request.getfixturevalue(case)
    assert phantom.case.shift_mm == 0.0
    assert phantom.shift_mm is None or abs(phantom.shift_mm) < 2.0


def test_a_subdural_crescent_is_extra_axial_with_its_thickness(fossa: ReadPhantom) -> None:
    reading, truth = fossa.lesion(kind="subdural")
    assert truth.side == "left" and truth.thickness_mm > 10.0
    assert (reading.side, reading.relation, reading.shape) == ("left", "extra-axial", "crescent")
    # the grid's pixel is 1.7 mm: a thickness is read to about a pixel
    assert reading.thickness_mm == pytest.approx(truth.thickness_mm, abs=2.0)
    assert reading.severity == "large"  # 10 mm or more


def test_an_epidural_lens_is_extra_axial(pushed_left: ReadPhantom) -> None:
    reading, truth = pushed_left.lesion(kind="epidural")
    assert truth.side == "right"
    assert (reading.side, reading.relation, reading.shape) == ("right", "extra-axial", "lens")
    assert reading.thickness_mm == pytest.approx(truth.thickness_mm, abs=2.0)


@pytest.mark.parametrize("case", ["lobar", "fossa", "pushed_left", "pushed_right"])
def test_volumes_are_the_masks_and_abc2_is_near_them(
    request: pytest.FixtureRequest, case: str
) -> None:
    phantom: ReadPhantom = request.getfixturevalue(case)
    for reading, truth in phantom.lesions:
        if truth.volume_ml < 2.0:
            continue
        assert reading.volume_ml == pytest.approx(truth.volume_ml, rel=0.10)
        # on 5 mm slices a small lesion's C is a slab or two too long: ABC/2 from 5 mL
        if truth.kind == "intraparenchymal" and truth.volume_ml >= 5.0:
            assert reading.abc2_ml == pytest.approx(truth.volume_ml, rel=0.30)


def test_the_cases_are_what_the_tests_say(
    lobar: ReadPhantom, fossa: ReadPhantom, pushed_left: ReadPhantom
) -> None:
    """Whole heads: each series runs from below the skull base to the vertex."""
    for phantom in (lobar, fossa, pushed_left):
        case, head = phantom.case, phantom.case.head
        assert head is not None
        positions = case.acquisition.positions
        assert positions[0] < 0.1 * head.height and positions[-1] > 0.9 * head.height
    assert fossa.case.acquisition.gantry_tilt_degrees != 0.0
