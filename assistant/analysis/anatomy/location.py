"""One lesion in a radiologist's terms: side, compartment, region, relation to the inner
table, ABC/2 volume, thickness and severity.

Every rule is geometric, on the intracranial cavity found in the slices the model read,
in patient coordinates (LPS; see grid.py), and is stated here and in the model card.
Heights are measured along the slice normal (the scan plane follows the skull base; a
tilted gantry tilts it with the head), places within a slice in the midsagittal plane's
frame: "along" (front to back) and "across" (the signed distance from the plane).

- **Side**: the lesion's voxels by their distance from the midsagittal plane (midline.py):
  80 % or more on one side (beyond 2 mm) names that side; 20 % or more on each,
  "bilateral"; otherwise "midline".
- **Landmarks** (found on the slices; a series may hold none of them, a slab often holds
  one or two): the *skull base*, slices holding 2000 mm² of cavity or more with bone
  inside it (above 300 HU, 150 mm² or more, 4 mm or more inside the convex hull of the
  cavity's pieces of 400 mm² or more: petrous ridges, clivus, sphenoid), its top the
  highest such slice; the *lateral ventricles*, the lowest slice (10 mm or more above
  the skull base) where midline.py read the septum within 3 mm of the series' shift,
  over 15 mm of it or with another such slice within 12 mm above (a lone short reading
  may be a basal cistern); the *vertex*, the highest slice holding cavity when the
  series goes on above it and its cavity is under 30 % of the largest.
- **Height** (0 skull base .. 1 vertex, for the region limits): piecewise linear through
  the landmarks found, the top of the skull base at 0.31, the lowest septum at 0.50 and
  the vertex at 0.98 (where they lie on the phantoms, and near where they lie on the GE
  head); beyond the outermost landmark at the slope of the nearest segment (between
  1/160 and 1/110 per mm), or with one landmark only, 1/135 per mm (a typical cavity
  height of 135 mm). With no landmark the old rule stands (between the lowest and the
  highest slice holding cavity) and every region is "approximate".
- **Compartment**: at the skull base (the lesion's slice is a skull-base slice, or, with
  no cavity found on it at or below the top of the skull base, the nearest one within
  10 mm), infratentorial when intracranial bone lies ahead of the centre (20 mm² or more
  within 60 degrees of straight forward, 80 mm at most) and hardly any behind it (under
  40 mm² within 40 degrees of straight back): behind the petrous ridges and clivus; a
  temporal lobe has the petrous ridge behind it, a frontal lobe nothing ahead. In the
  tentorial band (up to 20 mm above the top of the skull base), infratentorial inside
  the tentorium's V: behind its apex at 0.52 of the cavity front to back, within 40
  degrees of the plane. Higher, supratentorial. With no skull base in the series:
  supratentorial at or above the lowest septum less 5 mm, within 60 mm of the vertex,
  or 20 mm or more above a first slice whose cavity is already large (60 % or more of
  the largest, no base bone: the slab starts above the skull base); otherwise the V rule
  decides and the compartment is "approximate". It is "approximate" too within 5 mm of
  the V's limbs or of the band's top, and with a bone count within a factor of 2 of its
  limits.
- **Region**: the centre's place is measured in the cavity of its slice and the slices
  within 8 mm (at the skull base one slice's cavity is patchy), in the plane's frame:
  depth from front (0) to back (1), lateral as the distance from the plane over the
  cavity's largest. Infratentorial: at the skull base, brainstem within 12 mm of the
  plane in the front 45 % of the posterior fossa (from the hindmost bone ahead within
  15 mm of the plane to the back of the cavity); in the tentorial band, brainstem within
  12 mm of the plane and 10 mm behind the V's apex (the midbrain lies in the notch);
  else cerebellum. Supratentorial: basal ganglia/thalamus when deep (lateral under 1/3,
  depth 0.35 to 0.70, height 0.30 to 0.60); temporal when low (height under 0.40: the
  middle cranial fossa, where the slice's cavity front is the temporal pole) and lateral
  (over 0.4) and not behind 0.78; frontal before 0.40, occipital after 0.78, temporal
  when low (under 0.50) and lateral (over 0.5), else parietal. Within 0.05 of any limit
  it compared with, the region is "approximate".
- **Relation**: extra-axial when a quarter or more of the lesion's rim touches the inner
  table (a crescent when it fills less than 75 % of its convex hull on its largest slice,
  else a lens), intra-axial otherwise.
- **Volume**: the lesion's voxels, each slice standing for the slab between the midpoints
  to its neighbours (irregular spacing counts). **ABC/2**: A the longest diameter on the
  slice of largest area, B the longest extent perpendicular to A on that slice, C the
  craniocaudal extent (the slabs of the slices holding the lesion); A·B·C/2.
- **Severity**: intra-axial by volume, small below 10 mL, medium below 30 mL, large from
  30 mL (the ICH score's limit); extra-axial by thickness, large from 10 mm or with a
  midline shift of 5 mm or more (the acute subdural haematoma surgical limits), medium
  from 5 mm, else small.
"""

