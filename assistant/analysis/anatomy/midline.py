"""The brain's midsagittal plane, and how far the midline structures are pushed off it.

**Plane.** The plane is fitted to the intracranial cavity's mirror symmetry, not to the
image centre. A first plane joins the midpoints of the cavity's image rows; on a head
turned in the scanner those midpoints lie on the outline's conjugate diameter, not its
axis of symmetry (on the GE head, turned about 10 degrees, that plane was 7-13 degrees
off the falx), so the plane is then moved (offset, turn, tilt) to map the cavity's
outline onto itself by reflection: over up to 12 slices spread over the series' height
whose cavity is large (3000 mm² and 35 % of the largest), one piece and nearly convex (the
skull base's patchwork is left out), the mean distance of the reflected outline points
from the outline (each truncated at 8 mm) is minimised, first on a grid (turns within 25
degrees, offsets within 15 mm, 3 apart), then by Nelder-Mead. A mean above 3 mm keeps the
first plane.

**Midline shift** is the septum pellucidum's displacement from the plane, where a
radiologist measures it, on the grid the model read (128: at 256 noise split the CSF
pools into false pairs more often). Slices: those holding 3000 mm² of cavity, 10 mm or
more above the top of the skull base when one is found (`above`; the basal cisterns
beside the third ventricle read like two ventricles), with CSF pools (CSF: -5 HU up to
12 HU, or up to the slice's median brain less 12 HU when that is higher, at most 18 HU;
away from the inner table; blobs of 10 mm² or more) of 80 mm² or more in the front
12-62 % of the cavity along the plane within 40 mm of it. That span is resampled in the
plane's frame (0.5 mm steps along and across); the septum is found line by line across
the plane between the two lateral ventricles (`_septum_lines`: gaps of brain between
CSF runs, ridges inside one run, the heaviest 5 mm band along the slice, then a check
that the CSF on either side looks like two ventricles); a slice needs 8 mm of septum,
within 20 mm of the plane. The series' shift is the weighted median of the slices'
medians (weights: septum length), averaged over the slices within 3 mm of it; it is
None when fewer than 12 mm of septum were found in all, when the slices within 3 mm
hold less than 60 % of it, or when their spread exceeds 2 mm: no number rather than a
wrong one. Positive is towards the patient's left (LPS +x).

The plane, not a falx line found per slice, is the reference: the cavity's symmetry
plane passes through the falx's anterior and posterior attachments on a symmetric skull;
a falx ridge searched for in the images moved the GE head's reading by up to 3 mm. A
midline shift larger than 20 mm, or one that effaces a ventricle entirely, is not read
(None).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage, optimize
from scipy.spatial import ConvexHull, QhullError

from assistant.analysis.anatomy.grid import PatientGrid

#: CSF on a non-contrast CT (HU): water is 0; brain is 25-40, and its noisiest tenth
#: reaches 15, so the upper limit stays below.
CSF_HU = (-5.0, 12.0)
#: The upper limit rises with the slice's median brain density (minus 12 HU) up to this.
CSF_MAX_HU = 18.0
#: How far from the plane the lateral ventricles are looked for, mm.
VENTRICLE_REACH_MM = 40.0
#: Fewer cavity pixels than this on a row, and its midpoint is not used.
_MIN_ROW_PIXELS = 8
#: A lateral ventricle needs this much CSF (mm²) on its side of a slice to count.
_MIN_VENTRICLE_MM2 = 20.0
#: Mirror search: how far from the first plane (degrees, mm), and the worst mean distance
#: (mm) of the reflected outlines from the outlines for the plane to be kept.
_MIRROR_DEGREES, _MIRROR_MM, _MIRROR_COST = 25.0, 15.0, 3.0
#: Slices whose cavity is at least this large (mm², and this share of the largest) are
#: searched for their mirror line.
_MIRROR_AREA_MM2, _MIRROR_AREA_SHARE = 3000.0, 0.35
#: At most this many slices, spread over the series' height, are searched.
_MIRROR_SLICES = 12
#: The resampling step of the septum search, mm.
STEP_MM = 0.5
#: The septum search: the part of the cavity (front to back) that holds the septum, the
#: widest brain between the ventricles, the farthest septum from the plane (mm).
SEPTUM_SPAN = (0.12, 0.62)
SEPTUM_MAX_GAP_MM = 24.0
SEPTUM_MAX_SHIFT_MM = 20.0
#: A lateral ventricle's part in that span is a CSF pool of this many mm² or more (the
#: basal cisterns' pools are smaller).
SEPTUM_POOL_MM2 = 40.0
#: Septum needed: per slice, and in all (mm); the most the slices may disagree (mm).
SEPTUM_SLICE_MM, SEPTUM_TOTAL_MM, SEPTUM_SPREAD_MM = 8.0, 12.0, 2.0


@dataclass(frozen=True)
class Midline:
    """The midsagittal plane: x = a + b·y + c·z in LPS millimetres."""

    a: float
    b: float
    c: float

    def distance(self, points: np.ndarray) -> np.ndarray:
        """Signed distance (mm) of LPS points from the plane; positive on the patient's
        left."""
        points = np.atleast_2d(points)
        offset = points[:, 0] - (self.a + self.b * points[:, 1] + self.c * points[:, 2])
        return np.asarray(offset / np.sqrt(1.0 + self.b**2 + self.c**2))

    @property
    def normal(self) -> np.ndarray:
        """Unit normal, towards the patient's left."""
        n = np.array([1.0, -self.b, -self.c])
        return np.asarray(n / np.linalg.norm(n))


