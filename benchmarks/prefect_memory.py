"""Where the embedded default's memory goes: RSS of an idle service in several variants.

First the RSS of a new interpreter after importing what the service imports, step by step.
Then it starts the embedded default (``prefect-pfcon up``: API, runner and Prefect server in
one process) on free loopback ports with a throwaway state dir, ``PREFECT_HOME`` (its database
made by the first variant, reused by the others) and storeBase, one variant at a time, waits
until its API answers and ``--settle`` seconds more, prints its RSS and stops it (by its PID).
Figures only: nothing is asserted.

    .venv/bin/python benchmarks/prefect_memory.py
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from processes import rss_mb

IMPORTS = {
    "bare interpreter": "pass",
    "prefect (client)": "import prefect",
    "Prefect's server modules": "import prefect.server.api.server",
    "the service (prefect_pfcon.embedded.serve)": "import prefect_pfcon.embedded.serve",
}
READY_SECONDS = 180.0


@dataclass
class Variant:
    """One way of starting the service: extra environment."""

    name: str
    environment: dict[str, str] = field(default_factory=dict)


VARIANTS = [
    Variant("as started, new database (all migrations run)"),
    Variant("as started, existing database"),
    Variant("existing database, no migration check", {"PREFECT_API_DATABASE_MIGRATE_ON_START": "false"}),
    Variant("no Prefect background services", {"PREFECT__SERVER_WEBSERVER_ONLY": "1"}),
    Variant("no Prefect UI", {"PREFECT_SERVER_UI_ENABLED": "false"}),
    Variant("MALLOC_ARENA_MAX=2", {"MALLOC_ARENA_MAX": "2"}),
]


def import_rss_mb(statement: str) -> float:
    """RSS of a new interpreter once it has run ``statement``."""
    probe = f"{statement}\nprint(open('/proc/self/status').read().split('VmRSS:')[1].split()[0])"
    output = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True)
    return int(output.stdout.split()[-1]) / 1024


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def service_rss_mb(variant: Variant, scratch: Path, settle: float) -> float:
    """Start the service as ``variant`` says, wait until it is ready and settled; its RSS."""
    api_port = free_port()
    (scratch / "storeBase").mkdir(exist_ok=True)
    environment = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_API_")}
    environment.update({"PREFECT_HOME": str(scratch / "prefect-home"), "PFCON_STATE_DIR": str(scratch / "state"),
                        **variant.environment})
    command = [sys.executable, "-m", "prefect_pfcon.cli", "up", "--port", str(api_port),
               "--prefect-port", str(free_port()), "--storebase", str(scratch / "storeBase")]
    with (scratch / "service.log").open("ab") as log:
        service = subprocess.Popen(command, env=environment, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            if service.poll() is not None:
                raise RuntimeError(f"the service exited ({service.returncode}); see {scratch / 'service.log'}")
            try:
                if httpx.get(f"http://127.0.0.1:{api_port}/api/v1/health/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            raise TimeoutError(f"not ready after {READY_SECONDS:.0f} s; see {scratch / 'service.log'}")
        time.sleep(settle)
        return rss_mb(service.pid)
    finally:
        service.terminate()
        service.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settle", type=float, default=20.0, help="seconds to wait after the service is ready")
    args = parser.parse_args()
    print("RSS after imports (MB):")
    for name, statement in IMPORTS.items():
        print(f"  {name:<60} {import_rss_mb(statement):6.0f}")
    print(f"RSS of the idle service (API, runner, Prefect server), {args.settle:.0f} s after it is ready (MB):")
    with tempfile.TemporaryDirectory(prefix="prefect-memory-") as scratch:
        for variant in VARIANTS:  # one database: the first variant creates it, the others reuse it
            print(f"  {variant.name:<60} {service_rss_mb(variant, Path(scratch), args.settle):6.0f}", flush=True)


if __name__ == "__main__":
    main()