from __future__ import annotations

import contextlib
import itertools
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from assistant.analysis.anatomy.grid import PatientGrid
from assistant.analysis.anatomy.midline import (
    Midline,
    SeptumReading,
    fit_midline,
    septum_readings,
    shift_of,
    slice_frame,
)
from assistant.findings import Place

SIDE_FRACTION = 0.80
BILATERAL_FRACTION = 0.20
SIDE_MARGIN_MM = 2.0
BRAINSTEM_MM = 12.0
EXTRA_AXIAL_CONTACT = 0.25
CRESCENT_SOLIDITY = 0.75
LARGE_ML, MEDIUM_ML = 30.0, 10.0
LARGE_THICKNESS_MM, MEDIUM_THICKNESS_MM = 10.0, 5.0
LARGE_SHIFT_MM = 5.0
#: Within this much (as a fraction) of a region's limit, the region is approximate.
_NEAR_LIMIT = 0.05

#: The head is read on slices at least this far apart (mm): the GE head's 4 mm slices
#: all, a thin-slice series one slice in six or so.
READ_STEP_MM = 3.5
#: The septum is read on slices at least this far apart (mm): the shift rule adds up
#: the septum seen over the slices, so a sparser choice loses readings (at 3.5 mm one of
#: the 32 phantoms with a known shift went unread; at 2.5 mm none did, and no reading
#: of the 138 phantoms moved by more than 0.4 mm from reading every slice).
SEPTUM_STEP_MM = 2.5
#: Skull base: bone inside the cavity's hull (HU, mm², mm inside the hull).
BASE_BONE_HU, BASE_BONE_MM2, BASE_MARGIN_MM = 300.0, 150.0, 4.0
#: Pieces of cavity smaller than this (mm²) are left out of the hull; a skull-base slice
#: holds this much cavity at least (a vertex cut tangentially holds islands of cavity in
#: bone).
BASE_PIECE_MM2, BASE_CAVITY_MM2 = 400.0, 2000.0
#: The septum is looked for this far (mm) above the top of the skull base; a slice counts
#: as the lateral ventricles' landmark with this much septum (mm).
SEPTUM_ABOVE_BASE_MM, SEPTUM_LANDMARK_MM = 10.0, 8.0
#: Landmark heights (0 skull base .. 1 vertex) and the typical cavity height (mm).
BASE_TOP_HEIGHT, SEPTUM_FLOOR_HEIGHT, VERTEX_HEIGHT = 0.31, 0.50, 0.98
TYPICAL_HEIGHT_MM = 135.0
#: The tentorial band above the top of the skull base, mm; the V's apex (front to back)
#: and half-angle (degrees).
TENTORIAL_BAND_MM = 20.0
V_APEX, V_DEGREES = 0.52, 40.0
#: Bone ahead (within 60 degrees) and behind (within 40 degrees) on a skull-base slice.
AHEAD_DEGREES, BEHIND_DEGREES = 60.0, 40.0
AHEAD_MM2, BEHIND_MM2 = 20.0, 40.0
#: Supratentorial without a skull base: this close to the vertex (mm), this far above a
#: large first slice (mm; "large": this share of the largest cavity).
VERTEX_REACH_MM, LARGE_FIRST_SHARE = 60.0, 0.60
#: A vertex slice's cavity is under this share of the largest.
VERTEX_SHARE = 0.30
#: The cavity a lesion's place is measured in: its slice's and those within this many mm.
FRAME_MM = 8.0
#: Brainstem: the front share of the posterior fossa (behind the bone ahead); in the
#: tentorial band, within this many mm behind the V's apex.
BRAINSTEM_DEPTH, BRAINSTEM_BEHIND_APEX_MM = 0.45, 10.0


