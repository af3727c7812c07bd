"""JobSpec messages to domain specs and back: unset means the engine's default, set means checked,
and a spec the server sends back means the same job when submitted again."""

from __future__ import annotations

import pytest
from tempering.v1 import hardening_pb2 as pb

from service import convert
from service.errors import InvalidRequest
from workers.engine.spec import EvaluationConfig, TrainingConfig


def spec_with(training: pb.Training, evaluation: pb.Evaluation | None = None) -> pb.JobSpec:
    return pb.JobSpec(
        model_id="model-1",
        train_dataset_id="dataset-1",
        training=training,
        threat_model=pb.ThreatModel(epsilon=0.1),
        evaluation=evaluation,
    )


def test_unset_fields_take_the_engines_defaults() -> None:
    spec = convert.job_spec(spec_with(pb.Training(pgd=pb.Pgd())))

    assert spec.training == TrainingConfig()
    assert spec.evaluation == EvaluationConfig()


@pytest.mark.parametrize(
    "training",
    [
        pb.Training(pgd=pb.Pgd()),
        pb.Training(epochs=3, learning_rate=0.01, pgd=pb.Pgd(attack_steps=5, step_size=0.02)),
        pb.Training(fgsm=pb.Fgsm()),
        pb.Training(trades=pb.Trades(beta=2.0)),
        pb.Training(distillation=pb.Distillation(temperature=20.0, teacher_epochs=2)),
        pb.Training(distillation=pb.Distillation()),
    ],
)
def test_a_spec_sent_back_means_the_same_job(training: pb.Training) -> None:
    spec = convert.job_spec(spec_with(training, pb.Evaluation(samples=200)))

    again = convert.job_spec(convert.job_spec_to_pb(spec))

    assert again == spec


def test_the_engines_zero_for_default_stays_unset_in_the_message() -> None:
    message = convert.job_spec_to_pb(convert.job_spec(spec_with(pb.Training(fgsm=pb.Fgsm()))))

    assert not message.training.HasField("learning_rate")
    assert not message.training.fgsm.HasField("step_size")
    assert message.training.epochs == TrainingConfig().epochs


@pytest.mark.parametrize(
    ("training", "field"),
    [
        (pb.Training(learning_rate=0.0, pgd=pb.Pgd()), "spec.training.learning_rate"),
        (pb.Training(pgd=pb.Pgd(step_size=-0.5)), "spec.training.pgd.step_size"),
        (pb.Training(trades=pb.Trades(step_size=0.0)), "spec.training.trades.step_size"),
        (
            pb.Training(distillation=pb.Distillation(teacher_epochs=0)),
            "spec.training.distillation.teacher_epochs",
        ),
    ],
)
def test_an_explicit_zero_where_zero_means_default_is_refused_naming_the_field(
    training: pb.Training, field: str
) -> None:
    with pytest.raises(InvalidRequest, match=f"{field} must be greater than 0"):
        convert.job_spec(spec_with(training))
