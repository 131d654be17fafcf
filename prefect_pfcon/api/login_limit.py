"""Limiting failed logins per client address: password guessing meets a 429."""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque

ADDRESSES_KEPT = 10_000


class LoginThrottle:
    """At most ``max_failures`` failed logins per address within ``window_seconds``.

    Only failures count; the addresses with recent failures are kept, least recently
    failed dropped first beyond ``capacity``.
    """

    def __init__(self, max_failures: int, window_seconds: float, capacity: int = ADDRESSES_KEPT) -> None:
        self._max_failures = max_failures
        self._window = window_seconds
        self._capacity = capacity
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, address: str) -> int | None:
        """Seconds until ``address`` may try again, or ``None`` if it may now."""
        failures = self._recent(address)
        if failures is None or len(failures) < self._max_failures:
            return None
        return max(1, math.ceil(failures[0] + self._window - time.monotonic()))

    def failed(self, address: str) -> None:
        """Count a failed login of ``address``."""
        failures = self._recent(address)
        if failures is None:
            failures = self._failures[address] = deque(maxlen=self._max_failures)
        failures.append(time.monotonic())
        self._failures.move_to_end(address)
        while len(self._failures) > self._capacity:
            self._failures.popitem(last=False)

    def _recent(self, address: str) -> deque[float] | None:
        """The failures of ``address`` still inside the window (older ones dropped)."""
        failures = self._failures.get(address)
        if failures is None:
            return None
        cutoff = time.monotonic() - self._window
        while failures and failures[0] <= cutoff:
            failures.popleft()
        if not failures:
            del self._failures[address]
            return None
        return failures
