"""The two Dockerfiles, parsed: multi-stage, pinned bases, the right extras, non-root, health
checks that reach the real thing, and a build context (.dockerignore) that holds what they copy."""

from __future__ import annotations

import re
import shlex

import pytest
from deploy_helpers import (
    DOCKER,
    HEALTHCHECK,
    ROOT,
    Dockerfile,
    dockerignore_excludes,
    extra_requirements,
    image_command,
    image_user,
    parse_dockerfile,
    requirement_names,
)
from packaging.requirements import Requirement
from packaging.version import Version

from client.commands.stack import MODULES

DOCKERFILES = ("service.Dockerfile", "worker.Dockerfile")
EXACT_VERSION = re.compile(r":\d+\.\d+\.\d+")
TORCH_PIN = Version("2.13.0")
"""The torch build the README names; the worker image installs exactly this one."""


@pytest.fixture(params=DOCKERFILES)
def dockerfile(request: pytest.FixtureRequest) -> Dockerfile:
    return parse_dockerfile(DOCKER / request.param)


def pip_installs(dockerfile: Dockerfile, stage_index: int = -1) -> list[str]:
    """The pip install commands of a stage, ARGs resolved."""
    commands = []
    for run in dockerfile.stages[stage_index].all("RUN"):
        for part in re.split(r"&&|;", run.args):
            if re.search(r"\bpip\b.*\binstall\b", part):
                commands.append(dockerfile.resolve(part.strip()))
    return commands


def installed_extras(commands: list[str]) -> set[str]:
    extras = set()
    for command in commands:
        for match in re.finditer(r"(?:tempering[^\s\"']*|\.|\*\.whl\)?)\[([\w,]+)\]", command):
            extras.update(match.group(1).split(","))
    return extras


def test_multi_stage_with_pinned_bases(dockerfile: Dockerfile) -> None:
    assert len(dockerfile.stages) >= 2, "build in one stage, run in another"
    for stage in dockerfile.stages:
        base = dockerfile.resolve(stage.base)
        assert "@sha256:" in base or EXACT_VERSION.search(base), f"{base} is not pinned"
        assert not base.endswith(":latest")


def test_final_stage_runs_as_a_non_root_user_it_creates(dockerfile: Dockerfile) -> None:
    uid, gid = image_user(dockerfile.path.name)
    assert uid != 0
    assert gid != 0
    created = " ".join(run.args for run in dockerfile.final.all("RUN"))
    assert f"--uid {uid}" in created
    assert f"--gid {gid}" in created
    user = dockerfile.final.last("USER")
    assert user is not None
    later = [i for i in dockerfile.final.instructions if i.line > user.line]
    assert not [i for i in later if i.keyword == "RUN"], "nothing runs as root after USER"


def test_settings_in_images_are_valid_and_dirs_owned_by_the_user(dockerfile: Dockerfile) -> None:
    env = dockerfile.final.env()
    uid, gid = image_user(dockerfile.path.name)
    created = " ".join(run.args for run in dockerfile.final.all("RUN"))
    for variable in ("TEMPERING_STATE_DIR", "TEMPERING_ARTIFACT_DIR"):
        path = env[variable]
        assert re.search(rf"chown {uid}:{gid}[^&]*\s{re.escape(path)}\b", created), (
            f"{path} ({variable}) must be writable by {uid}"
        )


def test_service_image_installs_the_server_extra_and_never_torch() -> None:
    dockerfile = parse_dockerfile(DOCKER / "service.Dockerfile")
    assert dockerfile.resolve(dockerfile.stages[0].base).startswith("python:3.11.")
    assert "slim" in dockerfile.resolve(dockerfile.final.base)
    build = " ".join(run.args for run in dockerfile.stages[0].all("RUN"))
    assert 'pip wheel --wheel-dir /wheels ".[server]"' in build
    installs = pip_installs(dockerfile)
    assert installed_extras(installs) == {"server"}
    assert all("--no-index" in command for command in installs), "only the built wheelhouse"
    assert "torch" not in dockerfile.path.read_text().replace("never imports torch", "")
    assert "torch" not in requirement_names(extra_requirements("server"))


