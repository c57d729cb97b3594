"""Synthetic non-contrast head CT phantoms, with and without acute blood.

What a real head CT has, and so what the generator varies (DESIGN.md §7): a head whose
outline and size change from skull base to vertex; scalp with fat; a skull 4-9 mm thick,
thicker and irregular at the base with air in the sinuses and mastoids; grey and white
matter; CSF in ventricles (whose shape changes with z) and sulci; hyperdense things that
are NOT findings (pineal and choroid plexus calcification, falx, bone partial volume at
the inner table, beam-hardening streaks near the base); and acquisitions with
0.4-0.5 mm pixels, 0.6-7 mm slices (sometimes irregular) with an axial or helical
slice sensitivity profile, noise, blur, head rotation, translation and gantry tilt.
Findings are acute blood (50-90 HU), irregular, 3-40 mm: intraparenchymal, subdural and
epidural collections along the inner table, blood in sulci and in a ventricle; single
and multiple; with a mask of where the scanner shows the blood.

Everything is drawn from one `numpy.random.Generator` seeded per case, so a case is the
same on every machine. Slices are computed in HU at the matrix asked for (the
`synthetic` dataset's default is 256, what the model sees after resampling a 512 slice;
the bundled model was trained at 128): a 40-slice case takes about 0.06 s at 128,
0.18 s at 256 and 0.7 s at 512 on a 2-core machine, 0.3, 0.3 and 1.0 s beside a training
on the same cores (`bench/phantoms.py`; thick helical slices sum up to 23 sections each).
Each section is computed inside the head's window only; outside it, every section is
air or the head holder.

For the anatomy that locates findings (assistant/analysis/anatomy, bench/anatomy.py), a
case can be asked for with a mass effect (`shift_mm`: the lateral and third ventricles,
the septum and the falx moved sideways by a known amount, one ventricle narrowed by
`compress`) and with lesions placed where asked (`PlacedLesion`, in fractions of the
drawn head; `PLACES` names some regions), and tells its truth in head coordinates
(`PhantomCase.truth`: side, compartment, region, volume, thickness). Head coordinates
are DICOM's LPS as `phantom_dicom.write_case` stores them: +x is the patient's left, +y
posterior, +z up. Without these options a case is the same as before them, to the bit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import cast

import numpy as np
from scipy import ndimage, special

MATRIX = 512
FINDING_KINDS = ("intraparenchymal", "subdural", "epidural", "subarachnoid", "intraventricular")


@dataclass(frozen=True)
class Acquisition:
    """How the phantom was 'scanned'."""

    pixel_spacing: float
    slice_thickness: float
    #: Slice positions along the normal (mm), ascending (feet to head).
    positions: tuple[float, ...]
    noise_sigma: float
    gantry_tilt_degrees: float
    #: How the slices would be stored: "int16" (intercept 0 or -1024) or "uint16".
    storage: str
    rescale_intercept: float
    #: Softness of the slice sensitivity profile's edges (mm; see `slice_profile`).
    profile_sigma: float = 0.0


@dataclass(frozen=True)
class Lesion:
    kind: str
    #: Centre in head coordinates (mm): +x towards the patient's left, +y posterior, +z
    #: up (LPS, as the images are stored: a lesion at +x lies right of the image centre).
    #: A drawn subdural or epidural collection has its centre on the axis (0, 0, z).
    center: tuple[float, float, float]
    size_mm: float
    density_hu: float
    #: A subdural or epidural collection's direction from the head's axis (radians from
    #: +x towards +y); None: drawn from the centre, as for the generator's own.
    direction: float | None = None
    #: The region a lesion was placed in (a key of `PLACES`, or the caller's name for
    #: it: "posterior fossa" lets the truth tell brainstem from cerebellum), else "".
    region: str = ""


@dataclass(frozen=True)
class PlacedLesion:
    """A lesion asked for at a place given in fractions of the drawn head: `at` is
    (x / width, y / length, z / height), x towards the patient's left, y posterior, z up
    from the skull base (the head's semi-axes and height). A subdural or epidural
    collection lies along the inner table in the direction of (x, y) from the head's
    axis, at height z."""

    kind: str
    at: tuple[float, float, float]
    size_mm: float
    density_hu: float = 70.0
    region: str = ""


#: Places (for the patient's left; `placed` mirrors them) whose region a radiologist
#: would name, as the phantom's anatomy lays it out: the posterior fossa below 0.30 of
#: the height behind the petrous ridges, the middle fossa in front of them, the deep grey
#: nuclei at 0.34-0.52 (_SliceMaker._draw_dense_normals).
PLACES: dict[str, tuple[float, float, float]] = {
    "frontal": (0.35, -0.55, 0.62),
    "parietal": (0.40, 0.15, 0.72),
    "occipital": (0.20, 0.70, 0.60),
    "temporal": (0.52, -0.20, 0.24),
    "basal ganglia/thalamus": (0.22, 0.02, 0.44),
    "cerebellum": (0.30, 0.40, 0.21),
}


def placed(
    region: str, side: str, size_mm: float = 20.0, kind: str = "intraparenchymal"
) -> PlacedLesion:
    """A lesion in `region` (a key of `PLACES`) on `side` ("left" or "right")."""
    if side not in ("left", "right"):
        raise ValueError(f'side must be "left" or "right", not {side!r}')
    fx, fy, t = PLACES[region]
    return PlacedLesion(kind, (fx if side == "left" else -fx, fy, t), size_mm, region=region)


@dataclass(frozen=True)
class LesionTruth:
    """What a reader should say of some blood of a case, from the phantom's own
    anatomy (`PhantomCase.truth`)."""

    #: The kind of the lesion whose centre is nearest the blood's.
    kind: str
    #: By the rule of assistant/analysis/anatomy/location.py on the true head x of
    #: every voxel: 80 % beyond 2 mm on one side names it, 20 % on each "bilateral",
    #: else "midline".
    side: str
    compartment: str
    #: Within 5 mm of the tentorium or of the petrous ridge, or near the levels where
    #: the phantom's posterior fossa changes: either answer is defensible.
    ambiguous: bool
    #: The region it was placed in (`PLACES`); in the posterior fossa the phantom's
    #: convention, as it draws no brainstem: brainstem within 12 mm of the midline in
    #: front of the fourth ventricle, else cerebellum; "" for a drawn lesion.
    region: str
    #: The blood's volume: its voxels, each slice standing for the slab between the
    #: midpoints to its neighbours.
    volume_ml: float
    #: Its thickest point in a slice (mm): the width of the widest band of voxels.
    thickness_mm: float
    #: Its centre in head coordinates (mm) and its height (0 skull base .. 1 vertex).
    centre: tuple[float, float, float]
    height: float


@dataclass
class PhantomCase:
    """One synthetic series: HU slices, blood masks and labels."""

    seed: int
    hu: np.ndarray  # (slices, 512, 512) float32
    mask: np.ndarray  # (slices, 512, 512) bool: acute blood
    acquisition: Acquisition
    lesions: tuple[Lesion, ...] = field(default=())
    #: The subject, and the rendered pixels' size (mm): for the truth in head coordinates.
    head: _Head | None = field(default=None, repr=False)
    spacing: float = 0.0
    #: The mass effect asked for: the septum's displacement (mm, + towards the
    #: patient's left) and how much the ventricle on the mass's side was narrowed.
    shift_mm: float = 0.0
    compress: float = 0.0

    @property
    def slice_labels(self) -> np.ndarray:
        # any() over one of two axes gives an array; numpy types it as possibly a scalar.
        return cast(np.ndarray, self.mask.reshape(len(self.mask), -1).any(axis=1))

    @property
    def label(self) -> bool:
        return bool(self.slice_labels.any())

    def head_coords(self, index: int, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """Head coordinates (k, 3) (mm: +x the patient's left, +y posterior, +z up from
        the skull base) of rendered pixels (rows, columns; fractional allowed) of slice
        `index`: the inverse of _SliceMaker's placement, tilt and flexion included."""
        head, acq = self._head(), self.acquisition
        z = acq.positions[index]
        matrix = self.hu.shape[-1]
        tilt = math.tan(math.radians(acq.gantry_tilt_degrees))
        row_shift = (z - head.height / 2) * (tilt + head.pitch) / self.spacing
        gx = (np.asarray(columns, float) - matrix / 2 + 0.5) * self.spacing - head.shift[0]
        gy = (np.asarray(rows, float) - row_shift - matrix / 2 + 0.5) * self.spacing
        gy -= head.shift[1]
        cos, sin = math.cos(head.rotation), math.sin(head.rotation)
        return np.column_stack([cos * gx + sin * gy, -sin * gx + cos * gy, np.full(len(gx), z)])

    def slabs(self) -> np.ndarray:
        """The thickness (mm) of the slab each slice stands for: half the distance to each
        neighbour, the one neighbour's distance at the ends."""
        positions = np.asarray(self.acquisition.positions)
        if len(positions) < 2:
            return np.full(len(positions), self.acquisition.slice_thickness)
        gaps = np.diff(positions)
        return np.concatenate([[gaps[0]], (gaps[:-1] + gaps[1:]) / 2, [gaps[-1]]])

    def truth(self, blood: np.ndarray | None = None) -> LesionTruth:
        """The truth of `blood` (a part of `mask`, one lesion; by default all of it)."""
        blood = self.mask if blood is None else blood
        head = self._head()
        slabs = self.slabs()
        points, volume, thickest = [], 0.0, 0.0
        for index in np.flatnonzero(blood.reshape(len(blood), -1).any(axis=1)):
            rows, columns = np.nonzero(blood[index])
            points.append(self.head_coords(int(index), rows, columns))
            volume += len(rows) * self.spacing**2 * float(slabs[index]) / 1000.0
            depth = ndimage.distance_transform_edt(blood[index])
            thickest = max(thickest, (2 * float(depth.max()) - 1) * self.spacing)
        if not points:
            raise ValueError("blood holds no voxel")
        xyz = np.concatenate(points)
        x, y, z = (float(v) for v in xyz.mean(axis=0))
        t = z / head.height
        compartment, ambiguous = _compartment_truth(x, y, t)
        nearest = min(self.lesions, key=lambda les: math.dist(les.center, (x, y, z)), default=None)
        region = nearest.region if nearest is not None else ""
        if region and compartment == "infratentorial":
            region = "brainstem" if abs(x) < 12.0 and y < 30.0 and t < 0.30 else "cerebellum"
        return LesionTruth(
            kind=nearest.kind if nearest is not None else "",
            side=_side_truth(xyz[:, 0]),
            compartment=compartment,
            ambiguous=ambiguous,
            region=region,
            volume_ml=volume,
            thickness_mm=thickest,
            centre=(x, y, z),
            height=t,
        )

    def truths(self) -> list[LesionTruth]:
        """The truth of each connected piece of blood (26-connected), largest first."""
        labels, count = ndimage.label(self.mask, structure=np.ones((3, 3, 3), bool))
        sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
        return [self.truth(labels == k + 1) for k in np.argsort(-sizes, kind="stable")]

    def _head(self) -> _Head:
        if self.head is None or not self.spacing:
            raise ValueError("the case was built without its head: no truth to give")
        return self.head


def _smoothstep(x: np.ndarray) -> np.ndarray:
    """0 below -1, 1 above +1, linear between: soft partial-volume edges, cheaply."""
    out = np.multiply(x, 0.5, dtype=np.float32)
    out += 0.5
    return np.clip(out, 0.0, 1.0, out=out)


_BLUR = np.array([0.25, 0.5, 0.25], dtype=np.float32)


def _side_truth(x: np.ndarray) -> str:
    """The side of voxels by their head x (mm, + the patient's left)."""
    left, right = float(np.mean(x > 2.0)), float(np.mean(x < -2.0))
    if left >= 0.8:
        return "left"
    if right >= 0.8:
        return "right"
    return "bilateral" if left >= 0.2 and right >= 0.2 else "midline"


def _compartment_truth(x: float, y: float, t: float) -> tuple[str, bool]:
    """(compartment, ambiguous) of a point (head mm; t, its height) by the phantom's
    anatomy: below the top of the petrous bones (t 0.30), infratentorial behind the
    petrous ridges and clivus (a line from (13, -2) to (48, 20) mm, mirrored; the
    ridges are drawn between (10-16, -6..2) and (45-52, 15-25)); up to t 0.42, inside
    the tentorium's V (behind y 8, 0.8 (y - 8) > 0.9 |x|, drawn from 0.26 to 0.42);
    higher, supratentorial. Ambiguous within 5 mm of those lines and near the levels
    where the rule changes."""
    v_distance = ((y - 8.0) * 0.8 - abs(x) * 0.9) / math.hypot(0.8, 0.9)
    if t < 0.30:
        ridge = -2.0 + max(0.0, abs(x) - 13.0) * 22.0 / 35.0
        ambiguous = abs(y - ridge) < 5.0 or (t > 0.26 and v_distance <= 0)
        return ("infratentorial" if y > ridge else "supratentorial"), ambiguous
    if t < 0.42:
        inside = v_distance > 0 and y > 8.0
        ambiguous = abs(v_distance) < 5.0 or t > 0.40 or t < 0.32
        return ("infratentorial" if inside else "supratentorial"), ambiguous
    return "supratentorial", t < 0.44


#: Height (fraction of skull base to vertex) of the head's widest level.
WIDEST_AT = 0.42
#: Thick slices sum thin sections this far apart at most (mm): a coarser sum made the
#: partial volume of the vertex come in steps of a fifth of bone.
SECTION_MM = 1.0
#: Above this share of bone in a pixel, blood in it is not labelled: it reads as bone.
VISIBLE_BONE_SHARE = 0.05


def _profile(t: float, vault: float = 2.0) -> float:
    """The head's semi-axes at height t as a fraction of the widest: an ellipse below the
    widest level; above it a superellipse of exponent `vault` (2, an ellipse; more, a
    flatter dome), closing at the vertex (t = 1), where the skull is cut tangentially: a
    bright disc of bone that is not a finding. Above the vertex, 0."""
    u = abs(max(t, 0.0) - WIDEST_AT) / 0.585
    exponent = vault if t > WIDEST_AT else 2.0
    return max(0.0, 1.0 - u**exponent) ** (1.0 / exponent)


def slice_profile(thickness: float, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Offsets (mm) of the thin sections a slice sums, and their weights (summing to 1).

    The slice sensitivity profile: a box of the nominal thickness whose edges are
    rounded by a Gaussian of `sigma` mm. An axial scan's profile is nearly the box
    (sigma near 0); a helical scan's, interpolated between turns, has soft edges and
    tails that reach bone a few mm beyond the nominal slab, which is what brightens the
    last island of brain under a flat vertex.
    """
    half = thickness / 2 + 2.5 * sigma
    count = max(1, math.ceil(2 * half / SECTION_MM))
    offsets = 2 * half * ((np.arange(count) + 0.5) / count - 0.5)
    if sigma <= 0.0:
        weights = np.ones(count)
    else:
        scale = sigma * math.sqrt(2.0)
        weights = 0.5 * (
            special.erf((offsets + thickness / 2) / scale)
            - special.erf((offsets - thickness / 2) / scale)
        )
    return offsets, weights / weights.sum()


def _blur3(image: np.ndarray) -> np.ndarray:
    """A separable [1, 2, 1]/4 blur: the scanner's slight unsharpness."""
    out = ndimage.correlate1d(image, _BLUR, axis=0, mode="nearest")
    return ndimage.correlate1d(out, _BLUR, axis=1, mode="nearest")


def _upsampler(coarse: int, fine: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linear interpolation from `coarse` to `fine` samples, corner to corner: for each
    fine sample, the coarse one below it and the weights of that one and the next."""
    positions = np.linspace(0, coarse - 1, fine)
    low = np.floor(positions).astype(np.intp).clip(0, coarse - 2)
    frac = (positions - low).astype(np.float32)
    return low, 1 - frac, frac


def _upsample(plane: np.ndarray, low: np.ndarray, keep: np.ndarray, frac: np.ndarray) -> np.ndarray:
    """Bilinear upsampling of a square plane, one axis after the other.

    Gathers and weighted sums, not a product with an interpolation matrix: NumPy's
    OpenBLAS threads spin against torch's for the same cores, and a 48² → 512² product
    then took 20-25 ms instead of under one while a model trained beside it.
    """
    rows = plane[low] * keep[:, None] + plane[low + 1] * frac[:, None]
    return np.ascontiguousarray(rows[:, low] * keep + rows[:, low + 1] * frac)


#: Rows and columns of the image that a case's head can reach.
_Window = tuple[slice, slice]


class _Field:
    """Smooth random field over the head, sampled per slice (sulci, outline wobble) at
    a `size`² matrix, inside `window`."""

    def __init__(
        self, rng: np.random.Generator, shape: tuple[int, int, int], size: int, window: _Window
    ) -> None:
        self.coarse = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), 1.0)
        self.coarse /= self.coarse.std() + 1e-6
        self.size, self.window = size, window
        #: Coarse planes upsampled to the slice matrix, each once per case (1 MB a plane
        #: at 512², 28 MB for the two fields of a case).
        self._planes: dict[int, np.ndarray] = {}

    def _plane(self, index: int) -> np.ndarray:
        if index not in self._planes:
            full = _upsample(self.coarse[index], *_upsampler(self.coarse.shape[1], self.size))
            self._planes[index] = np.ascontiguousarray(full[self.window])
        return self._planes[index]

    def slice(self, t: float) -> np.ndarray:
        """The field at height t."""
        z = float(np.clip(t, 0.0, 1.0)) * (self.coarse.shape[0] - 1)
        low = math.floor(z)
        high = min(low + 1, self.coarse.shape[0] - 1)
        weight = np.float32(z - low)
        return (1 - weight) * self._plane(low) + weight * self._plane(high)


@dataclass(frozen=True)
class _Head:
    """The subject: size, shape and pose, drawn once per case."""

    length: float  # anterior-posterior semi-axis at the widest level, mm
    width: float  # left-right semi-axis, mm
    height: float  # base of skull to vertex, mm
    skull: float  # calvarial thickness, mm
    scalp: float
    ventricle_scale: float
    rotation: float  # in-plane, radians
    shift: tuple[float, float]
    pitch: float  # head flexion: centre moves anteriorly with z, mm per mm
    wobble: tuple[tuple[float, float], ...]  # outline harmonics (amplitude, phase)
    vault: float  # exponent of the dome above the widest level: 2 round, 3 flat


def _draw_head(rng: np.random.Generator) -> _Head:
    return _Head(
        length=rng.uniform(72, 86),
        width=rng.uniform(58, 70),
        height=rng.uniform(120, 140),
        skull=rng.uniform(4.0, 7.5),
        scalp=rng.uniform(3.0, 7.0),
        ventricle_scale=rng.uniform(0.7, 1.5),
        rotation=math.radians(rng.uniform(-12, 12)),
        shift=(rng.uniform(-8, 8), rng.uniform(-8, 8)),
        pitch=rng.uniform(-0.15, 0.15),
        wobble=tuple((rng.uniform(0, 0.025), rng.uniform(0, 2 * math.pi)) for _ in range(4)),
        vault=rng.uniform(2.0, 3.0),
    )


def _head_window(x: np.ndarray, y: np.ndarray, wobble_inv: np.ndarray, head: _Head) -> _Window:
    """The rows and columns outside which every section reads air or the head holder:
    beyond 0.6 mm outside the scalp a section is exactly -1000 HU there (the
    partial-volume edge of the scalp is the widest reach of anything drawn), and no
    level is wider than the widest one. The anatomy is computed inside this window
    only: at 512² the head covers about half the field of view."""
    a, b = head.width + 8, head.length + 10  # the outline's semi-axes at the widest level
    reach = 1.0 + 2.0 / (0.5 * (a + b))  # 2 mm beyond the scalp; 0.6 mm is enough
    inside = np.sqrt(x * x / a**2 + y * y / b**2) * wobble_inv < reach
    rows, cols = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
    if not len(rows):
        return slice(0, 0), slice(0, 0)
    size = x.shape[0]
    return (
        slice(max(0, rows[0] - 2), min(size, rows[-1] + 3)),
        slice(max(0, cols[0] - 2), min(size, cols[-1] + 3)),
    )


def _draw_acquisition(rng: np.random.Generator, head: _Head, max_slices: int) -> Acquisition:
    thickness = float(np.exp(rng.uniform(np.log(0.6), np.log(7.0))))
    spacing = thickness * rng.uniform(0.8, 1.0)
    if rng.random() < 0.5:  # from below the skull base (face and neck) through the
        # vertex, as most head CTs: the last slice ends in the scalp or just above it
        start = rng.uniform(-0.35, -0.05) * head.height
        end = head.height + rng.uniform(-0.5, 0.3) * spacing
        count = min(max_slices, max(8, int((end - start) / spacing) + 1))
    else:
        count = min(max_slices, max(8, int(head.height * 0.9 / spacing)))
        start = rng.uniform(5, max(6.0, head.height - count * spacing))
    positions = start + spacing * np.arange(count)
    if rng.random() < 0.25:  # two spacing regimes, as on the tilted GE head
        split = int(rng.integers(count // 3, 2 * count // 3))
        positions[split:] += (rng.uniform(1.3, 1.8) - 1) * spacing * np.arange(1, count - split + 1)
        positions = positions[positions < head.height + 0.3 * spacing]
    storage = str(rng.choice(["int16", "int16", "uint16"]))
    intercept = -1024.0 if storage == "uint16" else float(rng.choice([0.0, -1024.0]))
    return Acquisition(
        pixel_spacing=float(rng.uniform(0.4, 0.5)),
        slice_thickness=thickness,
        positions=tuple(float(p) for p in positions),
        noise_sigma=float(rng.uniform(3, 8)),
        gantry_tilt_degrees=float(rng.choice([0.0, 0.0, rng.uniform(-20, 20)])),
        storage=storage,
        rescale_intercept=intercept,
        # Axial scans: a nearly square profile; helical ones: soft edges and tails.
        profile_sigma=thickness
        * float(rng.uniform(0.0, 0.1) if rng.random() < 0.3 else rng.uniform(0.15, 0.45)),
    )


def _draw_lesions(
    rng: np.random.Generator,
    head: _Head,
    count: int,
    sizes: tuple[float, float],
    densities: tuple[float, float] = (50.0, 90.0),
) -> tuple[Lesion, ...]:
    lesions = []
    for _ in range(count):
        kind = str(rng.choice(FINDING_KINDS, p=[0.35, 0.25, 0.12, 0.14, 0.14]))
        z = rng.uniform(0.35, 0.85) * head.height
        size = float(np.exp(rng.uniform(np.log(sizes[0]), np.log(sizes[1]))))
        if kind == "intraparenchymal":
            angle, radius = rng.uniform(0, 2 * np.pi), rng.uniform(0.0, 0.55)
            center = (
                radius * head.width * math.cos(angle),
                radius * head.length * math.sin(angle),
                z,
            )
        elif kind == "intraventricular":
            # Blood in a ventricle layers posteriorly (the patient lies supine).
            center = (rng.choice([-1.0, 1.0]) * 12.0, 18.0, head.height * rng.uniform(0.5, 0.62))
            size = min(size, 15.0)
        else:
            center = (0.0, 0.0, z)
        lesions.append(Lesion(kind, center, size, float(rng.uniform(*densities))))
    return tuple(lesions)


class _SliceMaker:
    """Computes one slice (HU and blood mask) at a given height.

    Everything that depends only on the in-plane position is computed once per case;
    gantry tilt and neck flexion shift each finished slice along the image rows.
    """

    def __init__(
        self,
        rng: np.random.Generator,
        head: _Head,
        acq: Acquisition,
        lesions: tuple[Lesion, ...],
        matrix: int,
        shift_mm: float = 0.0,
        compress: float = 0.0,
    ) -> None:
        self.rng, self.head, self.acq, self.lesions, self.matrix = rng, head, acq, lesions, matrix
        self.spacing = acq.pixel_spacing * MATRIX / matrix  # same field of view at any matrix
        axis = (np.arange(matrix, dtype=np.float32) - matrix / 2 + 0.5) * self.spacing
        cos, sin = math.cos(head.rotation), math.sin(head.rotation)
        gx, gy = np.meshgrid(axis - head.shift[0], axis - head.shift[1])
        # Head coordinates of every pixel: x to the patient's left, y posterior (image rows
        # run anterior to posterior, as in a head-first supine scan).
        x = (cos * gx + sin * gy).astype(np.float32)
        y = (-sin * gx + cos * gy).astype(np.float32)
        angle = np.arctan2(y, x)
        wobble_inv = 1.0 / (
            1.0
            + sum(
                amp * np.cos((k + 2) * angle + phase) for k, (amp, phase) in enumerate(head.wobble)
            )
        ).astype(np.float32)
        # Every in-plane array below covers the head's window only; `make` puts the
        # window back into the full image.
        self.window = window = _head_window(x, y, wobble_inv, head)
        x, y = np.ascontiguousarray(x[window]), np.ascontiguousarray(y[window])
        self.x, self.y = x, y
        self.x2, self.y2 = x * x, y * y
        self.angle = angle = np.ascontiguousarray(angle[window])
        self.wobble_inv = np.ascontiguousarray(wobble_inv[window])
        self.streak_sin, self.streak_cos = np.sin(9 * angle), np.cos(9 * angle)
        # Streaks run across the posterior fossa, between the petrous bones.
        self.streak_fall = np.exp(-np.abs(y - 25) / 25).astype(np.float32)
        self.sulci = _Field(rng, (16, 48, 48), matrix, window)
        self.texture = _Field(rng, (12, 64, 64), matrix, window)
        self.airs = [  # sinus and mastoid air cells near the base: (distance map, radius)
            (np.hypot(x - ax, y - ay), radius)
            for ax, ay, radius in (
                (rng.uniform(-20, 20), rng.uniform(-75, -55), rng.uniform(6, 14)),  # sinuses
                (rng.uniform(-55, -45), rng.uniform(5, 25), rng.uniform(4, 9)),  # mastoids
                (rng.uniform(45, 55), rng.uniform(5, 25), rng.uniform(4, 9)),
            )
        ]
        # Tissue densities of this subject.
        self.scalp_hu, self.fat_hu = rng.uniform(20, 60), rng.uniform(80, 140)
        self.bone_hu = rng.uniform(1000, 1800)
        self.grey, self.white, self.csf = (
            rng.uniform(35, 45),
            rng.uniform(22, 32),
            rng.uniform(0, 15),
        )
        # Hyperdense things that are not findings, as (mask, HU, z range as fractions).
        self.calcifications: list[tuple[np.ndarray, float, float, float]] = []
        if rng.random() < 0.7:  # pineal, midline behind the third ventricle
            self.calcifications.append(
                (_smoothstep((2.5 - np.hypot(x, y - 22)) / 0.8), rng.uniform(100, 400), 0.38, 0.46)
            )
        if rng.random() < 0.6:  # choroid plexus in both lateral ventricles
            for side in (-1.0, 1.0):
                spot = _smoothstep((2.0 - np.hypot(x - side * 12, y - 20)) / 0.7)
                self.calcifications.append((spot, rng.uniform(120, 250), 0.5, 0.6))
        if rng.random() < 0.3:  # a calcified plaque on the falx
            y0, length = rng.uniform(-40, 40), rng.uniform(8, 25)
            plaque = _smoothstep((1.0 - np.abs(x)) / 0.5) * _smoothstep(
                (length / 2 - np.abs(y - y0)) / 1.0
            )
            self.calcifications.append((plaque, rng.uniform(150, 300), 0.5, 0.95))
        self.falx = (_smoothstep((0.6 - np.abs(x)) / 0.4) * (y > -10)).astype(np.float32)
        self.falx_hu = rng.uniform(10, 30)
        self.streaks = rng.uniform(5, 30)
        self._draw_dense_normals(rng)
        self.muscle_hu, self.marrow_hu = rng.uniform(40, 60), rng.uniform(200, 400)
        # The head holder of the table: a thin curved shell behind the head, in scanner
        # coordinates (it does not turn with the head).
        holder_radius = rng.uniform(92, 104)
        shell = np.abs(np.hypot(gx * 0.85, gy - rng.uniform(-10, 5)) - holder_radius) < rng.uniform(
            1.0, 2.5
        )
        holder = np.where(
            shell & (gy > -20), np.float32(rng.uniform(150, 400)), np.float32(-1000.0)
        )
        self.holder = np.ascontiguousarray(holder[window])
        self.tilt = math.tan(math.radians(acq.gantry_tilt_degrees))
        self.sections = slice_profile(acq.slice_thickness, acq.profile_sigma)
        # Outside the window every section is the holder or air: a slice there is their
        # sum over the slice profile, the same at every height.
        self.outside = np.zeros((matrix, matrix), dtype=np.float32)
        for weight in self.sections[1]:
            self.outside += np.float32(weight) * holder
        self._neck: dict[str, np.ndarray] | None = None
        self._lesion_planes: dict[int, np.ndarray] = {}
        self.mass, self.compress = float(shift_mm), float(compress)
        if self.mass:
            self._mass_effect()

    def _mass_effect(self) -> None:
        """A subfalcine shift: the lateral and third ventricles, the septum between them
        and the falx move by `mass` mm along head x (+ the patient's left) where the
        septum is (y near 0), tapering to nothing at the falx's front and back
        attachments (the falx bows); the ventricle on the side the mass pushes from is
        narrowed by `compress` (a share of its width). Everything moves rigidly: no
        effaced ventricle, no herniation's shape, no trapped contralateral horn."""
        reach = 0.85 * self.head.length
        bow = np.clip(1.0 - (np.abs(self.y) / reach) ** 4, 0.0, 1.0)
        self.x_moved = (self.x - self.mass * bow).astype(np.float32)
        self.x2_moved = self.x_moved * self.x_moved
        self.falx_moved = (_smoothstep((0.6 - np.abs(self.x_moved)) / 0.4) * (self.y > -10)).astype(
            np.float32
        )

    def outline(self, t: float) -> tuple[np.ndarray, float]:
        """Normalised radius (1 at the outer scalp) and the mean semi-axis at height t."""
        h = self.head
        base_narrow = 1.0 - 0.18 * min(1.0, max(0.0, 0.25 - t) / 0.25)
        profile = max(0.02, _profile(t, h.vault))  # above the vertex, a dot of scalp at most
        a, b = (h.width + 8) * profile * base_narrow, (h.length + 10) * profile
        r = (
            np.sqrt(self.x2 * np.float32(1 / a**2) + self.y2 * np.float32(1 / b**2))
            * self.wobble_inv
        )
        return r, 0.5 * (a + b)

    def obliquity(self, t: float) -> float:
        """How much wider than its true thickness a layer of the vault reads in an axial
        section at height t: sqrt(1 + (dsemi/dz)^2). It grows toward the vertex, where the
        section runs along the surface: a 5 mm calvarium there reads as a broad band of bone
        around a small cavity. Below the widest level, 1."""
        if t <= WIDEST_AT:
            return 1.0
        h = self.head
        step = 0.004
        widest = 0.5 * (h.width + 8 + h.length + 10)
        slope = (
            widest
            * (_profile(t - step, h.vault) - _profile(t + step, h.vault))
            / (2 * step * h.height)
        )
        return min(8.0, math.sqrt(1.0 + slope * slope))

    def make(self, z: float) -> tuple[np.ndarray, np.ndarray]:
        """The slice centred at z: thin sections weighted by the slice sensitivity profile
        (partial volume in z, which at the skull base and vertex makes bone look like soft
        tissue), then the scanner's blur and noise, and the tilt's shift."""
        hu_window = np.zeros(self.x.shape, dtype=np.float32)
        blood_window, bone_window = np.zeros_like(hu_window), np.zeros_like(hu_window)
        bleeding = False
        for offset, weight in zip(*self.sections, strict=True):
            section, blood_share, bone_share = self._anatomy(z + float(offset))
            hu_window += np.float32(weight) * section
            if blood_share is not None and bone_share is not None:
                blood_window += np.float32(weight) * blood_share
                bone_window += np.float32(weight) * bone_share
                bleeding = True
        hu = self.outside.copy()
        hu[self.window] = hu_window
        # Blood is marked where the scanner shows it: most of the blurred pixel, and not
        # drowned by the inner table (a twentieth of bone adds 50-90 HU). Both shares are
        # 0 along the window's edge (it lies outside the scalp), so blurring the window
        # alone gives what blurring the whole image would.
        mask = np.zeros(hu.shape, dtype=bool)
        if bleeding:
            mask[self.window] = (_blur3(blood_window) > 0.5) & (
                _blur3(bone_window) < VISIBLE_BONE_SHARE
            )
        hu = _blur3(hu)
        hu += self.rng.standard_normal(hu.shape, dtype=np.float32) * np.float32(
            self.acq.noise_sigma
        )
        # A tilted gantry (and a flexed neck) move the head along the rows slice by slice.
        shift = (z - self.head.height / 2) * (self.tilt + self.head.pitch) / self.spacing
        return _shift_rows(hu, shift, -1000.0), _shift_rows(
            mask.astype(np.float32), shift, 0.0
        ) > 0.5

    def _anatomy(self, z: float) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """HU of the thin section at z before blur and noise; where it holds blood, the
        blood's and the bone's share of each pixel."""
        h = self.head
        t = z / h.height
        r, semi = self.outline(t)
        depth = (1.0 - r) * np.float32(semi)  # mm inside the outer surface (approximately)
        base = t < 0.28
        # mm of bone: one value, or per pixel once the skull base texture applies
        skull: float | np.ndarray = h.skull * (
            1.0 + (1.6 * (0.28 - max(t, 0.0)) / 0.28 if base else 0.0)
        )
        if t < 0.05:  # below the skull base there is no bony ring, only the face and neck
            skull = skull * max(0.0, (t + 0.05) / 0.1)
        if base:  # thicker and irregular at the skull base
            skull = skull * (1 + 0.25 * self.texture.slice(t))
        # Layers and their edges widen where the section cuts the vault obliquely.
        oblique = self.obliquity(t)
        scalp, skull, edge = h.scalp * oblique, skull * oblique, 0.5 * oblique
        inner = depth - scalp - skull  # mm inside the inner table
        hu = _smoothstep(depth / 0.6) * np.float32(1000.0 + self.scalp_hu) - 1000.0
        hu -= (
            _smoothstep((depth - 1.0) / 0.4)
            * _smoothstep((scalp * 0.5 - depth) / 0.4)
            * self.fat_hu
        )
        bone_in = _smoothstep((depth - scalp) / edge)
        hu += bone_in * (self.bone_hu - hu)
        if base and t > 0.0:  # air cells in the bone
            for distance, radius in self.airs:
                air = _smoothstep(radius * min(3.0, (0.28 - t) / 0.28 * 3) - distance) * bone_in
                hu += air * (-1000.0 - hu)
        # Brain: a grey-matter ribbon over white matter, CSF in the sulci and ventricles.
        ribbon = self.ribbon * oblique * (1 + 0.4 * self.texture.slice(t + 0.6))
        brain = self.white + (self.grey - self.white) * _smoothstep((ribbon - inner) / 1.5)
        brain += self.texture_hu * self.texture.slice(t + 0.3)
        # Sulci: thin winding lines (where a smooth random field crosses zero) near the surface.
        field = np.abs(self.sulci.slice(t))
        sulcus = _smoothstep((0.12 - field) / 0.06) * _smoothstep((12.0 * oblique - inner) / 3.0)
        brain += sulcus * (self.csf - brain)
        ventricles = self._ventricles(t)
        if ventricles is not None:
            brain += ventricles * (self.csf - brain)
        for mask, value, low, high in self.calcifications:
            if low < t < high:
                brain += mask * (value - brain)
        if t > 0.5:
            brain += self.falx_hu * (self.falx_moved if self.mass else self.falx)
        brain = self._dense_normals(t, brain, inner)
        if base:  # dark and bright beam-hardening streaks between the dense bones
            phase = t * 40
            streak = (
                self.streak_sin * math.cos(phase) + self.streak_cos * math.sin(phase)
            ) * self.streak_fall
            brain += streak * (self.streaks * (0.28 - t) / 0.28)
        if t < 0.08:  # the brain gives way to the face and neck below the skull base
            weight = min(1.0, (0.08 - t) / 0.08)
            brain = brain * (1.0 - weight) + self._face_and_neck(t) * weight
        blood, density = self._blood(z, inner, sulcus, ventricles, semi)
        if blood is not None:
            brain += blood * (density - brain)
        inside = _smoothstep(inner / edge)  # partial volume at the inner table
        hu += inside * (brain - hu)
        hu = np.maximum(hu, self.holder)
        if blood is None:
            return hu, None, None
        # Shares of each pixel: blood, and the bone of the inner table beside it.
        return hu, blood * inside, bone_in * (1.0 - inside)

    def _draw_dense_normals(self, rng: np.random.Generator) -> None:
        """Normal structures that are as dense as fresh blood or denser, and so must be
        learned as normal: grey-matter nuclei, dural venous sinuses, the tentorium,
        arteries at the base, petrous bones, clivus and sphenoid, orbits, and the
        cupping that brightens brain next to the skull. Real head CTs have a few percent
        of brain pixels above 55 HU from these alone (more at the base and vertex)."""
        x, y = self.x, self.y
        self.ribbon = rng.uniform(4.0, 8.0)  # cortical grey-matter thickness, mm
        self.texture_hu = rng.uniform(2.0, 5.0)
        self.cupping_hu = rng.uniform(3.0, 15.0)
        self.cupping_mm = rng.uniform(3.0, 9.0)
        # Basal ganglia and thalami: grey matter deep in the hemispheres.
        nuclei = np.zeros_like(x)
        for side in (-1.0, 1.0):
            for cx, cy, ax, ay in ((18, -6, 7, 12), (11, 12, 7, 9)):
                body = ((x - side * cx) / ax) ** 2 + ((y - cy) / ay) ** 2
                nuclei = np.maximum(nuclei, _smoothstep((1.0 - body) * 3))
        self.nuclei = nuclei.astype(np.float32)
        self.sinus_hu = rng.uniform(45, 72)
        # Transverse sinuses curve along the back of the posterior fossa.
        self.transverse = (_smoothstep((np.abs(x) - 8) / 2) * (y > 25)).astype(np.float32)
        # The tentorium: a dense V from the petrous apices to the back of the head.
        v_line = np.abs(np.abs(x) * 0.9 - (y - 8) * 0.8) / math.hypot(0.9, 0.8)
        self.tentorium = (_smoothstep((1.0 - v_line) / 0.5) * (y > 8)).astype(np.float32)
        self.tentorium_hu = rng.uniform(15, 35)
        # Arteries at the base (circle of Willis, middle cerebral branches): small dense dots.
        vessels = []
        for _ in range(int(rng.integers(3, 9))):
            vx, vy = rng.uniform(-35, 35), rng.uniform(-25, 12)
            radius = rng.uniform(0.8, 1.8)
            spot = _smoothstep((radius - np.hypot(x - vx, y - vy)) / 0.5)
            low = rng.uniform(0.27, 0.4)
            vessels.append((spot.astype(np.float32), rng.uniform(45, 70), low, low + 0.06))
        self.vessels = vessels
        # Bone inside the head outline at the skull base, as (mask, z range).
        bones = []
        for side in (-1.0, 1.0):  # petrous ridges, running anteromedially
            ex, ey = side * rng.uniform(45, 52), rng.uniform(15, 25)
            px, py = side * rng.uniform(10, 16), rng.uniform(-6, 2)
            bones.append((_bar(x, y, (ex, ey), (px, py), rng.uniform(8, 14), 5.0), 0.1, 0.3))
            sx, sy = side * rng.uniform(40, 50), rng.uniform(-32, -22)  # sphenoid wings
            bones.append(
                (_bar(x, y, (sx, sy), (side * 10, -18), rng.uniform(1.5, 3), 1.0), 0.22, 0.31)
            )
        clivus = _bar(x, y, (0, -20), (0, 2), rng.uniform(4, 7), 2.0)
        bones.append((clivus, 0.05, 0.25))
        self.base_bones = bones
        # Orbits: fat with a globe, behind a bony rim, in front of the low slices.
        orbits = np.zeros_like(x)
        globes = np.zeros_like(x)
        for side in (-1.0, 1.0):
            distance = np.hypot((x - side * 28) / 16, (y + 58) / 20)
            orbits = np.maximum(orbits, _smoothstep((1.0 - distance) * 8))
            globes = np.maximum(globes, _smoothstep((11.0 - np.hypot(x - side * 28, y + 66)) / 0.6))
        self.orbits, self.globes = orbits.astype(np.float32), globes.astype(np.float32)

    def _dense_normals(self, t: float, brain: np.ndarray, inner: np.ndarray) -> np.ndarray:
        """Add the dense normal structures of height t to the brain compartment."""
        if 0.34 < t < 0.52:
            brain += self.nuclei * (self.grey + 2.0 - brain)
        # Superior sagittal sinus: a triangle at the midline against the inner table.
        if t > 0.42:
            sss = _smoothstep((5.0 - inner - 1.3 * np.abs(self.x)) / 0.8)
            brain += sss * (self.sinus_hu - brain)
        if 0.18 < t < 0.34:
            band = _smoothstep((5.0 - inner) / 0.8) * self.transverse
            brain += band * (self.sinus_hu - brain)
        if 0.26 < t < 0.42:
            brain += self.tentorium * self.tentorium_hu
        for spot, value, low, high in self.vessels:
            if low < t < high:
                brain += spot * (value - brain)
        # Cupping: brain next to the skull reads brighter, more so at the base and vertex.
        # Under the vault the bone is nearer than in the section's plane (the dome lies
        # above it): the distance is the in-plane one over the obliquity.
        strength = 1.0 + 1.5 * max(0.0, 0.3 - t) / 0.3 + 1.5 * max(0.0, t - 0.8) / 0.2
        near = np.maximum(inner, 0.0) * np.float32(1.0 / (self.cupping_mm * self.obliquity(t)))
        brain += (self.cupping_hu * strength) * np.exp(-near)
        if t < 0.3:
            for bone, low, high in self.base_bones:
                if low < t < high:
                    brain += bone * (self.bone_hu * 0.9 - brain)
        if 0.12 < t < 0.27:
            brain += self.orbits * (-80.0 - brain)
            brain += self.globes * (12.0 - brain)
        return brain

    def _face_and_neck(self, t: float) -> np.ndarray:
        """Below the brain: muscle with fat planes (muscle is 40-60 HU, as dense as blood),
        a vertebra with its canal, the airway, maxillary sinuses and nasal cavity, and the
        mandible lower down."""
        shapes = self._neck_shapes()
        planes = np.abs(self.sulci.slice(0.5 - t))
        tissue = self.muscle_hu + 4.0 * self.texture.slice(t + 0.9)
        tissue += _smoothstep((0.1 - planes) / 0.05) * (-90.0 - tissue)
        tissue += shapes["body"] * (self.marrow_hu - tissue)
        tissue += shapes["cortex"] * (self.bone_hu * 0.7 - tissue)
        tissue += shapes["canal"] * (25.0 - tissue)
        tissue += shapes["airway"] * (-1000.0 - tissue)
        if t > -0.15:
            for side in ("left", "right"):  # maxillary sinuses with bony walls
                tissue += shapes[f"{side} sinus wall"] * (self.bone_hu * 0.6 - tissue)
                tissue += shapes[f"{side} sinus"] * (-1000.0 - tissue)
            tissue += shapes["nasal"] * (-1000.0 - tissue)
        if t < -0.08:  # the mandible: an arc of bone in front
            tissue += shapes["mandible"] * (self.bone_hu * 0.8 - tissue)
        return tissue

    def _neck_shapes(self) -> dict[str, np.ndarray]:
        """The face and neck's shapes, the same at every height: drawn once per case."""
        if self._neck is not None:
            return self._neck
        x, y = self.x, self.y
        shapes = {
            "body": _smoothstep((9.0 - np.hypot(x, y - 18)) / 0.6),
            "cortex": _smoothstep((1.2 - np.abs(np.hypot(x, y - 18) - 9.0)) / 0.5),
            "canal": _smoothstep((6.5 - np.hypot(x, y - 34)) / 0.6),
            "airway": _smoothstep((1.0 - np.hypot(x / 9, (y + 6) / 6)) * 6),
        }
        for side, sign in (("left", -1.0), ("right", 1.0)):
            d = np.hypot((x - sign * 22) / 13, (y + 45) / 15)
            shapes[f"{side} sinus wall"] = _smoothstep((1.1 - d) * 10)
            shapes[f"{side} sinus"] = _smoothstep((1.0 - d) * 10)
        nasal = _smoothstep((1.0 - np.hypot(x / 7, (y + 55) / 18)) * 8)
        shapes["nasal"] = nasal * _smoothstep((np.abs(x) - 0.8) / 0.4)  # the septum
        arc = np.abs(np.hypot(x / 42, (y + 10) / 55) - 1.0) * 45
        shapes["mandible"] = _smoothstep((4.0 - arc) / 0.8) * (y < -10)
        self._neck = shapes
        return shapes

    def _ventricles(self, t: float) -> np.ndarray | None:
        """Lateral ventricles (largest mid-head), third and fourth ventricles."""
        s = self.head.ventricle_scale
        x, y, x2 = self.x, self.y, self.x2
        if self.mass:  # the supratentorial ventricles move; the fourth stays
            x, x2 = self.x_moved, self.x2_moved
        v = None
        if 0.42 < t < 0.78:
            k = math.sin(math.pi * (t - 0.42) / 0.36)
            for side in (-1.0, 1.0):
                cx = side * (7 + 4 * k) * s
                half = 5 * s * k + 1
                if self.compress and side * self.mass < 0:  # the mass's side: narrowed,
                    half *= 1.0 - self.compress  # its medial wall nearly in place
                    cx = side * (abs(cx) - 5 * s * k * self.compress)
                body = ((x - cx) * np.float32(1 / half)) ** 2 + self.y2 * np.float32(
                    1 / (28 * s * k + 2) ** 2
                )
                part = _smoothstep((1.0 - body) * 4)
                v = part if v is None else np.maximum(v, part)
        if 0.33 < t < 0.48:  # third ventricle: a midline slit
            part = _smoothstep((1.0 - x2 * np.float32(1 / 1.8**2) - ((y - 5) / 12) ** 2) * 4)
            v = part if v is None else np.maximum(v, part)
        if 0.18 < t < 0.32:  # fourth ventricle, posterior fossa
            part = _smoothstep((1.0 - self.x2 * np.float32(1 / 36) - ((y - 35) / 4) ** 2) * 4)
            v = part if v is None else np.maximum(v, part)
        return v

    def _lesion_plane(self, number: int) -> np.ndarray:
        """What of lesion `number` is the same on every section, computed once per case:
        the in-plane distance from its centre over its wobble (intraparenchymal and
        intraventricular), the cosine of each pixel's angle from its direction
        (subdural, epidural), or its region (subarachnoid)."""
        if number not in self._lesion_planes:
            lesion, x, y = self.lesions[number], self.x, self.y
            cx, cy, cz = lesion.center
            if lesion.kind in ("intraparenchymal", "intraventricular"):
                wobble = 1 + 0.25 * np.cos(3 * self.angle + cz) + 0.15 * np.sin(5 * self.angle + cx)
                plane = np.hypot(x - cx, y - cy) / wobble
            elif lesion.kind in ("subdural", "epidural"):
                sector_center = lesion.direction
                if sector_center is None:  # a direction drawn from the centre
                    sector_center = cx / 10.0 + cy / 7.0 + cz
                plane = np.cos(self.angle - sector_center)
            else:
                plane = _smoothstep((lesion.size_mm - np.hypot(x - cy / 2, y - cx / 2)) / 3)
            self._lesion_planes[number] = plane
        return self._lesion_planes[number]

    def _blood(
        self,
        z: float,
        inner: np.ndarray,
        sulcus: np.ndarray,
        ventricles: np.ndarray | None,
        semi: float,
    ) -> tuple[np.ndarray | None, np.ndarray | float]:
        """Blood fraction per pixel (None where no lesion reaches z) and its density (HU)."""
        blood: np.ndarray | None = None
        density: np.ndarray | float = 70.0
        edge_z = max(1.0, self.acq.slice_thickness / 2)  # thicker slices: softer in z
        for number, lesion in enumerate(self.lesions):
            cz = lesion.center[2]
            half = lesion.size_mm / 2
            dz = abs(z - cz)
            if dz > half + edge_z + 1:
                continue
            z_weight = min(1.0, max(0.0, 0.5 + 0.5 * (half - dz) / edge_z))
            plane = self._lesion_plane(number)
            if lesion.kind in ("intraparenchymal", "intraventricular"):
                radius = math.sqrt(max(half**2 - dz**2, 0.0)) + 0.5
                shape = _smoothstep((radius - plane) / 0.7)
                if lesion.kind == "intraventricular":
                    shape = shape * (ventricles if ventricles is not None else 0.0)
                shape = shape * _smoothstep(inner / 0.5)
            elif lesion.kind in ("subdural", "epidural"):
                span = min(math.pi * 0.8, lesion.size_mm / semi * 2.5)
                angular = plane - math.cos(span / 2)
                thickness = min(15.0, 2.0 + lesion.size_mm / 4)
                if lesion.kind == "epidural":  # biconvex: thickest mid-sector
                    profile = np.sqrt(np.clip(angular / (1 - math.cos(span / 2)), 0, 1))
                else:  # crescent: even thickness, tapering at the ends
                    profile = _smoothstep(angular * 12)
                shape = (
                    _smoothstep((thickness * profile - inner) / 0.6)
                    * _smoothstep(inner / 0.4)
                    * (angular > 0)
                )
            else:  # subarachnoid: blood in the sulci of a region
                shape = plane * sulcus * 0.9
            shape = shape * np.float32(z_weight)
            if blood is None:
                blood, density = shape, np.full_like(shape, lesion.density_hu)
            else:
                density = np.where(shape > blood, lesion.density_hu, density)
                blood = np.maximum(blood, shape)
        return blood, density


def _bar(
    x: np.ndarray,
    y: np.ndarray,
    start: tuple[float, float],
    end: tuple[float, float],
    width: float,
    taper: float,
) -> np.ndarray:
    """A soft-edged bar from start to end, `width` mm wide at start, narrower by `taper`."""
    (x0, y0), (x1, y1) = start, end
    dx, dy = x1 - x0, y1 - y0
    length2 = dx * dx + dy * dy
    along = np.clip(((x - x0) * dx + (y - y0) * dy) / length2, 0.0, 1.0)
    distance = np.hypot(x - (x0 + along * dx), y - (y0 + along * dy))
    half = (width - taper * along) / 2
    return _smoothstep((half - distance) / 0.6).astype(np.float32)


def _shift_rows(image: np.ndarray, shift: float, fill: float) -> np.ndarray:
    """Move an image by `shift` pixels along its rows (linear interpolation)."""
    if abs(shift) < 1e-3:
        return image
    whole = math.floor(shift)
    frac = np.float32(shift - whole)
    moved = np.full_like(image, fill)
    rows = image.shape[0]
    if abs(whole) < rows - 1:
        src = image[max(0, -whole) : rows - max(0, whole)]
        moved[max(0, whole) : rows - max(0, -whole)] = src
    ahead = np.full_like(moved, fill)
    ahead[1:] = moved[:-1]
    return moved * (1 - frac) + ahead * frac


def _slab_over_brain(
    acquisition: Acquisition,
    head: _Head,
    lesions: tuple[Lesion, ...],
    rng: np.random.Generator,
) -> Acquisition:
    """Move a slab too short for the whole head so that it crosses the brain where the
    first lesion is (or, in a case without one, where a lesion could be).

    A training case holds at most `max_slices` slices, so a thin-slice slab starting
    below the skull base may end in the face: without this the blood of a positive case
    was clipped into the neck, and negative cases were mostly necks. Negative and
    positive slabs are placed by the same rule, so where a slab lies tells nothing of
    its label."""
    anchor = lesions[0].center[2] if lesions else rng.uniform(0.35, 0.85) * head.height
    positions = np.array(acquisition.positions)
    low, high = positions[0], positions[-1]
    fraction = rng.uniform(0.2, 0.8)  # drawn always, so every case uses the same draws
    if low + 2 <= anchor <= high - 2:
        return acquisition
    span = high - low
    start = float(np.clip(anchor - fraction * span, -0.35 * head.height, head.height - 2 - span))
    return replace(acquisition, positions=tuple(float(p) for p in positions + (start - low)))


def make_case(
    seed: int,
    positive: bool,
    max_slices: int = 48,
    matrix: int = MATRIX,
    lesion_sizes: tuple[float, float] = (3.0, 40.0),
    lesions: Sequence[PlacedLesion] | None = None,
    shift_mm: float = 0.0,
    compress: float = 0.0,
    lesion_densities: tuple[float, float] = (50.0, 90.0),
) -> PhantomCase:
    """One deterministic case: with `positive`, 1-3 lesions; without, none.

    `matrix` below 512 renders the same field of view with larger pixels (the model sees
    256 after resampling a 512 slice). `lesion_sizes` bounds the
    diameters (mm, drawn log-uniformly), `lesion_densities` their attenuation (HU, drawn
    uniformly: acute blood 50-90; subacute blood fades towards the brain's 30-40, the
    low-contrast lesions readers and models miss).

    `lesions`, when given, replace the drawn ones (which are drawn all the same, so the
    head and the scan are the seed's); the slab is moved over the first. `shift_mm`
    moves the ventricles, septum and falx sideways (+ towards the patient's left: a mass
    on the right pushes them left); `compress` (0-1) narrows the ventricle on the side
    they are pushed from. Neither moves any lesion: place the mass yourself.
    """
    if not 0.0 <= compress < 1.0:
        raise ValueError(f"compress must be in [0, 1), not {compress}")
    rng = np.random.default_rng(seed)
    head = _draw_head(rng)
    acquisition = _draw_acquisition(rng, head, max_slices)
    count = int(rng.choice([1, 1, 1, 2, 3])) if positive else 0
    drawn = _draw_lesions(rng, head, count, lesion_sizes, lesion_densities)
    if lesions is not None:
        drawn = tuple(_lesion_at(placement, head) for placement in lesions)
    acquisition = _slab_over_brain(acquisition, head, drawn, np.random.default_rng(seed + 7))
    if positive or lesions:  # make sure the blood falls inside the scanned slab
        lo, hi = acquisition.positions[0], acquisition.positions[-1]
        drawn = tuple(
            replace(
                les,
                center=(
                    les.center[0],
                    les.center[1],
                    float(np.clip(les.center[2], lo + 2, hi - 2)),
                ),
            )
            for les in drawn
        )
    maker = _SliceMaker(rng, head, acquisition, drawn, matrix, shift_mm, compress)
    slices, masks = zip(*(maker.make(z) for z in acquisition.positions), strict=True)
    hu, mask = np.stack(slices), np.stack(masks)
    case = PhantomCase(
        seed, hu, mask, acquisition, drawn, head, maker.spacing, float(shift_mm), float(compress)
    )
    if positive and not case.label:  # a lesion too small to leave any blood voxel
        return make_case(
            seed + 1_000_003,
            positive,
            max_slices,
            matrix,
            lesion_sizes,
            lesions,
            shift_mm,
            compress,
            lesion_densities,
        )
    return case


def _lesion_at(placement: PlacedLesion, head: _Head) -> Lesion:
    """The lesion a placement asks for, in the drawn head's millimetres."""
    if placement.kind not in FINDING_KINDS:
        raise ValueError(f"kind must be one of {FINDING_KINDS}, not {placement.kind!r}")
    fx, fy, t = placement.at
    x, y = fx * head.width, fy * head.length
    direction = None
    if placement.kind in ("subdural", "epidural"):
        direction = math.atan2(y, x)
    return Lesion(
        placement.kind,
        (x, y, t * head.height),
        float(placement.size_mm),
        float(placement.density_hu),
        direction,
        placement.region,
    )
