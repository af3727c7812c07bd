"""Log lines: text or one JSON object per line, with the job id and tenant of the work they were
written for, in the formatter, across threads, through the gRPC server and in a real worker."""

from __future__ import annotations

import contextlib
import contextvars
import io
import json
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from e2e_support import Process, running_stack, state_changes, watch_to_end
from service_support import make_settings
from svc_helpers import digits_like, fgsm_spec, linear_onnx
from tempering.v1 import hardening_pb2 as pb
from tempering.v1 import hardening_pb2_grpc as pb_grpc

from service.core.broker import worker_command
from service.core.logs import (
    ContextFilter,
    JsonFormatter,
    TextFormatter,
    bind_log_context,
    configure_logging,
    log_context,
)
from service.core.tenancy import DEFAULT_TENANT
from tests.shared_support import (
    ROOT,
    base_env,
    digits_arrays,
    export_digits_mlp,
    npz_bytes,
    upload_dataset,
    upload_model,
)


class Lines:
    """A handler as the service sets one up, writing into memory."""

    def __init__(self, formatter: logging.Formatter, logger: logging.Logger) -> None:
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setFormatter(formatter)
        self.handler.addFilter(ContextFilter())
        self._logger = logger

    def __enter__(self) -> Lines:
        self._level = self._logger.level
        self._logger.addHandler(self.handler)
        self._logger.setLevel(logging.DEBUG)
        return self

    def __exit__(self, *_: object) -> None:
        self._logger.removeHandler(self.handler)
        self._logger.setLevel(self._level)

    def text(self) -> list[str]:
        return self.stream.getvalue().splitlines()

    def json(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text()]


@pytest.fixture
def log() -> logging.Logger:
    logger = logging.getLogger("tests.logs")
    logger.propagate = False
    return logger


@pytest.fixture
def json_lines(log: logging.Logger) -> Iterator[Lines]:
    with Lines(JsonFormatter(), log) as lines:
        yield lines


def test_json_line_has_time_level_logger_and_message(
    log: logging.Logger, json_lines: Lines
) -> None:
    log.warning("disk %s is %d%% full", "/data", 93)

    (entry,) = json_lines.json()
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "tests.logs"
    assert entry["message"] == "disk /data is 93% full"
    assert entry["time"].endswith("Z")
    assert datetime.fromisoformat(entry["time"]).utcoffset().total_seconds() == 0  # type: ignore[union-attr]


def test_json_record_stays_on_one_line_whatever_its_message(
    log: logging.Logger, json_lines: Lines
) -> None:
    log.info('first line\nsecond line "quoted" ünïcode')

    (entry,) = json_lines.json()
    assert entry["message"] == 'first line\nsecond line "quoted" ünïcode'


def test_json_line_carries_job_and_tenant_of_the_context(
    log: logging.Logger, json_lines: Lines
) -> None:
    with log_context(job_id="job-1", tenant="alice"):
        log.info("inside")
    log.info("outside")

    inside, outside = json_lines.json()
    assert (inside["job_id"], inside["tenant"]) == ("job-1", "alice")
    assert not {"job_id", "tenant"} & outside.keys()


def test_json_line_captures_the_exception(log: logging.Logger, json_lines: Lines) -> None:
    try:
        raise ValueError("bad shape (3, 4)")
    except ValueError:
        log.exception("job failed")

    (entry,) = json_lines.json()
    assert entry["message"] == "job failed"
    assert "Traceback" in entry["exception"]
    assert "ValueError: bad shape (3, 4)" in entry["exception"]


def test_json_line_keeps_json_able_extras_and_drops_the_others(
    log: logging.Logger, json_lines: Lines
) -> None:
    log.info("uploaded", extra={"size_bytes": 1024, "labels": {"team": "vision"}, "lock": object()})

    (entry,) = json_lines.json()
    assert entry["size_bytes"] == 1024
    assert entry["labels"] == {"team": "vision"}
    assert "lock" not in entry


def test_text_line_shows_the_job_id_when_there_is_one(log: logging.Logger) -> None:
    with Lines(TextFormatter(), log) as lines:
        with log_context(job_id="abc123", tenant="alice"):
            log.info("training")
        log.info("idle")

    inside, outside = lines.text()
    assert inside.endswith("INFO tests.logs: [job abc123] training")
    assert outside.endswith("INFO tests.logs: idle")


def test_log_context_restores_the_outer_values_including_ones_bound_inside(
    log: logging.Logger, json_lines: Lines
) -> None:
    with log_context(tenant="alice"):
        with log_context(job_id="job-1"):
            bind_log_context(tenant="bob")
            log.info("inner")
        log.info("outer")
    log.info("none")

    inner, outer, none = json_lines.json()
    assert (inner["job_id"], inner["tenant"]) == ("job-1", "bob")
    assert (outer.get("job_id"), outer["tenant"]) == (None, "alice")
    assert "tenant" not in none


