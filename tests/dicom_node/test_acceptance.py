"""One set of checks for C-STORE datasets and STOW-RS Part 10 files, one set of statuses."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from assistant.analysis.imaging.synthetic import write_demo_series
from dicom_node import Status, StoreRefused
from dicom_node.acceptance import accept_dataset, accept_part10
from dicom_node.encoding import encode_file_meta, split_part10


@pytest.fixture(scope="module")
def part10(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    (path,) = write_demo_series(tmp_path_factory.mktemp("one"), count=1, seed=4242)
    return path.read_bytes()


def _encoded(dataset: Dataset, syntax: str = ExplicitVRLittleEndian) -> bytes:
    """The dataset encoded as a C-STORE carries it (no meta) in `syntax`."""
    dataset.file_meta.TransferSyntaxUID = syntax
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return bytes(split_part10(buffer.getvalue())[1])


def _refusal(call: object, *args: object, **kwargs: object) -> StoreRefused:
    with pytest.raises(StoreRefused) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    return caught.value


def test_a_whole_part10_file_is_accepted_with_its_uids(part10: bytes) -> None:
    accepted = accept_part10(part10)
    source = dcmread(io.BytesIO(part10), stop_before_pixels=True)
    assert accepted.transfer_syntax_uid == ExplicitVRLittleEndian
    assert accepted.sop_class_uid == CTImageStorage
    assert accepted.sop_instance_uid == source.SOPInstanceUID
    assert accepted.series_instance_uid == source.SeriesInstanceUID
    assert "PixelData" not in accepted.header  # the header only, never the pixels


def test_split_reads_a_meta_group_without_its_group_length(part10: bytes) -> None:
    meta, encoded = split_part10(part10)
    # Our own encoder writes a group length; rebuild the file without one.
    without = bytearray(
        encode_file_meta(
            meta.MediaStorageSOPClassUID,
            meta.MediaStorageSOPInstanceUID,
            meta.TransferSyntaxUID,
            "",
        )
    )
    del without[132:144]  # (0002,0000) UL: 12 bytes
    meta_again, encoded_again = split_part10(bytes(without) + bytes(encoded))
    assert meta_again.TransferSyntaxUID == meta.TransferSyntaxUID
    assert bytes(encoded_again) == bytes(encoded)


def test_stow_and_c_store_refuse_a_cut_short_dataset_alike(part10: bytes) -> None:
    _meta, encoded = split_part10(part10)
    cut = bytes(encoded)[:-1000]
    as_c_store = _refusal(accept_dataset, cut, ExplicitVRLittleEndian)
    as_stow = _refusal(accept_part10, part10[:-1000])
    assert as_c_store.status is as_stow.status is Status.CANNOT_UNDERSTAND
    assert as_c_store.reason == as_stow.reason == "dataset does not decode: TruncatedDataset"


def test_a_missing_or_invalid_uid_is_0xc001_on_both_paths(part10: bytes) -> None:
    dataset = dcmread(io.BytesIO(part10))
    with pytest.warns(UserWarning, match="Invalid value for VR UI"):  # pydicom, as it is told
        dataset.SeriesInstanceUID = "1.2.3.abc"
    as_c_store = _refusal(accept_dataset, _encoded(dataset), ExplicitVRLittleEndian)
    file = io.BytesIO()
    dataset.save_as(file, enforce_file_format=True)
    as_stow = _refusal(accept_part10, file.getvalue())
    assert as_c_store.status is as_stow.status is Status.MISSING_OR_INVALID_UID
    assert as_c_store.reason == as_stow.reason == "SeriesInstanceUID is not a valid UID"


def test_uids_that_disagree_with_the_request_are_0xa900(part10: bytes) -> None:
    _meta, encoded = split_part10(part10)
    refusal = _refusal(accept_dataset, encoded, ExplicitVRLittleEndian, sop_instance_uid="1.2.3.4")
    assert refusal.status is Status.DATASET_DOES_NOT_MATCH_SOP_CLASS
    refusal = _refusal(accept_part10, part10, study_instance_uid="1.2.3.4")
    assert refusal.status is Status.DATASET_DOES_NOT_MATCH_SOP_CLASS
    assert "URL" in refusal.reason


def test_a_non_storage_sop_class_is_0x0122(part10: bytes) -> None:
    dataset = dcmread(io.BytesIO(part10))
    dataset.SOPClassUID = "1.2.840.10008.1.1"  # Verification
    refusal = _refusal(
        accept_dataset, _encoded(dataset, ImplicitVRLittleEndian), ImplicitVRLittleEndian
    )
    assert refusal.status is Status.SOP_CLASS_NOT_SUPPORTED


@pytest.mark.parametrize(
    "blob",
    [b"", b"not dicom at all", b"\0" * 128 + b"DICM", b"\0" * 128 + b"DICM" + b"\x08\x00" * 8],
    ids=["empty", "text", "no-meta", "dataset-not-meta"],
)
def test_what_is_not_part10_is_0xc000(blob: bytes) -> None:
    refusal = _refusal(accept_part10, blob)
    assert refusal.status is Status.CANNOT_UNDERSTAND
    assert refusal.reason.startswith("not a DICOM Part 10 file")


def test_a_file_whose_meta_names_another_instance_is_refused(tmp_path: Path, part10: bytes) -> None:
    meta, encoded = split_part10(part10)
    other = encode_file_meta(meta.MediaStorageSOPClassUID, "1.2.3.4", meta.TransferSyntaxUID, "")
    refusal = _refusal(accept_part10, other + bytes(encoded))
    assert refusal.status is Status.DATASET_DOES_NOT_MATCH_SOP_CLASS


def test_a_transfer_syntax_the_scp_would_not_negotiate_is_refused(part10: bytes) -> None:
    meta, encoded = split_part10(part10)
    mpeg2 = "1.2.840.10008.1.2.4.100"  # MPEG2 Main Profile: not a storage syntax we take
    blob = encode_file_meta(
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID, mpeg2, ""
    )
    refusal = _refusal(accept_part10, blob + bytes(encoded))
    assert refusal.status is Status.CANNOT_UNDERSTAND
    assert refusal.reason == f"transfer syntax {mpeg2} is not supported"


def test_a_refusal_names_what_could_be_read_of_the_instance(part10: bytes) -> None:
    source = dcmread(io.BytesIO(part10), stop_before_pixels=True)
    refusal = _refusal(accept_part10, part10, study_instance_uid="1.2.3.4")
    assert refusal.uids == {
        "SOPClassUID": source.SOPClassUID,
        "SOPInstanceUID": source.SOPInstanceUID,
        "StudyInstanceUID": source.StudyInstanceUID,
        "SeriesInstanceUID": source.SeriesInstanceUID,
    }
