"""Pull a study from a configured PACS on demand: look it up with C-FIND, then have the
PACS send it to this node with C-MOVE. The node's SCP stores it like any pushed study,
and it is analysed the usual way. The PACS must know our AE title (as it must to push)."""

from __future__ import annotations

from dataclasses import dataclass

from assistant.settings import Settings
from dicom_node.retrieve import (
    FoundStudy,
    MoveOutcome,
    Peer,
    RetrieveError,
    find_studies,
    move_study,
)


class FetchError(ValueError):
    """A source that is not configured, a query that finds nothing, or a PACS that cannot
    be reached or refuses the query or the move."""


@dataclass(frozen=True)
class Fetched:
    study: FoundStudy
    outcome: MoveOutcome


def source_names(settings: Settings) -> list[str]:
    """The PACS a study can be fetched from: the DIMSE destinations."""
    return [d.name for d in settings.destinations if d.kind == "dimse"]


def fetch(
    settings: Settings,
    source: str,
    *,
    study_uid: str = "",
    patient_id: str = "",
    accession_number: str = "",
) -> list[Fetched]:
    """Find the matching studies on `source` and move each to this node."""
    destination = next((d for d in settings.destinations if d.name == source), None)
    if destination is None or destination.kind != "dimse":
        known = ", ".join(source_names(settings)) or "none configured"
        raise FetchError(f"no DIMSE PACS named {source!r} (known: {known})")
    peer = Peer(destination.host, destination.port, destination.ae_title)
    calling = settings.node.ae_title
    try:
        found = find_studies(
            peer,
            calling,
            study_uid=study_uid,
            patient_id=patient_id,
            accession_number=accession_number,
        )
        if not found:
            raise FetchError(f"{source} has no study matching the query")
        return [
            Fetched(study, move_study(peer, calling, study.study_instance_uid, calling))
            for study in found
        ]
    except RetrieveError as exc:
        raise FetchError(str(exc)) from exc
