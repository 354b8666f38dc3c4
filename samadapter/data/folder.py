"""Any semantic-segmentation dataset laid out as a folder of images and a folder of label maps.

Images and label maps are paired by their path relative to their folder, without suffix:
``images/a/b.jpg`` goes with ``labels/a/b.png`` (or ``.tif`` / ``.tiff``). A label map holds one
integer per pixel (8- or 16-bit PNG, paletted PNG indices, 8/16/32-bit TIFF) and is turned into
class indices ``0..K-1`` of the vocabulary by

* ``pixel value + label_offset = class id`` (the ``ID`` of an ``ID:name`` classes file, the
  builtin list's id, or ``1..K`` in line order for a plain classes file), or, for *contiguous*
  label maps (detectron2's ``*_detectron2`` conversions), ``pixel value + label_offset = class
  index`` (the class's position ``0..K-1`` in the vocabulary, whatever its id);
* ``pixel value == ignore_index`` → :data:`~samadapter.data.base.IGNORE`.

A pixel value that is neither a class nor the ignore value is an error naming the file and the
value: silently dropping such pixels would inflate every metric.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from samadapter.data.base import IGNORE, Sample
from samadapter.errors import ConfigError, DatasetError
from samadapter.io.images import IMAGE_SUFFIXES, load_image
from samadapter.vocab import Vocabulary

__all__ = [
    "LABEL_SUFFIXES",
    "FolderDataset",
    "find_root",
    "label_lookup",
    "read_label_file",
]

LABEL_SUFFIXES: tuple[str, ...] = (".png", ".tif", ".tiff")
"""Lower-case suffixes of label-map files."""

_UNMAPPED = -2
_MAX_VALUE = 0xFFFF


def read_label_file(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a label map's raw pixel values.

    PNGs (8/16-bit grayscale, paletted: the palette indices) are read with PIL; TIFFs with
    ``tifffile`` (16-bit ADE20K-847 maps), falling back to PIL.

    Args:
        path: the label file.

    Returns:
        ``[H, W]`` integer array of the file's values (dtype as stored: uint8, uint16, int32...).

    Raises:
        DatasetError: the file is missing, unreadable, or not a single-channel integer image.
    """
    p = Path(path)
    try:
        if p.suffix.lower() in (".tif", ".tiff"):
            arr = _read_tiff(p)
        else:
            with Image.open(p) as img:
                if img.mode not in ("1", "L", "P", "I", "I;16", "I;16L", "I;16B", "I;16N"):
                    raise DatasetError(
                        f"label map {p} is a {img.mode} image",
                        hint="label maps hold one class value per pixel "
                        "(grayscale or paletted PNG, 16-bit PNG / TIFF)",
                    )
                arr = np.array(img)
    except DatasetError:
        raise
    except FileNotFoundError:
        raise DatasetError(f"label map not found: {p}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DatasetError(f"cannot read label map {p}: {msg}") from None
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer):
        raise DatasetError(
            f"label map {p} has shape {arr.shape} and dtype {arr.dtype}",
            hint="expected one integer class value per pixel",
        )
    return arr


def _read_tiff(path: Path) -> np.ndarray:
    try:
        import tifffile
    except ImportError:  # pragma: no cover - tifffile is a dependency
        with Image.open(path) as img:
            return np.array(img)
    try:
        return np.asarray(tifffile.imread(path))
    except FileNotFoundError:
        raise
    except Exception:  # tifffile raises many types; PIL may still read it
        with Image.open(path) as img:
            return np.array(img)


def find_root(
    root: str | os.PathLike[str],
    name: str,
    top: str,
    folders: Mapping[str, str],
    files: Sequence[str] = (),
    how_to_get: str = "",
) -> Path:
    """The folder holding a layout's folders and files: ``ROOT/<top>`` or ``ROOT`` itself.

    Args:
        root: the dataset root the user gave.
        name: the dataset's name, to start messages with.
        top: the layout's own folder inside ``root`` (``coco``, ``ADEChallengeData2016``).
        folders: folders the layout needs, relative to ``top``, each with what messages show
            after it (``/``, or the files expected there: ``/*.jpg``).
        files: files the layout needs, relative to ``top``.
        how_to_get: how to obtain the data, the errors' hint.

    Returns:
        the folder the relative paths start from.

    Raises:
        DatasetError: ``root`` is missing, or neither place holds every path; the message names
            the paths expected (or the ones missing where some exist).
    """
    base = Path(root)
    needed = [(rel, True) for rel in folders] + [(rel, False) for rel in files]

    def exists(path: Path, is_dir: bool) -> bool:
        return path.is_dir() if is_dir else path.is_file()

    expected = ", ".join(f"{base / top / rel}{folders.get(rel, '')}" for rel, _ in needed)
    if not base.is_dir():
        raise DatasetError(
            f"{name}: data root {base} does not exist; expected {expected}", hint=how_to_get
        )
    candidates = (base / top, base)
    for folder in candidates:
        if all(exists(folder / rel, d) for rel, d in needed):
            return folder
    for folder in candidates:
        found = [folder / rel for rel, d in needed if exists(folder / rel, d)]
        if found:
            missing = ", ".join(str(folder / r) for r, d in needed if not exists(folder / r, d))
            raise DatasetError(f"{name}: found {found[0]} but not {missing}", hint=how_to_get)
    raise DatasetError(f"{name} not found under {base}: expected {expected}", hint=how_to_get)


