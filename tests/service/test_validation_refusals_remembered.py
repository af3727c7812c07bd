"""A model the submit-time check refused is refused again without a checker: a tenant who submits
the same costly model in a loop costs the server one check, not one a submission (issue 15, C)."""

from __future__ import annotations

import gc
import hashlib
import weakref
from pathlib import Path

import numpy as np
import pytest
from svc_helpers import digits_like, linear_onnx
from test_validation_pool_lifecycle import slow_model

from service.core.errors import ResourceExhausted
from service.jobs.validation_pool import ValidationPool
from service.store.artifacts import LocalArtifactStore
from workers.engine.errors import InvalidData
from workers.engine.spec import ModelFormat, ThreatModel

GiB = 2**30


@pytest.fixture
def pool() -> ValidationPool:
    return ValidationPool(4 * GiB, processes=1, time_limit=30)


def test_a_refused_model_is_refused_again_in_the_same_words_without_a_checker(
    pool: ValidationPool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, data = slow_model(tmp_path / "costly.onnx"), tmp_path / "train.npz"
    data.write_bytes(digits_like())
    try:
        with pytest.raises(ResourceExhausted) as first:
            pool.check(ModelFormat.ONNX, model, [data], ThreatModel(), tenant="mallory")

        def no_checker(*_: object) -> None:
            raise AssertionError("a checker ran for a request already refused")

        monkeypatch.setattr(pool, "_run", no_checker)
        with pytest.raises(ResourceExhausted) as again:
            pool.check(ModelFormat.ONNX, model, [data], ThreatModel(), tenant="mallory")
    finally:
        pool.close()

    assert "GFLOPs" in str(first.value)
    assert str(again.value) == str(first.value)


def test_uploading_a_refused_model_again_does_not_buy_another_check(
    pool: ValidationPool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalArtifactStore(tmp_path / "artifacts")
    source, data = slow_model(tmp_path / "costly.onnx"), tmp_path / "train.npz"
    data.write_bytes(digits_like())
    model = store.blob_path(store.put_file(source).sha256)
    try:
        with pytest.raises(ResourceExhausted):
            pool.check(ModelFormat.ONNX, model, [data], ThreatModel(), tenant="mallory")
        store.put_file(source)

        def no_checker(*_: object) -> None:
            raise AssertionError("a checker ran for a model uploaded again after its refusal")

        monkeypatch.setattr(pool, "_run", no_checker)
        with pytest.raises(ResourceExhausted):
            pool.check(ModelFormat.ONNX, model, [data], ThreatModel(), tenant="mallory")
    finally:
        pool.close()


def test_a_refusal_given_the_inputs_digests_holds_for_a_fresh_copy_of_the_same_bytes(
    pool: ValidationPool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, data = slow_model(tmp_path / "costly.onnx"), tmp_path / "train.npz"
    data.write_bytes(digits_like())
    copy = tmp_path / "download-2.blob"  # as an S3 store's second download of the blob
    copy.write_bytes(first.read_bytes())
    contents = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (first, data)]
    try:
        with pytest.raises(ResourceExhausted):
            pool.check(
                ModelFormat.ONNX, first, [data], ThreatModel(), tenant="mallory", contents=contents
            )

        def no_checker(*_: object) -> None:
            raise AssertionError("a checker ran for bytes already refused")

        monkeypatch.setattr(pool, "_run", no_checker)
        with pytest.raises(ResourceExhausted):
            pool.check(
                ModelFormat.ONNX, copy, [data], ThreatModel(), tenant="mallory", contents=contents
            )
    finally:
        pool.close()


def test_an_accepted_model_is_checked_each_time(
    pool: ValidationPool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, data = tmp_path / "linear.onnx", tmp_path / "train.npz"
    model.write_bytes(linear_onnx())
    data.write_bytes(digits_like())
    runs: list[object] = []
    real_run = pool._run
    monkeypatch.setattr(pool, "_run", lambda *a: (runs.append(a), real_run(*a))[1])
    try:
        for _ in range(2):
            pool.check(ModelFormat.ONNX, model, [data], ThreatModel(eps=0.1), tenant="alice")
    finally:
        pool.close()

    assert len(runs) == 2


def test_a_remembered_refusal_keeps_nothing_of_the_call_it_refused(
    pool: ValidationPool, tmp_path: Path
) -> None:
    """A refusal is remembered for later calls, not with the frames of the first: the server
    would otherwise keep every refused call's request and gRPC state, 1,024 refusals deep."""
    model, data = tmp_path / "linear.onnx", tmp_path / "train.npz"
    model.write_bytes(linear_onnx())
    data.write_bytes(digits_like())
    x, y = np.load(data)["x"], np.load(data)["y"]
    np.savez(data, x=x, y=y + 100)  # labels the model has no output for

    class CallState:
        """Stands for what the refused call's frame holds."""

    def refused_call() -> weakref.ref[CallState]:
        state = CallState()
        with pytest.raises(InvalidData):
            pool.check(ModelFormat.ONNX, model, [data], ThreatModel(eps=0.1), tenant="alice")
        return weakref.ref(state)

    try:
        state = refused_call()
        gc.collect()
        with pytest.raises(InvalidData):  # remembered: refused again without a checker
            pool.check(ModelFormat.ONNX, model, [data], ThreatModel(eps=0.1), tenant="alice")
    finally:
        pool.close()

    assert state() is None
