"""Multi-frame CT objects (Enhanced CT, Legacy Converted Enhanced CT) read as the slice
stack: made from the real shared series, they read as those series do, frame by frame;
frames that are not of the main stack, and objects that cannot be read, are left out
with a reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom import Dataset
from pydicom.uid import RLELossless, generate_uid

from assistant.analysis.imaging import UnreadableSeries, read_series
from assistant.analysis.imaging import pixels as pixels_module
from tests.support.ct import dicom_files, shared_ct
from tests.support.multiframe import (
    enhanced_ct,
    legacy_converted,
    save,
    two_temporal_positions,
    with_frames,
)


@pytest.fixture(scope="module")
def ge_legacy() -> Dataset:
    return legacy_converted(dicom_files(shared_ct("ge_head_tilted")))


@pytest.fixture(scope="module")
def philips_legacy() -> Dataset:
    return legacy_converted(dicom_files(shared_ct("philips_brain_phantom_5mm")))


def _reads_as_the_single_frame_series(folder: Path, name: str) -> None:
    frames = read_series(folder)
    single = read_series(shared_ct(name))
    assert len(frames.slices) == len(single.slices)
    assert np.abs(frames.positions - single.positions).max() < 1e-3
    assert frames.pixel_spacing == pytest.approx(single.pixel_spacing)
    assert frames.tilt_degrees == pytest.approx(single.tilt_degrees, abs=1e-3)
    assert frames.skipped == ()
    assert all(s.frame_number is not None for s in frames.slices)
    assert len({s.sop_instance_uid for s in frames.slices}) == 1
    for index in range(len(single.slices)):
        assert np.array_equal(frames.hu(index), single.hu(index)), index
        assert np.array_equal(frames.hu_resized(index, 128), single.hu_resized(index, 128))


def test_legacy_converted_frames_read_as_the_tilted_single_frame_series(
    ge_legacy: Dataset, tmp_path: Path
) -> None:
    save(ge_legacy, tmp_path / "series" / "legacy.dcm")
    series = read_series(tmp_path / "series")
    assert all(s.pixels is not None for s in series.slices)  # one read() per frame
    _reads_as_the_single_frame_series(tmp_path / "series", "ge_head_tilted")


def test_enhanced_ct_with_per_frame_geometry_reads_the_same(
    ge_legacy: Dataset, tmp_path: Path
) -> None:
    enhanced = enhanced_ct(ge_legacy)
    shared = enhanced.SharedFunctionalGroupsSequence[0]
    assert "PlaneOrientationSequence" not in shared
    assert "PixelValueTransformationSequence" not in shared
    save(enhanced, tmp_path / "series" / "enhanced.dcm")
    _reads_as_the_single_frame_series(tmp_path / "series", "ge_head_tilted")


def test_rle_compressed_frames_decode_one_frame_at_a_time(
    philips_legacy: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Philips' 12-bit unsigned pixels with intercept -1024, RLE Lossless: each frame is
    decoded alone (pixel_array with its index), and rescaled with its own intercept."""
    compressed = enhanced_ct(philips_legacy)
    compressed.compress(RLELossless)
    save(compressed, tmp_path / "series" / "rle.dcm")
    series = read_series(tmp_path / "series")
    assert all(s.pixels is None for s in series.slices)
    indices: list[int | None] = []
    decode = pixels_module.pixel_array

    def counting(source: object, **kwargs: object) -> np.ndarray:
        indices.append(kwargs.get("index"))  # type: ignore[arg-type]
        return decode(source, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pixels_module, "pixel_array", counting)
    series.hu(3)
    assert indices == [series.slices[3].frame_number - 1]  # type: ignore[operator]
    monkeypatch.undo()
    _reads_as_the_single_frame_series(tmp_path / "series", "philips_brain_phantom_5mm")


