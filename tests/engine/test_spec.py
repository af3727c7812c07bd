"""The engine's last guard on a job's parameters: None is the engine's choice, a value given must
be in range, and 0 is never read as "the default"."""

from __future__ import annotations

import pytest

from workers.engine.errors import InvalidParameter
from workers.engine.spec import EvaluationConfig, Method, TrainingConfig


def test_every_field_left_to_the_engine_passes() -> None:
    TrainingConfig().validate()
    TrainingConfig(method=Method.DISTILLATION).validate()


@pytest.mark.parametrize("name", ["learning_rate", "step_size", "teacher_epochs"])
def test_a_zero_where_zero_once_meant_the_default_is_refused(name: str) -> None:
    with pytest.raises(InvalidParameter, match=name):
        TrainingConfig(**{name: 0}).validate()


@pytest.mark.parametrize(
    ("field", "value"), [("batch_size", 0), ("batch_size", 9000), ("curve_points", 1)]
)
def test_evaluation_settings_out_of_range_are_refused(field: str, value: int) -> None:
    with pytest.raises(InvalidParameter, match=field):
        EvaluationConfig(**{field: value}).validate()
