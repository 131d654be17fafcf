"""Where the embedded Prefect server's memory goes: RSS of an idle server in several variants.

Starts the service's Prefect server (``python -m prefect_pfcon.embedded.prefect_server``) on a
free loopback port with a throwaway ``PREFECT_HOME`` (its database made by the first variant,
reused by the others), one variant at a time, waits until it
answers its health check and ``--settle`` seconds more, prints its RSS and stops it (by its
PID). First the RSS of a bare interpreter after importing what each process imports.
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

from prefect_pfcon.embedded.local_server import FILE_LEASES, LEASE_STORAGE

SERVER_MODULE = "prefect_pfcon.embedded.prefect_server"
IMPORTS = {
    "bare interpreter": "pass",
    "prefect (client)": "import prefect",
    "Prefect's server modules": "import prefect.server.api.server",
    "the service (prefect_pfcon.embedded.serve)": "import prefect_pfcon.embedded.serve",
}


@dataclass
class Variant:
    """One way of starting the server: extra arguments and environment."""

    name: str
    arguments: list[str] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)


VARIANTS = [
    Variant("as the service starts it, new database (all migrations run)"),
    Variant("as the service starts it, existing database"),
    Variant("existing database, no migration check", environment={"PREFECT_API_DATABASE_MIGRATE_ON_START": "false"}),
    Variant("no services (--no-services)", arguments=["--no-services"]),
    Variant("no UI (--no-ui)", arguments=["--no-ui"]),
    Variant("MALLOC_ARENA_MAX=2", environment={"MALLOC_ARENA_MAX": "2"}),
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


def server_rss_mb(variant: Variant, home: Path, settle: float) -> float:
    """Start the server as ``variant`` says, wait until it is ready and settled; its RSS."""
    port = free_port()
    environment = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                   LEASE_STORAGE: FILE_LEASES, **variant.environment}  # as LocalPrefectServer starts it
    command = [sys.executable, "-m", SERVER_MODULE, "--host", "127.0.0.1", "--port", str(port),
               *variant.arguments]
    with (home / "server.log").open("ab") as log:
        server = subprocess.Popen(command, env=environment, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise RuntimeError(f"the server exited ({server.returncode}); see {home / 'server.log'}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            raise TimeoutError(f"not ready after 180 s; see {home / 'server.log'}")
        time.sleep(settle)
        return rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settle", type=float, default=20.0, help="seconds to wait after the server is ready")
    args = parser.parse_args()
    print("RSS after imports (MB):")
    for name, statement in IMPORTS.items():
        print(f"  {name:<60} {import_rss_mb(statement):6.0f}")
    print(f"RSS of an idle Prefect server, {args.settle:.0f} s after it is ready (MB):")
    with tempfile.TemporaryDirectory(prefix="prefect-memory-") as scratch:
        home = Path(scratch)  # one database: the first variant creates it, the others reuse it
        for variant in VARIANTS:
            print(f"  {variant.name:<60} {server_rss_mb(variant, home, args.settle):6.0f}", flush=True)


if __name__ == "__main__":
    main()
