"""The image-generator contract, as text generators have it: a final generate() that checks the
request, passes progress only to backends that declare supports_progress, and maps a backend's
library failures onto GenerationError."""
from __future__ import annotations

import pytest
from PIL import Image

from ravl.errors import ConfigError, GenerationError, GenerationTimeoutError
from ravl.generate.images.base import GeneratedImage, ImageGenerator, ImageParams


class Backend(ImageGenerator):
    spec = "test-backend"
    modes = ("text", "init")

    def __init__(self, fail: BaseException | None = None):
        self.fail, self.calls = fail, []

    def execute(self, prompt, *, mode, params, init_image, references, progress):
        self.calls.append((prompt, mode, progress))
        if self.fail is not None:
            raise self.fail
        if progress is not None:
            progress(1, 1)
        return GeneratedImage(Image.new("RGB", (8, 8)), params.seed, 1, None)


class Stepping(Backend):
    supports_progress = True


def test_generate_checks_the_request_before_the_backend_runs():
    gen = Backend()
    with pytest.raises(ConfigError, match="cannot do mode 'reference'"):
        gen.generate("x", mode="reference")
    with pytest.raises(ConfigError, match="steps"):
        gen.generate("x", params=ImageParams(steps=0))
    assert gen.calls == []
    assert gen.generate("x", mode="init", params=ImageParams(seed=3)).seed == 3


def test_progress_reaches_only_backends_that_declare_it():
    seen: list = []
    plain, stepping = Backend(), Stepping()
    plain.generate("x", progress=lambda d, t: seen.append(d))
    stepping.generate("x", progress=lambda d, t: seen.append(d))
    assert plain.calls[0][2] is None and stepping.calls[0][2] is not None and seen == [1]


@pytest.mark.parametrize("exc, cls", [(RuntimeError("CUDA out of memory"), GenerationError),
                                      (TimeoutError("slow"), GenerationTimeoutError),
                                      (OSError("disk"), GenerationError)])
def test_backend_failures_come_out_as_generation_errors(exc, cls):
    with pytest.raises(cls, match="test-backend"):
        Backend(fail=exc).generate("x")


def test_a_ravl_error_passes_through_unchanged():
    with pytest.raises(ConfigError, match="exactly this"):
        Backend(fail=ConfigError("exactly this")).generate("x")
