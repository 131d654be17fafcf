"""Lifecycle benchmark for any pfcon-compatible server (ours or a real pfcon).

Runs N complete job lifecycles as CUBE drives them (copy → plugin → file listing → upload →
delete → four DELETEs, each step polled), first one after another, then N at once, and prints
POST and status-GET latency percentiles, plugin submit-to-running time, end-to-end time per
job and throughput. The backend (e.g. fslink/slurm) is read from the server info, so Slurm
figures sit beside Docker's with --compare-url pointing at a second service.

With --pid (the ``prefect-pfcon up`` process) it also prints, per lifecycle of each phase, the
CPU seconds of the service and, when its Prefect server is another process (--prefect-pid),
of that server apart; the HTTP requests that Prefect server answered (counted in its access
log, which the embedded default writes to its own output: start the service with
PREFECT_SERVER_LOGGING_LEVEL=INFO), and the RSS of the process tree at the end. With
--compare-pid (e.g. real pfcon's gunicorn master) the same CPU and RSS figures of that tree.
--legacy drives the previous API (``jobs/``, pfcon ≤ 5.3.1, python-pfconclient 3.3.0) instead:
one POST (the server stages the inputs before answering), polls, the file listing, one DELETE.

    python benchmarks/lifecycle.py --store-base /var/local/storeBase -n 10
    python benchmarks/lifecycle.py --url http://127.0.0.1:30006/api/v1/ --store-base /srv/sb \\
        --pid <up PID> --compare-url http://127.0.0.1:30005/api/v1/ --compare-store-base /srv/sb2 \\
        --compare-pid <gunicorn master PID>

It only prints figures; it asserts nothing. Only the given URLs (loopback) are contacted.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import threading
import time
import uuid
import zipfile
from concurrent.futures import ThreadPoolExecutor
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import requests

from access_log import AccessLog, http_requests
from processes import cpu_seconds, rss_mb, stdout_file

TERMINAL = {"finishedSuccessfully", "finishedWithError", "undefined"}
PLUGIN_SCRIPT = 'cp -r "$1"/. "$2"/; echo done'
TOP_ENDPOINTS = 8


@dataclass
class Target:
    """A server under test and the storeBase it shares with this script."""

    url: str
    store_base: Path
    user: str
    password: str
    owner: int | None = None
    """The user the server writes the storeBase as, when not this script's (a container's)."""
    info: dict = field(default_factory=dict)


def is_embedded_default(pid: int) -> bool:
    """Whether ``pid`` runs ``prefect-pfcon up`` (whose Prefect server is in-process)."""
    command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    return b"up" in command and any(b"prefect-pfcon" in part or b"prefect_pfcon" in part for part in command)


@dataclass
class Usage:
    """CPU and Prefect requests of a measured server's processes over one phase."""

    service_cpu: float
    prefect_cpu: float | None
    requests: Counter[str] | None


