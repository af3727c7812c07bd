"""A job's memory: capped per process, and running out of it said as a failure a user can act on.

A model can make its memory grow with the batch (``Shape -> N^6 -> ConstantOfShape``): one
sample passes the submit-time check and the training batch then asks for hundreds of GiB. Without
a cap, a request that large fails at once, but a smaller blow-up is granted by the kernel's
overcommit and ends in the host's OOM killer, which takes the worker and every job on the host
with it. With the cap, the allocation itself fails in this process, and :func:`phase` turns that
failure into :class:`OutOfMemory`, naming the limit, the phase and the batch.

The cap is ``RLIMIT_DATA``, not ``RLIMIT_AS``: since Linux 4.7 it counts private writable
mappings, which is what tensors are, and not address space that is only reserved (thread stacks'
guard pages, allocator arenas, a GPU driver's unified address space). Under ``RLIMIT_AS`` a CUDA
worker cannot even start.
"""

from __future__ import annotations

import contextlib
import os
import resource
from collections.abc import Iterator
from pathlib import Path

from workers.engine.errors import TemperingError

_ALLOCATION_FAILURES = (
    "can't allocate memory",
    "Cannot allocate memory",
    "Failed to allocate memory",
    "out of memory",
)
"""What torch's CPU allocator, onnxruntime and CUDA put in the message of a failed allocation."""


_CGROUP_LIMIT_FILES = (
    Path("/sys/fs/cgroup/memory.max"),
    Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
)
"""cgroup v2, then v1."""


class OutOfMemory(TemperingError):
    """The job needed more memory than its process may use; the same job would fail again."""


def limit_memory(limit_bytes: int) -> None:
    """Cap this process's data (heap and private mappings) at ``limit_bytes``, for good: the hard
    limit is lowered too, so a job cannot raise it again."""
    resource.setrlimit(resource.RLIMIT_DATA, (limit_bytes, limit_bytes))


def memory_limit() -> int | None:
    """This process's cap in bytes, or None when it has none."""
    soft, _ = resource.getrlimit(resource.RLIMIT_DATA)
    return None if soft == resource.RLIM_INFINITY else soft


def default_memory_limit(share: float = 0.75) -> int:
    """``share`` of the memory this process can have: the machine's, or its cgroup's when that is
    lower (a container with a memory limit)."""
    available = _physical_memory()
    cgroup = _cgroup_memory_limit()
    if cgroup is not None:
        available = min(available, cgroup)
    return int(available * share)


def is_allocation_failure(exc: BaseException) -> bool:
    """True when ``exc``, or an exception it was raised from, is a failed allocation."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, MemoryError) or type(current).__name__ == "OutOfMemoryError":
            return True
        if any(text in str(current) for text in _ALLOCATION_FAILURES):
            return True
        current = current.__cause__ or current.__context__
    return False


@contextlib.contextmanager
def phase(doing: str, batch_size: int) -> Iterator[None]:
    """Within the block, a failed allocation becomes :class:`OutOfMemory` saying what the job was
    ``doing`` ("training", "scoring the hardened model") and at which batch size."""
    try:
        yield
    except TemperingError:
        raise
    except Exception as exc:
        if not is_allocation_failure(exc):
            raise
        raise OutOfMemory(_explain(doing, batch_size)) from exc


def _explain(doing: str, batch_size: int) -> str:
    limit = memory_limit()
    allowance = (
        f"the {_gib(limit)} this worker allows a job" if limit else "what the worker's machine has"
    )
    return (
        f"the model needed more memory than {allowance} while {doing} at batch size"
        f" {batch_size}; a model whose memory grows with the batch fails the same way on every"
        " attempt: try a smaller batch size, or a model whose intermediate tensors do not grow"
        " faster than the batch"
    )


def _gib(size: int) -> str:
    return f"{size / 2**30:.3g} GiB"


def _physical_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _cgroup_memory_limit() -> int | None:
    for path in (
        Path("/sys/fs/cgroup/memory.max"),
        Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
    ):
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:
            return int(text)
    return None
