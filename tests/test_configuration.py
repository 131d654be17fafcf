"""pfcon's configuration read with pfcon's meaning: a pfcon ``.env`` gives pfcon's server info,
invalid combinations stop the start with one line, and the storeBase may be a Docker volume.

The settings checks at the top are fast unit tests of pure logic; the rest start the real
service and run real containers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from pfconclient.client import JobType
from pydantic import ValidationError

from conftest import Service, _start_replica, _stop, wait_status
from fixtures_tree import make_fslink_fixture
from test_fslink_lifecycle import copy_inputs, delete_and_forget, new_jid, plugin_descriptors
from prefect_pfcon.blocks import COMPUTE_BLOCKS, STORAGE_BLOCKS
from prefect_pfcon.blocks.compute.volumes import VolumeNotFound, volume_mountpoint
from prefect_pfcon.deployments.registry import compute_from_settings, storage_from_settings
from prefect_pfcon.settings import ComputeSettings, PfconSettings, StorageSettings

PFCON_VARIABLES = (
    "APPLICATION_MODE", "PFCON_INNETWORK", "STORAGE_ENV", "CONTAINER_ENV", "COMPUTE_VOLUME_TYPE",
    "VOLUME_NAME", "SECRET_KEY", "PFCON_USER", "PFCON_PASSWORD",
)


@pytest.fixture
def pfcon_env(monkeypatch, tmp_path):
    """A clean slate of pfcon's variables (and no ``.env`` in the working directory)."""
    for name in PFCON_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)

    def settings(**variables: str) -> PfconSettings:
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        return PfconSettings()

    return settings


@pytest.mark.parametrize(
    ("variables", "storage_env"),
    [
        ({}, "fslink"),
        ({"PFCON_INNETWORK": "false"}, "zipfile"),
        ({"PFCON_INNETWORK": "true"}, "swift"),
        ({"PFCON_INNETWORK": "true", "STORAGE_ENV": "filesystem"}, "filesystem"),
        ({"PFCON_INNETWORK": "false", "STORAGE_ENV": "zipfile"}, "zipfile"),
    ],
)
def test_storage_defaults_follow_pfcon_innetwork(pfcon_env, variables, storage_env):
    assert pfcon_env(**variables).storage.storage_env == storage_env


@pytest.mark.parametrize(
    ("variables", "reason"),
    [
        ({"PFCON_INNETWORK": "false", "STORAGE_ENV": "fslink"}, "STORAGE_ENV=fslink needs PFCON_INNETWORK=true"),
        ({"PFCON_INNETWORK": "true", "STORAGE_ENV": "zipfile"}, "STORAGE_ENV=zipfile needs PFCON_INNETWORK=false"),
        ({"COMPUTE_VOLUME_TYPE": "kubernetes_pvc"}, "not valid for CONTAINER_ENV=docker"),
        ({"CONTAINER_ENV": "kubernetes"}, "needs VOLUME_NAME"),
        ({"CONTAINER_ENV": "cromwell"}, "cromwell is no longer supported"),
        ({"APPLICATION_MODE": "production"}, "needs SECRET_KEY, PFCON_USER, PFCON_PASSWORD"),
        ({"APPLICATION_MODE": "production", "SECRET_KEY": "k" * 40, "PFCON_USER": "cube",
          "PFCON_PASSWORD": "pfcon1234"}, "refuses the default password"),
    ],
)
def test_invalid_combinations_are_refused(pfcon_env, variables, reason):
    with pytest.raises(ValidationError, match=reason):
        pfcon_env(**variables)


def test_volume_types_default_per_backend(pfcon_env):
    assert pfcon_env().compute.volume_type == "host"
    assert pfcon_env(CONTAINER_ENV="openshift", VOLUME_NAME="storebase").compute.volume_type == "kubernetes_pvc"
    assert pfcon_env(CONTAINER_ENV="podman", COMPUTE_VOLUME_TYPE="docker_local_volume").compute.container_env == "docker"


def test_production_with_its_secrets_starts(pfcon_env):
    settings = pfcon_env(APPLICATION_MODE="production", SECRET_KEY="s" * 40, PFCON_USER="cube",
                         PFCON_PASSWORD="a-real-password")
    assert settings.service.resolved_secret_key() == "s" * 40


