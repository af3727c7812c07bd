"""MLflow tracking of jobs, read back from a real local MLflow file store: a job run by a real
server and worker logs its parameters, one point per epoch, the report's scores and its files;
a server without a tracking URI refuses such jobs, and a worker that cannot reach the tracking
server or lacks the extra fails them before training."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from e2e_support import Stack, running_stack, state_changes, watch_to_end
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from svc_helpers import download, fgsm_spec
from tempering.v1 import hardening_pb2 as pb
from tempering.v1 import hardening_pb2_grpc as pb_grpc

from service.core.domain import JobSpec, JobState, MlflowTracking, NewJob
from service.store.artifacts import LocalArtifactStore
from service.store.catalog import UploadCatalog
from service.store.db import Database
from service.store.jobstore import JobStore
from tests.runner_support import record_inputs
from tests.shared_support import (
    ROOT,
    base_env,
    digits_arrays,
    export_digits_mlp,
    npz_bytes,
    upload_dataset,
    upload_model,
)
from workers.engine.progress import Reporter
from workers.engine.spec import HardeningRequest, Method, ModelFormat, ThreatModel, TrainingConfig
from workers.mlflow_tracking import RunTarget, job_tracking, open_run, run_params
from workers.runner import JobRunner, RunnerConfig

EPOCHS = 2
EXPERIMENT = "digits-hardening"


@pytest.fixture(autouse=True)
def file_stores_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow 3 refuses ``file://`` tracking stores unless this is set."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")


def file_store(folder: Path) -> str:
    return (folder / "mlruns").as_uri()


def only_run(tracking_uri: str, experiment: str = EXPERIMENT) -> Run:
    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment!r}"
    (run,) = client.search_runs([found.experiment_id])
    return run


# --- a job through the real service ---------------------------------------------------------


@dataclass(frozen=True)
class TrackedJob:
    job: pb.Job
    tracking_uri: str
    report: dict[str, Any]
    model_bytes: bytes
    logs: str

    @property
    def run(self) -> Run:
        return only_run(self.tracking_uri)

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(self.tracking_uri)


@pytest.fixture(scope="module")
def tracked_job(tmp_path_factory: pytest.TempPathFactory) -> TrackedJob:
    """One FGSM job on the digits, through a real server and its Celery worker process, with
    the tracking store given by the operator's setting."""
    folder = tmp_path_factory.mktemp("mlflow-service")
    tracking_uri = file_store(folder)
    env = base_env(
        {
            "TEMPERING_GRPC_ADDRESS": "127.0.0.1:0",
            "TEMPERING_MLFLOW_TRACKING_URI": tracking_uri,
            "MLFLOW_ALLOW_FILE_STORE": "true",
        }
    )
    with running_stack(["--state-dir", str(folder / "state")], env, folder) as stack:
        job = submit_tracked_job(stack, folder)
        events = watch_to_end(stack.stub, job.id)
        assert state_changes(events)[-1] == pb.JOB_STATE_SUCCEEDED, stack.logs()
        _, report_bytes = download(stack.stub, job.id, pb.ARTIFACT_KIND_REPORT)
        _, model_bytes = download(stack.stub, job.id, pb.ARTIFACT_KIND_HARDENED_MODEL)
        return TrackedJob(job, tracking_uri, json.loads(report_bytes), model_bytes, stack.logs())


def submit_tracked_job(stack: Stack, folder: Path) -> pb.Job:
    x, y = digits_arrays()
    model_id = upload_model(stack.stub, export_digits_mlp(folder / "mlp.onnx"))
    train_id = upload_dataset(stack.stub, npz_bytes(x[:400], y[:400]))
    eval_id = upload_dataset(stack.stub, npz_bytes(x[1000:1064], y[1000:1064]))
    spec = fgsm_spec(model_id, train_id, eval_dataset_id=eval_id)
    spec.training.epochs = EPOCHS
    spec.mlflow.CopyFrom(pb.MlflowTracking(experiment=EXPERIMENT, run_name="fgsm-digits"))
    return stack.stub.SubmitJob(pb.SubmitJobRequest(spec=spec))


