"""The swarm compute block on a real single-node Docker Swarm (a dockerd of the tests' own):
plugin containers as services, one task each, never restarted."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from compute_jobs import make_key_dir, plugin_job
from conftest import SWARM_GPU
from prefect_pfcon.blocks.compute import ComputeError, ContainerJob, SwarmCompute
from prefect_pfcon.blocks.compute.limits import await_start, time_limit
from prefect_pfcon.blocks.compute.swarm import OOM_MESSAGE, task_message, task_status
from prefect_pfcon.deployments.registry import compute_from_settings
from prefect_pfcon.models import JobStatus
from prefect_pfcon.settings import PfconSettings
from private_dockerd import PrivateDockerd

TIMEOUT = 60


@pytest.fixture
def store(session_tmp: Path) -> Path:
    return make_key_dir(session_tmp / "swarm-store")


@pytest.fixture
def swarm(swarm_engine: PrivateDockerd) -> SwarmCompute:
    return SwarmCompute(docker_host=swarm_engine.host, job_labels={"org.test.suite": "prefect-pfcon"})


def container_job(key_dir: Path, script: str, **overrides) -> ContainerJob:
    return plugin_job(key_dir, script, "h6", **overrides)


def wait_for(swarm: SwarmCompute, name: str, status: JobStatus):
    """The job's state once it has ``status``."""
    deadline = time.monotonic() + TIMEOUT
    while (state := swarm.state(name)).status is not status:
        assert time.monotonic() < deadline, state
        time.sleep(0.1)
    return state


def task_container(swarm: SwarmCompute, name: str) -> dict:
    """The engine's inspection of the service's task container (one node: it is on this engine)."""
    (task,) = swarm.client.api.tasks(filters={"service": name})
    return swarm.client.api.inspect_container(task["Status"]["ContainerStatus"]["ContainerID"])


def test_plugin_runs_as_a_service_without_network(swarm: SwarmCompute, store: Path):
    job = container_job(store, 'echo start; cp /share/incoming/a.txt /share/outgoing/; echo "$GREETING"; '
                               'touch /share/incoming/x 2>/dev/null || echo read-only; '
                               "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; echo oops >&2; echo done")
    swarm.submit(job)
    spec = swarm.client.api.inspect_service(job.name)["Spec"]
    assert spec["Name"] == job.name
    template = spec["TaskTemplate"]
    assert template["RestartPolicy"]["Condition"] == "none"
    assert template["Resources"]["Limits"] == {"NanoCPUs": 500 * 10**6, "MemoryBytes": 200 * 2**20}
    assert "Networks" not in template and "EndpointSpec" not in spec  # no swarm network, no ports
    labels = {**job.labels, "org.test.suite": "prefect-pfcon"}
    assert spec["Labels"] == labels and template["ContainerSpec"]["Labels"] == labels
    assert [(m["Target"], m["Source"], m.get("ReadOnly", False)) for m in template["ContainerSpec"]["Mounts"]] == [
        ("/share/incoming", str(store / "incoming"), True), ("/share/outgoing", str(store / "outgoing"), False)]
    assert template["ContainerSpec"]["CapabilityDrop"] == ["ALL"]
    assert template["ContainerSpec"]["CapabilityAdd"] == ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"]
    lines = list(swarm.follow_logs(job.name))
    assert [line for line in lines if line != "oops"] == ["start", "hello=world", "read-only", "lo", "done"]
    assert "oops" in lines  # stderr too, ordered by when the engine read it (not always where it was written)
    assert swarm.wait(job.name) == 0
    state = swarm.state(job.name)
    assert (state.status, state.message, state.exit_code) == (JobStatus.FINISHED_SUCCESSFULLY, "finished", 0)
    assert state.labels == labels and state.timestamp.endswith("Z")
    assert swarm.logs(job.name) == "".join(f"{line}\n" for line in lines)
    assert (store / "outgoing" / "a.txt").read_text() == "input\n"
    container = task_container(swarm, job.name)
    # the node's default bridge, which this node's dockerd (--bridge none) lacks: no endpoint, only lo
    assert container["HostConfig"]["NetworkMode"] == "default"
    assert all(not net["EndpointID"] and not net["IPAddress"] for net in container["NetworkSettings"]["Networks"].values())
    assert container["Config"]["Labels"].items() >= labels.items()
    assert job.name in swarm.ended_jobs()
    swarm.remove(job.name)
    assert swarm.state(job.name) is None
    assert swarm.logs(job.name) == ""


