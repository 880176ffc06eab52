"""Where Numba's on-disk cache goes. Must run before any kernel module is imported.

Numba caches next to the source (`__pycache__`) and falls back to a per-user
directory when that is not writable. We make the fallback explicit and safe: if
NUMBA_CACHE_DIR is unset and the package directory is not writable, use
`$XDG_CACHE_HOME/lstm-infer/numba` (or `~/.cache/...`), and if that is not writable
either, a temporary directory, with one warning.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import warnings


def _writable(path: str) -> bool:
    try:
        os.makedirs(path, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".probe", delete=True)
        probe.close()
        return True
    except OSError:
        return False


def _drop_stale_cache(cache_dir: str) -> None:
    """Numba keys each cached function on its own file's timestamp, so a kernel that
    inlines code from another kernel module keeps stale machine code when only that
    other module changes. Stamp the cache with a hash of all kernel sources and clear
    it when they change."""
    kdir = os.path.join(os.path.dirname(__file__), "kernels")
    h = hashlib.sha256()
    for name in sorted(os.listdir(kdir)):
        if name.endswith(".py"):
            with open(os.path.join(kdir, name), "rb") as f:
                h.update(name.encode() + f.read())
    stamp = os.path.join(cache_dir, "lstm_infer_sources.sha256")
    try:
        with open(stamp) as f:
            if f.read() == h.hexdigest():
                return
    except OSError:
        pass
    try:
        for name in os.listdir(cache_dir):
            if name.endswith((".nbi", ".nbc")):
                os.remove(os.path.join(cache_dir, name))
        tmp = f"{stamp}.{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(h.hexdigest())
        os.replace(tmp, stamp)
    except OSError:
        pass  # another process got there first, or read-only: nothing to fix here


def configure_cache() -> None:
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    here = os.path.join(os.path.dirname(__file__), "kernels", "__pycache__")
    if _writable(here):
        _drop_stale_cache(here)
        return
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    for candidate in (os.path.join(base, "lstm-infer", "numba"),
                      os.path.join(tempfile.gettempdir(), f"lstm-infer-numba-{os.getuid()}")):
        if _writable(candidate):
            os.environ["NUMBA_CACHE_DIR"] = candidate
            return
    warnings.warn("lstm-infer: no writable directory for the Numba kernel cache; kernels "
                  "will be compiled in every process", RuntimeWarning, stacklevel=3)
