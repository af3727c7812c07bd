"""Built-in architectures, for uploads that are safetensors weights plus an architecture name.

Each builder takes the per-sample input shape and the number of classes and returns an
``nn.Module`` mapping a batch to logits.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from workers.engine.errors import InvalidModel

Builder = Callable[[tuple[int, ...], int], nn.Module]


def small_cnn(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The small MNIST CNN of Wong, Rice and Kolter 2020: two strided convolutions with 16 and
    32 channels, a 100-unit layer."""
    channels, height, width = _image_shape(input_shape)
    return nn.Sequential(
        nn.Conv2d(channels, 16, 4, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 4, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * (height // 4) * (width // 4), 100),
        nn.ReLU(),
        nn.Linear(100, num_classes),
    )


def large_cnn(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The larger MNIST CNN of Wong et al. 2018/2020 (32-32-64-64 convolutions, two 512 layers)."""
    channels, height, width = _image_shape(input_shape)
    return nn.Sequential(
        nn.Conv2d(channels, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 32, 4, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(64, 64, 4, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(64 * (height // 4) * (width // 4), 512),
        nn.ReLU(),
        nn.Linear(512, 512),
        nn.ReLU(),
        nn.Linear(512, num_classes),
    )


def mlp(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """A two-hidden-layer MLP for tabular data (or flattened small images)."""
    features = 1
    for dim in input_shape:
        features *= dim
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(features, 256),
        nn.ReLU(),
        nn.Linear(256, 256),
        nn.ReLU(),
        nn.Linear(256, num_classes),
    )


class _BasicBlock(nn.Module):
    def __init__(self, inputs: int, outputs: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, outputs, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(outputs)
        self.conv2 = nn.Conv2d(outputs, outputs, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(outputs)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or inputs != outputs:
            self.shortcut = nn.Sequential(
                nn.Conv2d(inputs, outputs, 1, stride=stride, bias=False), nn.BatchNorm2d(outputs)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


def resnet18(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """ResNet-18 for 32x32 inputs (CIFAR layout: 3x3 stem, no max-pool)."""
    channels, _, _ = _image_shape(input_shape)
    layers: list[nn.Module] = [
        nn.Conv2d(channels, 64, 3, padding=1, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(),
    ]
    inputs = 64
    for outputs, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [_BasicBlock(inputs, outputs, stride), _BasicBlock(outputs, outputs, 1)]
        inputs = outputs
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes)]
    return nn.Sequential(*layers)


ARCHITECTURES: dict[str, Builder] = {
    "small_cnn": small_cnn,
    "large_cnn": large_cnn,
    "mlp": mlp,
    "resnet18": resnet18,
}


def build(name: str, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    try:
        builder = ARCHITECTURES[name]
    except KeyError:
        raise InvalidModel(
            f"unknown architecture {name!r}; built-in ones are {sorted(ARCHITECTURES)}"
        ) from None
    return builder(input_shape, num_classes)


def _image_shape(input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise InvalidModel(f"this architecture takes images shaped (C, H, W), got {input_shape}")
    channels, height, width = input_shape
    return channels, height, width
