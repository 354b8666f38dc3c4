"""A finished run's output folder, read for the page (every file is untrusted).

The images are found by scanning ``per-image/`` for the COCO JSON each image ends with (symbolic
links are not followed, nothing outside the folder is read); a file that is not a samadapter
result is listed with its problem and left out of the counts. A run made with
``--cache-features`` is relabelled by running ``samadapter relabel`` on it, so the page writes
exactly what the command writes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from samadapter.app.photo import LabelRequest, PhotoSession, highlight_png
from samadapter.batch import inputs_of_run, load_run
from samadapter.errors import ConfigError, ImageError, OutputError
from samadapter.io.atomic import read_json_object
from samadapter.io.feature_store import load_embeddings, load_features
from samadapter.io.images import DEFAULT_MAX_PIXELS, load_image
from samadapter.io.layout import FEATURES_DIR, PER_IMAGE_DIR, RUN_FILE, feature_path
from samadapter.io.overlay import class_color
from samadapter.pipeline import Segmenter

MAX_JSON_BYTES = 256 * 1024 * 1024
"""Per-image JSON files larger than this are not read."""

_OVERLAY = ".overlay.png"
_PROGRESS = re.compile(r"^\[(\d+)/(\d+)\]")


@dataclass
class RunImage:
    """One image of the run.

    Attributes:
        id: the page's handle (position in the scan).
        name: the image's name in the run (its path below the run's root).
        json_path: its COCO JSON.
        overlay: its overlay PNG, when there is one.
        classes: masks per class name.
        error: why the JSON could not be used (then ``classes`` is empty).
    """

    id: int
    name: str
    json_path: Path
    overlay: Path | None
    classes: dict[str, int] = field(default_factory=dict)
    error: str | None = None


def _regular_file(path: Path) -> bool:
    try:
        return path.is_file() and not path.is_symlink()
    except OSError:
        return False


def _read_coco(path: Path) -> dict[str, Any]:
    """An image's COCO JSON, checked enough to draw and list it.

    Raises:
        OutputError: unreadable, too large or not a samadapter result.
    """
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise OutputError(f"{path.name} is larger than {MAX_JSON_BYTES >> 20} MB")
        data = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise OutputError(f"{path.name} is unreadable ({type(e).__name__})") from None
    ok = (
        isinstance(data, dict)
        and isinstance(data.get("images"), list)
        and len(data["images"]) == 1
        and isinstance(data["images"][0], dict)
        and isinstance(data.get("categories"), list)
        and isinstance(data.get("annotations"), list)
        and all(
            isinstance(c, dict) and isinstance(c.get("id"), int) and isinstance(c.get("name"), str)
            for c in data["categories"]
        )
        and all(
            isinstance(a, dict)
            and isinstance(a.get("category_id"), int)
            and isinstance(a.get("segmentation"), dict)
            for a in data["annotations"]
        )
    )
    if not ok:
        raise OutputError(f"{path.name} is not a samadapter COCO result")
    return data


class RunFolder:
    """A run's output folder as the page shows it.

    Args:
        folder: the ``--output`` folder of a ``segment`` (or ``classify``, ``relabel``) run.

    Raises:
        OutputError: the folder holds no ``per-image/`` outputs.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder).resolve()
        self.images: list[RunImage] = []
        self._coco: OrderedDict[int, dict[str, Any]] = OrderedDict()
        self.scan()

    def scan(self) -> None:
        """(Re)read the folder: the images, their classes, whether it can be relabelled."""
        root = self.folder / PER_IMAGE_DIR
        if not root.is_dir() or root.is_symlink():
            raise OutputError(
                f"{self.folder} holds no run ({PER_IMAGE_DIR}/ missing)",
                hint="give the --output folder of a samadapter segment run",
            )
        found: list[RunImage] = []
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not d.endswith(".masks"))
            for file in sorted(filenames):
                path = Path(dirpath) / file
                if not file.endswith(".json") or not _regular_file(path):
                    continue
                stem = file[: -len(".json")]
                overlay = path.with_name(stem + _OVERLAY)
                name = (path.parent.relative_to(root) / stem).as_posix()
                image = RunImage(
                    len(found), name, path, overlay if _regular_file(overlay) else None
                )
                try:
                    coco = _read_coco(path)
                    names = {c["id"]: c["name"] for c in coco["categories"]}
                    image.classes = dict(
                        Counter(names.get(a["category_id"], "?") for a in coco["annotations"])
                    )
                except OutputError as e:
                    image.error = e.message
                found.append(image)
        self.images = found
        self._coco.clear()
        self.run = self._run_record()

    def _run_record(self) -> dict[str, Any]:
        return read_json_object(self.folder / RUN_FILE) or {}

    @property
    def can_relabel(self) -> bool:
        """The run kept its features (``segment --cache-features``)."""
        return bool(self.run.get("cache_features")) and (self.folder / FEATURES_DIR).is_dir()

    def vocabulary_text(self) -> str:
        """The run's classes as the page's text field takes them (``cat,sofa|couch``)."""
        vocab = self.run.get("settings", {}).get("vocabulary") if self.run else None
        classes = vocab.get("classes") if isinstance(vocab, dict) else None
        if not isinstance(classes, list):
            return ""
        parts = ["|".join(str(n) for n in c) for c in classes if isinstance(c, list) and c]
        return ",".join(parts)

    def summary(self) -> dict[str, Any]:
        """The gallery: images with their classes, and per class the images and masks."""
        images: Counter[str] = Counter()
        masks: Counter[str] = Counter()
        for image in self.images:
            for name, count in image.classes.items():
                images[name] += 1
                masks[name] += count
        return {
            "folder": str(self.folder),
            "can_relabel": self.can_relabel,
            "classes_text": self.vocabulary_text(),
            "images": [
                {
                    "id": image.id,
                    "name": image.name,
                    "classes": image.classes,
                    "masks": sum(image.classes.values()),
                    "overlay": image.overlay is not None,
                    "error": image.error,
                }
                for image in self.images
            ],
            "counts": [
                {"class": name, "images": images[name], "masks": masks[name]}
                for name in sorted(images, key=lambda n: (-images[n], n))
            ],
        }

    def image(self, image_id: int) -> RunImage:
        """The image with this id.

        Raises:
            OutputError: no such image.
        """
        if not 0 <= image_id < len(self.images):
            raise OutputError(f"no image {image_id} in this run")
        return self.images[image_id]

    def _coco_of(self, image_id: int) -> dict[str, Any]:
        if image_id not in self._coco:
            self._coco[image_id] = _read_coco(self.image(image_id).json_path)
            while len(self._coco) > 8:
                self._coco.popitem(last=False)
        return self._coco[image_id]

    def rows(self, image_id: int) -> dict[str, Any]:
        """One image's masks: ``index``, ``class``, ``score``, ``area``, ``color``."""
        coco = self._coco_of(image_id)
        names = {c["id"]: c["name"] for c in coco["categories"]}
        rows = []
        for i, ann in enumerate(coco["annotations"]):
            name = names.get(ann["category_id"], "?")
            score, area = ann.get("score"), ann.get("area")
            rows.append(
                {
                    "index": i,
                    "class": name,
                    "score": round(float(score), 4) if isinstance(score, int | float) else None,
                    "area": int(area) if isinstance(area, int | float) else None,
                    "color": "#{:02x}{:02x}{:02x}".format(*class_color(name)),
                }
            )
        image = coco["images"][0]
        return {
            "id": image_id,
            "name": self.image(image_id).name,
            "width": image.get("width"),
            "height": image.get("height"),
            "rows": rows,
        }

    def _mask(self, coco: dict[str, Any], index: int) -> np.ndarray:
        annotations = coco["annotations"]
        if not 0 <= index < len(annotations):
            raise OutputError(f"no mask {index}")
        rle = dict(annotations[index]["segmentation"])
        try:
            if isinstance(rle.get("counts"), str):
                rle["counts"] = rle["counts"].encode("ascii")
            return mask_utils.decode(rle).astype(bool)
        except (TypeError, ValueError, UnicodeEncodeError, KeyError) as e:
            raise OutputError(f"mask {index} is not a valid RLE ({type(e).__name__})") from None

    def masks_at(self, image_id: int, x: int, y: int) -> list[dict[str, Any]]:
        """The masks covering pixel ``(x, y)``, smallest first."""
        coco = self._coco_of(image_id)
        hits = []
        for row in self.rows(image_id)["rows"]:
            mask = self._mask(coco, row["index"])
            if 0 <= y < mask.shape[0] and 0 <= x < mask.shape[1] and mask[y, x]:
                hits.append(row)
        hits.sort(key=lambda row: row["area"] or 0)
        return hits

    def highlight_png(self, image_id: int, index: int) -> bytes:
        """Mask ``index`` of the image as a translucent RGBA PNG."""
        return highlight_png(self._mask(self._coco_of(image_id), index))

    def overlay_bytes(self, image_id: int) -> bytes:
        """The image's overlay PNG.

        Raises:
            OutputError: the run wrote none for it.
        """
        image = self.image(image_id)
        if image.overlay is None:
            raise OutputError(f"{image.name} has no overlay in this run")
        return image.overlay.read_bytes()

    def cached_photo(self, image_id: int, segmenter: Segmenter) -> PhotoSession:
        """An image of a ``--cache-features`` run as a photo of the page, from its cached masks,
        features and embeddings (SAM and CLIP's image encoder do not run; the adapter only when
        the run kept no embeddings for the segmenter's classifier).

        Raises:
            ConfigError: the run was made with other models than ``segmenter``'s.
            OutputError: the run kept no features, or they are missing or unreadable.
            ImageError: the image file is gone or changed size.
        """
        run = load_run(self.folder)  # checked as untrusted; refuses a run without features
        models = run["settings"]["models"]
        if any(models.get(key) != segmenter.info.get(key) for key in ("clip", "adapter")):
            raise ConfigError(
                "this run was made with other models than the app's",
                hint="start the app with the run's --preset to open its images here",
            )
        name = self.image(image_id).name
        item = next((i for i in inputs_of_run(run) if i.rel.as_posix() == name), None)
        if item is None:
            raise OutputError(f"{name} is not in this run's {RUN_FILE}")
        path = feature_path(self.folder, item.rel)
        features, proposals, _ = load_features(path, segmenter.device)
        if proposals is None:
            raise OutputError(f"cached features of {name} hold no masks")
        image = load_image(
            item.path,
            run["settings"].get("max_size"),
            max_pixels=run["settings"].get("max_pixels", DEFAULT_MAX_PIXELS),
        )
        if tuple(proposals.image_size) != image.shape[:2]:
            raise ImageError(
                f"{item.path} is {image.shape[1]}x{image.shape[0]} now, not as when cached",
                hint="run segment --cache-features again",
            )
        embeddings = load_embeddings(path).get(segmenter.settings.classifier)
        if embeddings is None:
            embeddings = segmenter.mask_embeddings(features, proposals.masks)
        context = segmenter.cdt_context(features) if segmenter.uses_cdt else None
        return PhotoSession(
            Path(name).name, image, proposals, features, embeddings, context, [f"from {name}"]
        )

    def relabel_command(self, request: LabelRequest, device: str) -> list[str]:
        """``samadapter relabel`` of this folder with the request's classes and keep rule.

        Raises:
            OutputError: the run kept no features.
        """
        if not self.can_relabel:
            raise OutputError(
                "this run kept no features, so it cannot be relabelled",
                hint="run samadapter segment again with --cache-features",
            )
        vocab = request.vocab
        source = ["--vocab", vocab.name] if vocab.name else ["--classes", classes_text(vocab)]
        return [
            sys.executable,
            "-m",
            "samadapter",
            "relabel",
            str(self.folder),
            *source,
            "--keep-ratio",
            repr(request.keep_ratio),
            "--score-thresh",
            repr(request.score_thresh),
            "--device",
            device,
        ]

    def relabel(self, request: LabelRequest, device: str, progress: Any) -> dict[str, Any]:
        """Run ``samadapter relabel`` on the folder, report its ``[i/n]`` lines through
        ``progress(line)``, then rescan.

        Raises:
            OutputError: the command failed (its error line is the message).
        """
        command = self.relabel_command(request, device)
        env = {**os.environ, "COLUMNS": "200"}
        lines: list[str] = []
        with subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            env=env,
        ) as child:
            assert child.stderr is not None
            for line in child.stderr:
                line = line.rstrip()
                if line:
                    lines.append(line)
                    if _PROGRESS.match(line):
                        progress(line)
            code = child.wait()
        self.scan()
        if code != 0:
            errors = [line for line in lines if line.startswith("error")]
            raise OutputError(
                (
                    errors[-1] if errors else (lines[-1] if lines else f"exit code {code}")
                ).removeprefix("error: ")
            )
        return self.summary()


def classes_text(vocab: Any) -> str:
    """A vocabulary as a ``--classes`` string."""
    return ",".join("|".join(names) for names in vocab.classes)
