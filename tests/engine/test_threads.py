"""The thread governor: torch gives up cores that other processes need, and takes them back."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch

from workers.engine import threads
from workers.engine.threads import CpuSample, ThreadGovernor, recommend


def test_a_quiet_machine_gets_every_cpu() -> None:
    assert recommend(current=2, cpus=2, others_busy=0.0) == 2


def test_half_a_core_used_by_others_takes_a_thread_away() -> None:
    assert recommend(current=2, cpus=2, others_busy=0.5) == 1


def test_less_than_half_a_core_used_by_others_keeps_the_threads() -> None:
    assert recommend(current=2, cpus=2, others_busy=0.4) == 2


def test_a_thread_comes_back_only_when_others_use_under_the_lower_threshold() -> None:
    assert recommend(current=1, cpus=2, others_busy=0.4) == 1
    assert recommend(current=1, cpus=2, others_busy=0.2) == 2


def test_a_fully_loaded_machine_still_leaves_one_thread() -> None:
    assert recommend(current=8, cpus=8, others_busy=20.0) == 1


def test_several_busy_cores_take_as_many_threads() -> None:
    assert recommend(current=8, cpus=8, others_busy=2.6) == 5


def test_others_are_the_machine_busy_time_less_this_process_time() -> None:
    governor = ThreadGovernor(cpus=2, set_threads=lambda n: None)
    before = CpuSample(wall=0.0, machine_busy=0.0, own=0.0)
    alone = CpuSample(wall=10.0, machine_busy=19.0, own=18.0)
    assert governor.observe(before, alone) == 2
    shared = CpuSample(wall=20.0, machine_busy=39.0, own=28.0)
    assert governor.observe(alone, shared) == 1


def test_apply_sets_the_count_only_when_it_changed() -> None:
    calls: list[int] = []
    governor = ThreadGovernor(cpus=2, set_threads=calls.append)
    governor.apply()
    governor.apply()
    governor.observe(CpuSample(0.0, 0.0, 0.0), CpuSample(1.0, 2.0, 1.0))
    governor.apply()
    assert calls == [2, 1]


@pytest.mark.parametrize("name", threads.OPERATOR_SETTINGS)
def test_an_operator_setting_turns_the_governor_off(name: str) -> None:
    assert not threads.can_govern({name: "1"})
    assert threads.wait_policy({name: "1"}) == "PASSIVE"


@pytest.mark.skipif(not threads.can_govern({}), reason="needs /proc/stat of this machine's CPUs")
def test_the_governor_sees_a_busy_process_beside_it() -> None:
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    governor = ThreadGovernor(cpus=2, interval=0.3, set_threads=lambda n: None)
    governor.start()
    try:
        deadline = time.monotonic() + 10
        while governor.recommended == 2 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        governor.stop()
        busy.kill()
        busy.wait()
    assert governor.recommended == 1


def test_the_thread_count_is_restored_after_the_governed_block() -> None:
    start = torch.get_num_threads()
    with threads.governed_threads():
        torch.set_num_threads(1)
    assert torch.get_num_threads() == start
