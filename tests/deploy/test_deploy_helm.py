"""The Helm chart, rendered (tests/deploy/helm_render.py) under several sets of values and
checked against the code: the settings it sets are settings the code reads and load into a valid
Settings, the server and the workers agree, KEDA watches the queue the workers consume, the
probes reach the health service, and the server would accept the exposure the chart sets up."""

from __future__ import annotations

import base64
import copy
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from deploy_helpers import (
    HEALTHCHECK,
    REQUIRED_EVERYWHERE,
    image_user,
    known_env,
    remap_paths,
    worker_invocation,
)
from helm_render import Chart, TemplateError, merge

from service.api.auth import hash_key, new_key
from service.api.transport import plan_exposure
from service.core.settings import Settings

SECURE: dict[str, Any] = {
    "postgresql": {"password": "s3cret"},
    "auth": {"existingSecret": "tempering-api-keys"},
    "tls": {"existingSecret": "tempering-tls"},
}
REDIS_HOST, REDIS_PORT, REDIS_DB = "127.0.0.1", 6379, 13
PLAINTEXT: dict[str, Any] = {
    "postgresql": {"password": "s3cret"},
    "auth": {"insecureOpen": True},
    "tls": {"allowInsecureRemote": True},
}


def with_secure(**overrides: Any) -> dict[str, Any]:
    return merge(copy.deepcopy(SECURE), overrides)


SCENARIOS: dict[str, dict[str, Any]] = {
    "secure": SECURE,
    "plaintext-behind-a-proxy": PLAINTEXT,
    "mutual-tls": with_secure(
        tls={"clientCASecret": "tempering-client-ca", "probe": {"clientSecret": "probe-client"}}
    ),
    "external-redis-and-postgresql": with_secure(
        redis={"enabled": False, "externalUrl": "redis://:pw@redis.example.internal:6380/2"},
        postgresql={
            "enabled": False,
            "externalUrl": "postgresql+psycopg://t:p@db.example.internal:5432/tempering",
        },
        autoscaling={
            "redisAddress": "redis.example.internal:6380",
            "redisDatabaseIndex": "2",
            "authenticationRef": "redis-auth",
        },
    ),
    "fixed-worker-count": with_secure(autoscaling={"enabled": False}, worker={"replicas": 3}),
    "existing-secret-claim-and-metrics": with_secure(
        connections={"existingSecret": "my-connections"},
        artifacts={"existingClaim": "shared-nfs", "mountPath": "/srv/artifacts"},
        metrics={"enabled": True},
    ),
    "metrics-off": with_secure(metrics={"enabled": False}),
    "renamed-release-and-queue": with_secure(
        fullnameOverride="hardening",
        settings={"TEMPERING_QUEUE": "tempering.a100", "TEMPERING_JOB_TIME_LIMIT": "7200"},
        worker={"terminationGracePeriodSeconds": 7500},
    ),
    "webhooks": with_secure(
        webhooks={
            "existingSecret": "tempering-webhook-key",
            "tenantWebhooks": "alice=https://hooks.alice.example/t",
            "allowedHosts": "hooks.example.com,registry.internal:8080",
        }
    ),
}
EXISTING_SECRETS = {
    "my-connections": {
        "TEMPERING_BROKER_URL": "redis://tempering-redis:6379/0",
        "TEMPERING_DATABASE_URL": (
            "postgresql+psycopg://tempering:s3cret@tempering-postgresql:5432/tempering"
        ),
    }
}


