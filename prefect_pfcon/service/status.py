"""pfcon's ``compute`` object, derived from a step attempt's state and its container's."""

from __future__ import annotations

import re
import shlex
from datetime import datetime

from prefect.client.schemas.objects import State, StateType

from prefect_pfcon.blocks.compute.base import ZERO_TIME, ContainerState
from prefect_pfcon.blocks.compute.limits import LimitReached
from prefect_pfcon.flows.attempts import StepAttempt
from prefect_pfcon.models import JobStatus, JobStep, PluginJob
from prefect_pfcon.lib.command import build_plugin_command

_WAITING = {StateType.SCHEDULED, StateType.PENDING}
_ACTIVE = {StateType.RUNNING, StateType.PAUSED}
_FAILED = {StateType.FAILED, StateType.CRASHED, StateType.CANCELLED, StateType.CANCELLING}
FAILURE_BOILERPLATE = re.compile(r"^(?:Flow|Task) run encountered an exception:? (?:[A-Za-z_][\w.]*: )?")


def rfc3339(moment: datetime | None) -> str:
    """A timestamp in the container engine's format, or the zero time."""
    if moment is None:
        return ZERO_TIME
    return moment.isoformat().replace("+00:00", "Z")


def compute_object(
    jid: str, image: str, cmd: str, status: JobStatus, message: str, timestamp: str, logs: str
) -> dict[str, str]:
    """The ``compute`` object with exactly pfcon's keys."""
    return {
        "jid": jid,
        "image": image,
        "cmd": cmd,
        "status": status.value,
        "message": message,
        "timestamp": timestamp,
        "logs": logs,
    }


def skipped(jid: str, what: str) -> dict[str, str]:
    """A no-op answer (``copySkipped``, ``uploadSkipped``, ``deleteSkipped``)."""
    return compute_object(jid, "", "", JobStatus.FINISHED_SUCCESSFULLY, f"{what}Skipped", "", "")


def failure_reason(state: State) -> str:
    """A failed state's reason without Prefect's "Task run encountered an exception: X: "."""
    return FAILURE_BOILERPLATE.sub("", state.message or "") or state.name


def run_status(run: StepAttempt) -> tuple[JobStatus, str, str]:
    """``(status, message, timestamp)`` of a step attempt on its own."""
    state = run.state
    state_type = state.type if state else None
    if state_type in _WAITING:
        return JobStatus.NOT_STARTED, "created", ZERO_TIME
    if state_type in _ACTIVE:
        return JobStatus.STARTED, "running", rfc3339(run.start_time)
    if state_type is StateType.COMPLETED:
        return JobStatus.FINISHED_SUCCESSFULLY, "exited", rfc3339(run.end_time)
    if state_type in _FAILED and state is not None:
        return JobStatus.FINISHED_WITH_ERROR, failure_reason(state), rfc3339(run.end_time)
    return JobStatus.UNDEFINED, state.name if state else "unknown", ZERO_TIME


def reached_limit(run: StepAttempt) -> bool:
    """Whether the attempt failed because the service stopped its plugin at a limit."""
    state = run.state
    return state is not None and state.is_failed() and f"{LimitReached.__name__}: " in (state.message or "")


def plugin_status(run: StepAttempt, container: ContainerState | None) -> tuple[JobStatus, str, str]:
    """A plugin attempt's status: its container's while it has one, else the attempt's own.

    A container counts only if this attempt created it (an earlier attempt's may linger), and
    not once the attempt failed for reaching a limit (its reason says which). A container that
    ended with an error reads ``started`` until its attempt has ended too: the attempt may be
    stopping it at a limit, and a client must not take the container's reason for the last word.
    """
    if container is not None and container.task_run_id == str(run.id) and not reached_limit(run):
        ending = run.state is not None and not run.state.is_final()
        if ending and container.status is JobStatus.FINISHED_WITH_ERROR:
            return JobStatus.STARTED, "running", rfc3339(run.start_time)
        return container.status, container.message, container.timestamp
    status, message, timestamp = run_status(run)
    if status is JobStatus.STARTED:
        return JobStatus.NOT_STARTED, "created", ZERO_TIME
    return status, message, timestamp


def plugin_identity(run: StepAttempt) -> tuple[str, str]:
    """``(image, cmd)`` of a plugin attempt, from its parameters."""
    job = PluginJob.model_validate(run.parameters["job"])
    command = build_plugin_command(job.entrypoint, job.args, job.args_path_flags, job.type)
    return job.image, shlex.join(command)


def step_identity(step: JobStep) -> tuple[str, str]:
    """``(image, cmd)`` of a step without a container: no image, the step's flow name
    (``pfcon-copy`` ..., as before steps became task runs: clients may show it)."""
    return "", f"pfcon-{step.value}"
