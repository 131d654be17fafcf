"""The Kubernetes compute block on the real single-node cluster: plugin containers as Jobs."""

from __future__ import annotations

import copy
import time
import uuid
from pathlib import Path

import pytest
from kubernetes import client
from pydantic import ValidationError

from compute_jobs import BUSYBOX, make_key_dir, plugin_job
from prefect_pfcon.blocks.compute import ComputeError, ContainerJob, ForeignContainer, KubernetesCompute
from prefect_pfcon.lib.job_template import merge_job_template
from prefect_pfcon.names import FLOW_RUN_LABEL
from prefect_pfcon.models import JobStatus


@pytest.fixture
def store(session_tmp: Path) -> Path:
    return make_key_dir(session_tmp / "k8s-store")


@pytest.fixture
def kubernetes(session_tmp: Path) -> KubernetesCompute:
    return KubernetesCompute(volume_type="host", store_base=str(session_tmp / "k8s-store"),
                             job_labels={"org.test.suite": "prefect-pfcon"}, image_pull_policy="Never")


def container_job(key_dir: Path, script: str, **overrides) -> ContainerJob:
    return plugin_job(key_dir, script, "k8s", **overrides)


def test_plugin_runs_as_a_kubernetes_job(kubernetes: KubernetesCompute, store: Path):
    job = container_job(store, 'echo start; cp /share/incoming/a.txt /share/outgoing/; echo "$GREETING"; '
                               'touch /share/incoming/x 2>/dev/null || echo read-only; echo done')
    kubernetes.submit(job)
    manifest = kubernetes.batch.read_namespaced_job(job.name, "default")
    assert manifest.spec.backoff_limit == 0
    container = manifest.spec.template.spec.containers[0]
    assert container.resources.limits == {"cpu": "500m", "memory": "200Mi"}
    assert [(m.mount_path, m.sub_path, bool(m.read_only)) for m in container.volume_mounts] == [
        ("/share/incoming", f"{store.name}/incoming", True), ("/share/outgoing", f"{store.name}/outgoing", False)]
    assert container.security_context.capabilities.drop == ["ALL"]
    assert manifest.metadata.labels["chrisproject.org/job-type"] == "plugin"
    assert list(kubernetes.follow_logs(job.name)) == ["start", "hello=world", "read-only", "done"]
    assert kubernetes.wait(job.name) == 0
    state = kubernetes.state(job.name)
    assert (state.status, state.message, state.exit_code) == (JobStatus.FINISHED_SUCCESSFULLY, "finished", 0)
    assert state.labels["org.chrisproject.jid"] == job.name and state.timestamp.endswith("Z")
    assert (store / "outgoing" / "a.txt").read_text() == "input\n"
    assert kubernetes.logs(job.name) == "start\nhello=world\nread-only\ndone\n"
    kubernetes.remove(job.name)
    assert kubernetes.state(job.name) is None


def test_failing_and_oom_killed_plugins(kubernetes: KubernetesCompute, store: Path):
    failing = container_job(store, "echo failing; exit 3")
    hog = container_job(store, "echo hog; x=a; while true; do x=$x$x; done", memory_limit=32)
    kubernetes.submit(failing)
    kubernetes.submit(hog)
    assert kubernetes.wait(failing.name) == 3
    assert kubernetes.state(failing.name).status is JobStatus.FINISHED_WITH_ERROR
    assert kubernetes.logs(failing.name) == "failing\nError\n"
    assert kubernetes.wait(hog.name) == 137
    assert kubernetes.logs(hog.name).endswith("OOMKilled\n")


def test_remove_kills_a_running_job_and_its_pod(kubernetes: KubernetesCompute, store: Path):
    job = container_job(store, "echo running; sleep 600")
    kubernetes.submit(job)
    deadline = time.monotonic() + 60
    while kubernetes.state(job.name).status is not JobStatus.STARTED:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    kubernetes.remove(job.name)
    assert kubernetes.state(job.name) is None
    assert kubernetes.core.list_namespaced_pod("default", label_selector=f"job-name={job.name}").items == []
    kubernetes.remove(job.name)  # absent: no error