class Rendered:
    """The objects one rendering produced, with the lookups the tests need."""

    def __init__(self, objects: list[dict[str, Any]], values: dict[str, Any]) -> None:
        self.objects = objects
        self.values = values

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def find(self, kind: str, name: str) -> dict[str, Any] | None:
        return next((o for o in self.of_kind(kind) if o["metadata"]["name"] == name), None)

    def workload(self, component: str) -> dict[str, Any]:
        (found,) = [
            o
            for o in self.objects
            if o["kind"] in ("Deployment", "StatefulSet")
            and o["metadata"]["labels"].get("app.kubernetes.io/component") == component
        ]
        return found

    def container(self, component: str) -> dict[str, Any]:
        (container,) = self.workload(component)["spec"]["template"]["spec"]["containers"]
        return container

    def env(self, component: str) -> dict[str, str]:
        """The container's environment as Kubernetes builds it: envFrom, then env over it."""
        container = self.container(component)
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                config_map = self.find("ConfigMap", source["configMapRef"]["name"])
                assert config_map is not None, f"missing ConfigMap {source}"
                data = config_map["data"]
                assert all(isinstance(v, str) for v in data.values()), data
                env.update(data)
            else:
                env.update(self.secret_data(source["secretRef"]["name"]))
        for item in container.get("env", []):
            if "value" in item:
                assert isinstance(item["value"], str), item
                env[item["name"]] = item["value"]
            else:
                ref = item["valueFrom"]["secretKeyRef"]
                env[item["name"]] = self.secret_data(ref["name"])[ref["key"]]
        return env

    def secret_data(self, name: str) -> dict[str, str]:
        secret = self.find("Secret", name)
        if secret is None:
            assert name in EXISTING_SECRETS, f"the pods read Secret {name}, which nothing makes"
            return EXISTING_SECRETS[name]
        data = dict(secret.get("stringData") or {})
        for key, value in (secret.get("data") or {}).items():
            data[key] = base64.b64decode(value).decode()
        return data

    def settings(self, component: str) -> Settings:
        return Settings.load(self.env(component))

    def mounts(self, component: str) -> dict[str, dict[str, Any]]:
        """Mount path -> the pod volume mounted there."""
        pod = self.workload(component)["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        claims = {
            t["metadata"]["name"]: {"claimTemplate": t}
            for t in self.workload(component)["spec"].get("volumeClaimTemplates", [])
        }
        result = {}
        for mount in self.container(component).get("volumeMounts", []):
            volume = volumes.get(mount["name"]) or claims.get(mount["name"])
            assert volume is not None, f"{component}: mount of undeclared volume {mount}"
            result[mount["mountPath"]] = volume
        return result


@pytest.fixture(params=list(SCENARIOS), scope="module")
def rendered(request: pytest.FixtureRequest, chart: Chart) -> Rendered:
    values = merge(copy.deepcopy(chart.values), SCENARIOS[request.param])
    return Rendered(chart.manifests(SCENARIOS[request.param]), values)


# ---------------------------------------------------------------------------------------------
# Well-formed Kubernetes objects


def test_every_object_is_a_named_kubernetes_object(rendered: Rendered) -> None:
    names = set()
    for obj in rendered.objects:
        assert {"apiVersion", "kind", "metadata"} <= obj.keys(), obj
        name = obj["metadata"]["name"]
        assert len(name) <= 63, name
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name), name
        assert (obj["kind"], name) not in names, f"{obj['kind']} {name} rendered twice"
        names.add((obj["kind"], name))


def test_workload_selectors_match_their_pods_and_services_match_pods(rendered: Rendered) -> None:
    pod_labels = []
    for workload in rendered.of_kind("Deployment") + rendered.of_kind("StatefulSet"):
        selector = workload["spec"]["selector"]["matchLabels"]
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), workload["metadata"]["name"]
        pod_labels.append(labels)
    for service in rendered.of_kind("Service"):
        selector = service["spec"]["selector"]
        assert any(selector.items() <= labels.items() for labels in pod_labels), service
    for statefulset in rendered.of_kind("StatefulSet"):
        assert rendered.find("Service", statefulset["spec"]["serviceName"]) is not None


