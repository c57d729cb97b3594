"""Failed logins per client address: past a free allowance within a window, each further
attempt from that address waits twice as long as the last, and is refused (without a
password being checked) until then."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass


@dataclass
class _Address:
    failures: int = 0
    first: float = 0.0
    next_allowed: float = 0.0


class AddressThrottle:
    """Thread-safe; one per web process (an attacker spread over processes meets the
    account lockout, which the database holds)."""

    def __init__(self, free: int = 20, window_seconds: float = 900.0) -> None:
        self._free = free
        self._window = window_seconds
        self._lock = threading.Lock()
        self._addresses: dict[str, _Address] = {}

    def wait_seconds(self, address: str) -> float:
        """How long `address` must wait before its next attempt is checked (0: now)."""
        now = time.monotonic()
        with self._lock:
            entry = self._addresses.get(address)
            if entry is None:
                return 0.0
            if now - entry.first > self._window and now >= entry.next_allowed:
                del self._addresses[address]
                return 0.0
            return max(0.0, entry.next_allowed - now)

    def failed(self, address: str) -> float:
        """Count a failure; returns the wait it now imposes (0 while within the allowance)."""
        now = time.monotonic()
        with self._lock:
            if len(self._addresses) > 100_000:  # bounded under a spread-out attack
                self._addresses = {
                    a: e for a, e in self._addresses.items() if now - e.first <= self._window
                }
            entry = self._addresses.get(address)
            if entry is None or (now - entry.first > self._window and now >= entry.next_allowed):
                entry = self._addresses[address] = _Address(first=now)
            entry.failures += 1
            over = entry.failures - self._free
            wait = min(float(2 ** min(over, 30)), self._window) if over > 0 else 0.0
            entry.next_allowed = now + wait
            return wait
