"""Authentication: API keys in, tenants out; what stays open; what the server refuses to start
with."""

from __future__ import annotations

import hashlib
import hmac
import logging
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from sec_helpers import (
    Keys,
    StartServer,
    dataset,
    dataset_requests,
    error_of,
    linear_onnx,
    model_requests,
)
from tempering.v1 import hardening_pb2 as pb
from tempering.v1 import hardening_pb2_grpc as pb_grpc

from service.api import auth
from service.api.auth import ApiKeyStore, KeyFileError, hash_key, new_key
from service.api.auth_interceptor import AuthInterceptor, bearer_token
from service.api.server import SERVICE_NAME, RunningServer
from service.api.transport import InsecureSetup, is_loopback, plan_exposure
from service.core.settings import Settings, SettingsError
from service.core.tenancy import CURRENT_TENANT, NoTenant, current_tenant

UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED


def every_call(
    stub: pb_grpc.HardeningServiceStub, metadata: tuple[tuple[str, str], ...]
) -> dict[str, Callable[[], Any]]:
    """One call of each RPC, as zero-argument callables."""
    return {
        "UploadModel": lambda: stub.UploadModel(
            model_requests(linear_onnx()), metadata=metadata, timeout=10
        ),
        "UploadDataset": lambda: stub.UploadDataset(
            dataset_requests(dataset()), metadata=metadata, timeout=10
        ),
        "SubmitJob": lambda: stub.SubmitJob(pb.SubmitJobRequest(), metadata=metadata, timeout=10),
        "GetJob": lambda: stub.GetJob(pb.GetJobRequest(job_id="x"), metadata=metadata, timeout=10),
        "ListJobs": lambda: stub.ListJobs(pb.ListJobsRequest(), metadata=metadata, timeout=10),
        "CancelJob": lambda: stub.CancelJob(
            pb.CancelJobRequest(job_id="x"), metadata=metadata, timeout=10
        ),
        "WatchJob": lambda: stub.WatchJob(
            pb.WatchJobRequest(job_id="x"), metadata=metadata, timeout=10
        ),
        "DeleteJob": lambda: stub.DeleteJob(
            pb.DeleteJobRequest(job_id="x"), metadata=metadata, timeout=10
        ),
        "DownloadArtifact": lambda: stub.DownloadArtifact(
            pb.DownloadArtifactRequest(job_id="x", kind=pb.ARTIFACT_KIND_REPORT),
            metadata=metadata,
            timeout=10,
        ),
    }


@pytest.mark.parametrize(
    "metadata",
    [
        (),
        (("authorization", "Bearer tpk_not-a-key-anyone-has"),),
        (("authorization", "Bearer "),),
        (("authorization", "Basic dXNlcjpwYXNz"),),
        (("authorization", "tpk_without_the_scheme"),),
    ],
    ids=["no-key", "wrong-key", "empty-key", "basic-scheme", "no-scheme"],
)
def test_every_rpc_without_a_valid_key_is_unauthenticated(
    channel: grpc.Channel, metadata: tuple[tuple[str, str], ...]
) -> None:
    stub = pb_grpc.HardeningServiceStub(channel)

    for name, call in every_call(stub, metadata).items():
        error = error_of(call)
        assert error.code() is UNAUTHENTICATED, name
        assert "key" in (error.details() or "").lower(), name


def test_a_key_of_another_server_is_refused(channel: grpc.Channel, keys: Keys) -> None:
    stub = pb_grpc.HardeningServiceStub(channel)
    stranger = (("authorization", f"Bearer {new_key()}"),)

    error = error_of(lambda: stub.ListJobs(pb.ListJobsRequest(), metadata=stranger, timeout=10))

    assert error.code() is UNAUTHENTICATED
    assert error.details() == "the API key is not valid"


def test_a_valid_key_is_served(channel: grpc.Channel, keys: Keys) -> None:
    stub = pb_grpc.HardeningServiceStub(channel)

    for tenant in keys.by_tenant:
        response = stub.ListJobs(pb.ListJobsRequest(), metadata=keys.metadata(tenant), timeout=10)
        assert list(response.jobs) == []


def test_the_bearer_scheme_is_case_insensitive(channel: grpc.Channel, keys: Keys) -> None:
    stub = pb_grpc.HardeningServiceStub(channel)
    metadata = (("authorization", f"bearer {keys.by_tenant['alice']}"),)

    stub.ListJobs(pb.ListJobsRequest(), metadata=metadata, timeout=10)


def test_health_and_reflection_need_no_key(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)

    status = health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=10)
    (listing,) = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
    )

    assert status.status == health_pb2.HealthCheckResponse.SERVING
    assert SERVICE_NAME in {s.name for s in listing.list_services_response.service}


