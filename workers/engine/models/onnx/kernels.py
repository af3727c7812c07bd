"""Torch implementations of the ONNX operators, one function per operator (or family)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from onnx import TensorProto
from torch import Tensor

from workers.engine.models.onnx.protos import _TORCH_DTYPES
from workers.engine.models.onnx.runtime import (
    _arg,
    _axis,
    _ints,
    _Node,
    _OpFn,
    _req,
    _Run,
    _Unsupported,
)


def _unary(fn: Callable[[Tensor], Tensor]) -> _OpFn:
    return lambda run, node, x: fn(_req(x, 0))


def _binary(fn: Callable[[Tensor, Tensor], Tensor]) -> _OpFn:
    return lambda run, node, x: fn(_req(x, 0), _req(x, 1))


def _variadic(fn: Callable[[Tensor, Tensor], Tensor]) -> _OpFn:
    return lambda run, node, x: functools.reduce(fn, [v for v in x if v is not None])


def _div(a: Tensor, b: Tensor) -> Tensor:
    if a.is_floating_point() or b.is_floating_point():
        return a / b
    return torch.div(a, b, rounding_mode="trunc")


def _pow(a: Tensor, b: Tensor) -> Tensor:
    return torch.pow(a, b).to(a.dtype)


def _mean(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    values = [v for v in x if v is not None]
    return functools.reduce(torch.add, values) / len(values)


def _mod(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    a, b = _req(x, 0), _req(x, 1)
    return torch.fmod(a, b) if node.attrs.get("fmod", 0) else torch.remainder(a, b)


# -- convolution and pooling -------------------------------------------------------------------


def _spatial_pads(
    node: _Node,
    sizes: Sequence[int],
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
) -> list[tuple[int, int]]:
    auto_pad = node.attrs.get("auto_pad", "NOTSET")
    nd = len(kernel)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pairs = []
        for size, k, s, d in zip(sizes, kernel, strides, dilations, strict=True):
            out = -(-size // s)
            total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
            pairs.append(_split_total(total, upper=auto_pad == "SAME_UPPER"))
        return pairs
    if auto_pad == "VALID":
        return [(0, 0)] * nd
    pads = node.attrs.get("pads") or [0] * (2 * nd)
    return [(pads[i], pads[i + nd]) for i in range(nd)]


def _split_total(total: int, *, upper: bool) -> tuple[int, int]:
    """Split padding between begin and end; SAME_UPPER puts the odd element at the end."""
    small = total // 2
    return (small, total - small) if upper else (total - small, small)


def _torch_pad(pairs: Sequence[tuple[int, int]]) -> list[int]:
    """ONNX (begin, end) pairs in dimension order -> F.pad's last-dimension-first list."""
    return [p for pair in reversed(pairs) for p in pair]


def _window(
    node: _Node, data: Tensor, kernel: Sequence[int] | None = None
) -> tuple[list[int], list[int], list[int], list[tuple[int, int]]]:
    kernel = list(node.attrs.get("kernel_shape") or kernel or [])
    nd = len(kernel)
    strides = list(node.attrs.get("strides") or [1] * nd)
    dilations = list(node.attrs.get("dilations") or [1] * nd)
    pairs = _spatial_pads(node, data.shape[2:], kernel, strides, dilations)
    return kernel, strides, dilations, pairs


_CONVS = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_TRANSPOSES = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
_MAX_POOLS = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AVG_POOLS = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


