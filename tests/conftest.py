"""Fixtures that start the real service: a Prefect server, the pfcon API and its runner.

The first service (fslink) is the embedded default exactly as `prefect-pfcon up` runs it,
with its own Prefect server; the others (filesystem, swift, s3, zipfile) share that server, as
scale-out API replicas would. All drive real containers on the local Docker engine; the
swift service talks to the real Swift the test command starts (ST_AUTH, ST_USER, ST_KEY), the
s3 service to that Swift's S3 API (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).

Every Prefect server of the session requires credentials, one auth string for the session:
it is put in this process's environment (``PREFECT_API_AUTH_STRING``) before anything imports
Prefect, so this process's Prefect clients, the `prefect` CLI runs and the services inherit
it; a service with its own Prefect server makes it that server's auth string.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest
import requests
from pfconclient.client import Client

from prefect_pfcon.lib.trees import remove_tree
from private_dockerd import PrivateDockerd

TEST_SECRET = "test-secret-key-not-for-production"
READY_TIMEOUT = 240
EDIT_HEARD_SECONDS = 60  # a block edit reaches a service on Prefect's event stream
SWIFT_TEST_CONTAINER = "pfcon-tests"
SWARM_GPU = "h6-gpu-0"  # the one NVIDIA-GPU the test swarm's node advertises (a name, no device)
S3_TEST_BUCKET = "pfcon-s3-tests"
ZIP_LIMIT_MB = 20
UPLOAD_LIMIT_MB = 30
SESSION_LABEL = f"org.test.session={uuid.uuid4().hex[:12]}"  # on the containers of this session's jobs
TEST_PREFECT_AUTH = f"pfcon-tests:{secrets.token_urlsafe(16)}"
os.environ["PREFECT_API_AUTH_STRING"] = TEST_PREFECT_AUTH


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Service:
    """A running pfcon API and what tests need to talk to it: a `prefect-pfcon up` these tests
    started (its process and output), or a deployment's (deploy/)."""

    url: str
    store_base: Path
    prefect_api_url: str
    process: subprocess.Popen[str] | None = None
    output: list[str] = field(default_factory=list)
    prefect_auth: str = TEST_PREFECT_AUTH
    database: str = ""

    def token(self) -> str:
        return Client.get_auth_token(self.url + "auth-token/", "pfcon", "pfcon1234")

    def client(self) -> Client:
        return Client(self.url, self.token())

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}"}

    def prefect(self, method: str, path: str, **kwargs) -> requests.Response:
        """A request to this service's Prefect server API (``path`` starts with ``/``), with
        its credentials."""
        kwargs.setdefault("timeout", 30)
        kwargs.setdefault("auth", basic_auth(self.prefect_auth))
        return requests.request(method, self.prefect_api_url + path, **kwargs)


def basic_auth(auth_string: str) -> tuple[str, str]:
    """A Prefect auth string (``user:password``) as requests' basic auth."""
    user, _, password = auth_string.partition(":")
    return user, password


def _start_service(
    tmp: Path, name: str, storage: str | None, env_extra: dict[str, str | None], prefect_port: int,
    port: int | None = None, *, store_base: Path | None = None, cwd: Path | None = None,
) -> Service:
    """``prefect-pfcon up`` with the test settings and ``env_extra`` (``None`` unsets a variable),
    with ``--storage`` (unless ``None``: the configuration decides) in ``cwd`` (where a ``.env``
    file is read)."""
    store_base = store_base or tmp / f"storeBase-{name}"
    store_base.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    inherited = {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"}
    state_dir = tmp / f"state-{name}"
    settings = {
        **inherited,
        "PFCON_STATE_DIR": str(state_dir),
        "SECRET_KEY": TEST_SECRET,
        "PFCON_STORAGE_BLOCK": f"{name}-storage",
        "PFCON_COMPUTE_BLOCK": f"{name}-compute",
        "JOB_LABELS": f"org.test.suite=prefect-pfcon,{SESSION_LABEL}",
        **env_extra,
    }
    env = {key: value for key, value in settings.items() if value is not None}
    command = [
        sys.executable, "-m", "prefect_pfcon.cli", "up", "--port", str(port),
        "--storebase", str(store_base), "--prefect-port", str(prefect_port),
        *(["--storage", storage] if storage else []),
    ]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd
    )
    output: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            if "ready" in line:
                ready.set()
        ready.set()  # the process ended: no use waiting

    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(READY_TIMEOUT) or process.poll() is not None:
        process.terminate()
        raise RuntimeError(f"{name} service not ready:\n{''.join(output[-50:])}")
    return Service(
        url=f"http://127.0.0.1:{port}/api/v1/",
        store_base=store_base,
        prefect_api_url=env.get("PREFECT_API_URL") or f"http://127.0.0.1:{prefect_port}/api",
        process=process,
        output=output,
        prefect_auth=env.get("PREFECT_SERVER_API_AUTH_STRING") or env.get("PREFECT_API_AUTH_STRING")
        or (state_dir / "prefect-auth").read_text().strip(),
    )