@dataclass(frozen=True)
class SeptumReading:
    """The septum on one slice: its median offset from the plane and how much was seen."""

    index: int
    offset_mm: float
    length_mm: float


def fit_midline(cavity: np.ndarray, grid: PatientGrid) -> Midline | None:
    """The cavity's mirror plane; None without enough brain (see the module's docstring)."""
    first = _row_plane(cavity, grid)
    if first is None:
        return None
    outlines = _outlines(cavity, grid)
    if len(outlines) < 2:
        return first

    # All outlines at once (one interpolation a step: the search takes ~250 steps): each
    # point's slice and that slice's origin. The distance maps are laid one under the
    # other in one image (a 2D interpolation is half the work of a 3D one); a point off
    # its own map reads 20 mm, as off the image.
    points = np.concatenate([p for _, p, _ in outlines])
    height, width = outlines[0][2].shape
    mosaic = np.concatenate([d for _, _, d in outlines])
    layer = np.concatenate([np.full(len(p), k) for k, (_, p, _) in enumerate(outlines)])
    origins = grid.origins[np.array([index for index, _, _ in outlines])][layer]
    counts = np.bincount(layer)

    def cost(params: np.ndarray) -> float:
        midline = _plane(first, params)
        moved = points - 2 * midline.distance(points)[:, None] * midline.normal
        rows, columns = grid.to_pixels_from(origins, moved)
        values = ndimage.map_coordinates(
            mosaic, [rows + layer * height, columns], order=1, cval=20.0
        )
        values[(rows < 0) | (rows > height - 1) | (columns < 0) | (columns > width - 1)] = 20.0
        means = np.bincount(layer, weights=np.minimum(values, 8.0)) / counts
        return float(means.mean())

    # coarse: the turn (the first plane's is biased) and the offset; then all three
    starts = [
        np.array([offset, turn, 0.0])
        for turn in np.arange(-_MIRROR_DEGREES, _MIRROR_DEGREES + 1e-9, 3.0)
        for offset in np.arange(-_MIRROR_MM, _MIRROR_MM + 1e-9, 3.0)
    ]
    best = min(starts, key=cost)
    simplex = [best + step for step in np.array([[0, 0, 0], [2.0, 0, 0], [0, 1.5, 0], [0, 0, 1.5]])]
    result = optimize.minimize(
        cost,
        best,
        method="Nelder-Mead",
        options={"initial_simplex": simplex, "xatol": 0.05, "fatol": 1e-4, "maxiter": 300},
    )
    if result.fun > _MIRROR_COST:
        return first
    return _plane(first, result.x)


def _plane(first: Midline, params: np.ndarray) -> Midline:
    """The first plane moved by (offset mm along x, turn about z and tilt, degrees)."""
    offset, turn, tilt = (float(v) for v in params)
    b = float(np.tan(np.arctan(first.b) + np.radians(turn)))
    c = float(np.tan(np.arctan(first.c) + np.radians(tilt)))
    return Midline(first.a + offset, b, c)


