"""Where a lesion lies in the head, in a radiologist's terms: plain validated data.

The analysis stage fills it from the lesion's mask and the head's anatomy (see
assistant.analysis.anatomy, whose rules are stated in docs/model-card.md); the writers
code it (SNOMED CT finding site and laterality), the wording turns it into words.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Which side of the brain's midsagittal plane; "" where no plane could be fitted.
SIDES = ("right", "left", "bilateral", "midline", "")
COMPARTMENTS = ("supratentorial", "infratentorial")
REGIONS = (
    "frontal",
    "parietal",
    "temporal",
    "occipital",
    "basal ganglia/thalamus",
    "brainstem",
    "cerebellum",
)
#: Within the parenchyma, or against the inner table of the skull.
RELATIONS = ("intra-axial", "extra-axial")
#: An extra-axial collection's shape on its largest slice ("" for an intra-axial lesion).
SHAPES = ("crescent", "lens", "")
#: The severity band (the rule: docs/model-card.md, assistant.analysis.anatomy.location).
SEVERITIES = ("small", "medium", "large")


def _one_of(value: object, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise ValueError(f"{what} must be one of {allowed}, not {value!r}")
    return str(value)


@dataclass(frozen=True)
class Place:
    """A lesion's side, compartment, region and relation to the inner table.

    `approximate` is True where a rule was near its limit or had too little anatomy to
    go on (a slab without skull base or ventricles): the region is then a best guess."""

    side: str
    compartment: str
    region: str
    relation: str
    shape: str = ""
    approximate: bool = False

    def __post_init__(self) -> None:
        _one_of(self.side, SIDES, "side")
        _one_of(self.compartment, COMPARTMENTS, "compartment")
        _one_of(self.region, REGIONS, "region")
        _one_of(self.relation, RELATIONS, "relation")
        _one_of(self.shape, SHAPES, "shape")
        if self.shape and self.relation != "extra-axial":
            raise ValueError("only an extra-axial collection has a shape")

    def to_dict(self) -> dict[str, Any]:
        return {
            "side": self.side,
            "compartment": self.compartment,
            "region": self.region,
            "relation": self.relation,
            "shape": self.shape,
            "approximate": self.approximate,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Place:
        return cls(
            side=str(data["side"]),
            compartment=str(data["compartment"]),
            region=str(data["region"]),
            relation=str(data["relation"]),
            shape=str(data.get("shape", "")),
            approximate=bool(data.get("approximate", False)),
        )
