"""pfcon's previous API generation (pfcon ≤ 5.3.1, python-pfconclient ≤ 3.3.0), served next
to the current one from the same job steps.

One legacy request does what a client of the current API asks for in several: ``POST jobs/``
runs the copy step (in modes that have one) and waits for it, then submits the plugin step;
``GET jobs/<jid>/file/?job_output_path=`` in swift mode runs the upload step and waits for it
before listing; ``DELETE jobs/<jid>/`` runs the delete step and waits for it, then forgets
every step of the job. The steps are ``JobService``'s, with their guards and idempotency, so a
repeated POST answers the job already there (pfcon ≤ 5.3.1 answered 500).

The POST takes the current plugin fields: ``args`` may be left out (pfcon ≤ 5.3.1 required
it, but python-pfconclient 3.3.0 sends no ``args`` key for an empty list, so a plugin without
arguments could not run); in network ``input_dirs`` is required, as it was.
"""

from __future__ import annotations

from typing import Any, BinaryIO

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from prefect_pfcon.api.app import (
    API,
    MAX_FORM_FIELDS,
    MAX_FORM_PART_BYTES,
    _data_file,
    _jobs,
    answer,
    output_files,
    server_version,
)
from prefect_pfcon.api.auth import Authenticator
from prefect_pfcon.api.forms import PLUGIN_FIELDS, job_id, parse_form
from prefect_pfcon.service.jobs import Answer, JobService, error
from prefect_pfcon.models import JobStatus, JobStep, PluginJob

JOBS = f"{API}/jobs/"
ONLY_CURRENT_INFO = ("requires_copy_job", "requires_upload_job")
COPY_ERRORS = {"swift": "input_dirs: Error fetching files from swift"}
COPY_ERROR = "input_dirs: Error copying files from shared filesystem"
UPLOAD_ERROR = "job_output_path: Error uploading files to swift"
DELETE_ERROR = "Error deleting the job's data"


def legacy_router(auth: Authenticator, wait_seconds: float) -> APIRouter:
    """The ``jobs/`` routes; a step run inside a request may take ``wait_seconds``."""
    router = APIRouter(dependencies=[Depends(auth)])

    @router.get(JOBS, name="legacy-server-info")
    async def server_info(request: Request) -> dict[str, Any]:
        """Server info, without the current generation's ``requires_*`` flags."""
        jobs = _jobs(request)
        info = {"server_version": server_version(), **jobs.storage.server_info(), **jobs.compute.server_info()}
        return {key: value for key, value in info.items() if key not in ONLY_CURRENT_INFO}

    @router.post(JOBS, name="legacy-submit")
    async def submit_job(request: Request) -> JSONResponse:
        """Stage the inputs and start the plugin (form-encoded; multipart with ``data_file``)."""
        form = await request.form(max_fields=MAX_FORM_FIELDS, max_part_size=MAX_FORM_PART_BYTES)
        values = parse_form(form, PLUGIN_FIELDS)
        return answer(await submit(_jobs(request), values, _data_file(form), wait_seconds))

    @router.get(JOBS + "{jid}/", name="legacy-status")
    async def job_status(request: Request, jid: str) -> JSONResponse:
        """The plugin job's status and log tail."""
        compute = await _jobs(request).status(JobStep.PLUGIN, jid)
        if compute is None:
            return answer(not_found(jid))
        return JSONResponse({"compute": compute})

    @router.get(JOBS + "{jid}/file/", name="legacy-files")
    async def job_files(request: Request, jid: str) -> Response:
        """The outputs as the current API gives them, uploaded first in swift mode."""
        jobs = _jobs(request)
        job_output_path = request.query_params.get("job_output_path")
        if job_output_path is not None and jobs.storage.innetwork and jobs.storage.requires_upload_job:
            uploaded = await upload(jobs, jid, job_output_path, wait_seconds)
            if uploaded is not None:
                return answer(uploaded)
        return await output_files(jobs, jid, job_output_path)

    @router.delete(JOBS + "{jid}/", name="legacy-remove")
    async def remove_job(request: Request, jid: str) -> Response:
        """Delete the job's data, then stop and forget the job: 204, or 404 without a job."""
        removed = await remove(_jobs(request), jid, wait_seconds)
        if removed is not None:
            return answer(removed)
        return Response(status_code=204, media_type="application/json")

    return router


