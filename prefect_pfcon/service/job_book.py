"""The record of every job step the API accepted: durable, exact and immediate.

The embedded service answers status GETs and guards from here, not from Prefect's task-run
rows (which reach Prefect's API up to a second late under load). Each change is committed to a
SQLite file in the state dir before it is acted on, so a request a client was told is accepted
survives a ``kill -9``, and a restart knows which steps still have to run and in which flow run.

The file is private (0600, as SQLite's ``-wal`` and ``-shm`` files then are); the steps'
parameters hold sealed env values only, and deleted rows are overwritten (``secure_delete``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from uuid import UUID

from prefect.client.schemas.objects import State, StateType

from prefect_pfcon.flows.attempts import StepAttempt, StepRequest
from prefect_pfcon.models import JobStep

JIDS_KEPT_IN_MEMORY = 1_000
"""Jobs kept in memory, the most recently used (each with its steps' logs); an older one is read
back from the file when asked for."""

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS attempts (key TEXT PRIMARY KEY, jid TEXT NOT NULL, step TEXT NOT NULL, "
    "request TEXT NOT NULL, state TEXT NOT NULL, start_time TEXT, end_time TEXT, "
    "removed INTEGER NOT NULL DEFAULT 0, logs TEXT NOT NULL DEFAULT '', seq INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS attempts_by_jid ON attempts (jid, seq)",
    "CREATE TABLE IF NOT EXISTS jobs (jid TEXT PRIMARY KEY, flow_run_id TEXT, open INTEGER NOT NULL)",
)


def _state_json(state: State) -> str:
    return json.dumps({"type": state.type.value, "name": state.name, "message": state.message,
                       "timestamp": state.timestamp.isoformat()})


def _state_from_json(text: str) -> State:
    data = json.loads(text)
    return State(type=StateType(data["type"]), name=data["name"], message=data["message"],
                 timestamp=datetime.fromisoformat(data["timestamp"]))


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


@dataclass
class JobEntry:
    """One jid: the newest attempt of each step, its logs, and the job's flow run."""

    attempts: dict[JobStep, StepAttempt] = field(default_factory=dict)
    logs: dict[UUID, str] = field(default_factory=dict)
    flow_run_id: UUID | None = None
    open: bool = False


class JobBook:
    """Attempts by jid and step, in a SQLite file (write-ahead log; a commit survives the
    process). Thread-safe; every method is quick (no network)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        path.chmod(0o600)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes
        self._db.execute("PRAGMA secure_delete=ON")
        for statement in SCHEMA:
            self._db.execute(statement)
        (self._seq,) = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM attempts").fetchone()
        self._jobs: OrderedDict[str, JobEntry] = OrderedDict()

    # ----- reading -----------------------------------------------------------------------

    def newest(self, step: JobStep, jid: str) -> StepAttempt | None:
        """The newest attempt of (jid, step), removed or not."""
        with self._lock:
            return self._entry(jid).attempts.get(step)

    def attempts(self, jid: str) -> dict[JobStep, StepAttempt]:
        """The newest attempt of each step of ``jid``."""
        with self._lock:
            return dict(self._entry(jid).attempts)

    def attempt(self, jid: str, key: UUID) -> StepAttempt | None:
        """The attempt ``key`` of ``jid`` if it is still its step's newest."""
        with self._lock:
            return next((a for a in self._entry(jid).attempts.values() if a.id == key), None)

    def logs(self, jid: str, key: UUID) -> str | None:
        """The log tail an ended attempt left, if it is known."""
        with self._lock:
            return self._entry(jid).logs.get(key)

    def is_removed(self, key: UUID) -> bool:
        """Whether a client DELETE removed the attempt ``key`` (an unknown one is not)."""
        with self._lock:
            row = self._db.execute("SELECT removed FROM attempts WHERE key = ?", (str(key),)).fetchone()
        return bool(row and row[0])

    def forgotten(self, jid: str) -> bool:
        """Whether clients DELETEd every step ``jid`` has."""
        with self._lock:
            attempts = self._entry(jid).attempts.values()
            return bool(attempts) and all(attempt.removed for attempt in attempts)

    def flow_run_id(self, jid: str) -> UUID | None:
        """The job's newest flow run, if it has one."""
        with self._lock:
            return self._entry(jid).flow_run_id

    def open_jobs(self) -> dict[str, tuple[UUID | None, list[StepRequest]]]:
        """Jobs whose flow run had not ended: their flow run and the steps still to run
        (not final, not removed), oldest first."""
        with self._lock:
            jids = [jid for (jid,) in self._db.execute("SELECT jid FROM jobs WHERE open = 1")]
            return {jid: (self._entry(jid).flow_run_id, self.unfinished(jid)) for jid in jids}

    def unfinished_steps(self) -> list[StepRequest]:
        """The steps still to run (or running) of every job whose flow run had not ended."""
        return [request for _, requests in self.open_jobs().values() for request in requests]

    def unfinished(self, jid: str) -> list[StepRequest]:
        """The steps of ``jid`` still to run, oldest first."""
        with self._lock:
            entry = self._entry(jid)
            return sorted((a.request for a in entry.attempts.values() if a.is_open), key=lambda r: r.accepted)

    # ----- writing -----------------------------------------------------------------------

    def accept(self, request: StepRequest, after: UUID | None) -> StepAttempt:
        """Record ``request`` as its step's newest attempt, unless another attempt was accepted
        since ``after`` (the newest the caller saw): then that one, unchanged."""
        with self._lock:
            entry = self._entry(request.jid)
            newest = entry.attempts.get(request.step)
            if newest is not None and newest.id != after:
                return newest
            attempt = StepAttempt.accepted(request)
            self._seq += 1
            self._db.execute(
                "INSERT INTO attempts (key, jid, step, request, state, seq) VALUES (?, ?, ?, ?, ?, ?)",
                (str(request.key), request.jid, request.step.value, request.to_json(),
                 _state_json(attempt.state), self._seq),
            )
            entry.attempts[request.step] = attempt
            return attempt

    def enter(self, request: StepRequest, state: State, logs: str | None = None) -> None:
        """The attempt of ``request`` entered ``state`` (an ended one leaves ``logs``)."""
        with self._lock:
            entry = self._entry(request.jid)
            current = entry.attempts.get(request.step)
            if current is None or current.id != request.key:
                current = None
            row = self._db.execute("SELECT state, start_time, end_time, removed FROM attempts WHERE key = ?",
                                   (str(request.key),)).fetchone()
            if row is None:
                return
            attempt = current or StepAttempt(request, _state_from_json(row[0]), _time(row[1]), _time(row[2]),
                                             bool(row[3]))
            attempt = attempt.entered(state)
            self._db.execute(
                "UPDATE attempts SET state = ?, start_time = ?, end_time = ?, logs = COALESCE(?, logs) WHERE key = ?",
                (_state_json(attempt.state), attempt.start_time.isoformat() if attempt.start_time else None,
                 attempt.end_time.isoformat() if attempt.end_time else None, logs, str(request.key)),
            )
            if current is not None:
                entry.attempts[request.step] = attempt
            if logs is not None:
                entry.logs[request.key] = logs

    def remove(self, step: JobStep, jid: str) -> StepAttempt | None:
        """Mark the newest attempt of (jid, step) removed (a client DELETE); it, or ``None``."""
        with self._lock:
            entry = self._entry(jid)
            attempt = entry.attempts.get(step)
            if attempt is None or attempt.removed:
                return attempt
            self._db.execute("UPDATE attempts SET removed = 1 WHERE key = ?", (str(attempt.id),))
            entry.attempts[step] = attempt = StepAttempt(
                attempt.request, attempt.state, attempt.start_time, attempt.end_time, removed=True
            )
            return attempt

    def job_started(self, jid: str, flow_run_id: UUID) -> None:
        """The job's steps run in the flow run ``flow_run_id`` from now on."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO jobs VALUES (?, ?, 1)", (jid, str(flow_run_id)))
            entry = self._entry(jid)
            entry.flow_run_id, entry.open = flow_run_id, True

    def job_opened(self, jid: str) -> None:
        """A flow run is being made for the job (kept so a restart makes it if this does not)."""
        with self._lock:
            entry = self._entry(jid)
            self._db.execute("INSERT OR REPLACE INTO jobs VALUES (?, ?, 1)",
                             (jid, str(entry.flow_run_id) if entry.flow_run_id else None))
            entry.open = True

    def job_ended(self, jid: str) -> None:
        """The job's flow run ended: a later step starts another."""
        with self._lock:
            self._db.execute("UPDATE jobs SET open = 0 WHERE jid = ?", (jid,))
            self._entry(jid).open = False

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()

    # ----- memory ------------------------------------------------------------------------

    def _entry(self, jid: str) -> JobEntry:
        entry = self._jobs.get(jid)
        if entry is not None:
            self._jobs.move_to_end(jid)
            return entry
        entry = self._jobs[jid] = self._read(jid)
        while len(self._jobs) > JIDS_KEPT_IN_MEMORY:
            self._jobs.popitem(last=False)
        return entry

    def _read(self, jid: str) -> JobEntry:
        entry = JobEntry()
        rows = self._db.execute(
            "SELECT request, state, start_time, end_time, removed, logs FROM attempts WHERE jid = ? ORDER BY seq",
            (jid,),
        )
        for request_json, state_json, start, end, removed, logs in rows:
            request = StepRequest.from_json(request_json)
            entry.attempts[request.step] = StepAttempt(
                request, _state_from_json(state_json), _time(start), _time(end), bool(removed)
            )
            if logs:
                entry.logs[request.key] = logs
        job = self._db.execute("SELECT flow_run_id, open FROM jobs WHERE jid = ?", (jid,)).fetchone()
        if job is not None:
            entry.flow_run_id = UUID(job[0]) if job[0] else None
            entry.open = bool(job[1])
        return entry
