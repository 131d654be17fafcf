"""The local Prefect server's SQLite configuration: transactions that wait their turn to write,
and a page cache per connection that stays small.

Prefect begins a SQLite transaction DEFERRED unless it locks rows. Such a transaction reads,
then writes; if another connection committed a write in between, SQLite refuses the write at
once ("database is locked", answered 503, which the client retries only after 2, 4, 8, 16 s).
With a few job steps reporting at once this is the common case, and creating a flow run (read
the deployment, then insert) fails over and over. Beginning every transaction IMMEDIATE makes
it take the write lock first, so writers queue (up to the database timeout) instead of
failing; reads outside transactions are unaffected. PostgreSQL servers are left as they are.

Prefect also gives each connection a page cache of 20000 pages (80 MB), and its pool keeps 5
connections: every page a query reads stays cached, so as the database grows (about 165 MB
per 1,000 jobs) and the UI's history pages or the vacuum service scan it, each connection
comes to hold up to 80 MB. The file's pages stay in the kernel's cache either way, so
``SQLITE_CACHE_KIB`` per connection is enough (``benchmarks/sqlite_cache.py``: 5 connections
reading a 53 MB database grow the process by 182 MB with Prefect's setting, 43 MB with ours).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager

from prefect.server.database.configurations import AioSqliteConfiguration
from prefect.server.database.dependencies import MODELS_DEPENDENCIES
from prefect.server.utilities.database import get_dialect
from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncSession, AsyncSessionTransaction
from sqlalchemy.pool import ConnectionPoolEntry

SQLITE_CACHE_KIB = 4096


class QueueingSqliteConfiguration(AioSqliteConfiguration):
    """Prefect's SQLite configuration with every transaction begun IMMEDIATE and a page cache
    of ``SQLITE_CACHE_KIB`` per connection."""

    def setup_sqlite(self, conn: DBAPIConnection, record: ConnectionPoolEntry) -> None:
        super().setup_sqlite(conn, record)
        cursor = conn.cursor()
        cursor.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB};")  # negative: in KiB
        cursor.close()

    @asynccontextmanager
    async def begin_transaction(
        self, session: AsyncSession, with_for_update: bool = False
    ) -> AsyncGenerator[AsyncSessionTransaction, None]:
        async with super().begin_transaction(session, with_for_update=True) as transaction:
            yield transaction


def use_queueing_sqlite() -> None:
    """Make this process's Prefect server use ``QueueingSqliteConfiguration`` on SQLite."""
    url = PREFECT_API_DATABASE_CONNECTION_URL.value()
    if get_dialect(url).name == "sqlite":
        MODELS_DEPENDENCIES["database_config"] = QueueingSqliteConfiguration(connection_url=url)