def test_a_series_of_single_frame_slices_and_multi_frame_objects_is_one_stack(
    ge_legacy: Dataset, tmp_path: Path
) -> None:
    """The GE head as 10 single-frame slices and two multi-frame objects in one series."""
    files = dicom_files(shared_ct("ge_head_tilted"))
    single = read_series(shared_ct("ge_head_tilted"))
    ordered = [s.path for s in single.slices]
    folder = tmp_path / "series"
    folder.mkdir()
    for path in ordered[:10]:
        (folder / path.name).write_bytes(path.read_bytes())
    save(legacy_converted(ordered[10:20], instance_number=100), folder / "mf1.dcm")
    save(enhanced_ct(legacy_converted(ordered[20:], instance_number=101)), folder / "mf2.dcm")
    series = read_series(folder)
    assert len(series.slices) == len(files) and series.skipped == ()
    assert np.abs(series.positions - single.positions).max() < 1e-3
    kinds = [s.frame_number is None for s in series.slices]
    assert kinds == [True] * 10 + [False] * 18
    assert len({s.sop_instance_uid for s in series.slices[10:]}) == 2
    for index in (0, 9, 10, 19, 20, 27):
        assert np.array_equal(series.hu(index), single.hu(index)), index


def test_a_localizer_frame_is_left_out_like_a_localizer_image(
    ge_legacy: Dataset, tmp_path: Path
) -> None:
    def scout_first(number: int, item: Dataset) -> None:
        if number == 1:
            item.CTImageFrameTypeSequence[0].FrameType = [
                "ORIGINAL",
                "PRIMARY",
                "LOCALIZER",
                "NONE",
            ]
            item.PlaneOrientationSequence[0].ImageOrientationPatient = [0, 1, 0, 0, 0, -1]

    enhanced = with_frames(enhanced_ct(ge_legacy), scout_first)
    path = save(enhanced, tmp_path / "series" / "enhanced.dcm")
    series = read_series(tmp_path / "series")
    assert len(series.slices) == 27
    assert 1 not in {s.frame_number for s in series.slices}
    assert series.skipped == ((path, "localizer (scout)"),)


def test_a_second_temporal_position_leaves_the_main_stack_with_its_reason(
    ge_legacy: Dataset, tmp_path: Path
) -> None:
    enhanced = enhanced_ct(ge_legacy)
    path = save(two_temporal_positions(enhanced), tmp_path / "series" / "dynamic.dcm")
    series = read_series(tmp_path / "series")
    assert {s.frame_number for s in series.slices} == set(range(1, 29))  # temporal position 1
    assert series.skipped == ((path, "not in the main stack (another temporal position)"),) * 28
    single = read_series(shared_ct("ge_head_tilted"))
    assert np.array_equal(series.hu(5), single.hu(5))


def test_an_unreadable_multi_frame_object_is_left_out_saying_why(
    ge_legacy: Dataset, tmp_path: Path
) -> None:
    def no_position(number: int, item: Dataset) -> None:
        del item.PlanePositionSequence

    broken = with_frames(ge_legacy, no_position)
    path = save(broken, tmp_path / "alone" / "broken.dcm")
    with pytest.raises(UnreadableSeries, match="multi-frame object without per-frame plane"):
        read_series(tmp_path / "alone")

    folder = tmp_path / "beside"  # beside the single-frame slices of its series
    folder.mkdir()
    for source in dicom_files(shared_ct("ge_head_tilted")):
        (folder / source.name).write_bytes(source.read_bytes())
    save(broken, folder / path.name)
    series = read_series(folder)
    assert len(series.slices) == 28
    assert series.skipped == (
        (folder / path.name, "multi-frame object without per-frame plane positions"),
    )


def test_multi_frame_ct_image_storage_is_refused_as_multi_frame(tmp_path: Path) -> None:
    from pydicom import dcmread

    files = dicom_files(shared_ct("ge_head_tilted"))
    dataset = dcmread(files[0])
    dataset.PixelData = dataset.PixelData * 2
    dataset.NumberOfFrames = 2
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    for source in files:
        (tmp_path / source.name).write_bytes(source.read_bytes())
    dataset.save_as(tmp_path / "two-frames.dcm")
    series = read_series(tmp_path)
    assert [reason for _, reason in series.skipped] == [
        "multi-frame object without per-frame plane positions"
    ]
