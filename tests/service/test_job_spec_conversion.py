"""JobSpec messages to domain specs and back: unset means the engine's default, set means checked,
and a spec the server sends back means the same job when submitted again."""

from __future__ import annotations

from typing import Any

import pytest
from tempering.v1 import hardening_pb2 as pb

from service.api import convert
from service.core.domain import JobSpec
from service.core.errors import InvalidRequest
from workers.engine.errors import InvalidParameter
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
        pb.Training(batch_size=64, validation_size=0, fgsm=pb.Fgsm(eps_warmup_epochs=0.0)),
        pb.Training(pgd=pb.Pgd(eps_warmup_epochs=1.5)),
        pb.Training(distillation=pb.Distillation(temperature=20.0, teacher_epochs=2)),
        pb.Training(distillation=pb.Distillation()),
    ],
)
def test_a_spec_sent_back_means_the_same_job(training: pb.Training) -> None:
    spec = convert.job_spec(spec_with(training, pb.Evaluation(samples=200)))

    again = convert.job_spec(convert.job_spec_to_pb(spec))

    assert again == spec


def test_a_field_left_to_the_engine_stays_unset_in_the_message() -> None:
    message = convert.job_spec_to_pb(convert.job_spec(spec_with(pb.Training(fgsm=pb.Fgsm()))))

    assert not message.training.HasField("learning_rate")
    assert not message.training.fgsm.HasField("step_size")


def test_a_spec_recorded_with_zero_for_the_default_reads_as_left_to_the_engine() -> None:
    recorded = JobSpec(model_id="m", train_dataset_id="d").to_json()
    recorded["training"] |= {"learning_rate": 0.0, "step_size": 0.0, "teacher_epochs": 0}

    training = JobSpec.from_json(recorded).training

    assert (training.learning_rate, training.step_size, training.teacher_epochs) == (None,) * 3
    training.validate()


WARMUP_METHODS = [
    pytest.param(lambda w: pb.Training(pgd=pb.Pgd(eps_warmup_epochs=w)), id="pgd"),
    pytest.param(lambda w: pb.Training(fgsm=pb.Fgsm(eps_warmup_epochs=w)), id="fgsm"),
    pytest.param(lambda w: pb.Training(trades=pb.Trades(eps_warmup_epochs=w)), id="trades"),
]


@pytest.mark.parametrize("training_with_warmup", WARMUP_METHODS)
def test_an_unset_eps_warmup_reaches_the_engine_as_none(training_with_warmup: Any) -> None:
    spec = convert.job_spec(spec_with(training_with_warmup(None)))

    assert spec.training.eps_warmup_epochs is None


@pytest.mark.parametrize("training_with_warmup", WARMUP_METHODS)
def test_an_explicit_zero_eps_warmup_reaches_the_engine_as_zero(
    training_with_warmup: Any,
) -> None:
    spec = convert.job_spec(spec_with(training_with_warmup(0.0)))

    assert spec.training.eps_warmup_epochs == 0.0
    spec.validate()


def test_unset_epochs_batch_size_and_validation_size_reach_the_engine_as_none() -> None:
    training = convert.job_spec(spec_with(pb.Training(pgd=pb.Pgd()))).training

    assert (training.epochs, training.batch_size, training.validation_size) == (None, None, None)


def test_set_epochs_batch_size_and_validation_size_reach_the_engine_as_sent() -> None:
    message = pb.Training(epochs=4, batch_size=32, validation_size=0, pgd=pb.Pgd())

    training = convert.job_spec(spec_with(message)).training

    assert (training.epochs, training.batch_size, training.validation_size) == (4, 32, 0)


def test_an_explicit_zero_epochs_reaches_the_engine_whose_check_refuses_it() -> None:
    spec = convert.job_spec(spec_with(pb.Training(epochs=0, pgd=pb.Pgd())))

    with pytest.raises(InvalidParameter, match="epochs must be between 1 and 1000"):
        spec.validate()


def test_fields_the_recipe_chooses_stay_unset_in_the_message_sent_back() -> None:
    message = convert.job_spec_to_pb(convert.job_spec(spec_with(pb.Training(pgd=pb.Pgd()))))

    set_fields = [
        name
        for name in ("epochs", "batch_size", "validation_size")
        if message.training.HasField(name)
    ]
    assert set_fields == []
    assert not message.training.pgd.HasField("eps_warmup_epochs")