def test_sections_map_one_to_one_onto_block_fields(pfcon_env):
    """Every field a section dumps is a field of its block; of the compute fields, only those
    several backends share are left to the blocks that have them."""
    settings = pfcon_env()
    common_storage = set(settings.storage.model_dump())
    for mode, block in STORAGE_BLOCKS.items():
        own = getattr(settings.storage, mode, None)
        assert common_storage | set(own.model_dump() if own else ()) <= set(block.model_fields), mode
    shared = {"network_mode", "volume_type"}
    common_compute = set(settings.compute.model_dump())
    for backend, block in COMPUTE_BLOCKS.items():
        own = getattr(settings.compute, backend, None)
        assert set(own.model_dump() if own else ()) <= set(block.model_fields), backend
        assert common_compute - set(block.model_fields) <= shared, backend
    assert all(any(name in block.model_fields for block in COMPUTE_BLOCKS.values()) for name in shared)
    assert {name for name, field in StorageSettings.model_fields.items() if field.exclude} == {
        "storage_env", "innetwork", "block_name", *(mode for mode in STORAGE_BLOCKS if mode != "filesystem")}
    assert {name for name, field in ComputeSettings.model_fields.items() if field.exclude} == {
        "container_env", "block_name", "volume_name", "pfcon_selector", "swarm", "slurm", "kubernetes"}


def test_only_pfcon_variables_are_read(pfcon_env, monkeypatch):
    """A field is read from its pfcon variable only: not from one of its own name (``USER``,
    ``KEY``), nor from one named like a section (``SWIFT``, ``COMPUTE``)."""
    for name in ("USER", "PASSWORD", "USERNAME", "KEY", "NAMESPACE", "SWIFT", "COMPUTE", "SLURM"):
        monkeypatch.setenv(name, "h13-not-a-setting")
    settings = pfcon_env(STORAGE_ENV="swift", SWIFT_USERNAME="test:tester")
    assert (settings.service.user, settings.service.password) == ("pfcon", "pfcon1234")
    assert settings.storage.swift.username == "test:tester"
    assert settings.storage.swift.key.get_secret_value() == ""
    assert settings.compute.kubernetes.namespace == "default"


def test_overrides_by_variable_name_win_in_every_section(pfcon_env, monkeypatch):
    monkeypatch.setenv("PFCON_PORT", "1")
    settings = PfconSettings(PFCON_PORT=2, STORAGE_ENV="swift", CONTAINER_ENV="slurm", SWIFT_KEY="h13-key")
    assert (settings.service.port, settings.storage.storage_env, settings.compute.container_env) == (2, "swift", "slurm")
    assert settings.storage.swift.key.get_secret_value() == "h13-key"


def test_dotenv_reaches_nested_sections_unless_disabled(pfcon_env, tmp_path):
    (tmp_path / ".env").write_text("PFCON_INNETWORK=true\nSWIFT_USERNAME=test:tester\nPFCON_SWARM_GPU_RESOURCE=gpu\n")
    settings = pfcon_env()
    assert (settings.storage.storage_env, settings.storage.swift.username, settings.compute.swarm.gpu_resource) == (
        "swift", "test:tester", "gpu")
    without = PfconSettings(_env_file=None)
    assert (without.storage.storage_env, without.storage.swift.username, without.compute.swarm.gpu_resource) == (
        "fslink", "", "NVIDIA-GPU")


def test_settings_make_swift_slurm_and_kubernetes_blocks(pfcon_env, monkeypatch, tmp_path):
    """Pure construction: variables in pfcon's text formats become typed block fields."""
    for name, value in {"SWIFT_AUTH_URL": "http://127.0.0.1:1/auth/v1.0", "SWIFT_USERNAME": "test:tester",
                        "SWIFT_KEY": "h13-key", "STOREBASE": "/srv/storeBase", "PFCON_STATE_DIR": str(tmp_path),
                        "PFCON_SLURM_SBATCH_OPTIONS": "--qos 'h13 qos'", "PFCON_PIDS_LIMIT": "0",
                        "JOB_LABELS": "a=b, c=d", "NODE_SELECTOR": "disk=ssd", "IMAGE_PULL_SECRETS": "one, two",
                        "PFCON_NETWORK_MODE": "host"}.items():
        monkeypatch.setenv(name, value)
    storage = storage_from_settings(pfcon_env(STORAGE_ENV="swift"))
    assert (storage.auth_url, storage.username, storage.key.get_secret_value(), storage.container_name) == (
        "http://127.0.0.1:1/auth/v1.0", "test:tester", "h13-key", "users")
    assert (storage.store_base, storage.host_store_base) == ("/var/local/storeBase", "/srv/storeBase")
    slurm = compute_from_settings(pfcon_env(CONTAINER_ENV="slurm"))
    assert (slurm.work_dir, slurm.sbatch_options, slurm.runtime_options) == (
        str(tmp_path / "slurm"), ["--qos", "h13 qos"], [])
    assert (slurm.network_mode, slurm.pids_limit, slurm.job_labels) == ("host", None, {"a": "b", "c": "d"})
    kubernetes = compute_from_settings(pfcon_env(CONTAINER_ENV="kubernetes", VOLUME_NAME="h13-pvc"))
    assert (kubernetes.volume_type, kubernetes.pvc_name, kubernetes.store_base) == (
        "kubernetes_pvc", "h13-pvc", "/srv/storeBase")
    assert (kubernetes.node_selector, kubernetes.image_pull_secrets) == ({"disk": "ssd"}, ["one", "two"])
    assert "network_mode" not in kubernetes.model_dump()


