"""The shape-measure baseline printed beside the CNN-RNN's AdrenalMNIST3D figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from assistant.training.metrics import roc_auc
from research.shape_baseline import (
    MEASURES,
    fit_logistic,
    measure_all,
    shape_baseline,
    shape_measures,
)

MEDMNIST = Path(__file__).resolve().parents[3] / "shared/data/medmnist/adrenalmnist3d.npz"


def _measure(mask: np.ndarray, name: str) -> float:
    return float(shape_measures(mask)[MEASURES.index(name)])


def _ball(radius: float, size: int = 28) -> np.ndarray:
    grid = np.indices((size, size, size)) - (size - 1) / 2
    return (grid**2).sum(axis=0) <= radius**2


def test_a_cube_has_its_faces_and_volume() -> None:
    cube = np.zeros((6, 6, 6), bool)
    cube[1:3, 1:3, 1:3] = True
    assert _measure(cube, "log volume") == pytest.approx(np.log1p(8))
    assert _measure(cube, "log surface") == pytest.approx(np.log1p(24))
    assert _measure(cube, "surface / volume") == pytest.approx(3.0)
    assert _measure(cube, "components") == 1
    # A shape touching the array's edge is measured as if the outside went on.
    corner = np.zeros((4, 4, 4), bool)
    corner[:2, :2, :2] = True
    assert np.allclose(shape_measures(corner), shape_measures(cube))


def test_a_ball_is_more_compact_and_deeper_than_a_plate_of_its_volume() -> None:
    ball = _ball(5.0)
    plate = np.zeros_like(ball)
    side = int(np.sqrt(ball.sum() / 2))
    plate[13:15, 2 : 2 + side, 2 : 2 + side] = True
    assert abs(int(plate.sum()) - int(ball.sum())) < 0.2 * ball.sum()
    name = "surface / volume^(2/3)"
    assert _measure(ball, name) < 0.8 * _measure(plate, name)
    assert _measure(ball, "deepest point") >= 4.0 > 2.0 >= _measure(plate, "deepest point")


def test_components_are_counted_and_shared() -> None:
    two = np.zeros((20, 20, 20), bool)
    two[2:8, 2:8, 2:8] = True  # 216 voxels
    two[12:15, 12:15, 12:15] = True  # 27 voxels
    assert _measure(two, "components") == 2
    assert _measure(two, "largest component share") == pytest.approx(216 / 243)
    assert _measure(two, "log second component") == pytest.approx(np.log1p(27))
    assert not shape_measures(np.zeros((5, 5, 5), bool)).any()


def test_openings_keep_what_is_thicker_than_the_ball() -> None:
    ball = _ball(5.0)
    plate = np.zeros_like(ball)
    plate[13:16, 4:24, 4:24] = True  # 3 voxels thick
    assert _measure(ball, "opened by r=2") > 0.9
    # The radius-1 ball is a cross 3 voxels across: the plate holds it (all but its
    # rim), a plate 2 voxels thick does not, and neither holds one 5 voxels across.
    assert _measure(plate, "opened by r=1") > 0.8
    assert _measure(plate, "opened by r=2") == 0.0
    thin = np.zeros_like(ball)
    thin[13:15, 4:24, 4:24] = True
    assert _measure(thin, "opened by r=1") == 0.0
    assert _measure(ball, "mean depth") > 1.5 * _measure(thin, "mean depth")


def test_sections_say_how_thick_the_shape_is_along_each_axis() -> None:
    plate = np.zeros((28, 28, 28), bool)
    plate[13:15, 4:24, 4:24] = True
    assert _measure(plate, "thickness along axis 0") == pytest.approx(2.0)
    assert _measure(plate, "thickness along axis 1") == pytest.approx(20.0)
    assert _measure(plate, "log largest section along axis 0") == pytest.approx(np.log1p(400))
    assert _measure(plate, "section cv along axis 0") == pytest.approx(0.0)
    assert _measure(plate, "log projection along axis 2") == pytest.approx(np.log1p(40))
    # A bar along axis 2: that is where its main axis points, and it is long and thin.
    bar = np.zeros((28, 28, 28), bool)
    bar[12:15, 12:15, 2:26] = True
    assert _measure(bar, "main axis cosine 2") == pytest.approx(1.0)
    assert _measure(bar, "elongation") < 0.2
    assert _measure(bar, "flatness") == pytest.approx(1.0)


def test_solidity_is_one_for_a_box_and_less_for_an_l() -> None:
    box = np.zeros((10, 10, 10), bool)
    box[2:6, 2:8, 3:5] = True
    assert _measure(box, "solidity") == pytest.approx(1.0)
    ell = box.copy()
    ell[4:6, 2:6, 3:5] = False  # a notch out of one corner
    assert 0.6 < _measure(ell, "solidity") < 0.95


def test_the_logistic_fit_learns_a_separable_rule_and_is_deterministic() -> None:
    rng = np.random.default_rng(0)
    measures = rng.normal(size=(200, 3))
    labels = (measures[:, 1] - 0.5 * measures[:, 2] > 0).astype(int)
    first, second = fit_logistic(measures, labels, 1e-3), fit_logistic(measures, labels, 1e-3)
    assert roc_auc(labels, first.scores(measures)) > 0.99
    assert np.array_equal(first.weights, second.weights)
    assert abs(first.weights[0]) < 0.2 * abs(first.weights[1])  # the noise column


@pytest.mark.skipif(not MEDMNIST.is_file(), reason=f"{MEDMNIST} is absent")
def test_on_adrenalmnist3d_the_baseline_gives_the_figures_in_the_readme() -> None:
    with np.load(MEDMNIST) as data:
        splits = {
            split: (measure_all(data[f"{split}_images"]), data[f"{split}_labels"].ravel())
            for split in ("train", "val", "test")
        }
    result = shape_baseline(splits["train"], splits["val"], splits["test"], resamples=200)
    assert result.penalty == 3e-3
    assert result.test.auc == pytest.approx(0.908, abs=0.002)
    assert result.test.accuracy == pytest.approx(0.849, abs=0.002)
    low, high = result.test_ci95["auc"]
    assert low < result.test.auc < high
    # More surface per voxel (a thinner gland) means normal: the ratio alone ranks well,
    # and the mean depth inside the shape (a thicker gland) ranks better.
    assert result.single_measure_auc["surface / volume"] < 0.2
    assert result.single_measure_auc["mean depth"] > 0.87
