"""Per-tenant limits: stored bytes and jobs queued or running, through a real server."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import grpc
import pytest
from sec_helpers import (
    Keys,
    StartServer,
    dataset,
    error_of,
    linear_onnx,
    spec,
    submit,
    upload_dataset,
    upload_model,
)
from tempering.v1 import hardening_pb2 as pb
from tempering.v1 import hardening_pb2_grpc as pb_grpc

from service.core.setting_values import parse_tenant_limits
from service.core.settings import Settings, SettingsError
from service.jobs.quotas import QuotaPolicy, TenantLimits

EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.fixture
def stub_of() -> Iterator[Callable[[int], pb_grpc.HardeningServiceStub]]:
    channels: list[grpc.Channel] = []

    def connect(port: int) -> pb_grpc.HardeningServiceStub:
        channels.append(grpc.insecure_channel(f"127.0.0.1:{port}"))
        return pb_grpc.HardeningServiceStub(channels[-1])

    yield connect
    for channel in channels:
        channel.close()


StubOf = Callable[[int], pb_grpc.HardeningServiceStub]


def test_uploads_past_the_stored_bytes_limit_are_refused(
    start: StartServer, keys: Keys, stub_of: StubOf
) -> None:
    model, data = linear_onnx(), dataset()
    limit = len(model) + len(data) - 1
    running = start(api_keys_file=keys.file, tenant_max_stored_bytes=limit)
    stub, alice = stub_of(running.port), keys.metadata("alice")

    upload_model(stub, alice, model)
    upload_model(stub, alice, model)  # the same bytes again cost nothing
    refused = error_of(lambda: upload_dataset(stub, alice, data))

    assert refused.code() is EXHAUSTED
    message = refused.details() or ""
    assert f"already stores {len(model)} bytes" in message
    assert f"limit is {limit} bytes" in message
    assert f"upload of {len(data)} bytes" in message
    assert "TEMPERING_TENANT_MAX_STORED_BYTES" in message
    # another tenant has a limit of its own, untouched by alice's usage
    upload_dataset(stub, keys.metadata("bob"), data)


def test_a_per_tenant_override_replaces_the_default(
    start: StartServer, keys: Keys, stub_of: StubOf
) -> None:
    model = linear_onnx()
    running = start(
        api_keys_file=keys.file,
        tenant_max_stored_bytes=len(model) - 1,
        tenant_limits="bob:stored=1M",
    )
    stub = stub_of(running.port)

    assert error_of(lambda: upload_model(stub, keys.metadata("alice"), model)).code() is EXHAUSTED
    upload_model(stub, keys.metadata("bob"), model)


def test_jobs_past_the_queued_limit_are_refused(
    start: StartServer, keys: Keys, stub_of: StubOf
) -> None:
    running = start(api_keys_file=keys.file, tenant_max_queued_jobs=1)
    stub, alice = stub_of(running.port), keys.metadata("alice")
    model = upload_model(stub, alice, linear_onnx()).artifact_id
    data = upload_dataset(stub, alice, dataset()).artifact_id

    first = submit(stub, alice, spec(model, data), idempotency_key="one")
    refused = error_of(lambda: submit(stub, alice, spec(model, data, epochs=2)))
    again = submit(stub, alice, spec(model, data), idempotency_key="one")

    assert refused.code() is EXHAUSTED
    assert re.search(r"has 1 jobs queued or running and its limit is 1 ", refused.details() or "")
    assert "TEMPERING_TENANT_MAX_QUEUED_JOBS" in (refused.details() or "")
    assert again.id == first.id  # an idempotent retry is not a new job
    # bob's queue is his own
    bob = keys.metadata("bob")
    bobs_model = upload_model(stub, bob, linear_onnx()).artifact_id
    bobs_data = upload_dataset(stub, bob, dataset()).artifact_id
    submit(stub, bob, spec(bobs_model, bobs_data))
    # a finished (here: cancelled) job frees its place
    stub.CancelJob(pb.CancelJobRequest(job_id=first.id), metadata=alice, timeout=10)
    submit(stub, alice, spec(model, data, epochs=2))


def test_limits_of_zero_mean_none() -> None:
    policy = QuotaPolicy()

    policy.check_upload("alice", stored_bytes=10**15, adding=10**15)
    policy.check_new_job("alice", unfinished_jobs=10**6)


def test_overrides_are_parsed_and_merged() -> None:
    policy = QuotaPolicy.from_settings(100, 5, " alice:stored=2K, queued=0 ;bob:queued=1;")

    assert policy.limits_for("alice") == TenantLimits(2048, 0)
    assert policy.limits_for("bob") == TenantLimits(100, 1)
    assert policy.limits_for("carol") == TenantLimits(100, 5)


@pytest.mark.parametrize(
    "text",
    ["alice", "alice:stored", "alice:size=1", "alice:queued=many", "alice:queued=-1", "a b:q=1"],
)
def test_bad_overrides_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"expected|not a number|0 \(no limit\)|tenant id"):
        parse_tenant_limits(text)


def test_bad_overrides_stop_the_settings() -> None:
    with pytest.raises(SettingsError, match="TEMPERING_TENANT_LIMITS"):
        Settings.load({"TEMPERING_STATE_DIR": "/tmp/x", "TEMPERING_TENANT_LIMITS": "alice"})