@dataclass(frozen=True)
class LesionReading:
    """Side, compartment, region and relation of one lesion, with its size measures
    (`place` gives the first four as the findings keep them)."""

    side: str  # "right", "left", "bilateral", "midline" or "" (no midline found)
    compartment: str  # "supratentorial" or "infratentorial"
    region: str  # "frontal", "parietal", "temporal", "occipital", "basal ganglia/thalamus", "brainstem", "cerebellum"
    approximate: bool
    relation: str  # "intra-axial" or "extra-axial"
    shape: str  # "crescent" or "lens" for an extra-axial lesion, else ""
    abc2_ml: float
    thickness_mm: float
    severity: str  # "small", "medium" or "large"
    volume_ml: float = 0.0
    #: The height used (0 skull base .. 1 vertex) and how it was found.
    height: float = 0.0
    height_from: str = ""

    @property
    def place(self) -> Place:
        return Place(
            side=self.side,
            compartment=self.compartment,
            region=self.region,
            relation=self.relation,
            shape=self.shape,
            approximate=self.approximate,
        )


@dataclass(frozen=True)
class Landmarks:
    """Levels (mm along the slice normal) of what places a slice in the head; None where
    the series does not show it."""

    base_top: float | None
    septum_floor: float | None
    vertex: float | None
    #: Per slice: bone inside the cavity's hull, mm² (0 without cavity).
    base_bone: np.ndarray = field(repr=False)
    #: The first slice's cavity is already large: the slab starts above the skull base.
    starts_high: bool = False
    #: Per skull-base slice: (rows, columns) of its intracranial bone.
    bone: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)

    def anchors(self) -> list[tuple[float, float]]:
        found = [
            (level, height)
            for level, height in (
                (self.base_top, BASE_TOP_HEIGHT),
                (self.septum_floor, SEPTUM_FLOOR_HEIGHT),
                (self.vertex, VERTEX_HEIGHT),
            )
            if level is not None
        ]
        return sorted(found)


@dataclass(frozen=True)
class Head:
    """What every lesion of a series is placed against."""

    grid: PatientGrid
    cavity: np.ndarray  # (n, size, size) bool
    midline: Midline | None
    shift_mm: float | None
    landmarks: Landmarks
    #: Level (mm along the normal) of each slice.
    levels: np.ndarray = field(repr=False)
    #: Levels of the lowest and highest slices holding cavity (the old height rule).
    low_mm: float = 0.0
    high_mm: float = 1.0
    #: The slices the head was read on (`reading_slices`); None: all of them.
    reading: np.ndarray | None = field(default=None, repr=False)
    #: Each slice's frame once worked out (`_Frame.of`), kept for the next lesion.
    frames: dict[int, _Frame] = field(default_factory=dict, repr=False, compare=False)

    def height(self, level: float) -> tuple[float, str]:
        """(0 skull base .. 1 vertex, how): through the landmarks, else the old rule."""
        anchors = self.landmarks.anchors()
        if not anchors:
            return (level - self.low_mm) / max(1e-6, self.high_mm - self.low_mm), "coverage"
        if len(anchors) == 1:
            ((z0, t0),) = anchors
            return t0 + (level - z0) / TYPICAL_HEIGHT_MM, "one landmark"
        slopes = [
            float(np.clip((t1 - t0) / max(1e-6, z1 - z0), 1 / 160.0, 1 / 110.0))
            for (z0, t0), (z1, t1) in itertools.pairwise(anchors)
        ]
        if level <= anchors[0][0]:
            return anchors[0][1] + (level - anchors[0][0]) * slopes[0], "landmarks"
        if level >= anchors[-1][0]:
            return anchors[-1][1] + (level - anchors[-1][0]) * slopes[-1], "landmarks"
        levels = [z for z, _ in anchors]
        heights = [t for _, t in anchors]
        return float(np.interp(level, levels, heights)), "landmarks"


def read_head(hu: np.ndarray, cavity: np.ndarray, grid: PatientGrid) -> Head | None:
    """Everything in order: the midsagittal plane, the skull base, the septum above it
    (midline shift), the landmarks.

    The plane and the skull base are read on slices READ_STEP_MM apart or more, the
    septum on slices SEPTUM_STEP_MM apart (`reading_slices`): a 300-slice series of
    0.6 mm slices is read in a fifth of the time it takes slice by slice, with the same
    answers on the phantoms (docs/benchmarks.md); the lesions are then placed on every
    slice."""
    chosen = reading_slices(grid.levels)
    sub_grid = replace(grid, origins=grid.origins[chosen])
    sub_hu, sub_cavity = hu[chosen], cavity[chosen]
    midline = fit_midline(sub_cavity, sub_grid)
    sub_bone, sub_base = skull_base(sub_hu, sub_cavity, sub_grid)
    base_bone = np.zeros(len(cavity))
    base_bone[chosen] = sub_bone
    base = (base_bone, {int(chosen[i]): pixels for i, pixels in sub_base.items()})
    septa: list[SeptumReading] = []
    shift = None
    if midline is not None:
        top = max((float(grid.levels[i]) for i in base[1]), default=None)
        above = None if top is None else top + SEPTUM_ABOVE_BASE_MM
        near = reading_slices(grid.levels, SEPTUM_STEP_MM)
        septa = [
            replace(reading, index=int(near[reading.index]))
            for reading in septum_readings(
                hu[near], cavity[near], replace(grid, origins=grid.origins[near]), midline, above
            )
        ]
        shift = shift_of(septa)
    return make_head(cavity, grid, midline, shift, septa, base, chosen)