def test_failing_and_oom_killed_plugins(swarm: SwarmCompute, store: Path):
    failing = container_job(store, "echo failing; exit 3")
    hog = container_job(store, "echo hog; x=a; while true; do x=$x$x; done", memory_limit=32)
    swarm.submit(failing)
    swarm.submit(hog)
    assert swarm.wait(failing.name) == 3
    state = swarm.state(failing.name)
    assert (state.status, state.message, state.exit_code) == (JobStatus.FINISHED_WITH_ERROR, "started", 3)
    assert swarm.logs(failing.name) == "failing\n"
    assert swarm.wait(hog.name) == 137  # the memory limit is a hard limit on swarm
    assert swarm.state(hog.name).status is JobStatus.FINISHED_WITH_ERROR
    assert swarm.client.api.inspect_service(hog.name)["Spec"]["TaskTemplate"]["Resources"]["Limits"][
        "MemoryBytes"] == 32 * 2**20
    for job in (failing, hog):
        swarm.remove(job.name)


def test_remove_kills_a_running_service(swarm: SwarmCompute, store: Path):
    job = container_job(store, "echo running; sleep 600")
    swarm.submit(job)
    state = wait_for(swarm, job.name, JobStatus.STARTED)
    assert (state.message, state.exit_code) == ("started", None)
    assert job.name not in swarm.ended_jobs()
    container_id = task_container(swarm, job.name)["Id"]
    swarm.remove(job.name)
    assert swarm.state(job.name) is None
    with pytest.raises(ComputeError, match="removed before it finished"):
        swarm.wait(job.name)
    deadline = time.monotonic() + TIMEOUT  # the node's agent kills and removes the container
    while any(c.id == container_id for c in swarm.client.containers.list(all=True, ignore_removed=True)):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    swarm.remove(job.name)  # absent: no error


def test_time_limit_stops_the_task_and_keeps_the_service(swarm_engine: PrivateDockerd, store: Path):
    swarm = SwarmCompute(docker_host=swarm_engine.host, max_job_seconds=2)
    job = container_job(store, "echo running; sleep 600")
    swarm.submit(job)
    started = await_start(swarm, job.name)
    assert started.status is JobStatus.STARTED
    with time_limit(swarm, job.name, started) as stopped:
        assert swarm.wait(job.name) == 137  # the task's container got SIGKILL
    assert stopped.is_set()
    state = swarm.state(job.name)  # the service stays, its task shut down
    assert (state.status, state.exit_code) == (JobStatus.FINISHED_WITH_ERROR, 137)
    assert swarm.logs(job.name) == "running\n"
    swarm.remove(job.name)


