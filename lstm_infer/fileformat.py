"""Read and write `.lstm` files: safetensors-compatible, 64-byte aligned, checksummed.

The reader treats the file as untrusted: it checks every length, offset, dtype and
shape against the bytes actually present before handing out numpy views. See
docs/FORMAT.md for the layout.
"""
from __future__ import annotations

import hashlib
import json
import mmap
import os
import struct
from typing import Any, Mapping

import numpy as np

from .errors import ModelFormatError

FORMAT_NAME = "lstm-infer"
FORMAT_VERSION = 2  # newest version this build reads
# Version 2 adds the graph's optional "prelude" (whole-image ops, run() only). Files
# without one are still written as version 1 so older readers keep reading them; a file
# with one is version 2, which older readers refuse instead of ignoring the prelude.
PRELUDE_VERSION = 2
ALIGN = 64
MAX_HEADER_BYTES = 64 * 1024 * 1024
_PAD_PREFIX = "__pad__."

# safetensors dtype tag -> numpy dtype (little endian)
DTYPES: dict[str, np.dtype] = {
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "I32": np.dtype("<i4"),
}
_TAG_OF = {np.dtype(v): k for k, v in DTYPES.items()}

META_FORMAT = "lstm_infer.format"
META_VERSION = "lstm_infer.format_version"
META_GRAPH = "lstm_infer.graph"
META_PROVENANCE = "lstm_infer.provenance"
META_CHECKSUM = "lstm_infer.checksum"


def _canonical(header: Mapping[str, Any]) -> bytes:
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode()


def _checksum(header_without_checksum: Mapping[str, Any], data: memoryview) -> str:
    h = hashlib.sha256(_canonical(header_without_checksum))
    h.update(data)
    return "sha256:" + h.hexdigest()


def _round_up(n: int, a: int = ALIGN) -> int:
    return (n + a - 1) // a * a