def _conv(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    data, weight, bias = _req(x, 0), _req(x, 1), _arg(x, 2)
    kernel, strides, dilations, pairs = _window(node, data, list(weight.shape[2:]))
    padding: list[int] = [b for b, _ in pairs]
    if any(b != e for b, e in pairs):
        data, padding = F.pad(data, _torch_pad(pairs)), [0] * len(pairs)
    conv = _CONVS[len(kernel)]
    return conv(data, weight, bias, strides, padding, dilations, node.attrs.get("group", 1))


def _conv_transpose(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    data, weight, bias = _req(x, 0), _req(x, 1), _arg(x, 2)
    kernel = list(node.attrs.get("kernel_shape") or weight.shape[2:])
    nd = len(kernel)
    strides = list(node.attrs.get("strides") or [1] * nd)
    dilations = list(node.attrs.get("dilations") or [1] * nd)
    out_pad = list(node.attrs.get("output_padding") or [0] * nd)
    auto_pad = node.attrs.get("auto_pad", "NOTSET")
    sizes = data.shape[2:]
    full = [
        s * (n - 1) + o + (k - 1) * d + 1
        for s, n, o, k, d in zip(strides, sizes, out_pad, kernel, dilations, strict=True)
    ]
    wanted = node.attrs.get("output_shape")
    if wanted is None and auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        wanted = [n * s for n, s in zip(sizes, strides, strict=True)]
    if wanted is not None:
        wanted = list(wanted)[-nd:]
        pairs = []
        for total in (f - w for f, w in zip(full, wanted, strict=True)):
            pairs.append(_split_total(total, upper=auto_pad == "SAME_UPPER"))
    elif auto_pad == "VALID":
        pairs = [(0, 0)] * nd
    else:
        pads = node.attrs.get("pads") or [0] * (2 * nd)
        pairs = [(pads[i], pads[i + nd]) for i in range(nd)]
    group = node.attrs.get("group", 1)
    y = _CONV_TRANSPOSES[nd](data, weight, bias, strides, 0, out_pad, group, dilations)
    if any(b or e for b, e in pairs):
        y = F.pad(y, [-p for p in _torch_pad(pairs)])
    return y


def _max_pool(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    if len(node.outputs) > 1 and node.outputs[1]:
        raise _Unsupported("the Indices output of MaxPool is not supported")
    data = _req(x, 0)
    kernel, strides, dilations, pairs = _window(node, data)
    ceil_mode = bool(node.attrs.get("ceil_mode", 0))
    fits = all(
        b == e and b <= ((k - 1) * d + 1) // 2
        for (b, e), k, d in zip(pairs, kernel, dilations, strict=True)
    )
    pool = _MAX_POOLS[len(kernel)]
    if fits:
        padding = [b for b, _ in pairs]
        return pool(data, kernel, strides, padding, dilations, ceil_mode=ceil_mode)
    padded = F.pad(data, _torch_pad(pairs), value=-math.inf)
    y = pool(padded, kernel, strides, 0, dilations, ceil_mode=ceil_mode)
    return _drop_padding_windows(y, data, kernel, strides, dilations, pairs, ceil_mode)


def _average_pool(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    data = _req(x, 0)
    kernel, strides, dilations, pairs = _window(node, data)
    if any(d != 1 for d in dilations):
        raise _Unsupported("AveragePool with dilations is not supported")
    ceil_mode = bool(node.attrs.get("ceil_mode", 0))
    include_pad = bool(node.attrs.get("count_include_pad", 0))
    pool = _AVG_POOLS[len(kernel)]
    if all(b == e and b <= k // 2 for (b, e), k in zip(pairs, kernel, strict=True)):
        return pool(data, kernel, strides, [b for b, _ in pairs], ceil_mode, include_pad)
    flat = _torch_pad(pairs)
    y = pool(F.pad(data, flat), kernel, strides, 0, ceil_mode, True)
    if not include_pad:
        ones = torch.ones((1, 1, *data.shape[2:]), dtype=data.dtype, device=data.device)
        y = y / pool(F.pad(ones, flat), kernel, strides, 0, ceil_mode, True)
    return _drop_padding_windows(y, data, kernel, strides, [1] * len(kernel), pairs, ceil_mode)


def _drop_padding_windows(
    y: Tensor,
    data: Tensor,
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
    pairs: Sequence[tuple[int, int]],
    ceil_mode: bool,
) -> Tensor:
    """With ceil_mode, ONNX drops a last window that would start in the end padding; torch only
    knows that rule for its own symmetric padding, not for padding we applied beforehand."""
    if not ceil_mode:
        return y
    for i, (size, k, s, d, (begin, end)) in enumerate(
        zip(data.shape[2:], kernel, strides, dilations, pairs, strict=True)
    ):
        out = -(-(size + begin + end - (k - 1) * d - 1) // s) + 1
        if (out - 1) * s >= size + begin:
            out -= 1
        y = y.narrow(2 + i, 0, min(out, y.shape[2 + i]))
    return y


def _global_pool(reduce: Callable[..., Tensor]) -> _OpFn:
    def run_pool(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
        data = _req(x, 0)
        return reduce(data, dim=tuple(range(2, data.dim())), keepdim=True)

    return run_pool


def _lrn(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    a = node.attrs
    return F.local_response_norm(
        _req(x, 0), a["size"], a.get("alpha", 1e-4), a.get("beta", 0.75), a.get("bias", 1.0)
    )


# -- linear algebra and normalisation ----------------------------------------------------------


def _gemm(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    a, b, c = _req(x, 0), _req(x, 1), _arg(x, 2)
    if node.attrs.get("transA", 0):
        a = a.t()
    if node.attrs.get("transB", 0):
        b = b.t()
    y = a @ b
    alpha, beta = node.attrs.get("alpha", 1.0), node.attrs.get("beta", 1.0)
    if alpha != 1.0:
        y = y * alpha
    if c is not None:
        y = y + (c if beta == 1.0 else c * beta)
    return y


def _batch_norm(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    data, scale, bias, mean, var = (_req(x, i) for i in range(5))
    eps = node.attrs.get("epsilon", 1e-5)
    if run.training:
        running = node.attrs.get("_running_stats", False)
        momentum = 1.0 - node.attrs.get("momentum", 0.9)
        y = F.batch_norm(
            data,
            mean if running else None,
            var if running else None,
            scale,
            bias,
            True,
            momentum,
            eps,
        )
    else:
        y = F.batch_norm(data, mean, var, scale, bias, False, 0.0, eps)
    return y


def _instance_norm(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    eps = node.attrs.get("epsilon", 1e-5)
    return F.instance_norm(_req(x, 0), weight=_req(x, 1), bias=_req(x, 2), eps=eps)


def _layer_norm(run: _Run, node: _Node, x: list[Tensor | None]) -> Sequence[Tensor]:
    data, scale, bias = _req(x, 0), _req(x, 1), _arg(x, 2)
    axis = _axis(node.attrs.get("axis", -1), data.dim())
    eps = node.attrs.get("epsilon", 1e-5)
    shape = tuple(data.shape[axis:])
    dims = tuple(range(axis, data.dim()))
    if tuple(scale.shape) == shape and (bias is None or tuple(bias.shape) == shape):
        y = F.layer_norm(data, shape, scale, bias, eps)
    else:
        y = F.layer_norm(data, shape, None, None, eps) * scale
        y = y if bias is None else y + bias
    if len(node.outputs) == 1:
        return (y,)
    mean = data.mean(dim=dims, keepdim=True)
    inv_std = torch.rsqrt(data.var(dim=dims, keepdim=True, unbiased=False) + eps)
    return (y, mean, inv_std)


# -- activations --------------------------------------------------------------------------------


def _leaky_relu(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    return F.leaky_relu(_req(x, 0), node.attrs.get("alpha", 0.01))


def _prelu(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    data, slope = _req(x, 0), _req(x, 1)
    return torch.where(data >= 0, data, data * slope)


def _elu(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    return F.elu(_req(x, 0), node.attrs.get("alpha", 1.0))


def _selu(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    data = _req(x, 0)
    alpha = node.attrs.get("alpha", 1.67326319217681884765625)
    gamma = node.attrs.get("gamma", 1.05070102214813232421875)
    return gamma * torch.where(data > 0, data, alpha * torch.expm1(data))


def _hard_sigmoid(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    alpha, beta = node.attrs.get("alpha", 0.2), node.attrs.get("beta", 0.5)
    return torch.clamp(_req(x, 0) * alpha + beta, 0.0, 1.0)


def _gelu(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    approximate = "tanh" if node.attrs.get("approximate", "none") == "tanh" else "none"
    return F.gelu(_req(x, 0), approximate=approximate)


def _clip(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    data = _req(x, 0)
    if node.opset < 11:
        low, high = node.attrs.get("min"), node.attrs.get("max")
        return torch.clamp(data, low, high)
    return torch.clamp(data, _arg(x, 1), _arg(x, 2))


def _softmax_like(fn: Callable[..., Tensor]) -> _OpFn:
    def run_softmax(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
        data = _req(x, 0)
        if node.opset >= 13:
            return fn(data, dim=node.attrs.get("axis", -1))
        axis = _axis(node.attrs.get("axis", 1), data.dim())
        flat = data.reshape(math.prod(data.shape[:axis]), math.prod(data.shape[axis:]))
        return fn(flat, dim=1).reshape(data.shape)

    return run_softmax


def _dropout(run: _Run, node: _Node, x: list[Tensor | None]) -> Sequence[Tensor]:
    data = _req(x, 0)
    if node.opset >= 12:
        ratio_input = _arg(x, 1)
        ratio = 0.5 if ratio_input is None else float(ratio_input.item())
    else:
        ratio = node.attrs.get("ratio", 0.5)
    wants_mask = len(node.outputs) > 1 and bool(node.outputs[1])
    if not run.training or ratio == 0.0:
        return (data, torch.ones_like(data, dtype=torch.bool)) if wants_mask else (data,)
    if not wants_mask:
        return (F.dropout(data, ratio, training=True),)
    mask = torch.rand_like(data) >= ratio
    return (data * mask / (1.0 - ratio), mask)


# -- shapes and indexing ------------------------------------------------------------------------


def _reshape(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    data, target = _req(x, 0), _ints(_req(x, 1))
    if run.batch_fix is not None and run.fixed is not None and 1 in node.constant_inputs:
        exported, batch = run.batch_fix
        if target and target[0] == exported and data.dim() and data.shape[0] == batch:
            run.fixed.add(node.index)
            target[0] = batch
    allow_zero = node.attrs.get("allowzero", 0)
    shape = [data.shape[i] if v == 0 and not allow_zero else v for i, v in enumerate(target)]
    return data.reshape(shape)


def _flatten(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    data = _req(x, 0)
    axis = _axis(node.attrs.get("axis", 1), data.dim())
    return data.reshape(math.prod(data.shape[:axis]), math.prod(data.shape[axis:]))


def _transpose(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    data = _req(x, 0)
    perm = node.attrs.get("perm") or list(reversed(range(data.dim())))
    return data.permute(*perm)


def _axes(node: _Node, x: list[Tensor | None], since: int) -> list[int] | None:
    if node.opset >= since:
        value = _arg(x, 1)
        return None if value is None else _ints(value)
    axes = node.attrs.get("axes")
    return None if axes is None else list(axes)


def _squeeze(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    data = _req(x, 0)
    axes = _axes(node, x, 13)
    if not axes:
        return data.squeeze()
    return data.squeeze(tuple(_axis(a, data.dim()) for a in axes))


def _unsqueeze(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    data = _req(x, 0)
    axes = _axes(node, x, 13) or []
    rank = data.dim() + len(axes)
    for axis in sorted(_axis(a, rank) for a in axes):
        data = data.unsqueeze(axis)
    return data


def _concat(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    return torch.cat([v for v in x if v is not None], dim=node.attrs["axis"])


def _split(run: _Run, node: _Node, x: list[Tensor | None]) -> Sequence[Tensor]:
    data = _req(x, 0)
    axis = _axis(node.attrs.get("axis", 0), data.dim())
    size = data.shape[axis]
    sizes = _ints(_arg(x, 1)) if node.opset >= 13 else list(node.attrs.get("split") or [])
    if not sizes:
        parts = node.attrs.get("num_outputs", len(node.outputs))
        chunk = -(-size // parts)
        sizes = [chunk] * (parts - 1) + [size - chunk * (parts - 1)]
    return torch.split(data, sizes, dim=axis)


def _slice(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    data = _req(x, 0)
    if node.opset < 10:
        starts, ends = list(node.attrs["starts"]), list(node.attrs["ends"])
        axes, steps = list(node.attrs.get("axes") or []), []
    else:
        starts, ends = _ints(_req(x, 1)), _ints(_req(x, 2))
        axes, steps = _ints(_arg(x, 3)), _ints(_arg(x, 4))
    axes = axes or list(range(len(starts)))
    steps = steps or [1] * len(starts)
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        data = _slice_axis(data, _axis(axis, data.dim()), start, end, step)
    return data


def _slice_axis(data: Tensor, axis: int, start: int, end: int, step: int) -> Tensor:
    size = data.shape[axis]
    start = start + size if start < 0 else start
    end = end + size if end < 0 else end
    if step > 0:
        start, end = min(max(start, 0), size), min(max(end, 0), size)
        index: list[slice] = [slice(None)] * data.dim()
        index[axis] = slice(start, end, step)
        return data[tuple(index)]
    start, end = min(max(start, 0), size - 1), min(max(end, -1), size - 1)
    count = max(0, -(-(end - start) // step))
    positions = start + step * torch.arange(count, device=data.device)
    return data.index_select(axis, positions)


def _gather(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    data, indices = _req(x, 0), _req(x, 1).long()
    axis = _axis(node.attrs.get("axis", 0), data.dim())
    indices = torch.where(indices < 0, indices + data.shape[axis], indices)
    picked = data.index_select(axis, indices.reshape(-1))
    return picked.reshape((*data.shape[:axis], *indices.shape, *data.shape[axis + 1 :]))


def _shape(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    data = _req(x, 0)
    dims = list(data.shape)[node.attrs.get("start", 0) : node.attrs.get("end", data.dim())]
    return torch.tensor(dims, dtype=torch.int64, device=data.device)


def _size(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    data = _req(x, 0)
    return torch.tensor(data.numel(), dtype=torch.int64, device=data.device)


def _constant_of_shape(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    shape = _req(x, 0)
    value = node.attrs.get("value")
    fill = torch.zeros(1, dtype=torch.float32) if value is None else value.reshape(-1)
    return torch.full(_ints(shape), fill[0].item(), dtype=fill.dtype, device=shape.device)


def _expand(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    data, shape = _req(x, 0), _ints(_req(x, 1))
    return data.expand(torch.broadcast_shapes(tuple(data.shape), tuple(shape)))


def _tile(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    return _req(x, 0).repeat(*_ints(_req(x, 1)))


def _range(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    start, limit, delta = _req(x, 0), _req(x, 1), _req(x, 2)
    return torch.arange(
        start.item(), limit.item(), delta.item(), dtype=start.dtype, device=start.device
    )


def _gather_elements(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    data, indices = _req(x, 0), _req(x, 1).long()
    axis = _axis(node.attrs.get("axis", 0), data.dim())
    indices = torch.where(indices < 0, indices + data.shape[axis], indices)
    return torch.gather(data, axis, indices)


def _gather_nd(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    """ONNX GatherND: the last axis of ``indices`` addresses the first k axes of ``data`` after
    its ``batch_dims`` leading ones; gathered by one flat index so gradients reach ``data``."""
    data, indices = _req(x, 0), _req(x, 1).long()
    batch_dims = int(node.attrs.get("batch_dims", 0))
    k = int(indices.shape[-1])
    addressed = data.shape[batch_dims : batch_dims + k]
    sizes = torch.tensor(addressed, dtype=torch.long, device=indices.device)
    indices = torch.where(indices < 0, indices + sizes, indices)
    strides = torch.ones(k, dtype=torch.long, device=indices.device)
    for axis in range(k - 2, -1, -1):
        strides[axis] = strides[axis + 1] * addressed[axis + 1]
    flat = (indices * strides).sum(dim=-1)
    batch = math.prod(data.shape[:batch_dims])
    rest = data.shape[batch_dims + k :]
    table = data.reshape(batch, math.prod(addressed), *rest)
    rows = torch.arange(batch, device=data.device).unsqueeze(1)
    picked = table[rows, flat.reshape(batch, -1)]
    return picked.reshape(*indices.shape[:-1], *rest)


def _where(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    return torch.where(_req(x, 0).bool(), _req(x, 1), _req(x, 2))


def _cast(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    dtype = _TORCH_DTYPES.get(node.attrs["to"])
    if dtype is None:
        raise _Unsupported(f"Cast to {TensorProto.DataType.Name(node.attrs['to'])}")
    return _req(x, 0).to(dtype)


def _array_feature_extractor(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    """ai.onnx.ml ArrayFeatureExtractor: the given positions along the last axis."""
    return torch.index_select(_req(x, 0), -1, _req(x, 1).reshape(-1).long())


def _cast_like(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    return _req(x, 0).to(_req(x, 1).dtype)


def _pad(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    data = _req(x, 0)
    rank = data.dim()
    mode = node.attrs.get("mode", "constant")
    if node.opset < 11:
        pads, value, axes = list(node.attrs["pads"]), float(node.attrs.get("value", 0.0)), None
    else:
        pads = _ints(_req(x, 1))
        fill = _arg(x, 2)
        value = 0.0 if fill is None or fill.numel() == 0 else fill.item()
        axes = _ints(_arg(x, 3)) or None
    if axes is not None:
        full = [0] * (2 * rank)
        for i, axis in enumerate(_axis(a, rank) for a in axes):
            full[axis], full[axis + rank] = pads[i], pads[i + len(axes)]
        pads = full
    pairs = [(pads[i], pads[i + rank]) for i in range(rank)]
    if mode == "constant":
        return F.pad(data, _torch_pad(pairs), value=value)
    torch_mode = {"reflect": "reflect", "edge": "replicate", "wrap": "circular"}.get(mode)
    first = next((i for i, p in enumerate(pairs) if p != (0, 0)), rank)
    padded_dims = max(rank - first, rank - 2, 1)
    if torch_mode is None or padded_dims > 3:
        raise _Unsupported(f"Pad mode '{mode}' over {rank - first} dimension(s) of {rank}")
    return F.pad(data, _torch_pad(pairs[rank - padded_dims :]), mode=torch_mode)


def _einsum(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    return torch.einsum(node.attrs["equation"], *[v for v in x if v is not None])


# -- reductions ---------------------------------------------------------------------------------


def _reduce(fn: Callable[[Tensor, list[int], bool], Tensor], axes_input_since: int) -> _OpFn:
    def run_reduce(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
        data = _req(x, 0)
        axes = _axes(node, x, axes_input_since)
        if not axes:
            if node.attrs.get("noop_with_empty_axes", 0):
                return data
            axes = list(range(data.dim()))
        keep = bool(node.attrs.get("keepdims", 1))
        return fn(data, [_axis(a, data.dim()) for a in axes], keep)

    return run_reduce


def _reduce_prod(data: Tensor, axes: list[int], keep: bool) -> Tensor:
    for axis in sorted(axes, reverse=True):
        data = data.prod(dim=axis, keepdim=keep)
    return data


def _sum_same_type(data: Tensor, axes: list[int], keep: bool) -> Tensor:
    return data.sum(dim=axes, keepdim=keep).to(data.dtype)


_REDUCTIONS: dict[str, Callable[[Tensor, list[int], bool], Tensor]] = {
    "ReduceMean": lambda t, a, k: t.mean(dim=a, keepdim=k),
    "ReduceMax": lambda t, a, k: torch.amax(t, dim=a, keepdim=k),
    "ReduceMin": lambda t, a, k: torch.amin(t, dim=a, keepdim=k),
    "ReduceProd": _reduce_prod,
    "ReduceL1": lambda t, a, k: t.abs().sum(dim=a, keepdim=k),
    "ReduceL2": lambda t, a, k: t.square().sum(dim=a, keepdim=k).sqrt(),
    "ReduceSumSquare": lambda t, a, k: t.square().sum(dim=a, keepdim=k),
    "ReduceLogSum": lambda t, a, k: t.sum(dim=a, keepdim=k).log(),
    "ReduceLogSumExp": lambda t, a, k: torch.logsumexp(t, dim=a, keepdim=k),
}


def _arg_reduce(fn: Callable[..., Tensor]) -> _OpFn:
    def run_arg(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
        data = _req(x, 0)
        axis = _axis(node.attrs.get("axis", 0), data.dim())
        keep = bool(node.attrs.get("keepdims", 1))
        if node.attrs.get("select_last_index", 0):
            flipped = fn(data.flip(axis), dim=axis, keepdim=keep)
            return data.shape[axis] - 1 - flipped
        return fn(data, dim=axis, keepdim=keep)

    return run_arg


def _trilu(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    data, k = _req(x, 0), _arg(x, 1)
    diagonal = 0 if k is None else int(k.item())
    return torch.triu(data, diagonal) if node.attrs.get("upper", 1) else torch.tril(data, diagonal)


def _cumsum(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    data = _req(x, 0)
    axis = _axis(int(_req(x, 1).item()), data.dim())
    reverse = bool(node.attrs.get("reverse", 0))
    values = data.flip(axis) if reverse else data
    total = torch.cumsum(values, dim=axis).to(data.dtype)
    if node.attrs.get("exclusive", 0):
        first = torch.zeros_like(values.narrow(axis, 0, 1))
        total = torch.cat([first, total.narrow(axis, 0, values.shape[axis] - 1)], dim=axis)
    return total.flip(axis) if reverse else total


def _not_executed(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    raise _Unsupported("Constant nodes are evaluated when the model is loaded")
