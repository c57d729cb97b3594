"""A small FHIR R4 server for tests: takes transaction Bundles POSTed to its base, the
way a FHIR server's transaction endpoint does.

It checks the bearer token (401 and an OperationOutcome without it), parses the body
back into the `fhir.resources` R4B Bundle (a body the models refuse is a 400), records
each Bundle, and carries the transaction out on a store kept in memory: conditional
creates (``ifNoneExist``) and conditional updates (``PUT Type?identifier=system|value``)
by identifier, as HAPI and other servers do; references to an entry's fullUrl become
the resource's id. It answers a transaction-response Bundle.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from fhir.resources.R4B.bundle import Bundle
from pydantic import ValidationError


def operation_outcome(code: str, diagnostics: str) -> dict[str, Any]:
    """An OperationOutcome of one error."""
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": diagnostics}],
    }


@dataclass
class Stored:
    """One resource the server keeps: its type, id, version and content."""

    kind: str
    id: str
    version: int
    resource: dict[str, Any]


@dataclass
class FhirState:
    """What the server received and keeps (tests read it)."""

    token: str
    bundles: list[Bundle] = field(default_factory=list)
    resources: list[Stored] = field(default_factory=list)
    #: When set, every POST is answered with this (status, body) instead.
    answer: tuple[int, dict[str, Any]] | None = None
    #: The last id given to a resource created.
    last_id: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def of_kind(self, kind: str) -> list[Stored]:
        with self.lock:
            return [r for r in self.resources if r.kind == kind]

    def find(self, kind: str, query: str) -> list[Stored]:
        """The stored resources of `kind` that `query` ("identifier=system|value")
        finds; only identifier searches are known."""
        params = parse_qs(query)
        if set(params) != {"identifier"}:
            raise ValueError(f"only identifier searches are supported, not {query!r}")
        system, _, value = params["identifier"][0].rpartition("|")
        return [
            r
            for r in self.resources
            if r.kind == kind
            and any(
                i.get("value") == value and (not system or i.get("system") == system)
                for i in r.resource.get("identifier", [])
            )
        ]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: pytest shows what the tests assert."""

    def do_POST(self) -> None:
        state = self.server.state
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Authorization") != f"Bearer {state.token}":
            self._answer(401, operation_outcome("login", "Invalid or missing bearer token"))
            return
        if state.answer is not None:
            self._answer(*state.answer)
            return
        if self.path.rstrip("/") != self.server.base_path:
            self._answer(404, operation_outcome("not-found", f"no endpoint at {self.path}"))
            return
        if not self.headers.get("Content-Type", "").startswith("application/fhir+json"):
            self._answer(415, operation_outcome("not-supported", "send application/fhir+json"))
            return
        try:
            bundle = Bundle.model_validate_json(body)
        except ValidationError as exc:
            self._answer(400, operation_outcome("structure", str(exc).splitlines()[0]))
            return
        if bundle.type != "transaction":
            self._answer(400, operation_outcome("invalid", "only transactions are taken here"))
            return
        with state.lock:
            state.bundles.append(bundle)
            try:
                responses = _transact(state, json.loads(body))
            except ValueError as exc:
                self._answer(412, operation_outcome("processing", str(exc)))
                return
        answer = {"resourceType": "Bundle", "type": "transaction-response", "entry": responses}
        Bundle.model_validate(answer)  # what we answer is FHIR too
        self._answer(200, answer)

    def _answer(self, status: int, document: dict[str, Any]) -> None:
        data = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _transact(state: FhirState, bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """Carry the transaction out (every entry, or none: ValueError), and the
    transaction-response's entries."""
    ids: dict[str, str] = {}
    planned: list[tuple[dict[str, Any], Stored | None, str]] = []
    for entry in bundle["entry"]:
        request, resource = entry["request"], entry["resource"]
        kind = resource["resourceType"]
        if request["method"] == "POST":
            found = state.find(kind, request["ifNoneExist"]) if "ifNoneExist" in request else []
            verb = "create" if not found else "exists"
        elif request["method"] == "PUT":
            url_kind, _, query = request["url"].partition("?")
            if url_kind != kind:
                raise ValueError(f"PUT {request['url']} of a {kind}")
            found = state.find(kind, query)
            verb = "update" if found else "create"
        else:
            raise ValueError(f"{request['method']} is not supported here")
        if len(found) > 1:
            raise ValueError(f"{len(found)} {kind} resources match; expected at most one")
        target = found[0] if found else None
        if target is None:
            state.last_id += 1
        ids[entry["fullUrl"]] = f"{kind}/{target.id if target else state.last_id}"
        planned.append((entry, target, verb))
    responses = []
    for entry, target, verb in planned:
        resource = _resolved(entry["resource"], ids)
        kind = resource["resourceType"]
        if verb == "exists":
            assert target is not None
            responses.append(_response("200 OK", target))
            continue
        if target is None:
            target = Stored(kind, ids[entry["fullUrl"]].split("/")[1], 0, {})
            state.resources.append(target)
        target.version += 1
        target.resource = {**resource, "id": target.id}
        responses.append(_response("201 Created" if verb == "create" else "200 OK", target))
    return responses


def _resolved(value: Any, ids: dict[str, str]) -> Any:
    """`value` with each reference to an entry's fullUrl made the resource's id."""
    if isinstance(value, dict):
        return {
            k: ids.get(v, v) if k == "reference" and isinstance(v, str) else _resolved(v, ids)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_resolved(v, ids) for v in value]
    return value


def _response(status: str, stored: Stored) -> dict[str, Any]:
    location = f"{stored.kind}/{stored.id}/_history/{stored.version}"
    return {"response": {"status": status, "location": location}}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: FhirState, base_path: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state
        self.base_path = base_path


@dataclass
class FhirServer:
    """A running server: `url` its FHIR base, `state` what it got."""

    url: str
    state: FhirState


@contextmanager
def fhir_server(token: str = "s3cret", base_path: str = "/fhir") -> Iterator[FhirServer]:
    """A FHIR server on a free loopback port, for the length of the block."""
    state = FhirState(token=token)
    server = _Server(state, base_path)
    thread = threading.Thread(target=server.serve_forever, name="fhir-server", daemon=True)
    thread.start()
    try:
        yield FhirServer(f"http://127.0.0.1:{server.server_address[1]}{base_path}", state)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
