"""Docker Swarm compute: each plugin container runs as a service named after the jid, with one
task that is never restarted (pfcon's CONTAINER_ENV=swarm)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any, ClassVar

from docker.errors import APIError, NotFound
from docker.types import ContainerSpec, Mount, Resources, RestartPolicy, TaskTemplate
from pydantic import Field

from prefect_pfcon.blocks.compute.base import (
    PLUGIN_CAPABILITIES,
    ComputeError,
    ContainerJob,
    ContainerState,
    ContainerUser,
)
from prefect_pfcon.names import FLOW_RUN_LABEL, JID_LABEL, JOB_TYPE_LABEL
from prefect_pfcon.blocks.compute.engine import DockerEngineBlock, engine_call, engine_read
from prefect_pfcon.models import JobStatus
from prefect_pfcon.lib.command import INCOMING, OUTGOING

TASK_WAITING = frozenset({"new", "allocated", "pending", "assigned", "accepted", "preparing", "ready", "starting"})
TASK_ENDED = frozenset({"complete", "failed", "shutdown", "rejected", "remove", "orphaned"})
NO_TASK_MESSAGE = "task not available yet"
OOM_MESSAGE = "shutdown by docker swarm (out of memory)"
OOM_EXIT_CODE = 137
POLL_SECONDS = 0.5
LOG_OVERLAP_NS = 10**9


def task_status(state: str) -> JobStatus:
    """pfcon's status of a swarm task state (spec 9.2)."""
    if state in TASK_WAITING:
        return JobStatus.NOT_STARTED
    if state == "running":
        return JobStatus.STARTED
    if state == "complete":
        return JobStatus.FINISHED_SUCCESSFULLY
    if state in ("failed", "shutdown"):
        return JobStatus.FINISHED_WITH_ERROR
    return JobStatus.UNDEFINED


def task_exit_code(status: dict[str, Any]) -> int | None:
    """The task container's exit code once the task ended, else ``None``."""
    if status.get("State") not in TASK_ENDED:
        return None
    return (status.get("ContainerStatus") or {}).get("ExitCode")


def task_message(status: dict[str, Any]) -> str:
    """The task's status message, or pfcon's out-of-memory text for a task shut down with 137."""
    if status.get("State") == "shutdown" and task_exit_code(status) == OOM_EXIT_CODE:
        return OOM_MESSAGE
    return status.get("Message", "")


def log_time(stamp: str) -> int:
    """An engine log timestamp (RFC 3339, up to nanoseconds) as nanoseconds since the epoch."""
    whole, _, fraction = stamp.rstrip("Z").partition(".")
    seconds = int(datetime.fromisoformat(whole + "+00:00").timestamp())
    return seconds * 10**9 + int(fraction.ljust(9, "0")[:9])


