"""The job store of an API whose jobs run on a work pool (``PFCON_DEPLOYMENT=<name>``).

Nothing is kept here: a job is the flow run ``job-<jid>`` of the ``pfcon-job/<name>``
deployment, its steps are that run's inputs (``prefect_pfcon.flows.step_inputs``), so any
number of replicas sharing the Prefect server answer alike. A step's state is what its flow
run recorded there (started; ended, once its logs were shipped), or the flow run's own end,
not its task run's row, which Prefect writes from events up to a second late; its logs are its
task run's Prefect logs. Each answer reads Prefect (at most ``VIEW_SECONDS`` old, except that a
step the view lacks or has removed is read at once: another replica may just have accepted it,
and a client that POSTed it there must not read 404 here); each call is retried while Prefect
is lost or busy, within ``PFCON_PREFECT_DEADLINE_SECONDS`` (``TimeoutError``: the API answers 503).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from functools import partial
from typing import TypeVar
from uuid import UUID

import httpx
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId, FlowRunFilterName, LogFilter
from prefect.client.schemas.filters import LogFilterTaskRunId
from prefect.client.schemas.objects import FlowRun, Log
from prefect.client.schemas.responses import DeploymentResponse
from prefect.client.schemas.sorting import FlowRunSort, LogSort
from prefect.events import Event
from prefect.events.schemas.events import Resource
from prefect.exceptions import ObjectNotFound
from prefect.states import Crashed, Failed

from prefect_pfcon.flows.attempts import StepAttempt, StepRequest
from prefect_pfcon.flows.step_inputs import (
    STEP_REMOVED,
    STEP_REQUESTED,
    JobInputs,
    flow_run_resource,
    read_job_inputs,
    removed_key,
    step_key,
)
from prefect_pfcon.models import JobStep
from prefect_pfcon.names import JOB_FLOW_NAME, job_run_name, job_tags
from prefect_pfcon.service.log_tails import log_line
from prefect_pfcon.service.metrics import ServiceMetrics
from prefect_pfcon.service.prefect_calls import with_retries
from prefect_pfcon.service.store import JobStore
from prefect_pfcon.settings import PfconSettings

T = TypeVar("T")
logger = logging.getLogger("prefect_pfcon")

VIEW_SECONDS = 0.5
"""How long a job's view read from Prefect answers status GETs (their guards read it often)."""
MAX_VIEWS = 1000
MAX_RUNS = 20
"""Flow runs of a job read (a job has one, and another after each idle end)."""
LOG_PAGE = 20  # log records read at once (one may hold 256 KiB of plugin output)
EXISTS, NOT_FOUND = 409, 404


@dataclass(frozen=True)
class Found:
    """A step's newest attempt and the flow run it was given to."""

    attempt: StepAttempt
    flow_run: FlowRun


@dataclass(frozen=True)
class JobView:
    """A job as Prefect has it: its served flow runs (newest first) and each step's newest attempt."""

    runs: list[FlowRun]
    steps: dict[JobStep, Found]

    @property
    def open_run(self) -> FlowRun | None:
        """The newest flow run still serving the job, if any."""
        return next((run for run in self.runs if not _final(run)), None)


def _final(run: FlowRun) -> bool:
    return run.state is not None and run.state.is_final()


def attempt_in(request: StepRequest, inputs: JobInputs, run: FlowRun) -> StepAttempt:
    """The attempt of ``request`` as the inputs of its flow run ``run`` record it."""
    started, ended = inputs.started.get(request.key), inputs.ended.get(request.key)
    start_time = started.timestamp if started is not None else None
    if ended is not None:
        attempt = StepAttempt(request, ended, start_time or ended.timestamp, ended.timestamp)
    elif _final(run):
        assert run.state is not None
        ending = f"The job's flow run ended {run.state.name}" + (f" ({run.state.message})" if run.state.message else "")
        state = (Crashed(message=f"{ending} while the step ran") if started is not None
                 else Failed(message=f"{ending} before it ran the step"))
        attempt = StepAttempt(request, state, start_time, run.end_time or run.state.timestamp)
    elif started is not None:
        attempt = StepAttempt(request, started, start_time)
    else:
        attempt = StepAttempt.accepted(request)
    return replace(attempt, removed=request.key in inputs.removed)


