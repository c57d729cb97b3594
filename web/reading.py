"""A done analysis in a radiologist's words, as the pages and the API show it: the
impression line, the midline shift, where a lesion lies. The words themselves are
assistant.findings.wording's (the SR and `radassist predict` say the same); this module
only reads them out of a job's stored record and lays them out for a page.

A value a record does not have (a record written before lesions were located, a
negative study, whose anatomy is not read) shows as MISSING, never as "None"."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from assistant.findings import Findings, FindingsError, Lesion
from assistant.findings.place import Place
from assistant.findings.wording import SHAPE_WORDS, millilitres, place_words, shift_words

LOGGER = logging.getLogger(__name__)

#: What a page shows for a value the record does not have.
MISSING = "\u2014"
#: A worklist cell shows this many characters of the impression, the rest in its title:
#: one lesion's impression with its midline shift fits (about 125), a list of lesions not.
WORKLIST_CHARACTERS = 140


@dataclass(frozen=True)
class Reading:
    """What a done analysis says first: its impression line, the midline shift (mm, +
    towards the patient's left; None where not measured) and whether the head's anatomy
    was read at all (records before findings version 3, and negative studies: not)."""

    impression: str
    midline_shift_mm: float | None
    anatomy_read: bool

    @classmethod
    def of(cls, findings: Findings) -> Reading:
        return cls(findings.impression(), findings.midline_shift_mm, findings.anatomy_read)

    @property
    def shift(self) -> str:
        """The midline shift in words and as measured, for the study page."""
        return shift_text(self.midline_shift_mm, self.anatomy_read)


def reading_of(record: str) -> Reading | None:
    """The reading of a job's findings record (`Findings.to_dict` as JSON): the stored
    impression where the record has one (version 3: as the analysis wrote it), else the one its
    findings give (older records); None for no record or one that cannot be read."""
    if not record:
        return None
    try:
        data: Any = json.loads(record)
        if not isinstance(data, dict):
            raise FindingsError(f"a findings record is an object, not {type(data).__name__}")
        if isinstance(data.get("impression"), str):
            shift = data.get("midline_shift_mm")
            return Reading(
                data["impression"],
                None if shift is None else float(shift),
                bool(data.get("anatomy_read", False)),
            )
        return Reading.of(Findings.from_dict(data))
    except (ValueError, TypeError) as error:  # FindingsError is a ValueError
        LOGGER.warning("a job's findings record cannot be read: %r", error)
        return None


def shift_text(shift_mm: float | None, anatomy_read: bool) -> str:
    """The midline shift in words and as measured: "No midline shift (septum pellucidum
    0.8 mm to the patient's left)", "Midline shift 6 mm to the right (septum pellucidum
    6.3 mm to the patient's right)", "Midline shift not measured" (the anatomy was read,
    the septum not found), or "Midline shift: —" (not read: an older record or a
    negative study)."""
    if shift_mm is None:
        return _capital(shift_words(None)) if anatomy_read else f"Midline shift: {MISSING}"
    if abs(shift_mm) < 0.05:
        where = "on the midline"
    else:
        side = "left" if shift_mm > 0 else "right"
        where = f"{abs(shift_mm):.1f} mm to the patient's {side}"
    return f"{_capital(shift_words(shift_mm))} (septum pellucidum {where})"


def location_text(place: Place | None) -> str:
    """Where a lesion lies, for its row on the study page: "right parietal,
    supratentorial, intra-axial", "left frontal, supratentorial, extra-axial,
    crescent-shaped"; MISSING where it was not located. `Place.approximate` is shown
    beside it by the page."""
    if place is None:
        return MISSING
    words = [place_words(place), place.compartment, place.relation, SHAPE_WORDS[place.shape]]
    return ", ".join(word for word in words if word)


def abc2_text(lesion: Lesion) -> str:
    return MISSING if lesion.abc2_volume_ml is None else millilitres(lesion.abc2_volume_ml)


def thickness_text(lesion: Lesion) -> str:
    return MISSING if lesion.thickness_mm is None else f"{lesion.thickness_mm:.0f} mm"


def shows_thickness(lesion: Lesion) -> bool:
    """A thickness row for an extra-axial collection (or any lesion that has one)."""
    extra_axial = lesion.place is not None and lesion.place.relation == "extra-axial"
    return extra_axial or lesion.thickness_mm is not None


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]
