"""Flagged slices → a Key Object Selection document that viewers show as key images.

A KOS selects whole instances; a multi-frame object is selected once, with the frames of
its lesions' key slices as Referenced Frame Numbers."""

from __future__ import annotations

from collections.abc import Mapping

import highdicom as hd
from pydicom import Dataset

from assistant.analysis.writers import concepts
from assistant.analysis.writers.context import (
    MANUFACTURER,
    WriterContext,
    quiet_person_names,
)
from assistant.findings import Findings


@quiet_person_names()
def build_kos(
    prediction: Findings, headers: Mapping[str, Dataset], context: WriterContext
) -> hd.ko.KeyObjectSelectionDocument | None:
    """The key images of a positive study: the slices the model flagged, each lesion's
    key slice among them. None when nothing is flagged."""
    uids = list(
        dict.fromkeys(
            [lesion.key_sop_instance_uid for lesion in prediction.lesions]
            + list(prediction.flagged_instance_uids)
        )
    )
    if not uids:
        return None
    order: dict[str, int] = {}
    for n, s in enumerate(prediction.slices):
        order.setdefault(s.sop_instance_uid, n)
    selected = [headers[uid] for uid in sorted(uids, key=lambda uid: order.get(uid, 0))]
    first_line = prediction.summary().splitlines()[0]
    description = f"{first_line}. {context.use_statement()}"[:1024]
    content = hd.ko.KeyObjectSelection(
        document_title=concepts.KEY_OBJECT_TITLE,
        referenced_objects=selected,
        observer_device_context=context.device_observer(),
        description=description,
    )
    _reference_key_frames(content, prediction)
    kos = hd.ko.KeyObjectSelectionDocument(
        evidence=selected,
        content=content,
        series_instance_uid=context.identity.uid("kos-series"),
        series_number=context.series_number("kos"),
        sop_instance_uid=context.identity.uid("kos"),
        instance_number=1,
        manufacturer=MANUFACTURER,
    )
    kos.SeriesDescription = context.series_description("key images")
    return kos


def _reference_key_frames(content: hd.ko.KeyObjectSelection, prediction: Findings) -> None:
    """Name the lesions' key frames and the flagged frames in the references to
    multi-frame objects (Image Reference Macro: Referenced Frame Number). Records without
    a slice threshold say only which objects were flagged: those are referenced whole."""
    frames: dict[str, set[int]] = {}
    for lesion in prediction.lesions:
        if lesion.key_frame_number is not None:
            frames.setdefault(lesion.key_sop_instance_uid, set()).add(lesion.key_frame_number)
    flagged_frames = prediction.flagged_slice_indices() if prediction.slice_threshold else []
    for index in flagged_frames:
        flagged = prediction.slices[index]
        if flagged.frame_number is not None:
            frames.setdefault(flagged.sop_instance_uid, set()).add(flagged.frame_number)
    for item in content[0].ContentSequence:
        if item.ValueType != "IMAGE":
            continue
        reference = item.ReferencedSOPSequence[0]
        numbers = sorted(frames.get(str(reference.ReferencedSOPInstanceUID), ()))
        if numbers:
            reference.ReferencedFrameNumber = numbers if len(numbers) > 1 else numbers[0]
