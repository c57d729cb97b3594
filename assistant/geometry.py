"""Patient-space geometry of image slices (PS3.3 C.7.6.2.1.1), in one place for every
stage: the slice normal from Image Orientation (Patient), and a slice's position along it.

Plain floats, no numpy: intake runs this once per received instance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Vector = tuple[float, float, float]


def slice_normal(orientation: Sequence[float]) -> Vector:
    """The normal of the image plane: the cross product of the row and column directions (not normalised;
    unit length for a valid orientation). ValueError unless 6 values are given."""
    if len(orientation) != 6:
        raise ValueError(f"Image Orientation (Patient) has 6 values, not {len(orientation)}")
    r, c = [float(v) for v in orientation[:3]], [float(v) for v in orientation[3:]]
    return (r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0])


def position_along(normal: Sequence[float], position: Sequence[float]) -> float:
    """Where a slice at Image Position (Patient) `position` lies along `normal`, in mm."""
    return sum(float(n) * float(p) for n, p in zip(normal, position, strict=True))


def feet_head_cosine(orientation: Sequence[float]) -> float | None:
    """|cos| of the angle between the slice normal and the feet-head axis; None for a
    degenerate orientation (parallel or zero row and column directions)."""
    normal = slice_normal(orientation)
    length = math.hypot(*normal)
    return abs(normal[2]) / length if length else None