class SwarmCompute(DockerEngineBlock):
    """Run plugin containers as Docker Swarm services (one task each, restart condition none).

    The block talks to a swarm manager; the storeBase must be at ``STOREBASE`` on every node.
    Swarm has no ``none`` network: with ``network_mode`` none the service joins no swarm
    network, so its container gets its node's default bridge, which nodes whose dockerd runs
    with ``"bridge": "none"`` do not have (the plugin then sees only ``lo``).
    """

    _block_type_name = "pfcon swarm compute"
    _block_type_slug = "pfcon-swarm-compute"
    _description = "Runs ChRIS plugin containers as Docker Swarm services."

    container_env: ClassVar[str] = "swarm"
    compute_volume_type: ClassVar[str] = "host"

    network_mode: str = Field(
        "none", description="Swarm network of plugin services (host, or a network's name); none: no swarm "
        "network (the task's node decides: its default bridge, if its dockerd has one)."
    )
    gpu_resource: str = Field(
        "NVIDIA-GPU", description="Generic resource the swarm's nodes advertise GPUs as (node-generic-resources); "
        "a job's gpu_limit is reserved from it."
    )

    # ----- the service -------------------------------------------------------------------

    def container_spec(self, job: ContainerJob) -> ContainerSpec:
        """The container of a plugin's task: command, env, user, labels, mounts."""
        mounts = [
            Mount(INCOMING, str(job.incoming), type="bind", read_only=True),
            Mount(OUTGOING, str(job.outgoing), type="bind"),
        ]
        if self.shm_size:
            mounts.append(Mount("/dev/shm", None, type="tmpfs", tmpfs_size=self.shm_size * 2**20))
        user = ContainerUser.parse(self.container_user)
        return ContainerSpec(
            image=job.image,
            command=job.command,
            env=self.plugin_env(job.env),
            cap_drop=["ALL"],
            cap_add=list(PLUGIN_CAPABILITIES),
            user=(f"{user.uid}:{user.gid}" if user.gid else user.uid) if user and user.uid else None,
            labels=self.labels_of(job),
            mounts=mounts,
            stop_signal="SIGKILL",  # a DELETE kills at once, as on Docker
        )

    def task_template(self, job: ContainerJob) -> TaskTemplate:
        """The service's task: its container, limits, GPUs, no restart, the network."""
        limits: dict[str, Any] = {}
        if not self.ignore_limits:
            limits = {"cpu_limit": job.cpu_limit * 10**6, "mem_limit": job.memory_limit * 2**20}
        if job.gpu_limit > 0:
            limits["generic_resources"] = {self.gpu_resource: job.gpu_limit}
        return TaskTemplate(
            container_spec=self.container_spec(job),
            resources=Resources(**limits),
            restart_policy=RestartPolicy(condition="none"),
            networks=[] if self.network_mode == "none" else [self.network_mode],
        )

    @engine_call
    def offered_gpus(self) -> int:
        """The most ``gpu_resource`` any one node of the swarm advertises."""
        counts = [0]
        for node in self.client.api.nodes():
            resources = (node.get("Description") or {}).get("Resources") or {}
            count = 0
            for resource in resources.get("GenericResources") or []:
                named, discrete = resource.get("NamedResourceSpec"), resource.get("DiscreteResourceSpec")
                if named and named.get("Kind") == self.gpu_resource:
                    count += 1
                elif discrete and discrete.get("Kind") == self.gpu_resource:
                    count += int(discrete.get("Value", 0))
            counts.append(count)
        return max(counts)

    @engine_call
    def submit(self, job: ContainerJob) -> None:
        if job.gpu_limit > 0 and self.offered_gpus() < job.gpu_limit:
            raise ComputeError(
                f"gpu_limit={job.gpu_limit} requested but no swarm node offers {job.gpu_limit} {self.gpu_resource}"
            )
        try:
            self.client.api.create_service(self.task_template(job), name=job.name, labels=self.labels_of(job))
        except APIError as error:
            raise ComputeError(f"Docker Swarm refused the service: {error.explanation}") from None

    # ----- observing ---------------------------------------------------------------------

    def _service_and_task(self, name: str) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
        """The service and its (first) task; ``None`` when there is no such service."""
        try:
            service = self.client.api.inspect_service(name)
        except NotFound:
            return None
        tasks = self.client.api.tasks(filters={"service": service["ID"]})
        return service, (tasks[0] if tasks else None)

    @engine_read
    def state(self, name: str) -> ContainerState | None:
        found = self._service_and_task(name)
        if found is None:
            return None
        service, task = found
        labels = service["Spec"].get("Labels") or {}
        if task is None:
            return ContainerState(JobStatus.NOT_STARTED, NO_TASK_MESSAGE, "", None, labels)
        status = task["Status"]
        return ContainerState(task_status(status["State"]), task_message(status), status.get("Timestamp", ""),
                              task_exit_code(status), labels)

    def _log_frames(self, name: str, **options: Any) -> list[bytes]:
        try:
            return list(self.client.api.service_logs(name, stdout=True, stderr=True, is_tty=False, **options))
        except NotFound:
            return []

    @engine_read
    def logs(self, name: str) -> str:
        """The service's log tail; empty once it is gone."""
        return b"".join(self._log_frames(name, tail=self.logs_tail)).decode("utf-8", errors="replace")

    def _running(self, name: str) -> bool:
        found = self._service_and_task(name)
        return found is not None and (found[1] is None or found[1]["Status"]["State"] not in TASK_ENDED)

    def _timed_lines(self, name: str, since: int) -> Iterator[tuple[int, str]]:
        """``(ns since the epoch, text)`` of the service's log lines from ``since`` on."""
        for frame in self._log_frames(name, timestamps=True, since=f"{since // 10**9}.{since % 10**9:09d}"):
            stamp, _, text = frame.decode("utf-8", errors="replace").partition(" ")
            yield log_time(stamp), text.removesuffix("\n")

    def follow_logs(self, name: str) -> Iterator[str]:
        """New log lines every ``POLL_SECONDS`` until the task ends (a swarm's ``follow`` never ends).

        Each poll asks again for the last ``LOG_OVERLAP_NS`` before the newest line yielded (a
        line's time is when the engine read it, so stdout's and stderr's can land out of order).
        """
        newest, seen = 0, set[tuple[int, str]]()
        while True:
            running = self._running(name)
            since = max(newest - LOG_OVERLAP_NS, 0)
            for moment, text in self._timed_lines(name, since):
                if moment < since or (moment, text) in seen:
                    continue
                seen.add((moment, text))
                newest = max(newest, moment)
                yield text
            seen = {line for line in seen if line[0] >= newest - LOG_OVERLAP_NS}
            if not running:
                return
            time.sleep(POLL_SECONDS)

    @engine_call
    def wait(self, name: str) -> int:
        while True:
            found = self._service_and_task(name)
            if found is None:
                raise ComputeError(f"Service {name} was removed before it finished")
            task = found[1]
            if task is not None and task["Status"]["State"] in TASK_ENDED:
                break
            time.sleep(POLL_SECONDS)
        status = task["Status"]
        code = task_exit_code(status)
        if status["State"] == "complete":
            return 0
        if code:
            return code
        raise ComputeError(f"Swarm task of {name} ended {status['State']}: {status.get('Err') or task_message(status)}")

    @engine_call
    def remove(self, name: str) -> None:
        """Remove the service; its node's agent then kills and removes the task's container."""
        try:
            self.client.api.remove_service(name)
        except NotFound:
            pass

    @engine_call
    def stop(self, name: str) -> None:
        """Kill the task's container, keeping the service (its task then reads failed, code
        137) when the container runs on the node the block talks to; a task on another node is
        stopped by removing its service (the engine API reaches no other node's containers)."""
        found = self._service_and_task(name)
        if found is None:
            return
        task = found[1]
        container_id = ((task or {}).get("Status", {}).get("ContainerStatus") or {}).get("ContainerID")
        if not (container_id and self.kill_container(container_id)):
            self.remove(name)

    @engine_call
    def ended_jobs(self) -> dict[str, Mapping[str, str]]:
        services = self.client.api.services(
            filters={"label": [FLOW_RUN_LABEL, JID_LABEL, f"{JOB_TYPE_LABEL}=plugin"]}
        )
        ended: set[str] = {
            task["ServiceID"] for task in self.client.api.tasks() if task["Status"]["State"] in TASK_ENDED
        }
        return {service["Spec"]["Name"]: service["Spec"]["Labels"] for service in services if service["ID"] in ended}
