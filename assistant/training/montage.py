"""A PNG montage of phantom cases, so a person can see what the model learns from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from assistant.analysis.imaging import DEFAULT_WINDOWS, to_windows
from assistant.training.phantoms import PhantomCase


def _tile(case: PhantomCase, index: int, size: int) -> np.ndarray:
    brain = to_windows(case.hu[index], DEFAULT_WINDOWS[:1])[0]
    rgb = np.repeat((brain * 255).astype(np.uint8)[..., None], 3, axis=2)
    outline = case.mask[index] & ~np.roll(case.mask[index], 1, axis=0)
    outline |= case.mask[index] & ~np.roll(case.mask[index], 1, axis=1)
    rgb[outline] = (255, 40, 40)  # blood outlined in red
    return np.asarray(Image.fromarray(rgb).resize((size, size), Image.Resampling.BILINEAR))


def write_montage(
    cases: list[PhantomCase], path: Path, slices_per_case: int = 5, size: int = 192
) -> Path:
    """One row per case, `slices_per_case` slices from base to vertex, brain window,
    blood outlined in red; a positive case's rows include its most bloody slice."""
    rows = []
    for case in cases:
        picks = list(np.linspace(0, len(case.hu) - 1, slices_per_case).round().astype(int))
        if case.label:
            picks[len(picks) // 2] = int(case.mask.reshape(len(case.mask), -1).sum(axis=1).argmax())
        rows.append(np.concatenate([_tile(case, i, size) for i in picks], axis=1))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)
    return path


def main(argv: list[str] | None = None) -> int:
    """Write a montage of eight synthetic cases (half with blood) to the given path."""
    import sys

    from assistant.training.phantoms import make_case

    target = Path((argv or sys.argv[1:] or ["phantoms.png"])[0])
    cases = [make_case(seed, seed % 2 == 1, max_slices=40) for seed in range(1, 9)]
    print(write_montage(cases, target))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
