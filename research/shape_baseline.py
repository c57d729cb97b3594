"""A yardstick for models of binary shapes (MedMNIST 3D masks): logistic regression on
47 plain shape measures, everything chosen on val, test scored once.

Why: a CNN's test AUC says little until one knows what simple measures of the same
masks give. On AdrenalMNIST3D (28³) the surface-to-volume ratio alone ranks the test
split with an AUC of 0.86 and this baseline with 0.91, above our CNN-RNN's 0.89; a
reader should see that beside the model's figures (bench/medmnist.py prints it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from scipy.spatial import ConvexHull

from assistant.training.metrics import (
    BinaryMetrics,
    accuracy_threshold,
    binary_metrics,
    bootstrap_intervals,
    roc_auc,
)

#: Radii (voxels) of the balls that open the shape (what share of it survives: how
#: much of it is thicker than the ball) and close it (how much its dents fill).
OPENING_RADII = (1.0, 1.5, 2.0, 2.5, 3.0)
CLOSING_RADII = (1.0, 1.5, 2.0)
#: Squared distances to the surface (voxels²) at which the "core" is counted: on a
#: grid they take the values 1, 2, 3, 4, 5, 6, 8, 9, ... so these are the first rings in.
CORE_DEPTHS_SQUARED = (2, 3, 4, 5, 6, 8, 9)
MEASURES = (
    "log volume",
    "log surface",
    "surface / volume^(2/3)",
    "surface / volume",
    "deepest point",
    *(f"log core at depth² >= {k}" for k in CORE_DEPTHS_SQUARED),
    "components",
    "largest component share",
    "log second component",
    *(f"log extent {axis}" for axis in (1, 2, 3)),
    "closing gain",
    "mean depth",
    "depth sd",
    *(f"opened by r={r:g}" for r in OPENING_RADII),
    *(f"closed by r={r:g}" for r in CLOSING_RADII),
    *(
        f"{name} along axis {axis}"
        for name in ("thickness", "log largest section", "section cv", "log projection")
        for axis in (0, 1, 2)
    ),
    "elongation",
    "flatness",
    *(f"main axis cosine {axis}" for axis in (0, 1, 2)),
    "solidity",
)
#: Voxels of dilation then erosion for "closing gain": how much gaps and dents fill.
CLOSING_ITERATIONS = 2
#: Empty voxels around the shape: room for the largest ball to open or close it.
PADDING = 4
#: L2 penalties tried; the one with the best validation AUC is kept.
PENALTIES = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)


def _ball(radius: float) -> np.ndarray:
    """The voxels within `radius` of a centre voxel: a structuring element."""
    reach = int(radius)
    grid = np.indices((2 * reach + 1,) * 3) - reach
    return (grid**2).sum(axis=0) <= radius**2


def _sections(mask: np.ndarray, volume: int) -> list[float]:
    """Per axis: the mean thickness along it (volume over the area it projects to),
    the largest section across it, how much sections vary, and the projected area.
    The masks are cropped in one orientation, so an axis is a direction in the body."""
    thickness, largest, variation, projection = [], [], [], []
    for axis in range(3):
        areas = mask.sum(axis=tuple(other for other in range(3) if other != axis))
        areas = areas[areas > 0]
        projected = int(mask.any(axis=axis).sum())
        thickness.append(volume / projected)
        largest.append(np.log1p(areas.max()))
        variation.append(areas.std() / areas.mean())
        projection.append(np.log1p(projected))
    return [*thickness, *largest, *variation, *projection]


def _solidity(coordinates: np.ndarray, volume: int) -> float:
    """The volume over that of the convex hull of the voxels' corners (never flat: each
    voxel brings a unit cube's eight)."""
    corners = np.unique(
        (coordinates[:, None, :] + np.indices((2, 2, 2)).reshape(3, -1).T[None]).reshape(-1, 3),
        axis=0,
    )
    return volume / ConvexHull(corners).volume


