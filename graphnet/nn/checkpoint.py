"""Checkpoints of named NumPy arrays: atomic to write, verified when read.

A checkpoint is an ordinary ``.npz`` archive (``np.load`` opens it) with one
extra member, ``__graphnet__``: the UTF-8 bytes of a JSON header that marks the
file as a graphnet checkpoint and records, for every array, its shape, dtype
and the SHA-256 of its bytes, plus the caller's own metadata.

Two failures are guarded against:

* A crash or a full disk while saving must not destroy the previous
  checkpoint.  ``save`` writes a temporary file next to the target, fsyncs it,
  renames it over the target (``os.replace`` is atomic on one file system) and
  fsyncs the directory so the rename itself survives a power cut.
* A truncated, corrupted, tampered-with or foreign file must not be loaded
  silently, and must never be unpickled (unpickling can run arbitrary code):
  ``load`` uses ``allow_pickle=False``, checks every hash, and raises
  :class:`~graphnet.errors.CheckpointError` naming the file and the problem.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import zipfile
import zlib

import numpy as np

from graphnet.errors import CheckpointError

__all__ = ["save", "load", "FORMAT_VERSION"]

FORMAT_VERSION = 1
_MARKER = "graphnet-checkpoint"
_HEADER_KEY = "__graphnet__"
# bool, signed and unsigned ints, floats, complex: types with a fixed byte
# layout.  Object, string, structured and datetime arrays are refused.
_ALLOWED_KINDS = "biufc"


def _sha256(array: np.ndarray) -> str:
    """Hex SHA-256 of the array's bytes in C order."""
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def _json_default(value):
    """Let ``json.dumps`` write NumPy scalars and arrays found in metadata."""
    # Metadata often carries NumPy scalars (a float32 loss, an int64 epoch).
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# --------------------------------------------------------------------------- save

def _checked_arrays(path, arrays) -> dict[str, np.ndarray]:
    """Return the arrays to save as ndarrays, refusing bad names and non-numeric dtypes."""
    if not isinstance(arrays, dict):
        raise CheckpointError(
            f"cannot save {path!r}: arrays must be a dict of name -> array, got {type(arrays).__name__}")
    checked = {}
    for key, value in arrays.items():
        if not isinstance(key, str) or not key:
            raise CheckpointError(f"cannot save {path!r}: array names must be non-empty strings, got {key!r}")
        if key == _HEADER_KEY:
            raise CheckpointError(f"cannot save {path!r}: the name {_HEADER_KEY!r} is reserved")
        array = np.asarray(value)
        if array.dtype.kind not in _ALLOWED_KINDS:
            raise CheckpointError(
                f"cannot save {path!r}: array {key!r} has dtype {array.dtype}; only bool, "
                f"integer, float and complex arrays can be checkpointed")
        checked[key] = array
    return checked


def _header_bytes(path, arrays, metadata) -> np.ndarray:
    """Build the ``__graphnet__`` JSON header and return it as a uint8 array."""
    if metadata is not None and not isinstance(metadata, dict):
        raise CheckpointError(
            f"cannot save {path!r}: metadata must be a dict or None, got {type(metadata).__name__}")
    header = {
        "format": _MARKER,
        "version": FORMAT_VERSION,
        "arrays": {key: {"shape": list(a.shape), "dtype": a.dtype.str, "sha256": _sha256(a)}
                   for key, a in arrays.items()},
        "metadata": metadata or {},
    }
    try:
        text = json.dumps(header, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"cannot save {path!r}: metadata is not JSON serializable ({exc})") from exc
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)


def _open_temp_beside(path):
    """Create a new temporary file in the directory of ``path``; return (fd, temp path)."""
    directory, base = os.path.split(os.path.abspath(path))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        temp = os.path.join(directory, f".{base}.{secrets.token_hex(6)}.tmp")
        try:
            # Mode 0o666 lets the umask decide the permissions, as for any new file.
            return os.open(temp, flags, 0o666), temp
        except FileExistsError:
            continue


