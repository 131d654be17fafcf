"""The janitor: removes what jobs DELETEd by clients leave behind, and never anything else.

pfcon's DELETE never touches data, and a container whose removal failed stays; over time
these pile up. Each sweep removes ended plugin containers whose flow run a client DELETE
removed, and the key dirs of jids whose jobs clients all DELETEd. Containers and dirs this
Prefect server knows nothing about (another instance's, an operator's) are left alone, and
with ``REMOVE_JOBS=false`` nothing is swept.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from anyio import to_thread

from prefect_pfcon.blocks.compute.base import FLOW_RUN_LABEL, JID_LABEL
from prefect_pfcon.deployments.api.jobs import JobService

logger = logging.getLogger("prefect_pfcon.janitor")


@dataclass
class Janitor:
    """The jobs of one storage and compute backend, whose runs say what is still wanted."""

    jobs: JobService
    grace_seconds: float = 60.0

    async def sweep(self) -> tuple[list[str], list[str]]:
        """One pass; the containers and the key dirs' jids removed."""
        containers: list[str] = []
        key_dirs: list[str] = []
        compute, storage = self.jobs.compute, self.jobs.storage
        if not compute.remove_jobs:
            return containers, key_dirs
        for name, labels in (await to_thread.run_sync(compute.ended_jobs)).items():
            if await self.jobs.runs.removed(labels[FLOW_RUN_LABEL]) and await to_thread.run_sync(
                compute.remove_own, name, labels[JID_LABEL]
            ):
                containers.append(name)
        for jid in await to_thread.run_sync(storage.key_dir_jids, self.grace_seconds):
            if await self.jobs.forgotten(jid):
                await to_thread.run_sync(storage.remove_job_data, jid)
                key_dirs.append(jid)
        if containers or key_dirs:
            logger.info("Janitor removed containers %s and the key dirs of %s", containers, key_dirs)
        return containers, key_dirs

    async def run(self, interval_seconds: float) -> None:
        """Sweep every ``interval_seconds`` until cancelled; a failed sweep is logged and retried."""
        while True:
            await asyncio.sleep(interval_seconds)
            try:
                await self.sweep()
            except Exception:
                logger.exception("Janitor sweep failed")
