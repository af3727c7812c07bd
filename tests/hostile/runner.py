"""Running one corpus case against a server and checking everything it must leave as it was.

For every case: the right status code with an actionable message that shows no server path;
no code of the payload ran (its marker file does not exist); nothing changed outside the
artifact store and the job store; no partial upload was kept; a refused job left no record;
and the server still answers a health check, and another tenant's GetJob and ListJobs.

Used by ``test_hostile_corpus.py`` (the server in the test's process) and by
``bench/hostile_rss.py`` (the server in a process of its own, whose memory it watches).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tempering.v1 import hardening_pb2 as pb
from tempering.v1 import hardening_pb2_grpc as pb_grpc

from service.api.server import SERVICE_NAME, RunningServer
from service.core.limits import MAX_MESSAGE_CHARS
from service.core.settings import Settings

from . import builders as b
from .corpus import CHUNK, OK, OVERSIZED_STREAM_CHUNKS, Case, Context, Submit, Upload
from .servers import HOSTILE_TENANT, KEYS, OTHER_TENANT

RPC_TIMEOUT = 60.0
_BLOB = re.compile(r"blobs/[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{64}")
_STORE_FILES = re.compile(r"state/(jobs|broker)\.sqlite(-journal|-wal|-shm)?")
_ABSOLUTE_PATH = re.compile(r"(?<![\w:/.~<-])/[^/\s'\"`]+/[^\s'\"`]+")
"""Two components after a slash that follows no word character: ``/srv/state/x``."""
RPC_OF_KIND = {
    "model": "UploadModel",
    "dataset": "UploadDataset",
    "tokenizer": "UploadTokenizer",
    "schema": "UploadSchema",
}


@dataclass
class HostileServer:
    running: RunningServer | None
    """None when the server runs in another process."""
    channel: grpc.Channel
    stub: pb_grpc.HardeningServiceStub
    """Calls as the tenant that sends the cases."""
    other: pb_grpc.HardeningServiceStub
    """Calls as the other tenant, whose job every case must leave readable."""
    health: health_pb2_grpc.HealthStub
    root: Path
    settings: Settings
    context: Context
    baseline_job_id: str
    """The other tenant's valid job, submitted first."""

    @property
    def artifact_dir(self) -> Path:
        return self.settings.artifact_dir

    def close(self) -> None:
        self.channel.close()
        if self.running is not None:
            self.running.stop(grace=0)


