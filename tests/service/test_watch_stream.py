"""WatchJob against a real server while a worker writes progress faster than the server polls:
the stream is complete and ordered, as ``temper watch`` prints it off a terminal."""

from __future__ import annotations

import io
import threading
import time

from svc_helpers import digits_like, fgsm_spec, linear_onnx
from tempering.v1 import hardening_pb2 as pb
from tempering.v1 import hardening_pb2_grpc as pb_grpc

from client.convert import job_event
from client.domain import JobEvent
from client.progress_display import LineDisplay
from service.api.server import RunningServer
from service.core.domain import JobState, Progress, Said
from tests.shared_support import upload_dataset, upload_model
from workers.engine.progress import ProgressEvent
from workers.runner import ProgressRecorder

EPOCHS = 3


def epoch_end(epoch: int) -> ProgressEvent:
    return ProgressEvent(
        stage="training",
        epoch=epoch,
        epochs=EPOCHS,
        loss=1.0 / epoch,
        clean_accuracy=0.5 + epoch / 10,
        robust_accuracy=0.2 + epoch / 10,
        eta_seconds=float(EPOCHS - epoch),
        message=f"epoch {epoch}/{EPOCHS} done in 0.1 s",
    )


def training(epoch: int) -> list[ProgressEvent]:
    steps = [
        ProgressEvent(stage="training", epoch=epoch, epochs=EPOCHS, step=step, steps=4)
        for step in range(1, 5)
    ]
    return [*steps, epoch_end(epoch)]


def test_a_slow_watcher_gets_running_first_then_every_epoch_line_in_order(
    server: RunningServer, stub: pb_grpc.HardeningServiceStub
) -> None:
    spec = fgsm_spec(upload_model(stub, linear_onnx()), upload_dataset(stub, digits_like()))
    job_id = stub.SubmitJob(pb.SubmitJobRequest(spec=spec)).id
    events: list[JobEvent] = []
    first = threading.Event()

    def watch() -> None:
        for message in stub.WatchJob(pb.WatchJobRequest(job_id=job_id), timeout=30):
            events.append(job_event(message))
            first.set()

    watcher = threading.Thread(target=watch)
    watcher.start()
    assert first.wait(10)
    store = server.stores.jobs
    recorder = ProgressRecorder(store, job_id, interval=0.0)
    assert store.claim(job_id, max_attempts=2) is not None
    for event in [ProgressEvent(stage="loading", message="loading the model"), *training(1)]:
        recorder(event)
    time.sleep(1.0)
    for event in [*training(2), *training(3)]:
        recorder(event)
    recorder(ProgressEvent(stage="evaluating", steps=2, message="hardened: fgsm: 40/64"))
    assert store.finish(job_id, JobState.SUCCEEDED)
    watcher.join(30)

    shown = io.StringIO()
    display = LineDisplay(shown)
    for shown_event in events:
        display.show(shown_event)
    lines = shown.getvalue().splitlines()
    assert lines[:3] == [
        f"job {job_id}: QUEUED",
        f"job {job_id}: RUNNING",
        "loading: loading the model",
    ]
    assert [line for line in lines if ": loss" in line] == [
        "training epoch 1/3: loss 1.000, clean 60.0%, robust 30.0%, eta 2s",
        "training epoch 2/3: loss 0.500, clean 70.0%, robust 40.0%, eta 1s",
        "training epoch 3/3: loss 0.333, clean 80.0%, robust 50.0%, eta 0s",
    ]
    assert lines[-2:] == ["evaluating: hardened: fgsm: 40/64", f"job {job_id}: SUCCEEDED"]
    assert {e.state.value for e in events if e.progress is not None} == {"RUNNING"}


def test_a_message_saved_before_epochs_were_kept_still_reads() -> None:
    old = {"stage": "training", "message": "restarting", "recent": [
        {"number": 3, "stage": "training", "step": 0, "steps": 0, "message": "restarting"}
    ]}  # fmt: skip

    progress = Progress.from_json(old)

    assert progress is not None
    assert progress.recent == (Said(3, "training", 0, 0, "restarting"),)
    assert (progress.recent[0].epoch, progress.recent[0].loss) == (0, None)
