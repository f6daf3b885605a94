"""The on-disk cache of generated kernel modules.

Numba's ``cache=True`` cannot cache source that was ``exec``'d, so each
generated module is written to a content-addressed file and imported from
there; its ``@numba.njit(cache=True)`` kernels then keep their machine code in
Numba's own cache (``__pycache__`` next to the file, or under
``NUMBA_CACHE_DIR``), and a second process starts warm.

Layout: ``<cache dir>/<name_hint>_<key[:24]>.py``, where the key is the sha256
of the source, graphnet's version, Numba's version and Python's version.  The
first line of each file is ``# graphnet-kernel sha256=<sha256 of the rest>``.

Rules that keep the cache safe for many processes at once:

- A file is published whole or not at all: written to a temporary file in the
  same directory, fsync'd, then linked to its final name with ``os.link``,
  which fails if the name exists.  The loser of a race keeps the winner's file.
- A published file is never rewritten: Numba keys its cache on the source
  file's mtime and size, so a rewrite would invalidate the compiled kernels.
- A file whose header is missing or does not match its content (a truncated
  write, a disk error, a hand edit) is never imported: it is moved aside,
  deleted, and written again.
- The module is registered in ``sys.modules`` before it runs: Numba reimports
  it by name when it loads a kernel from its cache in a later process.
- Numba's own files (``__pycache__/*.nbi`` index, ``*.nbc`` machine code) are
  read on a kernel's first call.  If that call fails and one of them does not
  load (truncated, garbled), :func:`repair_numba_cache` flushes the index and
  the caller calls again: Numba compiles afresh and writes new files.

The cache directory is ``$GRAPHNET_CACHE_DIR`` if set, else
``$XDG_CACHE_HOME/graphnet``, else ``~/.cache/graphnet``;
:func:`set_cache_dir` overrides all three for this process.

Counting Numba compilations (for tests): every Numba dispatcher has
``dispatcher.stats``, whose ``cache_misses`` counts compilations per signature
and ``cache_hits`` counts signatures loaded from Numba's disk cache.
:func:`count_numba_compiles` and :func:`count_numba_cache_hits` add them up
for one dispatcher or for every dispatcher in a loaded module, so a warm
process shows ``count_numba_compiles(module) == 0``.
"""

import functools
import hashlib
import importlib.metadata
import importlib.util
import os
import platform
import re
import shutil
import sys
import tempfile
import threading
import uuid

import numba

from graphnet.errors import CacheError, CompileError, GraphnetError

FALLBACK_VERSION = "0.1.0"
"""graphnet's version when it runs from a checkout that is not installed."""

HEADER_PREFIX = "# graphnet-kernel sha256="
ENV_VAR = "GRAPHNET_CACHE_DIR"

_MODULE_FILE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*_[0-9a-f]{24}\.py$")
_SCRATCH_FILE = re.compile(r"^\..*\.(tmp|corrupt)$")

_lock = threading.RLock()
_cache_dir_override = None
_loaded = {}  # (cache dir, key) -> module
_stats = {"modules_written": 0, "modules_loaded": 0, "corrupt_entries_removed": 0}


# -- where the cache lives ---------------------------------------------------


def set_cache_dir(path):
    """Use ``path`` as the cache directory in this process; ``None`` goes back to the default."""
    global _cache_dir_override
    _cache_dir_override = None if path is None else os.fspath(path)


def get_cache_dir():
    """The absolute path of the cache directory (it may not exist yet)."""
    path = _cache_dir_override or os.environ.get(ENV_VAR)
    if not path:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
        path = os.path.join(base, "graphnet")
    return os.path.abspath(os.path.expanduser(path))


def clear_cache():
    """Delete every cached module, scratch file and Numba cache file in the cache directory.

    Files that are not the cache's own are left alone.  Modules already loaded
    in this process stay usable; the next :func:`load_module` writes them again.
    """
    directory = get_cache_dir()
    with _lock:
        for loaded_key in [k for k in _loaded if k[0] == directory]:
            del _loaded[loaded_key]
        try:
            entries = list(os.scandir(directory))
        except FileNotFoundError:
            return
        except OSError as exc:
            raise _unusable(directory, exc) from exc
        for entry in entries:
            if entry.name == "__pycache__" and entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            elif _MODULE_FILE.match(entry.name) or _SCRATCH_FILE.match(entry.name):
                _remove_quietly(entry.path)


# -- loading -----------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def graphnet_version():
    """The installed graphnet's version, or :data:`FALLBACK_VERSION` in a bare checkout."""
    try:
        return importlib.metadata.version("graphnet")
    except importlib.metadata.PackageNotFoundError:
        return FALLBACK_VERSION


#: the njit helpers' files that generated kernels call: Numba inlines them into each kernel's
#: cached code, so an edit of one must give every kernel a new cache entry
HELPER_FILES = ("compiler/render/scalar_prelude.py", "compiler/render/row_math.py",
                "compiler/render/vector_math.py", "ops/rng.py")