def test_threads_each_log_their_own_job(log: logging.Logger, json_lines: Lines) -> None:
    both_inside = threading.Barrier(2)

    def run(job_id: str) -> None:
        with log_context(job_id=job_id, tenant=f"tenant-{job_id}"):
            both_inside.wait(timeout=10)
            log.info("working on %s", job_id)

    threads = [threading.Thread(target=run, args=(job_id,)) for job_id in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    entries = json_lines.json()
    assert sorted(e["job_id"] for e in entries) == ["a", "b"]
    assert all(e["message"] == f"working on {e['job_id']}" for e in entries)
    assert all(e["tenant"] == f"tenant-{e['job_id']}" for e in entries)


def test_a_new_thread_carries_the_job_only_when_run_in_a_copy_of_the_context(
    log: logging.Logger, json_lines: Lines
) -> None:
    with log_context(job_id="job-1"):
        plain = threading.Thread(target=log.info, args=("plain",))
        copied = threading.Thread(target=contextvars.copy_context().run, args=(log.info, "copied"))
    for thread in (plain, copied):
        thread.start()
        thread.join()

    plain_entry, copied_entry = json_lines.json()
    assert "job_id" not in plain_entry
    assert copied_entry["job_id"] == "job-1"


@pytest.fixture
def root_logging() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(False)


def test_configure_logging_makes_the_root_logger_write_json_to_stderr(
    tmp_path: Path, root_logging: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(make_settings(tmp_path, log_format="json", log_level="warning"))
    with log_context(job_id="job-9"):
        logging.getLogger("some.library").warning("slow query")
        logging.getLogger("some.library").info("below the level")

    (line,) = capsys.readouterr().err.splitlines()
    entry = json.loads(line)
    assert (entry["logger"], entry["job_id"]) == ("some.library", "job-9")


def test_workers_start_without_the_celery_banner_in_text_and_json(tmp_path: Path) -> None:
    for log_format in ("text", "json"):
        command = worker_command(make_settings(tmp_path, log_format=log_format))

        assert command.index("--quiet") < command.index("worker")


# --- the gRPC server ---------------------------------------------------------------------------


@pytest.fixture
def server_lines(stub: pb_grpc.HardeningServiceStub) -> Iterator[Lines]:
    with Lines(JsonFormatter(), logging.getLogger("service")) as lines:
        yield lines


def test_server_lines_carry_the_tenant_and_the_job_id_of_each_call_alone(
    stub: pb_grpc.HardeningServiceStub, server_lines: Lines
) -> None:
    for _ in range(3):
        with pytest.raises(grpc.RpcError):
            stub.GetJob(pb.GetJobRequest(job_id="no-such-job"), timeout=10)
        with pytest.raises(grpc.RpcError):
            stub.SubmitJob(pb.SubmitJobRequest(spec=pb.JobSpec()), timeout=10)

    entries = server_lines.json()
    get_job = [e for e in entries if "GetJob" in e["message"]]
    submit = [e for e in entries if "SubmitJob" in e["message"]]
    assert len(get_job) == len(submit) == 3
    assert all(e["job_id"] == "no-such-job" for e in get_job)
    assert all("job_id" not in e for e in submit), "a job id leaked into a later call"
    assert all(e["tenant"] == DEFAULT_TENANT for e in entries)


def test_a_submitted_jobs_queued_line_carries_its_new_id(
    stub: pb_grpc.HardeningServiceStub, server_lines: Lines
) -> None:
    spec = fgsm_spec(upload_model(stub, linear_onnx()), upload_dataset(stub, digits_like()))

    job = stub.SubmitJob(pb.SubmitJobRequest(spec=spec), timeout=30)

    (queued,) = [e for e in server_lines.json() if "queued" in e["message"]]
    assert (queued["job_id"], queued["tenant"]) == (job.id, DEFAULT_TENANT)


# --- a real server and worker ------------------------------------------------------------------


def parsed_lines(path: Path) -> list[dict[str, Any]]:
    entries = []
    for line in path.read_text().splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"{path.name}: not a JSON line: {line!r}")
    return entries


@contextlib.contextmanager
def worker_with_stderr_apart(env: Mapping[str, str], folder: Path) -> Iterator[Path]:
    """``python -m workers`` with its log (stderr) in a file of its own: Celery prints its
    shutdown notices to stdout itself, past the logging."""
    log_path = folder / "worker.err"
    with (folder / "worker.out").open("wb") as out, log_path.open("wb") as err:
        popen = subprocess.Popen(
            [sys.executable, "-m", "workers"], cwd=ROOT, env=dict(env), stdout=out, stderr=err
        )
    try:
        yield log_path
    finally:
        Process(popen, log_path).stop()


@pytest.mark.e2e
@pytest.mark.slow
def test_every_worker_line_of_a_job_is_json_with_its_job_id_and_tenant(tmp_path: Path) -> None:
    env = base_env(
        {
            "TEMPERING_STATE_DIR": str(tmp_path / "state"),
            "TEMPERING_GRPC_ADDRESS": "127.0.0.1:0",
            "TEMPERING_LOG_FORMAT": "json",
            "TEMPERING_LOG_LEVEL": "DEBUG",  # so that the engine's libraries log during the job
        }
    )
    x, y = digits_arrays()
    with (
        running_stack(["--no-worker"], env, tmp_path) as stack,
        worker_with_stderr_apart(env, tmp_path) as worker_log,
    ):
        model_id = upload_model(stack.stub, export_digits_mlp(tmp_path / "mlp.onnx"))
        train_id = upload_dataset(stack.stub, npz_bytes(x[:256], y[:256]))
        job = stack.stub.SubmitJob(pb.SubmitJobRequest(spec=fgsm_spec(model_id, train_id)))
        events = watch_to_end(stack.stub, job.id)
    assert state_changes(events)[-1] == pb.JOB_STATE_SUCCEEDED, worker_log.read_text()

    worker = parsed_lines(worker_log)
    messages = [entry["message"] for entry in worker]
    start = next(i for i, m in enumerate(messages) if m.startswith(f"job {job.id}: attempt"))
    end = messages.index(f"job {job.id} succeeded")
    during = worker[start : end + 1]
    assert len(during) > 2, "only the runner's own lines ran in the job: nothing else was tested"
    assert {(e.get("job_id"), e.get("tenant")) for e in during} == {(job.id, DEFAULT_TENANT)}
    assert parsed_lines(tmp_path / "server.log")