def reading_slices(levels: np.ndarray, step_mm: float | None = None) -> np.ndarray:
    """The slices the head is read on, in stack order: from the lowest up, each the
    first at least `step_mm` (READ_STEP_MM) above the last taken, and the highest."""
    step = READ_STEP_MM if step_mm is None else step_mm
    order = np.argsort(levels, kind="stable")
    chosen = [int(order[0])]
    for index in order[1:]:
        if levels[index] - levels[chosen[-1]] >= step:
            chosen.append(int(index))
    if chosen[-1] != int(order[-1]):
        chosen.append(int(order[-1]))
    return np.sort(np.array(chosen))


def skull_base(
    hu: np.ndarray, cavity: np.ndarray, grid: PatientGrid
) -> tuple[np.ndarray, dict[int, tuple[np.ndarray, np.ndarray]]]:
    """Per slice, the bone inside the cavity's hull (mm²), and the (rows, columns) of that
    bone on the skull-base slices."""
    height, width = grid.pixel_mm
    areas = cavity.reshape(len(cavity), -1).sum(axis=1) * height * width
    base_bone = np.zeros(len(cavity))
    bone: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    margin = max(1, round(BASE_MARGIN_MM / width))
    for index in range(len(cavity)):
        if areas[index] < 150.0:
            continue
        hull = ndimage.binary_erosion(
            _hull(_large_pieces(cavity[index], height * width)), iterations=margin
        )
        inside = (hu[index] > BASE_BONE_HU) & hull
        base_bone[index] = float(inside.sum()) * height * width
        if base_bone[index] >= BASE_BONE_MM2 and areas[index] >= BASE_CAVITY_MM2:
            rows, columns = np.nonzero(inside)
            bone[index] = (rows, columns)
    return base_bone, bone


def make_head(
    cavity: np.ndarray,
    grid: PatientGrid,
    midline: Midline | None,
    shift_mm: float | None,
    septa: list[SeptumReading],
    base: tuple[np.ndarray, dict[int, tuple[np.ndarray, np.ndarray]]],
    reading: np.ndarray,
) -> Head | None:
    """The head of a series: None when no slice holds a cavity. `base` (skull_base) finds
    the skull base; `septa` (midline.septum_readings) the lateral ventricles; `reading`
    the slices they were read on."""
    height, width = grid.pixel_mm
    areas = cavity.reshape(len(cavity), -1).sum(axis=1) * height * width
    present = np.flatnonzero(areas > 0)
    if not len(present):
        return None
    levels = grid.levels
    landmarks = _landmarks(cavity, grid, base, septa, shift_mm, areas, levels)
    low, high = sorted((float(levels[present[0]]), float(levels[present[-1]])))
    return Head(grid, cavity, midline, shift_mm, landmarks, levels, low, high, reading)


def _landmarks(
    cavity: np.ndarray,
    grid: PatientGrid,
    base: tuple[np.ndarray, dict[int, tuple[np.ndarray, np.ndarray]]],
    septa: list[SeptumReading],
    shift_mm: float | None,
    areas: np.ndarray,
    levels: np.ndarray,
) -> Landmarks:
    ascending = np.argsort(levels)
    base_bone, bone = base
    base_top = max((float(levels[i]) for i in bone), default=None)
    good = [
        r
        for r in septa
        if shift_mm is not None
        and abs(r.offset_mm - shift_mm) <= 3.0
        and r.length_mm >= SEPTUM_LANDMARK_MM
        and (base_top is None or levels[r.index] > base_top + SEPTUM_ABOVE_BASE_MM)
    ]
    # a lone short reading may be a basal cistern beside the third ventricle: the floor is
    # a reading 15 mm long or one with another within 12 mm above it
    confirmed = [
        r
        for r in good
        if r.length_mm >= 15.0 or any(0 < levels[o.index] - levels[r.index] <= 12.0 for o in good)
    ]
    septum_floor = min((float(levels[r.index]) for r in confirmed), default=None)
    vertex = None
    with_cavity = [i for i in ascending if areas[i] >= 150.0]
    if with_cavity:
        top = with_cavity[-1]
        position = int(np.flatnonzero(ascending == top)[0])
        if position < len(ascending) - 1 and areas[top] < VERTEX_SHARE * areas.max():
            vertex = float(levels[top])
    first = ascending[0]
    starts_high = bool(
        areas[first] >= LARGE_FIRST_SHARE * areas.max() and base_bone[first] < BASE_BONE_MM2
    )
    return Landmarks(base_top, septum_floor, vertex, base_bone, starts_high, bone)


