"""``prefect-pfcon jobs``: a running service's job history in a terminal (``--json``: as the API answers)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.console import Console
from rich.table import Table

from prefect_pfcon.models import JobStep
from prefect_pfcon.ops_client import OpsClient

JOBS_PATH = "/api/v1/ops/jobs/"
STATE_STYLES = {"failed": "red", "running": "yellow", "waiting": "cyan", "completed": "green", "cancelled": "dim"}
FILTERS = ("state", "since", "until", "auid", "image", "compute", "offset", "limit")


def add_jobs_command(commands: Any) -> None:
    """The ``jobs`` subcommand and its filters (those of ``GET /api/v1/ops/jobs/``)."""
    jobs = commands.add_parser("jobs", help="list a running service's jobs, newest first",
                               description="List the jobs of the service at PFCON_URL "
                               "(default http://127.0.0.1:30006), logging in with PFCON_USER and PFCON_PASSWORD.")
    jobs.add_argument("jid", nargs="?", help="show this job with every attempt of its steps")
    jobs.add_argument("--state", choices=list(STATE_STYLES))
    jobs.add_argument("--since", help="ISO time: jobs started at or after it")
    jobs.add_argument("--until", help="ISO time: jobs started at or before it")
    jobs.add_argument("--auid", help="ChRIS user")
    jobs.add_argument("--image", help="plugin image")
    jobs.add_argument("--compute", help="compute backend (docker, kubernetes, ...)")
    jobs.add_argument("--offset", type=int)
    jobs.add_argument("--limit", type=int)
    jobs.add_argument("--json", action="store_true", help="print the API's JSON answer")


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}s"


def _when(value: str | None) -> str:
    return "" if value is None else value.replace("T", " ")[:19]


def _state(value: str) -> str:
    return f"[{STATE_STYLES.get(value, 'default')}]{value}[/]"


def jobs_table(page: dict[str, Any]) -> Table:
    """A listing page as a table, its reach in the caption."""
    table = Table(caption=f"kept {page['history_days']:g} days; oldest job started {_when(page['oldest']) or '-'}")
    table.add_column("jid", no_wrap=True)
    for column in ("state", "auid", "image", "compute", "start", "duration",
                   "exit", *(step.value for step in JobStep), "message"):
        table.add_column(column, overflow="fold")
    for job in page["jobs"]:
        steps = [job["steps"].get(step.value, {}).get("state", "") for step in JobStep]
        table.add_row(job["jid"], _state(job["state"]), job["auid"] or "", job["image"] or "", job["compute"] or "",
                      _when(job["start"]), _seconds(job["duration_seconds"]),
                      "" if job["exit_code"] is None else str(job["exit_code"]), *steps, job["message"] or "")
    return table


def attempts_table(job: dict[str, Any]) -> Table:
    """A job's attempts as a table, its summary in the title."""
    requested = f"cpu {job['cpu_limit']}m, memory {job['memory_limit']} MiB, gpu {job['gpu_limit']}"
    table = Table(title=f"{job['jid']}: {_state(job['state'])}, {job['image'] or 'no plugin'} "
                  f"on {job['compute'] or '-'} for {job['auid'] or '-'} ({requested})")
    table.add_column("step")
    table.add_column("task run", no_wrap=True)
    for column in ("state", "start", "end", "duration", "message"):
        table.add_column(column, overflow="fold")
    for attempt in job["attempts"]:
        table.add_row(attempt["step"], attempt["task_run_id"], attempt["state"], _when(attempt["start"]),
                      _when(attempt["end"]), _seconds(attempt["duration_seconds"]), attempt["message"] or "")
    return table


def jobs(args: argparse.Namespace) -> None:
    """Print the listing (or one job) of the service at ``PFCON_URL``."""
    client = OpsClient()
    if args.jid:
        answer = client.get_or_exit(f"{JOBS_PATH}{args.jid}/")
    else:
        answer = client.get_or_exit(JOBS_PATH, {name: getattr(args, name) for name in FILTERS})
    if args.json:
        print(json.dumps(answer, indent=2))
        return
    Console().print(attempts_table(answer) if args.jid else jobs_table(answer))
