"""The fast read of uncompressed slices gives exactly what pydicom's decoders give."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from assistant.analysis.imaging import hu_pixels, read_series, resize
from assistant.analysis.imaging.pixels import native_hu, native_pixels, read_native
from tests.support.ct import dicom_files, shared_ct


def _deferred(path: Path):  # type: ignore[no-untyped-def]
    return dcmread(path, defer_size=4096)


@pytest.mark.parametrize(
    "folder", ["ge_head_tilted", "philips_brain_phantom_5mm", "wg04_compressed/REF"]
)
def test_uncompressed_shared_slices_read_exactly_as_pydicom_decodes_them(folder: str) -> None:
    files = dicom_files(shared_ct(folder))
    assert files
    for path in files:
        pixels = native_pixels(_deferred(path))
        assert pixels is not None, path.name
        full = dcmread(path)
        assert np.array_equal(read_native(path, pixels), full.pixel_array), path.name
        assert np.array_equal(native_hu(path, pixels), hu_pixels(full)), path.name
        if full.Rows == full.Columns:
            size = full.Rows // 2
            expected = resize(hu_pixels(full), size)
            # The block mean is taken before the rescale: equal up to float rounding.
            assert np.allclose(native_hu(path, pixels, size), expected, atol=1e-3), path.name


def test_compressed_slices_are_left_to_pydicom_and_read_the_same() -> None:
    folder = shared_ct("wg04_compressed")
    for variant in ("RLE", "JPLL", "JLSL", "J2KR"):
        path = folder / variant / f"CT1_{variant}"
        assert native_pixels(_deferred(path)) is None, variant
    series = read_series([folder / "JPLL" / "CT1_JPLL"])
    assert series.slices[0].pixels is None
    reference = hu_pixels(dcmread(folder / "REF" / "CT1_UNC"))
    assert np.array_equal(series.hu(0), reference)


def _write(tmp_path: Path, stored: np.ndarray, *, signed: bool, bits: int, syntax: str) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = FileDataset(tmp_path / "x.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = stored.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits, bits - 1
    ds.PixelRepresentation = int(signed)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.RescaleSlope, ds.RescaleIntercept = "0.5", "-1000"
    ds.PixelData = stored.astype("<u2").tobytes()
    path = tmp_path / f"{signed}-{bits}-{syntax}.dcm"
    ds.save_as(path, implicit_vr=syntax == ImplicitVRLittleEndian, little_endian=True)
    return path


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
@pytest.mark.parametrize("signed", [False, True])
def test_bits_above_the_high_bit_are_ignored_and_the_sign_extended(
    tmp_path: Path, syntax: str, signed: bool
) -> None:
    # Stray bits above bit 11 (as overlays once used), and values with bit 11 set.
    values = np.array([[0xF123, 0x0FFF, 0x0800, 0x07FF], [0, 1, 0xA000, 0x8001]], np.uint16)
    stored = np.tile(values, (32, 16))  # 64 x 64: large enough to be deferred on reading
    path = _write(tmp_path, stored, signed=signed, bits=12, syntax=syntax)
    pixels = native_pixels(_deferred(path))
    assert pixels is not None and pixels.signed is signed and pixels.bits_stored == 12
    expected = dcmread(path).pixel_array
    assert np.array_equal(read_native(path, pixels), expected)
    assert np.array_equal(native_hu(path, pixels), expected.astype(np.float32) * 0.5 - 1000)


def test_a_file_cut_short_in_its_pixels_is_an_error(tmp_path: Path) -> None:
    source = dicom_files(shared_ct("philips_brain_phantom_5mm"))[0]
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(source.read_bytes()[:-1000])
    pixels = native_pixels(_deferred(cut))
    assert pixels is not None
    with pytest.raises(ValueError, match="cut short"):
        read_native(cut, pixels)


def test_one_buffer_serves_every_slice_and_the_header_keeps_no_pixels() -> None:
    series = read_series(shared_ct("ge_head_tilted"))
    buffer = series.pixel_buffer()
    first = series.hu_resized(0, 256, buffer)
    last = series.hu_resized(len(series.slices) - 1, 256, buffer)
    assert np.array_equal(first, series.hu_resized(0, 256))  # not overwritten by the next
    assert not np.array_equal(first, last)
    header = series.slices[0].header
    assert header is not None and header.SOPInstanceUID == series.slices[0].sop_instance_uid
    assert header.get_item("PixelData", keep_deferred=True).value is None
