"""DICOM series → ordered HU slices → model input, without torch.

`read_series` orders a series by position along the slice normal and refuses what the
model cannot read, with a reason; `SeriesGeometry.batches` streams windowed, resampled
slices so a long series never sits whole in memory at full size.
"""

from assistant.analysis.imaging.cavity import INPUT_MASKS, INTRACRANIAL, apply_input_mask
from assistant.analysis.imaging.pixels import DEFAULT_WINDOWS, Window, hu_pixels, resize, to_windows
from assistant.analysis.imaging.series import (
    SeriesGeometry,
    SliceInfo,
    UnreadableSeries,
    read_series,
)

__all__ = [
    "DEFAULT_WINDOWS",
    "INPUT_MASKS",
    "INTRACRANIAL",
    "SeriesGeometry",
    "SliceInfo",
    "UnreadableSeries",
    "Window",
    "apply_input_mask",
    "hu_pixels",
    "read_series",
    "resize",
    "to_windows",
]