def label_lookup(
    vocab: Vocabulary, ignore_index: int | None, label_offset: int = 0, *, contiguous: bool = False
) -> np.ndarray:
    """The table that maps raw label values to class indices.

    Args:
        vocab: the ``K`` classes; ``vocab.ids[k] - label_offset`` is the pixel value of class ``k``
            (``k - label_offset`` with ``contiguous``).
        ignore_index: the pixel value meaning "unlabelled" (``None``: none).
        label_offset: ``pixel value + label_offset = class id`` (class index with ``contiguous``).
        contiguous: pixel values count the classes in vocabulary order, ignoring their ids.

    Returns:
        ``[65536]`` int32: class index ``0..K-1``, :data:`IGNORE` for ``ignore_index``, ``-2`` for
        values that are neither.

    Raises:
        ConfigError: the ignore value is also a class's value, or a class's value is outside
            ``0..65535``.
    """
    lut = np.full(_MAX_VALUE + 1, _UNMAPPED, dtype=np.int32)
    target = "class index" if contiguous else "class id"
    for k, class_id in enumerate(vocab.ids):
        value = (k if contiguous else class_id) - label_offset
        if not 0 <= value <= _MAX_VALUE:
            raise ConfigError(
                f"class '{vocab.names[k]}' (id {class_id}) would have pixel value "
                f"{value} with --label-offset {label_offset}",
                hint=f"pixel value + label offset = {target}; values are 0..65535",
            )
        if value == ignore_index:
            raise ConfigError(
                f"pixel value {value} is both --ignore-index and class "
                f"'{vocab.names[k]}' (id {class_id})",
                hint="check --ignore-index and --label-offset against the dataset",
            )
        lut[value] = k
    if ignore_index is not None:
        if not 0 <= ignore_index <= _MAX_VALUE:
            raise ConfigError(f"--ignore-index must be in 0..65535, got {ignore_index}")
        lut[ignore_index] = IGNORE
    return lut


def _relative_stem(path: Path, root: Path) -> str:
    return path.relative_to(root).with_suffix("").as_posix()


def _scan(root: Path, suffixes: Sequence[str], strip: str = "") -> dict[str, Path]:
    """Files under ``root`` (recursively) with one of ``suffixes``, by relative stem (with
    ``strip`` removed from its end, e.g. Cityscapes' ``_leftImg8bit``)."""
    found: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or Path(name).suffix.lower() not in suffixes:
                continue
            path = Path(dirpath) / name
            stem = _relative_stem(path, root)
            if strip and stem.endswith(strip):
                stem = stem[: -len(strip)]
            if stem in found:
                raise DatasetError(
                    f"two files share the name {stem!r}: {found[stem]} and {path}",
                    hint="keep one file per sample",
                )
            found[stem] = path
    return found


