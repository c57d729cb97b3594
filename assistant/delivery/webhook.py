"""Webhook destinations: each notice POSTed, signed, to the destination's URL.

The request (docs/notifications.md, "Webhook", is the receiver's side of it)::

    POST <url>
    Content-Type: application/json
    Idempotency-Key: <the notice's message_id: the same on every retry and destination>
    X-Radassist-Timestamp: <unix seconds when this attempt was signed>
    X-Radassist-Signature: v1=<hex HMAC-SHA256(secret, b"<timestamp>." + body)>
    User-Agent: radassist/<version>

    <the stored notice, byte for byte>

The body is the stored file, not a re-serialisation, so the bytes signed are the bytes
sent and read. The timestamp is inside the signed bytes: a receiver that refuses a
timestamp more than a few minutes from its own clock refuses a captured request replayed
later. Every attempt is signed afresh, so a retry hours after the first is still fresh.

Answers, as the outbox needs them: 2xx is "sent"; 408, 429, 5xx, a refused connection
and no answer within `timeout_seconds` are "failed" (retried with back-off); any other
4xx is "rejected" (the same request would be refused again: failed at once, the code and
the start of the receiver's answer shown on the study page). A redirect is followed only
when it is a 307 or 308 (which keep the method and the body) to the same scheme, host
and port; any other redirect is "rejected" without being followed, so a notice, which
names a patient, never goes to a host nobody configured.

No detail names the URL's path or query (a Slack or Teams webhook URL holds its token
there) nor the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import requests

from assistant.delivery.http import USER_AGENT, origin, root_cause
from assistant.delivery.notice import read_notice
from assistant.settings import Destination
from dicom_node import SendResult

#: Answers that mean "not now": retried by the outbox, as 5xx are.
RETRIED_STATUSES = frozenset({408, 429})
#: Redirects that keep the method and the body, followed to the same origin only.
FOLLOWED_REDIRECTS = frozenset({307, 308})
MAX_REDIRECTS = 3
#: How much of a receiver's answer is read, and kept in the delivery's detail.
_EXCERPT_BYTES = 1024
_EXCERPT_CHARS = 200
#: A notice's message_id, as its schema has it (a UID): safe as a header value.
_MESSAGE_ID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """The X-Radassist-Signature value of `body` sent at `timestamp` (unix seconds):
    ``v1=`` and the hex HMAC-SHA256, keyed with `secret`, of ``b"<timestamp>." + body``."""
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


class WebhookSender:
    """POST each notice to a webhook destination, signed with its secret (see the
    module's docstring for the request and how each answer is taken).

    `clock` gives the unix time each attempt is signed with (tests set it)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock

    def __call__(self, paths: Sequence[Path], destination: Destination) -> list[SendResult]:
        """One SendResult per path, in order; never raises for a receiver that fails."""
        try:
            secret = destination.signing_secret()
        except OSError as exc:  # a missing or unreadable secret_file: fixable, so retried
            detail = f"cannot read the webhook's secret_file ({exc.strerror or exc})"
            return [SendResult(path, None, "failed", detail) for path in paths]
        if not secret:
            detail = "the webhook's secret is empty: nothing is sent unsigned"
            return [SendResult(path, None, "failed", detail) for path in paths]
        with requests.Session() as session:
            results = [self._send(session, path, destination, secret) for path in paths]
        # A receiver's answer may quote the URL it was sent to: keep its path out.
        return [replace(r, detail=_redacted(r.detail, destination.url)) for r in results]

    def _send(
        self, session: requests.Session, path: Path, destination: Destination, secret: bytes
    ) -> SendResult:
        """POST one notice, following same-origin 307/308 redirects."""
        try:
            message_id = read_notice(path).get("message_id")
            body = path.read_bytes()
        except OSError as exc:  # the file may be back (shared storage): retried
            return SendResult(path, None, "failed", f"cannot read {path.name}: {exc.strerror}")
        except ValueError as exc:  # not JSON, or not a notice: it never will be
            return SendResult(path, None, "rejected", f"not sent: {exc}")
        if not isinstance(message_id, str) or not _MESSAGE_ID.fullmatch(message_id):
            return SendResult(
                path, None, "rejected", f"not sent: {path.name} has no usable message_id"
            )
        timestamp = int(self._clock())
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": message_id,
            "X-Radassist-Timestamp": str(timestamp),
            "X-Radassist-Signature": signature(secret, timestamp, body),
            "User-Agent": USER_AGENT,
        }
        url = destination.url
        for _hop in range(MAX_REDIRECTS + 1):
            answer = _post(session, url, body, headers, destination.timeout_seconds)
            if isinstance(answer, str):
                return SendResult(path, None, "failed", answer)
            code, reason, excerpt, location = answer
            if code in FOLLOWED_REDIRECTS and location:
                target = urljoin(url, location)
                if origin(target) != origin(url):
                    detail = (
                        f"HTTP {code}: redirected to {origin(target)}, another host; not "
                        "followed (set the destination's url to the address that answers)"
                    )
                    return SendResult(path, code, "rejected", detail)
                url = target
                continue
            return _outcome(path, code, reason, excerpt)
        detail = f"more than {MAX_REDIRECTS} redirects; set the destination's url"
        return SendResult(path, None, "rejected", detail)


