"""The registry of Keras layer converters: `@layer("LSTM", ...)` puts a converter in
LAYERS under each Keras class name. Kept apart from the package `__init__` so that
converter modules import this one, not their package (no import cycle).

A converter is `fn(ctx, layer, inputs, per_frame)`: `ctx` the Context, `layer` the
Layer (config, weights), `inputs` the KValues it is called on, `per_frame` True when it
is the inner layer of TimeDistributed (its config then speaks of one frame). It returns
the layer's output KValue, or a list for a layer with several outputs."""
from __future__ import annotations

from typing import Callable

LAYERS: dict[str, Callable] = {}


def layer(*names: str) -> Callable[[Callable], Callable]:
    """Register the decorated converter for each Keras class name in `names`."""
    def deco(fn):
        for n in names:
            LAYERS[n] = fn
        return fn
    return deco
