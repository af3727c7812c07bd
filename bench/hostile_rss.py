"""The server's memory under the hostile corpus: start real servers (``python -m service``, as an
operator does, with the settings of ``tests/hostile``: one with trusted formats off, one with
them on, two tenants each), walk the whole corpus through them ``--passes`` times with every
check of ``tests/hostile/runner.py``, and sample the resident memory (RSS) of each server
process and of its submit-time checker processes throughout. Prints, per server, the RSS at
the start and the peak, alone and with its checkers, the bounds, and the cases run and failed;
exits 1 when a case failed or a bound was broken.

    nice -n 19 env OMP_NUM_THREADS=1 python bench/hostile_rss.py --passes 3

The bounds: the server process alone stays under 256 MiB (it never parses an upload: models,
data, tokenizers and schemas are read in the checkers), and with its checkers under 768 MiB
(at most two checkers, each Python, numpy, onnx and onnxruntime at about 210 MiB before it
reads anything; a checker's own address space is capped at TEMPERING_VALIDATION_MEMORY_LIMIT).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.hostile import test_costly_check as costly  # noqa: E402
from tests.hostile.corpus import CASES, Case, text_line_case  # noqa: E402
from tests.hostile.runner import (  # noqa: E402
    HostileServer,
    assert_actionable,
    assert_still_serving,
    check_case,
    connect,
    prepare_root,
    run_submit,
)
from tests.hostile.servers import hostile_settings, write_key_file  # noqa: E402

MiB = 1024 * 1024
SERVER_BOUND_MIB = 256
TOTAL_BOUND_MIB = 768
START_SECONDS = 120.0


def memory(pid: int) -> tuple[int, int]:
    """Resident memory of ``pid`` now and at its highest so far (the kernel's VmRSS and VmHWM),
    in bytes; (0, 0) once it is gone."""
    found = {"VmRSS:": 0, "VmHWM:": 0}
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                key = line[:6]
                if key in found:
                    found[key] = int(line.split()[1]) * 1024
    except OSError:
        pass
    return found["VmRSS:"], found["VmHWM:"]


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (the server's checker processes)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        kids = [child for child, ppid in parents.items() if ppid == parent]
        found += kids
        frontier += kids
    return found


RESCAN_EVERY = 5
"""Samples between two scans of /proc for the server's checkers (a scan costs more than a
sample; a checker started in between is seen at most this many samples late, and its high-water
mark still counts)."""


@dataclass
class Watch:
    """RSS of one server process, and of it with its checkers, sampled on a thread; the
    kernel's high-water marks catch what falls between two samples."""

    pid: int
    interval: float
    start_server: int = 0
    start_total: int = 0
    peak_server: int = 0
    peak_total: int = 0
    peak_checkers: int = 0
    samples: int = 0
    checker_hwm: dict[int, int] = field(default_factory=dict)
    _children: list[int] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> tuple[int, int]:
        if self.samples % RESCAN_EVERY == 0:
            self._children = descendants(self.pid)
        server, server_hwm = memory(self.pid)
        total = server
        live = 0
        for child in self._children:
            rss, hwm = memory(child)
            if rss:
                live += 1
                total += rss
                self.checker_hwm[child] = max(self.checker_hwm.get(child, 0), hwm)
        self.peak_server = max(self.peak_server, server, server_hwm)
        self.peak_total = max(self.peak_total, total)
        self.peak_checkers = max(self.peak_checkers, live)
        self.samples += 1
        return server, total

    @property
    def largest_checker(self) -> int:
        return max(self.checker_hwm.values(), default=0)

    @property
    def total_at_most(self) -> int:
        """A bound nothing between two samples can pass: the server's high-water mark plus the
        most checkers seen at once, each at the largest checker's high-water mark."""
        return self.peak_server + self.peak_checkers * self.largest_checker

    def begin(self) -> None:
        self.start_server, self.start_total = self.sample()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def end(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()


@dataclass
class Served:
    name: str
    process: subprocess.Popen[bytes]
    server: HostileServer
    watch: Watch
    log: Path


def start_server(
    folder: Path, trusted: bool, interval: float, *, name: str, upload_limit: int | None = None
) -> Served:
    """``python -m service`` on the corpus's settings, without a worker, connected as both
    tenants (the other tenant's baseline job submitted). The server's folder is
    ``folder/root``; its port file and log lie beside it, since a case checks that nothing
    under the root changes outside the stores."""
    root = folder / "root"
    root.mkdir(parents=True)
    context = prepare_root(root)
    write_key_file(root)
    # The corpus goes over one connection, which reaches one server process: run one, the one
    # watched.
    settings = dataclasses.replace(hostile_settings(root, trusted=trusted), server_processes=1)
    if upload_limit is not None:
        settings = dataclasses.replace(settings, max_upload_bytes=upload_limit)
    port_file, log = folder / "port", folder / "server.log"
    command = [sys.executable, "-m", "service", "--no-worker", "--port-file", str(port_file)]
    process = subprocess.Popen(
        [*command, "--parent-pid", str(os.getpid())],
        cwd=ROOT,
        env={**os.environ, **settings.to_env(), "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )
    deadline = time.monotonic() + START_SECONDS
    while not port_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise SystemExit(f"the server did not start; its log:\n{log.read_text()}")
        time.sleep(0.1)
    server = connect(int(port_file.read_text()), root, settings, context, running=None)
    return Served(name, process, server, Watch(process.pid, interval), log)


def corpus_check(case: Case) -> Callable[[HostileServer], None]:
    return lambda server: check_case(server, case)


def costly_check(case: costly.CostlyCase) -> Callable[[HostileServer], None]:
    def run(server: HostileServer) -> None:
        code, details, _ = run_submit(server, costly.Submit(model=case.model()))
        assert code is case.code, f"{case.name}: got {code.name}: {details}"
        assert_actionable(details, case.fragment)
        assert_still_serving(server)

    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between samples")
    parser.add_argument("--server-bound-mib", type=float, default=SERVER_BOUND_MIB)
    parser.add_argument("--total-bound-mib", type=float, default=TOTAL_BOUND_MIB)
    parser.add_argument(
        "--long-line-mib",
        type=int,
        default=100,
        help="then send one text dataset of a single line this long to a server that accepts"
        " it (0: skip)",
    )
    args = parser.parse_args()

    runs: list[tuple[str, bool, Callable[[HostileServer], None]]] = [
        (case.name, case.trusted, corpus_check(case)) for case in CASES
    ]
    runs += [(case.name, False, costly_check(case)) for case in costly.CASES]
    failures: list[str] = []
    ran = 0
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hostile-rss-") as folder:
        served = {
            trusted: start_server(Path(folder) / name, trusted, args.interval, name=label)
            for trusted, name, label in (
                (False, "untrusted", "trusted formats off"),
                (True, "trusted", "trusted formats on"),
            )
        }
        try:
            for each in served.values():
                each.watch.begin()
            for number in range(1, args.passes + 1):
                for name, trusted, run in runs:
                    ran += 1
                    failures += attempt(f"pass {number} {name}", run, served[trusted].server)
                print(
                    f"pass {number}: {ran} cases run so far, {len(failures)} failed"
                    f" ({time.monotonic() - started:.0f} s)",
                    file=sys.stderr,
                )
        finally:
            stop(served.values())
        watched = list(served.values())
        if args.long_line_mib:
            big = start_server(
                Path(folder) / "large",
                False,
                args.interval,
                name=f"{args.long_line_mib} MiB text line",
                upload_limit=(args.long_line_mib + 1) * MiB,
            )
            try:
                big.watch.begin()
                ran += 1
                case = long_line_case(args.long_line_mib)
                failures += attempt(case.name, lambda s: check_case(s, case), big.server)
            finally:
                stop([big])
            watched.append(big)
    return report(watched, args, ran, failures, time.monotonic() - started)


def long_line_case(mib: int) -> Case:
    """One JSON Lines text of ``mib`` MiB on a single line: refused by the reader's line limit
    after it read 2 MiB of it, naming the line."""
    line = b'{"text": "' + b"cat " * (mib * MiB // 4 - 10) + b'", "label": 0}'
    return text_line_case(
        f"text-single-line-of-{mib}-mib", line, "line 3 is longer than 2,097,152 bytes"
    )


def attempt(name: str, run: Callable[[HostileServer], None], server: HostileServer) -> list[str]:
    """Run one case; a failed check or a dead server is a failure, with its traceback."""
    try:
        run(server)
    except Exception as error:
        traceback.print_exc(file=sys.stderr)
        return [f"{name}: {type(error).__name__}: {error}"]
    return []


def stop(served: Iterable[Served]) -> None:
    for each in served:
        each.watch.end()
        each.server.close()
        each.process.terminate()
        each.process.wait(timeout=30)


def report(
    served: list[Served], args: argparse.Namespace, ran: int, failures: list[str], seconds: float
) -> int:
    broken = []
    print(
        f"hostile corpus: {len(CASES)} cases + {len(costly.CASES)} costly models, {args.passes}"
        f" passes; RSS in MiB, sampled every {args.interval * 1000:.0f} ms (peaks include the"
        " kernel's high-water marks)"
    )
    print(
        f"{'server':<21}{'start':>7}{'peak':>7}{'bound':>7}  |  with checkers:{'start':>7}"
        f"{'peak':>7}{'at most':>9}{'bound':>7}{'checkers':>10}{'largest':>9}"
    )
    for each in served:
        w = each.watch
        print(
            f"{each.name:<21}{w.start_server / MiB:>7.0f}{w.peak_server / MiB:>7.0f}"
            f"{args.server_bound_mib:>7.0f}  |  {'':<14}{w.start_total / MiB:>7.0f}"
            f"{w.peak_total / MiB:>7.0f}{w.total_at_most / MiB:>9.0f}"
            f"{args.total_bound_mib:>7.0f}{w.peak_checkers:>10}{w.largest_checker / MiB:>9.0f}"
        )
        if w.peak_server > args.server_bound_mib * MiB:
            broken.append(f"{each.name}: server RSS {w.peak_server / MiB:.0f} MiB")
        if w.total_at_most > args.total_bound_mib * MiB:
            broken.append(f"{each.name}: with checkers at most {w.total_at_most / MiB:.0f} MiB")
    print(
        "('at most': the server's peak plus the most checkers seen at once, each at the largest"
        " checker's peak; the bound is checked against it)"
    )
    print(f"cases run {ran}, failed {len(failures)}, in {seconds:.0f} s")
    for failure in failures[:20]:
        print(f"FAILED {failure[:300]}")
    for bound in broken:
        print(f"BOUND BROKEN {bound}")
    return 1 if failures or broken else 0


if __name__ == "__main__":
    raise SystemExit(main())
