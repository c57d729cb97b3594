"""What the HTTP senders (webhook, FHIR) share: how they name themselves, and how they
say where and why a request failed without repeating a URL that may hold a token."""

from __future__ import annotations

from urllib.parse import urlsplit

from assistant import __version__

#: Sent as the User-Agent, so a receiver's log names the sender and its version.
USER_AGENT = f"radassist/{__version__}"


def origin(url: str) -> str:
    """scheme://host:port of `url`: enough to say where, without a path or query that may
    hold a token (nor user:password@)."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{parts.hostname}:{port}"


def root_cause(exc: BaseException) -> str:
    """The innermost cause of a requests error in a few words ("Connection refused",
    "certificate verify failed: …"): requests' own message repeats the URL."""
    seen: set[int] = set()
    cause: BaseException = exc
    while id(cause) not in seen:
        seen.add(id(cause))
        for inner in (getattr(cause, "reason", None), cause.__cause__, *cause.args[:1]):
            if isinstance(inner, BaseException):
                cause = inner
                break
    if isinstance(cause, OSError) and cause.strerror:
        return str(cause.strerror)
    return f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__
