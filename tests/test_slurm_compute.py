"""The Slurm compute block on the real single-node Slurm: plugin containers as Slurm jobs."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from prefect_pfcon.blocks.compute import ComputeError, ContainerJob, SlurmCompute
from prefect_pfcon.blocks.compute.base import ForeignContainer
from prefect_pfcon.names import FLOW_RUN_LABEL, JID_LABEL, TASK_RUN_LABEL
from prefect_pfcon.blocks.compute.slurm import (
    SlurmJob, describe, exit_code, job_status, parse_exit_file, slurm_time_limit,
)
from prefect_pfcon.models import JobStatus
from test_hardening import CONFINED_SCRIPT

BUSYBOX = "local/busybox:test"
REPO = Path(__file__).resolve().parents[1]
SLURM_LIB = f"export PFCON_REPO={REPO}; source {REPO}/scripts/lib/slurm.sh"


def slurm_up() -> bool:
    return subprocess.run(["sinfo", "--noheader"], capture_output=True).returncode == 0


@pytest.fixture(scope="session", autouse=True)
def slurm_cluster() -> Iterator[None]:
    """The real single-node Slurm: started with scripts/lib/slurm.sh unless it already runs
    (scripts/test.sh starts it), and then stopped again at the end of the session."""
    started = False
    if not slurm_up():
        env = {key: value for key, value in os.environ.items() if not key.startswith("SLURM_")}
        subprocess.run(["bash", "-c", f"{SLURM_LIB}; start_slurm"], check=True, env=env, timeout=600)
        started = True
    assert slurm_up()
    yield
    if started:
        subprocess.run(["bash", "-c", f"{SLURM_LIB}; SLURM_STARTED_HERE=1; stop_slurm"], check=False, timeout=120)


@pytest.fixture
def mounts(session_tmp: Path) -> tuple[Path, Path]:
    base = session_tmp / f"slurm-{uuid.uuid4().hex[:6]}"
    (base / "in").mkdir(parents=True)
    (base / "out").mkdir()
    (base / "in" / "a.txt").write_text("input\n")
    return base / "in", base / "out"


@pytest.fixture
def slurm(session_tmp: Path) -> SlurmCompute:
    return SlurmCompute(work_dir=str(session_tmp / "slurm-work"), job_labels={"org.test.suite": "prefect-pfcon"})


def container_job(mounts, script: str, memory_limit: int = 200) -> ContainerJob:
    name = f"slurm-{uuid.uuid4().hex[:8]}"
    return ContainerJob(
        name=name, image=BUSYBOX, command=["sh", "-c", script], env=["GREETING=hello world"],
        cpu_limit=1000, memory_limit=memory_limit, gpu_limit=0, number_of_workers=1,
        incoming=mounts[0], outgoing=mounts[1], labels={JID_LABEL: name, FLOW_RUN_LABEL: f"run-{name}", TASK_RUN_LABEL: f"task-{name}"},
    )


def containers_named(prefix: str) -> list[str]:
    names = subprocess.run(["docker", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True,
                           check=True).stdout.split()
    return [name for name in names if name.startswith(prefix)]


def containers_left(prefix: str, timeout: float = 20) -> list[str]:
    """``containers_named(prefix)`` once they are gone, or when ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while containers_named(prefix) and time.monotonic() < deadline:
        time.sleep(0.2)
    return containers_named(prefix)


def sacct(name: str) -> list[str]:
    return subprocess.run(["sacct", "--noheader", "--parsable2", "--allocations", f"--name={name}",
                           "--format=JobName,State,ReqMem,AllocCPUS"], capture_output=True, text=True,
                          check=True).stdout.split()


