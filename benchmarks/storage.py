"""Storage benchmark: stage-in and stage-out throughput of the storage blocks.

Swift and S3 (the storage blocks' own stage_in / stage_out) beside the ``swift`` CLI and the AWS
CLI (``aws s3 cp --recursive``), each with its default concurrency (10 object threads, 10
requests), on the same objects, for 1000 x 4 KiB and 1 x 200 MB; then the fslink copy step on a
large local tree beside ``cp -a`` (byte copies, and with hard links).

    export ST_AUTH=http://127.0.0.1:8080/auth/v1.0 ST_USER=test:tester ST_KEY=testing
    export AWS_ENDPOINT_URL=http://127.0.0.1:8080 AWS_ACCESS_KEY_ID=test:tester \\
        AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1
    PFCON_BENCH_AWS_CLI=.awsvenv/bin/aws .venv/bin/python benchmarks/storage.py --work-dir /var/tmp/pfcon-bench

The AWS CLI is ``$PFCON_BENCH_AWS_CLI``, else ``aws`` on the PATH (``pip install awscli`` into a
venv of its own: it pins a botocore other than s3fs's). Prints medians of ``--repeats`` runs;
asserts nothing. Only the given Swift and S3 endpoints (loopback) are used.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from prefect_pfcon.blocks.storage import FSLinkStorage, ObjectStorage, S3Storage, SwiftStorage
from prefect_pfcon.models import CopyJob, UploadJob

CONTAINER = "pfcon-bench"
BUCKET = "pfcon-bench-s3"
SWIFT_CLI = str(Path(sys.executable).with_name("swift"))


@dataclass(frozen=True)
class Dataset:
    """A set of files to move: ``count`` files of ``size`` bytes."""

    label: str
    count: int
    size: int

    @property
    def total_bytes(self) -> int:
        return self.count * self.size

    def write(self, root: Path) -> None:
        for index in range(self.count):
            path = root / f"d{index % 10}" / f"f{index:05d}.bin"
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("wb") as out:
                remaining = self.size
                while remaining:
                    chunk = os.urandom(min(remaining, 4 * 1024 * 1024))
                    out.write(chunk)
                    remaining -= len(chunk)


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


@dataclass(frozen=True)
class Contender:
    """One side of a comparison: ``action(run)`` is timed after ``cleanup()``."""

    action: Callable[[int], object]
    cleanup: Callable[[], object] = lambda: None


def paired_medians(repeats: int, ours: Contender, peer: Contender) -> tuple[float, float]:
    """Median seconds of ``repeats`` runs of each side, the two sides taking turns (the machine
    is shared: load that drifts over a minute then weighs on both sides alike)."""
    samples: tuple[list[float], list[float]] = ([], [])
    for run in range(repeats):
        for side, times in zip((ours, peer), samples):
            side.cleanup()
            os.sync()  # no write-back of an earlier run inside this one's timing
            times.append(timed(lambda: side.action(run)))
    ours.cleanup()
    peer.cleanup()
    return statistics.median(samples[0]), statistics.median(samples[1])


def report(label: str, dataset: Dataset, seconds: float, peer: str, peer_seconds: float) -> None:
    def figures(elapsed: float) -> str:
        return (f"{dataset.total_bytes / elapsed / 1e6:8.1f} MB/s {dataset.count / elapsed:8.1f} obj/s "
                f"{elapsed:7.2f} s")

    print(f"{label:<28} {dataset.label:<12} ours {figures(seconds)}")
    print(f"{'':<28} {'':<12} {peer:<4} {figures(peer_seconds)}   ratio ours/{peer} "
          f"{seconds / peer_seconds:.2f}")


class ObjectBench:
    """Stage-in / stage-out of an object-storage block, ours against a command-line client."""

    label: str
    storage: ObjectStorage

    def __init__(self, work: Path, repeats: int) -> None:
        self.work = work
        self.repeats = repeats

    def cli_upload(self, source: Path, prefix: str) -> list[str]:
        """The client's command that uploads the files under ``source`` as ``prefix/...``."""
        raise NotImplementedError

    def cli_download(self, prefix: str, target: Path) -> list[str]:
        """The client's command that downloads ``prefix/...`` into ``target``."""
        raise NotImplementedError

    def run(self, dataset: Dataset) -> None:
        objects = self.storage.objects()
        tag = uuid.uuid4().hex[:6]
        outgoing = self.storage.outgoing("bench-out")
        shutil.rmtree(outgoing, ignore_errors=True)
        dataset.write(outgoing)

        def ours_out(run: int) -> None:
            self.storage.stage_out(UploadJob(jid="bench-out", job_output_path=f"ours-{tag}-{run}"))

        def cli_out(run: int) -> None:
            subprocess.run(self.cli_upload(outgoing, f"cli-{tag}-{run}"), cwd=outgoing, check=True,
                           stdout=subprocess.DEVNULL)

        out_ours, out_cli = paired_medians(self.repeats, Contender(ours_out), Contender(cli_out))
        report(f"{self.label} stage-out (upload)", dataset, out_ours, "cli", out_cli)

        incoming = self.storage.incoming("bench-in")
        cli_dir = self.work / "cli-download"

        def ours_in(run: int) -> None:
            self.storage.stage_in(CopyJob(jid="bench-in", input_dirs=[f"ours-{tag}-0"], output_dir="none"))

        def cli_in(run: int) -> None:
            subprocess.run(self.cli_download(f"ours-{tag}-0", cli_dir), check=True, stdout=subprocess.DEVNULL)

        in_ours, in_cli = paired_medians(
            self.repeats,
            Contender(ours_in, lambda: shutil.rmtree(incoming, ignore_errors=True)),
            Contender(cli_in, lambda: shutil.rmtree(cli_dir, ignore_errors=True)),
        )
        report(f"{self.label} stage-in (download)", dataset, in_ours, "cli", in_cli)
        for name in objects.find(""):
            if tag in name:
                objects.rm_file(name)