class Probe:
    """Reads the CPU, memory and Prefect access log of a server's processes (all optional).

    ``pid`` is the service (``prefect-pfcon up``, or gunicorn's master), ``prefect_pid`` its
    Prefect server when that is another process (a compose or Kubernetes deployment's). The
    access log is the file the Prefect server's standard output goes to: the service's own
    when the server runs in it (the embedded default). The service's figures leave a separate
    Prefect server's tree out.
    """

    def __init__(self, pid: int | None, prefect_pid: int | None = None, prefect_log: Path | None = None) -> None:
        self.pid = pid
        self.prefect_pid = prefect_pid
        server_pid = self.prefect_pid or (pid if pid and is_embedded_default(pid) else None)
        log = prefect_log or (stdout_file(server_pid) if server_pid else None)
        self.log = AccessLog(log) if log else None

    def _exclude(self) -> set[int]:
        return {self.prefect_pid} if self.prefect_pid else set()

    def mark(self) -> tuple[float, float | None, int | None]:
        """Where counting starts: both CPU times and the access log's end."""
        service = cpu_seconds(self.pid, self._exclude()) if self.pid else float("nan")
        prefect = cpu_seconds(self.prefect_pid) if self.prefect_pid else None
        return service, prefect, self.log.mark() if self.log else None

    def since(self, mark: tuple[float, float | None, int | None]) -> Usage:
        """What was used after ``mark``."""
        service, prefect, offset = self.mark()
        return Usage(service - mark[0],
                     prefect - mark[1] if prefect is not None and mark[1] is not None else None,
                     self.log.since(mark[2]) if self.log and mark[2] is not None else None)

    def rss(self) -> dict[str, float]:
        """Resident memory now (MB): service, Prefect server, whole tree."""
        if not self.pid:
            return {}
        figures = {"service": rss_mb(self.pid, self._exclude())}
        if self.prefect_pid:
            figures["prefect"] = rss_mb(self.prefect_pid)
        figures["total"] = sum(figures.values())
        return figures


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
            response = self.request("GET", f"{collection}/{jid}/", "get")
            if response.status_code != 200:
                raise RuntimeError(f"GET {collection}/{jid}/: {response.status_code} {response.text[:300]}")
            compute = response.json()["compute"]
        if compute["status"] != "finishedSuccessfully":
            raise RuntimeError(f"{collection} {jid}: {compute}")
        return compute


def make_input(target: Target, run_id: str, jid: str) -> tuple[str, str]:
    base = f"bench/{run_id}/{jid}"
    (target.store_base / base / "in").mkdir(parents=True)
    (target.store_base / base / "out").mkdir(parents=True)
    (target.store_base / base / "in" / "a.txt").write_text("a\n")
    if target.owner is not None:
        for made in ("bench", f"bench/{run_id}", base, f"{base}/in", f"{base}/out", f"{base}/in/a.txt"):
            os.chown(target.store_base / made, target.owner, target.owner)
    return f"{base}/in", f"{base}/out"


def zipped(directory: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in directory.rglob("*"):
            if path.is_file():
                archive.write(path, path.relative_to(directory).as_posix())
    return buffer.getvalue()


def plugin_request(target: Target, jid: str, input_dir: str, output_dir: str, image: str) -> tuple[dict, dict | None]:
    """The form fields (and in zipfile mode the zipped inputs) of a plugin POST."""
    plugin = {"jid": jid, "entrypoint": ["sh", "-c", PLUGIN_SCRIPT, "sh"], "auid": "bench",
              "number_of_workers": 1, "cpu_limit": 1000, "memory_limit": 200, "gpu_limit": 0,
              "image": image, "type": "ds"}
    if target.info["pfcon_innetwork"]:
        plugin.update(input_dirs=[input_dir], output_dir=output_dir)
        return plugin, None
    return plugin, {"data_file": ("data.zip", zipped(target.store_base / input_dir))}


def lifecycle(session: Session, run_id: str, index: int, image: str, poll: float) -> None:
    """One job from copy to the last DELETE, as CUBE runs it."""
    target, jid = session.target, f"bench-{run_id}-{index}"
    input_dir, output_dir = make_input(target, run_id, jid)
    info = target.info
    start = time.perf_counter()
    if info["requires_copy_job"]:
        first = session.submit("copyjobs", {"jid": jid, "input_dirs": [input_dir], "output_dir": output_dir})
        session.wait("copyjobs", jid, first, poll)
    plugin, files = plugin_request(target, jid, input_dir, output_dir, image)
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


def legacy_lifecycle(session: Session, run_id: str, index: int, image: str, poll: float) -> None:
    """One job through the previous API (pfcon ≤ 5.3.1), in python-pfconclient 3.3.0's order:
    POST ``jobs/`` (the server stages the inputs first), status polls, the file listing (in
    swift mode the server uploads first), one DELETE (the server removes the job's data)."""
    target, jid = session.target, f"bench-{run_id}-{index}"
    input_dir, output_dir = make_input(target, run_id, jid)
    start = time.perf_counter()
    plugin, files = plugin_request(target, jid, input_dir, output_dir, image)
    session.wait("jobs", jid, session.submit("jobs", plugin, files), poll, start)
    query = f"?job_output_path={output_dir}" if target.info["pfcon_innetwork"] else ""
    session.request("GET", f"jobs/{jid}/file/{query}").raise_for_status()
    if session.request("DELETE", f"jobs/{jid}/").status_code != 204:
        raise RuntimeError(f"DELETE jobs/{jid}/ did not answer 204")
    session.samples.add("end_to_end", time.perf_counter() - start)


def run_phase(target: Target, jobs: int, concurrency: int, args: argparse.Namespace,
              probe: Probe) -> tuple[Samples, float, Usage]:
    """Run ``jobs`` lifecycles with ``concurrency`` threads; samples, wall time, usage."""
    samples, run_id = Samples(), uuid.uuid4().hex[:8]
    local = threading.local()

    def one(index: int) -> None:
        if not hasattr(local, "session"):
            local.session = Session(target, samples, args.job_timeout)
        try:
            steps = legacy_lifecycle if args.legacy else lifecycle
            steps(local.session, run_id, index, args.image, args.poll_interval)
        except Exception as exc:  # counted and reported, the benchmark goes on
            samples.add("errors", f"{type(exc).__name__}: {exc}")

    mark = probe.mark()
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(jobs)))
    wall = time.perf_counter() - start
    usage = probe.since(mark)
    shutil.rmtree(target.store_base / "bench" / run_id, ignore_errors=True)
    return samples, wall, usage


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


