"""`python colour_cli.py ARGS...`: the ravl CLI with the fast fake colour encoder ('testcolour')
registered, for tests that start ravl as a subprocess (ravl mcp, ravl serve) on a colour collection."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

if __name__ == "__main__":
    import fakes
    from ravl import registry

    registry.register("encoders", "testcolour", fakes.create)
    from ravl.cli.main import main

    sys.exit(main(sys.argv[1:]))
