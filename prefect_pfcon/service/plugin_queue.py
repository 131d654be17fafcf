"""Plugins waiting for a ``pfcon-plugins`` slot, in the order their POSTs were accepted.

Prefect's slot acquisition is not first come, first served: every waiter polls, and whoever
asks just after a slot frees gets it. So plugins queue here first, and only the head goes on
to ask Prefect (``tasks.plugin_slot``); it leaves the queue once it holds a slot, and the
next one becomes the head. The others wait on the runner's event loop, holding no step thread.
"""

from __future__ import annotations

import asyncio
import threading
from uuid import UUID


class PluginQueue:
    """Attempt keys in arrival order; joined from the API, awaited on the runner's loop,
    left from anywhere."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._keys: dict[UUID, bool] = {}  # key: whether it goes on without waiting its turn
        self._changed = asyncio.Event()

    def join(self, key: UUID, *, waits: bool = True) -> None:
        """Queue an accepted plugin attempt at the end (``waits=False``: one resumed after a
        restart, which asks Prefect at once: it may already run)."""
        with self._lock:
            self._keys.setdefault(key, not waits)

    def leave(self, key: UUID) -> None:
        """The attempt holds a slot, ended, or was removed: the next one may go on."""
        with self._lock:
            if self._keys.pop(key, None) is None:
                return
        self._loop.call_soon_threadsafe(self._wake)

    def ahead(self, key: UUID) -> int | None:
        """How many wait before the attempt; ``None`` if it does not wait."""
        with self._lock:
            for position, queued in enumerate(self._keys):
                if queued == key:
                    return position
        return None

    def __len__(self) -> int:
        with self._lock:
            return len(self._keys)

    async def turn(self, key: UUID) -> None:
        """Return once the attempt is the head of the queue (or not in it)."""
        while True:
            with self._lock:
                if key not in self._keys or self._keys[key] or next(iter(self._keys)) == key:
                    return
                changed = self._changed
            await changed.wait()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