_helpers_digest = None


def helpers_digest():
    """sha256 (hex) of the helper files' text, once per process."""
    global _helpers_digest
    if _helpers_digest is None:
        digest = hashlib.sha256()
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        for name in HELPER_FILES:
            with open(os.path.join(root, name), "rb") as file:
                digest.update(file.read())
        _helpers_digest = digest.hexdigest()
    return _helpers_digest


def cache_key(source):
    """The sha256 (hex) that names ``source``'s cache entry."""
    digest = hashlib.sha256()
    python = f"{platform.python_implementation()} {platform.python_version()}"
    for part in (source, graphnet_version(), numba.__version__, python, helpers_digest()):
        digest.update(part.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


def load_module(source, name_hint="kernels"):
    """Import the generated module ``source`` through the on-disk cache.

    The same source gives the same module object for the life of the process.
    Raises CacheError when the cache directory cannot be written, and
    CompileError (naming the file) when the module itself fails to run.
    """
    if not name_hint.isidentifier():
        raise GraphnetError(f"load_module: name_hint must be a Python identifier, got {name_hint!r}")
    key = cache_key(source)
    directory = get_cache_dir()
    with _lock:
        module = _loaded.get((directory, key))
        if module is None:
            path = entry_path(source, name_hint)
            _ensure_entry(directory, path, _file_body(source))
            module = import_module_file(path, module_name_of(path))
            _loaded[(directory, key)] = module
        return module


def entry_path(source, name_hint="kernels"):
    """The file that holds (or will hold) ``source`` in the current cache directory."""
    return os.path.join(get_cache_dir(), f"{name_hint}_{cache_key(source)[:24]}.py")


def compile_stats():
    """Counts for this process: modules written to disk, imported from disk, corrupt entries removed."""
    with _lock:
        return dict(_stats)


def count_numba_compiles(dispatcher_or_module):
    """How many signatures Numba compiled (did not find in its disk cache), summed."""
    return sum(sum(stats.cache_misses.values()) for stats in _numba_stats(dispatcher_or_module))


def count_numba_cache_hits(dispatcher_or_module):
    """How many signatures Numba loaded from its disk cache instead of compiling, summed."""
    return sum(sum(stats.cache_hits.values()) for stats in _numba_stats(dispatcher_or_module))


def numba_cached(dispatcher):
    """Whether Numba's disk cache holds compiled code for ``dispatcher`` (its index file exists).

    Reads a private attribute of Numba's cache; on a Numba without it, says False
    (the only cost: a "compiling" message that was not needed)."""
    try:
        return os.path.exists(dispatcher._cache._cache_file._index_path)
    except AttributeError:
        return False


def numba_cached_signature(dispatcher, signature):
    """Whether Numba's disk cache holds ``dispatcher`` compiled for ``signature`` (a tuple of Numba types).

    Reads the index as Numba's own lookup does (private attributes; on a Numba
    without them, says False: the kernel is then compiled, not loaded)."""
    try:
        numba_cache = dispatcher._cache
        key = numba_cache._index_key(signature, _HostMagic.of(dispatcher))
        return key in numba_cache._cache_file._load_index()
    except Exception:  # noqa: BLE001 - no disk cache, an unreadable index: not cached
        return False


class _HostMagic:
    """The codegen's ``magic_tuple()`` (target triple, CPU, features), asked of LLVM once per process:
    each ask takes LLVM's lock, which a kernel loading on another thread holds for long."""

    _tuple = None

    @classmethod
    def of(cls, dispatcher):
        if cls._tuple is None:
            cls._tuple = dispatcher.targetctx.codegen().magic_tuple()
        return cls

    @classmethod
    def magic_tuple(cls):
        return cls._tuple


def repair_numba_cache(*dispatchers):
    """Flush Numba's on-disk cache of every dispatcher whose index or machine code does not load.

    Returns True if one was flushed: calling the kernel again then compiles it
    and writes fresh files, where loading the broken ones would fail every call.
    """
    repaired = False
    for dispatcher in dispatchers:
        numba_cache = getattr(dispatcher, "_cache", None)
        cache_file = getattr(numba_cache, "_cache_file", None)   # absent: no disk cache
        if cache_file is None:
            continue
        try:
            for data_name in set(cache_file._load_index().values()):
                try:
                    cache_file._load_data(data_name)
                except OSError:
                    pass   # removed meanwhile: Numba itself treats that as a miss
        except Exception:  # noqa: BLE001 - whatever a broken pickle raises
            with _lock:
                numba_cache.flush()
                _stats["corrupt_entries_removed"] += 1
            repaired = True
    return repaired


def kernel_helpers():
    """The njit helpers generated kernels call (scalar prelude, row-wise math, counter-based RNG)."""
    from graphnet.compiler.render import row_math, scalar_prelude, vector_math
    from graphnet.ops import rng
    return [f for module in (scalar_prelude, row_math, vector_math, rng) for f in vars(module).values()
            if isinstance(f, numba.core.dispatcher.Dispatcher)]


def compile_or_repair(dispatcher, signature):
    """``dispatcher.compile(signature)``: loads from Numba's disk cache, else compiles; if loading
    fails on a corrupt cache file (of the kernel or a helper it calls), the files are flushed and
    it compiles afresh, once."""
    try:
        dispatcher.compile(signature)
    except Exception:
        if not repair_numba_cache(dispatcher, *kernel_helpers()):
            raise
        dispatcher.compile(signature)


def _numba_stats(dispatcher_or_module):
    if hasattr(dispatcher_or_module, "stats"):
        return [dispatcher_or_module.stats]
    candidates = vars(dispatcher_or_module).values()
    return [obj.stats for obj in candidates if isinstance(obj, numba.core.dispatcher.Dispatcher)]


# -- the file protocol -------------------------------------------------------


def _file_body(source):
    if not source.endswith("\n"):
        source += "\n"
    return source.encode("utf-8")


def _file_bytes(body):
    header = HEADER_PREFIX + hashlib.sha256(body).hexdigest() + "\n"
    return header.encode("ascii") + body


def _entry_state(path, body):
    """'valid', 'missing' or 'corrupt': whether ``path`` holds exactly ``body`` under a good header."""
    try:
        with open(path, "rb") as file:
            data = file.read()
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        raise _unusable(os.path.dirname(path), exc) from exc
    header, _, rest = data.partition(b"\n")
    expected = (HEADER_PREFIX + hashlib.sha256(rest).hexdigest()).encode("ascii")
    # A good header over another body is a key collision or a hand edit: not ours either.
    return "valid" if header == expected and rest == body else "corrupt"


def _ensure_entry(directory, path, body):
    for _ in range(3):
        state = _entry_state(path, body)
        if state == "valid":
            return
        if state == "corrupt":
            _discard_corrupt(path, body)
        _publish(directory, path, _file_bytes(body))
    raise CacheError(
        f"the kernel cache entry {path} keeps turning out corrupt; "
        f"delete {directory} or point {ENV_VAR} (or set_cache_dir) elsewhere"
    )


def _discard_corrupt(path, body):
    # Move it aside first: between our check and now another process may have
    # replaced it with a good file, which must survive with its mtime intact.
    aside = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{uuid.uuid4().hex}.corrupt")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise _unusable(os.path.dirname(path), exc) from exc
    try:
        if _entry_state(aside, body) == "valid":
            _link_if_absent(aside, path)
        else:
            _stats["corrupt_entries_removed"] += 1
    finally:
        _remove_quietly(aside)


def _publish(directory, path, data):
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    except OSError as exc:
        raise _unusable(directory, exc) from exc
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the entry is meant to be read by others
        if _link_if_absent(tmp, path):
            _stats["modules_written"] += 1
    except OSError as exc:
        raise _unusable(directory, exc) from exc
    finally:
        _remove_quietly(tmp)


def _link_if_absent(src, dst):
    """Give ``src``'s file the name ``dst`` unless ``dst`` exists; True if we published it."""
    try:
        os.link(src, dst)
        return True
    except FileExistsError:
        return False
    except OSError:
        # A file system without hard links: a rename is still atomic, but two
        # racing writers may both publish (equal content; Numba recompiles once).
        if os.path.exists(dst):
            return False
        os.replace(src, dst)
        return True


def module_name_of(path):
    """The name a cache entry's module is imported under (in every process: Numba reimports it by name)."""
    return "_graphnet_" + os.path.basename(path)[: -len(".py")]


def import_module_file(path, module_name):
    """Import the published cache entry ``path`` as ``module_name``, registered in ``sys.modules`` first.

    Raises CompileError naming the file when the module fails to run."""
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        if sys.modules.get(module_name) is module:
            del sys.modules[module_name]
        raise CompileError(f"the generated module {path} failed to import: {exc}") from exc
    _stats["modules_loaded"] += 1
    return module


def sibling_module(anchor, file_name):
    """The cache entry ``file_name`` of the directory holding ``anchor`` (a generated module's
    ``__file__``), imported once per process. A generated module that calls other generated
    modules (a compiled loop calling its body's kernels) imports them with this, not by name:
    a compile worker or a new process has not imported them yet, and the cache directory is
    not on ``sys.path``."""
    path = os.path.join(os.path.dirname(os.path.abspath(anchor)), file_name)
    name = module_name_of(path)
    module = sys.modules.get(name)
    return module if module is not None else import_module_file(path, name)


def _remove_quietly(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _unusable(directory, exc):
    reason = exc.strerror or str(exc)
    return CacheError(
        f"graphnet cannot use {directory} as its kernel cache ({reason}); "
        f"set the {ENV_VAR} environment variable or call "
        f"graphnet.compiler.runtime.cache.set_cache_dir(path) to use a writable directory"
    )
