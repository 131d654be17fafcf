"""The compute interface every pfcon compute block implements."""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from prefect.blocks.core import Block
from pydantic import BaseModel, Field

from prefect_pfcon.models import JobStatus, PluginJob
from prefect_pfcon.names import FLOW_RUN_LABEL, JID_LABEL, TASK_RUN_LABEL

ZERO_TIME = "0001-01-01T00:00:00Z"
PLUGIN_CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID")
"""The only capabilities plugin containers keep (all others are dropped): a plugin running
as root may read inputs of any owner, chown/chmod what it writes and switch to another user.
No MKNOD (device nodes), NET_RAW, SETFCAP, SETPCAP, SYS_CHROOT, KILL, AUDIT_WRITE, FSETID."""


class ComputeError(RuntimeError):
    """A job the backend refuses or cannot run; its message is shown to clients."""


class ComputeUnavailable(ComputeError):
    """The backend cannot be reached (down or restarting): try again later."""


class ForeignContainer(ComputeError):
    """A container (Job, Slurm job) has the job's name but prefect-pfcon did not create it."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"A container named {name} exists and was not created by prefect-pfcon; "
            "remove it or use another jid"
        )


def is_ours(labels: Mapping[str, str], jid: str) -> bool:
    """Whether a container's labels say prefect-pfcon created it for ``jid``."""
    return bool(jid) and labels.get(JID_LABEL) == jid and bool(labels.get(FLOW_RUN_LABEL))


@dataclass(frozen=True)
class ContainerJob:
    """Everything a backend needs to run one plugin container; ``env`` is the job's own
    entries (secret: never in a manifest, script or log), the backend adds ``plugin_env``'s."""

    name: str
    image: str
    command: list[str]
    env: list[str]
    cpu_limit: int
    memory_limit: int
    gpu_limit: int
    number_of_workers: int
    incoming: Path
    outgoing: Path
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ContainerState:
    """A container's state in pfcon's terms."""

    status: JobStatus
    message: str
    timestamp: str
    exit_code: int | None
    labels: dict[str, str]
    queued: bool = False
    """Not started because it waits its turn in the backend's queue (a Slurm job pending for
    priority or resources): the start timeout does not apply."""

    @property
    def task_run_id(self) -> str | None:
        """The plugin task run (the job step's attempt) that created the container."""
        return self.labels.get(TASK_RUN_LABEL)


class SlurmPartition(BaseModel):
    """A Slurm partition as ``sinfo`` shows it."""

    name: str
    state: str
    nodes: int
    idle_nodes: int


class ComputeNode(BaseModel):
    """A Kubernetes node: whether it is Ready, and what it can give pods (allocatable)."""

    name: str
    ready: bool
    cpu: float
    memory_mib: int
    gpu: int


class ComputeProbe(BaseModel):
    """What a reachable backend has: its version, and its partitions (Slurm) or nodes
    (Kubernetes)."""

    version: str | None = None
    partitions: list[SlurmPartition] | None = None
    nodes: list[ComputeNode] | None = None


@dataclass(frozen=True)
class ContainerUser:
    """``CONTAINER_USER`` parsed: ``UID:GID``, either side optional, ``a-b`` ranges allowed."""

    uid: str | None
    gid: str | None

    @classmethod
    def parse(cls, text: str | None) -> ContainerUser | None:
        """Parse pfcon's format; ranges pick a random value per job."""
        if not text:
            return None
        uid, _, gid = text.partition(":")
        return cls(_pick(uid), _pick(gid))


def _pick(spec: str) -> str | None:
    if not spec:
        return None
    low, _, high = spec.partition("-")
    return str(random.randint(int(low), int(high))) if high else str(int(low))