def not_found(jid: str) -> Answer:
    """The 404 of a jid without a plugin job (the current API's text)."""
    return error(404, f"No {JobStep.PLUGIN.label} job found with jid {jid!r}")


async def submit(jobs: JobService, values: dict[str, Any], data_file: BinaryIO | None, wait_seconds: float) -> Answer:
    """``POST jobs/``: pfcon's checks, the copy step run to its end unless the plugin job is
    there already, then the plugin step; its ``data`` describes the staged inputs."""
    job = PluginJob(**values)
    if jobs.storage.innetwork and not job.input_dirs:
        return error(400, "input_dirs: field is required")
    invalid = jobs.plugin_request_error(job, data_file)
    if invalid is not None:
        return invalid
    data = None
    if jobs.storage.innetwork and jobs.storage.requires_copy_job:
        plugin = await jobs.status(JobStep.PLUGIN, job.jid, with_logs=False)
        if plugin is None or JobStatus(plugin["status"]).may_be_replaced:
            copy = {"jid": job.jid, "input_dirs": job.input_dirs, "output_dir": job.output_dir}
            copied = await jobs.run_step(JobStep.COPY, copy, wait_seconds)
            if copied.status_code != 201:
                return copied
            if copied.body["compute"]["status"] != JobStatus.FINISHED_SUCCESSFULLY.value:
                return error(400, COPY_ERRORS.get(jobs.storage.storage_env, COPY_ERROR))
            data = jobs.storage.staged_data(job.jid)
    submitted = await jobs.submit_plugin(values, data_file)
    if data is None or submitted.status_code != 201:
        return submitted
    return Answer(201, {**submitted.body, "data": data})


async def upload(jobs: JobService, jid: str, job_output_path: str, wait_seconds: float) -> Answer | None:
    """The upload step run to its end: ``None`` once it succeeded, else the error answer."""
    uploaded = await jobs.run_step(JobStep.UPLOAD, {"jid": jid, "job_output_path": job_output_path}, wait_seconds)
    if uploaded.status_code != 201:
        return uploaded
    compute = uploaded.body["compute"]
    if compute["status"] != JobStatus.FINISHED_SUCCESSFULLY.value:
        return error(500, f"{UPLOAD_ERROR}: {compute['message']}")
    return None


async def remove(jobs: JobService, jid: str, wait_seconds: float) -> Answer | None:
    """``DELETE jobs/<jid>/``: a running plugin is stopped first (legacy clients cancel a job
    this way), the delete step runs to its end, then every step of the job is forgotten
    (``REMOVE_JOBS`` permitting). ``None`` when done, else the error answer (404 without a
    plugin job, after its data, if any, was deleted)."""
    try:
        job_id(jid)
    except ValueError:
        return not_found(jid)
    plugin = await jobs.status(JobStep.PLUGIN, jid, with_logs=False)
    if plugin is not None and JobStatus(plugin["status"]).is_active:
        await jobs.remove(JobStep.PLUGIN, jid)
    deleted = await jobs.run_step(JobStep.DELETE, {"jid": jid}, wait_seconds)
    if deleted.status_code != 201:
        return deleted
    compute = deleted.body["compute"]
    if compute["status"] != JobStatus.FINISHED_SUCCESSFULLY.value:
        return error(500, f"{DELETE_ERROR}: {compute['message']}")
    for step in JobStep:
        await jobs.remove(step, jid)
    return not_found(jid) if plugin is None else None