def _post(
    session: requests.Session, url: str, body: bytes, headers: dict[str, str], timeout: float
) -> tuple[int, str, str, str] | str:
    """(status, reason, start of the answer, Location) of one POST, or why there was no
    answer. `timeout` bounds the connection and each read, not the whole exchange."""
    try:
        with session.post(
            url, data=body, headers=headers, timeout=timeout, allow_redirects=False, stream=True
        ) as response:
            location = response.headers.get("Location", "")
            return response.status_code, response.reason or "", _excerpt(response), location
    except requests.Timeout:
        return f"no answer from {origin(url)} within {timeout:g} s"
    except requests.ConnectionError as exc:
        return f"cannot connect to {origin(url)}: {root_cause(exc)}"
    except requests.RequestException as exc:
        return f"request to {origin(url)} failed: {root_cause(exc)}"


def _outcome(path: Path, code: int, reason: str, excerpt: str) -> SendResult:
    """The outbox's outcome of a final (not redirected) answer."""
    said = f" {reason}" if reason else ""
    said += f": {excerpt}" if excerpt else ""
    if 200 <= code < 300:
        return SendResult(path, code, "sent")
    if code in RETRIED_STATUSES or code >= 500:
        return SendResult(path, code, "failed", f"HTTP {code}{said}")
    if 300 <= code < 400:
        why = "no Location" if code in FOLLOWED_REDIRECTS else "it would not keep the POST"
        detail = f"HTTP {code}{said}: a redirect not followed ({why}); set the destination's url"
        return SendResult(path, code, "rejected", detail)
    if 400 <= code < 500:
        return SendResult(path, code, "rejected", f"refused with HTTP {code}{said}")
    return SendResult(path, code, "failed", f"unexpected HTTP {code}{said}")


def _excerpt(response: requests.Response) -> str:
    """The start of the answer's body on one line: what the receiver said, for the
    study page. Read only so far, so a large answer costs nothing."""
    try:
        head = next(response.iter_content(_EXCERPT_BYTES), b"")
    except requests.RequestException:  # the answer stopped: the status still stands
        return ""
    text = " ".join(head.decode(response.encoding or "utf-8", errors="replace").split())
    return text if len(text) <= _EXCERPT_CHARS else text[: _EXCERPT_CHARS - 1] + "…"


def _redacted(text: str, url: str) -> str:
    """`text` without `url`'s path and query, in case a library or the receiver put
    them in."""
    parts = urlsplit(url)
    for secretive in (parts.query, parts.path):
        if len(secretive) > 1:
            text = text.replace(secretive, "…")
    return text


__all__ = ["FOLLOWED_REDIRECTS", "RETRIED_STATUSES", "USER_AGENT", "WebhookSender", "signature"]
