"""Soak benchmark: CUBE's lifecycles at a steady rate for a long time against one service.

Starts ``--rate`` complete lifecycles a minute (copy → plugin → file listing → delete → the
DELETEs, as lifecycle.py runs them) for ``--minutes`` (default an hour, 20 a minute: 1,200
jobs), and prints, for each of ``--periods`` equal periods (quarter-hours by default): jobs
finished, errors (should be 0), POST and status-GET latency percentiles, end-to-end time, the
service's RSS at the period's end (with ``--pid``, the ``prefect-pfcon up`` process, its
Prefect server included: it runs in that process) and the Prefect database's size and growth
per 1,000 jobs (with ``--prefect-db``, its SQLite file and ``-wal``). Then the RSS sampled each minute.

    prefect-pfcon up &   # the embedded default: Prefect on SQLite in ~/.prefect
    python benchmarks/soak.py --store-base /var/local/storeBase --pid $! \\
        --prefect-db ~/.prefect/prefect.db

It only prints figures; it asserts nothing. Only the given URL (loopback) is contacted.
"""

from __future__ import annotations

import argparse
import shutil
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import requests

from lifecycle import Probe, Samples, Session, Target, lifecycle, summary

SAMPLE_SECONDS = 60.0


@dataclass
class Period:
    """What one period's jobs measured."""

    samples: Samples = field(default_factory=Samples)
    started: int = 0
    rss: dict[str, float] = field(default_factory=dict)
    database_mb: float | None = None


def database_mb(path: Path | None) -> float | None:
    """The SQLite database's size with its write-ahead log (MB)."""
    if path is None:
        return None
    files = [path, path.with_name(path.name + "-wal")]
    return sum(part.stat().st_size for part in files if part.exists()) / 1e6


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:30006/api/v1/")
    parser.add_argument("--store-base", type=Path, required=True, help="the server's storeBase, as seen here")
    parser.add_argument("--user", default="pfcon")
    parser.add_argument("--password", default="pfcon1234")
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--rate", type=float, default=20, help="lifecycles started a minute")
    parser.add_argument("--periods", type=int, default=4, help="periods figures are given for")
    parser.add_argument("--concurrency", type=int, default=16, help="most lifecycles in progress at once")
    parser.add_argument("--poll-interval", type=float, default=1.0)
    parser.add_argument("--job-timeout", type=float, default=300)
    parser.add_argument("--image", default="local/busybox:test")
    parser.add_argument("--pid", type=int, help="PID of prefect-pfcon up: its RSS")
    parser.add_argument("--prefect-db", type=Path, help="the Prefect server's SQLite database")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    target = Target(args.url, args.store_base, args.user, args.password)
    target.info = requests.get(args.url + "pluginjobs/", timeout=30, headers={
        "Authorization": "Bearer " + requests.post(args.url + "auth-token/", timeout=30, json={
            "pfcon_user": args.user, "pfcon_password": args.password}).json()["token"]}).json()
    probe, run_id = Probe(args.pid), uuid.uuid4().hex[:8]
    periods = [Period() for _ in range(args.periods)]
    period_seconds, total = args.minutes * 60 / args.periods, round(args.minutes * args.rate)
    local = threading.local()
    rss_over_time: list[tuple[float, dict[str, float]]] = []
    start = time.monotonic()
    first_size = database_mb(args.prefect_db)

    def one(index: int, period: Period) -> None:
        if not hasattr(local, "session"):
            local.session = Session(target, period.samples, args.job_timeout)
        local.session.samples = period.samples
        try:
            lifecycle(local.session, run_id, index, args.image, args.poll_interval)
        except Exception as exc:  # counted and reported, the soak goes on
            period.samples.add("errors", f"{type(exc).__name__}: {exc}")

    def close(period: Period) -> None:
        period.rss, period.database_mb = probe.rss(), database_mb(args.prefect_db)

    with ThreadPoolExecutor(args.concurrency) as pool:
        current = 0
        for index in range(total):
            due = start + index * 60 / args.rate
            while time.monotonic() < due:
                if time.monotonic() - start >= (len(rss_over_time) + 1) * SAMPLE_SECONDS:
                    rss_over_time.append((time.monotonic() - start, probe.rss()))
                time.sleep(min(1.0, max(due - time.monotonic(), 0)))
            now_period = min(int((time.monotonic() - start) // period_seconds), args.periods - 1)
            while current < now_period:
                close(periods[current])
                current += 1
            periods[current].started += 1
            pool.submit(one, index, periods[current])
    for period in periods[current:]:
        close(period)
    shutil.rmtree(target.store_base / "bench" / run_id, ignore_errors=True)
    print_figures(args, periods, period_seconds, first_size, rss_over_time)


def print_figures(args: argparse.Namespace, periods: list[Period], period_seconds: float,
                  first_size: float | None, rss_over_time: list[tuple[float, dict[str, float]]]) -> None:
    print(f"soak: {args.rate:g} lifecycles a minute for {args.minutes:g} min against {args.url}")
    header = (f"{'period':>8} {'jobs':>5} {'errors':>6} {'POST p50/p99 ms':>16} {'GET p50/p99 ms':>15} "
              f"{'job p50/p99 s':>14} {'RSS MB':>7} {'db MB':>7} {'db MB/1000 jobs':>16}")
    print(header)
    before = first_size
    for number, period in enumerate(periods):
        samples = period.samples
        post, get, job = summary(samples.post), summary(samples.get), summary(samples.end_to_end)
        finished = len(samples.end_to_end)
        growth = ((period.database_mb - before) / finished * 1000
                  if period.database_mb is not None and before is not None and finished else float("nan"))
        print(f"{f'{number * period_seconds / 60:.0f}-{(number + 1) * period_seconds / 60:.0f}m':>8} "
              f"{finished:>5} {len(samples.errors):>6} "
              f"{post['p50'] * 1000:>7.1f}/{post['p99'] * 1000:<8.1f} {get['p50'] * 1000:>7.1f}/{get['p99'] * 1000:<7.1f} "
              f"{job['p50']:>6.2f}/{job['p99']:<7.2f} "
              f"{period.rss.get('total', float('nan')):>7.0f} "
              f"{period.database_mb if period.database_mb is not None else float('nan'):>7.1f} {growth:>16.2f}")
        before = period.database_mb
        for error in samples.errors[:5]:
            print(f"         error: {error[:200]}")
    if rss_over_time:
        print("RSS over time (MB): " + ", ".join(
            f"{moment / 60:.0f}m {rss.get('total', 0):.0f}"
            for moment, rss in rss_over_time))


if __name__ == "__main__":
    main()