def test_plugin_runs_as_a_slurm_job(slurm: SlurmCompute, mounts):
    job = container_job(mounts, 'echo start; cp /share/incoming/a.txt /share/outgoing/; echo "$GREETING"; '
                                'touch /share/incoming/x 2>/dev/null || echo read-only; echo done')
    slurm.submit(job)
    state = slurm.state(job.name)
    assert state.status in (JobStatus.NOT_STARTED, JobStatus.STARTED)
    assert state.labels == {"org.test.suite": "prefect-pfcon", JID_LABEL: job.name, FLOW_RUN_LABEL: f"run-{job.name}",
                            TASK_RUN_LABEL: f"task-{job.name}"}
    assert state.task_run_id == f"task-{job.name}"
    assert list(slurm.follow_logs(job.name)) == ["start", "***", "read-only", "done"]  # env values masked
    assert slurm.wait(job.name) == 0
    state = slurm.state(job.name)
    assert (state.status, state.exit_code) == (JobStatus.FINISHED_SUCCESSFULLY, 0)
    assert state.message.endswith("COMPLETED") and state.timestamp.endswith("Z")
    assert (mounts[1] / "a.txt").read_text() == "input\n"
    assert slurm.logs(job.name) == "start\n***\nread-only\ndone\n"
    assert not slurm._path(job.name, ".env").exists()  # deleted once the container was created
    deadline = time.monotonic() + 10  # sacct rows arrive about a second after the job ends
    while not sacct(job.name) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert sacct(job.name) == [f"{job.name}|COMPLETED|200M|1"]
    assert containers_named(job.name) == []  # the runtime removed its container


def test_env_values_are_masked_in_the_output_file_also_in_long_lines(slurm: SlurmCompute, mounts):
    job = container_job(mounts, "head -c 1000 /dev/zero | tr '\\0' x; printf %s \"$GREETING\"; "
                                "head -c 100000 /dev/zero | tr '\\0' y; echo; echo \"end $GREETING\"")
    slurm.submit(job)
    lines = list(slurm.follow_logs(job.name))
    assert slurm.wait(job.name) == 0
    assert len(lines) == 3 and max(map(len, lines)) == 65536  # the long line in pieces
    assert "".join(lines[:2]) == "x" * 1000 + "***" + "y" * 100000 and lines[2] == "end ***"
    assert "hello world" not in slurm._path(job.name, ".log").read_text()


def test_failing_plugin_reports_its_exit_code(slurm: SlurmCompute, mounts):
    job = container_job(mounts, "echo failing >&2; exit 3")
    slurm.submit(job)
    assert slurm.wait(job.name) == 3
    state = slurm.state(job.name)
    assert state.status is JobStatus.FINISHED_WITH_ERROR
    assert state.message.endswith("FAILED (exit code 3)")
    assert slurm.logs(job.name) == "failing\n"


def test_memory_hog_is_killed_by_its_limit(slurm: SlurmCompute, mounts):
    job = container_job(mounts, "echo hog; x=a; while true; do x=$x$x; done", memory_limit=32)
    slurm.submit(job)
    assert slurm.wait(job.name) == 137
    state = slurm.state(job.name)
    assert (state.status, state.exit_code) == (JobStatus.FINISHED_WITH_ERROR, 137)
    assert state.message.startswith("Out of memory (limit 32 MiB): Slurm job ")
    assert state.message.endswith("FAILED (exit code 137)")
    assert containers_named(job.name) == []


def test_max_job_seconds_is_the_jobs_time_limit(session_tmp: Path, mounts):
    slurm = SlurmCompute(work_dir=str(session_tmp / "slurm-work"), time_limit="90", max_job_seconds=30)
    job = container_job(mounts, "echo sleeping; sleep 600")
    assert "--time=0:01:00" in slurm.sbatch_command(job)  # Slurm counts whole minutes; it wins over time_limit
    slurm.submit(job)
    with pytest.raises(ComputeError, match="TIMEOUT: it hit its time limit of 00:01:00"):
        slurm.wait(job.name)
    state = slurm.state(job.name)
    assert state.status is JobStatus.FINISHED_WITH_ERROR
    assert state.message.endswith("TIMEOUT: it hit its time limit of 00:01:00")
    assert containers_left(job.name) == []  # the trap stopped the container