class _Key(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Sends one tenant's API key with every call."""

    def __init__(self, key: str) -> None:
        self._metadata = (("authorization", f"Bearer {key}"),)

    def _with_key(self, details: Any) -> Any:
        return details._replace(metadata=(*(details.metadata or ()), *self._metadata))

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._with_key(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._with_key(details), request)

    def intercept_stream_unary(self, continuation, details, requests):
        return continuation(self._with_key(details), requests)

    def intercept_stream_stream(self, continuation, details, requests):
        return continuation(self._with_key(details), requests)


def prepare_root(root: Path) -> Context:
    """The folders outside the server's state that cases point at (see :mod:`servers`)."""
    markers, bait = root / "outside" / "markers", root / "outside" / "bait" / "secret.bin"
    markers.mkdir(parents=True)
    bait.parent.mkdir(parents=True)
    bait.write_bytes(np.ones((b.FEATURES, b.CLASSES), np.float32).tobytes())
    return Context(marker_dir=markers, bait=bait)


def connect(
    port: int, root: Path, settings: Settings, context: Context, running: RunningServer | None
) -> HostileServer:
    """Channels as both tenants; the other tenant's baseline job is submitted here."""
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    hostile = grpc.intercept_channel(channel, _Key(KEYS[HOSTILE_TENANT]))
    other = pb_grpc.HardeningServiceStub(grpc.intercept_channel(channel, _Key(KEYS[OTHER_TENANT])))
    model_id = upload(other, b.linear_onnx(seed=0), "model", pb.MODEL_FORMAT_ONNX)
    data_id = upload(other, b.good_npz(), "dataset", pb.DATASET_FORMAT_NPZ)
    baseline = other.SubmitJob(base_request(model_id, data_id), timeout=RPC_TIMEOUT)
    return HostileServer(
        running=running,
        channel=channel,
        stub=pb_grpc.HardeningServiceStub(hostile),
        other=other,
        health=health_pb2_grpc.HealthStub(channel),
        root=root,
        settings=settings,
        context=context,
        baseline_job_id=baseline.id,
    )


# --- requests ---------------------------------------------------------------------------------


def base_request(model_id: str, train_id: str, eval_id: str = "") -> pb.SubmitJobRequest:
    """A valid, small FGSM job on an image-like classifier; cases change one thing in it."""
    return pb.SubmitJobRequest(
        spec=pb.JobSpec(
            model_id=model_id,
            train_dataset_id=train_id,
            eval_dataset_id=eval_id,
            training=pb.Training(epochs=1, batch_size=64, fgsm=pb.Fgsm()),
            threat_model=pb.ThreatModel(norm=pb.NORM_LINF, epsilon=0.1, lower=[0.0], upper=[1.0]),
            evaluation=pb.Evaluation(suite=pb.EVALUATION_SUITE_FAST, samples=64),
            seed=7,
        )
    )


def _header(kind: str, data: bytes, fmt: int, name: str, size: int, sha256: str) -> object:
    if kind == "model":
        header: object = pb.ModelUploadHeader(
            name=name,
            format=fmt,  # type: ignore[arg-type]
            size_bytes=size,
            sha256=sha256,
        )
        return pb.UploadModelRequest(header=header)  # type: ignore[arg-type]
    if kind == "dataset":
        header = pb.DatasetUploadHeader(
            name=name,
            format=fmt,  # type: ignore[arg-type]
            size_bytes=size,
            sha256=sha256,
        )
        return pb.UploadDatasetRequest(header=header)
    if kind == "tokenizer":
        header = pb.TokenizerUploadHeader(name=name, size_bytes=size, sha256=sha256)
        return pb.UploadTokenizerRequest(header=header)
    header = pb.SchemaUploadHeader(name=name, size_bytes=size, sha256=sha256)
    return pb.UploadSchemaRequest(header=header)


def _chunk(kind: str, data: bytes) -> object:
    request_type = {
        "model": pb.UploadModelRequest,
        "dataset": pb.UploadDatasetRequest,
        "tokenizer": pb.UploadTokenizerRequest,
        "schema": pb.UploadSchemaRequest,
    }[kind]
    return request_type(chunk=data)


def upload_rpc(stub: pb_grpc.HardeningServiceStub, kind: str) -> Callable[..., Any]:
    return getattr(stub, RPC_OF_KIND[kind])


def upload(stub: pb_grpc.HardeningServiceStub, data: bytes, kind: str, fmt: int = 0) -> str:
    """Upload whole, valid ``data`` (the upload must be accepted)."""
    messages = [_header(kind, data, fmt, "input", len(data), b.sha256(data))]
    messages += [_chunk(kind, piece) for piece in _split(data)]
    return str(upload_rpc(stub, kind)(iter(messages), timeout=RPC_TIMEOUT).artifact_id)


def upload_messages(action: Upload) -> Iterator[object]:
    if action.messages is not None:
        yield from action.messages()
        return
    data = action.data
    yield _header(
        action.kind,
        data,
        action.fmt,
        action.name,
        len(data) if action.declared_size is None else action.declared_size,
        action.declared_sha256 or b.sha256(data),
    )
    chunks = action.chunks() if action.chunks is not None else _split(data)
    for piece in chunks:
        yield _chunk(action.kind, piece)


def _split(data: bytes) -> Iterator[bytes]:
    for start in range(0, len(data), CHUNK):
        yield data[start : start + CHUNK]


class CountingStream:
    """The client's request stream; counts the chunk messages gRPC pulled from it."""

    def __init__(self, messages: Iterator[object]) -> None:
        self._messages = messages
        self.chunks_pulled = 0

    def __iter__(self) -> Iterator[object]:
        for message in self._messages:
            if message.WhichOneof("payload") == "chunk":  # type: ignore[attr-defined]
                self.chunks_pulled += 1
            yield message


def run_upload(
    server: HostileServer, action: Upload, server_reads: list[int] | None = None
) -> tuple[grpc.StatusCode, str, object]:
    """``server_reads``: the chunks the server's upload code pulled, where the test can count
    them (its server runs in the test's process)."""
    stream = CountingStream(upload_messages(action))
    rpc = upload_rpc(server.stub, action.kind)
    code, details, response = call(lambda: rpc(iter(stream), timeout=RPC_TIMEOUT))
    if action.max_chunks_read is not None:
        if server_reads is not None:
            assert len(server_reads) <= action.max_chunks_read, (
                f"the server read {len(server_reads)} chunks before refusing the stream"
            )
        assert stream.chunks_pulled < OVERSIZED_STREAM_CHUNKS // 2, (
            f"the client was made to send {stream.chunks_pulled} chunks"
        )
    return code, details, response


