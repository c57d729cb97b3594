"""Holes in a slice stack: positions where a slice should be and none arrived.

A result read from a volume with a hole must say so: a finding in the missing slice is
not seen, and the lesion volume across the hole is a guess. Spacing may change along a
series (the GE head in ../shared/data/ct/ge_head_tilted goes from 4 mm to 7 mm), so each
spacing is compared with the spacings on either side of it, not with one series-wide
value. A slice missing at either end leaves no trace in the spacing; it shows only when
the scanner wrote Images in Acquisition (0020,1002) and nothing of the acquisition was
left out of the stack.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: A spacing this many times the usual spacing around it is a hole (one missing slice
#: doubles it; a change of reconstruction interval stays well under).
GAP_RATIO = 1.5
#: How far from a whole multiple of the usual spacing a hole may be (in multiples).
MULTIPLE_TOLERANCE = 0.2
#: How many spacings on each side set "the usual spacing around it".
_NEIGHBOURS = 3


@dataclass(frozen=True)
class Gap:
    """Slices missing between two neighbouring slices of the stack."""

    #: 0-based index of the slice before the hole (slice numbers are this + 1 and + 2).
    after_index: int
    #: Positions along the slice normal on either side of the hole, mm.
    start_mm: float
    end_mm: float
    #: About how many slices the hole holds.
    missing: int

    def sentence(self) -> str:
        slices = "slice" if self.missing == 1 else "slices"
        return (
            f"about {self.missing} {slices} missing between slices {self.after_index + 1} and "
            f"{self.after_index + 2} ({self.start_mm:.1f} to {self.end_mm:.1f} mm)"
        )


def _usual_spacing(spacings: np.ndarray, index: int) -> float:
    """The smaller of the median spacings just before and just after `index`: holes in a
    run raise the median on their side, so the side without them sets the bar."""
    before = spacings[max(0, index - _NEIGHBOURS) : index]
    after = spacings[index + 1 : index + 1 + _NEIGHBOURS]
    medians = [float(np.median(side)) for side in (before, after) if len(side)]
    return min(medians) if medians else 0.0


def _run(spacings: np.ndarray, index: int) -> tuple[int, int]:
    """First and last index of the run of spacings within 10 % of spacings[index]."""
    width = spacings[index]
    start, end = index, index
    while start > 0 and abs(spacings[start - 1] - width) <= 0.1 * width:
        start -= 1
    while end + 1 < len(spacings) and abs(spacings[end + 1] - width) <= 0.1 * width:
        end += 1
    return start, end


def find_gaps(positions: Sequence[float] | np.ndarray) -> list[Gap]:
    """Holes in a stack ordered along the slice normal (positions in mm, ascending).

    A spacing is a hole when it is a whole multiple (at least 1.5 times, within 0.2 of
    a multiple) of the usual spacing beside it, unless it starts a new reconstruction
    interval: two or more such spacings running on to an end of the series (a head
    scanned 5 mm then 10 mm, or 4 mm then 7 mm as in the GE head)."""
    ordered = np.asarray(positions, dtype=float)
    if len(ordered) < 3:
        return []
    spacings = np.diff(ordered)
    gaps = []
    for index, spacing in enumerate(spacings):
        usual = _usual_spacing(spacings, index)
        if usual <= 0:
            continue
        ratio = float(spacing) / usual
        if ratio < GAP_RATIO or abs(ratio - round(ratio)) > MULTIPLE_TOLERANCE:
            continue
        start, end = _run(spacings, index)
        if end - start >= 1 and (start == 0 or end == len(spacings) - 1):
            continue  # another interval to an end of the series, not missing slices
        gaps.append(
            Gap(
                after_index=index,
                start_mm=float(ordered[index]),
                end_mm=float(ordered[index + 1]),
                missing=max(1, round(ratio) - 1),
            )
        )
    return gaps


def shortfall(slice_count: int, images_in_acquisition: Sequence[int | None]) -> int:
    """Slices fewer than the scanner said it made (Images in Acquisition of the stack's
    slices), or 0 when it did not say or the values disagree."""
    said = {n for n in images_in_acquisition if n}
    if len(said) != 1:
        return 0
    return max(0, said.pop() - slice_count)


def gap_notes(
    positions: Sequence[float] | np.ndarray,
    images_in_acquisition: Sequence[int | None],
    left_out: int = 0,
) -> list[str]:
    """The warning a reader sees (SR, dashboard, API) when the stack has holes; none
    when it has none. `left_out`: images of the series not in the stack, which count
    towards Images in Acquisition (a reformat left out is not a missing slice)."""
    gaps = find_gaps(positions)
    missing_total = sum(gap.missing for gap in gaps)
    short = shortfall(len(positions) + left_out, images_in_acquisition)
    parts = [gap.sentence() for gap in gaps]
    if short > missing_total:
        extra = short - missing_total
        parts.append(
            f"{extra} {'slice' if extra == 1 else 'slices'} fewer than the "
            f"{short + len(positions) + left_out} images the scanner made (missing at an end)"
        )
    if not parts:
        return []
    return ["Incomplete volume: " + "; ".join(parts) + ". A finding there would not be seen."]
