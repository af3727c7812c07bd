"""How many threads torch computes with, chosen from how busy the other processes keep the CPUs.

OpenMP threads that finish a parallel region spin while they wait for the next one. Alone on
the machine that is the fastest policy; beside another busy process the spinning threads take
the cores from threads with work to do, and a PGD step got 3 to 15 times slower on our 2-core
machines. Sleeping instead (``OMP_WAIT_POLICY=PASSIVE``) is safe but cost 1.3 to 1.7 times on a
quiet machine for the small operators of a model read from ONNX. One thread neither spins nor
waits.

So the engine keeps OpenMP's default spin and governs the thread count while it works: a
sampler thread reads, every couple of seconds, how much CPU time the machine spent outside this
process (``/proc/stat`` less ``os.times``), and recommends the CPUs the others leave free. The
compute thread applies the recommendation before each module's forward pass (``torch``'s thread
count belongs to the thread that sets it, so the sampler cannot set it). docs/performance.md has
the figures.

:func:`wait_policy` is read by ``workers/__init__.py`` before torch loads: it keeps the spin
only where the governor can see the machine; elsewhere idle threads sleep.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PROC_STAT = Path("/proc/stat")
OPERATOR_SETTINGS = ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "GOMP_SPINCOUNT")
"""Environment variables that mean an operator chose the threading: the governor stays off."""

SAMPLE_SECONDS = 2.0
SHRINK_AT = 0.5
"""Fraction of a core the other processes use (beyond whole cores) that takes a thread away."""
GROW_AT = 0.3
"""Below this fraction a thread is given back; between the two nothing changes."""


@dataclass(frozen=True)
class CpuSample:
    """Cumulative CPU seconds: the whole machine busy, and this process (all its threads)."""

    wall: float
    machine_busy: float
    own: float


def read_sample() -> CpuSample:
    """One reading of ``/proc/stat`` (busy = everything but idle and iowait) and ``os.times``."""
    fields = PROC_STAT.read_text().split("\n", 1)[0].split()[1:]
    jiffies = [int(f) for f in fields]
    idle = jiffies[3] + (jiffies[4] if len(jiffies) > 4 else 0)
    # guest time is already counted in user and nice
    busy = sum(jiffies[:8]) - idle
    times = os.times()
    return CpuSample(
        wall=time.monotonic(),
        machine_busy=busy / os.sysconf("SC_CLK_TCK"),
        own=times.user + times.system,
    )


def machine_cpus() -> int:
    """CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def can_govern(environ: dict[str, str] | None = None) -> bool:
    """True where ``/proc/stat`` describes exactly the CPUs this process may use (not a
    container with a CPU quota or a pinned subset of a larger host) and no operator setting
    fixes the threading."""
    env = os.environ if environ is None else environ
    if any(name in env for name in OPERATOR_SETTINGS):
        return False
    try:
        lines = PROC_STAT.read_text().splitlines()
    except OSError:
        return False
    listed = sum(1 for line in lines if line.startswith("cpu") and line[3:4].isdigit())
    return listed == machine_cpus() and not _cpu_quota()


def _cpu_quota() -> bool:
    try:
        quota = Path("/sys/fs/cgroup/cpu.max").read_text().split()[0]
    except (OSError, IndexError):
        return False
    return quota != "max"


def wait_policy(environ: dict[str, str] | None = None) -> str | None:
    """The ``OMP_WAIT_POLICY`` to set before torch loads, or None to keep OpenMP's spin."""
    return None if can_govern(environ) else "PASSIVE"


def recommend(current: int, cpus: int, others_busy: float) -> int:
    """Threads to use next, given the cores' worth of CPU the other processes used meanwhile.

    A thread is taken away once others use ``SHRINK_AT`` of a core beyond whole cores, and given
    back only when they use less than ``GROW_AT``: between the two the count stays put.
    """
    keep_free = int(others_busy + 1 - SHRINK_AT)
    if cpus - keep_free < current:
        return max(1, cpus - keep_free)
    give_back_to = cpus - int(others_busy + 1 - GROW_AT)
    return max(current, min(cpus, give_back_to), 1)


class ThreadGovernor:
    """Samples the machine in a daemon thread; :meth:`apply` sets the count on the caller's
    thread when the recommendation changed."""

    def __init__(
        self,
        cpus: int | None = None,
        *,
        interval: float = SAMPLE_SECONDS,
        sample: Callable[[], CpuSample] = read_sample,
        set_threads: Callable[[int], None] | None = None,
    ) -> None:
        self.cpus = cpus or machine_cpus()
        self.interval = interval
        self._sample = sample
        self._set_threads = set_threads or _torch_set_threads
        self._recommended = self.cpus
        self._applied: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def recommended(self) -> int:
        return self._recommended

    def observe(self, before: CpuSample, after: CpuSample) -> int:
        """Update the recommendation from two samples; returns it."""
        wall = after.wall - before.wall
        if wall <= 0:
            return self._recommended
        others = (after.machine_busy - before.machine_busy) - (after.own - before.own)
        self._recommended = recommend(self._recommended, self.cpus, max(0.0, others / wall))
        return self._recommended

    def apply(self) -> None:
        wanted = self._recommended
        if wanted != self._applied:
            self._set_threads(wanted)
            self._applied = wanted

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="thread-governor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        before = self._sample()
        while not self._stop.wait(self.interval):
            after = self._sample()
            self.observe(before, after)
            before = after


def _torch_set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


@contextmanager
def governed_threads() -> Iterator[ThreadGovernor | None]:
    """While the block runs, torch's thread count follows the governor (where it can run);
    afterwards the count the block started with is restored."""
    if not can_govern():
        yield None
        return
    import torch

    start = torch.get_num_threads()
    governor = ThreadGovernor(min(start, machine_cpus()))
    hook = torch.nn.modules.module.register_module_forward_pre_hook(
        lambda _module, _args: governor.apply()
    )
    governor.start()
    try:
        yield governor
    finally:
        governor.stop()
        hook.remove()
        torch.set_num_threads(start)