def test_pending_jobs_say_why_and_whether_they_wait_their_turn(session_tmp: Path, mounts):
    slurm = SlurmCompute(work_dir=str(session_tmp / "slurm-work"))
    node_cpus = int(subprocess.run(["sinfo", "--noheader", "--format=%c"], capture_output=True, text=True,
                                   check=True).stdout.split()[0])
    hog = dataclasses.replace(container_job(mounts, "sleep 600"), cpu_limit=node_cpus * 1000)  # the whole node
    waiting, held = container_job(mounts, "echo waited"), container_job(mounts, "echo held")
    held_slurm = SlurmCompute(work_dir=str(session_tmp / "slurm-work"), sbatch_options=["--hold"])
    try:
        slurm.submit(hog)
        wait_until_started(slurm, hog.name)
        slurm.submit(waiting)
        held_slurm.submit(held)
        deadline = time.monotonic() + 30  # the scheduler gives a reason on its next pass
        while "(Resources)" not in slurm.state(waiting.name).message and time.monotonic() < deadline:
            time.sleep(0.5)
        in_queue, on_hold = slurm.state(waiting.name), slurm.state(held.name)
        assert (in_queue.status, in_queue.queued) == (JobStatus.NOT_STARTED, True)
        assert in_queue.message.endswith("PENDING (Resources)")
        assert (on_hold.status, on_hold.queued) == (JobStatus.NOT_STARTED, False)  # cannot start by itself
        assert on_hold.message.endswith("PENDING (JobHeldUser)")
    finally:
        for job in (hog, waiting, held):
            slurm.remove(job.name)


def wait_until_started(slurm: SlurmCompute, name: str) -> None:
    deadline = time.monotonic() + 60
    while slurm.state(name).status is not JobStatus.STARTED:
        assert time.monotonic() < deadline
        time.sleep(0.3)


def test_remove_cancels_the_job_and_stops_its_container(slurm: SlurmCompute, mounts):
    job = container_job(mounts, "echo running; sleep 600")
    slurm.submit(job)
    deadline = time.monotonic() + 30
    while not containers_named(job.name) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert containers_named(job.name) == [f"{job.name}-slurm-{slurm._record(job.name)['job_id']}"]
    slurm.remove(job.name)
    assert slurm.state(job.name) is None
    assert containers_left(job.name) == []
    slurm.remove(job.name)  # absent: no error


def test_a_new_block_instance_finds_the_job_again(slurm: SlurmCompute, session_tmp: Path, mounts):
    job = container_job(mounts, "echo once")
    slurm.submit(job)
    restarted = SlurmCompute(work_dir=str(session_tmp / "slurm-work"))
    assert restarted.wait(job.name) == 0
    assert restarted.state(job.name).labels[JID_LABEL] == job.name
    assert restarted.logs(job.name) == "once\n"


def test_sbatch_gets_the_site_options_and_gpus(session_tmp: Path, mounts):
    slurm = SlurmCompute(work_dir=str(session_tmp / "slurm-work"), partition="debug", account="root",
                         time_limit="10", sbatch_options=["--nice=0"])
    job = container_job(mounts, "true")
    command = slurm.sbatch_command(ContainerJob(**{**job.__dict__, "gpu_limit": 1, "cpu_limit": 1500}))
    assert command[-6:-1] == ["--gres=gpu:1", "--partition=debug", "--account=root", "--time=10", "--nice=0"]
    assert "--cpus-per-task=2" in command and "--mem=200M" in command


def test_job_cancelled_outside_pfcon_is_a_readable_error(slurm: SlurmCompute, mounts):
    job = container_job(mounts, "echo running; sleep 600")
    slurm.submit(job)
    deadline = time.monotonic() + 30
    while slurm.state(job.name).status is not JobStatus.STARTED:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    subprocess.run(["scancel", slurm._record(job.name)["job_id"]], check=True)  # an operator's scancel
    with pytest.raises(ComputeError, match=r"CANCELLED"):
        slurm.wait(job.name)
    assert slurm.state(job.name).status is JobStatus.FINISHED_WITH_ERROR
    assert containers_left(job.name) == []


def test_slurm_states_map_to_pfcon_statuses():
    assert job_status("PENDING") is job_status("CONFIGURING") is JobStatus.NOT_STARTED  # nodes still booting
    assert job_status("RUNNING") is job_status("COMPLETING") is JobStatus.STARTED
    assert job_status("COMPLETED") is JobStatus.FINISHED_SUCCESSFULLY
    for state in ("FAILED", "OUT_OF_MEMORY", "TIMEOUT", "CANCELLED", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL",
                  "DEADLINE"):
        assert job_status(state) is JobStatus.FINISHED_WITH_ERROR
    assert job_status("") is JobStatus.UNDEFINED
    assert (exit_code("3:0"), exit_code("0:9"), exit_code("")) == (3, 137, None)
    assert (parse_exit_file("137 true\n"), parse_exit_file("0 false"), parse_exit_file("")) == (
        (137, True), (0, False), None)
    assert describe("7", SlurmJob("TIMEOUT", None, "", "", "00:01:00")) == (
        "Slurm job 7 TIMEOUT: it hit its time limit of 00:01:00")
    assert describe("7", SlurmJob("PENDING", None, "", "", "", reason="JobHeldUser")) == "Slurm job 7 PENDING (JobHeldUser)"
    assert (slurm_time_limit(1), slurm_time_limit(60), slurm_time_limit(61), slurm_time_limit(7200)) == (
        "0:01:00", "0:01:00", "0:02:00", "2:00:00")
    assert describe("7", SlurmJob("FAILED", 3, "", "", "")) == "Slurm job 7 FAILED (exit code 3)"
    assert describe("7", SlurmJob("CANCELLED", None, "", "", "")) == "Slurm job 7 CANCELLED"


