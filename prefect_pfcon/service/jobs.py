"""What each pfcon job endpoint does, apart from HTTP: guards, idempotency, job steps."""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import anyio
from anyio import to_thread
from cryptography.fernet import Fernet

from prefect_pfcon.blocks.compute import ComputeBlock
from prefect_pfcon.blocks.compute.base import ZERO_TIME
from prefect_pfcon.blocks.storage import StorageBlock
from prefect_pfcon.flows.attempts import StepAttempt, StepRequest
from prefect_pfcon.job_secrets import SealError, mask, masked_values, seal, unsealed_env
from prefect_pfcon.models import CopyJob, DeleteJob, JobStatus, JobStep, PluginJob, UploadJob
from prefect_pfcon.names import plugin_tags, step_tags
from prefect_pfcon.service.prefect_calls import check_parameter_size
from prefect_pfcon.service.status import (
    compute_object,
    plugin_identity,
    plugin_status,
    run_status,
    skipped,
    step_identity,
)
from prefect_pfcon.service.store import JobStore
from prefect_pfcon.lib.archives import BadArchive, iter_zip
from prefect_pfcon.lib.command import build_plugin_command
from prefect_pfcon.lib.paths import UnsafePathError

ENV_ERROR = 'env: must be a list of "key=value" strings'
BAD_REQUEST_TEXT = (
    "The browser (or proxy) sent a request that this server could not understand."
)
FIRST_POLL_SECONDS, LAST_POLL_SECONDS = 0.05, 0.5  # how often run_step looks at its job
QUEUE_FULL_RETRY_SECONDS = 30


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: status code and JSON body."""

    status_code: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def error(status_code: int, message: Any) -> Answer:
    """pfcon's error body ``{"message": ...}``."""
    return Answer(status_code, {"message": message})