class SwiftBench(ObjectBench):
    """Swift, ours against the swift CLI (10 object threads by default)."""

    label = "swift"

    def __init__(self, work: Path, repeats: int, workers: int) -> None:
        super().__init__(work, repeats)
        self.storage = SwiftStorage(
            store_base=str(work / "storeBase"),
            auth_url=os.environ["ST_AUTH"],
            username=os.environ["ST_USER"],
            key=os.environ["ST_KEY"],
            container_name=CONTAINER,
            transfer_workers=workers,
        )
        self.storage.prepare_upload(self.storage.objects())
        self.cli_auth = ["-A", os.environ["ST_AUTH"], "-U", os.environ["ST_USER"], "-K", os.environ["ST_KEY"]]

    def cli_upload(self, source: Path, prefix: str) -> list[str]:
        return [SWIFT_CLI, *self.cli_auth, "upload", CONTAINER, ".", "--object-name", prefix]

    def cli_download(self, prefix: str, target: Path) -> list[str]:
        return [SWIFT_CLI, *self.cli_auth, "download", CONTAINER, "--prefix", f"{prefix}/", "-D", str(target)]


class S3Bench(ObjectBench):
    """S3, ours against the AWS CLI's ``aws s3 cp --recursive`` (10 requests at once by default);
    both read the endpoint and keys from the AWS_* variables."""

    label = "s3"

    def __init__(self, work: Path, repeats: int, workers: int, cli: str) -> None:
        super().__init__(work, repeats)
        self.cli = cli
        self.storage = S3Storage(
            store_base=str(work / "storeBase"),
            endpoint_url=os.environ["AWS_ENDPOINT_URL"],
            access_key=os.environ["AWS_ACCESS_KEY_ID"],
            secret_key=os.environ["AWS_SECRET_ACCESS_KEY"],
            region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
            bucket_name=BUCKET,
            transfer_workers=workers,
        )
        s3 = self.storage.objects().fs
        if not s3.exists(BUCKET):
            s3.mkdir(BUCKET)

    def cli_upload(self, source: Path, prefix: str) -> list[str]:
        return [self.cli, "s3", "cp", "--recursive", "--only-show-errors", str(source), f"s3://{BUCKET}/{prefix}/"]

    def cli_download(self, prefix: str, target: Path) -> list[str]:
        return [self.cli, "s3", "cp", "--recursive", "--only-show-errors", f"s3://{BUCKET}/{prefix}/", str(target)]