def test_refusals_are_logged_without_the_key(
    channel: grpc.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    stub = pb_grpc.HardeningServiceStub(channel)
    secret = "tpk_this-must-not-reach-the-log"
    metadata = (("authorization", f"Bearer {secret}"),)

    with caplog.at_level(logging.WARNING, logger="service.api.auth_interceptor"):
        error_of(lambda: stub.ListJobs(pb.ListJobsRequest(), metadata=metadata, timeout=10))

    assert "refused /tempering.v1.HardeningService/ListJobs" in caplog.text
    assert secret not in caplog.text


# ---------------------------------------------------------------------------------------------
# Open mode


def test_without_keys_the_server_is_open_on_loopback_and_says_so(
    start: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="service.api.server"):
        running = start()
    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        stub = pb_grpc.HardeningServiceStub(channel)
        uploaded = stub.UploadModel(model_requests(linear_onnx()), timeout=10)
        # a key sent anyway changes nothing: everyone is the default tenant
        stranger = (("authorization", "Bearer whatever"),)
        again = stub.UploadModel(model_requests(linear_onnx()), metadata=stranger, timeout=10)

    assert running.exposure is not None
    assert running.exposure.keys is None
    assert again.artifact_id == uploaded.artifact_id
    assert again.already_present
    assert "OPEN MODE" in caplog.text
    assert "'default'" in caplog.text


def test_an_empty_key_file_refuses_to_start_rather_than_open(
    start: StartServer, tmp_path: Path
) -> None:
    empty = tmp_path / "keys"
    empty.write_text("# nobody yet\n")

    with pytest.raises(SettingsError, match="holds no keys"):
        start(api_keys_file=empty)


def test_a_malformed_key_file_names_the_line(start: StartServer, tmp_path: Path) -> None:
    bad = tmp_path / "keys"
    bad.write_text(f"alice:{hash_key('k')}\nbob {hash_key('j')}\n")

    with pytest.raises(SettingsError, match=r"keys:2: expected tenant:sha256hex"):
        start(api_keys_file=bad)


# ---------------------------------------------------------------------------------------------
# Exposure rules (nothing binds to a non-loopback address here: start_server refuses first,
# and the allowed cases are checked on the plan alone)


def test_plaintext_on_a_non_loopback_address_is_refused(start: StartServer, keys: Keys) -> None:
    with pytest.raises(InsecureSetup, match="--allow-insecure-remote"):
        start(grpc_address="0.0.0.0:0", api_keys_file=keys.file)


def test_no_keys_on_a_non_loopback_address_is_refused(start: StartServer) -> None:
    with pytest.raises(InsecureSetup, match="--insecure-open"):
        start(grpc_address="0.0.0.0:0", allow_insecure_remote=True)


def test_the_overrides_allow_it_with_loud_warnings(tmp_path: Path) -> None:
    settings = Settings(
        state_dir=tmp_path,
        artifact_dir=tmp_path,
        database_url="sqlite://",
        broker_url="memory://",
        grpc_address="0.0.0.0:50051",
        allow_insecure_remote=True,
        insecure_open=True,
    )

    exposure = plan_exposure(settings)

    assert exposure.keys is None
    assert exposure.credentials is None
    assert [w.split(":")[0] for w in exposure.warnings] == ["INSECURE", "INSECURE"]


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1:50051", True),
        ("127.1.2.3:0", True),
        ("[::1]:50051", True),
        ("localhost:50051", True),
        ("unix:/tmp/tempering.sock", True),
        ("0.0.0.0:50051", False),
        ("[::]:50051", False),
        (":50051", False),
        ("10.0.0.5:50051", False),
        ("tempering.example:50051", False),
    ],
)
def test_loopback_addresses(address: str, loopback: bool) -> None:
    assert is_loopback(address) is loopback


def test_the_override_flags_are_switches() -> None:
    from service.ops.cli import build_parser

    args = build_parser().parse_args(["--allow-insecure-remote", "--insecure-open"])
    settings = Settings.load({"TEMPERING_STATE_DIR": "/tmp/x"}, args)

    assert settings.allow_insecure_remote
    assert settings.insecure_open


def test_new_settings_pass_to_a_worker_and_back(tmp_path: Path) -> None:
    settings = Settings.load(
        {
            "TEMPERING_STATE_DIR": str(tmp_path),
            "TEMPERING_API_KEYS_FILE": str(tmp_path / "keys"),
            "TEMPERING_TENANT_MAX_STORED_BYTES": "2G",
            "TEMPERING_TENANT_LIMITS": "alice:stored=1M,queued=3",
        }
    )

    again = Settings.load(settings.to_env())

    assert again == settings
    assert again.tls_cert is None
    assert again.tenant_max_stored_bytes == 2 * 1024**3


