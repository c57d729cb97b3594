"""How the node writes a model's numbers for people, the same wherever they read them:
the SR's and key-object note's text, the dashboard, the API and `radassist predict`.

The impression line is what a radiologist would dictate first: the largest lesion's
severity, side, region and kind, its volume two ways (the mask's and ABC/2, as measured
at the console), an extra-axial collection's thickness, then the midline shift.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the dataclasses live in the package that imports this module
    from assistant.findings import Findings, Lesion
    from assistant.findings.place import Place

#: A septum displaced less than this (mm) is read as "no midline shift": the measurement's
#: error on phantoms with a known shift reached 1.5 mm (docs/benchmarks.md), and a shift
#: under 2 mm is within what a normal, slightly asymmetric head shows.
NO_SHIFT_BELOW_MM = 2.0
#: At most this many further lesions are named, after the largest, in the impression.
MORE_LESIONS_NAMED = 3

#: A region as an adjective in front of the lesion's kind.
_REGION_WORDS = {
    "frontal": "frontal",
    "parietal": "parietal",
    "temporal": "temporal",
    "occipital": "occipital",
    "basal ganglia/thalamus": "basal ganglia/thalamic",
    "brainstem": "brainstem",
    "cerebellum": "cerebellar",
}


#: An extra-axial collection's shape in words ("" for an intra-axial lesion).
SHAPE_WORDS = {"crescent": "crescent-shaped", "lens": "lentiform", "": ""}


def percent(probability: float) -> str:
    """A probability in percent with one decimal, "97.2 %", as the SR's measurements
    give it (UCUM %): a radiologist should not meet 0.97 in one place and 97 % in another."""
    return f"{100 * probability:.1f} %"


def millilitres(volume_ml: float) -> str:
    """A volume as reports give it: one decimal, "8.0 mL"."""
    return f"{volume_ml:.1f} mL"


def place_words(place: Place) -> str:
    """Side and region, "right parietal", "midline cerebellar", "left temporal"; the
    side is left out where no midsagittal plane was found."""
    region = _REGION_WORDS[place.region]
    return f"{place.side} {region}" if place.side else region


def lesion_kind(place: Place | None) -> str:
    """What the lesion is, by its relation to the inner table: "intraparenchymal
    hyperdense lesion", "crescent-shaped extra-axial hyperdense collection"."""
    if place is None:
        return "hyperdense lesion"
    if place.relation == "extra-axial":
        return f"{SHAPE_WORDS[place.shape]} extra-axial hyperdense collection".lstrip()
    return "intraparenchymal hyperdense lesion"


def lesion_description(lesion: Lesion) -> str:
    """One lesion in a report's words: "Small right parietal intraparenchymal hyperdense
    lesion, 8.0 mL (ABC/2 7.5 mL)" (no location where it was not found)."""
    place = lesion.place
    words = [lesion.severity] if lesion.severity else []
    if place is not None:
        words.append(place_words(place))
    words.append(lesion_kind(place))
    text = " ".join(words)
    text = text[0].upper() + text[1:]
    if place is not None and place.approximate:
        text += " (location approximate)"
    sizes = []
    if lesion.thickness_mm is not None:
        sizes.append(f"{lesion.thickness_mm:.0f} mm thick")
    volume = millilitres(lesion.volume_ml)
    if lesion.abc2_volume_ml is not None:
        volume += f" (ABC/2 {millilitres(lesion.abc2_volume_ml)})"
    sizes.append(volume)
    return ", ".join([text, *sizes])


def shift_side(shift_mm: float | None) -> str | None:
    """The side the septum is pushed to, "left" or "right" (+ is towards the patient's
    left); None for no shift read, or one under NO_SHIFT_BELOW_MM."""
    if shift_mm is None or abs(shift_mm) < NO_SHIFT_BELOW_MM:
        return None
    return "left" if shift_mm > 0 else "right"


def shift_words(shift_mm: float | None) -> str:
    """The midline shift in words: "no midline shift", "midline shift 4 mm to the left"
    (the side the septum is pushed to), or "midline shift not measured"."""
    if shift_mm is None:
        return "midline shift not measured"
    side = shift_side(shift_mm)
    if side is None:
        return "no midline shift"
    return f"midline shift {abs(shift_mm):.0f} mm to the {side}"


def impression(findings: Findings) -> str:
    """The study's impression in one plain line, the same in the SR, the key-object
    note, the dashboard, the API and `radassist predict`."""
    if not findings.positive:
        return f"No hyperdense lesion (probability {percent(findings.study_probability)})."
    if not findings.lesions:
        return (
            f"Hyperdense lesion suspected (probability {percent(findings.study_probability)}); "
            "no lesion could be outlined."
        )
    largest, *others = sorted(findings.lesions, key=lambda lesion: -lesion.volume_ml)
    parts = [lesion_description(largest)]
    if others:
        named = [
            f"{place_words(o.place)} {millilitres(o.volume_ml)}"
            if o.place is not None
            else millilitres(o.volume_ml)
            for o in others[:MORE_LESIONS_NAMED]
        ]
        more = len(others) - len(named)
        listed = ", ".join(named) + (f" and {more} more" if more else "")
        count = len(others)
        parts.append(f"{count} further hyperdense lesion{'s' if count > 1 else ''} ({listed})")
    text = "; ".join(parts)
    if findings.anatomy_read:
        text += ("; " if others else ", ") + shift_words(findings.midline_shift_mm)
    return text + "."
