"""Where Numba's on-disk cache goes. Must run before any kernel module is imported;
lstm_infer/kernels/__init__.py calls it, so it runs on the first load(), not on import.

Kernels live in two directories (KERNEL_DIRS): the shared building blocks and the
interpreter in `kernels/`, each op's kernels in `ops/`; Numba caches each next to its
source.

Numba caches next to the source (`__pycache__`) and falls back to a per-user
directory when that is not writable. We make the fallback explicit and safe: if
NUMBA_CACHE_DIR is unset and the package directory is not writable, use
`$XDG_CACHE_HOME/lstm-infer/numba` (or `~/.cache/...`), and if that is not writable
either, a temporary directory, with one warning.
"""
from __future__ import annotations

import hashlib
import os
import sys
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


_HERE = os.path.dirname(os.path.abspath(__file__))
KERNEL_DIRS = tuple(os.path.join(_HERE, d) for d in ("kernels", "ops"))


def _sources_hash() -> str:
    h = hashlib.sha256()
    for kdir in KERNEL_DIRS:
        for name in sorted(os.listdir(kdir)):
            if name.endswith(".py"):
                with open(os.path.join(kdir, name), "rb") as f:
                    h.update(os.path.basename(kdir).encode() + name.encode() + f.read())
    return h.hexdigest()


def _drop_stale_cache(cache_dir: str) -> None:
    """Numba keys each cached function on its own file's timestamp, so a kernel that
    inlines code from another kernel module (the interpreter inlines every op's step)
    keeps stale machine code when only that other module changes. Stamp the cache with
    a hash of all kernel sources and clear it when they change."""
    digest = _sources_hash()
    stamp = os.path.join(cache_dir, "lstm_infer_sources.sha256")
    try:
        with open(stamp) as f:
            if f.read() == digest:
                return
    except OSError:
        pass
    try:
        for name in os.listdir(cache_dir):
            if name.endswith((".nbi", ".nbc")):
                os.remove(os.path.join(cache_dir, name))
        tmp = f"{stamp}.{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(digest)
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


ENABLED = True  # read by kernels/__init__.py: cache=ENABLED
COLD = False  # set by kernels/__init__.py: no cached interpreter yet, the first load compiles


def kernel_cache_dirs() -> list[str]:
    """Where Numba keeps (or will keep) the kernels of each KERNEL_DIRS entry now."""
    root = os.environ.get("NUMBA_CACHE_DIR")
    if not root:
        return [os.path.join(d, "__pycache__") for d in KERNEL_DIRS]
    return [os.path.join(root, "_".join([os.path.basename(d), hashlib.sha1(d.encode()).hexdigest()]))
            for d in KERNEL_DIRS]


def interpreter_cached() -> bool:
    """Whether this interpreter (Python version) has compiled the step interpreter into
    the cache: its index files are `interpreter.<function>-<line>.py<XY>.nbi` in the
    kernels/ cache directory. Without them the first load compiles for tens of seconds."""
    suffix = f".py{sys.version_info[0]}{sys.version_info[1]}.nbi"
    if not ENABLED:
        return False
    try:
        names = os.listdir(kernel_cache_dirs()[0])
    except OSError:
        return False
    return any(n.startswith("interpreter.") and n.endswith(suffix) for n in names)


def configure_cache() -> None:
    """Pick the kernel cache directory; must run before the kernel modules are imported."""
    _pick_cache_dir()
    numba_config = getattr(sys.modules.get("numba.core.config"), "CACHE_DIR", None)
    if numba_config is not None and numba_config != os.environ.get("NUMBA_CACHE_DIR", ""):
        # Numba was imported before the directory was chosen (it reads NUMBA_CACHE_DIR at
        # import, and fixes a function's cache location when the function is decorated).
        sys.modules["numba.core.config"].reload_config()


def _pick_cache_dir() -> None:
    global ENABLED
    if os.environ.get("NUMBA_CACHE_DIR"):
        if _writable(os.environ["NUMBA_CACHE_DIR"]):
            _drop_stale_cache_tree(os.environ["NUMBA_CACHE_DIR"])
            return
        warnings.warn(f"lstm-infer: NUMBA_CACHE_DIR={os.environ['NUMBA_CACHE_DIR']} is not writable; "
                      "looking for another place for the kernel cache", RuntimeWarning, stacklevel=4)
        del os.environ["NUMBA_CACHE_DIR"]
    here = [os.path.join(d, "__pycache__") for d in KERNEL_DIRS]
    if all(_writable(d) for d in here):
        for d in here:
            _drop_stale_cache(d)
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
                  "directory is writable", RuntimeWarning, stacklevel=4)


def _drop_stale_cache_tree(root: str) -> None:
    """Under NUMBA_CACHE_DIR, Numba keeps the kernels of each source directory in
    `<root>/<dirname>_<sha1 of its path>` (its _CacheLocator.get_suitable_cache_subpath);
    stamp those before anything is compiled, so only a change of sources clears them."""
    for kdir in KERNEL_DIRS:
        sub = "_".join([os.path.basename(kdir), hashlib.sha1(kdir.encode()).hexdigest()])
        target = os.path.join(root, sub)
        try:
            os.makedirs(target, exist_ok=True)
        except OSError:
            continue
        _drop_stale_cache(target)