def run_submit(server: HostileServer, action: Submit) -> tuple[grpc.StatusCode, str, pb.Job]:
    """Upload the case's inputs (each must be accepted; an input left out is the modality's
    good one), then submit the modality's valid job on them, changed by the case."""
    stub = server.stub
    if action.modality == "text":
        model = upload(stub, action.model or b.text_onnx(), "model", action.model_fmt)
        train = upload(stub, action.train or b.good_jsonl(), "dataset", action.train_fmt)
        tokenizer = upload(stub, action.tokenizer or b.word_level_tokenizer_json(), "tokenizer")
        request = text_request(model, train, tokenizer)
    elif action.modality == "tabular":
        model = upload(stub, action.model or b.tabular_onnx(), "model", action.model_fmt)
        train = upload(stub, action.train or b.tabular_npz(), "dataset", action.train_fmt)
        schema = upload(stub, action.schema or b.schema_bytes(), "schema")
        request = tabular_request(model, train, schema)
    else:
        model = upload(stub, action.model or b.linear_onnx(seed=0), "model", action.model_fmt)
        train = upload(stub, action.train or b.good_npz(), "dataset", action.train_fmt)
        evaluation = upload(stub, action.eval, "dataset", action.train_fmt) if action.eval else ""
        request = base_request(model, train, evaluation)
    if action.edit is not None:
        action.edit(request)
    code, details, job = call(lambda: stub.SubmitJob(request, timeout=RPC_TIMEOUT))
    return code, details, job  # type: ignore[return-value]


def text_request(model_id: str, train_id: str, tokenizer_id: str) -> pb.SubmitJobRequest:
    """A valid text job: PGD in embedding space, scored on a dozen texts."""
    return pb.SubmitJobRequest(
        spec=pb.JobSpec(
            model_id=model_id,
            train_dataset_id=train_id,
            tokenizer_id=tokenizer_id,
            training=pb.Training(epochs=1, pgd=pb.Pgd()),
            evaluation=pb.Evaluation(samples=12),
            seed=7,
        )
    )


def tabular_request(model_id: str, train_id: str, schema_id: str) -> pb.SubmitJobRequest:
    """A valid tabular job: FGSM under the schema, eps the budget of features naming none."""
    return pb.SubmitJobRequest(
        spec=pb.JobSpec(
            model_id=model_id,
            train_dataset_id=train_id,
            feature_schema_id=schema_id,
            training=pb.Training(epochs=1, fgsm=pb.Fgsm()),
            threat_model=pb.ThreatModel(norm=pb.NORM_LINF, epsilon=0.5),
            evaluation=pb.Evaluation(suite=pb.EVALUATION_SUITE_FAST, samples=16),
            seed=7,
        )
    )


def call(invoke: Callable[[], object]) -> tuple[grpc.StatusCode, str, object]:
    try:
        return grpc.StatusCode.OK, "", invoke()
    except grpc.RpcError as error:
        return error.code(), error.details() or "", None


# --- the whole check of one case --------------------------------------------------------------


