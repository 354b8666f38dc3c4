"""Where a run writes, and the check that it never replaces what it does not own.

The output folder (``-o``) of a batch run is laid out so that no two outputs can share a path
by construction:

* run-level entries have fixed names at the top of the folder: :data:`RUN_FILE`,
  :data:`MERGED_FILE`, :data:`FAILURES_FILE`, :data:`MANIFEST_FILE`, the feature cache
  :data:`FEATURES_DIR` and one folder per export format (``yolo/``, ``labelstudio/``,
  ``cvat/``);
* every per-image output is mirrored under :data:`PER_IMAGE_DIR`, named after the input's path
  relative to the run's common root **including its extension** (``photo.jpg`` ->
  ``per-image/photo.jpg.json``, ``.overlay.png``, ``.semantic.png``, ``.masks/``), so
  ``a.jpg`` and ``a.png`` never meet, and no image can take a run-level name.

:data:`MANIFEST_FILE` lists the top-level entries samadapter created in the folder. Before the
first write, :func:`check_plan` refuses (one error naming both sides) a run whose outputs would
replace a top-level entry samadapter did not create (a user's ``run.json`` when ``-o`` is a photo
folder), or where two inputs would write the same path, or one input's output would land inside
another's. Inputs under entries the manifest lists are never taken as images
(:func:`owned_paths`), so ``-o`` may be the input folder itself.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from samadapter.errors import OutputError
from samadapter.io.atomic import read_json_object, write_json_atomic

RUN_FILE = "run.json"
FAILURES_FILE = "failures.json"
MERGED_FILE = "annotations.json"
MANIFEST_FILE = "samadapter-manifest.json"
LOCK_FILE = ".samadapter.lock"
PER_IMAGE_DIR = "per-image"
FEATURES_DIR = "features"
RUN_FILES = (RUN_FILE, FAILURES_FILE, MERGED_FILE)
"""Run-level files every batch run writes (the manifest is written too, first)."""

_MANIFEST_TOOL = "samadapter"
_MANIFEST_VERSION = 1
# Temporary names of samadapter's own writers (io/atomic.py files, io/writers.py folders).
_TEMP_FILE = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp(\.[^.]+)?$")
_TEMP_DIR = re.compile(r"^\..+\.(tmp|old)-[0-9a-f]{8}$")


def safe_rel(value: object, what: str = "path") -> PurePosixPath:
    """Validate a relative output path (``sub/photo.jpg``) that may come from an untrusted file.

    Args:
        value: the candidate (must be a string).
        what: how to name it in the error.

    Returns:
        the path; it is relative, non-empty, and has no ``.``, ``..`` or empty components and
        no NUL (nor, on Windows, a backslash), so joined to a folder it stays inside it
        (symbolic links aside: :func:`check_plan` checks those).

    Raises:
        OutputError: anything else.
    """
    if (
        not isinstance(value, str)
        or not value
        or "\x00" in value
        or (os.name == "nt" and "\\" in value)
    ):
        raise OutputError(
            f"unsafe {what} {value!r}", hint="a relative path inside the output folder is expected"
        )
    parts = value.split("/")
    if value.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise OutputError(
            f"unsafe {what} {value!r}: it would leave the output folder",
            hint="a relative path inside the output folder is expected",
        )
    return PurePosixPath(value)


def image_output_dir(out_dir: Path, rel: PurePosixPath) -> Path:
    """The folder holding ``rel``'s per-image outputs (``OUT/per-image/<rel's folder>``)."""
    return out_dir / PER_IMAGE_DIR / rel.parent


def feature_path(out_dir: Path, rel: PurePosixPath) -> Path:
    """Where ``--cache-features`` keeps ``rel``'s masks and features."""
    return out_dir / FEATURES_DIR / f"{rel}.npz"


# -- manifest ---------------------------------------------------------------------------------


def read_manifest(out_dir: Path) -> set[str]:
    """The top-level entries samadapter created in ``out_dir`` (empty when there is no manifest).

    Raises:
        OutputError: the manifest exists but is not one samadapter wrote.
    """
    path = out_dir / MANIFEST_FILE
    if not os.path.lexists(path):
        return set()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise OutputError(
            f"cannot read {path}: {e}", hint="choose another --output, or move the folder away"
        ) from None
    owned = data.get("owned") if isinstance(data, dict) else None
    if (
        not isinstance(data, dict)
        or data.get("tool") != _MANIFEST_TOOL
        or not isinstance(owned, list)
        or not all(isinstance(n, str) for n in owned)
    ):
        raise OutputError(
            f"{path} is not a samadapter manifest",
            hint="choose another --output, or move the file away",
        )
    return {n for n in owned if n and "/" not in n and n not in (".", "..")} | {MANIFEST_FILE}