def test_an_explicit_zero_eps_warmup_stays_set_in_the_message_sent_back() -> None:
    sent = spec_with(pb.Training(trades=pb.Trades(eps_warmup_epochs=0.0)))

    message = convert.job_spec_to_pb(convert.job_spec(sent))

    assert message.training.trades.HasField("eps_warmup_epochs")
    assert message.training.trades.eps_warmup_epochs == 0.0


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


def _threat_spec(**threat: Any) -> pb.JobSpec:
    spec = spec_with(pb.Training(pgd=pb.Pgd()))
    spec.threat_model.CopyFrom(pb.ThreatModel(**threat))
    return spec


@pytest.mark.parametrize("eps", [1e300, float("inf"), float("nan"), 3.5e38])
def test_an_eps_beyond_float32_is_refused(eps: float) -> None:
    with pytest.raises(InvalidRequest, match="epsilon"):
        convert.job_spec(_threat_spec(epsilon=eps))


@pytest.mark.parametrize(
    ("eps", "lower", "upper"),
    [(5.0, [0.0], [1.0]), (1.0, [0.0], [1.0]), (2.0, [-1.0, 0.0], [1.0, 1.0])],
)
def test_an_linf_eps_that_covers_the_whole_input_domain_is_refused_saying_why(
    eps: float, lower: list[float], upper: list[float]
) -> None:
    with pytest.raises(InvalidRequest, match="at least the width of the input domain") as refused:
        convert.job_spec(_threat_spec(epsilon=eps, lower=lower, upper=upper))

    assert "no model can be robust" in str(refused.value)


def test_an_eps_inside_the_domain_and_an_l2_eps_are_accepted() -> None:
    assert convert.job_spec(_threat_spec(epsilon=0.99)).threat.eps == 0.99
    l2 = convert.job_spec(_threat_spec(epsilon=3.0, norm=pb.NORM_L2))
    assert l2.threat.eps == 3.0


def test_under_a_schema_eps_is_a_budget_in_its_units_not_held_to_the_default_domain() -> None:
    message = _threat_spec(epsilon=5.0)
    message.feature_schema_id = "schema-1"

    spec = convert.job_spec(message)

    assert spec.threat.eps == 5.0
    assert spec.feature_schema_id == "schema-1"
    assert convert.job_spec_to_pb(spec).feature_schema_id == "schema-1"


@pytest.mark.parametrize("eps", [float("inf"), float("nan"), 3.5e38, 0.0, -1.0])
def test_under_a_schema_an_eps_that_is_not_positive_and_finite_is_refused(eps: float) -> None:
    message = _threat_spec(epsilon=eps)
    message.feature_schema_id = "schema-1"

    with pytest.raises(InvalidRequest, match="epsilon"):
        convert.job_spec(message)


def test_bounds_beyond_float32_are_refused() -> None:
    with pytest.raises(InvalidRequest, match="finite float32"):
        convert.job_spec(_threat_spec(epsilon=0.1, lower=[-1e39], upper=[1.0]))


@pytest.mark.parametrize("seconds", [float("nan"), -1.0, 1e-9, 0.5, float("inf")])
def test_a_time_limit_that_is_not_at_least_a_second_is_refused_not_replaced(
    seconds: float,
) -> None:
    spec = _threat_spec(epsilon=0.1)
    spec.time_limit_seconds = seconds

    with pytest.raises(InvalidRequest, match="time_limit_seconds must be at least 1 second"):
        convert.job_spec(spec)


def test_an_unset_time_limit_takes_the_servers_and_a_set_one_is_kept() -> None:
    spec = _threat_spec(epsilon=0.1)
    assert convert.job_spec(spec).time_limit_seconds == 0
    spec.time_limit_seconds = 60.0
    assert convert.job_spec(spec).time_limit_seconds == 60.0


def test_fgsm_for_a_text_job_is_refused_at_submit_not_when_a_worker_starts_it() -> None:
    message = spec_with(pb.Training(fgsm=pb.Fgsm()))
    message.tokenizer_id = "tokenizer-1"
    spec = convert.job_spec(message)

    with pytest.raises(InvalidParameter, match="fgsm is not offered for text models: use pgd"):
        spec.validate()


def test_every_other_method_is_a_text_method() -> None:
    for training in (
        pb.Training(pgd=pb.Pgd()),
        pb.Training(trades=pb.Trades()),
        pb.Training(distillation=pb.Distillation()),
    ):
        message = spec_with(training)
        message.tokenizer_id = "tokenizer-1"
        convert.job_spec(message).validate()
