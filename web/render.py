"""Pictures for the study page, drawn on the server: a key slice in a CT window with the
lesion outline, and the per-slice probability curve as SVG."""

from __future__ import annotations

import io
from collections.abc import Sequence
from html import escape
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from pydicom import dcmread

from assistant.analysis.imaging.frames import read_frames
from assistant.analysis.imaging.pixels import DEFAULT_WINDOWS, frame_hu, hu_pixels

#: The windows (centre, width in HU) a radiologist flips between on a head CT, by the
#: name the page offers them under: brain first, what a head CT is read in first.
WINDOWS: dict[str, tuple[float, float]] = {w.name: (w.center, w.width) for w in DEFAULT_WINDOWS}
BRAIN_WINDOW = WINDOWS["brain"]
OUTLINE_COLOUR = (255, 64, 32)


def slice_hu(path: Path, frame: int | None = None) -> np.ndarray:
    """One slice in HU: the image at `path`, or its frame `frame` (1-based) when it is a
    multi-frame object (only that frame decoded, with its own rescale)."""
    if frame is None:
        return hu_pixels(dcmread(path))
    header = dcmread(path, stop_before_pixels=True)
    frames = read_frames(header)
    if not 1 <= frame <= len(frames):
        raise ValueError(f"{path.name} has no frame {frame}")
    return frame_hu(path, frame, frames[frame - 1].rescale)


def key_image_png(
    path: Path,
    outline: Sequence[Sequence[float]] = (),
    window: tuple[float, float] = BRAIN_WINDOW,
    frame: int | None = None,
) -> bytes:
    """The slice at `path` (its frame `frame`, for a multi-frame object) windowed to 8
    bits, with `outline` ((column, row) points in the slice's pixels) drawn as a closed
    line."""
    hu = slice_hu(path, frame)
    centre, width = window
    grey = np.clip((hu - (centre - width / 2)) / width, 0.0, 1.0)
    image = Image.fromarray((grey * 255).astype(np.uint8)).convert("RGB")
    if len(outline) >= 3:
        line_width = max(1, image.width // 256)
        points = [(float(x), float(y)) for x, y in outline]
        ImageDraw.Draw(image).line([*points, points[0]], fill=OUTLINE_COLOUR, width=line_width)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False)
    return out.getvalue()


def probability_svg(
    probabilities: Sequence[float],
    threshold: float,
    flagged: Sequence[int] = (),
    width: int = 640,
    height: int = 180,
) -> str:
    """The per-slice probability across the sequence (slice 1 at the left), the slice
    threshold dashed, flagged slices shaded. Built only from numbers: safe to inline."""
    left, right, top, bottom = 54, 10, 10, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    n = len(probabilities)

    def x(i: float) -> float:
        return left + (plot_w * (i / (n - 1)) if n > 1 else plot_w / 2)

    def y(p: float) -> float:
        return top + plot_h * (1.0 - min(1.0, max(0.0, p)))

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="curve" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" '
        f'aria-label="{escape(f"Probability per slice across {n} slices")}">',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" class="frame"/>',
    ]
    step = plot_w / max(1, n - 1)
    for i in flagged:
        parts.append(
            f'<rect x="{x(i) - step / 2:.1f}" y="{top}" width="{step:.1f}" height="{plot_h}" '
            'class="flagged"/>'
        )
    for p in (0.0, 0.5, 1.0):
        parts.append(
            f'<text x="{left - 6}" y="{y(p) + 4:.1f}" class="tick" text-anchor="end">{100 * p:.0f} %</text>'
        )
    parts.append(
        f'<line x1="{left}" x2="{left + plot_w}" y1="{y(threshold):.1f}" y2="{y(threshold):.1f}" '
        'class="threshold"/>'
    )
    if n:
        points = " ".join(f"{x(i):.1f},{y(p):.1f}" for i, p in enumerate(probabilities))
        parts.append(f'<polyline points="{points}" class="line"/>')
        for i in sorted({0, n - 1, *range(0, n, max(1, n // 8))}):
            parts.append(
                f'<text x="{x(i):.1f}" y="{height - 10}" class="tick" text-anchor="middle">{i + 1}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)
