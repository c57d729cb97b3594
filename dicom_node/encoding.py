"""DICOM encodings the node reads and writes byte by byte: a received dataset's header
(checked whole, decoded up to the pixel data), the File Meta Information written before
it, and the split of a Part 10 file into its meta and its dataset.

These run once per instance, on the network's hot path; pydicom's general reader and
writer would cost more than the rest of a C-STORE, and pydicom reads a dataset cut
short without complaint.
"""

from __future__ import annotations

import struct
import zlib
from io import BytesIO

from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
)

IMPLEMENTATION_VERSION_NAME = "RADASSIST_010"


def _stop_at_pixel_data(tag: int, vr: str | None, length: int) -> bool:
    return tag >= 0x7FE00000


_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT"})
_UNDEFINED_LENGTH = 0xFFFFFFFF


class TruncatedDataset(ValueError):
    """The dataset ends before its last element does."""


_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD


def _walk_elements(
    data: bytes | memoryview, offset: int, implicit: bool, order: str, *, in_item: bool
) -> int:
    """Skip over encoded elements from `offset`; raise TruncatedDataset if any is cut short.

    Returns the offset after the last element, or after the item delimiter when
    walking an undefined-length item.
    """
    end = len(data)
    while offset < end:
        if end - offset < 8:
            raise TruncatedDataset(f"{end - offset} stray byte(s) where an element should start")
        group, element = struct.unpack_from(order + "HH", data, offset)
        tag = group << 16 | element
        if tag == _ITEM_END:
            if not in_item:
                raise TruncatedDataset("an item delimiter outside any item")
            return offset + 8
        if implicit or group == 0xFFFE:
            length, offset = struct.unpack_from(order + "L", data, offset + 4)[0], offset + 8
        elif bytes(data[offset + 4 : offset + 6]) in _LONG_VRS:
            if end - offset < 12:
                raise TruncatedDataset("an element header is cut short")
            length, offset = struct.unpack_from(order + "L", data, offset + 8)[0], offset + 12
        else:
            length, offset = struct.unpack_from(order + "H", data, offset + 6)[0], offset + 8
        if length == _UNDEFINED_LENGTH:
            offset = _walk_items(data, offset, implicit, order)
        elif offset + length > end:
            raise TruncatedDataset(f"element ({group:04X},{element:04X}) is cut short")
        else:
            offset += length
    if in_item:
        raise TruncatedDataset("an item ends without its delimiter")
    return offset


def _walk_items(data: bytes | memoryview, offset: int, implicit: bool, order: str) -> int:
    """Skip the items of an undefined-length sequence or encapsulated pixel data."""
    end = len(data)
    while True:
        if end - offset < 8:
            raise TruncatedDataset("a sequence ends without its delimiter")
        group, element, length = struct.unpack_from(order + "HHL", data, offset)
        tag, offset = group << 16 | element, offset + 8
        if tag == _SEQUENCE_END:
            return offset
        if tag != _ITEM:
            raise TruncatedDataset(f"({group:04X},{element:04X}) where an item should be")
        if length == _UNDEFINED_LENGTH:
            offset = _walk_elements(data, offset, implicit, order, in_item=True)
        elif offset + length > end:
            raise TruncatedDataset("an item is cut short")
        else:
            offset += length


def check_whole(data: bytes | memoryview, implicit: bool, little: bool) -> None:
    """Raise TruncatedDataset unless every element of the encoded dataset is complete.

    pydicom reads a dataset cut short without complaint, so a truncated transfer
    would otherwise be stored as if it were whole.
    """
    _walk_elements(data, 0, implicit, "<" if little else ">", in_item=False)


def decode_header(encoded: bytes | memoryview, transfer_syntax: str) -> Dataset:
    """Decode a dataset as sent on the wire up to the pixel data, and check it is whole."""
    data: bytes | memoryview = encoded
    if transfer_syntax == DeflatedExplicitVRLittleEndian:
        data = zlib.decompressobj(-zlib.MAX_WBITS).decompress(encoded)
    implicit = transfer_syntax == ImplicitVRLittleEndian
    little = transfer_syntax != ExplicitVRBigEndian
    check_whole(data, implicit, little)
    stream = BytesIO(data)
    header = read_dataset(stream, implicit, little, stop_when=_stop_at_pixel_data)
    if "Rows" in header and stream.tell() >= len(data):  # cut exactly before its pixels
        raise TruncatedDataset("an image without pixel data")
    return header


def _short_element(element: int, vr: bytes, value: bytes, pad: bytes) -> bytes:
    if len(value) % 2:
        value += pad
    return struct.pack("<HH2sH", 0x0002, element, vr, len(value)) + value


def encode_file_meta(
    sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str, source_ae_title: str
) -> bytes:
    """Preamble, "DICM" prefix and the File Meta Information group (PS3.10 §7.1).

    Encoded directly: it is built once per C-STORE, and pydicom's general writer
    takes a millisecond for these eight elements.
    """
    elements = b"".join(
        (
            struct.pack("<HH2sHL", 0x0002, 0x0001, b"OB", 0, 2) + b"\x00\x01",
            _short_element(0x0002, b"UI", sop_class_uid.encode("ascii"), b"\0"),
            _short_element(0x0003, b"UI", sop_instance_uid.encode("ascii"), b"\0"),
            _short_element(0x0010, b"UI", transfer_syntax.encode("ascii"), b"\0"),
            _short_element(0x0012, b"UI", PYDICOM_IMPLEMENTATION_UID.encode("ascii"), b"\0"),
            _short_element(0x0013, b"SH", IMPLEMENTATION_VERSION_NAME.encode("ascii"), b" "),
            _short_element(0x0016, b"AE", source_ae_title.encode("ascii", "replace"), b" ")
            if source_ae_title
            else b"",
        )
    )
    group_length = struct.pack("<HH2sHL", 0x0002, 0x0000, b"UL", 4, len(elements))
    return b"\x00" * 128 + b"DICM" + group_length + elements


class NotPart10(ValueError):
    """Bytes that are not a DICOM Part 10 file (no preamble and "DICM", or no meta group)."""


def split_part10(blob: bytes | memoryview) -> tuple[Dataset, memoryview]:
    """A Part 10 file → (its File Meta Information, its dataset's bytes as encoded).

    The meta group is read element by element (explicit VR little endian, PS3.10 §7.1)
    up to the first element outside group 0002, so a file without a group length
    still splits."""
    view = memoryview(blob)
    if len(view) < 132 or bytes(view[128:132]) != b"DICM":
        raise NotPart10("no DICOM preamble and 'DICM' prefix")
    offset = 132
    while len(view) - offset >= 8:
        group = struct.unpack_from("<H", view, offset)[0]
        if group != 0x0002:
            break
        if bytes(view[offset + 4 : offset + 6]) in _LONG_VRS:
            if len(view) - offset < 12:
                raise NotPart10("the File Meta Information is cut short")
            length, start = struct.unpack_from("<L", view, offset + 8)[0], offset + 12
        else:
            length, start = struct.unpack_from("<H", view, offset + 6)[0], offset + 8
        if length == _UNDEFINED_LENGTH or start + length > len(view):
            raise NotPart10("the File Meta Information is cut short")
        offset = start + length
    if offset == 132:
        raise NotPart10("no File Meta Information")
    meta = read_dataset(
        BytesIO(bytes(view[132:offset])), is_implicit_VR=False, is_little_endian=True
    )
    return meta, view[offset:]
