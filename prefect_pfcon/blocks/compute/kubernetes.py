"""Kubernetes compute: each plugin container runs as a batch/v1 Job named after the jid.

The Job's env values are in a Secret (``<jid>-env``, owned by the Job); its manifest names
only the Secret's keys. A site's job template (``job_template``) gives the rest of the Job.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Literal

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.utils import parse_quantity
from pydantic import Field, PrivateAttr, field_validator

from prefect_pfcon.blocks.compute.base import (
    ZERO_TIME,
    ComputeBlock,
    ComputeError,
    ComputeNode,
    ComputeProbe,
    ContainerJob,
    ContainerState,
    ContainerUser,
)
from prefect_pfcon.names import JID_LABEL, JOB_TYPE_LABEL
from prefect_pfcon.blocks.compute.lines import split_lines
from prefect_pfcon.models import JobStatus
from prefect_pfcon.lib.command import INCOMING, OUTGOING
from prefect_pfcon.lib.job_template import (SHM_PATH, SHM_VOLUME, STORE_VOLUME, check_job_template,
                                            merge_job_template)

JOB_TYPE_LABEL_K8S = "chrisproject.org/job-type"
POLL_SECONDS = 0.5
REMOVE_TIMEOUT_SECONDS = 60
STARTED_PHASES = ("Running", "Succeeded", "Failed")
DEFAULT_DEADLINE_SECONDS = 7 * 24 * 3600
POD_FAILURE_POLICY_MINOR = 26  # batch/v1 podFailurePolicy is on by default from Kubernetes 1.26


def _rfc3339(moment: datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def job_state(job: client.V1Job) -> tuple[JobStatus, str]:
    """pfcon's status and message of a Job (spec 9.3, but a Job no pod started is notStarted)."""
    status = job.status
    for condition in status.conditions or []:
        if condition.type == "Failed" and condition.status == "True":
            if condition.reason == "DeadlineExceeded":
                return JobStatus.FINISHED_WITH_ERROR, f"Job hit its time limit of {job.spec.active_deadline_seconds} s"
            return JobStatus.FINISHED_WITH_ERROR, condition.message or condition.reason or "failed"
    if status.completion_time and status.succeeded:
        return JobStatus.FINISHED_SUCCESSFULLY, "finished"
    if status.active:
        return JobStatus.STARTED, "running"
    if not (status.failed or status.succeeded):
        return JobStatus.NOT_STARTED, "created"
    return JobStatus.UNDEFINED, "inactive"


def waiting_reason(pods: list[client.V1Pod]) -> str | None:
    """Why an active Job's pods have not started (image pull, scheduling, config), or ``None``
    once one runs or ended."""
    if any(pod.status.phase in STARTED_PHASES for pod in pods):
        return None
    for pod in pods:
        for container in pod.status.container_statuses or []:
            waiting = container.state.waiting if container.state else None
            if waiting and waiting.reason:
                return f"{waiting.reason}: {waiting.message}" if waiting.message else waiting.reason
        for condition in pod.status.conditions or []:
            if condition.type == "PodScheduled" and condition.status == "False":
                return f"{condition.reason}: {condition.message}" if condition.message else condition.reason
    return "pod pending"