# ---------------------------------------------------------------------------------------------
# The key store


def test_keys_are_compared_with_compare_digest_against_every_entry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys = {t: new_key() for t in ("alice", "bob", "carol")}
    store = ApiKeyStore((t, hash_key(k)) for t, k in keys.items())
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)

    assert store.authenticate(keys["alice"]) == "alice"
    assert len(calls) == 3  # no early exit at the match
    presented = hashlib.sha256(keys["alice"].encode()).digest()
    assert all(a == presented for a, _ in calls)
    calls.clear()
    assert store.authenticate("tpk_wrong") is None
    assert len(calls) == 3


def test_the_key_store_holds_hashes_only(tmp_path: Path) -> None:
    key = new_key()
    path = tmp_path / "keys"
    path.write_text(f"# comment\n\n  alice : {hash_key(key).upper()}  \nalice:{hash_key('x')}\n")

    store = ApiKeyStore.from_file(path)

    assert key not in path.read_text()
    assert store.authenticate(key) == "alice"
    assert store.authenticate("x") == "alice"  # two keys for one tenant: rotation
    assert store.authenticate("") is None
    assert store.authenticate("k" * 10_000) is None
    assert store.tenants == {"alice"}


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("alice:1234", "64 hex"),
        ("bad tenant:" + "0" * 64, "tenant id"),
        (":" + "0" * 64, "tenant id"),
        ("alice:" + "0" * 64 + "\nbob:" + "0" * 64, "twice"),
    ],
)
def test_bad_key_files_are_refused(tmp_path: Path, line: str, problem: str) -> None:
    path = tmp_path / "keys"
    path.write_text(line + "\n")

    with pytest.raises(KeyFileError, match=problem):
        ApiKeyStore.from_file(path)


def test_keys_are_long_and_random() -> None:
    made = {new_key() for _ in range(100)}

    assert len(made) == 100
    assert all(k.startswith("tpk_") and len(k) >= 40 for k in made)


def test_the_new_key_command_makes_a_key_and_its_line(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "service.api.auth",
            "new-key",
            "alice",
            "--append-to",
            str(keys_file),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    key = result.stdout.strip()

    assert ApiKeyStore.from_file(keys_file).authenticate(key) == "alice"
    assert keys_file.stat().st_mode & 0o077 == 0
    hashed = subprocess.run(
        [sys.executable, "-m", "service.api.auth", "hash-key"],
        input=key + "\n",
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert hashed.stdout.strip() == hash_key(key)


@pytest.mark.parametrize(
    ("metadata", "token"),
    [
        ((("authorization", "Bearer abc"),), "abc"),
        ((("Authorization", "  BEARER   abc  "),), "abc"),
        ((("x-other", "1"),), None),
        ((("authorization", "Bearer a"), ("authorization", "Bearer b")), None),
    ],
)
def test_bearer_token_parsing(metadata: tuple[tuple[str, str], ...], token: str | None) -> None:
    assert bearer_token(metadata)[0] == token


def test_running_server_reports_its_exposure(keyed_server: RunningServer) -> None:
    assert keyed_server.exposure is not None
    assert keyed_server.exposure.describe() == "plaintext, API keys of 2 tenant(s)"


# ---------------------------------------------------------------------------------------------
# The tenant context


class _Details:
    def __init__(self, method: str, metadata: tuple[tuple[str, str], ...]) -> None:
        self.method = method
        self.invocation_metadata = metadata


def test_the_tenant_is_set_for_the_call_only(keys: Keys) -> None:
    seen: list[str] = []

    def unary(request: object, context: object) -> str:
        seen.append(current_tenant())
        return "ok"

    def stream(request: object, context: object) -> Iterator[str]:
        for _ in range(2):
            seen.append(current_tenant())
            yield "ok"

    interceptor = AuthInterceptor(ApiKeyStore.from_file(keys.file))
    details = _Details("/tempering.v1.HardeningService/GetJob", keys.metadata("bob"))
    wrapped_unary = interceptor.intercept_service(
        lambda _: grpc.unary_unary_rpc_method_handler(unary), details
    )
    wrapped_stream = interceptor.intercept_service(
        lambda _: grpc.unary_stream_rpc_method_handler(stream), details
    )
    assert wrapped_unary is not None
    assert wrapped_stream is not None

    assert wrapped_unary.unary_unary(None, None) == "ok"
    assert list(wrapped_stream.unary_stream(None, None)) == ["ok", "ok"]
    assert seen == ["bob", "bob", "bob"]
    assert CURRENT_TENANT.get(None) is None  # nothing left behind on this thread
    with pytest.raises(NoTenant):
        current_tenant()
