"""Walk the hostile corpus (``corpus.py``) through a real gRPC server.

For every case: the right status code with an actionable message; no code of the payload ran
(its marker file does not exist); nothing changed outside the artifact store and the job store;
no partial upload was kept; a refused job left no record; and the server still answers a health
check, GetJob and ListJobs for other clients.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import stat
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2
from tempering.v1 import hardening_pb2 as pb

from service.api.server import SERVICE_NAME
from service.core.limits import MAX_MESSAGE_CHARS
from service.jobs.uploads import Uploads

from . import builders as b
from .conftest import HostileServer, base_request, upload
from .corpus import CASES, CHUNK, OK, OVERSIZED_STREAM_CHUNKS, Case, Submit, Upload

RPC_TIMEOUT = 60.0
_BLOB = re.compile(r"blobs/[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{64}")
_STORE_FILES = re.compile(r"state/(jobs|broker)\.sqlite(-journal|-wal|-shm)?")


def test_corpus_names_are_unique() -> None:
    names = [case.name for case in CASES]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_hostile_input_is_refused_cleanly(
    case: Case, hostile_servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    server: HostileServer = hostile_servers(case.trusted)
    outside_before = snapshot_outside_store(server.root)
    jobs_before = job_ids(server)
    action = case.build(server.context)

    if isinstance(action, Upload):
        assert case.rpc == ("UploadDataset" if action.dataset else "UploadModel")
        code, details, _ = run_upload(server, action, monkeypatch)
    else:
        assert case.rpc == "SubmitJob"
        code, details, job = run_submit(server, action)
        if code is OK and action.check is not None:
            action.check(job)

    assert code is case.code, f"{case.name}: got {code.name}: {details}"
    if case.code is not OK:
        assert_actionable(details, case.fragment)
        assert str(server.root) not in details, "a message shows the server's paths"
        assert len(details) <= MAX_MESSAGE_CHARS, "a message quotes unbounded input back"
        assert job_ids(server) == jobs_before, "a refused request left a job behind"
    for marker in case.markers:
        assert not server.context.marker(marker).exists(), "the payload's code ran"
    assert list(server.context.marker_dir.iterdir()) == []
    assert_still_serving(server)
    assert snapshot_outside_store(server.root) == outside_before
    assert_store_holds_only_whole_blobs(server.artifact_dir)


def test_trap_payloads_are_armed(tmp_path: Path) -> None:
    """The payloads really run code when loaded the unsafe way, so the absent markers above
    prove that nothing loaded them."""
    markers = [tmp_path / name for name in ("raw", "zip", "npz")]
    pickle.loads(b.raw_pickle(markers[0]))
    with zipfile.ZipFile(io.BytesIO(b.torch_save_zip(markers[1]))) as archive:
        pickle.loads(archive.read("archive/data.pkl"))
    with np.load(io.BytesIO(b.npz_with_object_array(markers[2])), allow_pickle=True) as data:
        data["x"]
    assert all(marker.exists() for marker in markers)


# --- running a case ---------------------------------------------------------------------------


class CountingStream:
    """The client's request stream; counts the chunk messages gRPC pulled from it."""

    def __init__(self, messages: Iterable[object]) -> None:
        self._messages = messages
        self.chunks_pulled = 0

    def __iter__(self) -> Iterator[object]:
        for message in self._messages:
            if message.WhichOneof("payload") == "chunk":  # type: ignore[attr-defined]
                self.chunks_pulled += 1
            yield message


def run_upload(
    server: HostileServer, action: Upload, monkeypatch: pytest.MonkeyPatch
) -> tuple[grpc.StatusCode, str, object]:
    server_reads: list[int] = []
    receive = Uploads.receive

    def counting_receive(
        self: Uploads, header: object, chunks: Iterable[bytes], *args: object, **kwargs: object
    ) -> object:
        def counted() -> Iterator[bytes]:
            for chunk in chunks:
                server_reads.append(len(chunk))
                yield chunk

        return receive(self, header, counted(), *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Uploads, "receive", counting_receive)
    stream = CountingStream(upload_messages(action))
    rpc = server.stub.UploadDataset if action.dataset else server.stub.UploadModel
    code, details, response = call(lambda: rpc(iter(stream), timeout=RPC_TIMEOUT))
    if action.max_chunks_read is not None:
        assert len(server_reads) <= action.max_chunks_read, (
            f"the server read {len(server_reads)} chunks before refusing the stream"
        )
        assert stream.chunks_pulled < OVERSIZED_STREAM_CHUNKS // 2, (
            f"the client was made to send {stream.chunks_pulled} chunks"
        )
    return code, details, response


def upload_messages(action: Upload) -> Iterator[object]:
    if action.messages is not None:
        yield from action.messages()
        return
    header_type = pb.DatasetUploadHeader if action.dataset else pb.ModelUploadHeader
    request_type = pb.UploadDatasetRequest if action.dataset else pb.UploadModelRequest
    data = action.data
    yield request_type(
        header=header_type(
            name=action.name,
            format=action.fmt,
            size_bytes=len(data) if action.declared_size is None else action.declared_size,
            sha256=action.declared_sha256 or b.sha256(data),
        )
    )
    chunks = action.chunks() if action.chunks is not None else _split(data)
    for chunk in chunks:
        yield request_type(chunk=chunk)


def _split(data: bytes) -> Iterator[bytes]:
    for start in range(0, len(data), CHUNK):
        yield data[start : start + CHUNK]


def run_submit(server: HostileServer, action: Submit) -> tuple[grpc.StatusCode, str, pb.Job]:
    stub = server.stub
    model = action.model or b.linear_onnx(seed=0)
    model_id = upload(stub, model, dataset=False, fmt=action.model_fmt)
    train_id = upload(stub, action.train or b.good_npz(), dataset=True, fmt=pb.DATASET_FORMAT_NPZ)
    eval_id = (
        upload(stub, action.eval, dataset=True, fmt=pb.DATASET_FORMAT_NPZ) if action.eval else ""
    )
    request = base_request(model_id, train_id, eval_id)
    if action.edit is not None:
        action.edit(request)
    code, details, job = call(lambda: stub.SubmitJob(request, timeout=RPC_TIMEOUT))
    return code, details, job  # type: ignore[return-value]


def call(invoke) -> tuple[grpc.StatusCode, str, object]:  # type: ignore[no-untyped-def]
    try:
        return grpc.StatusCode.OK, "", invoke()
    except grpc.RpcError as error:
        return error.code(), error.details() or "", None


# --- the checks -------------------------------------------------------------------------------


def assert_actionable(details: str, fragment: str) -> None:
    assert details, "the status carries no message"
    assert "internal error" not in details.lower(), details
    assert "Traceback" not in details, details
    assert len(details) >= 20, f"too terse to act on: {details!r}"
    assert fragment.lower() in details.lower(), f"{fragment!r} not in {details!r}"


def assert_still_serving(server: HostileServer) -> None:
    for service in ("", SERVICE_NAME):
        reply = server.health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    job = server.stub.GetJob(pb.GetJobRequest(job_id=server.baseline_job_id), timeout=10)
    assert job.state == pb.JOB_STATE_QUEUED
    assert server.baseline_job_id in job_ids(server)


def job_ids(server: HostileServer) -> set[str]:
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