def test_containers_run_as_the_images_non_root_user(rendered: Rendered) -> None:
    uid, gid = image_user("service.Dockerfile")
    assert image_user("worker.Dockerfile") == (uid, gid)
    for component in ("service", "worker"):
        pod = rendered.workload(component)["spec"]["template"]["spec"]
        context = pod["securityContext"]
        assert context["runAsNonRoot"] is True
        assert (context["runAsUser"], context["runAsGroup"]) == (uid, gid)
        assert pod["automountServiceAccountToken"] is False
        container = rendered.container(component)["securityContext"]
        assert container["allowPrivilegeEscalation"] is False
        assert container["capabilities"]["drop"] == ["ALL"]
        if container.get("readOnlyRootFilesystem"):
            # Everything the process writes must then be a volume: state dir, /tmp.
            mounts = rendered.mounts(component)
            assert {"/tmp", str(rendered.settings(component).state_dir)} <= mounts.keys()


# ---------------------------------------------------------------------------------------------
# Settings: names the code reads, the same for the server and the workers


def test_every_variable_set_is_one_the_code_reads(rendered: Rendered) -> None:
    for component in ("service", "worker"):
        env = rendered.env(component)
        unknown = {k for k in env if k.startswith("TEMPERING_")} - known_env()
        assert not unknown, f"{component} sets variables no code reads: {sorted(unknown)}"


def test_server_and_workers_load_valid_settings_that_agree(rendered: Rendered) -> None:
    service_env, worker_env = rendered.env("service"), rendered.env("worker")
    for name in REQUIRED_EVERYWHERE:
        assert service_env.get(name), f"the server does not set {name}"
        assert worker_env.get(name), f"the workers do not set {name}"
        assert service_env[name] == worker_env[name], name
    service, worker = rendered.settings("service"), rendered.settings("worker")
    for name in ("broker_url", "database_url", "artifact_dir", "queue", "table_prefix"):
        assert getattr(service, name) == getattr(worker, name), name
    assert worker.broker_url.startswith("redis://"), "workers on several nodes need Redis"
    assert worker.database_url.startswith("postgresql+psycopg://"), (
        "the job store is shared by pods on several nodes: PostgreSQL, not SQLite"
    )


def test_the_webhook_master_key_is_mounted_where_the_server_reads_it(rendered: Rendered) -> None:
    secret = rendered.values["webhooks"]["existingSecret"]
    key_file = rendered.settings("service").webhook_secret_file

    if not secret:
        assert key_file is None
        return
    assert key_file is not None
    assert rendered.mounts("service")[str(key_file.parent)]["secret"]["secretName"] == secret
    assert key_file.name == rendered.values["webhooks"]["key"]


def test_artifact_dir_is_the_same_shared_volume_everywhere(rendered: Rendered) -> None:
    claims = set()
    for component in ("service", "worker"):
        artifact_dir = str(rendered.settings(component).artifact_dir)
        volume = rendered.mounts(component).get(artifact_dir)
        assert volume is not None, f"{component}: {artifact_dir} is not a volume"
        claims.add(volume["persistentVolumeClaim"]["claimName"])
    (claim,) = claims
    pvc = rendered.find("PersistentVolumeClaim", claim)
    if rendered.values["artifacts"]["existingClaim"]:
        assert pvc is None
        assert claim == rendered.values["artifacts"]["existingClaim"]
    else:
        assert pvc is not None
        assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]


def test_connection_urls_point_at_the_charts_own_redis_and_postgresql(rendered: Rendered) -> None:
    settings = rendered.settings("worker")
    if rendered.values["redis"]["enabled"]:
        host = urlsplit(settings.broker_url).hostname
        assert rendered.find("Service", host) is not None, f"no Service {host}"
        assert rendered.find("StatefulSet", host) is not None
    if rendered.values["postgresql"]["enabled"]:
        url = urlsplit(settings.database_url)
        assert rendered.find("Service", url.hostname) is not None
        env = rendered.env("postgresql")
        assert (url.username, url.password, url.path.lstrip("/")) == (
            env["POSTGRES_USER"],
            env["POSTGRES_PASSWORD"],
            env["POSTGRES_DB"],
        )


# ---------------------------------------------------------------------------------------------
# The server: ports, probes, exposure


def grpc_port(settings: Settings) -> int:
    return int(settings.grpc_address.rpartition(":")[2])


