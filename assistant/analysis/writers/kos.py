"""Flagged slices → a Key Object Selection document that viewers show as key images.

A KOS selects whole instances; a multi-frame object is selected once, with the frames of
its lesions' key slices as Referenced Frame Numbers."""

from __future__ import annotations

from collections.abc import Mapping

import highdicom as hd
from pydicom import Dataset

from assistant.analysis.writers.context import (
    MANUFACTURER,
    WriterContext,
    quiet_person_names,
)
from assistant.findings import Findings, concepts


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
    description = key_object_description(prediction, context)
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


#: The Key Object Description is a TEXT item (UT, up to 2^32-2 bytes); highdicom's KOS
#: passes dciodvfy at this length, and viewers show it as one note.
DESCRIPTION_LIMIT = 1024


def key_object_description(prediction: Findings, context: WriterContext) -> str:
    """The verdict, the impression line (where a lesion was outlined: without one the
    impression repeats the verdict) and the use statement, within DESCRIPTION_LIMIT
    characters; the impression is cut short before the use statement is."""
    use = context.use_statement()
    head = f"{prediction.verdict()}."
    if prediction.lesions:
        head += f" {prediction.impression()}"
    room = DESCRIPTION_LIMIT - len(use) - 1
    return f"{head[: max(room, 0)]} {use}"[:DESCRIPTION_LIMIT]


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
