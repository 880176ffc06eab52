"""Keras importer: a `.keras` (Keras 3) or `.h5` (Keras 2, Keras 3 legacy) model file
into the `.lstm` format, without TensorFlow and without Keras.

How it works
------------
`reader` opens the file with h5py and json (the `[keras]` extra needs only h5py): the
model config and each layer's weights in get_weights() order. `topology` turns the
config (Sequential, or functional with Keras 3's or Keras 2's `inbound_nodes`) into layer
calls in dependency order. `walk` hands each call to its converter in `layers/` (one
per Keras class, registered with `@layer(...)`), which emits IR nodes through
`lstm_infer.builder.GraphBuilder` via the `context.Context` building blocks. Every
Keras tensor becomes a `values.KValue`: its per-step shape and whether it still has a
time axis. Weight layouts (Keras kernels are already (in, out); gate orders) are
`converters.layout`'s.

Last-step models
----------------
A recurrent layer with `return_sequences=False` returns one result per sequence; the
IR computes it at every step, as the result for the sequence ending there (prefix
semantics, DESIGN.md). `go_backwards` layers and the backward half of Bidirectional
are reverse nodes: their last-step result is the value at step 0 (`FirstStep`), so
such a model runs whole sequences only (run(), not stream()).

Verification (`verify`) runs the model in Keras 3 (torch or jax backend, no TensorFlow
needed) when keras is installed; `verify=True` without keras is a ConversionError that
says to install it or pass verify=False.
"""
from __future__ import annotations

from .api import convert_keras, verify_keras_file
from .layers import SUPPORTED

__all__ = ["convert_keras", "verify_keras_file", "SUPPORTED"]