class PrefectJobStore(JobStore):
    """Steps given to the flow runs of the job deployment of a work pool, read back from Prefect."""

    def __init__(self, client: PrefectClient, settings: PfconSettings, metrics: ServiceMetrics) -> None:
        self._client = client
        self._settings = settings
        self._metrics = metrics
        self._deployment: DeploymentResponse | None = None
        self._views: dict[str, tuple[float, JobView]] = {}

    async def newest(self, step: JobStep, jid: str) -> StepAttempt | None:
        cached = self._cached(jid)
        found = cached.steps.get(step) if cached is not None else None
        if found is None or found.attempt.removed:  # another replica may have accepted one since
            found = (await self._call(lambda: self._read(jid))).steps.get(step)
        return found.attempt if found is not None else None

    async def accept(self, request: StepRequest, after: UUID | None) -> StepAttempt:
        async def accept() -> Found:
            view = await self._read(request.jid)
            current = view.steps.get(request.step)
            if current is not None and current.attempt.id != after:
                return current
            run = view.open_run or await self._create_run(request.jid, view)
            if await self._add_input(run.id, step_key(request.step, after), request.to_json()):
                return Found(StepAttempt.accepted(request), run)
            found = (await self._read(request.jid)).steps.get(request.step)  # another replica's, just made
            return found if found is not None else Found(StepAttempt.accepted(request), run)

        found = await self._changing(request.jid, accept)
        if found.attempt.id == request.key:  # also when a retry finds it written by a lost answer
            await self._call(lambda: self._notify(found.flow_run.id, STEP_REQUESTED))
        return found.attempt

    async def remove(self, step: JobStep, jid: str) -> StepAttempt | None:
        async def remove() -> Found | None:
            found = (await self._read(jid)).steps.get(step)
            if found is None or found.attempt.removed:
                return found
            moment = json.dumps(datetime.now(timezone.utc).isoformat())
            await self._add_input(found.flow_run.id, removed_key(found.attempt.id), moment)
            return replace(found, attempt=replace(found.attempt, removed=True))

        found = await self._changing(jid, remove)
        if found is None:
            return None
        await self._call(lambda: self._notify(found.flow_run.id, STEP_REMOVED))  # again after a lost answer
        return found.attempt

    async def forgotten(self, jid: str) -> bool:
        attempts = [found.attempt for found in (await self._view(jid)).steps.values()]
        return bool(attempts) and all(attempt.removed for attempt in attempts)

    async def logs(self, attempt: StepAttempt, lines: int) -> str:
        """The task run's last ``lines`` Prefect log lines, oldest first (a record of plugin
        output holds many lines: records are read newest first until there are enough)."""

        async def page(offset: int, limit: int) -> list[Log]:
            return await self._client.read_logs(
                log_filter=LogFilter(task_run_id=LogFilterTaskRunId(any_=[attempt.id])),
                sort=LogSort.TIMESTAMP_DESC, limit=limit, offset=offset)

        records: list[Log] = []
        count = 0
        while count < lines:
            limit = min(lines - count, LOG_PAGE)
            found = await self._call(lambda: page(len(records), limit))
            records += found
            count += sum(record.message.count("\n") + 1 for record in found)
            if len(found) < limit:
                break
        text = "".join(log_line(record.timestamp, record.level, record.message) for record in reversed(records))
        return "".join(text.splitlines(keepends=True)[-lines:])

    async def attempt_removed(self, task_run_id: str) -> bool:
        try:
            key = UUID(task_run_id)
        except ValueError:
            return False

        async def removed() -> bool:
            try:
                task_run = await self._client.read_task_run(key)
            except ObjectNotFound:
                return False
            if task_run.flow_run_id is None:
                return False
            try:
                await self._client.read_flow_run_input(task_run.flow_run_id, removed_key(key))
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code == NOT_FOUND:
                    return False
                raise
            return True

        return await self._call(removed)

    # ----- reading -----------------------------------------------------------------------

    def _cached(self, jid: str) -> JobView | None:
        """The job's view if it was read less than ``VIEW_SECONDS`` ago."""
        cached = self._views.get(jid)
        return cached[1] if cached is not None and time.monotonic() - cached[0] < VIEW_SECONDS else None

    async def _view(self, jid: str) -> JobView:
        """The job's view, read again once it is ``VIEW_SECONDS`` old."""
        cached = self._cached(jid)
        return cached if cached is not None else await self._call(lambda: self._read(jid))

    async def _read(self, jid: str) -> JobView:
        """The job's view now (kept for ``_view``)."""
        deployment = await self._job_deployment()
        runs = await self._client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[job_run_name(jid)]),
                                          deployment_id=FlowRunFilterDeploymentId(any_=[deployment.id])),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
            limit=MAX_RUNS,
        )
        runs = [run for run in runs if run.parameters.get("jid") == jid and not run.parameters.get("job")]
        records = await asyncio.gather(*(read_job_inputs(self._client, run.id) for run in runs))
        steps: dict[JobStep, Found] = {}
        for run, inputs in zip(runs, records):
            for step, request in inputs.newest().items():
                known = steps.get(step)
                if known is None or request.accepted > known.attempt.request.accepted:
                    steps[step] = Found(attempt_in(request, inputs, run), run)
        view = JobView(runs, steps)
        self._keep(jid, view)
        return view

    def _keep(self, jid: str, view: JobView) -> None:
        now = time.monotonic()
        if len(self._views) >= MAX_VIEWS:
            self._views = {key: kept for key, kept in self._views.items() if now - kept[0] < VIEW_SECONDS}
        self._views[jid] = (now, view)

    async def _job_deployment(self) -> DeploymentResponse:
        """``pfcon-job/<PFCON_DEPLOYMENT>`` (looked up once)."""
        if self._deployment is None:
            self._deployment = await self._client.read_deployment_by_name(
                f"{JOB_FLOW_NAME}/{self._settings.service.deployment_name}")
        return self._deployment

    # ----- writing -----------------------------------------------------------------------

    async def _create_run(self, jid: str, view: JobView) -> FlowRun:
        """A flow run for the job, Scheduled for the pool's workers; replicas that saw the same
        newest run make one."""
        deployment = await self._job_deployment()
        latest = view.runs[0].id if view.runs else "none"
        return await self._client.create_flow_run_from_deployment(
            deployment.id,
            parameters={"jid": jid, "storage_block": self._settings.storage.block_name,
                        "compute_block": self._settings.compute.block_name,
                        "idle_seconds": self._settings.service.job_idle_seconds},
            name=job_run_name(jid),
            tags=job_tags(jid),
            idempotency_key=f"pfcon-job:{jid}:after:{latest}",
        )

    async def _add_input(self, flow_run_id: UUID, key: str, value: str) -> bool:
        """Add an input; ``False`` if the flow run has one of that key already."""
        try:
            await self._client.create_flow_run_input(flow_run_id, key, value)
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code == EXISTS:
                return False
            raise
        return True

    async def _notify(self, flow_run_id: UUID, event: str) -> None:
        """Wake the flow run: an event about it, which it is subscribed to."""
        about = Event(event=event, resource=Resource({"prefect.resource.id": flow_run_resource(flow_run_id)}))
        await self._client.request("POST", "/events", json=[about.model_dump(mode="json")])

    # ----- bounds ------------------------------------------------------------------------

    async def _call(self, call: Callable[[], Awaitable[T]]) -> T:
        return await with_retries(call, self._settings.service.prefect_deadline_seconds,
                                  partial(self._metrics.prefect_error, "store"))

    async def _changing(self, jid: str, change: Callable[[], Awaitable[T]]) -> T:
        """A change of the job, after which its view is read again."""
        try:
            return await self._call(change)
        finally:
            self._views.pop(jid, None)