def test_gpu_jobs_wait_pending_for_the_swarms_one_gpu(swarm: SwarmCompute, store: Path):
    # the shell drops the variable (its name has a "-") from its children's env: read its own
    first = container_job(store, r"tr '\0' '\n' < /proc/1/environ | grep DOCKER_RESOURCE; while [ ! -e /share/outgoing/go-1 ]; do sleep 0.1; done",
                          gpu_limit=1)
    second = container_job(store, "echo second; while [ ! -e /share/outgoing/go-2 ]; do sleep 0.1; done",
                           gpu_limit=1)
    swarm.submit(first)
    wait_for(swarm, first.name, JobStatus.STARTED)
    swarm.submit(second)
    pending = swarm.state(second.name)  # the one GPU is taken: the scheduler keeps the task pending
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        pending = swarm.state(second.name)
        assert pending.status is JobStatus.NOT_STARTED, pending
        time.sleep(0.5)
    assert (pending.message, pending.exit_code) == ("pending task scheduling", None)
    (task,) = swarm.client.api.tasks(filters={"service": second.name})
    assert (task["Status"]["State"], task["Status"]["Err"]) == ("pending", "no suitable node (insufficient resources on 1 node)")
    (store / "outgoing" / "go-1").touch()
    assert swarm.wait(first.name) == 0
    assert swarm.logs(first.name) == f"DOCKER_RESOURCE_NVIDIA-GPU={SWARM_GPU}\n"
    running = wait_for(swarm, second.name, JobStatus.STARTED)
    assert running.timestamp > pending.timestamp
    (store / "outgoing" / "go-2").touch()
    assert swarm.wait(second.name) == 0
    done = swarm.state(second.name)
    assert (done.status, done.message) == (JobStatus.FINISHED_SUCCESSFULLY, "finished")
    assert done.timestamp > running.timestamp
    reservations = swarm.client.api.inspect_service(second.name)["Spec"]["TaskTemplate"]["Resources"]["Reservations"]
    assert reservations == {"GenericResources": [{"DiscreteResourceSpec": {"Kind": "NVIDIA-GPU", "Value": 1}}]}
    for job in (first, second):
        swarm.remove(job.name)
    with pytest.raises(ComputeError, match="no swarm node offers 2 NVIDIA-GPU"):
        swarm.submit(container_job(store, "true", gpu_limit=2))


def test_user_shm_and_ignored_limits(swarm_engine: PrivateDockerd, store: Path):
    swarm = SwarmCompute(docker_host=swarm_engine.host, container_user="1001:1002", shm_size=64, ignore_limits=True)
    job = container_job(store, "id; df -m /dev/shm | tail -n 1 | tr -s ' ' | cut -d' ' -f2")
    swarm.submit(job)
    assert swarm.wait(job.name) == 0
    assert swarm.logs(job.name) == "uid=1001 gid=1002 groups=1002\n64\n"  # pfcon's user uid:gid
    assert "Resources" not in swarm.client.api.inspect_service(job.name)["Spec"]["TaskTemplate"]  # no limits
    swarm.remove(job.name)
    with pytest.raises(ComputeError, match="Docker Swarm refused the service"):
        swarm.submit(container_job(store, "true", name="not/a/name"))


def test_task_states_in_pfcons_terms():
    """Pure mapping of spec 9.2 (the states above are the real ones a single node reaches)."""
    waiting = ["new", "allocated", "pending", "assigned", "accepted", "preparing", "ready", "starting"]
    assert {task_status(state) for state in waiting} == {JobStatus.NOT_STARTED}
    assert task_status("running") is JobStatus.STARTED
    assert task_status("complete") is JobStatus.FINISHED_SUCCESSFULLY
    assert task_status("failed") is task_status("shutdown") is JobStatus.FINISHED_WITH_ERROR
    assert {task_status(state) for state in ("rejected", "remove", "orphaned")} == {JobStatus.UNDEFINED}
    oom = {"State": "shutdown", "Message": "shutdown", "ContainerStatus": {"ExitCode": 137}}
    assert task_message(oom) == OOM_MESSAGE
    assert task_message({**oom, "State": "failed"}) == "shutdown"


def test_settings_make_a_swarm_block(monkeypatch, session_tmp: Path):
    for name, value in {"CONTAINER_ENV": "swarm", "PFCON_NETWORK_MODE": "plugins-net", "JOB_LABELS": "a=b",
                        "PFCON_SWARM_GPU_RESOURCE": "gpu"}.items():
        monkeypatch.setenv(name, value)
    block = compute_from_settings(PfconSettings(_env_file=None))
    assert isinstance(block, SwarmCompute)
    assert (block.network_mode, block.gpu_resource, block.job_labels) == ("plugins-net", "gpu", {"a": "b"})
    assert block.server_info() == {"container_env": "swarm", "compute_volume_type": "host"}
    job = container_job(session_tmp, "true")
    assert block.task_template(job)["Networks"] == [{"Target": "plugins-net"}]
