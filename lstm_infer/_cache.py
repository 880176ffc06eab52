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


_warned_corrupt = False


def _corrupt(path: str, err: Exception) -> None:
    global _warned_corrupt
    if not _warned_corrupt:
        _warned_corrupt = True
        warnings.warn(f"lstm-infer: damaged Numba cache file {path} ({type(err).__name__}: {err}); "
                      "treating it as missing, the kernel is compiled again", RuntimeWarning,
                      stacklevel=2)


def harden_numba_cache() -> None:
    """Make a damaged cache file (truncated copy, disk full, bit rot) a cache miss instead
    of an exception on the first call of a kernel. Numba itself only forgives OSError.
    Its writers are atomic (temp file + rename), so concurrent processes need nothing more."""
    try:
        from numba.core.caching import IndexDataCacheFile
    except ImportError:  # a Numba without this class: leave it alone
        return
    if getattr(IndexDataCacheFile, "_lstm_infer_hardened", False):
        return
    load_index, load_data = IndexDataCacheFile._load_index, IndexDataCacheFile._load_data

    def _load_index(self):
        try:
            return load_index(self)
        except Exception as e:  # noqa: BLE001 - any unreadable index is a miss
            _corrupt(self._index_path, e)
            return {}

    def _load_data(self, name):
        try:
            return load_data(self, name)
        except OSError:
            raise  # Numba's own handling (file removed meanwhile)
        except Exception as e:  # noqa: BLE001
            _corrupt(self._data_path(name), e)
            raise OSError(str(e)) from e  # -> Numba's "missing file" path: recompile

    IndexDataCacheFile._load_index = _load_index
    IndexDataCacheFile._load_data = _load_data
    IndexDataCacheFile._lstm_infer_hardened = True


ENABLED = True  # read by kernels/cells.py: cache=ENABLED


def configure_cache() -> None:
    """Pick the kernel cache directory; must run before the kernel modules are imported."""
    global ENABLED
    if os.environ.get("NUMBA_CACHE_DIR"):
        if _writable(os.environ["NUMBA_CACHE_DIR"]):
            _drop_stale_cache_tree(os.environ["NUMBA_CACHE_DIR"])
            return
        warnings.warn(f"lstm-infer: NUMBA_CACHE_DIR={os.environ['NUMBA_CACHE_DIR']} is not writable; "
                      "looking for another place for the kernel cache", RuntimeWarning, stacklevel=3)
        del os.environ["NUMBA_CACHE_DIR"]
    here = os.path.join(os.path.dirname(__file__), "kernels", "__pycache__")
    if _writable(here):
        _drop_stale_cache(here)
        return
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    for candidate in (os.path.join(base, "lstm-infer", "numba"),
                      os.path.join(tempfile.gettempdir(), f"lstm-infer-numba-{os.getuid()}")):
        if _writable(candidate):
            os.environ["NUMBA_CACHE_DIR"] = candidate
            _drop_stale_cache_tree(candidate)
            return
    ENABLED = False
    warnings.warn("lstm-infer: no writable directory for the Numba kernel cache (package "
                  f"directory, {base}, {tempfile.gettempdir()}); kernels will be compiled in every "
                  "process. Set NUMBA_CACHE_DIR, or run `lstm-infer compile` where the package "
                  "directory is writable", RuntimeWarning, stacklevel=3)


def _drop_stale_cache_tree(root: str) -> None:
    """Under NUMBA_CACHE_DIR, Numba keeps our kernels in `<root>/kernels_<sha1 of the
    kernels directory's path>` (its _CacheLocator.get_suitable_cache_subpath); stamp that
    directory before anything is compiled, so only a change of sources clears it."""
    kdir = os.path.dirname(os.path.abspath(os.path.join(os.path.dirname(__file__), "kernels", "x")))
    sub = "_".join([os.path.basename(kdir), hashlib.sha1(kdir.encode()).hexdigest()])
    target = os.path.join(root, sub)
    try:
        os.makedirs(target, exist_ok=True)
    except OSError:
        return
    _drop_stale_cache(target)
