"""The prelude: whole-image ops run once per run() call before the per-step graph.

A CRNN (text recognition) reads an image [B, C, H, W] with a 2-D CNN whose output width
becomes the time axis of its recurrent layers. The CNN sees the whole image (padding
along the width, strided pools), so it cannot stream; it runs here, on whole tensors,
and its (B, C', H', W') result feeds the per-step graph as the sequence (W', B, C'*H').
One module per job: `base` (op definition, shapes with a variable width), `conv`,
`pool`, `pointwise` (the ops), `graph` (validation of an untrusted prelude, running it).
docs/FORMAT.md documents every op.
"""
from __future__ import annotations

from .base import PreludeOpDef
from . import conv, pointwise, pool

PRELUDE_OPS: dict[str, PreludeOpDef] = {op.name: op for mod in (conv, pool, pointwise)
                                        for op in mod.OPS}
