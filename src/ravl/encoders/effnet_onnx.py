"""EfficientNet-Lite0 written as an ONNX graph from the packaged weights, with ``onnx.helper``: no torch.

The same network as :mod:`.effnet` (the torch definition, kept as the reference in the dev
extras): a stride-2 stem, 16 inverted-residual blocks without squeeze-excite, a 1x1 head, ReLU6
throughout, global average pooling and the 1000-way classifier. The weights come from the legacy
``.pth`` through :mod:`.legacy_pth`. Each BatchNorm is folded into the convolution before it, in
float32 as torch's own fusion does (measured against the torch definition on real photos: logits
within 7.6e-6 where folding in float64 gave 1.03e-5). Inputs are always 224x224 (the encoder's crop), so the
TensorFlow "same" padding, asymmetric for stride 2, is computed here once per convolution; the
batch size is dynamic. Outputs: ``logits`` (n, 1000) and pooled ``features`` (n, 1280).

A new export is checked once against reference outputs shipped in ``ravl/data`` (made with the
torch definition; ``tests/test_lean_encoders.py`` keeps the two in step).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

#: (kernel, stride, expand ratio, out channels, repeats) per stage of EfficientNet-Lite0
STAGES = ((3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3),
          (5, 1, 6, 112, 3), (5, 2, 6, 192, 4), (3, 1, 6, 320, 1))
BN_EPS = 1e-3
SIZE = 224
FEATURES, CLASSES = 1280, 1000


def same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "same" padding (before, after) for one spatial axis."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def build_effnet_onnx(state: dict[str, np.ndarray]) -> bytes:
    """ONNX bytes of EfficientNet-Lite0 over ``state`` (a lukemelas-style state dict as numpy);
    input ``pixels`` float32 (batch, 3, 224, 224)."""
    from onnx import TensorProto, checker, helper, numpy_helper

    used: set[str] = set()
    inits: list = []
    nodes: list = []

    def take(name: str) -> np.ndarray:
        if name not in state:
            raise ValueError(f"the weights lack {name}: not EfficientNet-Lite0")
        used.add(name)
        return np.asarray(state[name], np.float32)

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(value, np.float32), name))
        return name

    def op(kind: str, *inputs: str, **attrs) -> str:
        out = f"{kind.lower()}_{len(nodes)}"
        nodes.append(helper.make_node(kind, list(inputs), [out], **attrs))
        return out

    def conv_bn(x: str, size: int, conv: str, bn: str, stride: int = 1, groups: int = 1, relu6: bool = True):
        """Conv (TF same padding) with the BatchNorm folded in, then ReLU6; returns (output, size)."""
        weight = take(f"{conv}.weight")
        gamma, beta = take(f"{bn}.weight"), take(f"{bn}.bias")
        mean, var = take(f"{bn}.running_mean"), take(f"{bn}.running_var")
        used.add(f"{bn}.num_batches_tracked")
        scale = gamma / np.sqrt(var + BN_EPS)
        kernel = weight.shape[-1]
        top, bottom = same_pad(size, kernel, stride)
        y = op("Conv", x, const(f"{conv}.w", weight * scale[:, None, None, None]), const(f"{conv}.b", beta - mean * scale),
               kernel_shape=[kernel, kernel], strides=[stride, stride], group=groups, pads=[top, top, bottom, bottom])
        if relu6:
            y = op("Clip", y, "zero", "six")
        return y, math.ceil(size / stride)

    inits.append(numpy_helper.from_array(np.array(0.0, np.float32), "zero"))
    inits.append(numpy_helper.from_array(np.array(6.0, np.float32), "six"))
    x, size = conv_bn("pixels", SIZE, "_conv_stem", "_bn0", stride=2)
    cin, index = 32, 0
    for _kernel, stride, expand, cout, repeats in STAGES:  # the kernel size comes with each weight
        for i in range(repeats):
            p, s = f"_blocks.{index}.", stride if i == 0 else 1
            y, mid = x, cin * expand
            if expand != 1:
                y, _ = conv_bn(y, size, p + "_expand_conv", p + "_bn0")
            y, out_size = conv_bn(y, size, p + "_depthwise_conv", p + "_bn1", stride=s, groups=mid)
            y, _ = conv_bn(y, out_size, p + "_project_conv", p + "_bn2", relu6=False)
            x = op("Add", y, x) if s == 1 and cin == cout else y
            cin, size, index = cout, out_size, index + 1
    x, _ = conv_bn(x, size, "_conv_head", "_bn1")
    features = op("Flatten", op("GlobalAveragePool", x), axis=1)
    nodes.append(helper.make_node("Identity", [features], ["features"]))
    nodes.append(helper.make_node("Gemm", [features, const("fc.w", take("_fc.weight")), const("fc.b", take("_fc.bias"))],
                                  ["logits"], transB=1))
    extra = sorted(set(state) - used)
    if extra:
        raise ValueError(f"the weights hold tensors EfficientNet-Lite0 does not use: {', '.join(extra[:3])}")
    graph = helper.make_graph(
        nodes, "efficientnet_lite0", [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", CLASSES]),
         helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", FEATURES])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="ravl")
    model.ir_version = 8
    checker.check_model(model)
    return model.SerializeToString()


def export_from_weights(path: Path) -> bytes:
    """The ONNX bytes for the legacy ``.pth`` at ``path``."""
    from .legacy_pth import load_state_dict

    return build_effnet_onnx(load_state_dict(path))