def _stop(service: Service) -> None:
    service.process.terminate()
    try:
        service.process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        service.process.kill()


@pytest.fixture(scope="session", autouse=True)
def remove_session_containers() -> Iterator[None]:
    """At the end, remove the containers this session's jobs left (only those: its label;
    Kubernetes' own are its kubelet's to remove)."""
    yield
    client = docker.from_env()
    for container in client.containers.list(all=True, ignore_removed=True, filters={"label": SESSION_LABEL}):
        if "io.kubernetes.pod.uid" not in container.labels:
            container.remove(force=True)


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    client = docker.from_env()
    client.ping()
    return client


@pytest.fixture(scope="session")
def session_tmp() -> Iterator[Path]:
    # Not pytest's tmp_path: bind-mount sources must be real host paths the engine sees.
    base = Path(os.environ.get("PFCON_TEST_TMP", "/var/tmp/prefect-pfcon-tests"))
    remove_tree(base, ignore_errors=True)  # iterative: tests leave trees deeper than shutil can remove
    base.mkdir(parents=True)
    yield base


@pytest.fixture(scope="session")
def fslink_service(session_tmp: Path, docker_client: docker.DockerClient) -> Iterator[Service]:
    service = _start_service(
        session_tmp, "fslink", "fslink", {"PREFECT_HOME": str(session_tmp / "prefect-home")},
        free_port(),
    )
    yield service
    _stop(service)


@pytest.fixture(scope="session")
def filesystem_service(session_tmp: Path, fslink_service: Service) -> Iterator[Service]:
    service = _start_replica(session_tmp, fslink_service, "filesystem", {})
    yield service
    _stop(service)


def _start_replica(
    session_tmp: Path, primary: Service, storage: str | None, env: dict[str, str], name: str | None = None,
    **options,
) -> Service:
    """Another service with ``storage`` on the primary's Prefect server."""
    shared = {"PREFECT_API_URL": primary.prefect_api_url, "PREFECT_HOME": str(session_tmp / "prefect-home")}
    return _start_service(session_tmp, name or storage, storage, {**shared, **env}, 0, **options)


@contextmanager
def fslink_replica(session_tmp: Path, primary: Service, name: str, env: dict[str, str]) -> Iterator[Service]:
    """An fslink replica with ``env``, its storeBase holding the fslink fixture tree."""
    from fixtures_tree import make_fslink_fixture

    replica = _start_replica(session_tmp, primary, "fslink", env, name=name)
    make_fslink_fixture(replica.store_base)
    try:
        yield replica
    finally:
        _stop(replica)


@pytest.fixture(scope="session")
def swift_credentials() -> dict[str, str]:
    """The test Swift's credentials, from the test command's environment."""
    missing = [name for name in ("ST_AUTH", "ST_USER", "ST_KEY") if not os.environ.get(name)]
    if missing:
        raise RuntimeError(f"{missing} unset: run the tests with scripts/test.sh, which starts Swift")
    return {
        "SWIFT_AUTH_URL": os.environ["ST_AUTH"],
        "SWIFT_USERNAME": os.environ["ST_USER"],
        "SWIFT_KEY": os.environ["ST_KEY"],
        "SWIFT_CONTAINER_NAME": SWIFT_TEST_CONTAINER,
    }


