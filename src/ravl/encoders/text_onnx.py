"""all-MiniLM-L6-v2 on onnxruntime: no torch or transformers on the query path.

The ONNX graph is written directly from the packaged weights (``model.safetensors`` +
``config.json`` of the MiniLM folder, :func:`.text_minilm.model_path`; any BERT-style sentence-transformers folder
works): embeddings, then per layer self-attention and a GELU feed-forward, each followed by a
residual LayerNorm, the same arithmetic as transformers' ``BertModel``. Writing the graph takes
well under a second and needs neither torch's exporter nor torch. It is cached under
``cache_dir('onnx')`` with a sha256 sidecar (:mod:`.onnx_cache`) and checked once, at export, on
a fixed sentence set against the vectors the torch path (transformers ``AutoModel``,
:mod:`.text_minilm`) gave for them, shipped with ravl (:mod:`.reference`): no torch at run time.

Texts are tokenized with the ``tokenizers`` library from the folder's ``tokenizer.json`` (truncated
to ``max_length``, padded to the longest text of each batch, like the torch path); mean pooling
over the attention mask and L2 normalisation run in numpy.

``int8=True`` runs the same graph dynamically quantised (:func:`quantize_int8`: onnxruntime's
``quantize_dynamic``, int8 weights per output channel on every MatMul, activations quantised per
call): about 2.3x less CPU per text, vectors within cosine 0.97 of float32's on the check
sentences (its export check is that bound, :data:`INT8_MIN_COSINE`, not 1e-5). Its vectors are not
float32's, so it is its own tower: its own name (fingerprint, ConSE class matrix) and cache file.
"""
from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import onnx_cache
from .base import l2_normalize
from .reference import CHECK_SENTENCES

#: bump when the graph written by :func:`build_bert_onnx` changes (invalidates cached files)
EXPORT_VERSION = 1
#: largest max-abs difference from the reference vectors accepted at export (vectors are unit length)
MAX_DIFF = 1e-5
#: smallest cosine between the int8 tower's vectors and the reference vectors accepted at export
#: (measured 0.978 on the check sentences)
INT8_MIN_COSINE = 0.95
#: texts encoded before a quick-start session is swapped for the full one (see OnnxTextTower._settle)
SETTLE_AFTER = 256


#: initializers at least this large live in the external weights file, each at a page-aligned offset
EXTERNAL_MIN_BYTES = 4096


