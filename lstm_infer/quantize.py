"""Weight compression for edge devices: fp16 storage, int8 with per-column scales.

int8 is symmetric, one scale per output unit (per column of our (in, out) matrices,
i.e. per row of PyTorch's `weight`): s = max|W[:, j]| / 127, q = round(W / s). The
kernels read the int8 matrices directly and dequantise on the fly. Biases, norms,
peepholes and initial states stay float32; fp16 halves the file and is widened to
float32 at load.
"""
from __future__ import annotations

import json
import os

import numpy as np

from .fileformat import read_model, write_model
from .graph import parse_graph
from .ops import OPS

DTYPES = ("fp32", "fp16", "int8")


def quantize_int8(W: np.ndarray, calib_absmax: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """W (in, out) float -> (int8 (in, out), float32 scales (out,))."""
    W = np.asarray(W, np.float32)
    absmax = np.abs(W).max(axis=0) if calib_absmax is None else calib_absmax
    scale = (absmax / 127.0).astype(np.float32)
    safe = np.where(scale > 0, scale, 1.0).astype(np.float32)
    q = np.clip(np.rint(W / safe), -127, 127).astype(np.int8)
    return q, scale


def quantize_document(doc: dict, tensors: dict[str, np.ndarray], dtype: str) -> dict[str, np.ndarray]:
    """New tensors for `doc` (which is updated in place with scale references)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    out = dict(tensors)
    if dtype == "fp32":
        return out
    for node in doc["nodes"]:
        wmap = node.get("weights", {})
        opdef = OPS.get(node["op"])
        for role in opdef.matrix_roles if opdef else ():
            tname = wmap.get(role)
            if tname is None or out[tname].dtype == np.int8:
                continue
            W = np.asarray(out[tname], np.float32)
            if dtype == "fp16":
                out[tname] = W.astype(np.float16)
            else:
                q, s = quantize_int8(W)
                out[tname] = q
                out[f"{tname}.scale"] = s
                wmap[f"{role}.scale"] = f"{tname}.scale"
    return out


def quantize_file(src: str | os.PathLike, dst: str | os.PathLike, dtype: str) -> None:
    """Rewrite an fp32 `.lstm` file with fp16 or int8 weights; provenance records it."""
    raw = read_model(src)
    doc = json.loads(json.dumps(raw.graph))
    tensors = {k: np.array(v) for k, v in raw.tensors.items()}
    if any(t.dtype != np.float32 for t in tensors.values()):
        raise ValueError(f"{src}: already compressed ({sorted({str(t.dtype) for t in tensors.values()})}); "
                         "quantize from the fp32 file")
    new = quantize_document(doc, tensors, dtype)
    parse_graph(doc, new)  # the result must validate like any file
    prov = dict(raw.provenance, weights_dtype=dtype, quantized_from=os.path.basename(os.fspath(src)))
    write_model(dst, doc, new, prov)