@pytest.fixture(scope="session")
def swift_service(session_tmp: Path, fslink_service: Service, swift_credentials) -> Iterator[Service]:
    service = _start_replica(session_tmp, fslink_service, "swift", swift_credentials)
    yield service
    _stop(service)


@pytest.fixture(scope="session")
def s3_credentials() -> dict[str, str]:
    """The test S3 server's settings (the test Swift's s3api), from the test command's environment."""
    names = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    missing = [name for name in names if not os.environ.get(name)]
    if missing:
        raise RuntimeError(f"{missing} unset: run the tests with scripts/test.sh, which starts Swift's S3 API")
    return {
        "S3_ENDPOINT_URL": os.environ["AWS_ENDPOINT_URL"],
        "S3_ACCESS_KEY": os.environ["AWS_ACCESS_KEY_ID"],
        "S3_SECRET_KEY": os.environ["AWS_SECRET_ACCESS_KEY"],
        "S3_REGION_NAME": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        "S3_BUCKET_NAME": S3_TEST_BUCKET,
    }


@pytest.fixture(scope="session")
def s3_service(session_tmp: Path, fslink_service: Service, s3_credentials) -> Iterator[Service]:
    service = _start_replica(session_tmp, fslink_service, "s3", s3_credentials)
    yield service
    _stop(service)


def block_edits_heard(service: Service, headers: dict[str, str]) -> float:
    """How many block edits the service has heard of (its ``pfcon_block_edits_total``)."""
    metrics = requests.get(service.url.removesuffix("/api/v1/") + "/metrics", headers=headers, timeout=30)
    metrics.raise_for_status()
    return float(re.search(r"^pfcon_block_edits_total (\S+)$", metrics.text, re.MULTILINE).group(1))


@contextmanager
def block_fields(service: Service, block_name: str, **fields: Any) -> Iterator[None]:
    """Change fields of a saved block (as an operator would in the Prefect UI), then put them
    back; each change counts as made once the service has heard of it (the steps it starts
    from then on use the block as edited)."""
    found = service.prefect("post", "/block_documents/filter", json={
        "block_documents": {"name": {"any_": [block_name]}}, "include_secrets": True}).json()
    document = found[0]
    original = {name: document["data"][name] for name in fields}
    headers = service.headers()

    def update(values: dict[str, str]) -> None:
        before = block_edits_heard(service, headers)
        response = service.prefect("patch", f"/block_documents/{document['id']}",
                                   json={"data": values, "merge_existing_data": True})
        response.raise_for_status()
        deadline = time.monotonic() + EDIT_HEARD_SECONDS
        while block_edits_heard(service, headers) == before:
            assert time.monotonic() < deadline, f"the service never heard of the edit of {block_name}"
            time.sleep(0.1)

    update(fields)
    try:
        yield
    finally:
        update(original)


@pytest.fixture(scope="session")
def zipfile_service(session_tmp: Path, fslink_service: Service) -> Iterator[Service]:
    service = _start_replica(
        session_tmp, fslink_service, "zipfile",
        {"PFCON_ZIP_MAX_UNPACKED_MB": str(ZIP_LIMIT_MB), "PFCON_MAX_UPLOAD_MB": str(UPLOAD_LIMIT_MB)}
    )
    yield service
    _stop(service)


@pytest.fixture(scope="session")
def slurm_service(session_tmp: Path, fslink_service: Service) -> Iterator[Service]:
    """fslink storage with plugins run as jobs of the real Slurm the test command starts."""
    if subprocess.run(["sinfo", "--noheader"], capture_output=True).returncode != 0:
        raise RuntimeError("Slurm is not running: run the tests with scripts/test.sh, which starts it")
    service = _start_replica(session_tmp, fslink_service, "fslink", {"CONTAINER_ENV": "slurm"}, name="slurm")
    yield service
    _stop(service)


@pytest.fixture(scope="session")
def kubernetes_service(session_tmp: Path, fslink_service: Service) -> Iterator[Service]:
    """fslink storage with plugins run as Jobs of the real Kubernetes the test command starts
    (the storeBase as a host-path volume of the single node)."""
    if not os.environ.get("KUBECONFIG"):
        raise RuntimeError("KUBECONFIG unset: run the tests with scripts/test.sh, which starts Kubernetes")
    env = {"CONTAINER_ENV": "kubernetes", "COMPUTE_VOLUME_TYPE": "host"}
    service = _start_replica(session_tmp, fslink_service, "fslink", env, name="kubernetes")
    yield service
    _stop(service)


