"""A fake encoder whose text model blocks until the test releases it (files in RAVL_TEST_SLOW_DIR),
and a launcher that starts `ravl serve` with it registered: `python slow_encoder.py serve ARGS...`."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fakes import ColourEncoder  # noqa: E402


class SlowEncoder(ColourEncoder):
    def encode_texts(self, texts):
        folder = os.environ.get("RAVL_TEST_SLOW_DIR")
        if folder and any("slow" in t for t in texts):
            (Path(folder) / "started").touch()
            deadline = time.monotonic() + 60
            while not (Path(folder) / "release").exists() and time.monotonic() < deadline:
                time.sleep(0.02)
        return super().encode_texts(texts)


def create(spec):
    return SlowEncoder(spec)


def register() -> None:
    from ravl import registry

    registry.register("encoders", "testslow", create)


if __name__ == "__main__":
    register()
    from ravl.cli.main import main

    sys.exit(main(sys.argv[1:]))
