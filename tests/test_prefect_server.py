"""The embedded Prefect server's SQLite configuration (real SQLite): its transactions queue for
the write lock, and its connections keep a small page cache.

The race that made flow-run creation fail under load: a transaction reads, another connection
writes and commits, then the first one writes.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import sqlalchemy as sa
from prefect.server.database.configurations import AioSqliteConfiguration, BaseDatabaseConfiguration
from sqlalchemy.exc import OperationalError

from prefect_pfcon.embedded.prefect_server import SQLITE_CACHE_KIB, QueueingSqliteConfiguration

OTHER_WRITER_HEAD_START = 0.3


async def _insert(config: BaseDatabaseConfiguration, value: int) -> None:
    session = await config.session(await config.engine())
    async with session, config.begin_transaction(session):
        await session.execute(sa.text("INSERT INTO item VALUES (:n)"), {"n": value})


async def _read_then_write_while_another_writes(config: BaseDatabaseConfiguration) -> list[int]:
    engine = await config.engine()
    async with engine.begin() as connection:
        await connection.execute(sa.text("CREATE TABLE item (n INTEGER)"))
    session = await config.session(engine)
    other = None
    try:
        async with session, config.begin_transaction(session):
            await session.execute(sa.text("SELECT count(*) FROM item"))
            other = asyncio.create_task(_insert(config, 2))
            await asyncio.sleep(OTHER_WRITER_HEAD_START)  # it commits now, unless it must wait
            await session.execute(sa.text("INSERT INTO item VALUES (1)"))
    finally:
        if other is not None:
            await other
    async with engine.connect() as connection:
        rows = (await connection.execute(sa.text("SELECT n FROM item ORDER BY rowid"))).all()
    await engine.dispose()
    return [row.n for row in rows]


def _url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'prefect.db'}"


def test_prefects_own_configuration_loses_the_race(tmp_path: Path) -> None:
    """Why the embedded server does not use Prefect's configuration as is."""
    config = AioSqliteConfiguration(connection_url=_url(tmp_path), timeout=10)
    with pytest.raises(OperationalError, match="database is locked"):
        asyncio.run(_read_then_write_while_another_writes(config))


def test_queueing_configuration_makes_the_other_writer_wait(tmp_path: Path) -> None:
    config = QueueingSqliteConfiguration(connection_url=_url(tmp_path), timeout=10)
    assert asyncio.run(_read_then_write_while_another_writes(config)) == [1, 2]


async def _pragmas(config: BaseDatabaseConfiguration, *names: str) -> list[object]:
    engine = await config.engine()
    try:
        async with engine.connect() as connection:
            return [(await connection.exec_driver_sql(f"PRAGMA {name}")).scalar() for name in names]
    finally:
        await engine.dispose()


def test_connections_keep_a_small_page_cache_and_prefects_other_pragmas(tmp_path: Path) -> None:
    config = QueueingSqliteConfiguration(connection_url=_url(tmp_path), timeout=10)
    cache_size, journal_mode, foreign_keys = asyncio.run(
        _pragmas(config, "cache_size", "journal_mode", "foreign_keys"))
    assert cache_size == -SQLITE_CACHE_KIB  # Prefect's own: 20000 pages
    assert (journal_mode, foreign_keys) == ("wal", 1)
