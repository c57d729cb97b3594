"""The UID grammar of PS3.5 §9.1, checked before a UID becomes part of a path."""

from __future__ import annotations

import re

_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")


def is_valid_uid(value: object) -> bool:
    """True for a string of at most 64 characters made of dot-separated numbers without
    leading zeros: nothing else may name a folder or file in the store."""
    return isinstance(value, str) and len(value) <= 64 and _UID.fullmatch(value) is not None
