"""A scripted Tempering server for the client's CI tests: a real gRPC server in this process,
serving the generated ``HardeningService`` from a small fake servicer. It answers the first
calls of a method with UNAVAILABLE when told to, finishes jobs at once (or never), and serves a
canned report, so that retries, deadlines and gates can be tested against the real client code
path without a worker."""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import grpc
from tempering.v1 import hardening_pb2 as pb
from tempering.v1 import hardening_pb2_grpc as pb_grpc

from workers.engine.verdict import verdict

MODEL_BYTES = b"not really onnx, but the client only checks the SHA-256" * 1000
CARD_BYTES = b"# Model card: hardened classifier\n"
CHUNK = 16_384


def wilson(correct: int, total: int, z: float = 1.959964) -> tuple[float, float]:
    p = correct / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def accuracy(correct: int, total: int) -> dict[str, Any]:
    low, high = wilson(correct, total)
    return {
        "value": round(correct / total, 6),
        "low": round(low, 6),
        "high": round(high, 6),
        "correct": correct,
        "total": total,
    }


MASKING_CHECKS = (
    "black-box beats white-box",
    "unbounded attack does not reach zero",
    "more steps do not help",
)


def scores(clean: int, robust: int, total: int, fired: Sequence[str] = ()) -> dict[str, Any]:
    return {
        "clean_accuracy": accuracy(clean, total),
        "robust_accuracy": accuracy(robust, total),
        "attacks": [
            {
                "name": "pgd-ce",
                "description": "PGD on cross-entropy",
                "white_box": True,
                "robust_accuracy": accuracy(robust, total),
            },
            {
                "name": "square",
                "description": "Square attack",
                "white_box": False,
                "robust_accuracy": accuracy(min(total, robust + 2), total),
            },
        ],
        "curve": [],
        "masking": [
            {
                "check": check,
                "fired": check in fired,
                "detail": f"detail of {check}",
                "explanation": f"Why {check} points at masked gradients.",
            }
            for check in MASKING_CHECKS
        ],
        "gradient_masking_suspected": bool(fired),
    }


def make_report(
    *,
    total: int = 200,
    original: tuple[int, int] = (194, 40),
    hardened: tuple[int, int] = (190, 160),
    hardened_fired: Sequence[str] = (),
    original_fired: Sequence[str] = (),
    with_verdict: bool = True,
) -> dict[str, Any]:
    """A report shaped like the engine's: ``original``/``hardened`` are (clean, robust) counts
    of correct samples out of ``total``. The engine's own verdict is added unless
    ``with_verdict`` is false (a report from a server older than verdicts)."""
    report: dict[str, Any] = {
        "schema_version": "1.0",
        "kind": "tempering.robustness_report",
        "threat_model": {"norm": "linf", "eps": 0.1, "lower": [], "upper": []},
        "evaluation": {"suite": "fast", "samples": total, "seed": 0},
        "training": {"method": "pgd", "notes": []},
        "model_notes": [],
        "original": scores(*original, total, original_fired),
        "hardened": scores(*hardened, total, hardened_fired),
    }
    if with_verdict:
        report["verdict"] = verdict(report["original"], report["hardened"])
    return report


