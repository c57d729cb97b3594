"""Lesion outlines drawn from the coarse mask: what the SR's polyline, the key image and
the dashboard show, so they must follow the mask's edge, not cut into it."""

from __future__ import annotations

import numpy as np
import pytest

from assistant.analysis.inference.predict import OUTLINE_POINTS, _outline


def _radii(points: list[tuple[float, float]], centre: tuple[float, float]) -> np.ndarray:
    xy = np.asarray(points)
    return np.hypot(xy[:, 0] - centre[0], xy[:, 1] - centre[1])


@pytest.mark.parametrize("radius", [1.5, 2.0, 2.5, 3.0, 4.0, 6.0])
def test_a_round_lesion_gets_a_round_outline(radius: float) -> None:
    """Lesions are 2-6 mask pixels across; every point lies on the disk's edge, within
    the half pixel its staircase allows (the farthest-pixel-per-sector outline this
    replaced fell to the centre wherever a sector held no rim pixel)."""
    rows, cols = np.mgrid[:32, :32]
    disk = (rows - 15) ** 2 + (cols - 15) ** 2 <= radius**2
    points = _outline(disk, 1.0)
    assert len(points) == OUTLINE_POINTS
    radii = _radii(points, (15.5, 15.5))  # pixel (15, 15) spans 15-16 in image units
    assert radii.min() > radius - 0.5 and radii.max() < radius + 0.75, radii.round(2)


def test_the_outline_is_in_image_pixels() -> None:
    """One mask pixel at row 3, column 4, read at 4 image pixels per mask pixel, covers
    image x 16-20, y 12-16: its outline stays inside that square around its centre."""
    single = np.zeros((8, 8), dtype=bool)
    single[3, 4] = True
    xy = np.asarray(_outline(single, 4.0))
    assert np.all((xy[:, 0] >= 16) & (xy[:, 0] <= 20) & (xy[:, 1] >= 12) & (xy[:, 1] <= 16))
    assert np.allclose(xy.mean(axis=0), (18, 14), atol=0.1)
    assert np.ptp(xy[:, 0]) >= 1.9  # a diamond reaching half the pixel each way, not a dot


def test_a_crescent_whose_centroid_lies_outside_it_is_still_outlined() -> None:
    """An extra-axial collection along the inner table is a crescent: its rays start
    outside it, and the outline still reaches its far edge on every ray that meets it."""
    rows, cols = np.mgrid[:32, :32]
    distance = np.hypot(rows - 16, cols - 16)
    crescent = (distance >= 9) & (distance <= 11) & (rows < 16)
    points = np.asarray(_outline(crescent, 1.0))
    inside_box = (
        (points[:, 0] >= 4) & (points[:, 0] <= 29) & (points[:, 1] >= 4) & (points[:, 1] <= 17)
    )
    assert inside_box.all()
    assert _radii(points.tolist(), (16.5, 16.5)).max() > 10.5  # its outer edge is reached