def test_server_listens_on_the_port_the_pod_and_service_expose(rendered: Rendered) -> None:
    port = grpc_port(rendered.settings("service"))
    container = rendered.container("service")
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["grpc"] == port
    assert container["args"] == ["--no-worker"], "the server pod must not start a local worker"
    (service,) = [
        s
        for s in rendered.of_kind("Service")
        if s["metadata"]["labels"].get("app.kubernetes.io/component") == "service"
    ]
    by_name = {p["name"]: p for p in service["spec"]["ports"]}
    assert by_name["grpc"]["targetPort"] == "grpc"
    assert ("metrics" in by_name) == rendered.values["metrics"]["enabled"]
    assert ("metrics" in ports) == rendered.values["metrics"]["enabled"]


def test_metrics_are_served_on_the_ports_the_pods_expose_and_announce(rendered: Rendered) -> None:
    addresses = {
        "service": rendered.settings("service").metrics_address,
        "worker": rendered.settings("worker").worker_metrics_address,
    }
    for component, address in addresses.items():
        annotations = rendered.workload(component)["spec"]["template"]["metadata"]["annotations"]
        container = rendered.container(component)
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        if not rendered.values["metrics"]["enabled"]:
            assert not address
            assert "prometheus.io/scrape" not in annotations
            continue
        port = int(address.rpartition(":")[2])
        assert ports["metrics"] == port
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(port)
        assert annotations["prometheus.io/path"] == "/metrics"
    if rendered.values["metrics"]["enabled"]:
        assert addresses["service"] != addresses["worker"]


def test_probes_ask_the_grpc_health_service(rendered: Rendered) -> None:
    container = rendered.container("service")
    port = grpc_port(rendered.settings("service"))
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        handler = container[probe]
        if rendered.settings("service").tls_cert is None:
            assert handler["grpc"] == {"port": port}, "plaintext: Kubernetes' own grpc probe"
        else:
            command = handler["exec"]["command"]
            assert command[:2] == ["python", "/opt/tempering/healthcheck.py"], command
            assert handler["timeoutSeconds"] >= 5 + 1, "the script's own timeout is 5 s"


def test_the_server_accepts_the_exposure_the_chart_sets_up(
    rendered: Rendered, tmp_path: Path, pki: Any
) -> None:
    """The mounted Secrets stand in as real files; the server's own rules decide."""
    env = rendered.env("service")
    key_file = tmp_path / "api-keys"
    key_file.write_text(f"alice:{hash_key(new_key())}\n")
    files = {
        "/etc/tempering/auth/api-keys": key_file,
        "/etc/tempering/tls/tls.crt": pki.server_cert,
        "/etc/tempering/tls/tls.key": pki.server_key,
        "/etc/tempering/client-ca/ca.crt": pki.ca,
    }
    for variable in ("TEMPERING_API_KEYS_FILE", "TEMPERING_TLS_CERT", "TEMPERING_TLS_KEY"):
        if variable in env:
            assert env[variable] in files, f"{variable}={env[variable]} is not a mounted file"
            directory = str(Path(env[variable]).parent)
            assert "secret" in rendered.mounts("service")[directory], directory
    settings = Settings.load(remap_paths(env, files))
    exposure = plan_exposure(settings)  # raises InsecureSetup where the server would refuse
    assert (exposure.credentials is not None) == bool(rendered.values["tls"]["existingSecret"])
    assert (exposure.keys is not None) == bool(rendered.values["auth"]["existingSecret"])


