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

#: Elements whose difference says nothing about the image: the File Meta group is ours,
#: and these are rewritten by any transcoding sender.
_IGNORED = frozenset({"PixelData", "SpecificCharacterSet"})


def same_content(stored: Path, instance: ReceivedInstance) -> bool:
    """True when `instance` holds what the stored file holds.

    The same transfer syntax compares the dataset's bytes (every DICOM encoding of one
    dataset in one transfer syntax is the same bytes, elements in tag order). Another
    transfer syntax (a sender that transcodes) compares the decoded elements and pixels;
    a lossy copy of a lossless image therefore counts as changed."""
    blob = stored.read_bytes()
    try:
        meta, encoded = split_part10(blob)
    except NotPart10:
        return False
    if bytes(encoded) == bytes(instance.encoded):
        return True
    if str(meta.get("TransferSyntaxUID", "")) == instance.transfer_syntax_uid:
        return False
    try:
        first = dcmread(stored)
        second = dcmread(_as_file(instance))
        return _same_dataset(first, second)
    except Exception:  # undecodable either way: not provably the same
        return False


def _as_file(instance: ReceivedInstance) -> io.BytesIO:
    return io.BytesIO(b"".join(bytes(chunk) for chunk in instance.file_chunks()))


def _same_dataset(first: Dataset, second: Dataset) -> bool:
    first_tags = {e.keyword or e.tag for e in first if e.keyword not in _IGNORED}
    second_tags = {e.keyword or e.tag for e in second if e.keyword not in _IGNORED}
    if first_tags != second_tags:
        return False
    for element in first:
        if element.keyword in _IGNORED:
            continue
        if element.value != second[element.tag].value:
            return False
    if ("PixelData" in first) != ("PixelData" in second):
        return False
    return "PixelData" not in first or np.array_equal(first.pixel_array, second.pixel_array)
