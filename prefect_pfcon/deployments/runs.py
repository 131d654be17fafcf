"""Job steps as Prefect flow runs: read the runs of a jid, create, remove.

There is no job table besides Prefect's: the current job of a (jid, step) is the newest flow
run of the step's deployment named ``<step>-<jid>``, unless a client DELETE marked it removed.
"""

from __future__ import annotations

import functools
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from uuid import UUID

import anyio
import httpx
from prefect._internal.schemas.validators import validate_parameter_size
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterName,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.objects import FlowRun, Log
from prefect.client.schemas.responses import DeploymentResponse
from prefect.client.schemas.sorting import FlowRunSort, LogSort
from prefect.context import SettingsContext, get_settings_context
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, get_current_settings
from prefect.states import Cancelled, Pending

from prefect_pfcon.flows import STEP_FLOWS
from prefect_pfcon.flows.naming import run_name_for
from prefect_pfcon.models import JobStep

T = TypeVar("T")
DEPLOYMENT_NAME = "pfcon"
REMOVED_TAG = "pfcon:removed"
MAX_PAGE = 200  # the Prefect API's page size limit
LOG_PAGE = 20  # log records read at once (one may hold 256 KiB of plugin output)


def deployment_path(step: JobStep, deployment_name: str = DEPLOYMENT_NAME) -> str:
    """``<flow name>/<deployment name>`` of a step's deployment."""
    return f"{STEP_FLOWS[step].name}/{deployment_name}"


def is_removed(run: FlowRun) -> bool:
    """Whether a client DELETE removed this run."""
    return REMOVED_TAG in run.tags


def run_tags(step: JobStep, jid: str) -> list[str]:
    """Tags every run of a job step carries, for filtering in the Prefect UI."""
    return [f"jid:{jid}", f"step:{step.value}", "pfcon"]


FIRST_RETRY_SECONDS = 0.02
LAST_RETRY_SECONDS = 1.0
NOT_REFUSALS = {401, 403, 408, 429}  # credentials, timeouts, rate limits: the server's, not the request's
MAX_REFUSAL_CHARS = 500


class ParametersTooLarge(ValueError):
    """Parameters larger than the Prefect server accepts for a flow run."""


class RunRefused(RuntimeError):
    """Prefect refused to create a run because of the request itself: retrying cannot help."""


def check_parameter_size(parameters: dict[str, Any]) -> None:
    """Raise ``ParametersTooLarge`` for parameters over Prefect's flow-run limit
    (``PREFECT_SERVER_API_MAX_PARAMETER_SIZE``, 512 KiB by default), measured as Prefect does."""
    try:
        validate_parameter_size(parameters, get_current_settings().server.api.max_parameter_size)
    except ValueError as exc:
        raise ParametersTooLarge(str(exc)) from exc


def refusal(exc: httpx.HTTPStatusError) -> RunRefused | None:
    """A 4xx answer to a creation as a readable ``RunRefused``; ``None`` for other answers."""
    response = exc.response
    if not 400 <= response.status_code < 500 or response.status_code in NOT_REFUSALS:
        return None
    try:
        body = response.json()
    except ValueError:
        body = None
    detail = response.reason_phrase
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        detail = body["detail"]
    elif isinstance(body, dict) and isinstance(body.get("exception_detail"), list):
        detail = "; ".join(str(item.get("msg")) for item in body["exception_detail"] if isinstance(item, dict))
    message = f"Prefect refused to create the run ({response.status_code}): {detail}"
    return RunRefused(message[:MAX_REFUSAL_CHARS])


def _retryable(exc: Exception) -> bool:
    """A lost server, or its 503 (busy: on SQLite, a write that lost a race with another)."""
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code == 503
    return isinstance(exc, httpx.TransportError)


