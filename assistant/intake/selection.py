"""Which complete series the model reads: the site's selection rules.

A series that does not match is kept and listed, and its job is recorded as skipped
with the reason a person reads on the dashboard.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from assistant.geometry import feet_head_cosine
from assistant.registry.routes import matches_any
from assistant.settings import SelectionSettings

#: cos(45 degrees): a stack is axial when its slice normal is this close to feet-head.
_AXIAL_MIN_COSINE = 0.7071


@dataclass(frozen=True)
class SeriesFacts:
    """What the rules look at, read from the database."""

    modality: str
    series_description: str
    body_part_examined: str
    calling_ae_title: str
    instance_count: int
    #: Image Orientation (Patient) of each instance, as stored ("a\\b\\c\\d\\e\\f" or "").
    orientations: Sequence[str]
    #: Images (frames) in all, counting each frame of a multi-frame object; 0: as many as
    #: the instances.
    frame_count: int = 0

    @property
    def image_count(self) -> int:
        return max(self.frame_count, self.instance_count)

    @property
    def multi_frame(self) -> bool:
        return self.frame_count > self.instance_count


def _is_axial(orientation: str) -> bool | None:
    try:
        values = [float(v) for v in orientation.split("\\")]
    except ValueError:
        return None
    if len(values) != 6:
        return None
    cosine = feet_head_cosine(values)
    return None if cosine is None else cosine >= _AXIAL_MIN_COSINE


def skip_reason(facts: SeriesFacts, rules: SelectionSettings) -> str | None:
    """Why the series is not analysed, or None when it is."""
    if rules.modalities and facts.modality.upper() not in {m.upper() for m in rules.modalities}:
        return f"modality {facts.modality or '(none)'} is not one of {', '.join(rules.modalities)}"
    if facts.image_count < rules.min_slices:
        frames = f" in {facts.instance_count} multi-frame instance(s)" if facts.multi_frame else ""
        return f"{facts.image_count} image(s){frames}, fewer than the {rules.min_slices} required"
    if rules.calling_ae_titles and facts.calling_ae_title not in rules.calling_ae_titles:
        return f"sent by {facts.calling_ae_title!r}, not one of the selected callers"
    if rules.series_description_patterns and not matches_any(
        facts.series_description, rules.series_description_patterns
    ):
        return f"series description {facts.series_description!r} matches no selected pattern"
    if rules.body_part_patterns and not matches_any(
        facts.body_part_examined, rules.body_part_patterns
    ):
        return f"body part {facts.body_part_examined!r} matches no selected pattern"
    if rules.axial_only:
        verdicts = [_is_axial(o) for o in facts.orientations]
        known = [v for v in verdicts if v is not None]
        if not known:
            return "no image orientation: cannot tell whether the slices are axial"
        if sum(known) * 2 <= len(known):
            return "not an axial stack (slice normal more than 45 degrees from feet-head)"
    return None