class JobService:
    """The four job collections over a job store, a storage and a compute block."""

    def __init__(self, storage: StorageBlock, compute: ComputeBlock, store: JobStore, env_key: Fernet,
                 delete_stops_plugin: bool = False, max_waiting_plugins: int | None = None) -> None:
        self.storage = storage
        self.compute = compute
        self.store = store
        self._env_key = env_key
        self._delete_stops_plugin = delete_stops_plugin
        self._max_waiting_plugins = max_waiting_plugins

    # ----- reading -------------------------------------------------------------------

    async def status(self, step: JobStep, jid: str, with_logs: bool = True) -> dict[str, str] | None:
        """The ``compute`` object of the current job, or ``None`` if there is none;
        ``with_logs=False`` leaves ``logs`` empty (for guards, which need only the status)."""
        run = await self._current_run(step, jid)
        return None if run is None else await self._describe(step, jid, run, with_logs)

    async def _current_run(self, step: JobStep, jid: str) -> StepAttempt | None:
        """The job of (jid, step): its newest attempt unless a client removed it."""
        attempt = await self.store.newest(step, jid)
        return None if attempt is None or attempt.removed else attempt

    async def forgotten(self, jid: str) -> bool:
        """Whether clients DELETEd all of this jid's jobs."""
        return await self.store.forgotten(jid)

    async def _describe(self, step: JobStep, jid: str, run: StepAttempt, with_logs: bool = True) -> dict[str, str]:
        container_logs = None
        if step is JobStep.PLUGIN:
            container = await to_thread.run_sync(self.compute.state, jid)
            status, message, timestamp = plugin_status(run, container)
            if status is JobStatus.NOT_STARTED and (ahead := self.store.slots_ahead(run.id)) is not None:
                message = waiting_message(ahead)
            image, cmd = plugin_identity(run)
            if container is not None and container.task_run_id == str(run.id):
                container_logs = self.compute.logs
        else:
            status, message, timestamp = run_status(run)
            image, cmd = step_identity(step)
        logs = ""
        if with_logs and container_logs is not None:
            logs = mask(await to_thread.run_sync(container_logs, jid), self._masked_values(run))
        elif with_logs and status is not JobStatus.NOT_STARTED:
            logs = await self.store.logs(run, self.compute.logs_tail)
        return compute_object(jid, image, cmd, status, message, timestamp, logs)

    def _masked_values(self, run: StepAttempt) -> list[str]:
        """The env values of a plugin attempt, to mask in its container's logs."""
        try:
            return masked_values(unsealed_env(PluginJob.model_validate(run.parameters["job"]), self._env_key))
        except SealError:  # sealed elsewhere (another API's key): its values are unknown here
            return []

    async def _current_unless_replaceable(
        self, step: JobStep, jid: str
    ) -> tuple[dict[str, str] | None, StepAttempt | None]:
        """The current job's answer to repeat, or ``None`` when a new attempt may be accepted;
        and the step's newest attempt (removed or not), which a new one must follow."""
        newest = await self.store.newest(step, jid)
        if newest is None or newest.removed:
            return None, newest
        current = await self._describe(step, jid, newest, with_logs=False)
        if JobStatus(current["status"]).may_be_replaced:
            return None, newest
        return await self._describe(step, jid, newest), newest

    async def _schedule(
        self, step: JobStep, job: Any, image: str, cmd: str, newest: StepAttempt | None
    ) -> dict[str, str]:
        """Accept a new attempt of the step following ``newest``, the newest one the request
        saw: requests that saw the same one (simultaneous repeats) make one attempt."""
        tags = (plugin_tags(job, self.compute.container_env) if step is JobStep.PLUGIN
                else step_tags(step, job.jid))
        request = StepRequest(step=step, jid=job.jid, parameters=self._parameters(job), tags=tags)
        await self.store.accept(request, newest.id if newest is not None else None)
        return compute_object(job.jid, image, cmd, JobStatus.NOT_STARTED, "created", ZERO_TIME, "")

    @staticmethod
    def _parameters(job: Any) -> dict[str, Any]:
        """The step's parameters, as its task run receives them."""
        return {"job": job.model_dump(mode="json")}

    def _path_error(self, field: str, *paths: str) -> Answer | None:
        for path in paths:
            try:
                self.storage.check_job_path(path)
            except UnsafePathError as exc:
                return error(400, f"{field}: {exc}")
        return None

    # ----- plugin ----------------------------------------------------------------------

    async def submit_plugin(self, values: dict[str, Any], data_file: BinaryIO | None = None) -> Answer:
        """POST pluginjobs/ (``data_file``: the zip of the inputs, out of network)."""
        job = PluginJob(**values)
        invalid = self.plugin_request_error(job, data_file)
        if invalid is not None:
            return invalid
        existing, newest = await self._current_unless_replaceable(JobStep.PLUGIN, job.jid)
        if existing is not None:
            return Answer(201, {"data": {}, "compute": existing})
        guard = await self._copy_guard(job.jid) or self._queue_full()
        if guard is not None:
            return guard
        check_parameter_size(self._parameters(job))  # before unpacking anything
        try:
            data = await to_thread.run_sync(self.storage.plugin_data, job, data_file)
        except BadArchive as exc:
            return error(400, f"data_file: {exc}")
        cmd = shlex.join(build_plugin_command(job.entrypoint, job.args, job.args_path_flags, job.type))
        compute = await self._schedule(JobStep.PLUGIN, seal(job, self._env_key), job.image, cmd, newest)
        return Answer(201, {"data": data, "compute": compute})

    def _queue_full(self) -> Answer | None:
        """``PFCON_MAX_WAITING_PLUGINS``, the only load refusal: 503 with ``Retry-After`` when
        that many accepted plugins already wait for a slot."""
        waiting = self.store.plugins_waiting()
        if self._max_waiting_plugins is None or waiting is None or waiting < self._max_waiting_plugins:
            return None
        answer = error(503, f"{waiting} plugin jobs already wait for a plugin slot; try again later.")
        return Answer(answer.status_code, answer.body, {"Retry-After": str(QUEUE_FULL_RETRY_SECONDS)})

    def plugin_request_error(self, job: PluginJob, data_file: BinaryIO | None) -> Answer | None:
        """pfcon's checks of a plugin request, in its order: the 400, or ``None`` if it passes."""
        mode_error = self.storage.plugin_post_error(job)
        if mode_error:
            return error(400, mode_error)
        if self.storage.requires_data_file and data_file is None:
            return error(400, BAD_REQUEST_TEXT)
        if any("=" not in entry for entry in job.env):
            return error(400, ENV_ERROR)
        compute_error = self.compute.plugin_post_error(job)
        if compute_error:
            return error(400, compute_error)
        return self._path_error("input_dirs", *job.input_dirs) or self._path_error(
            "output_dir", *([job.output_dir] if job.output_dir else [])
        )

    async def _copy_guard(self, jid: str) -> Answer | None:
        if not (self.storage.innetwork and self.storage.requires_copy_job):
            return None
        copy = await self.status(JobStep.COPY, jid, with_logs=False)
        if copy is None:
            return error(
                409,
                "No copy job found. A copy job must complete successfully before "
                "scheduling a plugin job.",
            )
        if copy["status"] != JobStatus.FINISHED_SUCCESSFULLY.value:
            return error(
                409,
                f"Copy job has not completed successfully (status: {copy['status']}). "
                "Run the copy job first.",
            )
        return None

    # ----- copy, upload, delete ----------------------------------------------------------

    async def submit_copy(self, values: dict[str, Any]) -> Answer:
        """POST copyjobs/."""
        job = CopyJob(**values)
        if not (self.storage.innetwork and self.storage.requires_copy_job):
            return Answer(201, {"compute": skipped(job.jid, "copy")})
        path_error = self._path_error("input_dirs", *job.input_dirs) or self._path_error(
            "output_dir", job.output_dir
        )
        if path_error:
            return path_error
        return await self._submit_step(
            JobStep.COPY, job, lambda: to_thread.run_sync(self.storage.prepare_copy, job)
        )

    async def submit_upload(self, values: dict[str, Any]) -> Answer:
        """POST uploadjobs/."""
        job = UploadJob(**values)
        if not (self.storage.innetwork and self.storage.requires_upload_job):
            return Answer(201, {"compute": skipped(job.jid, "upload")})
        path_error = self._path_error("job_output_path", job.job_output_path)
        if path_error:
            return path_error
        plugin = await self.status(JobStep.PLUGIN, job.jid, with_logs=False)
        if plugin is None:
            return error(
                409, "No plugin job found. A plugin job must complete before scheduling an upload job."
            )
        if JobStatus(plugin["status"]).is_active:
            return error(
                409,
                f"Plugin job has not completed yet (status: {plugin['status']}). "
                "The plugin job must finish before uploading.",
            )
        return await self._submit_step(JobStep.UPLOAD, job)

    async def submit_delete(self, values: dict[str, Any]) -> Answer:
        """POST deletejobs/."""
        job = DeleteJob(**values)
        if not await to_thread.run_sync(self.storage.has_job_data, job.jid):
            return Answer(201, {"compute": skipped(job.jid, "delete")})
        for step in (JobStep.COPY, JobStep.PLUGIN, JobStep.UPLOAD):
            sibling = await self.status(step, job.jid, with_logs=False)
            if sibling is not None and JobStatus(sibling["status"]).is_active and not await self._stopped(step, job.jid):
                return error(
                    409,
                    f"The {step.label} job is still active (status: {sibling['status']}). "
                    "All jobs must finish before scheduling a delete job.",
                )
        return await self._submit_step(JobStep.DELETE, job)

    async def _stopped(self, step: JobStep, jid: str) -> bool:
        """With ``PFCON_DELETE_STOPS_PLUGIN``, stop an active plugin so a delete job may follow
        (its job is removed, as by a client DELETE; the delete step runs once it ended)."""
        if step is not JobStep.PLUGIN or not self._delete_stops_plugin or not self.compute.remove_jobs:
            return False
        await self.remove(step, jid)
        return True

    async def _submit_step(self, step: JobStep, job: Any, prepare: Callable[[], Any] | None = None) -> Answer:
        existing, newest = await self._current_unless_replaceable(step, job.jid)
        if existing is not None:
            return Answer(201, {"compute": existing})
        if prepare is not None:
            check_parameter_size(self._parameters(job))  # before preparing anything
            await prepare()
        image, cmd = step_identity(step)
        return Answer(201, {"compute": await self._schedule(step, job, image, cmd, newest)})

    async def run_step(self, step: JobStep, values: dict[str, Any], deadline_seconds: float) -> Answer:
        """POST a copy, upload or delete step and wait until its job ends, for requests that
        do a step's work before answering (the legacy API): the POST's answer unless 201,
        else 201 with the job's final ``compute`` object (no logs); 503 while it still runs
        at the deadline."""
        submit = {JobStep.COPY: self.submit_copy, JobStep.UPLOAD: self.submit_upload,
                  JobStep.DELETE: self.submit_delete}[step]
        submitted = await submit(values)
        if submitted.status_code != 201:
            return submitted
        compute: dict[str, str] | None = submitted.body["compute"]
        pause = FIRST_POLL_SECONDS
        with anyio.move_on_after(deadline_seconds):
            while compute is not None and JobStatus(compute["status"]).is_active:
                await anyio.sleep(pause)
                pause = min(2 * pause, LAST_POLL_SECONDS)
                compute = await self.status(step, submitted.body["compute"]["jid"], with_logs=False)
            if compute is None:
                return error(409, f"The {step.label} job was removed before it ended.")
            return Answer(201, {"compute": compute})
        return error(503, f"The {step.label} job did not end within {deadline_seconds:g} s; try again.")

    # ----- removal and outputs -----------------------------------------------------------

    async def remove(self, step: JobStep, jid: str) -> None:
        """DELETE <jid>/: stop and forget the job (REMOVE_JOBS permitting); data stays."""
        if not self.compute.remove_jobs:
            return
        await self.store.remove(step, jid)
        if step is JobStep.PLUGIN:
            await to_thread.run_sync(self.compute.remove_own, step.container_name(jid), jid)

    async def output_listing(self, jid: str, job_output_path: str) -> Answer:
        """GET pluginjobs/<jid>/file/ in-network: the output file list."""
        path = job_output_path.strip("/")
        plugin = await self._current_run(JobStep.PLUGIN, jid)
        plugin_output_dir = plugin.parameters.get("job", {}).get("output_dir") if plugin is not None else None
        try:
            files = await to_thread.run_sync(self.storage.list_outputs, jid, path, plugin_output_dir)
        except UnsafePathError as exc:
            return error(400, f"job_output_path: {exc}")
        if files is None:
            return error(404, NOT_FOUND_TEXT)
        return Answer(200, {"job_output_path": path, "rel_file_paths": files})

    async def output_archive(self, jid: str) -> Iterator[bytes] | None:
        """GET pluginjobs/<jid>/file/ as a zip: ``outgoing``'s files, links omitted;
        ``None`` when the job has no key dir."""
        try:
            names = await to_thread.run_sync(self.storage.outgoing_files, jid)
        except UnsafePathError:
            return None
        if names is None:
            return None
        return iter_zip(self.storage.outgoing(jid), names)


def waiting_message(ahead: int) -> str:
    """The ``message`` of a plugin waiting for a ``pfcon-plugins`` slot."""
    return f"waiting for a plugin slot ({ahead} ahead)"


NOT_FOUND_TEXT = (
    "The requested URL was not found on the server. If you entered the URL manually "
    "please check your spelling and try again."
)
