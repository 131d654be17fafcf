"""The one place that builds the service from its settings: store, runner, background loops."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from functools import partial
from uuid import UUID

from anyio import to_thread
from prefect import Flow
from prefect.client.orchestration import get_client

from prefect_pfcon.blocks import load_compute, load_storage, reload_blocks
from prefect_pfcon.job_secrets import job_secrets_key
from prefect_pfcon.names import DEPLOYMENT_NAME
from prefect_pfcon.service.block_edits import BlockEdits
from prefect_pfcon.service.deployment_runs import DeploymentRuns, ScheduledRunEvents
from prefect_pfcon.service.janitor import Janitor
from prefect_pfcon.service.job_history import JobHistory
from prefect_pfcon.service.job_book import JobBook
from prefect_pfcon.service.jobs import JobService
from prefect_pfcon.service.local_store import LocalJobStore
from prefect_pfcon.service.log_tails import LogTails
from prefect_pfcon.service.loops import LoopService
from prefect_pfcon.service.metrics import ServiceMetrics
from prefect_pfcon.service.runner import JobRunner
from prefect_pfcon.settings import PfconSettings

logger = logging.getLogger("prefect_pfcon")


@dataclass(frozen=True)
class Services:
    """What the API serves: the pfcon jobs, and their history for operators."""

    jobs: JobService
    history: JobHistory


@asynccontextmanager
async def running_service(
    settings: PfconSettings, metrics: ServiceMetrics, deployment_flows: dict[UUID, Flow] | None = None
) -> AsyncIterator[Services]:
    """The services the settings describe, with their loops running, until the block ends;
    the steps and Prefect errors counted in ``metrics``.

    The embedded default (``PFCON_DEPLOYMENT=pfcon``) runs its jobs' flow runs here and
    keeps their steps in the state dir's job book; ``deployment_flows`` are the deployments
    whose UI and scheduled runs it executes too.
    """
    service = settings.service
    async with AsyncExitStack() as stack:
        client = await stack.enter_async_context(get_client())
        storage = await to_thread.run_sync(load_storage, settings.storage.block_name)
        compute = await to_thread.run_sync(load_compute, settings.compute.block_name)
        loops: list[LoopService] = [BlockEdits(
            partial(reload_blocks, settings.storage.block_name, settings.compute.block_name),
            metrics.block_edit_heard)]
        if service.deployment_name != DEPLOYMENT_NAME:
            from prefect_pfcon.service.prefect_store import PrefectJobStore

            store = PrefectJobStore(client, settings, metrics)
        else:
            book = JobBook(service.state_dir / "jobs.db")
            stack.callback(book.close)
            tails = LogTails(compute.logs_tail)
            tails.install()
            stack.callback(tails.uninstall)
            runner = JobRunner(book, tails, {"storage_block": settings.storage.block_name,
                                                     "compute_block": settings.compute.block_name,
                                                     "idle_seconds": service.job_idle_seconds},
                               metrics, service.runner_concurrency, compute.max_running_plugins is not None)
            metrics.watch_steps(book.unfinished_steps)
            stack.push_async_callback(runner.stop)
            store = LocalJobStore(book, runner, tails)
            if recovered := await asyncio.to_thread(runner.start):
                logger.warning("Resuming %d jobs a previous stop interrupted", recovered)
            if deployment_flows:
                deployment_runs = DeploymentRuns(client, deployment_flows, service.runner_concurrency,
                                                 service.runner_poll_seconds)
                if interrupted := await deployment_runs.recover_interrupted():
                    logger.warning("Rescheduled %d deployment runs a previous stop interrupted", interrupted)
                stack.push_async_callback(deployment_runs.stop)
                loops += [deployment_runs, ScheduledRunEvents(deployment_runs, list(deployment_flows))]
        jobs = JobService(storage, compute, store, job_secrets_key(service.state_dir, create=True),
                          service.delete_stops_plugin, service.max_waiting_plugins)
        if service.janitor_seconds > 0:
            loops.append(Janitor(jobs, service.janitor_seconds, service.janitor_grace_seconds))
        background = [asyncio.create_task(loop.start()) for loop in loops]
        try:
            yield Services(jobs, JobHistory(client, service.history_days, service.prefect_deadline_seconds, metrics))
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
