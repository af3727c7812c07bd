"""Running out of memory inside a job is a failure a user can act on (workers/engine/memory.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from workers.engine.errors import InvalidData
from workers.engine.memory import OutOfMemory, default_memory_limit, is_allocation_failure, phase

TORCH_FAILURE = (
    "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory:"
    " you tried to allocate 8589934592 bytes. Error code 12 (Cannot allocate memory)"
)


def test_a_failed_allocation_inside_a_phase_becomes_out_of_memory_naming_phase_and_batch() -> None:
    expected = "while training at batch size 128"
    with pytest.raises(OutOfMemory, match=expected), phase("training", 128):
        raise RuntimeError(TORCH_FAILURE)


def test_a_failed_allocation_wrapped_by_the_onnx_reader_is_still_recognised() -> None:
    inner = MemoryError()
    outer = RuntimeError("ConstantOfShape node 'blowup': failed")
    outer.__cause__ = inner

    assert is_allocation_failure(outer)
    assert not is_allocation_failure(RuntimeError("ConstantOfShape node 'blowup': bad shape"))


def test_other_failures_pass_through_a_phase_unchanged() -> None:
    with pytest.raises(ValueError, match="shapes do not match"), phase("training", 64):
        raise ValueError("shapes do not match")
    with pytest.raises(InvalidData), phase("training", 64):
        raise InvalidData("labels out of range")


def test_the_default_limit_is_a_share_of_the_memory_this_process_can_have() -> None:
    limit = default_memory_limit()
    assert 0 < limit < default_memory_limit(share=1.0)


@pytest.mark.slow
def test_under_a_limit_a_tensor_larger_than_it_fails_as_out_of_memory_and_the_process_goes_on() -> (
    None
):
    script = textwrap.dedent(
        """
        import torch
        from workers.engine.memory import OutOfMemory, limit_memory, phase
        limit_memory(1 << 30)
        try:
            with phase("scoring the hardened model", 500):
                torch.zeros(1 << 29)
        except OutOfMemory as exc:
            print(exc)
        print(float(torch.ones(1000).sum()))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    lines = done.stdout.splitlines()
    assert "the 1 GiB this worker allows a job while scoring the hardened model" in lines[0]
    assert lines[1] == "1000.0"
