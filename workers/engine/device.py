"""Device choice and mixed precision.

CUDA is used whenever present. Mixed precision (bfloat16 autocast) is used for training on GPUs
that support it, since bfloat16 needs no loss scaling; evaluation always runs in float32 so
that no score depends on reduced precision.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch


@dataclass(frozen=True)
class Device:
    torch_device: torch.device
    amp_dtype: torch.dtype | None = None

    @property
    def name(self) -> str:
        if self.torch_device.type == "cuda":
            return f"cuda:{torch.cuda.get_device_name(self.torch_device)}"
        return self.torch_device.type

    def training_autocast(self) -> Callable[[], AbstractContextManager[object]]:
        if self.amp_dtype is None:
            return nullcontext
        return partial(torch.autocast, device_type=self.torch_device.type, dtype=self.amp_dtype)


def pick_device(preference: str = "auto") -> Device:
    """``auto`` takes the GPU this process was given (CUDA_VISIBLE_DEVICES) or the CPU."""
    if preference == "cpu" or (preference == "auto" and not torch.cuda.is_available()):
        return Device(torch.device("cpu"))
    device = torch.device("cuda" if preference == "auto" else preference)
    amp = torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return Device(device, amp)


def seed_everything(seed: int) -> torch.Generator:
    """Seed every RNG the engine touches and return a CPU generator for explicit draws.

    On the CPU the same seed gives the same run; on CUDA cuDNN is asked for deterministic
    kernels, which costs some speed.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return torch.Generator().manual_seed(seed)