def _outlines(cavity: np.ndarray, grid: PatientGrid) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """Per slice used for the mirror fit: its index, its outline's points (LPS) and the
    distance (mm) of each pixel from the outline. Slices whose cavity is large, one piece
    (90 % of it) and nearly convex (85 % of its hull): not the skull base's patchwork."""
    height, width = grid.pixel_mm
    areas = cavity.reshape(len(cavity), -1).sum(axis=1) * height * width
    eligible = np.flatnonzero(areas >= max(_MIRROR_AREA_MM2, _MIRROR_AREA_SHARE * areas.max()))
    if len(eligible) > _MIRROR_SLICES:  # spread over the series' height
        levels = grid.levels[eligible]
        targets = np.linspace(levels.min(), levels.max(), _MIRROR_SLICES)
        eligible = np.unique([eligible[int(np.argmin(np.abs(levels - t)))] for t in targets])
    outlines = []
    for index in eligible:
        labels, _ = ndimage.label(cavity[index])
        sizes = np.bincount(labels.ravel())[1:]
        piece = labels == 1 + int(np.argmax(sizes))
        if sizes.max() < 0.9 * sizes.sum() or piece.sum() < 0.85 * _hull_area(piece):
            continue
        edge = piece & ~ndimage.binary_erosion(piece)
        rows, columns = np.nonzero(edge)
        distance = ndimage.distance_transform_edt(~edge, sampling=(height, width))
        outlines.append(
            (int(index), grid.points(np.full(len(rows), index), rows, columns), distance)
        )
    return outlines


def _hull_area(mask: np.ndarray) -> float:
    """Pixels inside the convex hull of a mask's pixels."""
    rows, columns = np.nonzero(mask)
    try:
        return float(
            ConvexHull(np.column_stack([rows, columns]).astype(float)).volume
        ) + 0.5 * np.sqrt(len(rows))
    except (QhullError, ValueError):
        return float(mask.sum())


def _row_plane(cavity: np.ndarray, grid: PatientGrid) -> Midline | None:
    """The plane through the midpoints of the cavity's image rows."""
    slices, rows = np.nonzero(cavity.sum(axis=2) >= _MIN_ROW_PIXELS)
    if len(slices) < 20:
        return None
    lines = cavity[slices, rows]  # each such row's pixels, in order of slice and row
    first = np.argmax(lines, axis=1)
    last = lines.shape[1] - 1 - np.argmax(lines[:, ::-1], axis=1)
    return _robust_plane(grid.points(slices, rows, (first + last) / 2.0))


def _robust_plane(points: np.ndarray) -> Midline | None:
    keep = np.ones(len(points), dtype=bool)
    coefficients = np.zeros(3)
    for _ in range(3):
        if keep.sum() < 20:
            return None
        design = np.column_stack([np.ones(keep.sum()), points[keep, 1], points[keep, 2]])
        coefficients, *_ = np.linalg.lstsq(design, points[keep, 0], rcond=None)
        residual = points[:, 0] - (
            coefficients[0] + coefficients[1] * points[:, 1] + coefficients[2] * points[:, 2]
        )
        spread = 1.4826 * float(np.median(np.abs(residual[keep]))) + 0.5
        keep = np.abs(residual) <= 3 * spread
    return Midline(float(coefficients[0]), float(coefficients[1]), float(coefficients[2]))