def build_bert_onnx(folder: Path, weights_location: str) -> tuple[bytes, bytes]:
    """``(graph, weights)``: ONNX bytes of the BERT encoder in ``folder`` (inputs ``input_ids``,
    ``attention_mask``, both int64 (batch, seq); output ``hidden`` float32 (batch, seq, hidden)),
    its large initializers stored in ``weights`` (to be saved as ``weights_location`` beside it)."""
    from onnx import TensorProto, helper, numpy_helper
    from safetensors.numpy import load_file

    cfg = json.loads((folder / "config.json").read_text())
    w = load_file(str(folder / "model.safetensors"))
    w = {k.removeprefix("bert."): v for k, v in w.items()}
    d, heads, layers = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_hidden_layers"]
    eps, head_dim = float(cfg.get("layer_norm_eps", 1e-12)), d // heads
    if cfg.get("hidden_act", "gelu") != "gelu" or cfg.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"{folder} is not a plain BERT encoder (gelu, absolute positions)")
    inits: list = []
    nodes: list = []

    def const(name: str, value) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(kind: str, *inputs: str, **attrs) -> str:
        out = f"{kind.lower()}_{len(nodes)}"
        nodes.append(helper.make_node(kind, list(inputs), [out], **attrs))
        return out

    def linear(x: str, name: str) -> str:
        weight = const(f"{name}.weight_t", np.ascontiguousarray(w[f"{name}.weight"].T))
        return op("Add", op("MatMul", x, weight), const(f"{name}.bias", w[f"{name}.bias"]))

    def layer_norm(x: str, name: str) -> str:
        return op("LayerNormalization", x, const(f"{name}.weight", w[f"{name}.weight"]),
                  const(f"{name}.bias", w[f"{name}.bias"]), axis=-1, epsilon=eps)

    split_shape = const("split_heads", np.array([0, 0, heads, head_dim], np.int64))
    merge_shape = const("merge_heads", np.array([0, 0, d], np.int64))
    zero, one = const("zero", np.array(0, np.int64)), const("one", np.array(1, np.int64))
    seq = op("Gather", op("Shape", "input_ids"), one, axis=0)
    positions = op("Range", zero, seq, one)
    e = "embeddings."
    x = op("Add", op("Gather", const(f"{e}word", w[f"{e}word_embeddings.weight"]), "input_ids", axis=0),
           op("Gather", const(f"{e}pos", w[f"{e}position_embeddings.weight"]), positions, axis=0))
    x = op("Add", x, const(f"{e}type0", w[f"{e}token_type_embeddings.weight"][0]))
    x = layer_norm(x, f"{e}LayerNorm")
    mask = op("Cast", "attention_mask", to=TensorProto.FLOAT)
    bias = op("Mul", op("Sub", const("f_one", np.float32(1.0)), mask), const("min", np.finfo(np.float32).min))
    bias = op("Unsqueeze", bias, const("axes_12", np.array([1, 2], np.int64)))  # (b, 1, 1, s)
    scale = const("scale", np.float32(1.0 / math.sqrt(head_dim)))
    half, sqrt2 = const("half", np.float32(0.5)), const("sqrt2", np.float32(math.sqrt(2.0)))
    for i in range(layers):
        p = f"encoder.layer.{i}."

        q, k, v = (op("Transpose", op("Reshape", linear(x, p + name), split_shape), perm=perm)
                   for name, perm in (("attention.self.query", [0, 2, 1, 3]), ("attention.self.key", [0, 2, 3, 1]),
                                      ("attention.self.value", [0, 2, 1, 3])))
        att = op("Softmax", op("Add", op("Mul", op("MatMul", q, k), scale), bias), axis=-1)
        ctx = op("Reshape", op("Transpose", op("MatMul", att, v), perm=[0, 2, 1, 3]), merge_shape)
        x = layer_norm(op("Add", linear(ctx, p + "attention.output.dense"), x), p + "attention.output.LayerNorm")
        h = linear(x, p + "intermediate.dense")
        h = op("Mul", op("Mul", h, half), op("Add", const(f"f_one_{i}", np.float32(1.0)), op("Erf", op("Div", h, sqrt2))))
        x = layer_norm(op("Add", linear(h, p + "output.dense"), x), p + "output.LayerNorm")
    nodes.append(helper.make_node("Identity", [x], ["hidden"]))
    graph = helper.make_graph(
        nodes, "bert", [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"])
                        for n in ("input_ids", "attention_mask")],
        [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", "seq", d])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="ravl")
    model.ir_version = 8
    weights = _externalize(model, weights_location)
    return model.SerializeToString(), weights


def _externalize(model, location: str) -> bytes:
    """Move the large initializers' bytes out of ``model`` into one blob (page-aligned offsets)."""
    from onnx import TensorProto

    blob = bytearray()
    for tensor in model.graph.initializer:
        raw = tensor.raw_data
        if len(raw) < EXTERNAL_MIN_BYTES:
            continue
        blob.extend(b"\0" * (-len(blob) % 4096))
        offset = len(blob)
        blob.extend(raw)
        tensor.ClearField("raw_data")
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in (("location", location), ("offset", str(offset)), ("length", str(len(raw)))):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
    return bytes(blob)


def quantize_int8(graph: bytes, weights: bytes, weights_location: str) -> bytes:
    """The float32 graph (with its external ``weights``) dynamically quantised to int8: MatMul
    weights per output channel (per-tensor lost up to 0.08 of cosine on short texts), embeddings
    and LayerNorms left in float32. One self-contained model file."""
    import logging
    import tempfile

    from onnxruntime.quantization import QuantType, quantize_dynamic

    def no_preprocessing_advice(record: logging.LogRecord) -> bool:  # quantize_dynamic's advice on the root logger
        return "pre-processing before quantization" not in record.getMessage()

    root = logging.getLogger()
    root.addFilter(no_preprocessing_advice)
    try:
        with tempfile.TemporaryDirectory(prefix="ravl-int8-") as tmp:
            src, out = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
            src.write_bytes(graph)
            (Path(tmp) / weights_location).write_bytes(weights)
            quantize_dynamic(str(src), str(out), weight_type=QuantType.QInt8, per_channel=True,
                             op_types_to_quantize=["MatMul"])
            return out.read_bytes()
    finally:
        root.removeFilter(no_preprocessing_advice)


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean of the token vectors the attention mask keeps, L2-normalised (sentence-transformers)."""
    m = mask.astype(np.float32)[:, :, None]
    return l2_normalize((hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9))


class OnnxTextTower:
    """Texts -> (n, dim) L2-normalised float32, through onnxruntime; loads on first use.

    A new export is checked against the reference vectors shipped with ravl or, when ``reference``
    is given, against the tower it builds (only called at export).
    """

    runtime = "onnx"

    def __init__(self, folder: Callable[[], Path], reference: Callable[[], Any] | None = None, *, name: str,
                 dim: int, max_length: int = 128, batch_size: int = 64, threads: int = 1, int8: bool = False):
        self._folder, self._reference = folder, reference
        self.int8 = int8
        self.name, self.dim = name, dim
        self.max_length, self.batch_size, self.threads = max_length, batch_size, threads
        self.exported = False
        self._session = None
        self._quick = True  # the session is a quick-start one (see onnx_cache.session)
        self._encoded = 0
        self._tokenizer = None
        self._lock = threading.Lock()

    def cache_path(self) -> Path:
        folder = self._folder()
        graph = f"bert-graph-v{EXPORT_VERSION}" + ("-int8-dynamic-per-channel-matmul" if self.int8 else "")
        return onnx_cache.cache_path(f"text-{self.name.split('/')[0]}" + ("-int8" if self.int8 else ""),
                                     folder / "model.safetensors", folder / "config.json", graph)

    def load(self) -> None:
        """Tokenizer and session (exporting and checking the model when the cache lacks it)."""
        with self._lock:
            if self._session is not None:
                return
            self._load_tokenizer()
            self._session, self.exported = self._open(quick=True)

    def _open(self, *, quick: bool):
        """(session, exported) on the cached export (made and checked now when missing or damaged)."""
        folder, path = self._folder(), self.cache_path()
        if self.int8:
            def export_int8() -> bytes:
                name = "float.onnx.data"
                return quantize_int8(*build_bert_onnx(folder, name), name)

            session, exported = onnx_cache.load_or_export(path, export_int8, self._check, self.threads, quick=quick)
            self._quick = quick
            return session, exported
        session, exported = onnx_cache.load_or_export(
            path, lambda: build_bert_onnx(folder, onnx_cache.data_path(path).name), self._check, self.threads,
            external_data=True, quick=quick)
        self._quick = quick
        return session, exported

    def warm_up(self) -> None:
        """Load, and swap the quick-start session for the full one now (a server, an ingest)."""
        if self._session is None:
            self.load()
        self._settle()

    def _settle(self) -> None:
        """A process that keeps encoding (a server, an ingest) swaps its quick-start session for the
        full one once, paying ~50 ms to gain 10% per text in batches of 32 and half the CPU for one
        text at a time."""
        with self._lock:
            if self._quick and self._session is not None:
                self._session, _ = self._open(quick=False)

    def _load_tokenizer(self):
        if self._tokenizer is None:
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(str(self._folder() / "tokenizer.json"))
            tokenizer.enable_truncation(max_length=self.max_length)
            pad = tokenizer.token_to_id("[PAD]")
            tokenizer.enable_padding(pad_id=0 if pad is None else pad, pad_token="[PAD]")
            self._tokenizer = tokenizer
        return self._tokenizer

    def _check(self, session) -> None:
        got = self._encode(session, list(CHECK_SENTENCES))
        if self.int8:
            ref = self._reference().encode(list(CHECK_SENTENCES)) if self._reference else None
            check_int8(got, ref, self._folder())
            return
        if self._reference is None:
            from ..digests import file_sha256
            from .reference import check_text

            check_text(got, file_sha256(self._folder() / "model.safetensors"), MAX_DIFF)
            return
        diff = float(np.abs(self._reference().encode(list(CHECK_SENTENCES)) - got).max())
        if not diff <= MAX_DIFF:
            raise RuntimeError(f"exported text model differs from the reference tower by {diff:.2e} (> {MAX_DIFF:g})")

    def tokenize(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(input_ids, attention_mask), int64 (n, longest) arrays."""
        enc = (self._tokenizer or self._load_tokenizer()).encode_batch(list(texts))
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        return ids, mask

    def _encode(self, session, texts: list[str]) -> np.ndarray:
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), self.dim), np.float32)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            ids, mask = self.tokenize([texts[i] for i in idx])
            (hidden,) = session.run(None, {"input_ids": ids, "attention_mask": mask})
            out[idx] = mean_pool(hidden, mask)
        return out

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = [str(t) for t in texts]
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        if self._session is None:
            self.load()
        self._encoded += len(texts)
        if self._quick and self._encoded > SETTLE_AFTER:
            self._settle()
        return self._encode(self._session, texts)


def check_int8(vectors: np.ndarray, reference: np.ndarray | None, folder: Path) -> None:
    """Raise unless the int8 tower's check-sentence vectors are within :data:`INT8_MIN_COSINE` of
    ``reference`` (default: the float32 vectors shipped with ravl)."""
    if reference is None:
        from ..digests import file_sha256
        from .reference import load_reference

        ref = load_reference()
        if str(ref["text_weights"]) != file_sha256(folder / "model.safetensors"):
            raise RuntimeError("the MiniLM weights are not the ones ravl's reference outputs were made from")
        reference = ref["text_vectors"]
    worst = float((np.asarray(reference) * vectors).sum(axis=1).min())
    if not worst >= INT8_MIN_COSINE:
        raise RuntimeError(f"the int8 text model's vectors are at cosine {worst:.3f} of float32's (< {INT8_MIN_COSINE})")