def bounded(method: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Run a Prefect call within the instance's deadline (``TimeoutError`` → 503).

    The Prefect client waits 2, 4, 8, then 16 s before retrying a 503 or a lost server; an
    API answer cannot wait that long, so the call is retried here instead, from 20 ms on.
    """

    @functools.wraps(method)
    async def call(self: JobRuns, *args: Any, **kwargs: Any) -> T:
        delay = FIRST_RETRY_SECONDS
        with anyio.fail_after(self._deadline):
            while True:
                try:
                    with self._without_client_retries():
                        return await method(self, *args, **kwargs)
                except Exception as exc:
                    if not _retryable(exc):
                        raise
                await anyio.sleep(random.uniform(delay / 2, delay))
                delay = min(2 * delay, LAST_RETRY_SECONDS)

    return call


class JobRuns:
    """Flow runs of the four step deployments, looked up by jid.

    ``deployment_name`` picks the deployments: the embedded runner's (``pfcon``) or those of
    a work pool (e.g. ``process`` from prefect.yaml).
    """

    def __init__(
        self, client: PrefectClient, deployment_name: str = DEPLOYMENT_NAME, deadline_seconds: float = 30.0
    ) -> None:
        self._client = client
        self._deployment_name = deployment_name
        self._deadline = deadline_seconds
        self._deployments: dict[JobStep, DeploymentResponse] = {}
        settings = get_settings_context()
        self._settings_without_retries = (
            settings.profile,
            settings.settings.copy_with_update(updates={PREFECT_CLIENT_MAX_RETRIES: 0}),
        )

    @property
    def deadline_seconds(self) -> float:
        """How long a call may take before the API answers 503."""
        return self._deadline

    def _without_client_retries(self) -> SettingsContext:
        """Prefect settings in which the client does not retry (``bounded`` does)."""
        profile, settings = self._settings_without_retries
        return SettingsContext(profile=profile, settings=settings)

    @bounded
    async def deployment(self, step: JobStep) -> DeploymentResponse:
        """The step's deployment (looked up once by name)."""
        if step not in self._deployments:
            self._deployments[step] = await self._client.read_deployment_by_name(
                deployment_path(step, self._deployment_name)
            )
        return self._deployments[step]

    @bounded
    async def newest_runs(self, jid: str) -> dict[JobStep, FlowRun]:
        """The newest run of each step of ``jid`` that has one, removed or not."""
        names = {run_name_for(step, jid): step for step in JobStep}
        runs = await self._runs_named(list(names), MAX_PAGE)
        newest: dict[JobStep, FlowRun] = {}
        for run in runs:
            newest.setdefault(names[run.name], run)
        if len(runs) == MAX_PAGE:  # a step's newest run may lie beyond the page
            for step in set(JobStep) - set(newest):
                newest.update({step: run for run in await self._runs_named([run_name_for(step, jid)], 1)})
        return newest

    async def _runs_named(self, names: list[str], limit: int) -> list[FlowRun]:
        """Runs of the step deployments with one of these names, newest first."""
        return await self._client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=names)),
            deployment_filter=DeploymentFilter(
                id=DeploymentFilterId(any_=[(await self.deployment(step)).id for step in JobStep])
            ),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
            limit=limit,
        )

    @bounded
    async def removed(self, run_id: str) -> bool:
        """Whether a client DELETE removed this flow run (a run this Prefect server does not
        know, perhaps another instance's, is not)."""
        try:
            run = await self._client.read_flow_run(UUID(run_id))
        except ObjectNotFound:
            return False
        return is_removed(run)

    @bounded
    async def create(
        self,
        step: JobStep,
        jid: str,
        parameters: dict[str, Any],
        after: UUID | None,
        extra_tags: list[str],
        pending: bool,
    ) -> FlowRun:
        """Create the step's run, Scheduled for a worker or ``pending`` for the embedded runner;
        creations that follow the same newest run (``after``) yield one run. Raises
        ``RunRefused`` when Prefect refuses the request itself (a 4xx)."""
        deployment = await self.deployment(step)
        try:
            return await self._client.create_flow_run_from_deployment(
                deployment.id,
                parameters=parameters,
                name=run_name_for(step, jid),
                tags=[*run_tags(step, jid), *extra_tags],
                idempotency_key=f"pfcon:{step.value}:{jid}:after:{after or 'none'}",
                state=Pending() if pending else None,
            )
        except httpx.HTTPStatusError as exc:
            refused = refusal(exc)
            if refused is None:
                raise
            raise refused from exc

    @bounded
    async def remove(self, run: FlowRun) -> FlowRun:
        """Cancel the run if it is not finished, and hide it from job lookups; the run, marked."""
        if run.state is not None and not run.state.is_final():
            await self._client.set_flow_run_state(
                run.id, Cancelled(message="Removed by a client DELETE"), force=True
            )
        tags = [*run.tags, REMOVED_TAG]
        await self._client.update_flow_run(run.id, tags=tags)
        return run.model_copy(update={"tags": tags})

    @bounded
    async def log_tail(self, run: FlowRun, lines: int) -> str:
        """The run's last ``lines`` Prefect log lines, oldest first (a record of plugin output
        holds many lines: records are read newest first until there are enough)."""
        logs: list[Log] = []
        count = 0
        while count < lines:
            limit = min(lines - count, LOG_PAGE)
            page = await self._client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])),
                sort=LogSort.TIMESTAMP_DESC,
                limit=limit,
                offset=len(logs),
            )
            logs += page
            count += sum(log.message.count("\n") + 1 for log in page)
            if len(page) < limit:
                break
        text = "".join(
            f"[{log.timestamp.isoformat()}] [{logging.getLevelName(log.level)}] {log.message}\n"
            for log in reversed(logs)
        )
        return "".join(text.splitlines(keepends=True)[-lines:]) if count > lines else text