def check_case(server: HostileServer, case: Case, server_reads: list[int] | None = None) -> None:
    """Send ``case`` and check everything listed in the module's docstring; AssertionError
    names what failed."""
    outside_before = snapshot_outside_store(server.root)
    jobs_before = job_ids(server)
    action = case.build(server.context)

    if isinstance(action, Upload):
        assert case.rpc == RPC_OF_KIND[action.kind]
        code, details, _ = run_upload(server, action, server_reads)
    else:
        assert case.rpc == "SubmitJob"
        code, details, job = run_submit(server, action)
        if code is OK and action.check is not None:
            action.check(job)

    assert code is case.code, f"{case.name}: got {code.name}: {details}"
    if case.code is not OK:
        assert_actionable(details, case.fragment)
        assert_no_server_path(server, details)
        assert len(details) <= MAX_MESSAGE_CHARS, "a message quotes unbounded input back"
        assert job_ids(server) == jobs_before, "a refused request left a job behind"
    for marker in case.markers:
        assert not server.context.marker(marker).exists(), "the payload's code ran"
    assert list(server.context.marker_dir.iterdir()) == [], "a marker appeared"
    assert_still_serving(server)
    assert snapshot_outside_store(server.root) == outside_before, (
        "a file outside the stores changed"
    )
    assert_store_holds_only_whole_blobs(server.artifact_dir)


def assert_actionable(details: str, fragment: str) -> None:
    assert details, "the status carries no message"
    assert "internal error" not in details.lower(), details
    assert "Traceback" not in details, details
    assert len(details) >= 20, f"too terse to act on: {details!r}"
    assert fragment.lower() in details.lower(), f"{fragment!r} not in {details!r}"


def assert_no_server_path(server: HostileServer, details: str) -> None:
    """No piece of the server's layout: its folders, the store's blob names, a temporary
    folder, any absolute path. (``<server path>``, which the error interceptor puts for one,
    may stand for a path the client sent.)"""
    for piece in (str(server.root), "/artifacts/", "blobs/", "tempering-"):
        assert piece not in details, f"a message shows the server's paths ({piece}): {details}"
    assert not _ABSOLUTE_PATH.search(details), f"a message shows an absolute path: {details}"


def assert_still_serving(server: HostileServer) -> None:
    for service in ("", SERVICE_NAME):
        reply = server.health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    job = server.other.GetJob(pb.GetJobRequest(job_id=server.baseline_job_id), timeout=10)
    assert job.state == pb.JOB_STATE_QUEUED
    listed = server.other.ListJobs(pb.ListJobsRequest(page_size=500), timeout=10)
    assert server.baseline_job_id in {j.id for j in listed.jobs}


def job_ids(server: HostileServer) -> set[str]:
    """The hostile tenant's jobs."""
    page = server.stub.ListJobs(pb.ListJobsRequest(page_size=500), timeout=10)
    return {job.id for job in page.jobs}


def snapshot_outside_store(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every path under ``root`` except the artifact store and the job store's files, with its
    type, size and modification time."""
    found: dict[str, tuple[int, int, int]] = {}
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(folder, name)
            relative = path.relative_to(root).as_posix()
            if relative == "state/artifacts" or relative.startswith("state/artifacts/"):
                continue
            if _STORE_FILES.fullmatch(relative):
                continue
            info = path.lstat()
            kind = stat.S_IFMT(info.st_mode)
            if kind == stat.S_IFDIR:  # a folder's size and time change with the job store's
                found[relative] = (kind, 0, 0)
            else:
                found[relative] = (kind, info.st_size, info.st_mtime_ns)
    return found


def assert_store_holds_only_whole_blobs(artifact_dir: Path) -> None:
    partial = list((artifact_dir / "tmp").iterdir())
    assert partial == [], f"partial uploads were kept: {partial}"
    for path in artifact_dir.rglob("*"):
        relative = path.relative_to(artifact_dir).as_posix()
        if path.is_file():
            assert _BLOB.fullmatch(relative), f"unexpected file in the store: {relative}"
            assert not path.stat().st_mode & 0o222, f"{relative} is writable"
