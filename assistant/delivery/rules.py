"""Which notices a notification destination is sent: its rule, in the selection rules'
style (assistant/settings.py `Destination`).

A destination is sent a notice when the result is positive (``send_on = "positive"``,
the default) or any result (``"all"``), and every condition it sets holds: the study
probability, the largest lesion's volume and the midline shift at least the minimum
given, the modality among `modalities`, the calling AE title among `calling_ae_titles`,
the body part matching one of `body_part_patterns` (shell patterns, case-insensitive).
A condition left at 0 or empty does not apply. A correction goes wherever the notice it
corrects went, whatever its own result (the outbox sees to it): a receiver told of a
bleed must be told that it is gone.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from assistant.settings import Destination


def wants(destination: Destination, notice: dict[str, Any]) -> bool:
    """Whether `destination`'s rule sends it `notice`."""
    if not destination.notifies:
        return False
    result = notice["result"]
    series = notice["series"]
    if destination.send_on == "positive" and not result["positive"]:
        return False
    if result["study_probability"] < destination.min_probability:
        return False
    volumes = [lesion["volume_ml"] for lesion in result["lesions"]]
    if destination.min_volume_ml and max(volumes, default=0.0) < destination.min_volume_ml:
        return False
    shift = result["midline_shift_mm"]
    if destination.min_midline_shift_mm and (
        shift is None or abs(shift) < destination.min_midline_shift_mm
    ):
        return False
    if destination.modalities and series["modality"].upper() not in {
        m.upper() for m in destination.modalities
    }:
        return False
    if destination.calling_ae_titles and series["calling_ae"].strip() not in {
        a.strip() for a in destination.calling_ae_titles
    }:
        return False
    return not destination.body_part_patterns or any(
        fnmatch.fnmatch(series["body_part"].upper(), pattern.upper())
        for pattern in destination.body_part_patterns
    )
