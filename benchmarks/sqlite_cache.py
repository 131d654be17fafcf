"""What the local Prefect server's SQLite connections hold in their page caches.

Opens ``--connections`` connections (Prefect's pool keeps 5) to a copy of a Prefect database
(e.g. the one a soak left: ``~/.prefect/prefect.db``), first with Prefect's own SQLite
configuration (20000 pages, 80 MB, a connection), then with the embedded server's
(``SQLITE_CACHE_KIB``), each in a new interpreter, reads every row of Prefect's biggest tables
on each connection, as a UI history page or the vacuum service's scans do, and prints how much
that interpreter grew. Figures only: nothing is asserted.

    .venv/bin/python benchmarks/sqlite_cache.py ~/.prefect/prefect.db
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from prefect.server.database.configurations import AioSqliteConfiguration, BaseDatabaseConfiguration

from prefect_pfcon.embedded.prefect_server import SQLITE_CACHE_KIB, QueueingSqliteConfiguration
from processes import rss_mb

CONFIGURATIONS = {
    "prefect": ("Prefect's configuration (20000 pages)", AioSqliteConfiguration),
    "embedded": (f"the embedded server's ({SQLITE_CACHE_KIB} KiB)", QueueingSqliteConfiguration),
}
TABLES = ("events", "event_resources", "log", "task_run", "task_run_state", "flow_run", "flow_run_state")


async def growth_mb(config: BaseDatabaseConfiguration, connections: int) -> float:
    """How much this process grows while ``connections`` connections each read every table."""
    engine = await config.engine()
    before = rss_mb(os.getpid())
    opened = [await engine.connect() for _ in range(connections)]
    try:
        for connection in opened:
            for table in TABLES:
                await connection.exec_driver_sql(f"SELECT * FROM {table}")
        return rss_mb(os.getpid()) - before
    finally:
        for connection in opened:
            await connection.close()
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("database", type=Path, help="a Prefect SQLite database (copied; the copy is read)")
    parser.add_argument("--connections", type=int, default=5)
    parser.add_argument("--configuration", choices=CONFIGURATIONS, help="measure only this one, here")
    args = parser.parse_args()
    if args.configuration:
        config = CONFIGURATIONS[args.configuration][1](connection_url=f"sqlite+aiosqlite:///{args.database}")
        print(f"{asyncio.run(growth_mb(config, args.connections)):.0f}")
        return
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / "prefect.db"
        shutil.copyfile(args.database, copy)
        print(f"{args.database} ({copy.stat().st_size / 1e6:.0f} MB), {args.connections} connections reading "
              f"{', '.join(TABLES)}:")
        for name, (label, _) in CONFIGURATIONS.items():
            grown = subprocess.run([sys.executable, __file__, str(copy), "--connections", str(args.connections),
                                    "--configuration", name], check=True, capture_output=True, text=True).stdout
            print(f"  {label}: +{grown.strip()} MB")


if __name__ == "__main__":
    main()
