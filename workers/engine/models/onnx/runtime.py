"""The state of one execution of the graph and the node records the kernels receive."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor


@dataclass
class _Run:
    """State of one execution of the graph."""

    training: bool
    batch: int = 0
    batch_fix: tuple[int, int] | None = None
    fixed: set[int] | None = None
    shapes: dict[str, tuple[int, ...]] | None = None


_OpFn = Callable[[_Run, "_Node", list[Tensor | None]], Tensor | Sequence[Tensor]]


@dataclass
class _Node:
    op_type: str
    name: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any]
    opset: int
    index: int
    fn: _OpFn
    drop_after: list[str] = field(default_factory=list)
    constant_inputs: frozenset[int] = frozenset()


class _NodeFailure(RuntimeError):
    def __init__(self, node: _Node, exc: BaseException) -> None:
        super().__init__(f"{node.op_type} node '{node.name}': {exc}")


class _Unsupported(Exception):
    """An operator attribute combination the interpreter does not implement."""


def _arg(x: list[Tensor | None], i: int) -> Tensor | None:
    return x[i] if i < len(x) else None


def _req(x: list[Tensor | None], i: int) -> Tensor:
    value = _arg(x, i)
    if value is None:
        raise _Unsupported(f"input {i} is required")
    return value


def _ints(value: Tensor | None) -> list[int]:
    return [] if value is None else [int(v) for v in value.reshape(-1).tolist()]


def _axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis
