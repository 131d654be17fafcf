"""Docker (or Podman's Docker API) compute: one container per plugin job, named after the jid."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from http import HTTPStatus
from typing import Any, ClassVar, Literal

from docker.errors import APIError, ImageNotFound, NotFound
from docker.types import DeviceRequest
from pydantic import Field, PrivateAttr

from prefect_pfcon.blocks.compute.base import (
    PLUGIN_CAPABILITIES,
    ZERO_TIME,
    ComputeError,
    ContainerJob,
    ContainerState,
    ContainerUser,
)
from prefect_pfcon.names import FLOW_RUN_LABEL, JID_LABEL, JOB_TYPE_LABEL
from prefect_pfcon.blocks.compute.engine import DockerEngineBlock, engine_call, engine_read
from prefect_pfcon.blocks.compute.lines import split_lines
from prefect_pfcon.models import JobStatus
from prefect_pfcon.lib.command import INCOMING, OUTGOING


def status_name(state: dict[str, Any]) -> str:
    """``State.Status`` in Docker's terms. Podman shows a container whose process has exited as
    ``stopped`` (its exit code and ``FinishedAt`` already recorded from conmon's exit file) until
    it has cleaned the container up, some 0.1 s later, and then ``exited``; Docker never does."""
    status = state.get("Status", "")
    return "exited" if status == "stopped" else status


def container_status(state: dict[str, Any]) -> JobStatus:
    """pfcon's status of a Docker container ``State`` (spec 9.1, first match wins)."""
    if state.get("Running") or state.get("Paused"):
        return JobStatus.STARTED
    if state.get("Status") == "created":
        return JobStatus.NOT_STARTED
    if state.get("OOMKilled") or state.get("Dead"):
        return JobStatus.FINISHED_WITH_ERROR
    if status_name(state) == "exited":
        ok = state.get("ExitCode") == 0
        return JobStatus.FINISHED_SUCCESSFULLY if ok else JobStatus.FINISHED_WITH_ERROR
    return JobStatus.UNDEFINED


def container_timestamp(state: dict[str, Any]) -> str:
    """``FinishedAt`` unless it is the zero time, else ``StartedAt``."""
    finished = state.get("FinishedAt") or ZERO_TIME
    return finished if not finished.startswith("0001-01-01") else state.get("StartedAt") or ZERO_TIME


class DockerCompute(DockerEngineBlock):
    """Run plugin containers on a Docker engine (pfcon's CONTAINER_ENV=docker, host volumes)."""

    _block_type_name = "pfcon docker compute"
    _block_type_slug = "pfcon-docker-compute"
    _description = "Runs ChRIS plugin containers on a Docker engine."

    container_env: ClassVar[str] = "docker"

    volume_type: Literal["host", "docker_local_volume"] = Field(
        "host",
        description="How the storeBase reaches the engine (COMPUTE_VOLUME_TYPE): a host path, or a "
        "named volume whose mount point is bind-mounted.",
    )
    network_mode: str = Field(
        "none", description="Network of plugin containers: none (default), host, or a network."
    )

    _gpu_runtime: bool | None = PrivateAttr(None)

    @property
    def compute_volume_type(self) -> str:  # type: ignore[override]
        return self.volume_type

    @engine_call
    def has_gpu_runtime(self) -> bool:
        """Whether the engine has the NVIDIA runtime GPU device requests need."""
        if self._gpu_runtime is None:
            runtimes = self.client.info().get("Runtimes") or {}
            self._gpu_runtime = "nvidia" in runtimes
        return self._gpu_runtime

    @engine_call
    def submit(self, job: ContainerJob) -> None:
        if job.gpu_limit > 0 and not self.has_gpu_runtime():
            raise ComputeError(
                f"gpu_limit={job.gpu_limit} requested but the Docker engine has no GPU runtime"
            )
        try:
            container = self.client.containers.create(**self._create_kwargs(job))
        except ImageNotFound:
            raise ComputeError(f"Image {job.image} is not available on the Docker engine") from None
        except APIError as error:
            raise ComputeError(f"Docker refused the container: {error.explanation}") from None
        try:
            container.start()
        except APIError as error:
            container.remove(force=True)
            raise ComputeError(f"Docker could not start the container: {error.explanation}") from None

    def _create_kwargs(self, job: ContainerJob) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "image": job.image,
            "command": job.command,
            "name": job.name,
            "environment": self.plugin_env(job.env),
            "labels": self.labels_of(job),
            "network_mode": self.network_mode,
            "volumes": {
                str(job.incoming): {"bind": INCOMING, "mode": "ro"},
                str(job.outgoing): {"bind": OUTGOING, "mode": "rw"},
            },
            "detach": True,
            "security_opt": ["no-new-privileges"],
            "cap_drop": ["ALL"],
            "cap_add": list(PLUGIN_CAPABILITIES),
        }
        if self.pids_limit:
            kwargs["pids_limit"] = self.pids_limit
        if not self.ignore_limits:
            memory = f"{job.memory_limit}m"
            kwargs.update(nano_cpus=job.cpu_limit * 10**6, mem_limit=memory, memswap_limit=memory)
        if job.gpu_limit > 0:
            kwargs["device_requests"] = [DeviceRequest(count=job.gpu_limit, capabilities=[["gpu"]])]
        if self.shm_size:
            kwargs["shm_size"] = f"{self.shm_size}m"
        user = ContainerUser.parse(self.container_user)
        if user and user.uid:
            kwargs["user"] = user.uid
        if user and user.gid:
            kwargs["group_add"] = [user.gid]
        return kwargs

    @engine_read
    def state(self, name: str) -> ContainerState | None:
        try:
            info = self.client.api.inspect_container(name)
        except NotFound:
            return None
        state = info["State"]
        return ContainerState(
            status=container_status(state),
            message=status_name(state),
            timestamp=container_timestamp(state),
            exit_code=state.get("ExitCode"),
            labels=info["Config"].get("Labels") or {},
        )

    @engine_read
    def logs(self, name: str) -> str:
        """The container's log tail; empty once it is gone or being removed (a DELETE)."""
        try:
            raw = self.client.api.logs(name, stdout=True, stderr=True, tail=self.logs_tail)
        except NotFound:
            return ""
        except APIError as error:
            if error.status_code == HTTPStatus.CONFLICT:  # "dead or marked for removal"
                return ""
            raise
        return raw.decode("utf-8", errors="replace")

    def follow_logs(self, name: str) -> Iterator[str]:
        yield from split_lines(self.client.api.logs(name, stream=True, follow=True))

    @engine_call
    def wait(self, name: str) -> int:
        try:
            return int(self.client.api.wait(name)["StatusCode"])
        except NotFound:
            raise ComputeError(f"Container {name} was removed before it finished") from None

    @engine_call
    def remove(self, name: str) -> None:
        try:
            self.client.api.remove_container(name, force=True)
        except NotFound:
            pass

    @engine_call
    def stop(self, name: str) -> None:
        """Kill the container, keeping it (its state reads exited, code 137)."""
        self.kill_container(name)

    @engine_call
    def ended_jobs(self) -> dict[str, Mapping[str, str]]:
        containers = self.client.api.containers(
            all=True,
            filters={"label": [FLOW_RUN_LABEL, JID_LABEL, f"{JOB_TYPE_LABEL}=plugin"], "status": "exited"},
        )
        return {container["Names"][0].lstrip("/"): container["Labels"] for container in containers}