def shape_measures(mask: np.ndarray) -> np.ndarray:
    """The measures named in MEASURES of one 3D binary mask (True inside)."""
    mask = np.asarray(mask, dtype=bool)
    volume = int(mask.sum())
    if volume == 0:
        return np.zeros(len(MEASURES))
    # Room outside the shape for the closings and openings below (they erode from the
    # array's edge).
    padded = np.pad(mask, PADDING)
    # Faces a voxel shares with the outside: the surface area in voxel faces.
    surface = sum(
        int((padded & ~np.roll(padded, shift, axis)).sum())
        for axis in range(3)
        for shift in (1, -1)
    )
    depth = ndimage.distance_transform_edt(padded)
    inside_depth = depth[padded]
    depth_squared = np.rint(inside_depth**2).astype(int)
    cores = [np.log1p((depth_squared >= k).sum()) for k in CORE_DEPTHS_SQUARED]
    labelled, components = ndimage.label(mask)
    sizes = np.sort(np.bincount(labelled.ravel())[1:])[::-1]
    coordinates = np.argwhere(mask).astype(np.float64)
    if volume > 3:
        spread, directions = np.linalg.eigh(np.cov(coordinates.T))
    else:
        spread, directions = np.zeros(3), np.eye(3)
    spread = np.clip(spread[::-1], 0, None)  # largest first
    extents = np.log1p(np.sqrt(spread))
    elongation, flatness = np.sqrt(
        np.clip(spread[1:], 1e-6, None) / np.clip(spread[:2], 1e-6, None)
    )
    closed = int(ndimage.binary_closing(padded, iterations=CLOSING_ITERATIONS).sum())
    opened = [
        ndimage.binary_opening(padded, structure=_ball(r)).sum() / volume for r in OPENING_RADII
    ]
    closed_by_ball = [
        ndimage.binary_closing(padded, structure=_ball(r)).sum() / volume for r in CLOSING_RADII
    ]
    return np.array(
        [
            np.log1p(volume),
            np.log1p(surface),
            surface / volume ** (2 / 3),
            surface / volume,
            float(depth.max()),
            *cores,
            components,
            sizes[0] / volume,
            np.log1p(sizes[1] if len(sizes) > 1 else 0),
            *extents,
            closed / volume,
            inside_depth.mean(),
            inside_depth.std(),
            *opened,
            *closed_by_ball,
            *_sections(mask, volume),
            elongation,
            flatness,
            *np.abs(directions[:, -1]),
            _solidity(coordinates, volume),
        ]
    )


def measure_all(volumes: np.ndarray, level: float = 127.0) -> np.ndarray:
    """(N, D, H, W) volumes → (N, len(MEASURES)); a voxel is inside above `level`."""
    return np.stack([shape_measures(volume > level) for volume in volumes])


@dataclass(frozen=True)
class LogisticModel:
    """Standardised measures → a logit."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float

    def scores(self, measures: np.ndarray) -> np.ndarray:
        return ((measures - self.mean) / self.scale) @ self.weights + self.bias


def fit_logistic(measures: np.ndarray, labels: np.ndarray, penalty: float) -> LogisticModel:
    """L2-penalised logistic regression, fitted to convergence with L-BFGS (deterministic:
    no seed, no mini-batches)."""
    mean, scale = measures.mean(axis=0), measures.std(axis=0) + 1e-6
    x = torch.from_numpy((measures - mean) / scale)
    y = torch.from_numpy(np.asarray(labels, dtype=np.float64))
    weights = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS(
        [weights, bias], max_iter=1000, tolerance_grad=1e-9, line_search_fn="strong_wolfe"
    )

    def loss() -> torch.Tensor:
        optimiser.zero_grad()
        logits = x @ weights + bias
        value = torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
        value = value + penalty * (weights**2).sum()
        value.backward()
        return value

    optimiser.step(loss)
    return LogisticModel(mean, scale, weights.detach().numpy(), float(bias.item()))


@dataclass(frozen=True)
class BaselineResult:
    penalty: float
    val_auc: float
    test: BinaryMetrics
    test_ci95: dict[str, tuple[float, float]]
    #: Each measure's own test AUC (above 0.5: larger means positive).
    single_measure_auc: dict[str, float]


def shape_baseline(
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    resamples: int = 1000,
) -> BaselineResult:
    """(measures, labels) per split → the baseline's test metrics: the penalty and the
    threshold (the most accurate on val) are chosen on val, test is scored once."""
    fits = [fit_logistic(*train, penalty) for penalty in PENALTIES]
    val_aucs = [roc_auc(val[1], fit.scores(val[0])) for fit in fits]
    best = int(np.argmax(val_aucs))
    model = fits[best]
    threshold = accuracy_threshold(val[1], model.scores(val[0]))
    test_scores = model.scores(test[0])
    return BaselineResult(
        penalty=PENALTIES[best],
        val_auc=val_aucs[best],
        test=binary_metrics(test[1], test_scores, threshold),
        test_ci95=bootstrap_intervals(test[1], test_scores, threshold, resamples)
        if resamples
        else {},
        single_measure_auc={
            name: roc_auc(test[1], test[0][:, index]) for index, name in enumerate(MEASURES)
        },
    )