@dataclass
class FolderDataset:
    """Images and label maps in two folders, paired by relative path (see the module docstring).

    Build it with :meth:`from_folders`, which scans the folders and checks the pairing.

    Attributes:
        vocab: the ``K`` classes.
        image_paths: ``N`` image files, sorted by name.
        label_paths: the matching ``N`` label files.
        sample_names: ``N`` relative paths without suffix (``a/b``), the samples' names.
        ignore_index: pixel value meaning "unlabelled" (``None``: none).
        label_offset: ``pixel value + label_offset = class id``.
        description: one line naming the data, for reports.
        contiguous: pixel values are class indices (``pixel value + label_offset = class
            index``), not class ids.
    """

    vocab: Vocabulary
    image_paths: list[Path]
    label_paths: list[Path]
    sample_names: list[str]
    ignore_index: int | None = 255
    label_offset: int = 0
    description: str = "folder"
    contiguous: bool = False
    _lut: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        n = len(self.image_paths)
        if len(self.label_paths) != n or len(self.sample_names) != n:
            raise ValueError("image_paths, label_paths and sample_names differ in length")
        self._lut = label_lookup(
            self.vocab, self.ignore_index, self.label_offset, contiguous=self.contiguous
        )

    @classmethod
    def from_folders(
        cls,
        images: str | os.PathLike[str],
        labels: str | os.PathLike[str],
        vocab: Vocabulary,
        *,
        ignore_index: int | None = 255,
        label_offset: int = 0,
        image_suffixes: Sequence[str] = IMAGE_SUFFIXES,
        label_suffixes: Sequence[str] = LABEL_SUFFIXES,
        description: str | None = None,
        contiguous: bool = False,
        image_name_suffix: str = "",
        label_name_suffix: str = "",
    ) -> FolderDataset:
        """Scan two folders (recursively) and pair their files.

        Args:
            images: folder of images.
            labels: folder of label maps, mirroring ``images``' sub-folders.
            vocab: the classes the label values refer to.
            ignore_index: pixel value meaning "unlabelled" (``None``: every value is a class).
            label_offset: ``pixel value + label_offset = class id``.
            image_suffixes: lower-case suffixes of image files.
            label_suffixes: lower-case suffixes of label files.
            description: one line for reports (default: the two folders).
            contiguous: pixel values are class indices in vocabulary order, not class ids
                (``pixel value + label_offset = class index``).
            image_name_suffix: removed from image file stems before pairing (Cityscapes:
                ``_leftImg8bit``).
            label_name_suffix: removed from label file stems before pairing (Cityscapes:
                ``_gtFine_labelTrainIds``).

        Returns:
            the dataset, samples sorted by name. Label maps without an image are ignored.

        Raises:
            DatasetError: a folder is missing or holds no image, an image has no label map, or
                two files share a name.
            ConfigError: ``ignore_index`` / ``label_offset`` do not fit the vocabulary.
        """
        img_root, lbl_root = Path(images), Path(labels)
        for what, root in (("images", img_root), ("labels", lbl_root)):
            if not root.is_dir():
                raise DatasetError(f"{what} folder not found: {root}", hint="check the path")
        image_files = _scan(img_root, tuple(image_suffixes), image_name_suffix)
        if not image_files:
            raise DatasetError(
                f"no images in {img_root}",
                hint=f"expected files ending in {', '.join(image_suffixes)}",
            )
        label_files = _scan(lbl_root, tuple(label_suffixes), label_name_suffix)
        missing = [s for s in image_files if s not in label_files]
        if missing:
            raise DatasetError(
                f"{len(missing)} of {len(image_files)} images in {img_root} have no label map, "
                f"e.g. {image_files[missing[0]].name}: expected "
                f"{lbl_root / missing[0]}{label_name_suffix}{label_suffixes[0]}",
                hint="label maps must mirror the images' relative paths "
                f"(suffix {' / '.join(label_suffixes)}; --image-name-suffix / "
                "--label-name-suffix strip name endings such as Cityscapes' "
                "_leftImg8bit / _gtFine_labelTrainIds)",
            )
        names = sorted(image_files)
        return cls(
            vocab=vocab,
            image_paths=[image_files[s] for s in names],
            label_paths=[label_files[s] for s in names],
            sample_names=names,
            ignore_index=ignore_index,
            label_offset=label_offset,
            description=description or f"images {img_root}, labels {lbl_root}",
            contiguous=contiguous,
        )

    def __len__(self) -> int:
        return len(self.image_paths)

    def names(self) -> list[str]:
        """The samples' names in index order."""
        return list(self.sample_names)

    def label(self, index: int) -> np.ndarray:
        """The ground truth of sample ``index`` without reading its image.

        Returns:
            ``[H, W]`` int32 class index ``0..K-1`` or :data:`IGNORE`.

        Raises:
            DatasetError: unreadable file, or values that are neither a class nor the ignore value.
        """
        path = self.label_paths[index]
        raw = read_label_file(path)
        if raw.size and (int(raw.min()) < 0 or int(raw.max()) > _MAX_VALUE):
            raise DatasetError(
                f"label map {path} holds values outside 0..65535 "
                f"({int(raw.min())}..{int(raw.max())})"
            )
        out = self._lut[raw.astype(np.int64, copy=False)]
        if (out == _UNMAPPED).any():
            bad = np.unique(raw[out == _UNMAPPED])
            shown = ", ".join(str(int(v)) for v in bad[:8]) + (", ..." if len(bad) > 8 else "")
            raise DatasetError(
                f"label map {path} holds pixel values that are no class: {shown}",
                hint=f"pixel value + label offset ({self.label_offset}) must be a "
                + (
                    f"class index 0..{len(self.vocab) - 1}"
                    if self.contiguous
                    else "class id of the classes file"
                )
                + f", or the ignore index ({self.ignore_index})",
            )
        return out

    def __getitem__(self, index: int) -> Sample:
        """Sample ``index``: its RGB image (EXIF orientation applied) and class-index labels.

        Raises:
            IndexError: ``index`` out of range.
            DatasetError: unreadable label map, unknown values, or a label map whose size differs
                from the image's.
            ImageError: unreadable image.
        """
        if not -len(self) <= index < len(self):
            raise IndexError(f"sample {index} of {len(self)}")
        image = load_image(self.image_paths[index])
        label = self.label(index)
        if label.shape != image.shape[:2]:
            raise DatasetError(
                f"label map {self.label_paths[index]} is {label.shape[1]}x"
                f"{label.shape[0]} but image {self.image_paths[index]} is "
                f"{image.shape[1]}x{image.shape[0]}",
                hint="each label map must match its image's size",
            )
        return Sample(image=image, label=label, name=self.sample_names[index])