@pytest.fixture(scope="session")
def swarm_engine(session_tmp: Path, docker_client: docker.DockerClient) -> Iterator[PrivateDockerd]:
    """A single-node Docker Swarm on a dockerd of the tests' own (not the shared engine), with
    the test images loaded; left and stopped at the end."""
    engine = PrivateDockerd(session_tmp / "dockerd-swarm", ("--node-generic-resource", f"NVIDIA-GPU={SWARM_GPU}"))
    engine.start()
    try:
        engine.load(docker_client, "local/busybox:test")
        engine.swarm_init()
        yield engine
        engine.swarm_leave()
    finally:
        engine.stop()


@pytest.fixture(scope="session")
def swarm_service(session_tmp: Path, fslink_service: Service, swarm_engine: PrivateDockerd) -> Iterator[Service]:
    """fslink storage with plugins run as services of the test swarm."""
    env = {"CONTAINER_ENV": "swarm", "DOCKER_HOST": swarm_engine.host}
    service = _start_replica(session_tmp, fslink_service, "fslink", env, name="swarm")
    yield service
    _stop(service)


@pytest.fixture(scope="session")
def podman_host() -> str:
    """The Docker-compatible API socket of the podman service the test command starts."""
    host = os.environ.get("PFCON_TEST_PODMAN_HOST")
    if not host:
        raise RuntimeError("PFCON_TEST_PODMAN_HOST unset: run the tests with scripts/test.sh, which starts podman")
    return host


@pytest.fixture(scope="session")
def podman_service(session_tmp: Path, fslink_service: Service, podman_host: str) -> Iterator[Service]:
    """fslink storage with plugins run as containers of podman, through its Docker API."""
    env = {"CONTAINER_ENV": "podman", "DOCKER_HOST": podman_host}
    service = _start_replica(session_tmp, fslink_service, "fslink", env, name="podman")
    yield service
    _stop(service)


@pytest.fixture(scope="session")
def postgres_service(session_tmp: Path) -> Iterator[Service]:
    """The embedded default with its Prefect server on PostgreSQL (a fresh database)."""
    base_url = os.environ.get("PFCON_TEST_POSTGRES_URL")
    if not base_url:
        raise RuntimeError("PFCON_TEST_POSTGRES_URL unset: run the tests with scripts/test.sh, which starts PostgreSQL")
    server, _, _ = base_url.rpartition("/")
    database = f"prefect_tests_{os.getpid()}"
    host_port = server.rsplit("@", 1)[1]
    psql = ["psql", "-h", host_port.split(":")[0], "-p", host_port.split(":")[1], "-U", "postgres", "-q", "-c"]
    subprocess.run([*psql, f"CREATE DATABASE {database}"], check=True)
    env = {"PREFECT_API_DATABASE_CONNECTION_URL": f"{server}/{database}",
           "PREFECT_HOME": str(session_tmp / "prefect-home-postgres")}
    service = _start_service(session_tmp, "postgres", "fslink", env, free_port())
    service.database = database
    yield service
    _stop(service)
    subprocess.run([*psql, f"DROP DATABASE {database} WITH (FORCE)"], check=False)


def wait_status(client: Client, job_type, jid: str, timeout: float = 120) -> dict:
    """Poll a job until it is terminal; its last compute object."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        compute = client.get_job_status(job_type, jid)["compute"]
        if compute["status"] in ("finishedSuccessfully", "finishedWithError", "undefined"):
            return compute
        time.sleep(0.2)
    raise TimeoutError(f"{job_type} {jid} not finished: {compute}")


def raw(service: Service, method: str, path: str, **kwargs) -> requests.Response:
    """A request to the service with a valid token unless headers are given."""
    headers = kwargs.pop("headers", None)
    if headers is None:
        headers = service.headers()
    return requests.request(method, service.url + path, headers=headers, timeout=60, **kwargs)
