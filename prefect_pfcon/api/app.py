"""The pfcon-format HTTP API (the "webhook"): pfcon's routes, answers and errors."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any, BinaryIO
from uuid import UUID

import httpx
from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from prefect import Flow
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from prefect_pfcon.blocks.compute import ComputeUnavailable
from prefect_pfcon.api.auth import Authenticator
from prefect_pfcon.api.forms import (
    COPY_FIELDS,
    DELETE_FIELDS,
    PLUGIN_FIELDS,
    UPLOAD_FIELDS,
    FormErrors,
    FormField,
    is_valid_jid,
    parse_form,
)
from prefect_pfcon.api.limits import TOO_LARGE, BodySizeLimit
from prefect_pfcon.api.login_limit import LoginThrottle
from prefect_pfcon.api.metrics import add_metrics
from prefect_pfcon.api.ops_jobs import ops_jobs_router
from prefect_pfcon.api.ops_status import ops_status_router
from prefect_pfcon.models import JobStep
from prefect_pfcon.service.jobs import NOT_FOUND_TEXT, Answer, JobService, error
from prefect_pfcon.service.metrics import ServiceMetrics
from prefect_pfcon.service.prefect_calls import ParametersTooLarge, RunRefused
from prefect_pfcon.service.wiring import running_service
from prefect_pfcon.settings import PfconSettings

logger = logging.getLogger("prefect_pfcon.api")

API = "/api/v1"
JSON_ONLY = (
    "Did not attempt to load JSON data because the request Content-Type was not "
    "'application/json'."
)
MISSING_JSON = "Missing required parameter in the JSON body or the post body or the query string"
NOT_FOUND_PAGE = (
    "<!doctype html>\n<html lang=en>\n<title>404 Not Found</title>\n<h1>Not Found</h1>\n"
    f"<p>{NOT_FOUND_TEXT}</p>\n"
)
PREFECT_UNAVAILABLE = "The Prefect server is unavailable; try again shortly."
COMPUTE_UNAVAILABLE = "The compute environment is unavailable; try again shortly."
MAX_FORM_FIELDS = 1000
MAX_FORM_PART_BYTES = 1024 * 1024
MAX_FORM_BODY_BYTES = 16 * 1024 * 1024

STEP_FIELDS: dict[JobStep, list[FormField]] = {
    JobStep.COPY: COPY_FIELDS,
    JobStep.PLUGIN: PLUGIN_FIELDS,
    JobStep.UPLOAD: UPLOAD_FIELDS,
    JobStep.DELETE: DELETE_FIELDS,
}


def server_version() -> str:
    """The installed package's version, as pfcon reports its own."""
    try:
        return version("prefect-pfcon")
    except PackageNotFoundError:
        return "0.0.0+unknown"


def answer(result: Answer) -> JSONResponse:
    """An ``Answer`` as a JSON response."""
    return JSONResponse(result.body, status_code=result.status_code, headers=result.headers)


def create_app(settings: PfconSettings, deployment_flows: dict[UUID, Flow] | None = None) -> FastAPI:
    """The API app; the job service (``running_service``) starts and stops with it."""
    service = settings.service
    auth = Authenticator(service.user, service.password, service.resolved_secret_key())
    throttle = LoginThrottle(service.login_max_failures, service.login_window_seconds)
    metrics = ServiceMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with running_service(settings, metrics, deployment_flows) as services:
            app.state.jobs = services.jobs
            app.state.history = services.history
            yield

    app = FastAPI(title="prefect-pfcon", version=server_version(), lifespan=lifespan)
    app.router.redirect_slashes = False
    app.add_middleware(
        BodySizeLimit,
        max_form_bytes=MAX_FORM_BODY_BYTES,
        max_upload_bytes=service.max_upload_mb * 1024 * 1024,
    )
    add_metrics(app, metrics, auth, service.metrics_token_required)  # after BodySizeLimit: counts its 413s
    _add_error_handlers(app, metrics)
    _add_public_routes(app, auth, throttle)
    for step in JobStep:
        _add_step_routes(app, step, auth)
    _add_file_route(app, auth)
    from prefect_pfcon.api.legacy import legacy_router  # it builds on this module

    app.include_router(legacy_router(auth, service.legacy_wait_seconds))
    app.include_router(ops_jobs_router(auth))
    app.include_router(ops_status_router(auth, service, metrics))
    return app