def _large_pieces(mask: np.ndarray, pixel_mm2: float) -> np.ndarray:
    """The cavity's pieces of BASE_PIECE_MM2 or more: a sliver closed between the scalp
    and the head holder is not cavity whose hull may hold bone."""
    labels, count = ndimage.label(mask)
    if count <= 1:
        return mask
    areas = np.bincount(labels.ravel(), minlength=count + 1) * pixel_mm2
    keep = areas >= BASE_PIECE_MM2
    keep[0] = False
    return np.asarray(keep[labels])


def _hull(mask: np.ndarray) -> np.ndarray:
    """The convex hull of a mask's pixels, filled: on each row, the columns that pass
    every half-plane of the hull (worked out as an interval per row, not pixel by pixel)."""
    rows, columns = np.nonzero(mask)
    if len(rows) < 4:
        return mask.copy()
    edge_rows, edge_columns = np.nonzero(mask & ~ndimage.binary_erosion(mask))
    try:  # the edge's pixels have the mask's hull
        hull = ConvexHull(np.column_stack([edge_rows, edge_columns]).astype(float))
    except (QhullError, ValueError):
        return mask.copy()
    r0, r1, c0, c1 = rows.min(), rows.max() + 1, columns.min(), columns.max() + 1
    # hull.equations: a·row + b·column + d <= 0 inside (with a little tolerance)
    a, b, d = hull.equations[:, 0], hull.equations[:, 1], hull.equations[:, 2] - 1e-9
    span = np.arange(r0, r1, dtype=float)[:, None]
    rest = -(a * span + d)  # b·column <= rest, per row and half-plane
    with np.errstate(divide="ignore", invalid="ignore"):
        limit = rest / b
    upper = np.where(b > 0, limit, np.inf).min(axis=1)
    lower = np.where(b < 0, limit, -np.inf).max(axis=1)
    level = np.asarray(np.where(b == 0, rest >= 0, True).all(axis=1))
    cc = np.arange(c0, c1, dtype=float)
    inside = (cc >= lower[:, None]) & (cc <= upper[:, None]) & level[:, None]
    out = np.zeros_like(mask, dtype=bool)
    out[r0:r1, c0:c1] = inside
    return out


def place_lesion(head: Head, lesion: np.ndarray) -> LesionReading:
    """Where `lesion` ((n, size, size) bool on the grid) is, and how big and severe."""
    # one pass over the whole volume finds the lesion's slices; the rest reads only them
    held = np.flatnonzero(lesion.any(axis=(1, 2)))
    first = int(held[0])
    part = lesion[first : int(held[-1]) + 1]
    slices, rows, columns = np.nonzero(part)
    points = head.grid.points(slices + first, rows, columns)
    centre = points.mean(axis=0)
    per_slice = np.zeros(len(lesion), dtype=np.int64)
    per_slice[first : first + len(part)] = part.reshape(len(part), -1).sum(axis=1)
    largest = int(np.argmax(per_slice))
    level = float(centre @ head.grid.normal)
    holding = np.flatnonzero(per_slice)
    key = int(holding[np.argmin(np.abs(head.levels[holding] - level))])
    side = _side(head, points)
    height, height_from = head.height(level)
    frame = _Frame.of(head, _with_cavity(head, key))
    along, across = frame.place(centre)
    depth = frame.depth(along)
    lateral = abs(across) / max(1e-6, frame.half_width)
    compartment, sure = _compartment(head, key, level, frame, along, across)
    region, limits = _region(compartment, height, depth, lateral, head, key, frame, along, across)
    approximate = (
        not sure
        or height_from == "coverage"
        or head.midline is None
        or any(abs(value - limit) < _NEAR_LIMIT for value, limit in limits)
    )
    relation, shape = _relation(head, part, first, largest)
    abc2 = _abc2_ml(head, lesion[largest], per_slice > 0)
    thickness = _thickness_mm(head, part) if relation == "extra-axial" else 0.0
    volume = _volume_ml(head, per_slice)
    severity_band = severity(relation, volume, thickness, head.shift_mm)
    return LesionReading(
        side,
        compartment,
        region,
        approximate,
        relation,
        shape,
        abc2,
        thickness,
        severity_band,
        round(volume, 2),
        round(height, 3),
        height_from,
    )


