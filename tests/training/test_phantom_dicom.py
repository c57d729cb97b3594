"""Phantom cases written as DICOM: valid (dciodvfy), and read back with their geometry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from assistant.analysis.imaging import read_series
from assistant.training.phantom_dicom import write_case
from assistant.training.phantoms import make_case
from tests.peers.dicom3tools import dciodvfy_errors


@pytest.mark.parametrize("seed", [2, 9])  # 2: tilted, uint16 (air below -1024 clipped); 9: int16
def test_written_phantom_reads_back(tmp_path: Path, seed: int) -> None:
    case = make_case(seed, True, max_slices=6, matrix=128)
    paths = write_case(case, tmp_path)
    series = read_series(tmp_path)
    assert len(series.slices) == len(paths) == len(case.hu)
    assert np.allclose(series.spacings, np.diff(case.acquisition.positions), atol=1e-3)
    assert series.tilt_degrees == pytest.approx(abs(case.acquisition.gantry_tilt_degrees), abs=0.05)
    expected = case.hu[0]
    if case.acquisition.storage == "uint16":  # air noise below the intercept is clipped
        expected = np.maximum(expected, case.acquisition.rescale_intercept)
    assert np.abs(series.hu(0) - expected).max() <= 0.5 + 1e-3  # integer storage only


def test_written_phantom_passes_dciodvfy(tmp_path: Path) -> None:
    path = write_case(make_case(3, True, max_slices=2, matrix=64), tmp_path)[0]
    assert dciodvfy_errors(path) == []
