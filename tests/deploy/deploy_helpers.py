"""What the deployment tests share: where the files are, which variables the code reads, and
small parsers for env files, Dockerfiles and .dockerignore."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from service.core.settings import FIELDS

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKER = DEPLOY / "docker"
COMPOSE_DIR = DEPLOY / "compose"
CHART = DEPLOY / "helm" / "tempering"
HEALTHCHECK = DOCKER / "healthcheck.py"
DEPLOYMENT_DOC = ROOT / "docs" / "deployment.md"

SETTINGS_ENV = frozenset(spec.env for spec in FIELDS)
REQUIRED_EVERYWHERE = (
    "TEMPERING_BROKER_URL",
    "TEMPERING_DATABASE_URL",
    "TEMPERING_ARTIFACT_DIR",
    "TEMPERING_QUEUE",
)
"""Settings whose defaults only work on one machine: a deployment must set each of them, to
the same value, for the server and for every worker."""

ENV_NAME = re.compile(r"\bTEMPERING_[A-Z0-9_]*[A-Z0-9]\b")


@cache
def client_env() -> frozenset[str]:
    """The variables the client (SDK and CLI) reads: every quoted TEMPERING_* in client/."""
    names: set[str] = set()
    for path in (ROOT / "client").rglob("*.py"):
        names.update(re.findall(r"[\"'](TEMPERING_[A-Z0-9_]+)[\"']", path.read_text()))
    return frozenset(names)


def known_env() -> frozenset[str]:
    return SETTINGS_ENV | client_env()


@cache
def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def extra_requirements(extra: str) -> list[str]:
    """The requirements of an extra, with ``tempering[a,b]`` self-references expanded."""
    extras = pyproject()["project"]["optional-dependencies"]
    found: list[str] = []
    for requirement in extras[extra]:
        nested = re.fullmatch(r"tempering\[([\w,\s-]+)\]", requirement.strip())
        if nested:
            for name in nested.group(1).split(","):
                found += extra_requirements(name.strip())
        else:
            found.append(requirement)
    return found


def requirement_names(requirements: Iterable[str]) -> set[str]:
    return {re.split(r"[\[<>=!~;\s]", r.strip(), maxsplit=1)[0].lower() for r in requirements}


# ---------------------------------------------------------------------------------------------
# Env files (Compose's env_file)


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines; blank lines and # comments ignored. Quotes and inline comments are
    refused: Compose and a shell would read them differently."""
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        where = f"{path.name}:{number}"
        assert sep, f"{where}: not KEY=value: {raw!r}"
        assert re.fullmatch(r"[A-Z_][A-Z0-9_]*", key), f"{where}: bad name {key!r}"
        assert not value.startswith(("'", '"')), f"{where}: quoted value"
        assert " #" not in value, f"{where}: inline comment"
        assert key not in values, f"{where}: {key} set twice"
        values[key] = value
    return values


# ---------------------------------------------------------------------------------------------
# Dockerfiles


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int

    def exec_form(self) -> list[str] | None:
        """The JSON array of CMD/ENTRYPOINT/HEALTHCHECK CMD/RUN in exec form, else None."""
        text = self.args
        if self.keyword == "HEALTHCHECK":
            text = re.sub(r"^(--\S+\s+)*", "", text)
            if not text.startswith("CMD"):
                return None
            text = text[3:].strip()
        if not text.startswith("["):
            return None
        value = json.loads(text)
        assert isinstance(value, list)
        assert all(isinstance(v, str) for v in value)
        return value


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for instruction in self.all("ENV"):
            for token in shlex.split(instruction.args):
                key, sep, value = token.partition("=")
                assert sep, f"ENV in the legacy 'KEY value' form: {instruction.args!r}"
                values[key] = value
        return values


@dataclass
class Dockerfile:
    path: Path
    args: dict[str, str]
    """ARG defaults declared before the first FROM."""
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def resolve(self, text: str) -> str:
        return re.sub(r"\$\{?(\w+)\}?", lambda m: self.args.get(m.group(1), m.group(0)), text)


def parse_dockerfile(path: Path) -> Dockerfile:
    logical: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        logical.append((start, " ".join(p for p in pending if p)))
        pending = []
    assert not pending, f"{path.name}: the last instruction ends with a line continuation"
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for number, text in logical:
        keyword, _, rest = text.partition(" ")
        instruction = Instruction(keyword.upper(), rest.strip(), number)
        if instruction.keyword == "FROM":
            parts = instruction.args.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], name))
        elif not stages:
            assert instruction.keyword == "ARG", f"{path.name}:{number}: {keyword} before FROM"
            key, _, default = instruction.args.partition("=")
            args[key] = default
        else:
            stages[-1].instructions.append(instruction)
    return Dockerfile(path, args, stages)


# ---------------------------------------------------------------------------------------------
# .dockerignore (Docker's rules: patterns in order, the last one that matches decides, a
# pattern matching a folder matches everything below it, ! re-includes)


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    parts = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            parts.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            parts.append(".*")
            i += 2
        elif pattern[i] == "*":
            parts.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            parts.append("[^/]")
            i += 1
        else:
            parts.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(parts) + "(?:/.*)?")