def write_model(
    path: str | os.PathLike,
    graph: Mapping[str, Any],
    tensors: Mapping[str, np.ndarray],
    provenance: Mapping[str, Any] | None = None,
) -> None:
    """Write graph + tensors as one aligned, checksummed safetensors file (atomically)."""
    header: dict[str, Any] = {}
    chunks: list[bytes] = []
    offset = 0
    pad_index = 0
    for name, arr in tensors.items():
        if name.startswith(_PAD_PREFIX) or name == "__metadata__":
            raise ValueError(f"reserved tensor name {name!r}")
        a = np.ascontiguousarray(arr)
        if a.dtype not in _TAG_OF:
            raise ValueError(f"tensor {name!r}: unsupported dtype {a.dtype}")
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        aligned = _round_up(offset)
        if aligned != offset:
            header[f"{_PAD_PREFIX}{pad_index}"] = {"dtype": "U8", "shape": [aligned - offset],
                                                   "data_offsets": [offset, aligned]}
            chunks.append(b"\0" * (aligned - offset))
            pad_index += 1
            offset = aligned
        raw = a.tobytes()
        header[name] = {"dtype": _TAG_OF[a.dtype], "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    # Pad the end to a multiple of ALIGN so the data section can be viewed as float32.
    end = _round_up(offset)
    if end != offset:
        header[f"{_PAD_PREFIX}{pad_index}"] = {"dtype": "U8", "shape": [end - offset],
                                               "data_offsets": [offset, end]}
        chunks.append(b"\0" * (end - offset))
    data = b"".join(chunks)
    header["__metadata__"] = {
        META_FORMAT: FORMAT_NAME,
        META_VERSION: str(PRELUDE_VERSION if graph.get("prelude") is not None else 1),
        META_GRAPH: json.dumps(graph, separators=(",", ":")),
        META_PROVENANCE: json.dumps(dict(provenance or {}), separators=(",", ":")),
    }
    header["__metadata__"][META_CHECKSUM] = _checksum(header, memoryview(data))
    hbytes = json.dumps(header, separators=(",", ":")).encode()
    # Space-pad the header so the data section starts 64-byte aligned in the file.
    total = _round_up(8 + len(hbytes))
    hbytes += b" " * (total - 8 - len(hbytes))
    tmp = f"{os.fspath(path)}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hbytes)))
        f.write(hbytes)
        f.write(data)
    os.replace(tmp, path)


class RawModel:
    """A validated file: the graph, named tensor views, provenance and the raw data section."""

    def __init__(self, graph: dict, tensors: dict[str, np.ndarray], provenance: dict,
                 data: np.ndarray, file_size: int, path: str):
        self.graph = graph
        self.tensors = tensors
        self.provenance = provenance
        self.data = data
        self.file_size = file_size
        self.path = path


def _fail(path: str, msg: str) -> ModelFormatError:
    return ModelFormatError(f"{path}: {msg}")


def read_model(path: str | os.PathLike, verify_checksum: bool = True) -> RawModel:
    """Validate and memory-map a `.lstm` file. Raises ModelFormatError on any defect."""
    p = os.fspath(path)
    try:
        with open(p, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < 8:
                raise _fail(p, f"file is {size} bytes, too short for a model header")
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as e:
        raise ModelFormatError(f"{p}: cannot read model file: {e.strerror or e}") from e
    except ValueError as e:  # mmap of an empty file
        raise _fail(p, f"cannot map file: {e}") from e
    mv = memoryview(buf)
    (hlen,) = struct.unpack("<Q", mv[:8])
    if hlen > MAX_HEADER_BYTES or 8 + hlen > size:
        raise _fail(p, f"header length {hlen} points past the end of the {size}-byte file "
                       "(truncated or not an lstm-infer model)")
    try:
        header = json.loads(bytes(mv[8:8 + hlen]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _fail(p, f"header is not valid JSON ({e}); file corrupt or not an lstm-infer model") from e
    if not isinstance(header, dict):
        raise _fail(p, "header is not a JSON object")
    meta = header.pop("__metadata__", None)
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise _fail(p, "missing or malformed __metadata__ (not an lstm-infer model?)")
    if meta.get(META_FORMAT) != FORMAT_NAME:
        raise _fail(p, "not an lstm-infer model (safetensors file without lstm-infer metadata)")
    try:
        version = int(meta.get(META_VERSION, ""))
    except ValueError:
        raise _fail(p, f"bad format version {meta.get(META_VERSION)!r}") from None
    if version > FORMAT_VERSION:
        raise _fail(p, f"file format version {version} is newer than this lstm-infer reads "
                       f"(up to {FORMAT_VERSION}); upgrade lstm-infer")
    if version < 1:
        raise _fail(p, f"bad format version {version}")

    data_start = 8 + hlen
    data_len = size - data_start
    spans = []
    for name, info in header.items():
        if not isinstance(info, dict):
            raise _fail(p, f"tensor {name!r}: entry is not an object")
        dt = DTYPES.get(info.get("dtype"))
        shape = info.get("shape")
        offs = info.get("data_offsets")
        if dt is None:
            raise _fail(p, f"tensor {name!r}: unsupported dtype {info.get('dtype')!r}")
        if (not isinstance(shape, list) or len(shape) > 8
                or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**40 for d in shape)):
            raise _fail(p, f"tensor {name!r}: bad shape {shape!r}")
        if (not isinstance(offs, list) or len(offs) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offs)):
            raise _fail(p, f"tensor {name!r}: bad data_offsets {offs!r}")
        begin, end = offs
        nbytes = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
        if not (0 <= begin <= end <= data_len):
            raise _fail(p, f"tensor {name!r}: byte range [{begin}, {end}) lies outside the "
                           f"{data_len}-byte data section (file truncated?)")
        if end - begin != nbytes:
            raise _fail(p, f"tensor {name!r}: shape {shape} of {info['dtype']} needs {nbytes} "
                           f"bytes but the file gives {end - begin}")
        spans.append((begin, end, name))
    spans.sort()
    pos = 0
    for begin, end, name in spans:
        if begin != pos:
            raise _fail(p, f"tensor {name!r} starts at {begin}, expected {pos} (overlap or gap)")
        pos = end
    if pos != data_len:
        raise _fail(p, f"data section is {data_len} bytes but tensors cover {pos} (truncated or trailing bytes)")

    data = mv[data_start:]
    if verify_checksum:
        stored = meta.get(META_CHECKSUM)
        if stored is None:
            raise _fail(p, "missing checksum")
        header_for_sum = dict(header)
        header_for_sum["__metadata__"] = {k: v for k, v in meta.items() if k != META_CHECKSUM}
        if _checksum(header_for_sum, data) != stored:
            raise _fail(p, "checksum mismatch: the file is corrupt")

    try:
        graph = json.loads(meta[META_GRAPH])
        provenance = json.loads(meta.get(META_PROVENANCE, "{}"))
    except (KeyError, json.JSONDecodeError) as e:
        raise _fail(p, f"graph metadata missing or not JSON ({e})") from e
    if not isinstance(graph, dict) or not isinstance(provenance, dict):
        raise _fail(p, "graph or provenance metadata is not a JSON object")
    if graph.get("prelude") is not None and version < PRELUDE_VERSION:
        raise _fail(p, f"the graph has a prelude, which needs format version {PRELUDE_VERSION}, "
                       f"but the file says version {version}")

    raw = np.frombuffer(buf, dtype=np.uint8, count=data_len, offset=data_start)
    tensors: dict[str, np.ndarray] = {}
    for name, info in header.items():
        if name.startswith(_PAD_PREFIX):
            continue
        dt = DTYPES[info["dtype"]]
        begin, end = info["data_offsets"]
        view = raw[begin:end]
        if begin % dt.itemsize == 0 and (data_start + begin) % dt.itemsize == 0:
            arr = view.view(dt).reshape(info["shape"])
        else:  # unaligned (file not written by us): copy to be safe
            arr = np.frombuffer(view.tobytes(), dtype=dt).reshape(info["shape"])
        tensors[name] = arr
    return RawModel(graph, tensors, provenance, raw, size, p)
