"""Batch inputs: files, folders and glob patterns expanded into the run's images.

Every image is named by its path relative to the run's common root; what earlier samadapter runs
wrote (the entries their manifests list) is never taken as a new image.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from samadapter.errors import ImageError, OutputError
from samadapter.io.images import IMAGE_SUFFIXES
from samadapter.io.layout import MANIFEST_FILE, owned_paths, read_manifest, safe_rel

_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class InputImage:
    """One image of a batch.

    Attributes:
        path: the file, as found.
        root: the run's common root: the deepest folder holding every input (absolute).
        rel: the file's path relative to ``root``, extension included (``sub/a.jpg``). It is
            the image's COCO ``file_name`` and names every output (``per-image/sub/a.jpg.json``,
            ...); it never has ``..`` components.
    """

    path: Path
    root: Path
    rel: PurePosixPath

    @property
    def file_name(self) -> str:
        """The image's path relative to the run's root (COCO ``file_name``)."""
        return self.rel.as_posix()

    def identity(self) -> dict[str, int] | None:
        """Size and modification time (ns) of the file now, or ``None`` if it cannot be read."""
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return {"size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def _absolute(path: str | os.PathLike[str]) -> Path:
    """Absolute and normalised (``..`` folded) without resolving symbolic links."""
    return Path(os.path.normpath(os.path.abspath(path)))


def _inside(path: Path, folders: Sequence[Path]) -> bool:
    return any(path == f or f in path.parents for f in folders)


class _RunOutputs:
    """Recognises what samadapter runs wrote (the entries their manifests list), so scanning
    folders and globs never takes an earlier run's overlays or masks as new images."""

    def __init__(self) -> None:
        self._owned: dict[Path, frozenset[str]] = {}

    def owned(self, folder: Path) -> frozenset[str]:
        """Names a samadapter manifest in ``folder`` lists (empty without one)."""
        names = self._owned.get(folder)
        if names is None:
            try:
                names = (
                    frozenset(read_manifest(folder))
                    if (folder / MANIFEST_FILE).is_file()
                    else frozenset()
                )
            except OutputError:
                names = frozenset()
            self._owned[folder] = names
        return names

    def holds(self, path: Path) -> bool:
        """Whether the absolute ``path`` lies in an entry some run's manifest lists."""
        child = path
        for parent in path.parents:
            if child.name in self.owned(parent):
                return True
            child = parent
        return False


def _walk_images(folder: Path, skip: Sequence[Path], runs: _RunOutputs) -> list[Path]:
    """Images anywhere under ``folder``, not descending into ``skip`` nor into the entries
    of samadapter output folders (sorted)."""
    found: list[Path] = []
    for current, dirs, files in os.walk(folder):
        here = Path(current)
        owned = runs.owned(_absolute(here))
        dirs[:] = [d for d in dirs if d not in owned and not _inside(_absolute(here / d), skip)]
        found.extend(
            here / f
            for f in files
            if f not in owned and (here / f).suffix.lower() in IMAGE_SUFFIXES
        )
    return sorted(p for p in found if p.is_file())


def collect_inputs(
    inputs: Sequence[str | os.PathLike[str]],
    recursive: bool = False,
    output: str | os.PathLike[str] | None = None,
) -> list[InputImage]:
    """Expand files, folders and glob patterns into the batch's images.

    Every image is named by its path relative to the run's common root (the deepest folder
    holding every given folder, every glob's fixed prefix and every file), extension included,
    so two different files never get the same name and outputs mirror the input tree. A file
    given twice is taken once. Globs are matched as given but named by their normalised path,
    so a pattern with ``..`` still gets a name inside the root.

    Args:
        inputs: files, folders (their images; all levels with ``recursive``) and glob patterns.
        recursive: descend into sub-folders of folder inputs.
        output: the run's output folder; what earlier runs wrote there (its manifest's entries)
            is never taken as an input, so ``output`` may be an input folder. Folders and globs
            also skip the entries of any other samadapter output folder they meet; an image
            given by name is always taken.

    Raises:
        ImageError: a path that does not exist, or a folder / pattern with no images.
    """
    skip = owned_paths(output) if output is not None else []
    runs = _RunOutputs()

    def wanted(p: Path) -> bool:  # an image, not under ``output``'s or another run's entries
        return _is_image(p) and not _inside(_absolute(p), skip) and not runs.holds(_absolute(p))

    found: list[Path] = []
    anchors: list[Path] = []
    for given in inputs:
        text = os.fspath(given)
        path = Path(text)
        if any(c in text for c in _GLOB_CHARS) and not path.exists():
            fixed = Path(*path.parts[: _first_glob_part(path)]) if path.parts else Path()
            images = [m for m in sorted(map(Path, glob.glob(text, recursive=True))) if wanted(m)]
            if not images:
                raise ImageError(
                    f"no images match {text}",
                    hint=f"expected files ending in {', '.join(IMAGE_SUFFIXES)}",
                )
            anchors.append(_absolute(fixed))
            found.extend(images)
        elif path.is_dir():
            if recursive:
                images = _walk_images(path, skip, runs)
            else:
                images = sorted(p for p in path.iterdir() if wanted(p))
            if not images:
                more = "" if recursive else "; add --recursive to look in sub-folders"
                raise ImageError(
                    f"no images in folder {path}",
                    hint=f"expected files ending in {', '.join(IMAGE_SUFFIXES)}{more}",
                )
            anchors.append(_absolute(path))
            found.extend(images)
        elif path.exists():
            found.append(path)
        else:
            raise ImageError(f"image not found: {path}", hint="check the path")
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(_absolute(path), path)
    if not unique:
        raise ImageError("no images given", hint="pass image files, folders or glob patterns")
    root = Path(os.path.commonpath([*anchors, *(p.parent for p in unique)]))
    return [
        InputImage(
            path, root, safe_rel(Path(os.path.relpath(absolute, root)).as_posix(), "input name")
        )
        for absolute, path in unique.items()
    ]


def _first_glob_part(path: Path) -> int:
    for i, part in enumerate(path.parts):
        if any(c in part for c in _GLOB_CHARS):
            return i
    return len(path.parts)