def write_manifest(out_dir: Path, owned: Iterable[str]) -> None:
    """Record ``owned`` (top-level names samadapter created here), atomically."""
    write_json_atomic(
        out_dir / MANIFEST_FILE,
        {
            "tool": _MANIFEST_TOOL,
            "version": _MANIFEST_VERSION,
            "note": "entries of this folder written by samadapter; others are never replaced",
            "owned": sorted(set(owned) | {MANIFEST_FILE}),
        },
    )


def owned_paths(out_dir: str | os.PathLike[str]) -> list[Path]:
    """Absolute paths of the entries samadapter created in ``out_dir`` (none if it has no
    readable manifest). Input collection skips everything under them."""
    out = Path(os.path.abspath(out_dir))
    if not out.is_dir():
        return []
    try:
        names = read_manifest(out)
    except OutputError:
        return []
    return [out / n for n in sorted(names)]


# -- the plan ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedOutput:
    """One path a run will write.

    Attributes:
        path: the file or folder (under the output folder).
        owner: who writes it, for messages (an input's name, or ``"the run"``).
        is_dir: a folder replaced as a whole (class masks), not a file.
    """

    path: Path
    owner: str
    is_dir: bool = False


def check_plan(
    out_dir: Path, top_level: Iterable[str], outputs: Iterable[PlannedOutput]
) -> set[str]:
    """Check a run's whole plan before its first write.

    Args:
        out_dir: the output folder (need not exist).
        top_level: names of the top-level entries the run will write.
        outputs: every per-image path the run may write.

    Returns:
        the manifest's entries after this run (what it may replace from now on).

    Raises:
        OutputError: ``out_dir`` is a file; a top-level entry exists that samadapter did not
            create; two outputs share a path, or one lies inside another's file or folder; an
            output would replace a folder with a file or the reverse; or an output resolves
            outside ``out_dir`` (through a symbolic link).
    """
    if os.path.lexists(out_dir) and not out_dir.is_dir():
        raise OutputError(
            f"--output {out_dir} is a file, not a folder",
            hint="give a folder (it is created if missing)",
        )
    owned = read_manifest(out_dir) if out_dir.is_dir() else set()
    wanted = set(top_level) | {MANIFEST_FILE}
    for name in sorted(wanted - owned):
        path = out_dir / name
        if os.path.lexists(path) and not owned and _legacy_run(out_dir):
            raise OutputError(
                f"{out_dir} holds a run of an earlier samadapter layout (no {MANIFEST_FILE}); "
                "its outputs are not reused and nothing of it is replaced",
                hint="choose a new --output, or move the old run away",
            )
        if os.path.lexists(path):
            raise OutputError(
                f"{path} exists and was not written by samadapter: this run would replace it",
                hint="move it away or choose another --output (samadapter only replaces what "
                f"its {MANIFEST_FILE} lists)",
            )
    real_out = Path(os.path.realpath(out_dir))
    by_path: dict[Path, PlannedOutput] = {}
    for planned in outputs:
        other = by_path.get(planned.path)
        if other is not None:
            raise OutputError(
                f"{other.owner} and {planned.owner} would both write {planned.path}",
                hint="rename one of them, or run them into separate --output folders",
            )
        by_path[planned.path] = planned
    for planned in by_path.values():
        for parent in planned.path.parents:
            if parent == out_dir or out_dir not in parent.parents:
                break
            holder = by_path.get(parent)
            if holder is not None:
                raise OutputError(
                    f"{planned.owner}'s output {planned.path} would lie inside {holder.owner}'s "
                    f"output {holder.path}",
                    hint="rename one of them, or run them into separate --output folders",
                )
        _check_existing(planned, out_dir, real_out)
    return owned | wanted


def _legacy_run(out_dir: Path) -> bool:
    """Whether ``out_dir`` holds a ``run.json`` of a samadapter version before the manifest."""
    return "samadapter_version" in (read_json_object(out_dir / RUN_FILE) or {})


