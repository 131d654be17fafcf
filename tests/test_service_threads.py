"""The service keeps no thread per job it ran: Prefect 3.8 makes a concurrency service with
its own thread for every set of task-run tags, and each job's steps carry their own ``jid:``
tag (flows/tag_limits.py drains it once the step ended). Real lifecycles on the fslink
service, its threads counted in /proc."""

from __future__ import annotations

from pathlib import Path

from conftest import Service
from fixtures_tree import make_fslink_fixture
from test_fslink_lifecycle import delete_and_forget, finished_plugin

JOBS = 6


def threads_of(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/task").iterdir()))


def lifecycle(service: Service) -> None:
    jid, _, result = finished_plugin(service, "echo hi")
    assert result["status"] == "finishedSuccessfully", result
    delete_and_forget(service.client(), jid)


def test_no_thread_is_left_per_job(fslink_service: Service):
    make_fslink_fixture(fslink_service.store_base)
    for _ in range(2):  # the step threads the runner keeps are made by the first jobs
        lifecycle(fslink_service)
    before = threads_of(fslink_service.process.pid)
    for _ in range(JOBS):
        lifecycle(fslink_service)
    after = threads_of(fslink_service.process.pid)
    assert after - before < JOBS // 2, (before, after)  # three steps a job left three threads
