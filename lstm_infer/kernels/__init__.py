"""Numba building blocks shared by the ops, and the per-step interpreter.

Importing this package is the first thing any kernel module does, so it is where the
on-disk kernel cache is set up: Numba fixes a function's cache location when the
function is decorated, so the location must be chosen before any `@njit(cache=...)`.
This runs on the first `lstm_infer.load()` (not on `import lstm_infer`) and does
exactly what that load needs: pick a writable cache directory (setting NUMBA_CACHE_DIR
only when the package directory is not writable), clear cache files compiled from
older kernel sources, make damaged cache files a cache miss (lstm_infer/_cache.py), and
note whether the cache is cold, so the first load can say it is compiling.

Every kernel takes weights and sizes as arguments (never globals) and is compiled with
`KERNEL`: `error_model="numpy"` drops Python's division-by-zero checks, whose branches
stopped LLVM from vectorising any loop with a division (measured); `fastmath={"contract"}`
only allows fused multiply-add.

A kernel calls another with no literal int argument (`np.int64(0)`, not `0`; an int, not a
bool): Numba compiles the callee once more for each Literal[int] or bool argument type (mv
had 4 specialisations, gru_pointwise 3; a cold first load 66.5 -> 57.6 s CPU without them).
"""
from .. import _cache

_cache.configure_cache()
_cache.harden_numba_cache()
_cache.COLD = not _cache.interpreter_cached()  # before anything compiles (lstm_infer/_firstuse.py)

# `_nrt=True` (Numba's default, said explicitly): a kernel first compiled from the step
# interpreter, which runs without NRT (interpreter.step_sequence), would otherwise inherit
# that and could not allocate (or refcount) when later called from run() or step_many().
KERNEL = dict(cache=_cache.ENABLED, error_model="numpy", fastmath={"contract"}, _nrt=True)
# For kernels that allocate nothing and return no array: no reference counting (Numba's
# NRT) inside them, their array arguments borrowed from the caller. Each slice such a
# kernel takes otherwise took and dropped a reference with atomic instructions, a fixed
# cost per call that small models pay on every step: set_bias, mv, matvec_cols and the
# GRU/LSTM pointwise kernels borrowing took step() of GRU(1,8)+Linear 0.78 -> 0.70 us,
# GRU 2L(1,32) 1.44 -> 1.29, LSTM(1,32) 0.86 -> 0.82 (thread time, A/B in one process).
# (matvec_packed cannot: its stack accumulator, numba.carray, needs NRT.)
BORROWING = {**KERNEL, "_nrt": False}