@dataclass(frozen=True)
class _Frame:
    """A slice's cavity in the midsagittal frame: along (mm, back +) and across (mm,
    left +) of each cavity pixel."""

    point: np.ndarray
    along_axis: np.ndarray
    across_axis: np.ndarray
    front: float
    back: float
    half_width: float

    @classmethod
    def of(cls, head: Head, index: int) -> _Frame:
        if index not in head.frames:
            head.frames[index] = cls._work_out(head, index)
        return head.frames[index]

    @classmethod
    def _work_out(cls, head: Head, index: int) -> _Frame:
        grid = head.grid
        midline = head.midline
        if midline is None:  # no plane: the sagittal plane through the image centre
            centre = np.array([(grid.size - 1) / 2])
            midline = Midline(float(grid.points(np.array([index]), centre, centre)[0, 0]), 0.0, 0.0)
        point, along, across = slice_frame(grid, midline, index)
        # the cavity of the slices within FRAME_MM: at the skull base a slice's cavity is
        # patchy (pieces dropped, the ring open); of a thin-slice series, the slices the
        # head was read on (the cavity's extent changes little from one to the next)
        read = np.arange(len(head.levels)) if head.reading is None else head.reading
        near = np.union1d(read[np.abs(head.levels[read] - head.levels[index]) <= FRAME_MM], [index])
        slices, rows, columns = np.nonzero(head.cavity[near])
        if not len(rows):
            return cls(point, along, across, -1.0, 1.0, 1.0)
        cavity = grid.points(near[slices], rows, columns) - point
        s, u = cavity @ along, cavity @ across
        return cls(point, along, across, float(s.min()), float(s.max()), float(np.abs(u).max()))

    def place(self, point: np.ndarray) -> tuple[float, float]:
        rel = np.asarray(point) - self.point
        return float(rel @ self.along_axis), float(rel @ self.across_axis)

    def depth(self, along: float) -> float:
        return (along - self.front) / max(1e-6, self.back - self.front)


def _with_cavity(head: Head, index: int) -> int:
    """The slice itself when it holds 1000 mm² of cavity or more, else the nearest such
    slice within 10 mm (the cavity is not always found at the skull base), else itself."""
    height, width = head.grid.pixel_mm
    areas = head.cavity.reshape(len(head.cavity), -1).sum(axis=1) * height * width
    if areas[index] >= 1000.0:
        return index
    candidates = np.flatnonzero(areas >= 1000.0)
    if not len(candidates):
        return index
    gaps = np.abs(head.levels[candidates] - head.levels[index])
    nearest = int(np.argmin(gaps))
    return int(candidates[nearest]) if gaps[nearest] <= 10.0 else index


def _side(head: Head, points: np.ndarray) -> str:
    if head.midline is None:
        return ""
    distance = head.midline.distance(points)
    left = float(np.mean(distance > SIDE_MARGIN_MM))
    right = float(np.mean(distance < -SIDE_MARGIN_MM))
    if left >= SIDE_FRACTION:
        return "left"
    if right >= SIDE_FRACTION:
        return "right"
    if left >= BILATERAL_FRACTION and right >= BILATERAL_FRACTION:
        return "bilateral"
    return "midline"


def _bone_around(
    head: Head, index: int, frame: _Frame, along: float, across: float
) -> tuple[float, float, float]:
    """Intracranial bone (mm²) ahead of and behind a point of a skull-base slice, and the
    along-coordinate of the hindmost bone ahead within 15 mm of the plane (the posterior
    fossa's front), or nan."""
    if index not in head.landmarks.bone:
        return 0.0, 0.0, float("nan")
    grid = head.grid
    rows, columns = head.landmarks.bone[index]
    points = grid.points(np.full(len(rows), index), rows, columns) - frame.point
    s, u = points @ frame.along_axis, points @ frame.across_axis
    height, width = grid.pixel_mm
    ds, du = s - along, u - across
    ahead = (ds < 0) & (np.abs(du) <= np.tan(np.radians(AHEAD_DEGREES)) * -ds) & (ds > -80)
    behind = (ds > 0) & (np.abs(du) <= np.tan(np.radians(BEHIND_DEGREES)) * ds)
    front_bone = (np.abs(u) <= 15.0) & (ds < 0)
    front = float(s[front_bone].max()) if front_bone.any() else float("nan")
    return float(ahead.sum()) * height * width, float(behind.sum()) * height * width, front