def dockerignore_excludes(ignore_file: Path) -> Any:
    rules = []
    for raw in ignore_file.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line[1:].strip() if negated else line
        pattern = pattern.strip("/")
        rules.append((negated, _pattern_regex(pattern)))

    def excluded(relative: str) -> bool:
        verdict = False
        for negated, regex in rules:
            if regex.fullmatch(relative):
                verdict = not negated
        return verdict

    return excluded


# ---------------------------------------------------------------------------------------------
# Certificates for TLS tests, made with the openssl command line


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    self_signed_cert: Path
    self_signed_key: Path
    client_cert: Path
    client_key: Path


def _openssl(folder: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=60)


def make_pki(folder: Path, server_names: Iterable[str]) -> Pki:
    """A CA, a server certificate it signed for ``server_names`` (DNS names, or IPs), a
    self-signed server certificate for the same names and a client certificate."""
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    sans = ",".join(f"IP:{n}" if re.fullmatch(r"[\d.]+", n) else f"DNS:{n}" for n in server_names)
    _openssl(
        folder, "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=deploy-test-ca", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    _openssl(
        folder, "req", "-x509", *ec, "-keyout", "self.key", "-out", "self.pem", "-days", "2",
        "-subj", "/CN=tempering", "-addext", f"subjectAltName={sans}",
    )  # fmt: skip
    leaves = {
        "server": f"extendedKeyUsage=serverAuth\nsubjectAltName={sans}\n",
        "client": "extendedKeyUsage=clientAuth\n",
    }
    for name, extensions in leaves.items():
        (folder / f"{name}.ext").write_text("basicConstraints=CA:FALSE\n" + extensions)
        _openssl(
            folder, "req", "-new", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN={name}",
        )  # fmt: skip
        _openssl(
            folder, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-set_serial", str(uuid.uuid4().int >> 64), "-days", "2", "-out", f"{name}.pem",
            "-extfile", f"{name}.ext",
        )  # fmt: skip
    return Pki(
        ca=folder / "ca.pem",
        server_cert=folder / "server.pem",
        server_key=folder / "server.key",
        self_signed_cert=folder / "self.pem",
        self_signed_key=folder / "self.key",
        client_cert=folder / "client.pem",
        client_key=folder / "client.key",
    )


def remap_paths(env: Mapping[str, str], mapping: Mapping[str, Path]) -> dict[str, str]:
    """The same variables with container paths replaced by files on this machine."""
    result = dict(env)
    for key, value in env.items():
        if value in mapping:
            result[key] = str(mapping[value])
    return result


# ---------------------------------------------------------------------------------------------
# What the images run


def image_user(dockerfile: str) -> tuple[int, int]:
    """The numeric uid:gid the final stage of deploy/docker/<dockerfile> runs as."""
    user = parse_dockerfile(DOCKER / dockerfile).final.last("USER")
    assert user is not None, f"{dockerfile} never sets USER: it would run as root"
    uid, _, gid = user.args.partition(":")
    assert uid.isdigit(), f"{dockerfile}: USER {user.args} is not numeric"
    assert gid.isdigit(), f"{dockerfile}: USER {user.args} has no numeric group"
    return int(uid), int(gid)


def image_command(dockerfile: str, args: list[str] | None = None) -> list[str]:
    """ENTRYPOINT + CMD of the image (or + ``args``, as Kubernetes and Compose override CMD)."""
    final = parse_dockerfile(DOCKER / dockerfile).final
    entrypoint = final.last("ENTRYPOINT")
    assert entrypoint is not None
    entry = entrypoint.exec_form()
    assert entry is not None, "ENTRYPOINT in exec form"
    if args is None:
        cmd = final.last("CMD")
        args = (cmd.exec_form() or []) if cmd is not None else []
    return [*entry, *args]


def worker_invocation(args: list[str], env: Mapping[str, str], monkeypatch: Any) -> list[str]:
    """The ``celery worker`` arguments the worker image's entry point would run with these
    container args and this environment: ``temper worker ...`` starts ``python -m workers`` with
    the same arguments, whose entry point is run here for real, up to the point where Celery
    would start."""
    import workers.celery_app as celery_app
    from client.commands.stack import child_command

    command = image_command("worker.Dockerfile", args)
    assert command[:2] == ["temper", "worker"], command
    assert pyproject()["project"]["scripts"]["temper"] == "client.cli:main"
    assert child_command("worker", command[2:]) == [sys.executable, "-m", "workers", *command[2:]]
    captured: list[list[str]] = []

    class App:
        def worker_main(self, argv: list[str]) -> None:
            captured.append(list(argv))

    for key in [k for k in os.environ if k.startswith("TEMPERING_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(celery_app, "create_app", lambda settings: App())
    assert celery_app.worker_main(command[2:]) == 0
    (argv,) = captured
    return argv
