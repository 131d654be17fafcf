"""Job steps the API accepted and has not yet created as Prefect flow runs, kept on disk.

The embedded API answers a POST once the request is written here (a SQLite write, well under
a millisecond) instead of after Prefect created the run (tens of milliseconds, more while the
server is busy with running jobs). A process killed in between finds its requests here when
it starts again; creating them twice yields one run (the creation's idempotency key).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from prefect.client.schemas.objects import FlowRun, State
from prefect.client.schemas.responses import DeploymentResponse
from prefect.states import Scheduled

from prefect_pfcon.flows.naming import run_name_for
from prefect_pfcon.models import JobStep

WAITING_MESSAGE = "Accepted; waiting to be created in Prefect"


@dataclass(frozen=True)
class RunRequest:
    """One flow run to create: the step's parameters and tags, and the newest run of
    (jid, step) when the request was accepted (the new run follows it)."""

    step: JobStep
    jid: str
    parameters: dict[str, Any]
    extra_tags: list[str]
    after: UUID | None
    key: UUID = field(default_factory=uuid4)
    accepted: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    def placeholder(self, deployment: DeploymentResponse, state: State | None = None) -> FlowRun:
        """The run as the API shows it while Prefect does not have it: not started, or in
        ``state`` (a final one: Prefect refused it)."""
        state = state or Scheduled(message=WAITING_MESSAGE)
        return FlowRun(
            id=self.key,
            name=run_name_for(self.step, self.jid),
            flow_id=deployment.flow_id,
            deployment_id=deployment.id,
            parameters=self.parameters,
            tags=self.extra_tags,
            created=self.accepted,
            state=state,
            end_time=state.timestamp if state.is_final() else None,
        )

    def to_json(self) -> str:
        """The request as stored."""
        return json.dumps({**asdict(self), "after": str(self.after) if self.after else None,
                           "key": str(self.key), "accepted": self.accepted.isoformat()})

    @classmethod
    def from_json(cls, text: str) -> RunRequest:
        """A stored request."""
        data = json.loads(text)
        return cls(
            step=JobStep(data["step"]),
            jid=data["jid"],
            parameters=data["parameters"],
            extra_tags=data["extra_tags"],
            after=UUID(data["after"]) if data["after"] else None,
            key=UUID(data["key"]),
            accepted=datetime.fromisoformat(data["accepted"]),
        )


class Outbox:
    """A SQLite file of ``RunRequest``s (write-ahead log; a commit survives the process).

    The file is private (0600, as SQLite's ``-wal`` and ``-shm`` files then are) and keeps no
    removed request: deleted rows are overwritten (``secure_delete``) and the write-ahead log
    is emptied after each removal.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        path.chmod(0o600)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA secure_delete=ON")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS requests (key TEXT PRIMARY KEY, request TEXT NOT NULL, "
            "accepted TEXT NOT NULL)"
        )

    def add(self, request: RunRequest) -> None:
        """Keep ``request`` until ``remove``."""
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO requests VALUES (?, ?, ?)",
                (str(request.key), request.to_json(), request.accepted.isoformat()),
            )

    def remove(self, key: UUID) -> None:
        """Forget a request whose run exists."""
        with self._lock:
            self._db.execute("DELETE FROM requests WHERE key = ?", (str(key),))
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def requests(self) -> list[RunRequest]:
        """The kept requests, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT request FROM requests ORDER BY accepted").fetchall()
        return [RunRequest.from_json(text) for (text,) in rows]

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()