def _compartment(
    head: Head, index: int, level: float, frame: _Frame, along: float, across: float
) -> tuple[str, bool]:
    """(compartment, sure)."""
    marks = head.landmarks
    base_slice = _base_slice(head, index, level)
    if base_slice is not None:
        if base_slice != index:
            frame, along, across = _reframe(head, frame, along, across, base_slice)
        ahead, behind, _ = _bone_around(head, base_slice, frame, along, across)
        infra = ahead >= AHEAD_MM2 and behind < BEHIND_MM2
        sure = (ahead >= 2 * AHEAD_MM2 or ahead < AHEAD_MM2 / 2) and (
            behind < BEHIND_MM2 / 2 or behind >= 2 * BEHIND_MM2
        )
        return ("infratentorial" if infra else "supratentorial"), sure
    if marks.base_top is not None:
        above = level - marks.base_top
        if above > TENTORIAL_BAND_MM:
            return "supratentorial", True
        inside, margin = _inside_v(frame, along, across)
        return (
            "infratentorial" if inside else "supratentorial"
        ), margin >= 5.0 and above < TENTORIAL_BAND_MM - 5.0
    if marks.septum_floor is not None and level >= marks.septum_floor - 5.0:
        return "supratentorial", True
    if marks.vertex is not None and marks.vertex - level <= VERTEX_REACH_MM:
        return "supratentorial", True
    if marks.starts_high:
        first = float(head.levels.min())
        if level - first >= TENTORIAL_BAND_MM:
            return "supratentorial", True
    inside, _ = _inside_v(frame, along, across)
    return ("infratentorial" if inside else "supratentorial"), False


def _base_slice(head: Head, index: int, level: float) -> int | None:
    """The skull-base slice a lesion is judged on: its own, or, at or below the top of the
    skull base where its own slice holds no cavity to find bone in, the nearest one
    within 10 mm."""
    marks = head.landmarks
    if index in marks.bone:
        return index
    if marks.base_top is None or level > marks.base_top + 2.0 or not marks.bone:
        return None
    candidates = list(marks.bone)
    gaps = np.abs(head.levels[candidates] - level)
    nearest = int(np.argmin(gaps))
    return candidates[nearest] if gaps[nearest] <= 10.0 else None


def _inside_v(frame: _Frame, along: float, across: float) -> tuple[bool, float]:
    """Inside the tentorium's V (behind its apex, near the plane), and the distance (mm)
    to its nearer limb."""
    apex = frame.front + V_APEX * (frame.back - frame.front)
    behind = along - apex
    slope = np.tan(np.radians(V_DEGREES))
    # signed distance to the limb |across| = slope * behind, positive inside
    distance = (slope * behind - abs(across)) / np.hypot(1.0, slope)
    return bool(behind > 0 and distance > 0), float(abs(distance))


def _region(
    compartment: str,
    height: float,
    depth: float,
    lateral: float,
    head: Head,
    index: int,
    frame: _Frame,
    along: float,
    across: float,
) -> tuple[str, list[tuple[float, float]]]:
    """(region, [(value, the limit it was compared with)])."""
    if compartment == "infratentorial":
        base_slice = _base_slice(head, index, float(head.levels[index]))
        if base_slice is not None:
            frame, along, across = _reframe(head, frame, along, across, base_slice)
            _, _, front = _bone_around(head, base_slice, frame, along, across)
            if np.isfinite(front):
                share = (along - front) / max(1e-6, frame.back - front)
                brainstem = abs(across) < BRAINSTEM_MM and share < BRAINSTEM_DEPTH
                return ("brainstem" if brainstem else "cerebellum"), [(share, BRAINSTEM_DEPTH)]
        # the tentorial band: the midbrain lies in the V's apex, the vermis behind it
        apex = frame.front + V_APEX * (frame.back - frame.front)
        brainstem = abs(across) < BRAINSTEM_MM and along - apex < BRAINSTEM_BEHIND_APEX_MM
        return ("brainstem" if brainstem else "cerebellum"), []
    if lateral < 1 / 3 and 0.35 <= depth <= 0.70 and 0.30 <= height <= 0.60:
        limits = [(lateral, 1 / 3), (depth, 0.35), (depth, 0.70), (height, 0.30), (height, 0.60)]
        return "basal ganglia/thalamus", limits
    if height < 0.40 and lateral > 0.4 and depth <= 0.78:
        return "temporal", [(height, 0.40), (lateral, 0.4), (depth, 0.78)]
    if depth < 0.40:
        return "frontal", [(depth, 0.40)]
    if depth > 0.78:
        return "occipital", [(depth, 0.78)]
    limits = [(depth, 0.40), (depth, 0.78), (height, 0.50), (lateral, 0.5)]
    if height < 0.50 and lateral > 0.5:
        return "temporal", limits
    return "parietal", limits


