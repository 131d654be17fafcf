"""Load benchmark: many concurrent job lifecycles plus a steady stream of status polls.

N lifecycles at once (as lifecycle.py runs them) while other threads send status GETs at a
fixed rate for a fixed time; prints throughput, latency percentiles, errors and the memory
(RSS) of the service's processes: before, at peak, and the growth per in-flight job.

    .venv/bin/python benchmarks/load.py --store-base /var/local/storeBase --pid <prefect-pfcon up PID>

Only the given URL (loopback) is contacted; nothing is asserted.
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from lifecycle import Samples, Session, Target, lifecycle, summary
from processes import rss_mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:30006/api/v1/")
    parser.add_argument("--store-base", type=Path, required=True)
    parser.add_argument("--pid", type=int, required=True, help="PID of the service (`prefect-pfcon up`)")
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--polls-per-second", type=int, default=200)
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--poll-interval", type=float, default=0.5)
    parser.add_argument("--image", default="local/busybox:test")
    args = parser.parse_args()

    target = Target(args.url, args.store_base, "pfcon", "pfcon1234")
    http = requests.Session()
    token = http.post(args.url + "auth-token/", json={"pfcon_user": "pfcon", "pfcon_password": "pfcon1234"},
                      timeout=30).json()["token"]
    http.headers["Authorization"] = f"Bearer {token}"
    target.info = http.get(args.url + "pluginjobs/", timeout=30).json()
    baseline = rss_mb(args.pid)
    samples, polls, poll_errors = Samples(), [], []
    peak = [baseline]
    done = threading.Event()
    run_id = uuid.uuid4().hex[:8]

    def watch_memory() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_mb(args.pid))
            time.sleep(0.5)

    def poll(index: int) -> None:
        jid = f"bench-{run_id}-{index % args.jobs}"
        start = time.perf_counter()
        try:
            response = http.get(f"{args.url}pluginjobs/{jid}/", timeout=60)
            if response.status_code not in (200, 404):
                poll_errors.append(f"{response.status_code} {response.text[:100]}")
        except requests.RequestException as exc:
            poll_errors.append(str(exc))
        polls.append(time.perf_counter() - start)

    def steady_polls() -> None:
        interval, sent = 1 / args.polls_per_second, 0
        begin = time.perf_counter()
        with ThreadPoolExecutor(64) as pool:
            while time.perf_counter() - begin < args.duration:
                pool.submit(poll, sent)
                sent += 1
                time.sleep(max(0.0, begin + sent * interval - time.perf_counter()))

    def one(index: int) -> None:
        session = Session(target, samples, 600)
        try:
            lifecycle(session, run_id, index, args.image, args.poll_interval)
        except Exception as exc:  # counted and reported
            samples.add("errors", f"{type(exc).__name__}: {exc}")

    threading.Thread(target=watch_memory, daemon=True).start()
    poller = threading.Thread(target=steady_polls)
    start = time.perf_counter()
    poller.start()
    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(one, range(args.jobs)))
    jobs_wall = time.perf_counter() - start
    poller.join()
    done.set()

    def show(label: str, values: list[float]) -> None:
        cells = "  ".join(f"{name} {value * 1000:.0f}ms" for name, value in summary(values).items())
        print(f"  {label:<22} {cells}")

    print(f"== {args.jobs} concurrent lifecycles + {args.polls_per_second} status polls/s for {args.duration:.0f} s "
          f"({target.info['storage_env']}/{target.info['container_env']})")
    print(f"  lifecycles: {len(samples.end_to_end)} done in {jobs_wall:.1f} s "
          f"({len(samples.end_to_end) / jobs_wall * 60:.1f} jobs/min), errors {len(samples.errors)}")
    print(f"  status polls: {len(polls)} sent ({len(polls) / args.duration:.0f}/s), errors {len(poll_errors)}")
    show("steady poll latency", polls)
    show("job POST latency", samples.post)
    show("job GET latency", samples.get)
    cells = "  ".join(f"{name} {value:.1f}s" for name, value in summary(samples.end_to_end).items())
    print(f"  {'end to end':<22} {cells}")
    print(f"  RSS of the service's processes: {baseline:.0f} MB before, {peak[0]:.0f} MB at peak, "
          f"{(peak[0] - baseline) / args.jobs:.1f} MB per in-flight job")
    for message in (samples.errors + poll_errors)[:5]:
        print("  error:", message)


if __name__ == "__main__":
    main()