class KubernetesCompute(ComputeBlock):
    """Run plugin containers as Kubernetes Jobs (pfcon's CONTAINER_ENV=kubernetes).

    The storeBase is one volume, a ReadWriteMany PersistentVolumeClaim (or a host path on a
    single-node site), mounted with sub-paths at ``/share/incoming`` (read-only) and
    ``/share/outgoing``.
    """

    _block_type_name = "pfcon kubernetes compute"
    _block_type_slug = "pfcon-kubernetes-compute"
    _description = "Runs ChRIS plugin containers as Kubernetes Jobs."

    container_env: ClassVar[str] = "kubernetes"
    single_worker: ClassVar[bool] = False
    enforces_time_limit: ClassVar[bool] = True

    namespace: str = Field("default", description="Namespace of the Jobs (JOB_NAMESPACE).")
    kubeconfig: str | None = Field(
        None, description="Kubeconfig file; default: in-cluster config, else KUBECONFIG or ~/.kube/config."
    )
    volume_type: Literal["kubernetes_pvc", "host"] = Field(
        "kubernetes_pvc", description="The storeBase as a PersistentVolumeClaim, or a host path (one node)."
    )
    pvc_name: str | None = Field(None, description="The storeBase's ReadWriteMany PVC (VOLUME_NAME).")
    store_base: str = Field(
        description="The storeBase path the storage block hands out (its STOREBASE); sub-paths are "
        "taken relative to it, and it is the host path in host mode."
    )
    node_selector: dict[str, str] = Field(default_factory=dict, description="Node selector (NODE_SELECTOR).")
    image_pull_secrets: list[str] = Field(default_factory=list, description="Image pull secrets (IMAGE_PULL_SECRETS).")
    image_pull_policy: str = Field("IfNotPresent", description="imagePullPolicy of plugin containers.")
    service_account: str | None = Field(None, description="Service account of plugin pods.")
    job_template: dict[str, Any] | None = Field(
        None, description="A batch/v1 Job manifest the plugin Jobs are built on, like a Prefect kubernetes "
        "work pool's base job template: its tolerations, affinity, priorityClassName, annotations, "
        "serviceAccountName, extra volumes (and mounts in a container holding volumeMounts only) are kept; "
        "the block sets the plugin container, its limits and storeBase mounts "
        "(PFCON_KUBERNETES_JOB_TEMPLATE; README \"Kubernetes job template\").",
    )

    _api_client: client.ApiClient | None = PrivateAttr(None)
    _server_minor: int | None = PrivateAttr(None)

    @field_validator("job_template")
    @classmethod
    def _checked_template(cls, template: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if template is None else check_job_template(template)

    @property
    def compute_volume_type(self) -> str:  # type: ignore[override]
        return self.volume_type

    # ----- API access --------------------------------------------------------------------

    @property
    def api_client(self) -> client.ApiClient:
        """An API client, configured once per block instance."""
        if self._api_client is None:
            configuration = client.Configuration()
            if self.kubeconfig:
                config.load_kube_config(self.kubeconfig, client_configuration=configuration)
            else:
                try:
                    config.load_incluster_config(client_configuration=configuration)
                except config.ConfigException:
                    config.load_kube_config(client_configuration=configuration)
            self._api_client = client.ApiClient(configuration)
        return self._api_client

    @property
    def batch(self) -> client.BatchV1Api:
        return client.BatchV1Api(self.api_client)

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api_client)

    def server_minor(self) -> int:
        """The API server's minor version (features newer servers offer are used only there)."""
        if self._server_minor is None:
            version = client.VersionApi(self.api_client).get_code()
            self._server_minor = int("".join(ch for ch in version.minor if ch.isdigit()))
        return self._server_minor

    def probe(self, timeout: float) -> ComputeProbe:
        """The API server's version and every node: Ready, allocatable cpu, memory, GPUs."""
        version = client.VersionApi(self.api_client).get_code(_request_timeout=timeout)
        nodes = self.core.list_node(_request_timeout=timeout).items
        return ComputeProbe(version=version.git_version, nodes=[_node(node) for node in nodes])

    # ----- the Job -----------------------------------------------------------------------

    def _sub_path(self, path: Path) -> str:
        return path.relative_to(self.store_base).as_posix() if path != Path(self.store_base) else ""

    def _volume(self) -> client.V1Volume:
        if self.volume_type == "host":
            return client.V1Volume(name=STORE_VOLUME, host_path=client.V1HostPathVolumeSource(path=self.store_base))
        if not self.pvc_name:
            raise ComputeError("kubernetes_pvc volumes need the storeBase's PVC name (VOLUME_NAME)")
        claim = client.V1PersistentVolumeClaimVolumeSource(claim_name=self.pvc_name)
        return client.V1Volume(name=STORE_VOLUME, persistent_volume_claim=claim)

    def _container(self, job: ContainerJob) -> client.V1Container:
        limits: dict[str, str] = {}
        if not self.ignore_limits:
            limits = {"cpu": f"{job.cpu_limit}m", "memory": f"{job.memory_limit}Mi"}
        if job.gpu_limit > 0:
            limits["nvidia.com/gpu"] = str(job.gpu_limit)
        mounts = [
            client.V1VolumeMount(name=STORE_VOLUME, mount_path=INCOMING, sub_path=self._sub_path(job.incoming),
                                 read_only=True),
            client.V1VolumeMount(name=STORE_VOLUME, mount_path=OUTGOING, sub_path=self._sub_path(job.outgoing)),
        ]
        if self.shm_size:
            mounts.append(client.V1VolumeMount(name=SHM_VOLUME, mount_path=SHM_PATH))
        user = ContainerUser.parse(self.container_user)
        return client.V1Container(
            name=job.name,
            image=job.image,
            image_pull_policy=self.image_pull_policy,
            command=job.command,
            env=self._env_refs(job),
            resources=client.V1ResourceRequirements(limits=limits, requests=limits),
            volume_mounts=mounts,
            security_context=client.V1SecurityContext(
                allow_privilege_escalation=False,
                capabilities=client.V1Capabilities(drop=["ALL"]),
                seccomp_profile=client.V1SeccompProfile(type="RuntimeDefault"),
                run_as_user=int(user.uid) if user and user.uid else None,
                run_as_group=int(user.gid) if user and user.gid else None,
            ),
        )

    def _env_refs(self, job: ContainerJob) -> list[client.V1EnvVar]:
        """The container's env: each entry's name, its value read from the job's Secret."""
        return [
            client.V1EnvVar(name=entry.partition("=")[0], value_from=client.V1EnvVarSource(
                secret_key_ref=client.V1SecretKeySelector(name=env_secret_name(job.name), key=f"env-{index}")))
            for index, entry in enumerate(self.plugin_env(job.env))
        ]

    def _labels(self, job: ContainerJob) -> dict[str, str]:
        labels = {**self.labels_of(job), JOB_TYPE_LABEL_K8S: job.labels.get(JOB_TYPE_LABEL, "plugin")}
        labels.pop(JOB_TYPE_LABEL, None)
        return labels

    def env_secret(self, job: ContainerJob) -> client.V1Secret:
        """The Secret holding the values of the job's env entries (keys ``env-<index>``)."""
        values = {f"env-{index}": entry.partition("=")[2] for index, entry in enumerate(self.plugin_env(job.env))}
        metadata = client.V1ObjectMeta(name=env_secret_name(job.name), labels=self._labels(job))
        return client.V1Secret(metadata=metadata, type="Opaque", string_data=values)

    def manifest(self, job: ContainerJob) -> client.V1Job:
        """The batch/v1 Job of a plugin container (its env values are in ``env_secret``),
        merged over the job template if there is one."""
        labels = self._labels(job)
        volumes = [self._volume()]
        if self.shm_size:
            volumes.append(client.V1Volume(name=SHM_VOLUME, empty_dir=client.V1EmptyDirVolumeSource(
                medium="Memory", size_limit=f"{self.shm_size}Mi")))
        pod = client.V1PodSpec(
            restart_policy="Never",
            containers=[self._container(job)],
            volumes=volumes,
            node_selector=self.node_selector or None,
            image_pull_secrets=[client.V1LocalObjectReference(name=s) for s in self.image_pull_secrets] or None,
            service_account_name=self.service_account,
            automount_service_account_token=False,
        )
        spec = client.V1JobSpec(
            backoff_limit=0,
            parallelism=job.number_of_workers,
            completions=job.number_of_workers,
            active_deadline_seconds=self.max_job_seconds or DEFAULT_DEADLINE_SECONDS,
            ttl_seconds_after_finished=24 * 3600,
            template=client.V1PodTemplateSpec(metadata=client.V1ObjectMeta(labels=labels), spec=pod),
        )
        if self.server_minor() >= POD_FAILURE_POLICY_MINOR:
            # a pod evicted or preempted (node drain) is not the plugin's failure: run it again
            spec.backoff_limit = 1
            spec.pod_failure_policy = {"rules": [
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
                {"action": "FailJob", "onExitCodes": {"operator": "NotIn", "values": [0]}},
            ]}
        metadata = client.V1ObjectMeta(name=job.name, namespace=self.namespace, labels=labels)
        manifest = client.V1Job(metadata=metadata, spec=spec)
        return manifest if self.job_template is None else self._templated(manifest)

    def _templated(self, manifest: client.V1Job) -> client.V1Job:
        """``manifest`` merged over the job template, as the client's model."""
        merged = merge_job_template(self.job_template or {}, self.api_client.sanitize_for_serialization(manifest))
        try:
            return self.api_client.deserialize(json.dumps(merged), "V1Job", None)
        except (TypeError, ValueError) as error:
            raise ComputeError(f"The job template makes no valid Job: {error}") from None

    def submit(self, job: ContainerJob) -> None:
        """Create the env Secret, then the Job, then make the Job the Secret's owner (the
        Secret goes when the Job goes)."""
        manifest = self.manifest(job)
        self._put_env_secret(job)
        try:
            created = self.batch.create_namespaced_job(self.namespace, manifest)
        except ApiException as error:
            self._delete_env_secret(job.name)
            raise ComputeError(f"Kubernetes refused the Job: {_reason(error)}") from None
        owner = client.V1OwnerReference(api_version="batch/v1", kind="Job", name=job.name, uid=created.metadata.uid)
        self.core.patch_namespaced_secret(env_secret_name(job.name), self.namespace,
                                          {"metadata": {"ownerReferences": [owner]}})

    def _put_env_secret(self, job: ContainerJob) -> None:
        """Create the job's env Secret; one an earlier attempt left is replaced, any other
        Secret of that name is never touched."""
        secret = self.env_secret(job)
        try:
            self.core.create_namespaced_secret(self.namespace, secret)
            return
        except ApiException as error:
            if error.status != 409:
                raise ComputeError(f"Kubernetes refused the Job's env Secret: {_reason(error)}") from None
        existing = self.core.read_namespaced_secret(secret.metadata.name, self.namespace)
        if (existing.metadata.labels or {}).get(JID_LABEL) != job.labels.get(JID_LABEL):
            raise ComputeError(f"A Secret named {secret.metadata.name} that is not this job's exists")
        self.core.replace_namespaced_secret(secret.metadata.name, self.namespace, secret)

    def _delete_env_secret(self, name: str) -> None:
        try:
            self.core.delete_namespaced_secret(env_secret_name(name), self.namespace)
        except ApiException as error:
            if error.status != 404:
                raise

    # ----- observing ---------------------------------------------------------------------

    def _job(self, name: str) -> client.V1Job | None:
        try:
            return self.batch.read_namespaced_job(name, self.namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def _pods(self, name: str) -> list[client.V1Pod]:
        return self.core.list_namespaced_pod(self.namespace, label_selector=f"job-name={name}").items

    def state(self, name: str) -> ContainerState | None:
        job = self._job(name)
        if job is None:
            return None
        pods = self._pods(name)
        status, message = job_state(job)
        if status is JobStatus.STARTED and (waiting := waiting_reason(pods)):
            status, message = JobStatus.NOT_STARTED, waiting
        moment = job.status.completion_time if status is JobStatus.FINISHED_SUCCESSFULLY else None
        if status is JobStatus.FINISHED_WITH_ERROR:
            moment = next((c.last_transition_time for c in job.status.conditions or [] if c.type == "Failed"), None)
        timestamp = _rfc3339(moment) or _rfc3339(job.status.start_time) or ZERO_TIME
        return ContainerState(status, message, timestamp, _exit_code(pods), job.metadata.labels or {})

    def logs(self, name: str) -> str:
        text = []
        for pod in self._pods(name):
            try:  # no body (seen under concurrent polls) comes back as None: no output yet
                text.append(self.core.read_namespaced_pod_log(pod.metadata.name, self.namespace,
                                                              tail_lines=self.logs_tail) or "")
            except ApiException:
                continue
            for status in pod.status.container_statuses or []:
                terminated = status.state.terminated if status.state else None
                if terminated and terminated.reason not in (None, "Completed"):
                    text.append(f"{terminated.reason}\n")
        return "".join(text)

    def follow_logs(self, name: str) -> Iterator[str]:
        pod = self._started_pod(name)
        if pod is None:
            return
        stream = self.core.read_namespaced_pod_log(pod, self.namespace, follow=True, _preload_content=False)
        yield from split_lines(stream.stream(amt=4096))

    def _started_pod(self, name: str) -> str | None:
        """The Job's first pod once it runs or ended (logs exist then), ``None`` if the Job ends without one."""
        while True:
            pods = self._pods(name)
            for pod in pods:
                if pod.status.phase in STARTED_PHASES:
                    return pod.metadata.name
            state = self.state(name)
            if state is None or (not state.status.is_active and not pods):
                return None
            time.sleep(POLL_SECONDS)

    def wait(self, name: str) -> int:
        while True:
            state = self.state(name)
            if state is None:
                raise ComputeError(f"Job {name} was removed before it finished")
            if not state.status.is_active:
                break
            time.sleep(POLL_SECONDS)
        if state.status is JobStatus.FINISHED_SUCCESSFULLY:
            return 0
        if state.exit_code:
            return state.exit_code
        raise ComputeError(f"Kubernetes Job {name} failed: {state.message}")

    def remove(self, name: str) -> None:
        """Delete the Job, its pods (foreground propagation; running pods are killed) and its
        env Secret."""
        self._delete_env_secret(name)
        try:
            self.batch.delete_namespaced_job(name, self.namespace, propagation_policy="Foreground")
        except ApiException as error:
            if error.status == 404:
                return
            raise
        for pod in self._pods(name):
            try:
                self.core.delete_namespaced_pod(pod.metadata.name, self.namespace, grace_period_seconds=0)
            except ApiException as error:
                if error.status != 404:
                    raise
        deadline = time.monotonic() + REMOVE_TIMEOUT_SECONDS
        while self._job(name) is not None and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)


