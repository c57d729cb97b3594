"""Is an instance sent again the same as the stored copy, or a changed one?

A sender going over a series again (after a failed transfer, or because a user pressed
"send" twice) sends the same bytes: that copy is stored once. A sender that corrected an
image (new pixels, a fixed Patient Name) sends the same SOP Instance UID with other
content: storage.on_changed_duplicate decides what becomes of it (see ingest.py).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset

from dicom_node import ReceivedInstance
from dicom_node.encoding import NotPart10, split_part10

#: Elements whose difference says nothing about the image (the File Meta group is ours;
#: group lengths are left out too): these are rewritten by any re-encoding sender.
_IGNORED = frozenset({"PixelData", "SpecificCharacterSet", "DataSetTrailingPadding"})


def same_content(stored: Path, instance: ReceivedInstance) -> bool:
    """True when `instance` holds what the stored file holds.

    The same bytes are the same content. Otherwise the decoded elements and pixels are
    compared: one dataset has many encodings (another transfer syntax, sequences of
    defined or undefined length, group lengths or none, as an archive re-encodes it), and
    none of that is a change. A lossy copy of a lossless image counts as changed."""
    blob = stored.read_bytes()
    try:
        _meta, encoded = split_part10(blob)
    except NotPart10:
        return False
    if bytes(encoded) == bytes(instance.encoded):
        return True
    try:
        first = dcmread(stored)
        second = dcmread(_as_file(instance))
        return _same_dataset(first, second)
    except Exception:  # undecodable either way: not provably the same
        return False


def _as_file(instance: ReceivedInstance) -> io.BytesIO:
    return io.BytesIO(b"".join(bytes(chunk) for chunk in instance.file_chunks()))


def _counted(dataset: Dataset) -> dict[int, object]:
    """The elements that say what the dataset holds, by tag (group lengths, padding and
    the Pixel Data's encoding left out), sequences compared item by item."""
    values: dict[int, object] = {}
    for element in dataset:
        if element.keyword in _IGNORED or element.tag.element == 0x0000:
            continue
        if element.VR == "SQ":
            values[int(element.tag)] = [_counted(item) for item in element.value]
        else:
            values[int(element.tag)] = element.value
    return values


def _same_dataset(first: Dataset, second: Dataset) -> bool:
    if _counted(first) != _counted(second):
        return False
    if ("PixelData" in first) != ("PixelData" in second):
        return False
    return "PixelData" not in first or np.array_equal(first.pixel_array, second.pixel_array)
