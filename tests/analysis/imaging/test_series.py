"""Imaging on the real shared series: order, spacing, tilt, rescale, decoding, refusals."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread

from assistant.analysis.imaging import (
    DEFAULT_WINDOWS,
    UnreadableSeries,
    hu_pixels,
    read_series,
    resize,
    to_windows,
)
from assistant.analysis.imaging.synthetic import write_demo_series
from tests.support.ct import dicom_files, shared_ct


def test_tilted_ge_head_is_ordered_along_the_normal_with_its_irregular_spacing() -> None:
    series = read_series(shared_ct("ge_head_tilted"))
    assert len(series.slices) == 28
    assert series.tilt_degrees == pytest.approx(18.5, abs=0.1)
    spacings = np.round(series.spacings, 2)
    assert list(spacings[:13]) == [4.0] * 13
    assert spacings[13] == pytest.approx(1.08, abs=0.01)
    assert list(spacings[14:]) == [7.0] * 13
    assert np.all(series.spacings > 0)


def test_order_comes_from_positions_not_instance_numbers(tmp_path: Path) -> None:
    files = dicom_files(shared_ct("philips_brain_phantom_5mm"))
    rng = np.random.default_rng(0)
    numbers = rng.permutation(len(files)) + 1
    for path, number in zip(files, numbers, strict=True):
        ds = dcmread(path)
        ds.InstanceNumber = int(number)
        ds.save_as(tmp_path / f"{number:03d}.dcm")
    scrambled = read_series(tmp_path)
    original = read_series(shared_ct("philips_brain_phantom_5mm"))
    assert [s.sop_instance_uid for s in scrambled.slices] == [
        s.sop_instance_uid for s in original.slices
    ]
    assert np.allclose(scrambled.spacings, 5.0)
    assert [s.instance_number for s in scrambled.slices] != sorted(
        s.instance_number for s in scrambled.slices
    )


def test_rescale_gives_hounsfield_units() -> None:
    series = read_series(shared_ct("philips_brain_phantom_5mm"))  # intercept -1024
    hu = series.hu(len(series.slices) // 2)
    raw = dcmread(series.slices[len(series.slices) // 2].path).pixel_array
    assert np.allclose(hu, raw.astype(np.float32) - 1024)
    assert hu.min() >= -1100  # air, not raw zero


def test_non_ct_objects_are_skipped_with_a_reason() -> None:
    with pytest.raises(UnreadableSeries, match="not a CT image"):
        read_series(shared_ct("philips_exam_summary_sc"))
    series = read_series(shared_ct("philips_brain_phantom_5mm"))  # has a DICOMDIR
    assert [(p.name, reason) for p, reason in series.skipped] == [
        ("DIRFILE", "not an image (no pixel data)")
    ]


def test_two_stacks_in_one_folder_are_refused(tmp_path: Path) -> None:
    for path in dicom_files(shared_ct("philips_brain_phantom_5mm"))[:3]:
        shutil.copy(path, tmp_path / path.name)
        ds = dcmread(path)
        ds.SOPInstanceUID = ds.SOPInstanceUID + ".9"
        ds.save_as(tmp_path / f"{path.name}-copy")
    with pytest.raises(UnreadableSeries, match="share a position"):
        read_series(tmp_path)


def test_every_lossless_wg04_variant_decodes_equal_to_ref() -> None:
    folder = shared_ct("wg04_compressed")
    for image in ("CT1", "CT2"):
        reference = hu_pixels(dcmread(folder / "REF" / f"{image}_UNC"))
        for variant in ("RLE", "JPLL", "JLSL", "J2KR"):
            decoded = hu_pixels(dcmread(folder / variant / f"{image}_{variant}"))
            assert np.array_equal(decoded, reference), f"{image} {variant}"
        for lossy, tolerance in (("JLSN", 10), ("J2KI", 1000)):
            decoded = hu_pixels(dcmread(folder / lossy / f"{image}_{lossy}"))
            assert np.abs(decoded - reference).max() <= tolerance, f"{image} {lossy}"


def test_batches_stream_windowed_slices_in_order() -> None:
    series = read_series(shared_ct("ge_head_tilted"))
    batches = list(series.batches(size=256, batch=8))
    assert [b.shape for b in batches] == [(8, 3, 256, 256)] * 3 + [(4, 3, 256, 256)]
    stacked = np.concatenate(batches)
    assert stacked.dtype == np.float32 and stacked.min() >= 0.0 and stacked.max() <= 1.0
    expected = to_windows(resize(series.hu(5), 256), DEFAULT_WINDOWS)
    assert np.array_equal(stacked[5], expected)


def test_resize_block_mean_and_interpolation() -> None:
    image = np.arange(16, dtype=np.float32).reshape(4, 4)
    assert np.array_equal(resize(image, 2), np.array([[2.5, 4.5], [10.5, 12.5]], dtype=np.float32))
    assert resize(np.ones((6, 6), np.float32), 4).shape == (4, 4)


def test_windows_map_hounsfield_units_to_unit_range() -> None:
    hu = np.array([[-1000.0, 0.0, 40.0, 80.0, 2000.0]], dtype=np.float32)
    brain, subdural, bone = to_windows(hu)
    assert list(brain[0]) == [0.0, 0.0, 0.5, 1.0, 1.0]
    assert subdural[0][2] == pytest.approx((40 - (80 - 100)) / 200)
    assert 0 < bone[0][2] < bone[0][4] <= 1.0


def test_a_series_without_pixel_spacing_is_refused_not_measured_as_1_mm(tmp_path: Path) -> None:
    for path in write_demo_series(tmp_path, count=3, seed=31):
        dataset = dcmread(path)
        del dataset.PixelSpacing
        dataset.save_as(path)
    with pytest.raises(UnreadableSeries, match="no valid Pixel Spacing"):
        read_series(tmp_path)


def _ge_head_with(tmp_path: Path, *changes: dict[str, object]) -> Path:
    """The GE head's 28 slices in a folder, plus one extra image per `changes` (a copy of
    the first slice with a new SOP Instance UID and those attributes)."""
    from pydicom.uid import generate_uid

    folder = tmp_path / "series"
    folder.mkdir()
    files = dicom_files(shared_ct("ge_head_tilted"))
    for path in files:
        shutil.copy(path, folder / path.name)
    for n, attributes in enumerate(changes):
        extra = dcmread(files[0])
        extra.SOPInstanceUID = extra.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        for keyword, value in attributes.items():
            setattr(extra, keyword, value)
        extra.save_as(folder / f"extra{n}.dcm")
    return folder


LOCALIZER = {
    "ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"],
    "ImageOrientationPatient": [0, 1, 0, 0, 0, -1],
    "InstanceNumber": 1,
}


def test_a_localizer_inside_the_series_is_left_out_not_the_series(tmp_path: Path) -> None:
    series = read_series(_ge_head_with(tmp_path, LOCALIZER))
    assert len(series.slices) == 28
    assert [(p.name, reason) for p, reason in series.skipped] == [
        ("extra0.dcm", "localizer (scout)")
    ]


def test_two_localizers_and_a_stray_reformat_leave_the_main_stack(tmp_path: Path) -> None:
    reformat = {
        "ImageOrientationPatient": [1, 0, 0, 0, 0, -1],
        "ImageType": ["DERIVED", "SECONDARY"],
    }
    series = read_series(_ge_head_with(tmp_path, LOCALIZER, LOCALIZER, reformat))
    assert len(series.slices) == 28
    reasons = sorted(reason for _, reason in series.skipped)
    assert reasons == [
        "localizer (scout)",
        "localizer (scout)",
        "not in the main stack (another orientation)",
    ]
    ordered = read_series(shared_ct("ge_head_tilted"))
    assert [s.sop_instance_uid for s in series.slices] == [
        s.sop_instance_uid for s in ordered.slices
    ]


def test_an_image_of_another_matrix_is_left_out(tmp_path: Path) -> None:
    series = read_series(_ge_head_with(tmp_path, {"Rows": 256, "Columns": 256}))
    assert len(series.slices) == 28
    assert [reason for _, reason in series.skipped] == [
        "not in the main stack (another matrix size)"
    ]