def usage_figures(per: str, usage: Usage, divisor: float, figures: dict[str, dict[str, float]]) -> None:
    """CPU and Prefect requests of one phase ``per`` lifecycle or second, added to ``figures``."""
    cpu = {"service": usage.service_cpu / divisor}
    if usage.prefect_cpu is not None:
        cpu["prefect"] = usage.prefect_cpu / divisor
    cpu["total"] = sum(cpu.values())
    figures[f"CPU {per}"] = cpu
    if usage.requests is not None:
        http = http_requests(usage.requests)
        figures[f"requests {per}"] = {"http": http / divisor,
                                      "websockets": (sum(usage.requests.values()) - http) / divisor}


def print_endpoints(label: str, usage: Usage, jobs: int) -> None:
    """The endpoints the Prefect server was asked most, per lifecycle."""
    if not usage.requests:
        return
    print(f"  Prefect requests per lifecycle, {label}:")
    for name, count in usage.requests.most_common(TOP_ENDPOINTS):
        print(f"    {count / jobs:6.2f}  {name}")


def measure(target: Target, args: argparse.Namespace, probe: Probe) -> dict[str, dict[str, float]]:
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
    if args.idle_seconds and probe.pid:
        mark = probe.mark()
        time.sleep(args.idle_seconds)
        usage_figures("per s idle", probe.since(mark), args.idle_seconds, figures)
    sequential, _, sequential_usage = run_phase(target, args.jobs, 1, args, probe)
    concurrent, wall, concurrent_usage = run_phase(target, args.jobs, args.concurrency or args.jobs, args, probe)
    figures["POST"] = summary(sequential.post + concurrent.post)
    figures["GET"] = summary(sequential.get + concurrent.get)
    if started := sequential.submit_to_running + concurrent.submit_to_running:
        figures["e2e submit→running"] = summary(started)
    figures["e2e sequential"] = summary(sequential.end_to_end)
    figures["e2e concurrent"] = summary(concurrent.end_to_end)
    figures["throughput"] = {"jobs/min": len(concurrent.end_to_end) / wall * 60}
    figures["errors"] = {"count": float(len(sequential.errors) + len(concurrent.errors))}
    if probe.pid:
        usage_figures("per job seq", sequential_usage, args.jobs, figures)
        usage_figures("per job conc", concurrent_usage, args.jobs, figures)
        figures["RSS at end"] = probe.rss()
    for message in (sequential.errors + concurrent.errors)[:5]:
        print("error:", message)
    print_endpoints(f"{target.url}, sequential", sequential_usage, args.jobs)
    print_endpoints(f"{target.url}, concurrent", concurrent_usage, args.jobs)
    return figures


