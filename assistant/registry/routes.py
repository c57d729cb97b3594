"""Routes: which series each model reads, in the selection rules' vocabulary.

A route names a model by name: the name's live version reads the series and its results
are sent, its shadow versions read it and their results are kept. A model name that no
route names reads every series the selection rules admit (so with no routes at all, every
model reads every selected series, the way a node ran before routes); one that has routes
reads only the series they send it. Routes live in the database, so `radassist route …` and
the workers agree without a restart.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select

from assistant.db import AuditEvent, Database, ModelRoute, utcnow
from assistant.registry.catalog import RegistryError


def matches_any(value: str, patterns: Sequence[str]) -> bool:
    """Whether `value` matches one of the shell-style `patterns`, case-insensitively (the
    selection rules' and the routes' patterns alike)."""
    return any(fnmatch.fnmatchcase(value.upper(), p.upper()) for p in patterns)


@dataclass(frozen=True)
class RouteFacts:
    """What a route looks at, read from the database when a series completes."""

    modality: str
    series_description: str
    body_part_examined: str
    calling_ae_title: str
    #: mm; None when the series did not say.
    slice_thickness_mm: float | None


@dataclass(frozen=True)
class Route:
    """Series that meet every condition set here go to `model_name` (empty: any)."""

    name: str
    model_name: str
    modalities: tuple[str, ...] = ()
    series_description_patterns: tuple[str, ...] = ()
    body_part_patterns: tuple[str, ...] = ()
    calling_ae_titles: tuple[str, ...] = ()
    min_slice_thickness_mm: float | None = None
    max_slice_thickness_mm: float | None = None
    created_by: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.name or len(self.name) > 64:
            raise RegistryError("a route needs a name of 1 to 64 characters")
        if not self.model_name:
            raise RegistryError(f"route {self.name}: name the model it sends series to")
        low, high = self.min_slice_thickness_mm, self.max_slice_thickness_mm
        for value in (low, high):
            if value is not None and value <= 0:
                raise RegistryError(f"route {self.name}: slice thicknesses are > 0 mm")
        if low is not None and high is not None and low > high:
            raise RegistryError(
                f"route {self.name}: min slice thickness {low} mm is above the max {high} mm"
            )

    def miss(self, facts: RouteFacts) -> str | None:
        """Why the series is not this route's, or None when it is."""
        if self.modalities and facts.modality.upper() not in {m.upper() for m in self.modalities}:
            return f"modality {facts.modality or '(none)'}"
        if self.series_description_patterns and not matches_any(
            facts.series_description, self.series_description_patterns
        ):
            return f"series description {facts.series_description!r}"
        if self.body_part_patterns and not matches_any(
            facts.body_part_examined, self.body_part_patterns
        ):
            return f"body part {facts.body_part_examined!r}"
        if self.calling_ae_titles and facts.calling_ae_title not in self.calling_ae_titles:
            return f"sent by {facts.calling_ae_title!r}"
        thickness = facts.slice_thickness_mm
        low, high = self.min_slice_thickness_mm, self.max_slice_thickness_mm
        if (low is not None or high is not None) and thickness is None:
            return "no slice thickness"
        if low is not None and thickness is not None and thickness < low:
            return f"slice thickness {thickness:g} mm < {low:g} mm"
        if high is not None and thickness is not None and thickness > high:
            return f"slice thickness {thickness:g} mm > {high:g} mm"
        return None

    def describe(self) -> str:
        """The conditions in one line, as `route list` prints them."""
        parts = []
        if self.modalities:
            parts.append("modality " + "|".join(self.modalities))
        if self.series_description_patterns:
            parts.append("description " + "|".join(self.series_description_patterns))
        if self.body_part_patterns:
            parts.append("body part " + "|".join(self.body_part_patterns))
        if self.calling_ae_titles:
            parts.append("from " + "|".join(self.calling_ae_titles))
        if self.min_slice_thickness_mm is not None:
            parts.append(f"thickness >= {self.min_slice_thickness_mm:g} mm")
        if self.max_slice_thickness_mm is not None:
            parts.append(f"thickness <= {self.max_slice_thickness_mm:g} mm")
        return ", ".join(parts) or "every selected series"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.model_name,
            "modalities": list(self.modalities),
            "series_description_patterns": list(self.series_description_patterns),
            "body_part_patterns": list(self.body_part_patterns),
            "calling_ae_titles": list(self.calling_ae_titles),
            "min_slice_thickness_mm": self.min_slice_thickness_mm,
            "max_slice_thickness_mm": self.max_slice_thickness_mm,
        }


def _texts(value: str) -> tuple[str, ...]:
    try:
        items = json.loads(value or "[]")
    except ValueError:
        return ()
    return tuple(str(item) for item in items) if isinstance(items, list) else ()


def _route(row: ModelRoute) -> Route:
    return Route(
        name=row.name,
        model_name=row.model_name,
        modalities=_texts(row.modalities),
        series_description_patterns=_texts(row.series_description_patterns),
        body_part_patterns=_texts(row.body_part_patterns),
        calling_ae_titles=_texts(row.calling_ae_titles),
        min_slice_thickness_mm=row.min_slice_thickness_mm,
        max_slice_thickness_mm=row.max_slice_thickness_mm,
        created_by=row.created_by,
    )


class Routes:
    """The node's routes, in the database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def all(self) -> list[Route]:
        with self._db.sessions() as session:
            return [_route(row) for row in session.scalars(select(ModelRoute).order_by("name"))]

    def add(self, route: Route, *, by: str) -> None:
        """Record a route, audited; refuses a name already used."""
        with self._db.writing() as session:
            if session.scalar(select(ModelRoute.id).where(ModelRoute.name == route.name)):
                raise RegistryError(f"a route named {route.name!r} exists; remove it first")
            session.add(
                AuditEvent(
                    at=utcnow(),
                    username=by[:64],
                    action="route-add",
                    target=route.name,
                    detail=f"{route.describe()} → {route.model_name}",
                )
            )
            session.add(
                ModelRoute(
                    name=route.name,
                    model_name=route.model_name,
                    modalities=json.dumps(list(route.modalities)),
                    series_description_patterns=json.dumps(list(route.series_description_patterns)),
                    body_part_patterns=json.dumps(list(route.body_part_patterns)),
                    calling_ae_titles=json.dumps(list(route.calling_ae_titles)),
                    min_slice_thickness_mm=route.min_slice_thickness_mm,
                    max_slice_thickness_mm=route.max_slice_thickness_mm,
                    created_at=utcnow(),
                    created_by=by[:64],
                )
            )

    def remove(self, name: str, *, by: str) -> None:
        """Remove a route, audited."""
        with self._db.writing() as session:
            removed = session.execute(delete(ModelRoute).where(ModelRoute.name == name))
            if not getattr(removed, "rowcount", 0):
                raise RegistryError(f"no route named {name!r}")
            session.add(
                AuditEvent(at=utcnow(), username=by[:64], action="route-remove", target=name)
            )


def routed_names(routes: Sequence[Route], facts: RouteFacts, names: Sequence[str]) -> list[str]:
    """The model names (of `names`, the active ones) that read a series: a name that some
    route names reads the series its routes send it; a name no route names reads every
    series (so adding a route for a new model never stops the others)."""
    routed = {route.model_name for route in routes}
    wanted = {route.model_name for route in routes if route.miss(facts) is None}
    return [name for name in dict.fromkeys(names) if name not in routed or name in wanted]