def slice_frame(
    grid: PatientGrid, midline: Midline, index: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The plane's frame on slice `index` (LPS): a point of the plane in the slice, the
    unit direction along the plane's trace (towards the back of the head) and the unit
    direction across it (towards the patient's left)."""
    normal = grid.normal
    along = np.cross(normal, midline.normal)
    along /= np.linalg.norm(along)
    if along[1] < 0:
        along = -along
    across = np.cross(along, normal)
    if across @ midline.normal < 0:
        across = -across
    centre = (grid.size - 1) / 2
    point = grid.points(np.array([index]), np.array([centre]), np.array([centre]))[0]
    point = point - midline.distance(point)[0] * across / float(across @ midline.normal)
    return point, along, across


def straighten(
    image: np.ndarray,
    grid: PatientGrid,
    midline: Midline,
    index: int,
    along_mm: tuple[float, float],
    across_mm: tuple[float, float],
    step: float = STEP_MM,
    order: int = 1,
    outside: float = -1000.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slice `index` of `image` resampled in the plane's frame: (along, across, values)
    with values[i, j] at along[i] mm (back +) and across[j] mm (left +) of the plane."""
    s, u, rows, columns = _frame_pixels(grid, midline, index, along_mm, across_mm, step)
    return s, u, _resample(image, rows, columns, order, outside)


def _frame_pixels(
    grid: PatientGrid,
    midline: Midline,
    index: int,
    along_mm: tuple[float, float],
    across_mm: tuple[float, float],
    step: float = STEP_MM,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(along, across, rows, columns): the grid pixel (fractional) at each point of the
    plane's frame on slice `index`. A pixel's place is affine in the frame's
    coordinates, so it is worked out from the frame's axes, not point by point."""
    point, along, across = slice_frame(grid, midline, index)
    s = np.arange(along_mm[0], along_mm[1] + 1e-9, step)
    u = np.arange(across_mm[0], across_mm[1] + 1e-9, step)
    base_rows, base_columns = grid.to_pixels(index, point)
    rows_per_mm = grid.spacing[0] * grid.scale[0]
    columns_per_mm = grid.spacing[1] * grid.scale[1]
    rows = (
        base_rows[0]
        + (
            s[:, None] * float(along @ grid.along_column)
            + u[None, :] * float(across @ grid.along_column)
        )
        / rows_per_mm
    )
    columns = (
        base_columns[0]
        + (s[:, None] * float(along @ grid.along_row) + u[None, :] * float(across @ grid.along_row))
        / columns_per_mm
    )
    return s, u, rows, columns


def _resample(
    image: np.ndarray, rows: np.ndarray, columns: np.ndarray, order: int, outside: float
) -> np.ndarray:
    values = ndimage.map_coordinates(
        np.asarray(image, dtype=np.float32),
        [rows.ravel(), columns.ravel()],
        order=order,
        cval=outside,
    )
    return np.asarray(values.reshape(rows.shape))


def septum_readings(
    hu: np.ndarray,
    cavity: np.ndarray,
    grid: PatientGrid,
    midline: Midline,
    above: float | None = None,
) -> list[SeptumReading]:
    """The septum on each slice that shows it (see the module's docstring); with
    `above` (a level along the slice normal, mm: the top of the skull base and a margin),
    only on slices above it: the basal cisterns beside the third ventricle and the
    midbrain read like two ventricles."""
    height, width = grid.pixel_mm
    levels = grid.levels
    readings = []
    for index in range(len(cavity)):
        if cavity[index].sum() * height * width < _MIRROR_AREA_MM2:
            continue
        if above is not None and levels[index] <= above:
            continue
        csf = _ventricles(hu[index], cavity[index], height * width, max(1, round(10 / width)))
        brain = float(np.median(hu[index][cavity[index]]))
        if csf.sum() * height * width < 100.0:
            continue
        # the cavity's extent along the plane, then the septum's span of it
        s, _, inside = straighten(
            cavity[index], grid, midline, index, (-150.0, 150.0), (0.0, 0.0), order=0, outside=0
        )
        along = s[inside[:, 0] > 0.5]
        if len(along) < 40:
            continue
        front, length = float(along[0]), float(along[-1] - along[0])
        span = (front + SEPTUM_SPAN[0] * length, front + SEPTUM_SPAN[1] * length)
        across = (-VENTRICLE_REACH_MM, VENTRICLE_REACH_MM)
        s, u, rows, columns = _frame_pixels(grid, midline, index, span, across)
        image = _resample(hu[index], rows, columns, order=1, outside=-1000.0)
        pools = _resample(csf, rows, columns, order=0, outside=0) > 0.5
        if pools.sum() * STEP_MM**2 < 2 * SEPTUM_POOL_MM2:
            continue
        found = [
            offset
            for offset in _septum_lines(image, pools, u, brain)
            if abs(offset) <= SEPTUM_MAX_SHIFT_MM
        ]
        if len(found) * STEP_MM >= SEPTUM_SLICE_MM:
            readings.append(SeptumReading(index, float(np.median(found)), len(found) * STEP_MM))
    return readings


def shift_of(readings: list[SeptumReading]) -> float | None:
    """The series' shift from its slices' septum readings; None when they are too few or
    disagree."""
    if not readings:
        return None
    values = np.array([r.offset_mm for r in readings])
    weights = np.array([r.length_mm for r in readings])
    if weights.sum() < SEPTUM_TOTAL_MM:
        return None
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    median = float(values[order][np.searchsorted(cumulative, 0.5 * cumulative[-1])])
    close = np.abs(values - median) <= 3.0
    if weights[close].sum() < 0.6 * weights.sum():
        return None
    spread = float(np.sqrt(np.average((values[close] - median) ** 2, weights=weights[close])))
    if spread > SEPTUM_SPREAD_MM:
        return None
    return round(float(np.average(values[close], weights=weights[close])), 1)


def _runs_by_line(mask: np.ndarray) -> dict[int, list[tuple[int, int]]]:
    """Per line (row) of a 2D mask that has any, the (first, last) indices of its runs of
    True, in order: `_runs` of every line at once."""
    change = np.diff(np.pad(mask.astype(np.int8), ((0, 0), (1, 1))), axis=1)
    starts_line, starts = np.nonzero(change == 1)
    _, ends = np.nonzero(change == -1)  # row-major: each line's ends follow its starts
    runs: dict[int, list[tuple[int, int]]] = {}
    for k, a, b in zip(starts_line.tolist(), starts.tolist(), (ends - 1).tolist(), strict=True):
        runs.setdefault(k, []).append((a, b))
    return runs


def _septum_lines(
    image: np.ndarray, pools: np.ndarray, u: np.ndarray, brain_hu: float
) -> list[float]:
    """The septum's offsets (mm) on the lines across the plane that cross both lateral
    ventricles.

    Only CSF pools of 40 mm² or more count (the ventricles in the span). On each line,
    every gap of brain (at most 24 mm: the phantoms' septal gap reaches 20) between two
    runs of those pools is a candidate, its middle taken at half height between CSF and
    the gap's density, weighed by the gap's contrast over the runs' CSF (5 HU at least: a
    hole of noise in one ventricle is not a septum); so is a ridge of 4 HU or more inside
    a run 6 mm wide or more (two ventricles run together at the grid's resolution),
    weighed by its prominence. The septum is the 5 mm band, along the slice, of the
    largest total weight (one candidate a line): a calcified choroid plexus splitting one
    ventricle, or a cistern beside the third ventricle, weighs less. The CSF on either
    side must then look like the two lateral ventricles (`_ventricles_agree`), or the
    slice gives nothing."""
    labels, count = ndimage.label(pools)
    if count == 0:
        return []
    areas = np.bincount(labels.ravel(), minlength=count + 1) * STEP_MM**2
    big = areas >= SEPTUM_POOL_MM2
    big[0] = False
    labels = np.where(big[labels], labels, 0)
    smooth = ndimage.gaussian_filter1d(image, 0.6 / STEP_MM, axis=1)
    wide = round(2.0 / STEP_MM)
    # (line, offset, weight, pool on the right, pool on the left)
    candidates: list[tuple[int, float, float, int, int]] = []
    for k, line_runs in _runs_by_line(labels > 0).items():
        runs = [(a, b) for a, b in line_runs if (b - a + 1) * STEP_MM >= 1.5]
        line = smooth[k]
        for (a1, b1), (a2, b2) in itertools.pairwise(runs):
            if (a2 - b1) * STEP_MM > SEPTUM_MAX_GAP_MM:
                continue
            csf = 0.5 * (float(line[a1 : b1 + 1].mean()) + float(line[a2 : b2 + 1].mean()))
            peak = float(line[b1 : a2 + 1].max())
            if peak - csf < 5.0:
                continue
            level = 0.5 * (peak + float(min(line[b1], line[a2])))
            i0, i1 = b1, a2
            while i0 < a2 and line[i0 + 1] < level:
                i0 += 1
            while i1 > b1 and line[i1 - 1] < level:
                i1 -= 1
            left_edge = _crossing(line, u, i0, i0 + 1, level) if i0 < a2 else u[i0]
            right_edge = _crossing(line, u, i1, i1 - 1, level) if i1 > b1 else u[i1]
            candidates.append(
                (
                    k,
                    0.5 * (left_edge + right_edge),
                    peak - csf,
                    int(labels[k, b1]),
                    int(labels[k, a2]),
                )
            )
        for a, b in runs:
            low, high = a + wide, b - wide
            if (b - a + 1) * STEP_MM < 6.0 or high <= low:
                continue
            j = low + int(np.argmax(line[low : high + 1]))
            prominence = float(line[j]) - max(
                float(line[a:j].min()), float(line[j + 1 : b + 1].min())
            )
            if prominence < 4.0:
                continue
            curve = line[j - 1] - 2 * line[j] + line[j + 1]
            shift = 0.0
            if curve < 0:
                shift = float(np.clip(0.5 * (line[j - 1] - line[j + 1]) / curve, -0.5, 0.5))
            pool = int(labels[k, j])
            candidates.append((k, float(u[j] + shift * STEP_MM), prominence, pool, pool))
    candidates = [c for c in candidates if abs(c[1]) <= SEPTUM_MAX_SHIFT_MM]
    if not candidates:
        return []
    # the heaviest 5 mm band, one candidate (the heaviest) a line: for every band centre
    # at once, each line's heaviest candidate in the band, summed over the lines
    lines = np.array([c[0] for c in candidates])
    order = np.argsort(lines, kind="stable")
    values = np.array([c[1] for c in candidates])[order]
    weights = np.array([c[2] for c in candidates])[order]
    starts = np.flatnonzero(np.concatenate([[True], np.diff(lines[order]) != 0]))
    centres = np.arange(-SEPTUM_MAX_SHIFT_MM, SEPTUM_MAX_SHIFT_MM + 1e-9, 0.25)
    in_band = np.abs(values[None, :] - centres[:, None]) <= 2.5
    heaviest = np.maximum.reduceat(np.where(in_band, weights, 0.0), starts, axis=1)
    best_centre = float(centres[int(np.argmax(heaviest.sum(axis=1)))])
    chosen: dict[int, tuple[float, float, int, int]] = {}
    for k, v, w, right, left in candidates:
        if abs(v - best_centre) <= 2.5 and (k not in chosen or w > chosen[k][1]):
            chosen[k] = (v, w, right, left)
    if not chosen or not _ventricles_agree(image, labels, u, chosen, brain_hu):
        return []
    return [v for v, _, _, _ in chosen.values()]


def _ventricles_agree(
    image: np.ndarray,
    labels: np.ndarray,
    u: np.ndarray,
    chosen: dict[int, tuple[float, float, int, int]],
    brain_hu: float,
) -> bool:
    """The CSF on either side of the septum looks like the two lateral ventricles: the
    pools beside it (the commonest on each side; one pool split at the septum where the
    ventricles run together) have centres whose middle, over the septum's lines, lies
    within 5 mm of the septum (a compressed ventricle keeps its septal wall), and their
    CSF is 8 HU or more below the slice's brain."""
    rights = [right for _, _, right, _ in chosen.values()]
    lefts = [left for _, _, _, left in chosen.values()]
    right = max(set(rights), key=rights.count)
    left = max(set(lefts), key=lefts.count)
    right_centres, left_centres, values = [], [], []
    for k, (v, _, _, _) in chosen.items():
        r = np.flatnonzero((labels[k] == right) & (u < v))
        lft = np.flatnonzero((labels[k] == left) & (u > v))
        if len(r) and len(lft):
            right_centres.append(float(u[r].mean()))
            left_centres.append(float(u[lft].mean()))
            values.extend(image[k, r].tolist() + image[k, lft].tolist())
    if len(right_centres) < 0.7 * len(chosen):
        return False
    middle = 0.5 * (float(np.median(right_centres)) + float(np.median(left_centres)))
    septum = float(np.median([v for v, _, _, _ in chosen.values()]))
    if abs(middle - septum) > 5.0:
        return False
    return float(np.mean(values)) <= brain_hu - 8.0


def _crossing(line: np.ndarray, u: np.ndarray, i0: int, i1: int, level: float) -> float:
    v0, v1 = float(line[i0]), float(line[i1])
    fraction = 0.5 if v1 == v0 else float(np.clip((level - v0) / (v1 - v0), 0.0, 1.0))
    return float(u[i0] + fraction * (u[i1] - u[i0]))


def _ventricles(hu: np.ndarray, cavity: np.ndarray, pixel_mm2: float, rim: int) -> np.ndarray:
    """CSF pools of one slice: CSF density, away from the inner table (the subarachnoid
    spaces are CSF too), in blobs of a ventricle's size (brain noise makes single
    pixels of CSF density)."""
    upper = CSF_HU[1]
    if cavity.any():  # a brain whose white matter reads low: CSF up to 12 HU below its median
        upper = float(np.clip(np.median(hu[cavity]) - 12.0, CSF_HU[1], CSF_MAX_HU))
    csf = cavity & (hu >= CSF_HU[0]) & (hu <= upper)
    csf &= ndimage.binary_erosion(cavity, iterations=max(1, rim))
    csf = ndimage.binary_opening(csf)
    labels, count = ndimage.label(csf)
    if count == 0:
        return csf
    areas = np.bincount(labels.ravel(), minlength=count + 1) * pixel_mm2
    keep = areas >= _MIN_VENTRICLE_MM2 / 2
    keep[0] = False
    return np.asarray(keep[labels])