class FakeHardening(pb_grpc.HardeningServiceServicer):
    """``blips[method]``: how many calls of ``method`` (e.g. "GetJob") answer UNAVAILABLE first.
    ``final_state``: what a watched job ends as. ``watch_hangs``: WatchJob sends the job as
    RUNNING and then nothing, until the client goes away."""

    def __init__(
        self,
        report: Mapping[str, Any] | None = None,
        *,
        blips: Mapping[str, int] | None = None,
        final_state: int = pb.JOB_STATE_SUCCEEDED,
        watch_hangs: bool = False,
    ) -> None:
        self.report_bytes = json.dumps(report or make_report(), indent=2).encode()
        self.blips = Counter(blips or {})
        self.final_state = final_state
        self.watch_hangs = watch_hangs
        self.calls: Counter[str] = Counter()
        self.submitted: list[pb.SubmitJobRequest] = []
        self.cancelled: list[str] = []
        self.jobs: dict[str, pb.Job] = {}
        self._by_key: dict[str, str] = {}
        self._lock = threading.Lock()

    # -- helpers ---------------------------------------------------------------------------

    def _enter(self, method: str, context: grpc.ServicerContext) -> None:
        with self._lock:
            self.calls[method] += 1
            blip = self.blips[method] > 0
            if blip:
                self.blips[method] -= 1
        if blip:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"{method}: a passing blip")

    def _job(self, job_id: str, context: grpc.ServicerContext) -> pb.Job:
        with self._lock:
            job = self.jobs.get(job_id)
        if job is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no job {job_id}")
        assert job is not None
        return job

    def _artifact(self, kind: int) -> bytes:
        return {
            pb.ARTIFACT_KIND_HARDENED_MODEL: MODEL_BYTES,
            pb.ARTIFACT_KIND_REPORT: self.report_bytes,
            pb.ARTIFACT_KIND_MODEL_CARD: CARD_BYTES,
        }[kind]

    # -- uploads ---------------------------------------------------------------------------

    def _upload(self, method: str, requests: Iterator[Any], context: Any) -> pb.UploadResponse:
        digest = hashlib.sha256()
        size = 0
        for request in requests:
            if request.WhichOneof("payload") == "chunk":
                digest.update(request.chunk)
                size += len(request.chunk)
        self._enter(method, context)
        sha = digest.hexdigest()
        return pb.UploadResponse(artifact_id=f"a-{sha[:16]}", sha256=sha, size_bytes=size)

    def UploadModel(self, request_iterator: Any, context: Any) -> pb.UploadResponse:
        return self._upload("UploadModel", request_iterator, context)

    def UploadDataset(self, request_iterator: Any, context: Any) -> pb.UploadResponse:
        return self._upload("UploadDataset", request_iterator, context)

    # -- jobs ------------------------------------------------------------------------------

    def SubmitJob(self, request: pb.SubmitJobRequest, context: Any) -> pb.Job:
        self._enter("SubmitJob", context)
        with self._lock:
            self.submitted.append(request)
            key = request.idempotency_key
            if key and key in self._by_key:
                return self.jobs[self._by_key[key]]
            job_id = f"job-{len(self.jobs) + 1}"
            job = pb.Job(
                id=job_id,
                state=pb.JOB_STATE_QUEUED,
                spec=request.spec,
                labels=request.labels,
                idempotency_key=key,
            )
            self.jobs[job_id] = job
            if key:
                self._by_key[key] = job_id
            return job

    def GetJob(self, request: pb.GetJobRequest, context: Any) -> pb.Job:
        self._enter("GetJob", context)
        return self._job(request.job_id, context)

    def ListJobs(self, request: pb.ListJobsRequest, context: Any) -> pb.ListJobsResponse:
        self._enter("ListJobs", context)
        with self._lock:
            return pb.ListJobsResponse(jobs=list(self.jobs.values()))

    def CancelJob(self, request: pb.CancelJobRequest, context: Any) -> pb.Job:
        self._enter("CancelJob", context)
        job = self._job(request.job_id, context)
        with self._lock:
            self.cancelled.append(request.job_id)
            job.state = pb.JOB_STATE_CANCELLED
            job.reason = "cancelled by the client"
        return job

    def WatchJob(self, request: pb.WatchJobRequest, context: Any) -> Iterator[pb.JobEvent]:
        self._enter("WatchJob", context)
        job = self._job(request.job_id, context)
        if self.watch_hangs:
            with self._lock:
                job.state = pb.JOB_STATE_RUNNING
            yield pb.JobEvent(job_id=job.id, state=job.state, state_changed=job)
            while context.is_active():
                time.sleep(0.02)
            return
        with self._lock:
            job.state = self.final_state
            if self.final_state == pb.JOB_STATE_FAILED:
                job.reason = "the worker was lost"
        yield pb.JobEvent(job_id=job.id, state=job.state, state_changed=job)

    # -- downloads -------------------------------------------------------------------------

    def DownloadArtifact(
        self, request: pb.DownloadArtifactRequest, context: Any
    ) -> Iterator[pb.DownloadArtifactResponse]:
        with self._lock:
            self.calls["DownloadArtifact"] += 1
            breaks = self.blips["DownloadArtifact"] > 0
            if breaks:
                self.blips["DownloadArtifact"] -= 1
        data = self._artifact(request.kind)
        header = pb.OutputArtifact(
            kind=request.kind,
            filename="artifact",
            size_bytes=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
        )
        yield pb.DownloadArtifactResponse(header=header)
        for start in range(0, len(data), CHUNK):
            if breaks and start > 0:
                context.abort(grpc.StatusCode.UNAVAILABLE, "the connection broke")
            yield pb.DownloadArtifactResponse(chunk=data[start : start + CHUNK])


@contextmanager
def running(servicer: FakeHardening) -> Iterator[str]:
    """Serve ``servicer`` on a free local port; yields its address."""
    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_HardeningServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(0)