def test_worker_image_installs_the_pinned_cuda_torch_then_the_worker_and_mlflow_extras() -> None:
    dockerfile = parse_dockerfile(DOCKER / "worker.Dockerfile")
    base = dockerfile.resolve(dockerfile.final.base)
    assert re.fullmatch(
        r"nvidia/cuda:\d+\.\d+\.\d+-(cudnn-)?runtime-ubuntu22\.04(@sha256:\w+)?", base
    )
    installs = pip_installs(dockerfile)
    torch = [c for c in installs if "torch==" in c]
    assert len(torch) == 1
    assert f'"torch=={TORCH_PIN}"' in torch[0]
    assert installs.index(torch[0]) < next(i for i, c in enumerate(installs) if "[worker" in c), (
        "torch first, so the worker extra finds it and pulls no other build"
    )
    assert installed_extras(installs) == {"worker", "mlflow"}
    (torch_requirement,) = [
        Requirement(r) for r in extra_requirements("worker") if r.startswith("torch")
    ]
    assert TORCH_PIN in torch_requirement.specifier, "the pin must satisfy the worker extra"
    readme = (ROOT / "README.md").read_text()
    assert f"torch=={TORCH_PIN}" in readme
    assert "python3.11" in " ".join(run.args for run in dockerfile.final.all("RUN"))


def test_both_images_can_reach_the_postgresql_job_store() -> None:
    """Deployments use postgresql+psycopg:// URLs: each image needs psycopg, from its extra or
    installed beside it."""
    for name, extra in (("service.Dockerfile", "server"), ("worker.Dockerfile", "worker")):
        dockerfile = parse_dockerfile(DOCKER / name)
        names = requirement_names(extra_requirements(extra))
        installed = " ".join(pip_installs(dockerfile))
        assert "psycopg" in names or "psycopg[binary]" in installed, name


def test_entry_points_are_the_temper_commands() -> None:
    assert image_command("service.Dockerfile") == ["temper", "serve", "--no-worker"]
    assert image_command("worker.Dockerfile") == ["temper", "worker", "--hostname", "worker@%h"]
    assert {"serve", "worker"} <= MODULES.keys()


def test_service_health_check_runs_the_shipped_script() -> None:
    dockerfile = parse_dockerfile(DOCKER / "service.Dockerfile")
    healthcheck = dockerfile.final.last("HEALTHCHECK")
    assert healthcheck is not None
    command = healthcheck.exec_form()
    assert command is not None
    assert command[:2] == ["python", "/opt/tempering/healthcheck.py"]
    copies = [shlex.split(c.args) for c in dockerfile.final.all("COPY")]
    assert ["deploy/docker/healthcheck.py", "/opt/tempering/healthcheck.py"] in copies
    assert HEALTHCHECK.is_file()
    port = dockerfile.final.env()["TEMPERING_GRPC_ADDRESS"].rpartition(":")[2]
    (expose,) = dockerfile.final.all("EXPOSE")
    assert expose.args == port


def test_worker_health_check_pings_its_own_celery_node() -> None:
    dockerfile = parse_dockerfile(DOCKER / "worker.Dockerfile")
    healthcheck = dockerfile.final.last("HEALTHCHECK")
    assert healthcheck is not None
    node = image_command("worker.Dockerfile")[-1]
    assert node.endswith("@%h")
    assert "celery -A workers.celery_app inspect ping" in healthcheck.args
    assert f'--destination "{node.removesuffix("%h")}$(hostname)"' in healthcheck.args
    assert "|| exit 1" in healthcheck.args, "Docker reserves exit codes other than 0 and 1"


def test_build_context_holds_what_the_dockerfiles_copy() -> None:
    excluded = dockerignore_excludes(ROOT / ".dockerignore")
    for name in DOCKERFILES:
        dockerfile = parse_dockerfile(DOCKER / name)
        for stage in dockerfile.stages:
            for copy in stage.all("COPY"):
                if "--from=" in copy.args:
                    continue
                *sources, _ = shlex.split(copy.args)
                for source in sources:
                    path = ROOT / source
                    assert path.exists(), f"{name}: COPY {source}: no such file"
                    files = [path] if path.is_file() else [p for p in path.rglob("*.py")]
                    for file in files:
                        relative = file.relative_to(ROOT).as_posix()
                        assert not excluded(relative), f"{relative} is left out of the context"
    for unwanted in (".venv/bin/python", ".git/HEAD", "tests/deploy/conftest.py"):
        assert excluded(unwanted), unwanted
    assert excluded("service/__pycache__/server.cpython-311.pyc")
    assert excluded("deploy/compose/secrets/tls.key"), "secrets never enter an image"
