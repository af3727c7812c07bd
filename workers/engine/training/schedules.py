"""Learning-rate and epsilon schedules, as functions of fractional epochs ``t`` in [0, epochs]."""

from __future__ import annotations

from collections.abc import Callable

Schedule = Callable[[float], float]

WARMUP_FRACTION = 0.4
"""Share of the epochs over which the one-cycle rate climbs to its peak."""


def one_cycle(peak: float, epochs: float, warmup_fraction: float = WARMUP_FRACTION) -> Schedule:
    """Linear ramp from 0 to ``peak`` over the first ``warmup_fraction`` of training, then
    linear decay to 0: the cyclic rate of Wong et al. 2020 (and Smith's one-cycle policy)."""
    top = max(epochs * warmup_fraction, 1e-12)

    def rate(t: float) -> float:
        if t <= top:
            return peak * t / top
        return peak * max(0.0, (epochs - t) / max(epochs - top, 1e-12))

    return rate


def eps_warmup(eps: float, warmup_epochs: float) -> Schedule:
    """Epsilon ramps linearly from 0 to its full value over ``warmup_epochs``."""

    def radius(t: float) -> float:
        if warmup_epochs <= 0:
            return eps
        return eps * min(1.0, t / warmup_epochs)

    return radius
