"""Lifecycle benchmark for any pfcon-compatible server (ours or a real pfcon).

Runs N complete job lifecycles as CUBE drives them (copy → plugin → file listing → upload →
delete → four DELETEs, each step polled), first one after another, then N at once, and prints
POST and status-GET latency percentiles, plugin submit-to-running time, end-to-end time per
job and throughput. The backend (e.g. fslink/slurm) is read from the server info, so Slurm
figures sit beside Docker's with --compare-url pointing at a second service.

    python benchmarks/lifecycle.py --store-base /var/local/storeBase -n 10
    python benchmarks/lifecycle.py --url http://127.0.0.1:30006/api/v1/ --store-base /srv/sb \\
        --compare-url http://127.0.0.1:30005/api/v1/ --compare-store-base /srv/sb2

It only prints figures; it asserts nothing. Only the given URLs (loopback) are contacted.
"""

from __future__ import annotations

import argparse
import io
import shutil
import threading
import time
import uuid
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import requests

TERMINAL = {"finishedSuccessfully", "finishedWithError", "undefined"}
PLUGIN_SCRIPT = 'cp -r "$1"/. "$2"/; echo done'


@dataclass
class Target:
    """A server under test and the storeBase it shares with this script."""

    url: str
    store_base: Path
    user: str
    password: str
    info: dict = field(default_factory=dict)


@dataclass
class Samples:
    """Latencies (seconds) collected while running jobs; thread-safe appends."""

    post: list[float] = field(default_factory=list)
    get: list[float] = field(default_factory=list)
    end_to_end: list[float] = field(default_factory=list)
    submit_to_running: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, value: float | str) -> None:
        with self.lock:
            getattr(self, kind).append(value)


class Session:
    """One client session (one per thread), re-authenticating on 401."""

    def __init__(self, target: Target, samples: Samples, timeout: float) -> None:
        self.target, self.samples, self.timeout = target, samples, timeout
        self.http = requests.Session()
        self._login()

    def _login(self) -> None:
        answer = self.http.post(self.target.url + "auth-token/", timeout=30,
                                json={"pfcon_user": self.target.user, "pfcon_password": self.target.password})
        answer.raise_for_status()
        self.http.headers["Authorization"] = f"Bearer {answer.json()['token']}"

    def request(self, method: str, path: str, sample: str | None = None, **kwargs) -> requests.Response:
        for _ in range(2):
            start = time.perf_counter()
            response = self.http.request(method, self.target.url + path, timeout=60, **kwargs)
            if response.status_code != 401:
                if sample:
                    self.samples.add(sample, time.perf_counter() - start)
                return response
            self._login()
        return response

    def submit(self, collection: str, data: dict, files: dict | None = None) -> dict:
        response = self.request("POST", f"{collection}/", "post", data=data, files=files)
        if response.status_code != 201:
            raise RuntimeError(f"POST {collection}: {response.status_code} {response.text}")
        return response.json()["compute"]

    def wait(self, collection: str, jid: str, first: dict, poll: float, submitted: float | None = None) -> dict:
        """Poll until terminal; with ``submitted`` (a POST's start), record submit→running."""
        deadline, compute = time.monotonic() + self.timeout, first
        while compute["status"] not in TERMINAL:
            if submitted is not None and compute["status"] != "notStarted":
                self.samples.add("submit_to_running", time.perf_counter() - submitted)
                submitted = None
            if time.monotonic() > deadline:
                raise TimeoutError(f"{collection} {jid} still {compute['status']}")
            time.sleep(poll)
            compute = self.request("GET", f"{collection}/{jid}/", "get").json()["compute"]
        if compute["status"] != "finishedSuccessfully":
            raise RuntimeError(f"{collection} {jid}: {compute}")
        return compute


def make_input(target: Target, run_id: str, jid: str) -> tuple[str, str]:
    base = f"bench/{run_id}/{jid}"
    (target.store_base / base / "in").mkdir(parents=True)
    (target.store_base / base / "out").mkdir(parents=True)
    (target.store_base / base / "in" / "a.txt").write_text("a\n")
    return f"{base}/in", f"{base}/out"


def zipped(directory: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in directory.rglob("*"):
            if path.is_file():
                archive.write(path, path.relative_to(directory).as_posix())
    return buffer.getvalue()


def lifecycle(session: Session, run_id: str, index: int, image: str, poll: float) -> None:
    """One job from copy to the last DELETE, as CUBE runs it."""
    target, jid = session.target, f"bench-{run_id}-{index}"
    input_dir, output_dir = make_input(target, run_id, jid)
    info = target.info
    start = time.perf_counter()
    if info["requires_copy_job"]:
        first = session.submit("copyjobs", {"jid": jid, "input_dirs": [input_dir], "output_dir": output_dir})
        session.wait("copyjobs", jid, first, poll)
    plugin = {"jid": jid, "entrypoint": ["sh", "-c", PLUGIN_SCRIPT, "sh"], "auid": "bench",
              "number_of_workers": 1, "cpu_limit": 1000, "memory_limit": 200, "gpu_limit": 0,
              "image": image, "type": "ds"}
    files = None
    if info["pfcon_innetwork"]:
        plugin.update(input_dirs=[input_dir], output_dir=output_dir)
    else:
        files = {"data_file": ("data.zip", zipped(target.store_base / input_dir))}
    submitted = time.perf_counter()
    session.wait("pluginjobs", jid, session.submit("pluginjobs", plugin, files), poll, submitted)
    query = f"?job_output_path={output_dir}" if info["pfcon_innetwork"] else ""
    session.request("GET", f"pluginjobs/{jid}/file/{query}").raise_for_status()
    if info["requires_upload_job"]:
        first = session.submit("uploadjobs", {"jid": jid, "job_output_path": output_dir})
        session.wait("uploadjobs", jid, first, poll)
    session.wait("deletejobs", jid, session.submit("deletejobs", {"jid": jid}), poll)
    for collection in ("copyjobs", "pluginjobs", "uploadjobs", "deletejobs"):
        if session.request("DELETE", f"{collection}/{jid}/").status_code != 204:
            raise RuntimeError(f"DELETE {collection}/{jid}/ did not answer 204")
    session.samples.add("end_to_end", time.perf_counter() - start)


def run_phase(target: Target, jobs: int, concurrency: int, args: argparse.Namespace) -> tuple[Samples, float]:
    """Run ``jobs`` lifecycles with ``concurrency`` threads; samples and wall time."""
    samples, run_id = Samples(), uuid.uuid4().hex[:8]
    local = threading.local()

    def one(index: int) -> None:
        if not hasattr(local, "session"):
            local.session = Session(target, samples, args.job_timeout)
        try:
            lifecycle(local.session, run_id, index, args.image, args.poll_interval)
        except Exception as exc:  # counted and reported, the benchmark goes on
            samples.add("errors", f"{type(exc).__name__}: {exc}")

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(jobs)))
    wall = time.perf_counter() - start
    shutil.rmtree(target.store_base / "bench" / run_id, ignore_errors=True)
    return samples, wall


def simple_latency(target: Target, method: str, path: str, json: dict | None = None, repeat: int = 30) -> list[float]:
    """Latencies of a request that needs no token (health, auth-token)."""
    values = []
    with requests.Session() as http:
        for _ in range(repeat):
            start = time.perf_counter()
            http.request(method, target.url + path, timeout=30, json=json)
            values.append(time.perf_counter() - start)
    return values


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] if ordered else float("nan")


def summary(values: list[float]) -> dict[str, float]:
    return {name: percentile(values, q) for name, q in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))}


def measure(target: Target, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Every figure for one server."""
    http = requests.Session()
    token = http.post(target.url + "auth-token/", timeout=30,
                      json={"pfcon_user": target.user, "pfcon_password": target.password}).json()["token"]
    target.info = http.get(target.url + "pluginjobs/", headers={"Authorization": f"Bearer {token}"}, timeout=30).json()
    credentials = {"pfcon_user": target.user, "pfcon_password": target.password}
    figures = {
        "health": summary(simple_latency(target, "GET", "health/")),
        "auth": summary(simple_latency(target, "POST", "auth-token/", json=credentials)),
    }
    sequential, _ = run_phase(target, args.jobs, 1, args)
    concurrent, wall = run_phase(target, args.jobs, args.concurrency or args.jobs, args)
    figures["POST"] = summary(sequential.post + concurrent.post)
    figures["GET"] = summary(sequential.get + concurrent.get)
    figures["e2e submit→running"] = summary(sequential.submit_to_running + concurrent.submit_to_running)
    figures["e2e sequential"] = summary(sequential.end_to_end)
    figures["e2e concurrent"] = summary(concurrent.end_to_end)
    figures["throughput"] = {"jobs/min": len(concurrent.end_to_end) / wall * 60}
    figures["errors"] = {"count": float(len(sequential.errors) + len(concurrent.errors))}
    for message in (sequential.errors + concurrent.errors)[:5]:
        print("error:", message)
    return figures


def print_table(label: str, figures: dict[str, dict[str, float]], other: dict | None = None) -> None:
    print(f"\n== {label}")
    for metric, values in figures.items():
        cells = []
        for name, value in values.items():
            if metric.startswith("e2e"):
                shown = f"{value:.2f}s"
            elif metric in ("throughput", "errors"):
                shown = f"{value:.4g}"
            else:
                shown = f"{value * 1000:.1f}ms"
            ratio = ""
            if other and other.get(metric, {}).get(name):
                ratio = f" ({value / other[metric][name]:.2f}x)"
            cells.append(f"{name} {shown}{ratio}")
        print(f"  {metric:<15} " + "  ".join(cells))


def backend(target: Target) -> str:
    """``storage/compute`` of a measured server, from its server info."""
    return f"{target.info.get('storage_env')}/{target.info.get('container_env')}"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:30006/api/v1/")
    parser.add_argument("--store-base", type=Path, required=True, help="the server's storeBase, as seen here")
    parser.add_argument("--user", default="pfcon")
    parser.add_argument("--password", default="pfcon1234")
    parser.add_argument("-n", "--jobs", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=0, help="threads of the concurrent phase (default: N)")
    parser.add_argument("--poll-interval", type=float, default=0.5)
    parser.add_argument("--job-timeout", type=float, default=300)
    parser.add_argument("--image", default="local/busybox:test")
    parser.add_argument("--label", default="ours")
    parser.add_argument("--compare-url", help="a second server (e.g. real pfcon) measured the same way")
    parser.add_argument("--compare-store-base", type=Path)
    parser.add_argument("--compare-label", default="theirs")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    ours_target = Target(args.url, args.store_base, args.user, args.password)
    ours = measure(ours_target, args)
    theirs = theirs_target = None
    if args.compare_url:
        store = args.compare_store_base or args.store_base
        theirs_target = Target(args.compare_url, store, args.user, args.password)
        theirs = measure(theirs_target, args)
    print_table(f"{args.label} ({args.url}, {backend(ours_target)})" + (" — ratios ours/theirs" if theirs else ""),
                ours, theirs)
    if theirs_target and theirs:
        print_table(f"{args.compare_label} ({args.compare_url}, {backend(theirs_target)})", theirs)


if __name__ == "__main__":
    main()
