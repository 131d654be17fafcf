"""``GET /api/v1/ops/jobs/`` and ``GET /api/v1/ops/jobs/<jid>/``: the job history for operators,
as JSON or (``Accept: text/plain``) tab-separated text."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from prefect_pfcon.api.auth import Authenticator
from prefect_pfcon.api.forms import is_valid_jid
from prefect_pfcon.models import JobStep
from prefect_pfcon.service.job_history import PREFECT_PAGE, JobDetails, JobFilters, JobHistory, JobRecord, JobState
from prefect_pfcon.service.jobs import error

OPS_JOBS = "/api/v1/ops/jobs/"
DEFAULT_PAGE = 50
JOB_FIELDS = ("jid", "state", "auid", "image", "compute", "cpu_limit", "memory_limit", "gpu_limit",
              "start", "end", "duration_seconds", "exit_code")
JOB_COLUMNS = (*JOB_FIELDS, *(step.value for step in JobStep), "message")
ATTEMPT_COLUMNS = ("step", "task_run_id", "flow_run_id", "state", "start", "end", "duration_seconds", "message")


def _history(request: Request) -> JobHistory:
    return request.app.state.history


History = Annotated[JobHistory, Depends(_history)]


def wants_text(accept: str | None) -> bool:
    """Whether the client asked for ``text/plain`` and not for JSON."""
    kinds = [part.split(";")[0].strip() for part in (accept or "").split(",")]
    return "text/plain" in kinds and "application/json" not in kinds


def _cell(value: Any) -> str:
    if value is None:
        return ""
    text = value.isoformat() if isinstance(value, datetime) else str(getattr(value, "value", value))
    return " ".join(text.split())  # one line, no tabs


def _row(values: list[Any]) -> str:
    return "\t".join(map(_cell, values)) + "\n"


def job_row(job: JobRecord) -> str:
    """The job as a line of ``JOB_COLUMNS``; each step's column is its newest attempt's state."""
    fields = job.model_dump()
    steps = [job.steps[step].state if step in job.steps else None for step in JobStep]
    return _row([fields[name] for name in JOB_FIELDS] + steps + [job.message])


def jobs_text(jobs: list[JobRecord]) -> str:
    """Jobs as tab-separated text with a header line."""
    return _row(list(JOB_COLUMNS)) + "".join(map(job_row, jobs))


def details_text(job: JobDetails) -> str:
    """A job's line, a blank line, then each attempt's line."""
    attempts = [_row([getattr(attempt, name) for name in ATTEMPT_COLUMNS]) for attempt in job.attempts]
    return jobs_text([job]) + "\n" + _row(list(ATTEMPT_COLUMNS)) + "".join(attempts)


def ops_jobs_router(auth: Authenticator) -> APIRouter:
    """The job history routes, behind the pfcon API's token."""
    router = APIRouter(dependencies=[Depends(auth)])

    @router.get(OPS_JOBS, name="ops-jobs")
    async def list_jobs(
        request: Request,
        history: History,
        state: JobState | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        auid: str | None = None,
        image: str | None = None,
        compute: str | None = None,
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=PREFECT_PAGE)] = DEFAULT_PAGE,
    ) -> Response:
        filters = JobFilters(state=state, since=since, until=until, auid=auid, image=image, compute=compute)
        page = await history.page(filters, offset, limit)
        if wants_text(request.headers.get("accept")):
            return PlainTextResponse(jobs_text(page.jobs))
        return JSONResponse(page.model_dump(mode="json"))

    @router.get(OPS_JOBS + "{jid}/", name="ops-job")
    async def job_details(request: Request, history: History, jid: str) -> Response:
        job = await history.job(jid) if is_valid_jid(jid) else None
        if job is None:
            failure = error(404, f"No job {jid!r} in the history")
            return JSONResponse(failure.body, status_code=failure.status_code)
        if wants_text(request.headers.get("accept")):
            return PlainTextResponse(details_text(job))
        return JSONResponse(job.model_dump(mode="json"))

    return router