class ComputeBlock(Block, ABC):
    """Where plugin containers run: submit, observe, remove, by container name."""

    container_env: ClassVar[str]
    compute_volume_type: ClassVar[str]
    single_worker: ClassVar[bool] = True
    """Plugin jobs run one container (``number_of_workers`` must be 1)."""
    enforces_time_limit: ClassVar[bool] = False
    """The backend itself stops a plugin at ``max_job_seconds`` (else the plugin task does)."""

    container_user: str | None = Field(
        None, description="UID:GID for plugin containers (ranges a-b allowed); CONTAINER_USER."
    )
    enable_home_workaround: bool = Field(
        False, description="Add HOME=/tmp to the plugin's environment (ENABLE_HOME_WORKAROUND)."
    )
    shm_size: int | None = Field(None, description="/dev/shm size in MiB (SHM_SIZE).")
    job_labels: dict[str, str] = Field(
        default_factory=dict, description="Labels added to every job (JOB_LABELS)."
    )
    logs_tail: int = Field(1000, description="Lines of logs in a status answer (JOB_LOGS_TAIL).")
    ignore_limits: bool = Field(False, description="Do not set cpu/memory limits (IGNORE_LIMITS).")
    remove_jobs: bool = Field(True, description="DELETE removes containers (REMOVE_JOBS).")
    pids_limit: int | None = Field(
        1024, ge=1, description="Most processes a plugin container may run (PFCON_PIDS_LIMIT; none: no limit)."
    )
    max_job_seconds: int | None = Field(
        None, ge=1, description="Longest a plugin may run before it is stopped (PFCON_MAX_JOB_SECONDS; none: no limit)."
    )
    start_timeout_seconds: int | None = Field(
        600, ge=1, description="Longest a plugin may take to start before its job is removed "
        "(PFCON_START_TIMEOUT_SECONDS; none: no limit). Waiting in a Slurm queue does not count."
    )
    max_running_plugins: int | None = Field(
        None, ge=1, description="Plugins running at once (PFCON_MAX_RUNNING_PLUGINS; none: no limit): each "
        "holds a slot of the global concurrency limit pfcon-plugins, which has this many."
    )

    def server_info(self) -> dict[str, str]:
        """The compute part of pfcon's server-info answer."""
        return {"container_env": self.container_env, "compute_volume_type": self.compute_volume_type}

    def plugin_env(self, env: list[str]) -> list[str]:
        """The plugin's environment: exactly the client's list, then the HOME workaround."""
        return [*env, "HOME=/tmp"] if self.enable_home_workaround else list(env)

    def labels_of(self, job: ContainerJob) -> dict[str, str]:
        """The job's labels: ``JOB_LABELS``, then the job's own (job type, jid, flow run)."""
        return {**self.job_labels, **job.labels}

    def plugin_post_error(self, job: PluginJob) -> str | None:
        """A reason the backend refuses a plugin job at POST time, or ``None``."""
        if self.single_worker and job.number_of_workers != 1:
            return (
                "Compute environment only supports number_of_workers=1, "
                f"got number_of_workers={job.number_of_workers}"
            )
        return None

    @abstractmethod
    def probe(self, timeout: float) -> ComputeProbe:
        """Ask the backend what it has, each call within ``timeout`` seconds; raises when it
        cannot be reached (the error's text says why)."""

    @abstractmethod
    def submit(self, job: ContainerJob) -> None:
        """Create and start the container named ``job.name``."""

    @abstractmethod
    def state(self, name: str) -> ContainerState | None:
        """The container's state, or ``None`` when it does not exist."""

    @abstractmethod
    def logs(self, name: str) -> str:
        """The last ``logs_tail`` lines of the container's output."""

    @abstractmethod
    def follow_logs(self, name: str) -> Iterator[str]:
        """The container's output lines as they come, until it exits."""

    @abstractmethod
    def wait(self, name: str) -> int:
        """Block until the container exits; its exit code."""

    @abstractmethod
    def remove(self, name: str) -> None:
        """Remove the container, killing it if it runs; no error if absent."""

    def stop(self, name: str) -> None:
        """Kill the container now; its record stays, and its state then reads ended. Backends
        that enforce time limits themselves need not keep the record (the default removes it)."""
        self.remove(name)

    def own_state(self, name: str, jid: str) -> ContainerState | None:
        """``state(name)``; raises ``ForeignContainer`` if that container exists but is not
        the one prefect-pfcon created for ``jid``."""
        state = self.state(name)
        if state is not None and not is_ours(state.labels, jid):
            raise ForeignContainer(name)
        return state

    def remove_own(self, name: str, jid: str) -> bool:
        """Remove the container ``name`` only if prefect-pfcon created it for ``jid``;
        whether it did (anyone else's container is left alone)."""
        try:
            state = self.own_state(name, jid)
        except ForeignContainer:
            return False
        if state is None:
            return False
        self.remove(name)
        return True

    def ended_jobs(self) -> dict[str, Mapping[str, str]]:
        """Plugin containers prefect-pfcon started that have ended: name → labels (for the
        janitor; backends whose jobs clean themselves up return none)."""
        return {}
