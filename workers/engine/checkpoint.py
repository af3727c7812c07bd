"""Training checkpoints: what a run saves at each epoch boundary so that another process can go
on from there after the first one died.

The engine only sees the :class:`Checkpointer` protocol (``load() -> state | None`` and
``save(state)``); :func:`workers.engine.training.methods.train` builds the state and decides
when to save it. A state is plain data only (tensors, dicts, lists, strings, numbers, None), so
:class:`FileCheckpointer` reads it back with ``torch.load(..., weights_only=True)``, which
refuses anything else: a checkpoint, even one we wrote ourselves, is never unpickled.

Random number generators are part of the state (the explicit generator that shuffles batches
and draws attack starts, torch's global generator that dropout uses, numpy's and Python's), so
a resumed run continues with the very draws the uninterrupted run would have made.
"""

from __future__ import annotations

import io
import logging
import os
import random
import tempfile
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from workers.engine.files import fsync_directory

log = logging.getLogger(__name__)

State = dict[str, Any]
FORMAT_VERSION = 1


class Checkpointer(Protocol):
    def load(self) -> State | None:
        """The last saved state, or None when there is none (or it cannot be read)."""
        ...

    def save(self, state: State) -> None:
        """Replace the saved state, completely or not at all."""
        ...


class FileCheckpointer:
    """One file, replaced atomically: written to a temporary file in the same folder, flushed
    to disk, then renamed over the old one. A reader sees the old state or the new one, never
    half of either."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> State | None:
        if not self.path.is_file():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception:
            log.warning("checkpoint %s cannot be read; starting over", self.path, exc_info=True)
            return None
        if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
            log.warning("checkpoint %s has an unknown format; starting over", self.path)
            return None
        return state

    def save(self, state: State) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.path.parent, prefix=".checkpoint-", suffix=".tmp")
        temp = Path(name)
        try:
            with os.fdopen(fd, "wb") as handle:
                torch.save({**state, "format": FORMAT_VERSION}, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, self.path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        fsync_directory(self.path.parent)

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


class MemoryCheckpointer:
    """Keeps the state in memory, round-tripped through ``torch.save``/``torch.load`` with
    ``weights_only=True`` so that it proves the state is plain data (tests, notebooks)."""

    def __init__(self) -> None:
        self._blob: bytes | None = None
        self.saves = 0

    def load(self) -> State | None:
        if self._blob is None:
            return None
        state = torch.load(io.BytesIO(self._blob), map_location="cpu", weights_only=True)
        return state if isinstance(state, dict) else None

    def save(self, state: State) -> None:
        buffer = io.BytesIO()
        torch.save({**state, "format": FORMAT_VERSION}, buffer)
        self._blob = buffer.getvalue()
        self.saves += 1


def capture_rng(generator: torch.Generator) -> State:
    """Every random state the training code draws from, as plain tensors and numbers."""
    _, keys, position, has_gauss, cached_gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: State = {
        "generator": generator.get_state(),
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gauss),
        },
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: State, generator: torch.Generator) -> None:
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["position"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    python_state = state["python"]
    random.setstate(
        (python_state["version"], tuple(python_state["internal"]), python_state["gauss_next"])
    )
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