def test_batch_script_runs_the_container_isolated(session_tmp: Path, mounts):
    slurm = SlurmCompute(work_dir=str(session_tmp / "slurm-work"), container_user="1000:100", shm_size=64)
    script = slurm.batch_script(container_job(mounts, "echo 'quoted; $HOME'"))
    for part in ("--network none", f"{mounts[0]}:/share/incoming:ro", f"{mounts[1]}:/share/outgoing:rw",
                 "--memory 200m", "--memory-swap 200m", "--user 1000", "--group-add 100", "--shm-size 64m",
                 f"--env-file {session_tmp}/slurm-work/", "trap ", "exit 143' TERM INT", 'exit "$code"'):
        assert part in script
    assert "hello world" not in script  # env values only in the env file
    assert "'echo '\"'\"'quoted; $HOME'\"'\"''" in script  # the plugin's command is not expanded by the script
    unlimited = SlurmCompute(work_dir=str(session_tmp / "slurm-work"), ignore_limits=True)
    job = container_job(mounts, "true")
    assert "--memory" not in unlimited.batch_script(job)
    assert not any(part.startswith(("--mem=", "--cpus-per-task")) for part in unlimited.sbatch_command(job))


def test_the_image_is_never_an_option_and_plugins_are_confined(slurm: SlurmCompute, mounts):
    """``--`` ends the runtime's options: an image that looks like one is refused by the
    runtime (the API never lets one through); the plugin keeps few capabilities and a pids limit."""
    command = slurm.run_command(container_job(mounts, "true"))
    assert command[command.index("--") + 1:] == [BUSYBOX, "sh", "-c", "true"]
    for option in (["--security-opt", "no-new-privileges"], ["--cap-drop", "ALL"], ["--pids-limit", "1024"]):
        assert any(command[i:i + 2] == option for i in range(len(command)))
    hostile = ContainerJob(**{**container_job(mounts, "true").__dict__, "image": "--privileged"})
    slurm.submit(hostile)
    assert slurm.wait(hostile.name) != 0  # docker create refuses it (exit code 1; docker run's is 125)
    assert "invalid reference format" in slurm.logs(hostile.name)
    confined = SlurmCompute(work_dir=slurm.work_dir, pids_limit=20)
    job = container_job(mounts, CONFINED_SCRIPT)
    confined.submit(job)
    assert confined.wait(job.name) == 0
    lines = confined.logs(job.name).splitlines()
    assert lines[0] == "mknod-refused" and lines[-1] == "done", lines
    assert 1 < int(lines[1].removeprefix("processes=")) <= 20  # 201 without the limit


def test_a_slurm_job_record_not_ours_is_left_alone(slurm: SlurmCompute, mounts):
    job = container_job(mounts, "echo running; sleep 600")
    slurm.submit(job)
    record = slurm._record(job.name)
    try:
        foreign = {**record, "labels": {}}  # a record of the jid's name without our labels
        slurm._path(job.name, ".json").write_text(json.dumps(foreign))
        with pytest.raises(ForeignContainer, match=f"A container named {job.name} exists and was not created"):
            slurm.own_state(job.name, job.name)
        assert slurm.remove_own(job.name, job.name) is False
        assert slurm.state(job.name).status in (JobStatus.NOT_STARTED, JobStatus.STARTED)  # not cancelled
    finally:
        slurm._path(job.name, ".json").write_text(json.dumps(record))
    assert slurm.remove_own(job.name, job.name) is True
    assert slurm.state(job.name) is None
    assert containers_left(job.name) == []
