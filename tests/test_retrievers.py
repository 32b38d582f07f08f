"""The LlamaIndex and LangChain retrievers over a small colour collection, with the real libraries:
their hits are the search task's (ids, uris, scores), with caption text and metadata; the modules
import and retrieve without network access."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_image
from ravl.collection import open_collection
from ravl.request import SearchRequest
from ravl.tasks.search import search

COLOURS = {"red": (220, 20, 20), "green": (20, 200, 20), "blue": (20, 20, 220), "yellow": (230, 230, 20)}


@pytest.fixture(scope="module")
def coll_dir(tmp_path_factory):
    import fakes
    from ravl import registry
    from ravl.ingest.pipeline import index_sources

    registry.register("encoders", "testcolour", fakes.create)
    base = tmp_path_factory.mktemp("retrievers")
    for name, rgb in COLOURS.items():
        make_image(base / "images" / f"{name}.png", rgb, size=(48, 40))
        (base / "images" / f"{name}.txt").write_text(f"a {name} square\nsomething {name}\n")
    with open_collection(base / "coll", encoder="testcolour", create=True) as coll:
        index_sources(coll, [str(base / "images")])
    return base / "coll"


def expected(coll_dir, query, **options):
    with open_collection(coll_dir, readonly=True) as coll:
        return search(coll, SearchRequest.of_text(query, **options))["results"]


def test_llamaindex_retriever_returns_the_search_hits_as_nodes(coll_dir):
    pytest.importorskip("llama_index.core")
    from llama_index.core.schema import ImageNode, NodeWithScore

    from ravl.integrations.llamaindex import RavlRetriever

    want = expected(coll_dir, "red -yellow", k=3)
    retriever = RavlRetriever(str(coll_dir), k=3)
    got = retriever.retrieve("red -yellow")
    assert all(isinstance(h, NodeWithScore) and isinstance(h.node, ImageNode) for h in got)
    assert [(h.node.metadata["item_id"], h.node.image_path, h.score) for h in got] == \
           [(w["id"], w["uri"], w["score"]) for w in want]
    top = got[0].node
    assert top.text == "a red square\nsomething red" and top.id_ == f"ravl:item:{want[0]['id']}"
    assert top.metadata["uri"].endswith("red.png") and top.metadata["captions"] == ["a red square", "something red"]
    assert "uri" in top.get_content(metadata_mode="llm") and "vector_score" not in top.get_content(metadata_mode="llm")
    captions = RavlRetriever(open_collection(coll_dir, readonly=True), k=2, target="captions").retrieve("blue")
    assert captions[0].node.text.endswith("blue") and captions[0].node.metadata["caption_id"]


def test_langchain_retriever_returns_the_search_hits_as_documents(coll_dir):
    pytest.importorskip("langchain_core")
    from langchain_core.documents import Document

    from ravl.integrations.langchain import RavlRetriever

    want = expected(coll_dir, "blue", k=2)
    retriever = RavlRetriever.from_collection(coll_dir, k=2)
    docs = retriever.invoke("blue")
    assert all(isinstance(d, Document) for d in docs)
    assert [(d.id, d.metadata["uri"], d.metadata["score"]) for d in docs] == \
           [(f"ravl:item:{w['id']}", w["uri"], w["score"]) for w in want]
    assert docs[0].page_content == "a blue square\nsomething blue"
    batch = RavlRetriever(collection=str(coll_dir), k=1, target="captions").batch(["red", "green"])
    assert [b[0].page_content for b in batch] == [expected(coll_dir, q, k=1, target="captions")[0]["caption"]
                                                  for q in ("red", "green")]
    assert "red" in batch[0][0].page_content and batch[0][0].metadata["item_id"]
    with pytest.raises(Exception, match="k must be"):
        RavlRetriever.from_collection(coll_dir, k=0).invoke("red")


def test_the_integrations_import_and_retrieve_without_network(coll_dir):
    pytest.importorskip("llama_index.core")
    pytest.importorskip("langchain_core")
    code = f"""
import socket, sys
def refuse(*a, **k):
    raise OSError("network access attempted")
socket.socket.connect = refuse
socket.socket.connect_ex = refuse
socket.create_connection = refuse
sys.path.insert(0, {str(Path(__file__).parent)!r})
import fakes
from ravl import registry
registry.register("encoders", "testcolour", fakes.create)
from ravl.integrations import langchain, llamaindex
assert llamaindex.RavlRetriever({str(coll_dir)!r}, k=1).retrieve("red")[0].node.get_content()
assert langchain.RavlRetriever.from_collection({str(coll_dir)!r}, k=1).invoke("red")[0].page_content
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