def _refused_up(tmp_path: Path, variables: dict[str, str]) -> list[str]:
    """The stderr lines of an ``up`` (of the code under test) that must stop before it starts anything."""
    env = {"PATH": "/usr/bin:/bin", "PFCON_STATE_DIR": str(tmp_path / "state"),
           "PYTHONPATH": os.environ.get("PYTHONPATH", ""), **variables}
    result = subprocess.run([sys.executable, "-m", "prefect_pfcon.cli", "up"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert not (tmp_path / "state").exists()
    return result.stderr.strip().splitlines()


def test_invalid_configuration_stops_up_with_one_line(tmp_path):
    assert _refused_up(tmp_path, {"PFCON_INNETWORK": "false", "STORAGE_ENV": "swift"}) == [
        "prefect-pfcon: invalid configuration: STORAGE_ENV=swift needs PFCON_INNETWORK=true"
    ]


JOB_TEMPLATE_YAML = """\
apiVersion: batch/v1
kind: Job
metadata:
  annotations: {example.org/site: gpu-farm}
spec:
  template:
    spec:
      priorityClassName: gpu-high
      tolerations:
      - {key: example.org/gpu, operator: Exists, effect: NoSchedule}
"""
JOB_TEMPLATE = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"annotations": {"example.org/site": "gpu-farm"}},
                "spec": {"template": {"spec": {"priorityClassName": "gpu-high", "tolerations": [
                    {"key": "example.org/gpu", "operator": "Exists", "effect": "NoSchedule"}]}}}}


def test_kubernetes_job_template_is_read_from_its_file(pfcon_env, tmp_path):
    """Pure construction: ``PFCON_KUBERNETES_JOB_TEMPLATE`` names a YAML or JSON file whose
    manifest becomes the block's ``job_template``; unset or empty, there is none."""
    kubernetes = {"CONTAINER_ENV": "kubernetes", "VOLUME_NAME": "h13-pvc"}
    assert compute_from_settings(pfcon_env(**kubernetes)).job_template is None
    (tmp_path / "job.yaml").write_text(JOB_TEMPLATE_YAML)
    settings = pfcon_env(**kubernetes, PFCON_KUBERNETES_JOB_TEMPLATE=str(tmp_path / "job.yaml"))
    assert compute_from_settings(settings).job_template == JOB_TEMPLATE
    (tmp_path / "job.json").write_text(json.dumps(JOB_TEMPLATE, indent="\t"))
    settings = pfcon_env(**kubernetes, PFCON_KUBERNETES_JOB_TEMPLATE=str(tmp_path / "job.json"))
    assert compute_from_settings(settings).job_template == JOB_TEMPLATE
    assert compute_from_settings(pfcon_env(PFCON_KUBERNETES_JOB_TEMPLATE="", **kubernetes)).job_template is None


@pytest.mark.parametrize(("name", "text", "reason"), [
    ("absent.yaml", None, "cannot read .*absent.yaml: No such file or directory"),
    ("job.yaml", "kind: Job\n  bad: [", "job.yaml is not valid YAML: mapping values are not allowed here"),
    ("job.json", "{'kind': 'Job'}", "job.json is not valid JSON: Expecting property name"),
    ("job.yaml", "- kind: Job\n", "job.yaml: a job template is a mapping"),
    ("job.yaml", "apiVersion: v1\nkind: Pod\n", "job.yaml: a job template is a batch/v1 Job, not v1 Pod"),
    ("job.yaml", JOB_TEMPLATE_YAML + "      containers: [{name: c, image: busybox}]\n",
     "containers are one at most, with volumeMounts only"),
])
def test_a_bad_kubernetes_job_template_is_refused(pfcon_env, tmp_path, name, text, reason):
    if text is not None:
        (tmp_path / name).write_text(text)
    with pytest.raises(ValidationError, match=f"PFCON_KUBERNETES_JOB_TEMPLATE\n.*{reason}"):
        pfcon_env(PFCON_KUBERNETES_JOB_TEMPLATE=str(tmp_path / name))


def test_a_job_template_that_is_no_job_stops_up_with_one_line(tmp_path):
    (tmp_path / "pod.yaml").write_text("apiVersion: v1\nkind: Pod\n")
    variables = {"CONTAINER_ENV": "kubernetes", "VOLUME_NAME": "h13-pvc",
                 "PFCON_KUBERNETES_JOB_TEMPLATE": str(tmp_path / "pod.yaml")}
    assert _refused_up(tmp_path, variables) == [
        f"prefect-pfcon: invalid configuration: PFCON_KUBERNETES_JOB_TEMPLATE: {tmp_path / 'pod.yaml'}: "
        "a job template is a batch/v1 Job, not v1 Pod"
    ]