def aws_cli() -> str:
    """The AWS CLI: ``$PFCON_BENCH_AWS_CLI``, else ``aws`` on the PATH."""
    cli = os.environ.get("PFCON_BENCH_AWS_CLI") or shutil.which("aws")
    if not cli:
        sys.exit("no AWS CLI: pip install awscli (a venv of its own is safest) and set PFCON_BENCH_AWS_CLI "
                 "to its aws, or pass --skip-s3")
    return cli


def fslink_bench(work: Path, dataset: Dataset, repeats: int, workers: int) -> None:
    """The fslink copy step on a local tree, beside ``cp -a`` of the same tree."""
    store = work / "storeBase"
    source = store / "home" / "bench" / "tree"
    shutil.rmtree(source, ignore_errors=True)
    dataset.write(source)
    job = CopyJob(jid="bench-fslink", input_dirs=["home/bench/tree"], output_dir="home/bench/out")
    target = work / "cp-copy"
    for hardlink in (False, True):
        storage = FSLinkStorage(store_base=str(store), transfer_workers=workers, hardlink_inputs=hardlink)
        incoming = storage.incoming(job.jid)
        ours, cp = paired_medians(
            repeats,
            Contender(lambda run: storage.stage_in(job), lambda: shutil.rmtree(incoming, ignore_errors=True)),
            Contender(lambda run: subprocess.run(["cp", "-a", str(source), str(target)], check=True),
                      lambda: shutil.rmtree(target, ignore_errors=True)),
        )
        report(f"fslink copy ({'hard links' if hardlink else 'byte copies'})", dataset, ours, "cp", cp)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", type=Path, default=Path("/var/tmp/pfcon-bench"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=10, help="transfer_workers of the blocks")
    parser.add_argument("--small", type=int, default=1000, help="number of 4 KiB objects")
    parser.add_argument("--large-mb", type=int, default=200)
    parser.add_argument("--tree-files", type=int, default=10000, help="files in the fslink tree")
    parser.add_argument("--skip-swift", action="store_true", help="no Swift figures")
    parser.add_argument("--skip-s3", action="store_true", help="no S3 figures")
    parser.add_argument("--skip-fslink", action="store_true", help="no fslink figures")
    args = parser.parse_args()

    shutil.rmtree(args.work_dir, ignore_errors=True)
    args.work_dir.mkdir(parents=True)
    print(f"median of {args.repeats} runs, {args.workers} transfer workers, {os.cpu_count()} CPUs")
    benches: list[ObjectBench] = []
    if not args.skip_swift:
        benches.append(SwiftBench(args.work_dir, args.repeats, args.workers))
    if not args.skip_s3:
        benches.append(S3Bench(args.work_dir, args.repeats, args.workers, aws_cli()))
    for bench in benches:
        bench.run(Dataset(f"{args.small}x4KiB", args.small, 4096))
        bench.run(Dataset(f"1x{args.large_mb}MB", 1, args.large_mb * 1_000_000))
    if not args.skip_fslink:
        fslink_bench(args.work_dir, Dataset(f"{args.tree_files}x16KiB", args.tree_files, 16384), args.repeats,
                     args.workers)
        fslink_bench(args.work_dir, Dataset("4x50MB", 4, 50_000_000), args.repeats, args.workers)
    shutil.rmtree(args.work_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
