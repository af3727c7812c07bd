"""deploy/compose/compose.yaml with tempering.env.example as its env file: the services the code
expects, the same settings for the server and both workers, the GPU reservation, the shared
artifact volume, and an exposure the server accepts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from deploy_helpers import (
    COMPOSE_DIR,
    REQUIRED_EVERYWHERE,
    ROOT,
    image_command,
    known_env,
    read_env_file,
    remap_paths,
    worker_invocation,
)

from service.api.auth import hash_key, new_key
from service.api.transport import plan_exposure
from service.core.settings import Settings
from service.ops.cli import build_parser

COMPOSE_FILE = COMPOSE_DIR / "compose.yaml"
ENV_EXAMPLE = COMPOSE_DIR / "tempering.env.example"
TEMPERING_SERVICES = ("service", "worker", "worker-cpu")
WORKERS = ("worker", "worker-cpu")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def env_of(compose: dict[str, Any], name: str) -> dict[str, str]:
    """A container's environment as Compose builds it: env_file(s), then environment over it;
    tempering.env is read from its example."""
    service = compose["services"][name]
    env: dict[str, str] = {}
    for entry in service.get("env_file", []):
        path = entry if isinstance(entry, str) else entry["path"]
        assert path == "tempering.env", f"{name}: unexpected env file {path}"
        env.update(read_env_file(ENV_EXAMPLE))
    environment = service.get("environment", {})
    assert isinstance(environment, dict), f"{name}: write environment as a mapping"
    for key, value in environment.items():
        assert isinstance(value, str), f"{name}: {key} must be a string in YAML, not {value!r}"
        env[key] = value
    return env


def settings_of(compose: dict[str, Any], name: str) -> Settings:
    return Settings.load(env_of(compose, name))


def mounts_of(compose: dict[str, Any], name: str) -> dict[str, str]:
    """Container path -> volume name or host path."""
    result = {}
    for volume in compose["services"][name].get("volumes", []):
        source, target, *_ = volume.split(":")
        result[target] = source
    return result


def test_compose_file_has_the_services_the_code_expects(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"redis", "postgres", "service", "worker", "worker-cpu"} <= services.keys()
    for name in TEMPERING_SERVICES:
        build = services[name]["build"]
        dockerfile = (COMPOSE_DIR / build["context"] / build["dockerfile"]).resolve()
        assert (COMPOSE_DIR / build["context"]).resolve() == ROOT, "build from the repo root"
        assert dockerfile.is_file(), dockerfile
    assert services["service"]["build"]["dockerfile"].endswith("service.Dockerfile")
    assert services["worker"]["image"] == services["worker-cpu"]["image"]
    for name in WORKERS:
        assert services[name]["build"]["dockerfile"].endswith("worker.Dockerfile")


def test_no_unescaped_interpolation(compose: dict[str, Any]) -> None:
    """Compose would substitute ${X} from the shell: every $ must be $$ (a literal $)."""
    text = COMPOSE_FILE.read_text()
    assert not re.search(r"(?<!\$)\$(?!\$)", text.replace("$$", "")), "unescaped $ in compose"


def test_every_variable_set_is_one_the_code_reads(compose: dict[str, Any]) -> None:
    for name in TEMPERING_SERVICES:
        unknown = {k for k in env_of(compose, name) if k.startswith("TEMPERING_")} - known_env()
        assert not unknown, f"{name} sets variables no code reads: {sorted(unknown)}"


def test_server_and_workers_load_valid_settings_that_agree(compose: dict[str, Any]) -> None:
    server_env = env_of(compose, "service")
    for worker in WORKERS:
        worker_env = env_of(compose, worker)
        for variable in REQUIRED_EVERYWHERE:
            assert server_env.get(variable), f"the server does not set {variable}"
            assert worker_env.get(variable) == server_env[variable], (worker, variable)
    settings = [settings_of(compose, name) for name in TEMPERING_SERVICES]
    for field in ("broker_url", "database_url", "artifact_dir", "queue", "table_prefix"):
        assert len({getattr(s, field) for s in settings}) == 1, field


def test_urls_name_the_compose_redis_and_postgres(compose: dict[str, Any]) -> None:
    settings = settings_of(compose, "service")
    broker = urlsplit(settings.broker_url)
    assert broker.scheme == "redis"
    assert broker.hostname == "redis"
    assert broker.hostname in compose["services"]
    database = urlsplit(settings.database_url)
    assert database.scheme == "postgresql+psycopg"
    assert database.hostname == "postgres"
    postgres = env_of(compose, "postgres")
    assert (database.username, database.password, database.path.lstrip("/")) == (
        postgres["POSTGRES_USER"],
        postgres["POSTGRES_PASSWORD"],
        postgres["POSTGRES_DB"],
    )


def test_everyone_waits_for_healthy_redis_and_postgres(compose: dict[str, Any]) -> None:
    for name in ("redis", "postgres"):
        assert compose["services"][name]["healthcheck"]["test"]
    for name in TEMPERING_SERVICES:
        depends = compose["services"][name]["depends_on"]
        for dependency in ("redis", "postgres"):
            assert depends[dependency]["condition"] == "service_healthy", (name, dependency)


def test_artifacts_are_one_named_volume_mounted_at_the_artifact_dir(
    compose: dict[str, Any],
) -> None:
    sources = set()
    for name in TEMPERING_SERVICES:
        artifact_dir = str(settings_of(compose, name).artifact_dir)
        source = mounts_of(compose, name).get(artifact_dir)
        assert source is not None, f"{name}: {artifact_dir} is not a volume"
        sources.add(source)
    (volume,) = sources
    assert volume in compose["volumes"], "a named volume, shared by the three containers"


def test_server_publishes_the_port_it_listens_on(compose: dict[str, Any]) -> None:
    settings = settings_of(compose, "service")
    port = settings.grpc_address.rpartition(":")[2]
    metrics_port = settings.metrics_address.rpartition(":")[2]
    published = [p.rpartition(":")[2] for p in compose["services"]["service"]["ports"]]
    assert published == [port, metrics_port]
    args = build_parser().parse_args(compose["services"]["service"]["command"])
    assert args.no_worker, "the server container must not start a local worker"
    assert image_command("service.Dockerfile", compose["services"]["service"]["command"])[:2] == [
        "temper",
        "serve",
    ]


def test_workers_expose_the_port_they_serve_metrics_on(compose: dict[str, Any]) -> None:
    for name in ("worker", "worker-cpu"):
        address = settings_of(compose, name).worker_metrics_address
        assert address, f"{name} serves no metrics"
        assert compose["services"][name]["expose"] == [address.rpartition(":")[2]]


def test_gpu_worker_reserves_one_gpu_and_cpu_worker_is_a_profile(
    compose: dict[str, Any],
) -> None:
    worker = compose["services"]["worker"]
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device == {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
    assert "profiles" not in worker, "the GPU worker is part of the default stack"
    cpu = compose["services"]["worker-cpu"]
    assert cpu["profiles"] == ["cpu"]
    assert "deploy" not in cpu
    assert env_of(compose, "worker-cpu")["CUDA_VISIBLE_DEVICES"] == ""


@pytest.mark.parametrize("name", WORKERS)
def test_workers_run_one_job_at_a_time(
    compose: dict[str, Any], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = worker_invocation(
        compose["services"][name]["command"], env_of(compose, name), monkeypatch
    )
    assert argv[argv.index("--concurrency") + 1] == "1"
    assert argv[argv.index("--queues") + 1] == settings_of(compose, name).queue
    assert argv[argv.index("--hostname") + 1].startswith("worker@"), "the health check pings it"


def test_the_server_accepts_the_exposure_of_the_example(
    compose: dict[str, Any], tmp_path: Path, pki: Any
) -> None:
    env = env_of(compose, "service")
    mounts = mounts_of(compose, "service")
    secret_files = {k: v for k, v in env.items() if k.endswith(("_FILE", "_CERT", "_KEY", "_CA"))}
    for variable, path in secret_files.items():
        directory = str(Path(path).parent)
        assert directory in mounts, f"{variable}={path}: {directory} is not mounted"
        assert (COMPOSE_DIR / mounts[directory]).is_dir(), mounts[directory]
    key_file = tmp_path / "api-keys"
    key_file.write_text(f"alice:{hash_key(new_key())}\n")
    files = {
        "/run/secrets/tempering/api-keys": key_file,
        "/run/secrets/tempering/tls.crt": pki.self_signed_cert,
        "/run/secrets/tempering/tls.key": pki.self_signed_key,
    }
    exposure = plan_exposure(Settings.load(remap_paths(env, files)))
    assert exposure.keys is not None, "the example serves with API keys"
    assert exposure.credentials is not None, "the example serves with TLS"


def test_env_example_sets_only_known_or_postgres_variables() -> None:
    for key in read_env_file(ENV_EXAMPLE):
        assert key in known_env() or key.startswith("POSTGRES_"), key
