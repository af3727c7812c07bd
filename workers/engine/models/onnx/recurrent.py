"""The ONNX recurrent operators LSTM and GRU, as the specification defines them.

Gate order: LSTM weights stack the input, output, forget and cell gates (``iofc``), GRU weights
the update, reset and hidden gates (``zrh``); torch stacks them differently (``ifgo``, ``rzn``),
which is why these kernels compute the gates themselves instead of calling ``torch.nn.LSTM``.
Only the default activations are implemented (sigmoid, tanh, tanh), without ``clip`` or
``input_forget``, in layout 0 (time first, what exporters write; onnxruntime runs no other);
anything else is refused when the model is read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from workers.engine.models.onnx.runtime import _arg, _Node, _req, _Run, _Unsupported

_DEFAULT_ACTIVATIONS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"]}
_DIRECTIONS = {"forward": (False,), "reverse": (True,), "bidirectional": (False, True)}

# One step of a direction: (projected input at t, previous state) -> new state; state[0] is H.
_Step = Callable[[Tensor, tuple[Tensor, ...]], tuple[Tensor, ...]]


def _check_attributes(node: _Node) -> None:
    direction = node.attrs.get("direction", "forward")
    if direction not in _DIRECTIONS:
        raise _Unsupported(f"direction '{direction}'")
    activations = node.attrs.get("activations")
    if activations is not None:
        names = [a.decode() if isinstance(a, bytes) else str(a) for a in activations]
        expected = _DEFAULT_ACTIVATIONS[node.op_type] * len(_DIRECTIONS[direction])
        if [a.lower() for a in names] != [a.lower() for a in expected]:
            raise _Unsupported(f"activations {names} (only the defaults are supported)")
    if node.attrs.get("clip") is not None:
        raise _Unsupported("the clip attribute")
    if node.attrs.get("input_forget", 0):
        raise _Unsupported("input_forget")
    if node.attrs.get("layout", 0):
        raise _Unsupported("layout 1 (batch first; onnxruntime does not run it either)")


def _run_directions(
    node: _Node,
    x: Tensor,
    projected: Tensor,
    initial: Sequence[Tensor],
    step_for: Callable[[int], _Step],
    lengths: Tensor | None,
) -> Sequence[Tensor]:
    """Run every direction over time and return Y, Y_h (and Y_c for LSTM) in ONNX layout 0.

    ``projected`` is ``X·Wᵀ + Wb`` for all steps, [directions, seq, batch, gates]. With
    ``sequence_lens``, steps at or past a sample's length keep its state and output zeros, which
    for the reverse direction also makes it start at the sample's last valid step, as specified.
    """
    seq = x.shape[0]
    outputs, finals = [], []
    for d, reverse in enumerate(_DIRECTIONS[node.attrs.get("direction", "forward")]):
        state = tuple(s[d] for s in initial)
        step = step_for(d)
        ys: list[Tensor] = [x.new_zeros(0)] * seq
        for t in reversed(range(seq)) if reverse else range(seq):
            new = step(projected[d, t], state)
            if lengths is None:
                state = new
                ys[t] = new[0]
                continue
            valid = (t < lengths).unsqueeze(1)
            state = tuple(torch.where(valid, n, s) for n, s in zip(new, state, strict=True))
            ys[t] = torch.where(valid, new[0], torch.zeros_like(new[0]))
        outputs.append(torch.stack(ys))
        finals.append(state)
    y = torch.stack(outputs, dim=1)
    return (y, *(torch.stack([f[i] for f in finals]) for i in range(len(initial))))


def _lengths(x: list[Tensor | None], seq: int) -> Tensor | None:
    lengths = _arg(x, 4)
    if lengths is None or bool((lengths >= seq).all()):
        return None
    return lengths.to(torch.int64)


def _lstm(run: _Run, node: _Node, x: list[Tensor | None]) -> Sequence[Tensor]:
    _check_attributes(node)
    data, w, r = _req(x, 0), _req(x, 1), _req(x, 2)
    h0, c0 = _arg(x, 5), _arg(x, 6)
    directions, hidden = w.shape[0], r.shape[2]
    bias, peep = _arg(x, 3), _arg(x, 7)
    batch = data.shape[1]
    zeros = data.new_zeros(directions, batch, hidden)
    h0 = zeros if h0 is None else h0
    c0 = zeros if c0 is None else c0
    projected = torch.einsum("tbi,dgi->dtbg", data, w)
    if bias is not None:
        w_bias, r_bias = bias.split(4 * hidden, dim=1)
        projected = projected + (w_bias + r_bias)[:, None, None, :]

    def step_for(d: int) -> _Step:
        r_d = r[d]
        p_i, p_o, p_f = (None, None, None) if peep is None else peep[d].split(hidden)

        def step(gx: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
            h, c = state
            i, o, f, g = (gx + h @ r_d.t()).split(hidden, dim=1)
            if p_i is not None and p_f is not None:
                i, f = i + p_i * c, f + p_f * c
            c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            if p_o is not None:
                o = o + p_o * c_new
            return torch.sigmoid(o) * torch.tanh(c_new), c_new

        return step

    return _run_directions(node, data, projected, (h0, c0), step_for, _lengths(x, data.shape[0]))


def _gru(run: _Run, node: _Node, x: list[Tensor | None]) -> Sequence[Tensor]:
    _check_attributes(node)
    data, w, r = _req(x, 0), _req(x, 1), _req(x, 2)
    h0 = _arg(x, 5)
    directions, hidden = w.shape[0], r.shape[2]
    bias = _arg(x, 3)
    h0 = data.new_zeros(directions, data.shape[1], hidden) if h0 is None else h0
    projected = torch.einsum("tbi,dgi->dtbg", data, w)
    r_bias = None
    if bias is not None:
        w_bias, r_bias = bias.split(3 * hidden, dim=1)
        projected = projected + w_bias[:, None, None, :]
    before_reset = bool(node.attrs.get("linear_before_reset", 0))

    def step_for(d: int) -> _Step:
        r_z, r_r, r_h = r[d].split(hidden)
        b_z, b_r, b_h = (None, None, None) if r_bias is None else r_bias[d].split(hidden)

        def step(gx: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
            (h,) = state
            x_z, x_r, x_h = gx.split(hidden, dim=1)
            z = torch.sigmoid(_plus(x_z + h @ r_z.t(), b_z))
            reset = torch.sigmoid(_plus(x_r + h @ r_r.t(), b_r))
            if before_reset:
                candidate = torch.tanh(x_h + reset * _plus(h @ r_h.t(), b_h))
            else:
                candidate = torch.tanh(_plus(x_h + (reset * h) @ r_h.t(), b_h))
            return ((1 - z) * candidate + z * h,)

        return step

    return _run_directions(node, data, projected, (h0,), step_for, _lengths(x, data.shape[0]))


def _plus(value: Tensor, bias: Tensor | None) -> Tensor:
    return value if bias is None else value + bias