def test_tls_probe_command_passes_against_a_real_tls_server(
    chart: Chart, tmp_path: Path, pki: Any, running_tls_server: Any
) -> None:
    """The exact exec probe the chart renders, run against a real server speaking TLS."""
    _, port = running_tls_server(mutual=False)
    rendered = Rendered(chart.manifests(SECURE), {})
    command = rendered.container("service")["readinessProbe"]["exec"]["command"]
    files = {"/etc/tempering/tls/tls.crt": pki.server_cert, "/etc/tempering/tls/ca.crt": pki.ca}
    argv = [sys.executable, str(HEALTHCHECK)] + [str(files.get(a, a)) for a in command[2:]]
    env = remap_paths(rendered.env("service"), files)
    env["TEMPERING_GRPC_ADDRESS"] = f"0.0.0.0:{port}"
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_mutual_tls_probe_command_passes_against_a_real_mtls_server(
    chart: Chart, pki: Any, running_tls_server: Any
) -> None:
    _, port = running_tls_server(mutual=True)
    rendered = Rendered(chart.manifests(SCENARIOS["mutual-tls"]), {})
    command = rendered.container("service")["livenessProbe"]["exec"]["command"]
    files = {
        "/etc/tempering/tls/tls.crt": pki.server_cert,
        "/etc/tempering/tls/ca.crt": pki.ca,
        "/etc/tempering/client-ca/ca.crt": pki.ca,
        "/etc/tempering/probe/tls.crt": pki.client_cert,
        "/etc/tempering/probe/tls.key": pki.client_key,
    }
    argv = [sys.executable, str(HEALTHCHECK)] + [str(files.get(a, a)) for a in command[2:]]
    env = remap_paths(rendered.env("service"), files)
    env["TEMPERING_GRPC_ADDRESS"] = f"0.0.0.0:{port}"
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------------------------------------
# The workers: one process per GPU, scaled on the queue


