"""Jobs as operators ask about them: listed, filtered and accounted, read from Prefect.

A job is a flow run ``job-<jid>`` of the job flow and each attempt of its steps a task run of
it (``names.py``); the plugin's task run tags name the user, image, compute backend and the
requested resources. Nothing here is stored twice: every answer is read from Prefect, so it
reaches back as far as Prefect keeps flow runs (``PFCON_HISTORY_DAYS``), on the embedded
service and on work pools alike.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from enum import Enum
from functools import partial
from typing import TypeVar
from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterExpectedStartTime,
    FlowRunFilterId,
    FlowRunFilterName,
    TaskRunFilter,
    TaskRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun, StateType, TaskRun
from prefect.client.schemas.sorting import FlowRunSort, TaskRunSort
from pydantic import BaseModel, Field

from prefect_pfcon.models import JobStep
from prefect_pfcon.names import JOB_FLOW_NAME, job_run_name, tag_values, tagged_amount
from prefect_pfcon.service.metrics import ServiceMetrics
from prefect_pfcon.service.prefect_calls import with_retries

T = TypeVar("T")
PREFECT_PAGE = 200
"""Rows read from Prefect at once (its API's largest page)."""
FAILED_TYPES = (StateType.FAILED, StateType.CRASHED)
EXIT_CODE = re.compile(r"(?:exited with code|exit code) (-?\d+)")


class JobState(str, Enum):
    """Where a job is, from its steps' newest attempts and its flow run."""

    RUNNING = "running"  # a step runs, or waits to run
    WAITING = "waiting"  # every step so far completed; the flow run waits for the client's next
    COMPLETED = "completed"
    FAILED = "failed"  # a step's newest attempt (or the whole job) failed
    CANCELLED = "cancelled"  # clients DELETEd it, or no step came for PFCON_JOB_IDLE_SECONDS


class JobFilters(BaseModel):
    """What a listing keeps: all given filters at once."""

    state: JobState | None = None
    since: datetime | None = Field(None, description="Jobs that started at or after this time.")
    until: datetime | None = Field(None, description="Jobs that started at or before this time.")
    auid: str | None = None
    image: str | None = None
    compute: str | None = None

    def plugin_tags(self) -> list[str]:
        """The tags the job's plugin task run must carry."""
        given = {"auid": self.auid, "image": self.image, "compute": self.compute}
        return [f"{name}:{value}" for name, value in given.items() if value]


class StepAttemptRecord(BaseModel):
    """One attempt of a step: one task run."""

    step: JobStep
    task_run_id: UUID
    flow_run_id: UUID | None
    state: str = Field(description="Prefect's state name (Completed, Failed, Crashed, Running, ...).")
    message: str | None
    start: datetime | None
    end: datetime | None
    duration_seconds: float | None


class JobRecord(BaseModel):
    """A job: who ran what where, asking for how much, each step's newest attempt, and how it ended."""

    jid: str
    flow_run_id: UUID
    flow_run_state: str
    state: JobState
    auid: str | None
    image: str | None
    compute: str | None
    cpu_limit: int | None = Field(description="Requested millicores.")
    memory_limit: int | None = Field(description="Requested MiB.")
    gpu_limit: int | None
    start: datetime | None
    end: datetime | None
    duration_seconds: float | None
    exit_code: int | None = Field(description="The plugin's exit code, once it exited.")
    message: str | None = Field(description="Why it failed or ended, when it did.")
    steps: dict[JobStep, StepAttemptRecord]


class JobDetails(JobRecord):
    """A job with every attempt of every step, oldest first, across all its flow runs."""

    attempts: list[StepAttemptRecord]


class JobPage(BaseModel):
    """A page of the listing, newest job first, and how far back the history reaches."""

    jobs: list[JobRecord]
    offset: int
    limit: int
    next_offset: int | None = Field(description="The offset of the next page, if there may be one.")
    history_days: float = Field(description="How long finished jobs are kept (PFCON_HISTORY_DAYS).")
    oldest: datetime | None = Field(description="When the oldest job kept started.")


def _duration(start: datetime | None, end: datetime | None) -> float | None:
    return (end - start).total_seconds() if start is not None and end is not None else None


def _state_name(run: FlowRun | TaskRun) -> str:
    return run.state.name if run.state is not None else "Unknown"


def attempt_record(task_run: TaskRun) -> StepAttemptRecord | None:
    """A step task run as an attempt (``None`` for any other task run)."""
    step = next(iter(tag_values(task_run.tags, "step")), None)
    if step not in JobStep._value2member_map_:
        return None
    return StepAttemptRecord(
        step=JobStep(step), task_run_id=task_run.id, flow_run_id=task_run.flow_run_id,
        state=_state_name(task_run), message=task_run.state.message if task_run.state else None,
        start=task_run.start_time, end=task_run.end_time,
        duration_seconds=_duration(task_run.start_time, task_run.end_time))


def exit_code(plugin: StepAttemptRecord) -> int | None:
    """The plugin's exit code: 0 once it completed, else the one its failure names."""
    if plugin.state == "Completed":
        return 0
    found = EXIT_CODE.search(plugin.message or "")
    return int(found.group(1)) if found else None


def job_state(run: FlowRun, newest: list[StepAttemptRecord], types: dict[UUID, StateType]) -> JobState:
    """The job's state from its flow run and its steps' newest attempts (``types``: their state types)."""
    attempt_types = [types[attempt.task_run_id] for attempt in newest]
    run_type = run.state.type if run.state is not None else StateType.PENDING
    if any(kind in FAILED_TYPES for kind in attempt_types):
        return JobState.FAILED
    if any(kind not in (StateType.COMPLETED, StateType.CANCELLED) for kind in attempt_types):
        return JobState.RUNNING
    if run_type is StateType.CANCELLED:
        return JobState.CANCELLED
    if run_type in FAILED_TYPES:
        return JobState.FAILED
    if run_type is StateType.COMPLETED:
        return JobState.COMPLETED
    return JobState.WAITING if newest else JobState.RUNNING


def job_details(run: FlowRun, task_runs: list[TaskRun]) -> JobDetails:
    """A job from its flow run and its task runs (oldest first)."""
    types = {task_run.id: task_run.state.type for task_run in task_runs if task_run.state is not None}
    attempts = [record for record in map(attempt_record, task_runs) if record is not None]
    steps = {attempt.step: attempt for attempt in attempts}  # the newest of each step wins
    plugin = steps.get(JobStep.PLUGIN)
    tags = next(task_run.tags for task_run in task_runs if task_run.id == plugin.task_run_id) if plugin else []
    state = job_state(run, list(steps.values()), types)
    failing = next((attempt for attempt in steps.values() if types.get(attempt.task_run_id) in FAILED_TYPES), None)
    ended = run.state is not None and run.state.is_final()

    def tag(name: str) -> str | None:
        return next(iter(tag_values(tags, name)), None)

    return JobDetails(
        jid=run.name.removeprefix(job_run_name("")), flow_run_id=run.id, flow_run_state=_state_name(run),
        state=state, auid=tag("auid"), image=tag("image"), compute=tag("compute"),
        cpu_limit=tagged_amount(tags, "cpu"), memory_limit=tagged_amount(tags, "memory"),
        gpu_limit=tagged_amount(tags, "gpu"),
        start=run.start_time, end=run.end_time if ended else None,
        duration_seconds=_duration(run.start_time, run.end_time) if ended else None,
        exit_code=exit_code(plugin) if plugin else None,
        message=failing.message if failing is not None else (run.state.message if ended and run.state else None),
        steps=steps, attempts=attempts)


class JobHistory:
    """The jobs Prefect keeps, newest first; every call retried within the Prefect deadline."""

    def __init__(self, client: PrefectClient, history_days: float, deadline_seconds: float,
                 metrics: ServiceMetrics) -> None:
        self._client = client
        self._history_days = history_days
        self._deadline = deadline_seconds
        self._metrics = metrics

    async def page(self, filters: JobFilters, offset: int, limit: int) -> JobPage:
        """``limit`` jobs matching ``filters``, after the first ``offset`` of them."""
        jobs: list[JobRecord] = []
        skipped = 0
        more = False
        # without a state filter Prefect pages; with one, jobs are read until enough match
        start = offset if filters.state is None else 0
        async for job in self._scan(filters, start):
            if filters.state is not None and job.state is not filters.state:
                continue
            if filters.state is not None and skipped < offset:
                skipped += 1
                continue
            if len(jobs) == limit:
                more = True
                break
            jobs.append(JobRecord.model_validate(job.model_dump(exclude={"attempts"})))
        oldest = await self._call(lambda: self._client.read_flow_runs(
            flow_filter=_job_flow(), sort=FlowRunSort.EXPECTED_START_TIME_ASC, limit=1))
        return JobPage(jobs=jobs, offset=offset, limit=limit, next_offset=offset + limit if more else None,
                       history_days=self._history_days,
                       oldest=oldest[0].start_time or oldest[0].expected_start_time if oldest else None)

    async def job(self, jid: str) -> JobDetails | None:
        """The job ``jid`` with every attempt of its steps (its newest flow run's state), or ``None``."""
        runs = await self._call(lambda: self._client.read_flow_runs(
            flow_filter=_job_flow(), flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[job_run_name(jid)])),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=PREFECT_PAGE))
        if not runs:
            return None
        return job_details(runs[0], await self._task_runs([run.id for run in runs]))

    async def _scan(self, filters: JobFilters, offset: int) -> AsyncIterator[JobDetails]:
        """Jobs matching every filter but ``state``, newest first, from the ``offset``-th."""
        times = FlowRunFilterExpectedStartTime(after_=filters.since, before_=filters.until)
        plugin_tags = filters.plugin_tags()
        task_filter = TaskRunFilter(tags=TaskRunFilterTags(all_=plugin_tags)) if plugin_tags else None
        while True:
            runs = await self._call(partial(
                self._client.read_flow_runs, flow_filter=_job_flow(), task_run_filter=task_filter,
                flow_run_filter=FlowRunFilter(expected_start_time=times),
                sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=PREFECT_PAGE, offset=offset))
            task_runs = await self._task_runs([run.id for run in runs])
            for run in runs:
                yield job_details(run, [task_run for task_run in task_runs if task_run.flow_run_id == run.id])
            if len(runs) < PREFECT_PAGE:
                return
            offset += len(runs)

    async def _task_runs(self, flow_run_ids: list[UUID]) -> list[TaskRun]:
        """Every task run of the flow runs, oldest first."""
        found: list[TaskRun] = []
        while flow_run_ids:
            page = await self._call(partial(
                self._client.read_task_runs, flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=flow_run_ids)),
                sort=TaskRunSort.EXPECTED_START_TIME_ASC, limit=PREFECT_PAGE, offset=len(found)))
            found += page
            if len(page) < PREFECT_PAGE:
                break
        return found

    async def _call(self, call: Callable[[], Awaitable[T]]) -> T:
        return await with_retries(call, self._deadline, partial(self._metrics.prefect_error, "api"))


def _job_flow() -> FlowFilter:
    return FlowFilter(name=FlowFilterName(any_=[JOB_FLOW_NAME]))
