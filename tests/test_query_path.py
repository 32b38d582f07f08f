"""The query path stays light: once the first run has exported the models, searching, captioning,
`ravl info` and `ravl serve` start-up import neither torch nor transformers (default encoder)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

PHOTOS = {"chelsea": "a tabby cat sitting on a floor", "coffee": "a cup of espresso coffee on a saucer",
          "rocket": "a rocket launching into the sky"}

PROBE = textwrap.dedent('''
    import json, sys
    from pathlib import Path
    coll_dir, photo = sys.argv[1], sys.argv[2]
    heavy = ("torch", "transformers")
    seen = {}

    def note(step):
        seen[step] = [m for m in heavy if m in sys.modules]

    from PIL import Image
    from ravl import open_collection
    from ravl.rag import caption_image
    with open_collection(coll_dir, readonly=True) as coll:
        hits = coll.search_text(["a cat"], k=2)
        note("library text search")
        coll.search_image([Image.open(photo)], k=2)
        note("library image search")
        coll.search_image([Image.open(photo)], target="captions", k=2)
        note("library image->captions search")
        caption = caption_image(coll, Image.open(photo), k=2)
        note("library caption")
    from ravl.cli.main import main
    for i, argv in enumerate((["search", "--collection", coll_dir, "--text", "a cat", "--json"],
                 ["search", "--collection", coll_dir, "--image", photo, "--json"],
                 # consensus: the bundled LM (caption's default when installed) is a torch model by nature
                 ["caption", "--collection", coll_dir, photo, "--json", "--generator", "consensus"],
                 ["info", "--collection", coll_dir, "--json"])):
        assert main(argv) == 0, argv
        note(f"ravl {argv[0]} #{i}")
    from ravl.server.app import create_app
    from ravl.server.settings import ServerSettings
    from ravl.server.state import ServerState
    # consensus, for the same reason: serve's default describes with the bundled LM when installed
    settings = ServerSettings(collection=Path(coll_dir), generators=("consensus",))
    create_app(settings, state=ServerState.open(settings))
    note("ravl serve start-up")
    print(json.dumps({"seen": seen, "top": hits[0][0].uri, "caption": caption.caption}))
''')


@pytest.fixture(scope="module")
def collection(tmp_path_factory, skimage_photos):
    from ravl import index_sources, open_collection

    root = tmp_path_factory.mktemp("light")
    for name, text in PHOTOS.items():
        skimage_photos[name].save(root / f"{name}.jpg", quality=92)
        (root / f"{name}.txt").write_text(text + "\n")
    with open_collection(root / "coll", encoder="default", create=True) as coll:
        report = index_sources(coll, [root])  # exports both towers and builds the ConSE matrix if needed
    assert report.added == 3
    return root


@pytest.mark.slow
def test_no_torch_or_transformers_on_the_query_path(collection):
    photo = str(collection / "coffee.jpg")
    proc = subprocess.run([sys.executable, "-c", PROBE, str(collection / "coll"), photo], capture_output=True,
                          text=True, timeout=300, env={**os.environ})
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["top"].endswith("chelsea.jpg") and out["caption"]
    assert len(out["seen"]) == 9
    assert {step: mods for step, mods in out["seen"].items() if mods} == {}
