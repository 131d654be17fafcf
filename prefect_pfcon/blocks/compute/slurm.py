"""SLURM compute: each plugin container runs inside a Slurm batch job named after the jid.

Only Slurm's command-line tools are used (``sbatch``, ``squeue``, ``sacct``, ``scontrol``,
``scancel``). Each job leaves its files in ``work_dir``: the generated batch script, its
output (the plugin's logs), the container's exit code and whether the runtime killed it for
its memory limit (written by the script: ``sacct`` of Slurm 22.05 misreports codes over 128,
such as 137 for an out-of-memory kill) and a small JSON record (Slurm job id, labels, memory
limit) through which a restarted runner finds the job again.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import subprocess
import time
from collections import deque
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import ClassVar, NamedTuple

from pydantic import Field

from prefect_pfcon.blocks.compute.base import (
    PLUGIN_CAPABILITIES,
    ZERO_TIME,
    ComputeBlock,
    ComputeError,
    ComputeProbe,
    ComputeUnavailable,
    ContainerJob,
    ContainerState,
    ContainerUser,
    SlurmPartition,
)
from prefect_pfcon.blocks.compute.lines import MAX_LINE_BYTES, split_lines
from prefect_pfcon.job_secrets import MASK, MASKED_MIN_CHARS
from prefect_pfcon.models import JobStatus, PluginJob
from prefect_pfcon.lib.command import INCOMING, OUTGOING

WAITING_STATES = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESV_DEL_HOLD"}
ACTIVE_STATES = {"RUNNING", "COMPLETING", "SUSPENDED", "STAGE_OUT", "SIGNALING", "RESIZING", "STOPPED"}
QUEUE_REASONS = frozenset({"None", "Priority", "Resources"})
"""Pending reasons of a job that waits its turn (any other means it cannot start as it is)."""
POLL_SECONDS = 0.5
CONTAINER_VAR = "$CONTAINER"  # the script names the container after the jid and the Slurm job id
READ_BYTES = 1024 * 1024
# Copies stdin to stdout with every value in `masked` replaced by MASK, with bash builtins only
# (no value on a command line); lines over MAX_LINE_BYTES go in pieces of that size, so memory
# stays bounded, and a value is masked where it lies within one piece.
MASK_FUNCTION = f"""mask() {{
  local piece status size value
  if [ "${{#masked[@]}}" -eq 0 ]; then cat; return; fi
  while true; do
    IFS= read -r -n {MAX_LINE_BYTES} piece; status=$?
    [ "$status" -ne 0 ] && [ -z "$piece" ] && return 0
    size=${{#piece}}
    for value in "${{masked[@]}}"; do piece=${{piece//"$value"/{MASK}}}; done
    if [ "$status" -eq 0 ] && [ "$size" -lt {MAX_LINE_BYTES} ]; then printf '%s\\n' "$piece"
    else printf '%s' "$piece"; fi
    [ "$status" -ne 0 ] && return 0
  done
}}
"""


class SlurmJob(NamedTuple):
    """What Slurm reports of a job: state, exit code (``rc`` or 128 + signal), times; and
    whether the container runtime killed the plugin for its memory limit."""

    state: str
    exit_code: int | None
    start: str
    end: str
    time_limit: str
    oom_killed: bool = False
    reason: str = ""


def job_status(state: str) -> JobStatus:
    """pfcon's status of a Slurm job state."""
    if state in WAITING_STATES:
        return JobStatus.NOT_STARTED
    if state in ACTIVE_STATES:
        return JobStatus.STARTED
    if state == "COMPLETED":
        return JobStatus.FINISHED_SUCCESSFULLY
    return JobStatus.FINISHED_WITH_ERROR if state else JobStatus.UNDEFINED


def parse_exit_file(text: str) -> tuple[int, bool] | None:
    """The script's ``<exit code> <OOMKilled>`` line, or ``None`` if unreadable."""
    code, _, oom = text.strip().partition(" ")
    return (int(code), oom == "true") if code.lstrip("-").isdigit() else None


def exit_code(text: str) -> int | None:
    """Slurm's ``rc:signal`` as one code (a signal ``n`` gives ``128 + n``)."""
    code, _, signal = text.partition(":")
    if not code.isdigit():
        return None
    return 128 + int(signal) if signal.isdigit() and int(signal) else int(code)


def slurm_time_limit(seconds: int) -> str:
    """``sbatch --time`` of ``seconds`` (Slurm counts whole minutes: rounded up)."""
    minutes = math.ceil(seconds / 60)
    return f"{minutes // 60}:{minutes % 60:02d}:00"


def rfc3339(slurm_time: str) -> str | None:
    """A Slurm local time (``2026-11-22T18:04:51``) in UTC RFC 3339, or ``None`` if unset."""
    try:
        return datetime.fromisoformat(slurm_time).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return None


def describe(job_id: str, job: SlurmJob, memory_limit: int | None = None) -> str:
    """The status ``message``: the Slurm job and why it ended, when it did not succeed."""
    text = f"Slurm job {job_id} {job.state}"
    if job.state == "PENDING" and job.reason:
        return f"{text} ({job.reason})"
    if job.oom_killed:
        limit = f" (limit {memory_limit} MiB)" if memory_limit else ""
        return f"Out of memory{limit}: {text} (exit code {job.exit_code})"
    if job.state == "TIMEOUT":
        return f"{text}: it hit its time limit of {job.time_limit}"
    if job.state in ("FAILED", "OUT_OF_MEMORY") and job.exit_code is not None:
        return f"{text} (exit code {job.exit_code})"
    return text


class SlurmCompute(ComputeBlock):
    """Run plugin containers as Slurm batch jobs (``CONTAINER_ENV=slurm``).

    The batch script runs the image with the node's container runtime (docker or podman),
    ``/share/incoming`` read-only and ``/share/outgoing`` bound, networking off and the
    memory limit enforced by the runtime; cancelling the Slurm job stops the container.
    """

    _block_type_name = "pfcon slurm compute"
    _block_type_slug = "pfcon-slurm-compute"
    _description = "Runs ChRIS plugin containers as Slurm batch jobs, through Slurm's CLI."

    container_env: ClassVar[str] = "slurm"
    compute_volume_type: ClassVar[str] = "host"
    enforces_time_limit: ClassVar[bool] = True

    work_dir: str = Field(
        "/var/tmp/prefect-pfcon/slurm",
        description="Where batch scripts, job outputs and job records are kept; must be "
        "shared with the compute nodes on a multi-node cluster.",
    )
    runtime: str = Field("docker", description="Container runtime on the nodes: docker or podman.")
    runtime_options: list[str] = Field(
        default_factory=list,
        description="Extra `run` options for the runtime (e.g. podman's --runtime runc).",
    )
    network_mode: str = Field("none", description="Network of plugin containers (none by default).")
    partition: str | None = Field(None, description="sbatch --partition.")
    account: str | None = Field(None, description="sbatch --account.")
    time_limit: str | None = Field(
        None, description="sbatch --time, in Slurm's format (e.g. 60 or 1:00:00); max_job_seconds, when set, wins."
    )
    sbatch_options: list[str] = Field(default_factory=list, description="Extra sbatch options.")

    def probe(self, timeout: float) -> ComputeProbe:
        """Slurm's version and its partitions with their idle nodes (``sinfo``)."""
        version = _sinfo(["--version"], timeout).split()[-1]  # "slurm 23.11.4", "slurm-wlm 22.05.8"
        lines = _sinfo(["--noheader", "--format=%R|%a|%F"], timeout).splitlines()
        return ComputeProbe(version=version, partitions=[sinfo_partition(line) for line in lines if line])

    # ----- files of a job ----------------------------------------------------------------

    def _path(self, name: str, suffix: str) -> Path:
        return Path(self.work_dir) / f"{name}{suffix}"

    def _record(self, name: str) -> dict | None:
        try:
            return json.loads(self._path(name, ".json").read_text())
        except FileNotFoundError:
            return None

    # ----- submitting --------------------------------------------------------------------

    def run_command(self, job: ContainerJob) -> list[str]:
        """The runtime's ``create`` command for the plugin (the name is set by the script; the
        env comes from the job's env file); the image and its command come after ``--``, so
        neither can be taken for an option."""
        command = [self.runtime, "create", "--name", CONTAINER_VAR, "--network", self.network_mode]
        command += ["--security-opt", "no-new-privileges", "--cap-drop", "ALL"]
        for capability in PLUGIN_CAPABILITIES:
            command += ["--cap-add", capability]
        if self.pids_limit:
            command += ["--pids-limit", str(self.pids_limit)]
        command += ["-v", f"{job.incoming}:{INCOMING}:ro", "-v", f"{job.outgoing}:{OUTGOING}:rw"]
        if not self.ignore_limits:
            memory = f"{job.memory_limit}m"
            command += ["--memory", memory, "--memory-swap", memory, "--cpus", str(job.cpu_limit / 1000)]
        if job.gpu_limit > 0:
            command += ["--gpus", str(job.gpu_limit)]
        if self.shm_size:
            command += ["--shm-size", f"{self.shm_size}m"]
        user = ContainerUser.parse(self.container_user)
        if user and user.uid:
            command += ["--user", user.uid]
        if user and user.gid:
            command += ["--group-add", user.gid]
        for key, value in {**self.job_labels, **job.labels}.items():
            command += ["--label", f"{key}={value}"]
        command += ["--env-file", str(self._path(job.name, ".env"))]
        return [*command, *self.runtime_options, "--", job.image, *job.command]

    def batch_script(self, job: ContainerJob) -> str:
        """The batch script: create the container from the env file, delete the file, run the
        container with its output masked, record its exit code and whether it ran out of
        memory, remove it; stop it if the Slurm job is cancelled or times out."""
        create = " ".join(f'"{part}"' if part == CONTAINER_VAR else shlex.quote(part) for part in self.run_command(job))
        runtime = shlex.quote(self.runtime)
        return (
            "#!/bin/bash\n"
            f"# prefect-pfcon plugin job {job.name}\n"
            "LC_ALL=C\n"
            f'CONTAINER={shlex.quote(job.name)}-slurm-"$SLURM_JOB_ID"\n'
            f"ENV_FILE={shlex.quote(str(self._path(job.name, '.env')))}\n"
            f"trap 'rm -f \"$ENV_FILE\"; {runtime} rm -f \"$CONTAINER\" >/dev/null 2>&1; exit 143' TERM INT\n"
            f"{MASK_FUNCTION}"
            'mapfile -t entries < "$ENV_FILE"\n'
            "masked=()\n"
            f"for i in {' '.join(map(str, _longest_values_first(job.env)))}; do\n"
            '  value=${entries[i]#*=}\n'
            f'  [ "${{#value}}" -ge {MASKED_MIN_CHARS} ] && masked+=("$value")\n'
            "done\n"
            f"{create} >/dev/null\n"
            "code=$?\n"
            'rm -f "$ENV_FILE"\n'
            'if [ "$code" -eq 0 ]; then\n'
            "  set -o pipefail\n"
            f'  {{ {runtime} start -a "$CONTAINER" 2>&1 | mask; }} &\n'
            "  wait $!\n"
            "  code=$?\n"
            "fi\n"
            f"oom=$({runtime} inspect --format '{{{{.State.OOMKilled}}}}' \"$CONTAINER\" 2>/dev/null)\n"
            f'{runtime} rm -f "$CONTAINER" >/dev/null 2>&1\n'
            f'echo "$code ${{oom:-false}}" > {shlex.quote(str(self._path(job.name, ".exit")))}\n'
            'exit "$code"\n'
        )

    def sbatch_command(self, job: ContainerJob) -> list[str]:
        """``sbatch`` with the job's resources and the block's site options."""
        command = [
            "sbatch", "--parsable", "--export=NONE", f"--job-name={job.name}",
            f"--output={self._path(job.name, '.log')}", f"--chdir={self.work_dir}",
        ]
        if not self.ignore_limits:
            command += [f"--cpus-per-task={max(1, math.ceil(job.cpu_limit / 1000))}", f"--mem={job.memory_limit}M"]
        if job.gpu_limit > 0:
            command.append(f"--gres=gpu:{job.gpu_limit}")
        time_limit = slurm_time_limit(self.max_job_seconds) if self.max_job_seconds else self.time_limit
        for option, value in (("--partition", self.partition), ("--account", self.account), ("--time", time_limit)):
            if value:
                command.append(f"{option}={value}")
        return [*command, *self.sbatch_options, str(self._path(job.name, ".sbatch"))]

    def plugin_post_error(self, job: PluginJob) -> str | None:
        """Env values must fit on one line of the env file."""
        broken = [entry.partition("=")[0] for entry in job.env if "\n" in entry or "\r" in entry]
        if broken:
            return f"env: values must not contain line breaks with Slurm compute ({', '.join(broken)})"
        return super().plugin_post_error(job)

    def submit(self, job: ContainerJob) -> None:
        work_dir = Path(self.work_dir)
        work_dir.mkdir(parents=True, exist_ok=True)
        work_dir.chmod(0o700)
        for stale in (".log", ".exit", ".env"):
            self._path(job.name, stale).unlink(missing_ok=True)
        self._write_env_file(job)
        script = self._path(job.name, ".sbatch")
        script.write_text(self.batch_script(job))
        result = subprocess.run(self.sbatch_command(job), capture_output=True, text=True, check=False)
        if result.returncode != 0:
            self._path(job.name, ".env").unlink(missing_ok=True)
            raise ComputeError(f"sbatch refused the job: {result.stderr.strip()}")
        record = {"job_id": result.stdout.strip().split(";")[0], "labels": {**self.job_labels, **job.labels},
                  "memory_limit": None if self.ignore_limits else job.memory_limit}
        self._path(job.name, ".json").write_text(json.dumps(record))

    def _write_env_file(self, job: ContainerJob) -> None:
        """The container's env, one entry a line, readable by this user only; the job's own
        entries come first (the script masks their values)."""
        entries = self.plugin_env(job.env)
        if any("\n" in entry or "\r" in entry for entry in entries):
            raise ComputeError("Env values with line breaks cannot be passed to a Slurm job")
        fd = os.open(self._path(job.name, ".env"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as env_file:
            env_file.write("".join(f"{entry}\n" for entry in entries))

    # ----- observing ---------------------------------------------------------------------

    def slurm_job(self, job_id: str) -> SlurmJob | None:
        """The job as ``squeue`` shows it, else ``sacct``, else ``scontrol show job``."""
        queued = _run(["squeue", "--noheader", f"--jobs={job_id}", "--format=%T|%S|%l|%r"])
        if queued:
            state, start, limit, reason = queued.split("|", 3)
            return SlurmJob(state, None, start, "", limit, reason=reason)
        accounted = _run(["sacct", "--noheader", "--parsable2", "--allocations", f"--jobs={job_id}",
                          "--format=State,ExitCode,Start,End,Timelimit"])
        if accounted:
            state, code, start, end, limit = accounted.splitlines()[0].split("|")
            return SlurmJob(state.split(" ")[0], exit_code(code), start, end, limit)
        shown = _run(["scontrol", "show", "job", job_id, "--oneliner"])
        if shown:
            fields = dict(token.split("=", 1) for token in shown.split() if "=" in token)
            return SlurmJob(fields.get("JobState", ""), exit_code(fields.get("ExitCode", "")),
                            fields.get("StartTime", ""), fields.get("EndTime", ""), fields.get("TimeLimit", ""))
        return None

    def _job(self, name: str) -> tuple[dict, SlurmJob | None] | None:
        """The job's record and Slurm's view of it, with the container's own exit code."""
        record = self._record(name)
        if record is None:
            return None
        job = self.slurm_job(record["job_id"])
        try:
            written = parse_exit_file(self._path(name, ".exit").read_text())
        except FileNotFoundError:
            written = None
        if job is None or written is None:
            return record, job
        return record, job._replace(exit_code=written[0], oom_killed=written[1])

    def state(self, name: str) -> ContainerState | None:
        found = self._job(name)
        if found is None:
            return None
        record, job = found
        if job is None:
            return ContainerState(JobStatus.UNDEFINED, f"Slurm job {record['job_id']} is unknown to Slurm",
                                  ZERO_TIME, None, record["labels"])
        status = job_status(job.state)
        ended = None if status.is_active else rfc3339(job.end)
        message = describe(record["job_id"], job, record.get("memory_limit"))
        queued = status is JobStatus.NOT_STARTED and job.reason in QUEUE_REASONS
        return ContainerState(status, message, ended or rfc3339(job.start) or ZERO_TIME,
                              job.exit_code, record["labels"], queued=queued)

    def logs(self, name: str) -> str:
        try:
            with self._path(name, ".log").open(errors="replace") as output:
                return "".join(deque(output, maxlen=self.logs_tail))
        except FileNotFoundError:
            return ""

    def follow_logs(self, name: str) -> Iterator[str]:
        yield from split_lines(self._log_chunks(name))

    def _log_chunks(self, name: str) -> Iterator[bytes]:
        """The job's output file as it grows, until the job ended."""
        position = 0
        while True:
            finished = self._finished(name)
            try:
                with self._path(name, ".log").open("rb") as output:
                    output.seek(position)
                    while data := output.read(READ_BYTES):
                        yield data
                    position = output.tell()
            except FileNotFoundError:
                pass
            if finished:
                break
            time.sleep(POLL_SECONDS)

    def _finished(self, name: str) -> bool:
        state = self.state(name)
        return state is None or not state.status.is_active

    def wait(self, name: str) -> int:
        """The container's exit code; a job Slurm ended otherwise (time limit, cancel,
        node failure) raises ``ComputeError`` saying so."""
        while not self._finished(name):
            time.sleep(POLL_SECONDS)
        record, job = self._job(name) or ({}, None)
        if job is None:
            raise ComputeError(f"Slurm job {name} was removed before it finished")
        if job.state == "COMPLETED":
            return 0
        if job.state in ("FAILED", "OUT_OF_MEMORY") and job.exit_code:
            return job.exit_code
        raise ComputeError(describe(record["job_id"], job, record.get("memory_limit")))

    def remove(self, name: str) -> None:
        record = self._record(name)
        if record is None:
            return
        _run(["scancel", record["job_id"]])
        for suffix in (".json", ".sbatch", ".log", ".exit", ".env"):
            self._path(name, suffix).unlink(missing_ok=True)


def _sinfo(options: list[str], timeout: float) -> str:
    """``sinfo``'s output; ``ComputeUnavailable`` with its error when it fails."""
    try:
        result = subprocess.run(["sinfo", *options], capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ComputeUnavailable(f"sinfo: {error}") from None
    if result.returncode != 0:
        raise ComputeUnavailable(f"sinfo: {result.stderr.strip() or f'exit code {result.returncode}'}")
    return result.stdout.strip()


def sinfo_partition(line: str) -> SlurmPartition:
    """A partition from ``sinfo --format=%R|%a|%F`` (``%F``: allocated/idle/other/total)."""
    name, state, counts = line.split("|")
    _, idle, _, total = counts.split("/")
    return SlurmPartition(name=name, state=state, nodes=int(total), idle_nodes=int(idle))


def _longest_values_first(env: list[str]) -> list[int]:
    """Indices of ``env``'s entries, longest value first (the order values are masked in)."""
    return sorted(range(len(env)), key=lambda index: -len(env[index].partition("=")[2]))


def _run(command: list[str]) -> str:
    """A Slurm command's output, stripped; empty when it fails (e.g. an unknown job id)."""
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    return result.stdout.strip() if result.returncode == 0 else ""