def _start_with_dotenv(session_tmp: Path, primary: Service, name: str, dotenv: str) -> Service:
    """A replica configured only by a pfcon ``.env`` file in its working directory."""
    workdir = session_tmp / f"dotenv-{name}"
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / ".env").write_text(dotenv)
    return _start_replica(session_tmp, primary, None, {}, name=name, cwd=workdir)


def test_pfcon_dotenv_gives_pfcon_server_info(session_tmp, fslink_service, swift_credentials):
    swift_env = "".join(f"{key}={value}\n" for key, value in swift_credentials.items())
    swift = _start_with_dotenv(session_tmp, fslink_service, "dotenv-swift",
                               f"PFCON_INNETWORK=true\nCONTAINER_ENV=docker\nCOMPUTE_VOLUME_TYPE=host\n{swift_env}")
    try:
        info = swift.client().get_server_info()
    finally:
        _stop(swift)
    assert {key: info[key] for key in info if key != "server_version"} == {
        "pfcon_innetwork": True, "storage_env": "swift", "requires_copy_job": True,
        "requires_upload_job": True, "swift_auth_url": swift_credentials["SWIFT_AUTH_URL"],
        "container_env": "docker", "compute_volume_type": "host",
    }
    zipfile = _start_with_dotenv(session_tmp, fslink_service, "dotenv-zipfile", "PFCON_INNETWORK=false\n")
    try:
        info = zipfile.client().get_server_info()
    finally:
        _stop(zipfile)
    assert {key: info[key] for key in ("pfcon_innetwork", "storage_env", "requires_copy_job",
                                       "requires_upload_job")} == {
        "pfcon_innetwork": False, "storage_env": "zipfile", "requires_copy_job": False,
        "requires_upload_job": False,
    }


@pytest.fixture
def store_volume(docker_client):
    volume = docker_client.volumes.create(f"pfcon-test-storebase-{uuid.uuid4().hex[:8]}")
    yield volume
    volume.remove(force=True)


def test_store_volume_found_through_the_selector(docker_client, store_volume):
    selector = f"org.chrisproject.role=pfcon-test-{uuid.uuid4().hex[:8]}"
    container = docker_client.containers.run(
        "local/busybox:test", ["sleep", "60"], detach=True, network_mode="none",
        labels=dict([selector.split("=", 1)]), volumes={store_volume.name: {"bind": "/var/local/storeBase"}},
    )
    try:
        found = volume_mountpoint(None, selector, Path("/var/local/storeBase"))
    finally:
        container.remove(force=True)
    assert found == Path(store_volume.attrs["Mountpoint"])
    with pytest.raises(VolumeNotFound, match="set VOLUME_NAME"):
        volume_mountpoint(None, selector, Path("/var/local/storeBase"))
    with pytest.raises(VolumeNotFound, match="does not exist"):
        volume_mountpoint("pfcon-test-no-such-volume", selector, Path("/var/local/storeBase"))


def test_lifecycle_with_the_store_base_in_a_docker_volume(session_tmp, fslink_service, docker_client, store_volume):
    mountpoint = Path(store_volume.attrs["Mountpoint"])
    make_fslink_fixture(mountpoint)
    service = _start_replica(
        session_tmp, fslink_service, "fslink",
        {"COMPUTE_VOLUME_TYPE": "docker_local_volume", "VOLUME_NAME": store_volume.name},
        name="docker-volume", store_base=mountpoint,
    )
    try:
        client = service.client()
        assert client.get_server_info()["compute_volume_type"] == "docker_local_volume"
        jid, output_dir = new_jid(), f"home/alice/feed/out-{uuid.uuid4().hex[:6]}"
        assert copy_inputs(service, jid, output_dir)["status"] == "finishedSuccessfully"
        client.submit_job(JobType.PLUGIN, jid, plugin_descriptors(output_dir))
        assert wait_status(client, JobType.PLUGIN, jid)["status"] == "finishedSuccessfully"
        mounts = {m["Destination"]: m for m in docker_client.api.inspect_container(jid)["Mounts"]}
        assert mounts["/share/incoming"]["Source"] == str(mountpoint / f"key-{jid}/incoming")
        assert mounts["/share/outgoing"]["Source"] == str(mountpoint / output_dir)
        assert (mountpoint / output_dir / "new.txt").read_text() == "new\n"
        delete_and_forget(client, jid)
    finally:
        _stop(service)
