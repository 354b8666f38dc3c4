"""Atomic file writes: a file either appears complete under its final name or not at all.

Writers write to a hidden temporary file in the destination's directory (same file system, so
:func:`os.replace` is an atomic rename) and rename it into place only once writing succeeded. On
any exception, ``KeyboardInterrupt`` included, the temporary file is removed. OS errors become
:class:`~samadapter.errors.OutputError` naming the path (``disk full ...`` for ``ENOSPC`` /
``EDQUOT``).

Files are not ``fsync``-ed: this protects against interrupted or crashing runs, not power loss.
:func:`read_json_object` reads such a JSON file back, as untrusted input.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import secrets
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from samadapter.errors import OutputError

_DISK_FULL_ERRNOS = frozenset(
    code for code in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) if code is not None
)


def output_error(err: OSError, path: str | os.PathLike[str]) -> OutputError:
    """Translate an :class:`OSError` raised while writing ``path`` into an :class:`OutputError`.

    Args:
        err: the error raised by the OS.
        path: the output being written (the final name, not a temporary one).

    Returns:
        ``OutputError("disk full while writing PATH", hint=...)`` for ``ENOSPC`` / ``EDQUOT``, else
        an ``OutputError`` naming the path and the OS's reason.
    """
    if err.errno in _DISK_FULL_ERRNOS:
        return OutputError(
            f"disk full while writing {path}", hint="free space or choose another --output"
        )
    reason = err.strerror or str(err) or type(err).__name__
    if isinstance(err, PermissionError):
        return OutputError(
            f"cannot write {path}: {reason}",
            hint="check the folder's permissions or choose another --output",
        )
    return OutputError(f"cannot write {path}: {reason}", hint="choose another --output")


def temp_name(path: Path) -> Path:
    """A fresh hidden temporary name next to ``path``.

    ``out/a.overlay.png`` -> ``out/.a.overlay.png.3f9c01ab.tmp.png``: hidden, marked ``.tmp``, and
    ending in the real suffix so PIL / OpenCV pick the format from it.
    """
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp{path.suffix}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write to; move it to ``path`` when the block succeeds.

    The temporary file is created empty (permissions from the umask, like a normal file) in
    ``path``'s directory, which is created if missing. After the block, it replaces ``path``
    atomically (an existing file is overwritten). If the block raises, the temporary file is
    removed and the exception propagates (``OSError`` as :class:`OutputError`).

    Args:
        path: final destination.

    Yields:
        The temporary path (write the whole file there, e.g. ``img.save(tmp)``).

    Raises:
        OutputError: the directory or file cannot be created / written (disk full, permissions).

    Example:
        >>> with atomic_path("out/x.png") as tmp:  # doctest: +SKIP
        ...     Image.fromarray(arr).save(tmp)
    """
    final = Path(path)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = _create_temp(final)
    except OSError as e:
        raise output_error(e, final) from e
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(e, OSError):
            raise output_error(e, final) from e
        raise


def _create_temp(final: Path) -> Path:
    """Create an empty, exclusive temporary file next to ``final`` and return its path."""
    for _ in range(100):
        tmp = temp_name(final)
        try:
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(errno.EEXIST, "could not create a unique temporary file", str(final))


def atomic_write(path: str | os.PathLike[str], write_fn: Callable[[Path], Any]) -> Path:
    """Call ``write_fn(tmp_path)`` and move the result to ``path`` atomically.

    Args:
        path: final destination.
        write_fn: writes the complete file to the path it is given.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OutputError: as :func:`atomic_path`; other exceptions of ``write_fn`` propagate unchanged
            (and leave no file behind).
    """
    final = Path(path)
    with atomic_path(final) as tmp:
        write_fn(tmp)
    return final


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def to_jsonable(obj: Any) -> Any:
    """Recursively convert ``obj`` into plain JSON types.

    numpy scalars become Python numbers, arrays nested lists, tuples / sets lists, paths strings,
    and non-finite floats (NaN, inf) ``None`` (JSON has no NaN).

    Raises:
        TypeError: for objects with no JSON form.
    """
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    np = sys.modules.get("numpy")  # no numpy value exists unless numpy is loaded (the CLI's
    if np is not None and isinstance(obj, np.generic | np.ndarray):  # start-up loads none)
        return to_jsonable(obj.tolist())
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return [to_jsonable(v) for v in sorted(obj, key=repr)]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, bytes):
        return obj.decode("utf-8", errors="surrogateescape")
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def dumps_json(obj: Any) -> str:
    """Compact, strictly valid JSON text of ``obj`` (see :func:`to_jsonable`), UTF-8 names kept.

    File names that are not valid UTF-8 reach Python as strings with lone surrogates (the
    ``surrogateescape`` form of ``caf\\xe9.jpg`` is ``'caf\\udce9.jpg'``). They cannot be
    encoded as UTF-8, so each is written as a ``\\udcXX`` JSON escape: the text stays valid UTF-8
    and a Python reader gets back the same string, which ``os.fsencode`` turns into the original
    bytes.
    """
    text = json.dumps(to_jsonable(obj), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def read_json_object(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The JSON object a file we wrote earlier holds, read as untrusted input: ``None`` when it
    is missing, unreadable, not JSON, nested too deeply or not an object."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as compact UTF-8 JSON to ``path`` atomically; returns ``path``.

    numpy scalars / arrays are converted and NaN / inf written as ``null`` (:func:`to_jsonable`).
    The text is built before anything is written, so an unserialisable ``obj`` leaves no file.
    """
    data = (dumps_json(obj) + "\n").encode("utf-8")
    return write_bytes_atomic(path, data)