def _node(node: client.V1Node) -> ComputeNode:
    """A node's readiness and allocatable resources (GPUs: any ``<vendor>/gpu`` resource)."""
    ready = any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])
    allocatable = node.status.allocatable or {}
    return ComputeNode(
        name=node.metadata.name,
        ready=ready,
        cpu=float(parse_quantity(allocatable.get("cpu", "0"))),
        memory_mib=int(parse_quantity(allocatable.get("memory", "0")) // 2**20),
        gpu=sum(int(parse_quantity(value)) for key, value in allocatable.items() if key.endswith("/gpu")),
    )


def _exit_code(pods: list[client.V1Pod]) -> int | None:
    """The first non-zero exit code of the pods' containers, else 0, else ``None``."""
    codes = [
        status.state.terminated.exit_code
        for pod in pods
        for status in pod.status.container_statuses or []
        if status.state and status.state.terminated
    ]
    return next((code for code in codes if code), 0) if codes else None


def env_secret_name(name: str) -> str:
    """The Secret of a Job's env values."""
    return f"{name}-env"


def _reason(error: ApiException) -> str:
    """The message of a Kubernetes API error body."""
    try:
        body: Any = json.loads(error.body or "{}")
    except ValueError:
        body = {}
    return body.get("message") or f"{error.status} {error.reason}"