def shown(metric: str, value: float) -> str:
    """A figure with its unit."""
    if metric.startswith("e2e"):
        return f"{value:.2f}s"
    if metric.startswith("CPU"):
        return f"{value:.3f}s"
    if metric.startswith("requests"):
        return f"{value:.1f}"
    if metric.startswith("RSS"):
        return f"{value:.0f}MB"
    if metric in ("throughput", "errors"):
        return f"{value:.4g}"
    return f"{value * 1000:.1f}ms"


def print_table(label: str, figures: dict[str, dict[str, float]], other: dict | None = None) -> None:
    print(f"\n== {label}")
    for metric, values in figures.items():
        cells = []
        for name, value in values.items():
            ratio = ""
            if other and other.get(metric, {}).get(name):
                ratio = f" ({value / other[metric][name]:.2f}x)"
            cells.append(f"{name} {shown(metric, value)}{ratio}")
        print(f"  {metric:<24} " + "  ".join(cells))


def backend(target: Target) -> str:
    """``storage/compute`` of a measured server, from its server info."""
    return f"{target.info.get('storage_env')}/{target.info.get('container_env')}"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:30006/api/v1/")
    parser.add_argument("--store-base", type=Path, required=True, help="the server's storeBase, as seen here")
    parser.add_argument("--owner", type=int, help="uid the server writes the storeBase as (a container's user)")
    parser.add_argument("--compare-owner", type=int)
    parser.add_argument("--compare-user", help="the compared server's user (default: --user)")
    parser.add_argument("--compare-password", help="its password (default: --password)")
    parser.add_argument("--user", default="pfcon")
    parser.add_argument("--password", default="pfcon1234")
    parser.add_argument("-n", "--jobs", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=0, help="threads of the concurrent phase (default: N)")
    parser.add_argument("--poll-interval", type=float, default=0.5)
    parser.add_argument("--job-timeout", type=float, default=300)
    parser.add_argument("--image", default="local/busybox:test")
    parser.add_argument("--label", default="ours")
    parser.add_argument("--legacy", action="store_true",
                        help="drive the previous API (jobs/, pfcon ≤ 5.3.1) instead of the current one")
    parser.add_argument("--compare-url", help="a second server (e.g. real pfcon) measured the same way")
    parser.add_argument("--compare-store-base", type=Path)
    parser.add_argument("--compare-label", default="theirs")
    parser.add_argument("--pid", type=int, help="PID of the service (prefect-pfcon up): CPU, requests, RSS")
    parser.add_argument("--prefect-pid", type=int, help="its Prefect server, when another process")
    parser.add_argument("--prefect-log", type=Path, help="that server's log (default: where its stdout goes)")
    parser.add_argument("--compare-pid", type=int, help="PID of the compared server (e.g. gunicorn's master)")
    parser.add_argument("--compare-prefect-pid", type=int, help="the compared service's Prefect server")
    parser.add_argument("--compare-prefect-log", type=Path)
    parser.add_argument("--idle-seconds", type=float, default=5,
                        help="with a PID: first measure this long with no jobs (0: skip)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    ours_target = Target(args.url, args.store_base, args.user, args.password, args.owner)
    ours = measure(ours_target, args, Probe(args.pid, args.prefect_pid, args.prefect_log))
    theirs = theirs_target = None
    if args.compare_url:
        store = args.compare_store_base or args.store_base
        theirs_target = Target(args.compare_url, store, args.compare_user or args.user,
                               args.compare_password or args.password, args.compare_owner)
        theirs = measure(theirs_target, args,
                         Probe(args.compare_pid, args.compare_prefect_pid, args.compare_prefect_log))
    print_table(f"{args.label} ({args.url}, {backend(ours_target)})" + (" — ratios ours/theirs" if theirs else ""),
                ours, theirs)
    if theirs_target and theirs:
        print_table(f"{args.compare_label} ({args.compare_url}, {backend(theirs_target)})", theirs)


if __name__ == "__main__":
    main()
