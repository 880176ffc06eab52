"""Verification of a model with an image prelude against onnxruntime: random images of
two widths (and any given ones) through `Model.run` and the source graph."""
from __future__ import annotations

import numpy as np

from .onnx_verify import _err, _session, reconstruct
from .report import VerifyReport


def default_widths(min_width: int) -> list[int]:
    """Two widths that give different sequence lengths, above the narrowest the model takes."""
    w = max(min_width, 48)
    return [w, 2 * w + 13]


def verify_images(m, model, inputs=None, fix=None, source: str = "onnx", seed: int = 0,
                  tolerance: float = 1e-4, widths=None, B: int = 2, **_ignored) -> VerifyReport:
    """Max abs / rel error of run() against onnxruntime per output, over random images.
    `inputs`: images (B, C, H, W) or (C, H, W) to compare as well."""
    meta = m.provenance.get("onnx") or {}
    pre = m.graph.prelude
    rep = VerifyReport(source=source, tolerance=tolerance, streamed=False)
    rng = np.random.default_rng(seed)
    widths = list(widths or default_widths(pre.min_width))
    images = [rng.uniform(-1, 1, (B, pre.channels, pre.height, w)).astype(np.float32)
              for w in widths]
    if inputs is not None:
        for x in (inputs if isinstance(inputs, (list, tuple)) else [inputs]):
            x = np.asarray(x, np.float32)
            images.append(x if x.ndim == 4 else x[None])
    sess = _session(model)
    names = [o.name for o in sess.get_outputs()]
    bound = {k: np.asarray(v["value"], dtype=v["dtype"]).reshape(v["shape"])
             for k, v in meta.get("fixed", {}).items()}
    bound.update({k: np.asarray(v) for k, v in (fix or {}).items()})
    entries = {e["name"]: e for e in meta.get("outputs", [])}
    for X in images:
        ref = dict(zip(names, sess.run(None, {meta["prelude"]["image_input"]: X, **bound})))
        ours = m.run(X)
        ours = ours if isinstance(ours, dict) else {m.output_names[0]: ours}
        for label, Y in ours.items():
            entry = entries.get(label)
            if entry is None or label not in ref:
                continue
            got = reconstruct(Y, entry, np.full(Y.shape[0], Y.shape[1], np.int64))
            a, r = _err(got, ref[label])
            rep.run_max_abs[label] = max(rep.run_max_abs.get(label, 0.0), a)
            rep.run_max_rel[label] = max(rep.run_max_rel.get(label, 0.0), r)
    rep.notes.append(f"compared run() on random images of widths {widths} (batch {B})"
                     + (f" and {len(images) - len(widths)} given input(s)" if len(images) > len(widths) else ""))
    rep.notes.append("the image prelude sees the whole image: not streamable, run() only")
    return rep