def _fsync_directory(directory):
    """fsync ``directory`` so a rename inside it is durable (best effort)."""
    # Makes the rename durable.  Windows cannot open a directory, and some
    # file systems refuse to fsync one; the data itself is already on disk then.
    if os.name == "nt":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save(path, arrays, metadata=None) -> None:
    """Write ``arrays`` (a dict of name -> numeric array) to the ``.npz`` file ``path``.

    ``metadata`` is an optional JSON-serializable dict (epoch, loss,
    hyper-parameters) returned by :func:`load`.  The file appears at ``path``
    only once it is completely written: an error or a crash midway leaves any
    previous checkpoint there untouched and no temporary file behind.
    ``path`` is used as given (no ``.npz`` is appended).
    """
    path = os.fspath(path)
    arrays = _checked_arrays(path, arrays)
    header = _header_bytes(path, arrays, metadata)
    members = {**arrays, _HEADER_KEY: header}

    fd, temp = _open_temp_beside(path)
    try:
        with os.fdopen(fd, "wb") as file:
            # Written member by member, as np.savez does, but with
            # allow_pickle=False and without savez's keyword arguments, which
            # would clash with arrays named "file" or "allow_pickle".
            with zipfile.ZipFile(file, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
                for key, array in members.items():
                    with zf.open(key + ".npy", "w", force_zip64=True) as member:
                        np.lib.format.write_array(member, array, allow_pickle=False)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        try:
            os.remove(temp)
        except OSError:
            pass
        raise
    _fsync_directory(os.path.dirname(os.path.abspath(path)))


# --------------------------------------------------------------------------- load

def _open_npz(path):
    """Open ``path`` with ``np.load(allow_pickle=False)`` as an NpzFile or raise CheckpointError."""
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint {path!r} does not exist")
    if os.path.isdir(path):
        raise CheckpointError(f"checkpoint {path!r} is a directory, not a file")
    try:
        npz = np.load(path, allow_pickle=False)
    except ValueError as exc:
        # Neither a zip nor a .npy: NumPy's last resort would be unpickling.
        raise CheckpointError(
            f"checkpoint {path!r} is neither an .npz archive nor a .npy array; NumPy would "
            f"have to unpickle it, which graphnet refuses because a pickle can run arbitrary "
            f"code ({exc})") from exc
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise CheckpointError(f"checkpoint {path!r} is truncated or corrupt ({exc})") from exc
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise CheckpointError(
            f"checkpoint {path!r} holds a single .npy array, not a graphnet .npz checkpoint")
    return npz


def _read_member(path, npz, key) -> np.ndarray:
    """Read one array from the archive, turning every failure into a CheckpointError."""
    try:
        value = npz[key]
    except ValueError as exc:
        if "pickle" in str(exc) or "Object arrays" in str(exc):
            raise CheckpointError(
                f"checkpoint {path!r}: array {key!r} is a pickled object array, which graphnet "
                f"refuses to load because unpickling can run arbitrary code") from exc
        raise CheckpointError(f"checkpoint {path!r}: array {key!r} is corrupt ({exc})") from exc
    except (OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        raise CheckpointError(f"checkpoint {path!r}: array {key!r} is truncated or corrupt ({exc})") from exc
    except MemoryError as exc:
        # A hostile or corrupt .npy header can claim a shape no machine can hold.
        raise CheckpointError(f"checkpoint {path!r}: array {key!r} claims a size too large to load; "
                              "the file is corrupt or not a graphnet checkpoint") from exc
    if not isinstance(value, np.ndarray):
        raise CheckpointError(f"checkpoint {path!r}: member {key!r} is not a .npy array")
    return value


def _read_header(path, npz) -> dict:
    """Read, decode and validate the ``__graphnet__`` header of an open archive."""
    if _HEADER_KEY not in npz.files:
        raise CheckpointError(
            f"{path!r} is an .npz archive but not a graphnet checkpoint (no {_HEADER_KEY!r} entry)")
    raw = _read_member(path, npz, _HEADER_KEY)
    try:
        if raw.dtype != np.uint8 or raw.ndim != 1:
            raise ValueError(f"expected 1-D uint8 bytes, found {raw.dtype} of shape {raw.shape}")
        header = json.loads(raw.tobytes().decode("utf-8"))
        if not isinstance(header, dict) or header.get("format") != _MARKER:
            raise ValueError(f"the format marker {_MARKER!r} is missing")
        if not isinstance(header.get("arrays"), dict):
            raise ValueError("the table of arrays is missing")
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path!r} is not a valid graphnet checkpoint: bad header ({exc})") from exc
    version = header.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path!r} has format version {version!r}; this graphnet reads "
            f"versions up to {FORMAT_VERSION} (upgrade graphnet)")
    return header


