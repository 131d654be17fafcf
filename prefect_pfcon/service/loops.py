"""One base for the service's background loops (as Prefect's own ``LoopService``)."""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod

logger = logging.getLogger("prefect_pfcon.loops")


class LoopService(ABC):
    """Calls ``run_once`` every ``interval_seconds`` until cancelled; a tick that fails is
    logged and the loop goes on."""

    def __init__(self, interval_seconds: float) -> None:
        self.interval_seconds = interval_seconds

    @property
    def name(self) -> str:
        """The loop's name in log lines."""
        return type(self).__name__

    @abstractmethod
    async def run_once(self) -> None:
        """One tick."""

    async def start(self) -> None:
        """Tick until cancelled."""
        while True:
            try:
                await self.run_once()
            except Exception:
                logger.exception("%s failed; trying again in %g s", self.name, self.interval_seconds)
            await asyncio.sleep(self.interval_seconds)
