"""The one message a newcomer sees while the kernels compile on first use.

A first load on an empty kernel cache compiles the interpreter and the ops' kernels for
about a minute (48-58 s of CPU for a small LSTM or GRU model on a 2-core AMD EPYC), and
a silent pause that long looks like a hang. When kernels/__init__.py found the cache cold,
Model.warmup() says so once on stderr, with a word per compiled entry point as it
finishes; a warm cache, a second load, or LSTM_INFER_QUIET=1 print nothing.
"""
from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from typing import Iterator

from . import _cache

# A cold load + first step of sensor_lstm measured 48.2 s of CPU on a quiet 2-core AMD EPYC
# (63.4 s before the interpreter's entry points were merged), 57 s with the machine loaded;
# the benchmark suite's empty-cache first output: 56.5 s, then 67.8 s (commit 8f3d55d, with
# the batched/streams kernels and the fused ConvLSTM cell), 80.4 s (commit 2a6540a, with the
# int8 integer mat-vec, the LSTM batch FMA kernel and the ConvLSTM IR kernels; a noisier
# machine that day), 71.3 s (commit 48a94ee, the step interpreter without NRT and the GRU
# batch kernel). Kept at 80: the figure has moved by 10 s from machine to machine.
FIRST_USE_SECONDS = 80


def should_announce() -> bool:
    """A cold cache (no compiled interpreter for this Python) and no LSTM_INFER_QUIET=1."""
    return _cache.COLD and os.environ.get("LSTM_INFER_QUIET", "") not in ("1", "true", "yes")


class _Notice:
    def __init__(self, enabled: bool):
        self.enabled = enabled

    def stage(self, name: str) -> None:
        """One entry point compiled: its name, at once (the progress indication)."""
        if self.enabled:
            sys.stderr.write(f" {name}")
            sys.stderr.flush()


@contextmanager
def compile_notice() -> Iterator[_Notice]:
    """Wraps the first warm-up: prints the notice when should_announce(), then marks the
    cache warm for this process so later loads stay silent."""
    enabled = should_announce()
    t0 = time.perf_counter()
    if enabled:
        where = "first use only" if _cache.ENABLED else "no writable cache: in every process"
        sys.stderr.write(f"lstm-infer: compiling kernels ({where}, about {FIRST_USE_SECONDS} s; "
                         "`lstm-infer compile` does it ahead):")
        sys.stderr.flush()
    try:
        yield _Notice(enabled)
    finally:
        if enabled:
            sys.stderr.write(f" - done in {time.perf_counter() - t0:.1f} s\n")
            sys.stderr.flush()
        _cache.COLD = False


def precompile_notice() -> None:
    """`lstm-infer compile` on a cold cache: the same notice, worded for that command
    (its own summary line follows when it is done); later loads stay silent."""
    if should_announce():
        sys.stderr.write("lstm-infer: compiling every kernel into the cache (once; a minute "
                         "or more, every op kind is compiled)...\n")
        sys.stderr.flush()
    _cache.COLD = False