def _check_existing(planned: PlannedOutput, out_dir: Path, real_out: Path) -> None:
    path = planned.path
    if os.path.lexists(path):
        if path.is_symlink():
            raise OutputError(
                f"{path} is a symbolic link; samadapter does not write through links",
                hint="remove the link or choose another --output",
            )
        if path.is_dir() != planned.is_dir:
            kind = "folder" if path.is_dir() else "file"
            raise OutputError(
                f"{planned.owner}'s output {path} exists as a {kind}",
                hint="move it away or choose another --output",
            )
    existing = path.parent
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if os.path.lexists(existing) and not existing.is_dir():
        raise OutputError(
            f"{planned.owner}'s output needs the folder {existing}, which is a file",
            hint="move it away or choose another --output",
        )
    if existing == out_dir or existing in out_dir.parents:
        return  # nothing exists below the output folder on this path yet
    real = Path(os.path.realpath(existing))
    if real != real_out and real_out not in real.parents:
        raise OutputError(
            f"{planned.owner}'s output {path} would be written outside the output "
            f"folder (through {existing} -> {real})",
            hint="remove the symbolic link or choose another --output",
        )


# -- leftovers --------------------------------------------------------------------------------


def remove_stale_temps(out_dir: Path, owned: Iterable[str]) -> int:
    """Delete temporary files and folders a killed run left behind.

    Only names of samadapter's own temporary scheme (``.<name>.<8 hex>.tmp<suffix>`` files,
    ``.<name>.tmp-<8 hex>`` / ``.<name>.old-<8 hex>`` folders) are removed: at the top of
    ``out_dir`` only the temporaries of its run-level files, inside the folders samadapter owns
    there any of them. Nothing outside ``out_dir`` is looked at.

    Returns:
        how many entries were removed.
    """
    removed = 0
    if not out_dir.is_dir():
        return 0
    owned = set(owned)
    top_files = tuple(f".{n}." for n in (*RUN_FILES, MANIFEST_FILE) if n in owned)
    for entry in out_dir.iterdir():
        if (
            entry.name.startswith(top_files)
            and _TEMP_FILE.match(entry.name)
            and entry.is_file()
            and not entry.is_symlink()
        ):
            entry.unlink(missing_ok=True)
            removed += 1
    for name in sorted(owned):
        root = out_dir / name
        if not root.is_dir() or root.is_symlink():
            continue
        for folder, dirs, files in os.walk(root):
            for d in list(dirs):
                if _TEMP_DIR.match(d):
                    shutil.rmtree(Path(folder) / d, ignore_errors=True)
                    dirs.remove(d)
                    removed += 1
            for f in files:
                if _TEMP_FILE.match(f):
                    (Path(folder) / f).unlink(missing_ok=True)
                    removed += 1
    return removed


# -- one run at a time ------------------------------------------------------------------------


@contextlib.contextmanager
def run_lock(out_dir: Path) -> Iterator[None]:
    """Hold ``out_dir/.samadapter.lock`` (holding this process's id) for the block.

    A second run into the same folder would remove the first one's temporary files and
    interleave its records, so it is refused while the first is alive; a lock left by a killed
    run (its process is gone) is taken over.

    Raises:
        OutputError: another live samadapter process holds the folder, or the lock cannot be
            created.
    """
    path = out_dir / LOCK_FILE
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                check_lock(out_dir)
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()  # left by a run that was killed
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(f"{os.getpid()}\n")
            break
        else:
            raise OutputError(f"cannot take the lock {path}", hint="try again")
    except OSError as e:
        raise OutputError(
            f"cannot create {path}: {e.strerror or e}",
            hint="check the folder's permissions or choose another --output",
        ) from None
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            if _lock_holder(path) == os.getpid():
                path.unlink()


def check_lock(out_dir: Path) -> None:
    """Refuse a folder that another live samadapter run holds (:func:`run_lock`), so that a
    second run stops before it loads any model.

    Raises:
        OutputError: naming the other run's process.
    """
    holder = _lock_holder(out_dir / LOCK_FILE)
    if holder is not None and holder != os.getpid() and _alive(holder):
        raise OutputError(
            f"another samadapter run (process {holder}) is writing to {out_dir}",
            hint="wait for it to finish, or choose another --output",
        )


def _lock_holder(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as e:
        return e.errno == errno.EPERM  # exists, owned by someone else
    return True