def _reframe(
    head: Head, frame: _Frame, along: float, across: float, index: int
) -> tuple[_Frame, float, float]:
    """A point given in one slice's frame, in the frame of slice `index`."""
    other = _Frame.of(head, index)
    point = frame.point + along * frame.along_axis + across * frame.across_axis
    return (other, *other.place(point))


def _relation(head: Head, part: np.ndarray, first: int, key: int) -> tuple[str, str]:
    """Intra- or extra-axial, by the share of the lesion's rim on the inner table (`part`:
    the lesion's slices, from slice `first`; `key`: its largest slice)."""
    # In-plane morphology only: the lesion's box and 3 pixels around it decide it all.
    _, rows, columns = np.nonzero(part)
    box = (
        slice(first, first + len(part)),
        slice(max(0, int(rows.min()) - 3), int(rows.max()) + 4),
        slice(max(0, int(columns.min()) - 3), int(columns.max()) + 4),
    )
    key_rows, key_columns = np.nonzero(part[key - first])
    lesion = part[:, box[1], box[2]]
    outside = ~head.cavity[box]
    table = ndimage.binary_dilation(outside, structure=np.ones((1, 3, 3), bool)) & ~outside
    rim = lesion & ~ndimage.binary_erosion(lesion, structure=np.ones((1, 3, 3), bool))
    touching = ndimage.binary_dilation(table, structure=np.ones((1, 3, 3), bool))
    if not rim.any() or (rim & touching).sum() < EXTRA_AXIAL_CONTACT * rim.sum():
        return "intra-axial", ""
    try:
        hull = ConvexHull(np.column_stack([key_rows, key_columns]).astype(float))
        solidity = len(key_rows) / max(1.0, hull.volume + 0.5 * hull.area + 1.0)
    except (QhullError, ValueError):  # a line of pixels: as thin as a crescent gets
        solidity = 0.0
    return "extra-axial", "crescent" if solidity < CRESCENT_SOLIDITY else "lens"


def _abc2_ml(head: Head, key_plane: np.ndarray, present: np.ndarray) -> float:
    """A·B·C/2 (mL) from the lesion on its largest slice and the slices it is on."""
    height, width = head.grid.pixel_mm
    rows, columns = np.nonzero(key_plane)
    points = np.column_stack([rows * height, columns * width])
    if len(points) == 1:
        a = b = min(height, width)
    else:
        if len(points) > 400:  # the diameter's ends lie on the hull
            with contextlib.suppress(QhullError, ValueError):
                points = points[ConvexHull(points).vertices]
        gaps = points[:, None, :] - points[None, :, :]
        lengths = np.hypot(gaps[..., 0], gaps[..., 1])
        i, j = np.unravel_index(int(np.argmax(lengths)), lengths.shape)
        a = float(lengths[i, j])
        direction = gaps[i, j] / max(1e-9, a)
        across = points @ np.array([-direction[1], direction[0]])
        a += min(height, width)
        b = float(across.max() - across.min()) + min(height, width)
    c = float(head.grid.spacings()[present].sum())
    return round(a * b * c / 2 / 1000.0, 2)


def _volume_ml(head: Head, per_slice: np.ndarray) -> float:
    """The voxels (counted per slice), each slice standing for its slab."""
    height, width = head.grid.pixel_mm
    return float((per_slice * head.grid.spacings()).sum()) * height * width / 1000.0


def _thickness_mm(head: Head, lesion: np.ndarray) -> float:
    """Twice the largest in-plane distance from the lesion's edge: its thickest point."""
    height, width = head.grid.pixel_mm
    thickest = 0.0
    for plane in lesion:
        if plane.any():
            inside = ndimage.distance_transform_edt(plane, sampling=(height, width))
            thickest = max(thickest, float(inside.max()))
    # the distance runs to the centre of the nearest pixel outside: half a pixel too far
    # on either side (a single pixel is one pixel thick, not two)
    return round(max(0.0, 2 * thickest - min(height, width)), 1)


def severity(relation: str, volume_ml: float, thickness_mm: float, shift: float | None) -> str:
    """The severity band (see the module's docstring): intra-axial by volume, extra-axial
    by thickness and the midline shift."""
    if relation == "extra-axial":
        if thickness_mm >= LARGE_THICKNESS_MM or (
            shift is not None and abs(shift) >= LARGE_SHIFT_MM
        ):
            return "large"
        return "medium" if thickness_mm >= MEDIUM_THICKNESS_MM else "small"
    if volume_ml >= LARGE_ML:
        return "large"
    return "medium" if volume_ml >= MEDIUM_ML else "small"