def test_worker_runs_one_job_at_a_time_on_one_gpu(
    rendered: Rendered, monkeypatch: pytest.MonkeyPatch
) -> None:
    container = rendered.container("worker")
    argv = worker_invocation(container["args"], rendered.env("worker"), monkeypatch)
    assert argv[argv.index("--concurrency") + 1] == "1"
    assert argv[argv.index("--queues") + 1] == rendered.settings("worker").queue
    limits = container["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == 1
    assert "CUDA_VISIBLE_DEVICES" not in rendered.env("worker"), (
        "the device plugin chooses the GPU; a fixed CUDA_VISIBLE_DEVICES would fight it"
    )


def test_worker_liveness_pings_its_own_celery_node(rendered: Rendered) -> None:
    container = rendered.container("worker")
    node = container["args"][container["args"].index("--hostname") + 1]
    assert node.endswith("@%h")
    script = container["livenessProbe"]["exec"]["command"][-1]
    assert "celery -A workers.celery_app inspect ping" in script
    assert f'--destination "{node.removesuffix("%h")}$(hostname)"' in script


def test_workers_outlive_their_job_when_scaled_down(rendered: Rendered) -> None:
    settings = rendered.settings("worker")
    pod = rendered.workload("worker")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > settings.job_time_limit
    assert settings.visibility_timeout > settings.job_time_limit


def test_keda_scales_the_workers_on_the_queue_they_consume(rendered: Rendered) -> None:
    deployment = rendered.workload("worker")
    scaled = rendered.of_kind("ScaledObject")
    if not rendered.values["autoscaling"]["enabled"]:
        assert not scaled
        assert deployment["spec"]["replicas"] == rendered.values["worker"]["replicas"]
        return
    (scaled_object,) = scaled
    assert scaled_object["apiVersion"] == "keda.sh/v1alpha1"
    assert "replicas" not in deployment["spec"], "KEDA owns the replica count"
    spec = scaled_object["spec"]
    assert spec["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert spec["minReplicaCount"] == 0, "idle GPUs cost money: scale to zero"
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "redis"
    metadata = trigger["metadata"]
    assert all(isinstance(v, str) for v in metadata.values()), metadata
    settings = rendered.settings("worker")
    assert metadata["listName"] == settings.queue
    broker = urlsplit(settings.broker_url)
    assert metadata["address"] == f"{broker.hostname}:{broker.port or 6379}"
    assert metadata["databaseIndex"] == (broker.path.lstrip("/") or "0")
    if rendered.values["autoscaling"]["authenticationRef"]:
        assert trigger["authenticationRef"]["name"] == "redis-auth"


def test_kedas_list_is_the_redis_key_celery_publishes_to(chart: Chart) -> None:
    """What KEDA measures (LLEN of the list named listName) is where Celery really puts a job:
    a job sent with the rendered settings to a real Redis lands in a list of that name."""
    import redis

    from service.jobs.queue import CeleryJobQueue
    from workers.celery_app import create_app

    url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError:
        message = f"Redis is not reachable at {REDIS_HOST}:{REDIS_PORT}"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI must run this test, not skip it)")
        pytest.skip(message)
    queue = f"tempering.deploy-test-{uuid.uuid4().hex[:8]}"
    rendered = Rendered(chart.manifests(with_secure(settings={"TEMPERING_QUEUE": queue})), {})
    (trigger,) = rendered.of_kind("ScaledObject")[0]["spec"]["triggers"]
    env = {**rendered.env("service"), "TEMPERING_BROKER_URL": url}
    client = redis.Redis.from_url(url)
    try:
        CeleryJobQueue(create_app(Settings.load(env)), queue).enqueue("job-deploy-test")
        assert client.llen(trigger["metadata"]["listName"]) == 1
    finally:
        leftovers = [k for k in client.scan_iter("*") if queue.encode() in k]
        client.delete(queue, *leftovers)  # the list and kombu's binding keys for it
        client.close()


# ---------------------------------------------------------------------------------------------
# Values the chart refuses, as the server would


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({}, "postgresql.password"),
        ({"postgresql": {"password": "x"}}, "auth:"),
        ({"postgresql": {"password": "x"}, "auth": {"insecureOpen": True}}, "tls:"),
        (
            with_secure(tls={"clientCASecret": "ca"}),
            "tls.probe.clientSecret",
        ),
        (with_secure(redis={"enabled": False}), "redis.externalUrl"),
        (
            with_secure(redis={"enabled": False, "externalUrl": "redis://r:6379/0"}),
            "autoscaling.redisAddress",
        ),
    ],
)
def test_chart_refuses_incomplete_values(
    chart: Chart, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(TemplateError, match=message.replace(".", r"\.")):
        chart.manifests(overrides)


# ---------------------------------------------------------------------------------------------
# Cross-check with the real helm, where a machine has it


@pytest.mark.skipif(shutil.which("helm") is None, reason="no helm binary on this machine")
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_real_helm_renders_the_same_objects(chart: Chart, scenario: str, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(SCENARIOS[scenario]))
    output = subprocess.run(
        [
            *("helm", "template", "tempering", str(chart.path), "-f", str(values)),
            *("--namespace", "default", "--kube-version", "1.30.0"),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    real = [d for d in yaml.safe_load_all(output) if d]
    ours = chart.manifests(SCENARIOS[scenario])

    def key(obj: dict[str, Any]) -> tuple[str, str]:
        return obj["kind"], obj["metadata"]["name"]

    def without_checksums(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Checksums hash toYaml text, which Go's and Python's YAML writers format apart."""
        for obj in objects:
            template = obj.get("spec", {}).get("template", {}).get("metadata", {})
            for name, value in (template.get("annotations") or {}).items():
                if name.startswith("checksum/"):
                    assert re.fullmatch(r"[0-9a-f]{64}", value)
                    template["annotations"][name] = "<sha256>"
        return sorted(objects, key=key)

    assert without_checksums(real) == without_checksums(ours)


@pytest.fixture
def running_tls_server(tmp_path: Path, pki: Any) -> Iterator[Any]:
    from service.api.server import start_server

    started = []

    def start(mutual: bool) -> tuple[Any, int]:
        state = tmp_path / f"state{len(started)}"
        state.mkdir()
        settings = Settings(
            state_dir=state,
            artifact_dir=state / "artifacts",
            database_url=f"sqlite:///{state / 'jobs.sqlite'}",
            broker_url=f"sqla+sqlite:///{state / 'broker.sqlite'}",
            grpc_address="127.0.0.1:0",
            grpc_threads=4,
            tls_cert=pki.server_cert,
            tls_key=pki.server_key,
            tls_client_ca=pki.ca if mutual else None,
        )
        running = start_server(settings)
        started.append(running)
        return running, running.port

    yield start
    for running in started:
        running.stop(grace=0)
