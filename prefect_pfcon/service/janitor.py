"""The janitor: removes what jobs DELETEd by clients leave behind, and never anything else.

pfcon's DELETE never touches data, and a container whose removal failed stays; over time
these pile up. Each sweep removes ended plugin containers whose attempt a client DELETE
removed, and the key dirs of jids whose steps clients all DELETEd. Containers and dirs this
service knows nothing about (another instance's, an operator's) are left alone, and with
``REMOVE_JOBS=false`` nothing is swept.
"""

from __future__ import annotations

import logging

from anyio import to_thread

from prefect_pfcon.names import JID_LABEL, TASK_RUN_LABEL
from prefect_pfcon.service.jobs import JobService
from prefect_pfcon.service.loops import LoopService

logger = logging.getLogger("prefect_pfcon.janitor")


class Janitor(LoopService):
    """Sweeps the jobs of one storage and compute backend every ``interval_seconds``."""

    def __init__(self, jobs: JobService, interval_seconds: float, grace_seconds: float = 60.0) -> None:
        super().__init__(interval_seconds)
        self.jobs = jobs
        self.grace_seconds = grace_seconds

    async def run_once(self) -> None:
        await self.sweep()

    async def sweep(self) -> tuple[list[str], list[str]]:
        """One pass; the containers and the key dirs' jids removed."""
        containers: list[str] = []
        key_dirs: list[str] = []
        compute, storage = self.jobs.compute, self.jobs.storage
        if not compute.remove_jobs:
            return containers, key_dirs
        for name, labels in (await to_thread.run_sync(compute.ended_jobs)).items():
            if await self.jobs.store.attempt_removed(labels.get(TASK_RUN_LABEL, "")) and await to_thread.run_sync(
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