def _jobs(request: Request) -> JobService:
    return request.app.state.jobs


def _add_public_routes(app: FastAPI, auth: Authenticator, throttle: LoginThrottle) -> None:
    @app.get(f"{API}/health/")
    async def health() -> dict[str, str]:
        """Liveness: ``{"health": "OK"}``."""
        return {"health": "OK"}

    @app.post(f"{API}/auth-token/")
    async def auth_token(request: Request) -> JSONResponse:
        """Exchange the pfcon user's JSON credentials for a JWT (failures limited per address)."""
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return answer(error(415, JSON_ONLY))
        try:
            body = json.loads(await request.body())
        except (ValueError, RecursionError) as exc:  # RecursionError: nested too deeply
            return answer(error(400, f"Failed to decode JSON object: {exc}"))
        body = body if isinstance(body, dict) else {}
        missing = {key: MISSING_JSON for key in ("pfcon_user", "pfcon_password") if key not in body}
        if missing:
            return answer(error(400, missing))
        address = request.client.host if request.client else ""
        wait = throttle.retry_after(address)
        if wait is not None:
            response = answer(error(429, f"Too many failed logins; try again in {wait} seconds."))
            response.headers["Retry-After"] = str(wait)
            return response
        if not auth.credentials_match(str(body["pfcon_user"]), str(body["pfcon_password"])):
            throttle.failed(address)
            return answer(error(400, "Unable to log in with provided credentials."))
        return JSONResponse({"token": auth.issue_token()})


def _add_step_routes(app: FastAPI, step: JobStep, auth: Authenticator) -> None:
    base = f"{API}/{step.url_segment}/"
    submit = {
        JobStep.COPY: JobService.submit_copy,
        JobStep.PLUGIN: JobService.submit_plugin,
        JobStep.UPLOAD: JobService.submit_upload,
        JobStep.DELETE: JobService.submit_delete,
    }[step]

    @app.get(base, dependencies=[Depends(auth)], name=f"{step.value}-server-info")
    async def server_info(request: Request) -> dict[str, Any]:
        """Server info (identical on the four collections)."""
        jobs = _jobs(request)
        return {
            "server_version": server_version(),
            **jobs.storage.server_info(),
            **jobs.compute.server_info(),
        }

    @app.post(base, dependencies=[Depends(auth)], name=f"{step.value}-submit")
    async def submit_job(request: Request) -> JSONResponse:
        """Schedule the step as a Prefect flow run (form-encoded, as pfcon)."""
        form = await request.form(max_fields=MAX_FORM_FIELDS, max_part_size=MAX_FORM_PART_BYTES)
        values = parse_form(form, STEP_FIELDS[step])
        uploads = (_data_file(form),) if step is JobStep.PLUGIN else ()
        return answer(await submit(_jobs(request), values, *uploads))

    @app.get(base + "{jid}/", dependencies=[Depends(auth)], name=f"{step.value}-status")
    async def job_status(request: Request, jid: str) -> JSONResponse:
        """The job's status and log tail."""
        compute = await _jobs(request).status(step, jid) if is_valid_jid(jid) else None
        if compute is None:
            return answer(error(404, f"No {step.label} job found with jid {jid!r}"))
        return JSONResponse({"compute": compute})

    @app.delete(base + "{jid}/", dependencies=[Depends(auth)], name=f"{step.value}-remove")
    async def remove_job(request: Request, jid: str) -> Response:
        """Stop and forget the job; data is never touched. Always 204."""
        if is_valid_jid(jid):
            await _jobs(request).remove(step, jid)
        return Response(status_code=204, media_type="application/json")  # pfcon's header