def _verify(path, key, array, info) -> None:
    """Compare an array read back with what the header recorded when it was saved."""
    problem = None
    if not isinstance(info, dict):
        problem = "has no valid header entry"
    elif list(array.shape) != info.get("shape"):
        problem = f"has shape {array.shape} but was saved with shape {tuple(info.get('shape') or ())}"
    elif array.dtype.str != info.get("dtype"):
        problem = f"has dtype {array.dtype.str} but was saved with dtype {info.get('dtype')}"
    elif _sha256(array) != info.get("sha256"):
        problem = "does not match the SHA-256 recorded when it was saved"
    if problem:
        raise CheckpointError(
            f"checkpoint {path!r}: array {key!r} {problem} (the file was modified or corrupted)")


def _check_expected(path, arrays, expected) -> None:
    """Raise unless ``arrays`` holds exactly the names, shapes and dtypes in ``expected``."""
    missing = sorted(set(expected) - set(arrays))
    extra = sorted(set(arrays) - set(expected))
    if missing or extra:
        raise CheckpointError(
            f"checkpoint {path!r} does not hold the expected arrays: "
            f"missing {missing}, unexpected {extra}")
    for key, spec in expected.items():
        try:
            shape, dtype = spec
        except (TypeError, ValueError):
            raise CheckpointError(
                f"expected[{key!r}] must be a (shape, dtype) pair, got {spec!r}") from None
        found = arrays[key]
        if shape is not None and tuple(shape) != found.shape:
            raise CheckpointError(
                f"checkpoint {path!r}: array {key!r} has shape {found.shape}, expected {tuple(shape)}")
        if dtype is not None and np.dtype(dtype) != found.dtype:
            raise CheckpointError(
                f"checkpoint {path!r}: array {key!r} has dtype {found.dtype}, expected {np.dtype(dtype)}")


def load(path, expected=None) -> tuple[dict[str, np.ndarray], dict]:
    """Read a checkpoint written by :func:`save`; return ``(arrays, metadata)``.

    Every array is checked against the shape, dtype and SHA-256 recorded at
    save time.  ``expected``, if given, maps each name to a ``(shape, dtype)``
    pair (either may be None to skip that check); the checkpoint must then
    hold exactly those names with those shapes and dtypes.  Any problem raises
    :class:`~graphnet.errors.CheckpointError` naming the file and what is wrong.
    """
    path = os.fspath(path)
    if expected is not None and not isinstance(expected, dict):
        raise CheckpointError(
            f"expected must be a dict of name -> (shape, dtype) or None, got {type(expected).__name__}")
    with _open_npz(path) as npz:
        header = _read_header(path, npz)
        recorded = header["arrays"]
        stored = [name for name in npz.files if name != _HEADER_KEY]
        unlisted = sorted(set(stored) - set(recorded))
        absent = sorted(set(recorded) - set(stored))
        if unlisted or absent:
            raise CheckpointError(
                f"checkpoint {path!r} does not match its own header: "
                f"arrays missing from the file {absent}, arrays not in the header {unlisted}")
        arrays = {}
        for key, info in recorded.items():
            array = _read_member(path, npz, key)
            _verify(path, key, array, info)
            arrays[key] = array
    if expected is not None:
        _check_expected(path, arrays, expected)
    return arrays, header.get("metadata") or {}