@pytest.mark.e2e
@pytest.mark.slow
def test_the_run_is_named_and_tagged_for_its_job(tracked_job: TrackedJob) -> None:
    run = tracked_job.run

    assert run.info.run_name == "fgsm-digits"
    assert run.data.tags["tempering.job_id"] == tracked_job.job.id
    assert run.data.tags["tempering.tenant"] == "default"
    assert run.data.tags["tempering.attempt"] == "1"


@pytest.mark.e2e
@pytest.mark.slow
def test_the_run_holds_the_job_parameters(tracked_job: TrackedJob) -> None:
    params = tracked_job.run.data.params
    request, inputs = tracked_job.report["request"], tracked_job.report["inputs"]

    assert params["method"] == "fgsm"
    assert float(params["epsilon"]) == pytest.approx(0.1)
    assert params["norm"] == "linf"
    assert params["epochs"] == str(EPOCHS)
    assert params["batch_size"] == "64"
    assert params["seed"] == "7"
    assert params["suite"] == "fast"
    assert params["eval_samples"] == "64"
    assert request["training"]["step_size"] is None
    assert params["step_size"] == params["learning_rate"] == "auto"
    assert params["model_sha256"] == inputs["model_sha256"]
    assert params["train_data_sha256"] == inputs["train_data_sha256"]
    assert params["eval_data_sha256"] == inputs["eval_data_sha256"]
    assert "temperature" not in params


@pytest.mark.e2e
@pytest.mark.slow
def test_each_epoch_logs_one_point_of_loss_and_validation_accuracy(
    tracked_job: TrackedJob,
) -> None:
    run_id = tracked_job.run.info.run_id
    history = tracked_job.report["training"]["history"]

    for metric, column in (
        ("train_loss", "loss"),
        ("val_clean_accuracy", "val_clean_accuracy"),
        ("val_robust_accuracy", "val_robust_accuracy"),
    ):
        points = tracked_job.client.get_metric_history(run_id, metric)
        assert sorted(p.step for p in points) == list(range(1, EPOCHS + 1)), metric
        by_epoch = {p.step: p.value for p in points}
        for record in history:
            assert by_epoch[record["epoch"]] == pytest.approx(record[column]), metric


@pytest.mark.e2e
@pytest.mark.slow
def test_the_headline_metrics_equal_the_report(tracked_job: TrackedJob) -> None:
    metrics = tracked_job.run.data.metrics
    report = tracked_job.report

    for model in ("original", "hardened"):
        for score in ("clean_accuracy", "robust_accuracy"):
            interval = report[model][score]
            assert metrics[f"{model}_{score}"] == interval["value"]
            assert metrics[f"{model}_{score}_low"] == interval["low"]
            assert metrics[f"{model}_{score}_high"] == interval["high"]
    for attack in report["hardened"]["attacks"]:
        name = attack["name"]
        assert metrics[f"hardened_robust_accuracy_{name}"] == attack["robust_accuracy"]["value"]


@pytest.mark.e2e
@pytest.mark.slow
def test_the_artifacts_are_the_report_card_plot_and_the_job_s_hardened_model(
    tracked_job: TrackedJob, tmp_path: Path
) -> None:
    client, run_id = tracked_job.client, tracked_job.run.info.run_id

    names = {artifact.path for artifact in client.list_artifacts(run_id)}
    model = Path(client.download_artifacts(run_id, "hardened.onnx", str(tmp_path)))
    report = Path(client.download_artifacts(run_id, "report.json", str(tmp_path)))

    assert names == {"hardened.onnx", "report.json", "model_card.md", "robustness_curve.png"}
    assert model.read_bytes() == tracked_job.model_bytes
    assert json.loads(report.read_text()) == tracked_job.report


@pytest.mark.e2e
@pytest.mark.slow
def test_the_run_ends_finished_with_the_job(tracked_job: TrackedJob) -> None:
    assert tracked_job.run.info.status == "FINISHED"


# --- refusals and failures --------------------------------------------------------------------


def test_a_server_without_a_tracking_uri_refuses_jobs_that_ask_for_mlflow(
    stub: pb_grpc.HardeningServiceStub,
) -> None:
    spec = fgsm_spec("model", "data")
    spec.mlflow.CopyFrom(pb.MlflowTracking(experiment=EXPERIMENT))

    with pytest.raises(grpc.RpcError) as error:
        stub.SubmitJob(pb.SubmitJobRequest(spec=spec))

    assert error.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "TEMPERING_MLFLOW_TRACKING_URI" in str(error.value.details())


