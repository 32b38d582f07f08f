"""Read a checkpoint in torch's legacy (pre-1.6, non-zip) ``torch.save`` format into numpy, without torch.

The format is five pickles in a row: a magic number, the protocol version, system info, the
object itself (tensors appear as ``torch._utils._rebuild_tensor_v2`` calls over storages named by
persistent ids), and the list of storage keys; then each storage's raw little-endian bytes,
preceded by its element count. No maintained reader of this format exists without torch, so
this one is small and strict: the unpickler resolves only the handful of globals a state dict
needs (``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` and the typed storage
classes) and refuses anything else, so a crafted file cannot run code.
"""
from __future__ import annotations

import pickle
from collections import OrderedDict
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

MAGIC = 0x1950A86A20F9469CFC6C
PROTOCOL = 1001
#: typed storage classes -> numpy dtypes (little-endian)
STORAGE_DTYPES = {
    "FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2", "LongStorage": "<i8",
    "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1", "BoolStorage": "?",
}


class UnsupportedCheckpointError(ValueError):
    """The file is not a plain legacy-format state dict of tensors."""


class _StorageRef:
    """A storage named in the pickle; its bytes come after the pickles."""

    def __init__(self, key: str, dtype: str, numel: int):
        self.key, self.dtype, self.numel = key, np.dtype(dtype), numel
        self.array: np.ndarray | None = None


class _TensorRef:
    def __init__(self, storage: _StorageRef, offset: int, size: tuple[int, ...], stride: tuple[int, ...]):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def to_numpy(self) -> np.ndarray:
        base = self.storage.array
        if base is None:
            raise UnsupportedCheckpointError(f"storage {self.storage.key} has no data")
        item = base.itemsize
        needed = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride)) + 1 if all(self.size) else 0
        if self.offset < 0 or needed > base.size or any(s < 0 for s in self.stride):
            raise UnsupportedCheckpointError("a tensor points outside its storage")
        view = np.lib.stride_tricks.as_strided(base[self.offset:], shape=self.size,
                                               strides=tuple(s * item for s in self.stride))
        return np.array(view)  # a contiguous copy


class _StorageType:
    def __init__(self, name: str):
        self.name = name


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, *extra):
    if not isinstance(storage, _StorageRef):
        raise UnsupportedCheckpointError("a tensor is not built over a storage")
    return _TensorRef(storage, int(storage_offset), tuple(int(n) for n in size), tuple(int(s) for s in stride))


class _Unpickler(pickle.Unpickler):
    def __init__(self, fh: BinaryIO, storages: dict[str, _StorageRef] | None = None):
        super().__init__(fh)
        self.storages = storages if storages is not None else {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise UnsupportedCheckpointError(f"refusing to load {module}.{name} from a checkpoint")

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise UnsupportedCheckpointError(f"unexpected persistent id {pid!r:.80}")
        _, kind, key, _location, numel = pid[:5]
        if len(pid) > 5 and pid[5] is not None:
            raise UnsupportedCheckpointError("storage views are not supported")
        if key not in self.storages:
            self.storages[key] = _StorageRef(str(key), STORAGE_DTYPES[kind.name], int(numel))
        return self.storages[key]


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """``{name: array}`` of a legacy-format torch state dict (tensors only; anything else is refused)."""
    try:
        return _load(path)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError) as exc:
        if isinstance(exc, UnsupportedCheckpointError):
            raise
        raise UnsupportedCheckpointError(f"{path} is not a readable legacy torch checkpoint ({exc})") from exc


def _load(path: str | Path) -> dict[str, np.ndarray]:
    with open(path, "rb") as fh:
        if fh.read(2) == b"PK":
            raise UnsupportedCheckpointError(f"{path} is a zip-format checkpoint, not the legacy format")
        fh.seek(0)
        head = [_Unpickler(fh).load() for _ in range(3)]
        if head[0] != MAGIC or head[1] != PROTOCOL or not isinstance(head[2], dict) or not head[2].get("little_endian"):
            raise UnsupportedCheckpointError(f"{path} is not a little-endian legacy torch checkpoint")
        unpickler = _Unpickler(fh)
        state = unpickler.load()
        keys = _Unpickler(fh).load()
        storages = unpickler.storages
        if not isinstance(keys, list) or set(keys) != set(storages):
            raise UnsupportedCheckpointError("the storage list does not match the tensors")
        for key in keys:
            ref = storages[key]
            size = fh.read(8)
            if len(size) != 8:
                raise UnsupportedCheckpointError(f"{path} is truncated")
            count = int(np.frombuffer(size, "<i8")[0])
            if count != ref.numel:
                raise UnsupportedCheckpointError(f"storage {key} holds {count} elements, expected {ref.numel}")
            data = fh.read(count * ref.dtype.itemsize)
            if len(data) != count * ref.dtype.itemsize:
                raise UnsupportedCheckpointError(f"{path} is truncated")
            ref.array = np.frombuffer(data, ref.dtype)
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, _TensorRef) for k, v in state.items()):
        raise UnsupportedCheckpointError(f"{path} does not hold a plain state dict of tensors")
    return {k: v.to_numpy() for k, v in state.items()}
