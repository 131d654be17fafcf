"""``prefect-pfcon status``: a running service's availability in a terminal (``--json``: as the
API answers); exit code 0 if it is available, 1 if not."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from prefect_pfcon.ops_client import OpsClient

STATUS_PATH = "/api/v1/ops/status/"  # Prefect is not imported here: ``up`` sets its environment first
COMPONENTS = ("prefect", "runner", "compute", "storage")
SHOWN = {"up", "error", "latency_ms"}


def add_status_command(commands: Any) -> None:
    """The ``status`` subcommand."""
    status = commands.add_parser(
        "status", help="show whether a running service can run jobs (exit code 1 if not)",
        description="Show the availability of the service at PFCON_URL (default http://127.0.0.1:30006), "
        "logging in with PFCON_USER and PFCON_PASSWORD; exit code 0 if available, 1 if not.")
    status.add_argument("--json", action="store_true", help="print the API's JSON answer")


def _details(component: dict[str, Any]) -> str:
    """A component's other fields as ``name=value`` (sizes in GiB; a list's items one a line)."""
    parts = []
    for name, value in component.items():
        if name in SHOWN:
            continue
        if isinstance(value, list):
            value = "".join("\n  " + ", ".join(f"{key}={item}" for key, item in entry.items()) for entry in value)
        elif name.endswith("_bytes"):
            name, value = name.removesuffix("_bytes"), f"{value / 2**30:.1f} GiB"
        parts.append(f"{name}={value}")
    return ", ".join(parts)


def status_table(status: dict[str, Any]) -> Table:
    """The answer as a table: one row a component."""
    verdict = "[green]available[/]" if status["available"] else f"[red]unavailable[/]: {status['reason']}"
    table = Table(title=f"prefect-pfcon: {verdict}")
    for column in ("component", "up", "latency", "details", "error"):
        table.add_column(column)
    for name in COMPONENTS:
        component = status[name]
        up = "[green]up[/]" if component["up"] else "[red]down[/]"
        table.add_row(name, up, f"{component['latency_ms']:.1f} ms", _details(component), component.get("error", ""))
    return table


def status(args: argparse.Namespace) -> None:
    """Print the service's availability; exit 0 if it is available, 1 if not (or without an answer)."""
    answer = OpsClient().get_or_exit(STATUS_PATH)
    if args.json:
        print(json.dumps(answer, indent=2))
    else:
        Console().print(status_table(answer))
    sys.exit(0 if answer["available"] else 1)