@dataclass
class Rig:
    store: JobStore
    catalog: UploadCatalog
    artifacts: LocalArtifactStore
    config: RunnerConfig
    job_id: str
    engine_calls: list[HardeningRequest]

    def runner(self, tracking_uri: str | None) -> JobRunner:
        def engine(request: HardeningRequest, output_dir: Path, reporter: Reporter) -> Any:
            self.engine_calls.append(request)
            raise AssertionError("the engine must not run")

        return JobRunner(
            self.store,
            self.catalog,
            self.artifacts,
            self.config,
            harden=engine,
            tracker_factory=job_tracking(tracking_uri),
        )


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    """A queued job asking for MLflow, and a runner whose engine records being called."""
    database = Database.open(f"sqlite:///{tmp_path / 'jobs.sqlite'}", "t_")
    store, catalog = JobStore(database), UploadCatalog(database)
    artifacts = LocalArtifactStore(tmp_path / "artifacts")
    inputs = record_inputs(artifacts, catalog)
    spec = JobSpec(
        model_id=inputs.model_id,
        train_dataset_id=inputs.dataset_id,
        training=TrainingConfig(method=Method.FGSM, epochs=1),
        threat=ThreatModel(eps=0.1),
        mlflow=MlflowTracking(experiment=EXPERIMENT),
    )
    job, _ = store.create(NewJob(spec))
    config = RunnerConfig(work_dir=tmp_path / "work", max_attempts=3, allow_trusted_formats=False)
    yield Rig(store, catalog, artifacts, config, job.id, [])
    database.close()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_unreachable_tracking_server_fails_the_job_before_training(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    port = closed_port()

    state = rig.runner(f"http://127.0.0.1:{port}").run(rig.job_id)

    job = rig.store.get(rig.job_id)
    assert state is JobState.FAILED
    assert job.reason.startswith(f"could not start MLflow tracking at http://127.0.0.1:{port}")
    assert "before training" in job.reason
    assert rig.engine_calls == []


def test_a_worker_without_the_mlflow_extra_fails_the_job_saying_what_to_install(
    rig: Rig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)

    state = rig.runner(file_store(tmp_path)).run(rig.job_id)

    assert state is JobState.FAILED
    assert "install tempering[mlflow] on the workers" in rig.store.get(rig.job_id).reason
    assert rig.engine_calls == []


def test_a_worker_without_a_tracking_uri_fails_the_job_naming_the_setting(rig: Rig) -> None:
    state = rig.runner(None).run(rig.job_id)

    assert state is JobState.FAILED
    assert "TEMPERING_MLFLOW_TRACKING_URI" in rig.store.get(rig.job_id).reason
    assert rig.engine_calls == []


# --- a later attempt --------------------------------------------------------------------------


def test_a_later_attempt_of_a_job_continues_its_run(tmp_path: Path) -> None:
    tracking_uri = file_store(tmp_path)
    request = HardeningRequest(
        model=_written(tmp_path / "model.onnx", b"model"),
        train_data=tmp_path / "train.npz",
        training=TrainingConfig(method=Method.PGD, epochs=3),
        threat=ThreatModel(eps=0.1),
    )
    request.train_data.write_bytes(b"data")
    target = RunTarget(tracking_uri, EXPERIMENT, job_id="job-1", tenant="alice", attempt=1)

    first = open_run(target, request)
    second = open_run(RunTarget(**{**vars(target), "attempt": 2}), request)

    run = only_run(tracking_uri)
    assert second.run_id == first.run_id == run.info.run_id
    assert run.data.tags["tempering.attempt"] == "2"
    assert run.info.status == "RUNNING"
    assert run.data.params["attack_steps"] == "auto"


def _written(path: Path, data: bytes) -> Any:
    from workers.engine.spec import ModelSource

    path.write_bytes(data)
    return ModelSource(path=path, format=ModelFormat.ONNX)


# --- parameters left to the recipe ---------------------------------------------------------


def _pgd_request(tmp_path: Path, training: TrainingConfig) -> HardeningRequest:
    request = HardeningRequest(
        model=_written(tmp_path / "model.onnx", b"model"),
        train_data=tmp_path / "train.npz",
        training=training,
        threat=ThreatModel(eps=0.1),
    )
    request.train_data.write_bytes(b"data")
    return request


RECIPE_FIELDS = ("epochs", "batch_size", "validation_size", "eps_warmup_epochs")


def test_a_parameter_left_to_the_recipe_is_logged_as_auto(tmp_path: Path) -> None:
    params = run_params(_pgd_request(tmp_path, TrainingConfig(method=Method.PGD)))

    assert {name: params[name] for name in RECIPE_FIELDS} == dict.fromkeys(RECIPE_FIELDS, "auto")


def test_a_parameter_given_is_logged_as_given(tmp_path: Path) -> None:
    training = TrainingConfig(
        method=Method.PGD, epochs=3, batch_size=32, validation_size=0, eps_warmup_epochs=0.0
    )

    params = run_params(_pgd_request(tmp_path, training))

    assert [params[name] for name in RECIPE_FIELDS] == ["3", "32", "0", "0.0"]


def _report_with_config(config: dict[str, Any]) -> dict[str, Any]:
    scores = {
        "clean_accuracy": {"value": 0.9, "low": 0.8, "high": 0.95},
        "robust_accuracy": {"value": 0.5, "low": 0.4, "high": 0.6},
        "attacks": [],
    }
    return {"original": scores, "hardened": scores, "training": {"config": config}}


def test_the_configuration_that_ran_is_logged_as_resolved_params_when_the_run_ends(
    tmp_path: Path,
) -> None:
    tracking_uri = file_store(tmp_path)
    request = _pgd_request(tmp_path, TrainingConfig(method=Method.PGD))
    ran = {
        "method": "pgd",
        "epochs": 12,
        "batch_size": 128,
        "learning_rate": 0.001,
        "eps_warmup_epochs": 2.4,
        "validation_size": 1000,
    }
    run = open_run(RunTarget(tracking_uri, EXPERIMENT, job_id="job-1"), request)

    run.log_outcome(_report_with_config(ran), [])

    params = only_run(tracking_uri).data.params
    assert params["epochs"] == "auto"
    assert {k: v for k, v in params.items() if k.startswith("resolved.")} == {
        "resolved.epochs": "12",
        "resolved.batch_size": "128",
        "resolved.learning_rate": "0.001",
        "resolved.eps_warmup_epochs": "2.4",
        "resolved.validation_size": "1000",
    }


# --- temper harden --local ------------------------------------------------------------------


@pytest.mark.slow
def test_a_local_run_logs_to_the_tracking_uri_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from client.cli import main

    assets = ROOT / "client" / "demo_assets"
    tracking_uri = file_store(tmp_path)
    output = tmp_path / "out" / "hardened.onnx"

    code = main(
        [
            *(
                "harden",
                str(assets / "digits_cnn.onnx"),
                "--data",
                str(assets / "digits_train.npz"),
            ),
            *("--method", "fgsm", "--eps", "0.1", "--epochs", "1", "--suite", "fast"),
            *("--eval-samples", "48", "--local", "-o", str(output)),
            *("--mlflow-uri", tracking_uri, "--mlflow-experiment", EXPERIMENT),
        ]
    )

    assert code == 0, capsys.readouterr().err
    run = only_run(tracking_uri)
    client = MlflowClient(tracking_uri)
    model = Path(client.download_artifacts(run.info.run_id, "hardened.onnx", str(tmp_path)))
    assert run.info.status == "FINISHED"
    assert run.data.params["method"] == "fgsm"
    assert [p.step for p in client.get_metric_history(run.info.run_id, "train_loss")] == [1]
    assert model.read_bytes() == output.read_bytes()


def test_importing_mlflow_leaves_our_logging_as_it_was() -> None:
    code = (
        "import logging\n"
        "from workers.mlflow_tracking import mlflow_client_class\n"
        "mlflow_client_class()\n"
        "for name in ('mlflow', 'sqlalchemy.engine', 'alembic', 'huey'):\n"
        "    logger = logging.getLogger(name)\n"
        "    print(name, len(logger.handlers), logger.propagate, logger.level)\n"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(root / "proto")])},
        capture_output=True,
        text=True,
        check=True,
    )

    assert done.stdout.split("\n")[:4] == [
        f"{name} 0 True 0" for name in ("mlflow", "sqlalchemy.engine", "alembic", "huey")
    ]
