"""The analysis grid (slices x size x size, the model's input) in patient coordinates.

DICOM's patient system is LPS: +x towards the patient's left, +y posterior, +z head.
A grid pixel (slice i, row r, column c) is the centre of a block of the original pixels;
its place is Image Position (Patient) of slice i plus the block centre's offsets along
Image Orientation (Patient). Gantry tilt needs nothing more: each slice has its own
origin and the row and column directions are the slice's own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from assistant.analysis.imaging.series import SeriesGeometry


@dataclass(frozen=True)
class PatientGrid:
    """Maps grid pixels to LPS millimetres."""

    #: Image Position (Patient) of each slice, in stack order: (n, 3).
    origins: np.ndarray
    #: Unit direction of increasing column (Image Orientation's first three values).
    along_row: np.ndarray
    #: Unit direction of increasing row (its last three).
    along_column: np.ndarray
    #: Original pixel spacing (between rows, between columns), mm.
    spacing: tuple[float, float]
    #: Original pixels per grid pixel (rows, columns).
    scale: tuple[float, float]
    size: int

    @classmethod
    def of(cls, series: SeriesGeometry, size: int) -> PatientGrid | None:
        """The grid of `series` resampled to size x size; None when a slice has no
        Image Position (Patient)."""
        origins = [s.origin for s in series.slices]
        if any(origin is None for origin in origins):
            return None
        orientation = np.asarray(series.orientation, dtype=float)
        return cls(
            origins=np.asarray(origins, dtype=float),
            along_row=orientation[:3] / np.linalg.norm(orientation[:3]),
            along_column=orientation[3:] / np.linalg.norm(orientation[3:]),
            spacing=series.pixel_spacing,
            scale=(series.rows / size, series.columns / size),
            size=size,
        )

    @property
    def normal(self) -> np.ndarray:
        """Unit normal of the slices (row direction x column direction): towards the head
        for an axial head-first stack."""
        normal = np.cross(self.along_row, self.along_column)
        return np.asarray(normal / np.linalg.norm(normal))

    @property
    def levels(self) -> np.ndarray:
        """Each slice's place along the normal, mm: heights are measured along the slice
        normal, not LPS z, so a tilted gantry (whose slices follow the skull base) and a
        head bent in the scanner read the same."""
        return np.asarray(self.origins @ self.normal)

    def spacings(self) -> np.ndarray:
        """The thickness of the slab each slice stands for (mm): half the distance to each
        neighbour, the single neighbour's distance at the ends; 1 mm for one slice."""
        levels = self.levels
        if len(levels) < 2:
            return np.ones(len(levels))
        gaps = np.abs(np.diff(levels))
        return np.concatenate([[gaps[0]], (gaps[:-1] + gaps[1:]) / 2, [gaps[-1]]])

    def to_pixels(self, index: int, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fractional (rows, columns) on the grid of LPS points in (the plane of) slice
        `index`: the inverse of `points`."""
        return self.to_pixels_from(self.origins[index], points)

    def to_pixels_from(
        self, origins: np.ndarray, points: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """`to_pixels` for points each in the plane of the slice whose origin is given
        (one origin, or one per point)."""
        rel = np.atleast_2d(points) - origins
        across = rel @ self.along_row
        down = rel @ self.along_column
        columns = (across / self.spacing[1] + 0.5) / self.scale[1] - 0.5
        rows = (down / self.spacing[0] + 0.5) / self.scale[0] - 0.5
        return rows, columns

    @property
    def pixel_mm(self) -> tuple[float, float]:
        """A grid pixel's (height, width) in mm."""
        return self.spacing[0] * self.scale[0], self.spacing[1] * self.scale[1]

    def points(self, slices: np.ndarray, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """LPS (k, 3) of grid pixels given by index arrays (columns may be fractional)."""
        down = ((np.asarray(rows, dtype=float) + 0.5) * self.scale[0] - 0.5) * self.spacing[0]
        across = ((np.asarray(columns, dtype=float) + 0.5) * self.scale[1] - 0.5) * self.spacing[1]
        return (
            self.origins[np.asarray(slices, dtype=int)]
            + across[:, None] * self.along_row
            + down[:, None] * self.along_column
        )
