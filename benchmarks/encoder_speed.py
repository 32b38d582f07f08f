"""Forward-pass speed of the ``default`` encoder's parts on this machine.

EfficientNet-Lite0 images/s in eager torch (NCHW and channels_last) and in onnxruntime on the same
preprocessed batch (batch 32 and 8), and MiniLM sentences/s. Not a test; prints figures.

    .venv/bin/python benchmarks/encoder_speed.py [--seconds 3]
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
from PIL import Image

from ravl.encoders.default import OnnxRunner, TorchRunner, cpu_threads, preprocess_image
from ravl.encoders.text_minilm import MiniLMTextEncoder


def rate(fn, items_per_call: int, seconds: float) -> float:
    fn()  # warm-up
    calls, t0 = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds and calls >= 2:
            return calls * items_per_call / elapsed


def sample_pixels(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    try:
        import skimage.data

        photos = [skimage.data.chelsea(), skimage.data.coffee(), skimage.data.rocket(), skimage.data.astronaut()]
    except ImportError:
        photos = [rng.integers(0, 255, (300, 400, 3), dtype=np.uint8) for _ in range(4)]
    return np.stack([preprocess_image(Image.fromarray(photos[i % len(photos)])) for i in range(n)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    args = parser.parse_args()
    threads = cpu_threads()
    print(f"threads: {threads} (torch {torch.__version__})")
    torch_runner = TorchRunner(threads)
    nchw = torch_runner.model.to(memory_format=torch.contiguous_format)

    def eager_nchw(x):
        with torch.inference_mode():
            nchw(torch.from_numpy(x))

    onnx_runner = OnnxRunner(threads)
    results = {}
    for batch in (32, 8):
        x = sample_pixels(batch)
        results[("eager NCHW", batch)] = rate(lambda x=x: eager_nchw(x), batch, args.seconds)
        torch_runner.model.to(memory_format=torch.channels_last)
        results[("eager channels_last", batch)] = rate(lambda x=x: torch_runner(x), batch, args.seconds)
        torch_runner.model.to(memory_format=torch.contiguous_format)
        results[("onnxruntime", batch)] = rate(lambda x=x: onnx_runner(x), batch, args.seconds)
    print("\nEfficientNet-Lite0 forward, images/s")
    for batch in (32, 8):
        onnx = results[("onnxruntime", batch)]
        for name in ("eager NCHW", "eager channels_last", "onnxruntime"):
            value = results[(name, batch)]
            print(f"  batch {batch:2d}  {name:20s} {value:7.1f}   onnx/this {onnx / value:5.2f}x")

    text = MiniLMTextEncoder()
    short = ["a photo of a cat"] * 64
    longer = ["a small red bicycle leaning against a brick wall next to an open wooden door in the sun"] * 64
    text.encode(short[:2])
    print("\nall-MiniLM-L6-v2, batch 64, sentences/s")
    print(f"  ~7 tokens   {rate(lambda: text.encode(short), 64, args.seconds):7.1f}")
    print(f"  ~20 tokens  {rate(lambda: text.encode(longer), 64, args.seconds):7.1f}")


if __name__ == "__main__":
    main()