def test_workers_and_refusals(kubernetes: KubernetesCompute, store: Path):
    job = container_job(store, "echo worker", number_of_workers=2)
    manifest = kubernetes.manifest(job)
    assert (manifest.spec.parallelism, manifest.spec.completions) == (2, 2)
    assert manifest.spec.pod_failure_policy is None  # this 1.20 server has no podFailurePolicy
    with pytest.raises(ComputeError, match="Kubernetes refused the Job"):
        kubernetes.submit(container_job(store, "true", name="Not_A_Valid_Name"))
    pvc = KubernetesCompute(store_base=kubernetes.store_base)  # kubernetes_pvc without a claim name
    with pytest.raises(ComputeError, match="PVC name"):
        pvc.manifest(job)
    assert isinstance(kubernetes.api_client, client.ApiClient)


def test_pvc_manifest_uses_sub_paths_of_the_claim(kubernetes: KubernetesCompute, store: Path):
    pvc = KubernetesCompute(store_base=kubernetes.store_base, pvc_name="storebase", namespace="chris",
                            node_selector={"gpu": "yes"}, container_user="1001:2002", shm_size=64,
                            image_pull_secrets=["regcred"], ignore_limits=True)
    manifest = pvc.manifest(container_job(store, "true", gpu_limit=2))
    pod = manifest.spec.template.spec
    assert pod.volumes[0].persistent_volume_claim.claim_name == "storebase"
    assert pod.volumes[1].empty_dir.medium == "Memory" and pod.volumes[1].empty_dir.size_limit == "64Mi"
    container = pod.containers[0]
    assert [m.sub_path for m in container.volume_mounts[:2]] == [f"{store.name}/incoming", f"{store.name}/outgoing"]
    assert container.volume_mounts[2].mount_path == "/dev/shm"
    assert container.resources.limits == {"nvidia.com/gpu": "2"}  # IGNORE_LIMITS keeps GPUs only
    assert (container.security_context.run_as_user, container.security_context.run_as_group) == (1001, 2002)
    assert pod.node_selector == {"gpu": "yes"} and pod.image_pull_secrets[0].name == "regcred"


def test_a_job_not_ours_is_left_alone(kubernetes: KubernetesCompute, store: Path):
    name = f"k8s-{uuid.uuid4().hex[:8]}"
    container = client.V1Container(name=name, image=BUSYBOX, image_pull_policy="Never", command=["sleep", "300"])
    stranger = client.V1Job(metadata=client.V1ObjectMeta(name=name), spec=client.V1JobSpec(
        backoff_limit=0, template=client.V1PodTemplateSpec(spec=client.V1PodSpec(
            restart_policy="Never", containers=[container]))))
    kubernetes.batch.create_namespaced_job("default", stranger)  # a Job of the jid's name, without our labels
    try:
        with pytest.raises(ForeignContainer, match=f"A container named {name} exists and was not created"):
            kubernetes.own_state(name, name)
        assert kubernetes.remove_own(name, name) is False
        assert kubernetes.state(name) is not None
    finally:
        kubernetes.remove(name)
    jid = f"k8s-ours-{uuid.uuid4().hex[:6]}"
    ours = container_job(store, "echo ours", name=jid, labels={"org.chrisproject.jid": jid, FLOW_RUN_LABEL: "run-1"})
    kubernetes.submit(ours)
    manifest = kubernetes.batch.read_namespaced_job(ours.name, "default").spec.template.spec.containers[0]
    assert manifest.security_context.seccomp_profile.type == "RuntimeDefault"
    assert kubernetes.wait(ours.name) == 0
    assert kubernetes.remove_own(ours.name, ours.name) is True
    assert kubernetes.state(ours.name) is None


