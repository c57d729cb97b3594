"""Flagged slices → a Key Object Selection document that viewers show as key images."""

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
    order = {s.sop_instance_uid: n for n, s in enumerate(prediction.slices)}
    selected = [headers[uid] for uid in sorted(uids, key=lambda uid: order.get(uid, 0))]
    first_line = prediction.summary().splitlines()[0]
    description = f"{first_line}. {context.use_statement()}"[:1024]
    content = hd.ko.KeyObjectSelection(
        document_title=concepts.KEY_OBJECT_TITLE,
        referenced_objects=selected,
        observer_device_context=context.device_observer(),
        description=description,
    )
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
