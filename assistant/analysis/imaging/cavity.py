"""The intracranial cavity of one axial head-CT slice, to blank what lies outside it.

A model trained on phantoms meets, on a real scan, scalp, muscle, sinuses and skull base
it never saw; blanking everything outside the inner table of the skull lets it read only
what it learned on (brain, CSF, blood, including blood against the bone). The cavity is
what the bone ring closes: bone above BONE_HU, closed by a small disk so thin or
partial-volume stretches of skull still close the ring, holes filled, bone taken away,
and only pieces large enough to be brain kept. A slice whose ring does not close (the
open skull base below the foramen magnum) keeps nothing.
"""

from __future__ import annotations

from typing import cast

import numpy as np
from scipy import ndimage

#: Cortical bone on CT is well above this; clotted blood and calcified plaques below it
#: stay inside the cavity unless they are larger than a piece of skull.
BONE_HU = 180.0
#: Gaps in the bone ring up to about twice this (sutures, partial volume) are closed.
CLOSE_MM = 3.0
#: Pieces of cavity smaller than this (mastoid cells, the orbits' apex) are dropped.
MIN_AREA_MM2 = 150.0
#: What lies outside the cavity is given the HU of air: every CT window reads it as 0.
OUTSIDE_HU = -1000.0
#: Largest grid the ring is closed on.
WORK_SIZE = 128
#: The name a model card gives this step (`ModelCard.input_mask`).
INTRACRANIAL = "intracranial"
#: What a model card's `input_mask` may name: "" (none) or the intracranial cavity.
INPUT_MASKS = ("", INTRACRANIAL)


def _disk(radius: int) -> np.ndarray:
    yy, xx = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    return xx * xx + yy * yy <= radius * radius


def intracranial_mask(hu: np.ndarray, pixel_mm: float) -> np.ndarray:
    """Pixels inside the skull's inner table (bool, the slice's shape).

    The ring is closed and filled on a grid of at most WORK_SIZE pixels (morphology
    costs ten times more at 256²), then bone is taken away at full resolution."""
    bone = hu > BONE_HU
    if not bone.any():
        return np.zeros(hu.shape, dtype=bool)
    factor = _factor(hu.shape)
    coarse_mm = pixel_mm * factor
    coarse_bone = bone if factor == 1 else _block_any(bone, factor)
    radius = max(1, round(CLOSE_MM / coarse_mm))
    closed = ndimage.binary_closing(coarse_bone, structure=_disk(radius), border_value=0)
    filled = ndimage.binary_fill_holes(closed)
    labels, count = ndimage.label(filled & ~coarse_bone)
    if count == 0:
        return np.zeros(hu.shape, dtype=bool)
    areas = np.bincount(labels.ravel(), minlength=count + 1) * (coarse_mm * coarse_mm)
    keep = areas >= MIN_AREA_MM2
    keep[0] = False
    # Regrow one coarse pixel so the rim that shared a block with bone comes back.
    kept = ndimage.binary_dilation(keep[labels]) & filled
    if factor > 1:
        kept = kept.repeat(factor, axis=0).repeat(factor, axis=1)
    return kept & ~bone


def _factor(shape: tuple[int, ...]) -> int:
    rows, cols = shape
    factor = 1
    while rows % (factor * 2) == 0 and cols % (factor * 2) == 0 and rows // factor > WORK_SIZE:
        factor *= 2
    return factor


def _block_any(mask: np.ndarray, factor: int) -> np.ndarray:
    """True where any pixel of each factor x factor block is: thin bone survives."""
    rows, cols = mask.shape
    # any() over two of four axes gives an array; numpy types it as possibly a scalar.
    blocks = mask.reshape(rows // factor, factor, cols // factor, factor)
    return cast(np.ndarray, blocks.any(axis=(1, 3)))


def blank_outside_cavity(hu: np.ndarray, pixel_mm: float) -> np.ndarray:
    """The slice with everything outside the intracranial cavity set to air, in place
    when `hu` is a float array (returned either way)."""
    if not np.issubdtype(hu.dtype, np.floating):
        hu = hu.astype(np.float32)
    hu[~intracranial_mask(hu, pixel_mm)] = OUTSIDE_HU
    return hu


def apply_input_mask(hu: np.ndarray, input_mask: str, pixel_mm: float) -> np.ndarray:
    """The slice as a model with this `input_mask` reads it."""
    if input_mask == INTRACRANIAL:
        return blank_outside_cavity(hu, pixel_mm)
    if input_mask:
        raise ValueError(f"input mask must be one of {INPUT_MASKS}, not {input_mask!r}")
    return hu