def test_a_silent_plugin_has_empty_logs(kubernetes: KubernetesCompute, store: Path):
    """A plugin that prints nothing: every status poll meanwhile (logs included, as CUBE's)
    reads an empty log, while it runs and after."""
    job = container_job(store, "sleep 4")
    kubernetes.submit(job)
    seen = set()
    while (state := kubernetes.state(job.name)).status != JobStatus.FINISHED_SUCCESSFULLY:
        seen.add((state.status, kubernetes.logs(job.name)))
        time.sleep(0.1)
    assert kubernetes.logs(job.name) == ""
    assert {logs for _, logs in seen} == {""} and JobStatus.STARTED in {status for status, _ in seen}
    kubernetes.remove(job.name)


GPU_TOLERATION = {"key": "example.org/gpu", "operator": "Exists", "effect": "NoSchedule"}
JOB_TEMPLATE = {
    "apiVersion": "batch/v1", "kind": "Job",
    "metadata": {"annotations": {"example.org/site": "gpu-farm"}, "labels": {"example.org/team": "mri"}},
    "spec": {"ttlSecondsAfterFinished": 60, "template": {
        "metadata": {"annotations": {"example.org/scheduler": "gang"}, "labels": {"org.chrisproject.jid": "x"}},
        "spec": {
            "tolerations": [GPU_TOLERATION],
            "nodeSelector": {"kubernetes.io/os": "linux", "kubernetes.io/hostname": "no-such-node"},
            "volumes": [{"name": "scratch", "emptyDir": {}}],
            "containers": [{"name": "plugin", "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]}],
            "enableServiceLinks": False,
            "restartPolicy": "OnFailure",
        },
    }},
}


def test_job_template_merge_is_pure_logic():
    """Pure logic: the block's Job over a template; the template is not changed."""
    ours = {"metadata": {"name": "k8s-1", "labels": {"org.chrisproject.jid": "k8s-1"}},
            "spec": {"backoffLimit": 0, "ttlSecondsAfterFinished": 86400, "template": {
                "metadata": {"labels": {"org.chrisproject.jid": "k8s-1"}},
                "spec": {"restartPolicy": "Never", "automountServiceAccountToken": False,
                         "nodeSelector": {"kubernetes.io/hostname": "node-1"},
                         "imagePullSecrets": [{"name": "regcred"}],
                         "volumes": [{"name": "storebase", "hostPath": {"path": "/s"}}],
                         "containers": [{"name": "k8s-1", "image": "busybox",
                                         "volumeMounts": [{"name": "storebase", "mountPath": "/share/outgoing"}]}]}}}}
    template = {**JOB_TEMPLATE, "spec": {**JOB_TEMPLATE["spec"], "template": {
        **JOB_TEMPLATE["spec"]["template"], "spec": {**JOB_TEMPLATE["spec"]["template"]["spec"],
                                                     "automountServiceAccountToken": True,
                                                     "serviceAccountName": "plugins",
                                                     "imagePullSecrets": [{"name": "site"}, {"name": "regcred"}]}}}}
    before = copy.deepcopy(template)
    merged = merge_job_template(template, ours)
    assert template == before
    assert merged["metadata"] == {"name": "k8s-1", "annotations": {"example.org/site": "gpu-farm"},
                                  "labels": {"example.org/team": "mri", "org.chrisproject.jid": "k8s-1"}}
    assert merged["spec"]["ttlSecondsAfterFinished"] == 86400 and merged["spec"]["backoffLimit"] == 0
    pod_metadata = merged["spec"]["template"]["metadata"]
    assert pod_metadata == {"annotations": {"example.org/scheduler": "gang"},
                            "labels": {"org.chrisproject.jid": "k8s-1"}}
    pod = merged["spec"]["template"]["spec"]
    assert (pod["tolerations"], pod["restartPolicy"], pod["enableServiceLinks"]) == ([GPU_TOLERATION], "Never", False)
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux", "kubernetes.io/hostname": "node-1"}
    assert (pod["serviceAccountName"], pod["automountServiceAccountToken"]) == ("plugins", True)
    assert [v["name"] for v in pod["volumes"]] == ["scratch", "storebase"]
    assert pod["imagePullSecrets"] == [{"name": "site"}, {"name": "regcred"}]
    assert pod["containers"] == [{"name": "k8s-1", "image": "busybox", "volumeMounts": [
        {"name": "storebase", "mountPath": "/share/outgoing"}, {"name": "scratch", "mountPath": "/scratch"}]}]


@pytest.mark.parametrize(("template", "reason"), [
    ([], "Input should be a valid dictionary"),
    ({"apiVersion": "v1", "kind": "Pod"}, "a batch/v1 Job, not v1 Pod"),
    ({"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": []}}, "spec.template is a mapping"),
    ({"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": {"spec": {"containers": [
        {"name": "plugin", "image": "other"}]}}}}, "containers are one at most, with volumeMounts only"),
    ({"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": {"spec": {"volumes": [
        {"name": "storebase", "emptyDir": {}}]}}}}, "the volume name storebase is the block's"),
    ({"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": {"spec": {"containers": [
        {"volumeMounts": [{"name": "x", "mountPath": "/share/incoming"}]}]}}}}, "mount path /share/incoming"),
])
def test_job_templates_the_block_refuses(template, reason):
    """Pure logic: a template that is no Job, or takes the block's names, is refused by the block."""
    with pytest.raises(ValidationError, match=reason):
        KubernetesCompute(store_base="/s", job_template=template)