def _data_file(form: FormData) -> BinaryIO | None:
    """The uploaded ``data_file`` of a plugin POST (zipfile storage), if any."""
    upload = form.get("data_file")
    return upload.file if isinstance(upload, UploadFile) else None


def _add_file_route(app: FastAPI, auth: Authenticator) -> None:
    @app.get(f"{API}/pluginjobs/{{jid}}/file/", dependencies=[Depends(auth)])
    async def job_files(request: Request, jid: str) -> Response:
        """The plugin's outputs (``output_files``)."""
        return await output_files(_jobs(request), jid, request.query_params.get("job_output_path"))


async def output_files(jobs: JobService, jid: str, job_output_path: str | None) -> Response:
    """The plugin's outputs: a JSON file list (in-network with ``job_output_path``)
    or a zip of ``key-<jid>/outgoing`` (zipfile; swift without the query)."""
    if not is_valid_jid(jid):  # no such job (nor a file name to give)
        return HTMLResponse(NOT_FOUND_PAGE, status_code=404)
    if job_output_path is not None and jobs.storage.innetwork:
        return _attachment(answer(await jobs.output_listing(jid, job_output_path)), f"{jid}.json")
    if not jobs.storage.zips_outputs:
        return answer(error(400, "job_output_path: query parameter is required"))
    archive = await jobs.output_archive(jid)
    if archive is None:
        return HTMLResponse(NOT_FOUND_PAGE, status_code=404)
    return _attachment(StreamingResponse(archive, media_type="application/zip"), f"{jid}.zip")


def _attachment(response: Response, filename: str) -> Response:
    """Mark a successful answer as a file download named ``filename``, as pfcon does."""
    if response.status_code == 200:
        response.headers["Content-Disposition"] = f"attachment; filename={filename}"
    return response


def _add_error_handlers(app: FastAPI, metrics: ServiceMetrics) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return _slash_redirect(request) or HTMLResponse(NOT_FOUND_PAGE, status_code=404)
        if exc.status_code == 405:
            return answer(error(405, "The method is not allowed for the requested URL."))
        return answer(error(exc.status_code, exc.detail))

    @app.exception_handler(FormErrors)
    async def form_error(request: Request, exc: FormErrors) -> Response:
        return answer(error(400, exc.errors))

    @app.exception_handler(ParametersTooLarge)
    async def too_large(request: Request, exc: ParametersTooLarge) -> Response:
        return answer(error(413, TOO_LARGE))

    @app.exception_handler(RunRefused)
    async def run_refused(request: Request, exc: RunRefused) -> Response:
        metrics.prefect_error("api", exc)
        return answer(error(400, str(exc)))

    @app.exception_handler(httpx.HTTPError)
    async def prefect_unavailable(request: Request, exc: httpx.HTTPError) -> Response:
        metrics.prefect_error("api", exc)
        if isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code < 500:
            return answer(error(500, "Internal Server Error"))
        return answer(error(503, PREFECT_UNAVAILABLE))

    @app.exception_handler(ComputeUnavailable)
    async def compute_unavailable(request: Request, exc: ComputeUnavailable) -> Response:
        return answer(error(503, COMPUTE_UNAVAILABLE))

    @app.exception_handler(TimeoutError)
    async def prefect_too_slow(request: Request, exc: TimeoutError) -> Response:
        metrics.prefect_error("api", exc)
        return answer(error(503, PREFECT_UNAVAILABLE))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        return answer(error(500, "Internal Server Error"))


def _slash_redirect(request: Request) -> Response | None:
    """pfcon's 308 from ``/x`` to ``/x/`` when only the latter is a route."""
    path = request.url.path
    if path.endswith("/"):
        return None
    scope = {**request.scope, "path": path + "/"}
    for route in request.app.router.routes:
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            return RedirectResponse(str(request.url.replace(path=path + "/")), status_code=308)
    return None