def test_job_template_reaches_the_job_and_its_pod(kubernetes: KubernetesCompute, store: Path):
    """A site's template (a toleration, annotations, an extra volume) on the real Job and pod,
    around the block's own plugin container, limits and storeBase mounts."""
    [node] = kubernetes.core.list_node().items
    templated = KubernetesCompute(volume_type="host", store_base=kubernetes.store_base, image_pull_policy="Never",
                                  job_labels=kubernetes.job_labels, job_template=JOB_TEMPLATE,
                                  node_selector={"kubernetes.io/hostname": node.metadata.name})  # wins
    job = container_job(store, "echo scratch > /scratch/x; cat /scratch/x; cp /share/incoming/a.txt /share/outgoing/")
    templated.submit(job)
    try:
        deadline = time.monotonic() + 60  # a pod the node cannot take stays notStarted
        while templated.state(job.name).status is JobStatus.NOT_STARTED:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert templated.wait(job.name) == 0
        assert templated.logs(job.name) == "scratch\n" and (store / "outgoing" / "a.txt").read_text() == "input\n"
        manifest = templated.batch.read_namespaced_job(job.name, "default")
        assert manifest.metadata.annotations["example.org/site"] == "gpu-farm"
        assert manifest.metadata.labels["example.org/team"] == "mri"
        assert manifest.metadata.labels["org.test.suite"] == "prefect-pfcon"
        assert (manifest.spec.backoff_limit, manifest.spec.ttl_seconds_after_finished) == (0, 24 * 3600)
        [pod] = templated.core.list_namespaced_pod("default", label_selector=f"job-name={job.name}").items
        assert pod.metadata.annotations["example.org/scheduler"] == "gang"
        assert pod.metadata.labels["org.chrisproject.jid"] == job.name
        assert client.V1Toleration(key="example.org/gpu", operator="Exists", effect="NoSchedule") in (
            pod.spec.tolerations)
        assert (pod.spec.restart_policy, pod.spec.enable_service_links, pod.spec.automount_service_account_token) == (
            "Never", False, False)
        assert pod.spec.node_selector == {"kubernetes.io/os": "linux", "kubernetes.io/hostname": node.metadata.name}
        assert [volume.name for volume in pod.spec.volumes] == ["scratch", "storebase"]
        [container] = pod.spec.containers
        assert (container.name, container.image, container.command[0]) == (job.name, BUSYBOX, "sh")
        assert container.resources.limits == {"cpu": "500m", "memory": "200Mi"}
        assert [(m.name, m.mount_path, m.sub_path) for m in container.volume_mounts] == [
            ("storebase", "/share/incoming", f"{store.name}/incoming"),
            ("storebase", "/share/outgoing", f"{store.name}/outgoing"), ("scratch", "/scratch", None)]
        assert container.env[0].value_from.secret_key_ref.name == f"{job.name}-env"
        assert container.security_context.capabilities.drop == ["ALL"]
    finally:
        templated.remove(job.name)
