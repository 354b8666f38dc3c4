"""Class lists (vocabularies), prompt templates and the text classifier built from them.

A :class:`Vocabulary` is the user's list of classes; each class has one or more names (a display
name first, then synonyms). Vocabularies come from a ``--classes`` string (:func:`parse_classes`),
a text file (:func:`read_classes_file`) or a benchmark list shipped with the package
(:func:`load_builtin`); :func:`resolve_vocabulary` picks the one the user gave.

Every name is turned into one text embedding by averaging the normalised embeddings of the 14
ViLD prompts (:data:`TEMPLATES`; docs/architecture.md) in :func:`build_text_classifier`; a class
scores the best of its names (:func:`class_logits`).

The benchmark lists in ``samadapter/vocabularies/`` come from the official Mask-Adapter / FC-CLIP
code (hustvl/MaskAdapter, Apache-2.0); the parser here is our own.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from samadapter.errors import VocabularyError

if TYPE_CHECKING:  # torch loads only when text embeddings are built: the CLI starts fast
    import torch

__all__ = [
    "BUILTIN",
    "TEMPLATES",
    "BuiltinVocab",
    "Vocabulary",
    "build_text_classifier",
    "check_keep_unknown",
    "class_logits",
    "load_builtin",
    "parse_classes",
    "read_classes_file",
    "resolve_vocabulary",
]

TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "This is a photo of a {}",
    "There is a {} in the scene",
    "There is the {} in the scene",
    "a photo of a {} in the scene",
    "a photo of a small {}.",
    "a photo of a medium {}.",
    "a photo of a large {}.",
    "This is a photo of a small {}.",
    "This is a photo of a medium {}.",
    "This is a photo of a large {}.",
    "There is a small {} in the scene.",
    "There is a medium {} in the scene.",
    "There is a large {} in the scene.",
)
"""The 14 ViLD prompt templates, in the official order (docs/architecture.md)."""

UNKNOWN_CLASS = "unknown"
"""Name of the extra category of masks no class fits (``--keep-unknown``); reserved: a user class
may not be called so (case-insensitively), or two categories would share the name. Equal to
:data:`samadapter.structures.UNKNOWN_NAME` (not imported: this module loads no numpy)."""

_INVALID_CLASS = "invalid_class_id"
_ID_LINE = re.compile(r"^(\d+)\s*:(.*)$")
_SOURCES_HINT = (
    "e.g. --classes 'cat,dog,sofa|couch', --classes-file my_classes.txt or --vocab ade150"
)


# --------------------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Vocabulary:
    """An ordered list of classes, each with one or more names.

    Build one with :func:`parse_classes`, :func:`read_classes_file`, :func:`load_builtin` or
    :func:`resolve_vocabulary`, which check the names; the constructor itself only checks the
    structure (and turns lists into tuples).

    Attributes:
        classes: ``K`` tuples of names, display name first, then its synonyms.
        ids: ``K`` class ids: ``1..K`` for user lists, the file's ids for ``ID:name`` files and
            builtin benchmark lists (these may start at 0 or have gaps).
        name: the builtin vocabulary's name, or ``None`` for a user list.
    """

    classes: tuple[tuple[str, ...], ...]
    ids: tuple[int, ...]
    name: str | None = None

    def __post_init__(self) -> None:
        classes = tuple(tuple(c) for c in self.classes)
        ids = tuple(int(i) for i in self.ids)
        object.__setattr__(self, "classes", classes)
        object.__setattr__(self, "ids", ids)
        if len(classes) != len(ids):
            raise ValueError(f"{len(classes)} classes but {len(ids)} ids")
        for k, names in enumerate(classes):
            if not names or not all(isinstance(n, str) and n for n in names):
                raise ValueError(f"class {k} needs one or more non-empty names, got {names!r}")
        _check_characters(classes, [f"class {k + 1}" for k in range(len(classes))], "vocabulary")

    def __len__(self) -> int:
        return len(self.classes)

    @property
    def names(self) -> list[str]:
        """Display name (first name) of each class, ``K`` of them."""
        return [c[0] for c in self.classes]

    def flat_names(self) -> list[str]:
        """All names of all classes, class by class, each class's display name first."""
        return [n for c in self.classes for n in c]

    def name_to_class_index(self) -> list[int]:
        """Class index ``0..K-1`` of each entry of :meth:`flat_names`."""
        return [k for k, c in enumerate(self.classes) for _ in c]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``{"name": str | None, "classes": [[str, ...], ...], "ids": [int]}``."""
        return {
            "name": self.name,
            "classes": [list(c) for c in self.classes],
            "ids": list(self.ids),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Vocabulary:
        """Inverse of :meth:`to_dict` (``ids`` default to ``1..K`` when absent)."""
        classes = [tuple(c) for c in data["classes"]]
        ids = data.get("ids") or range(1, len(classes) + 1)
        return cls(classes=tuple(classes), ids=tuple(ids), name=data.get("name"))

    def fingerprint(self, templates: Sequence[str] = TEMPLATES) -> str:
        """A stable digest of the names (in order) and templates, e.g. for a text-embedding cache.

        Args:
            templates: the prompt templates the embeddings are built with.

        Returns:
            16 hex characters; equal for vocabularies whose text classifiers are equal.
        """
        h = hashlib.sha256()
        for part in ("templates", *templates, "classes"):
            h.update(part.encode("utf-8") + b"\0")
        for names in self.classes:
            h.update("\x1f".join(names).encode("utf-8") + b"\x1e")
        return h.hexdigest()[:16]


def _bad_character(name: str) -> str | None:
    """The first character of ``name`` no output file can hold as text (``"U+0001"``), if any.

    Control characters (tab and newline included), lone surrogates (undecodable bytes from the
    command line) and Unicode non-characters (``U+FFFE``, ``U+FDD0``...) are refused: XML 1.0,
    YAML and CSV readers reject or mangle them.
    """
    for ch in name:
        code = ord(ch)
        if (
            unicodedata.category(ch) in ("Cc", "Cs")
            or 0xFDD0 <= code <= 0xFDEF
            or (code & 0xFFFE) == 0xFFFE
        ):
            return f"U+{code:04X}"
    return None


def _check_characters(classes: Sequence[Sequence[str]], where: Sequence[str], source: str) -> None:
    """Raise :class:`VocabularyError` for a name holding a character :func:`_bad_character`
    refuses, naming the class and the character."""
    for k, names in enumerate(classes):
        for n in names:
            bad = _bad_character(n)
            if bad is not None:
                raise VocabularyError(
                    f"{source}: class name {n!r} ({where[k]}) holds the control or non-character "
                    f"{bad}",
                    "class names are written into JSON, XML and YAML files: remove control "
                    "characters (tabs, newlines, ...)",
                )


def _check_reserved(classes: Sequence[Sequence[str]], where: Sequence[str], source: str) -> None:
    """Raise :class:`VocabularyError` for a class named ``unknown`` (see :data:`UNKNOWN_CLASS`)."""
    for k, names in enumerate(classes):
        for n in names:
            if n.casefold() == UNKNOWN_CLASS:
                raise VocabularyError(
                    f"{source}: '{n}' ({where[k]}) is reserved: masks that none of your classes "
                    "fit are called 'unknown' (--keep-unknown)",
                    "name the class differently, e.g. 'unknown object'",
                )


def check_keep_unknown(vocab: Vocabulary, keep_unknown: bool) -> None:
    """Refuse ``--keep-unknown`` with a vocabulary that has a class called ``unknown``.

    User lists cannot have one (:func:`parse_classes`, :func:`read_classes_file`), but a
    benchmark list may (Pascal Context 459 does); keeping unknown masks would then give two
    categories of that name.

    Raises:
        VocabularyError: ``keep_unknown`` and a display name equal to ``unknown``.
    """
    if keep_unknown and any(n.casefold() == UNKNOWN_CLASS for n in vocab.names):
        which = f"vocabulary {vocab.name}" if vocab.name else "the vocabulary"
        raise VocabularyError(
            f"{which} has a class called 'unknown', so --keep-unknown would make a second "
            "category of that name",
            "drop --keep-unknown, or give the classes with --classes-file without 'unknown'",
        )


def _dedupe(names: Iterable[str]) -> tuple[str, ...]:
    """Drop repeated names (case-insensitive) inside one class, keeping the first spelling."""
    seen: set[str] = set()
    out = []
    for n in names:
        key = n.casefold()
        if key not in seen:
            seen.add(key)
            out.append(n)
    return tuple(out)


def _check_unique(classes: Sequence[Sequence[str]], where: Sequence[str], source: str) -> None:
    """Raise :class:`VocabularyError` when a name (case-insensitive) belongs to two classes.

    Args:
        classes: names of each class, display name first.
        where: a human location of each class (``"class 3"``, ``"line 7"``).
        source: what the classes came from, to start the message with.
    """
    owner: dict[str, int] = {}
    for k, names in enumerate(classes):
        for j, n in enumerate(names):
            prev = owner.setdefault(n.casefold(), k)
            if prev == k:
                continue
            first_is_display = classes[prev][0].casefold() == n.casefold()
            if j == 0 and first_is_display:
                raise VocabularyError(
                    f"{source}: duplicate class name '{n}' ({where[prev]} and {where[k]})",
                    "give each class once; join synonyms of one class with '|'",
                )
            raise VocabularyError(
                f"{source}: name '{n}' belongs to two classes, '{classes[prev][0]}' "
                f"({where[prev]}) and '{classes[k][0]}' ({where[k]})",
                "a name, display name or synonym, may name only one class",
            )


def parse_classes(text: str) -> Vocabulary:
    """Parse a ``--classes`` string: classes split on ``,``, synonyms of a class on ``|``.

    ``"sofa|couch, cat"`` gives two classes, ``("sofa", "couch")`` and ``("cat",)``, with ids
    ``1, 2``. Whitespace around names is stripped; a synonym repeated inside one class is dropped.

    Args:
        text: the class list as the user typed it.

    Returns:
        The vocabulary (``name`` is ``None``).

    Raises:
        VocabularyError: no classes, an empty name (``"cat,,dog"``, a trailing ``,`` or ``|``),
            a name given to two classes (case-insensitive), a control character in a name, or
            a class called ``unknown`` (reserved, see :data:`UNKNOWN_CLASS`).
    """
    source = "--classes"
    if not text.strip():
        raise VocabularyError(f"{source}: no class names given", _SOURCES_HINT)
    classes: list[tuple[str, ...]] = []
    for k, part in enumerate(text.split(","), start=1):
        names = [n.strip() for n in part.split("|")]
        if not all(names):
            raise VocabularyError(
                f"{source}: empty class name in class {k} of {text.strip()!r}",
                "remove the extra ',' or '|'; classes are split on ',', synonyms on '|'",
            )
        classes.append(_dedupe(names))
    where = [f"class {k}" for k in range(1, len(classes) + 1)]
    _check_characters(classes, where, source)
    _check_reserved(classes, where, source)
    _check_unique(classes, where, source)
    return Vocabulary(tuple(classes), tuple(range(1, len(classes) + 1)), None)


def _parse_lines(
    text: str, source: str, *, strict: bool
) -> tuple[list[tuple[str, ...]], list[int]]:
    """Parse the lines of a class file (plain or ``ID:name,syn`` format).

    Args:
        text: the file's content.
        source: what to start error messages with.
        strict: also reject names given to two classes (user files); the benchmark lists keep them.

    Returns:
        ``(classes, ids)``.
    """
    classes: list[tuple[str, ...]] = []
    ids: list[int] = []
    where: list[str] = []
    id_format: bool | None = None
    seen_ids: dict[int, int] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _ID_LINE.match(line)
        if id_format is None:
            id_format = m is not None
        elif id_format != (m is not None):
            raise VocabularyError(
                f"{source}: line {lineno} {'lacks' if id_format else 'has'} an 'ID:' prefix, "
                f"unlike the lines before it",
                "write every line as 'name,synonym,...' or every line as 'ID:name,synonym,...'",
            )
        if m is not None:
            class_id, body = int(m.group(1)), m.group(2)
            if body.strip() == _INVALID_CLASS:
                continue
            if class_id in seen_ids:
                raise VocabularyError(
                    f"{source}: class id {class_id} on line {lineno} was used on line "
                    f"{seen_ids[class_id]}",
                    "give each class id once",
                )
            seen_ids[class_id] = lineno
        else:
            class_id, body = len(classes) + 1, line
        names = [n.strip() for n in body.split(",")]
        if not all(names):
            raise VocabularyError(
                f"{source}: empty class name on line {lineno}",
                "remove the extra ','; synonyms of a class are split on ','",
            )
        classes.append(_dedupe(names))
        ids.append(class_id)
        where.append(f"line {lineno}")
    if not classes:
        raise VocabularyError(
            f"{source}: no class names in the file",
            "write one class a line, synonyms after the name split on ','",
        )
    _check_characters(classes, where, source)
    if strict:
        _check_reserved(classes, where, source)
        _check_unique(classes, where, source)
    return classes, ids


def read_classes_file(path: str | Path) -> Vocabulary:
    """Read a class list from a text file, one class a line.

    Two formats: ``name,synonym,...`` (ids ``1..K`` in line order) or the official
    ``ID:name,synonym,...`` (ids kept; ``N:invalid_class_id`` placeholder lines skipped). Blank
    lines and lines starting with ``#`` are ignored; a name repeated inside one class is dropped.

    Args:
        path: the file (UTF-8).

    Returns:
        The vocabulary (``name`` is ``None``).

    Raises:
        VocabularyError: the file is missing or unreadable, has no classes, has an empty name, mixes
            the two formats, repeats an id, gives a name to two classes, has a control character
            in a name, or a class called ``unknown`` (reserved).
    """
    p = Path(path)
    source = f"classes file {p}"
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise VocabularyError(f"{source}: no such file", "check the --classes-file path") from None
    except IsADirectoryError:
        raise VocabularyError(f"{source}: is a directory", "give a text file") from None
    except UnicodeDecodeError as e:
        raise VocabularyError(
            f"{source}: not UTF-8 text ({e.reason})", "save it as UTF-8"
        ) from None
    except OSError as e:
        raise VocabularyError(f"{source}: cannot be read ({e.strerror})") from None
    classes, ids = _parse_lines(text, source, strict=True)
    return Vocabulary(tuple(classes), tuple(ids), None)


# --------------------------------------------------------------------------------------------------
# Builtin benchmark vocabularies
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuiltinVocab:
    """A benchmark class list shipped in ``samadapter/vocabularies/``.

    Attributes:
        name: the ``--vocab`` name.
        filename: the file in ``samadapter/vocabularies/``.
        description: one line for ``samadapter vocab list``.
        num_classes: number of classes (placeholder lines not counted).
    """

    name: str
    filename: str
    description: str
    num_classes: int


BUILTIN: dict[str, BuiltinVocab] = {
    b.name: b
    for b in (
        BuiltinVocab("ade150", "ade20k_150.txt", "ADE20K (ADEChallengeData2016), ids 1..150", 150),
        BuiltinVocab("ade847", "ade20k_847.txt", "ADE20K full, ids 1..847", 847),
        BuiltinVocab("coco-stuff", "coco_stuff.txt", "COCO-Stuff, 80 things + 91 stuff", 171),
        BuiltinVocab(
            "coco-panoptic", "coco_panoptic.txt", "COCO panoptic, 80 things + 53 stuff", 133
        ),
        BuiltinVocab("pc59", "pascal_ctx_59.txt", "Pascal Context, 59 classes", 59),
        BuiltinVocab("pc459", "pascal_ctx_459.txt", "Pascal Context full, 459 classes", 459),
        BuiltinVocab(
            "voc21", "pascal_voc_21.txt", "Pascal VOC, 20 classes + background (id 0)", 21
        ),
        BuiltinVocab("cityscapes", "cityscapes.txt", "Cityscapes, 19 classes (ids 0..18)", 19),
        BuiltinVocab("lvis", "lvis_1203.txt", "LVIS v1, 1203 classes", 1203),
    )
}
"""The benchmark vocabularies, by ``--vocab`` name."""


def _builtin_key(name: str) -> str:
    return name.strip().lower().replace("_", "-")


@cache
def _load_builtin_cached(key: str) -> Vocabulary:
    spec = BUILTIN[key]
    text = resources.files("samadapter").joinpath("vocabularies", spec.filename).read_text("utf-8")
    # The official lists keep a few names shared by two classes (ade847: 'dog', 'beds', ...;
    # pc459: 'rug', 'stone'); they define the benchmark, so they load as they are.
    classes, ids = _parse_lines(text, f"builtin vocabulary '{key}'", strict=False)
    return Vocabulary(tuple(classes), tuple(ids), key)


def load_builtin(name: str) -> Vocabulary:
    """Load a benchmark vocabulary shipped with the package.

    Args:
        name: a key of :data:`BUILTIN` (case and ``_``/``-`` do not matter), e.g. ``"ade150"``.

    Returns:
        The vocabulary, with the file's class ids and ``name`` set.

    Raises:
        VocabularyError: an unknown name (the message lists the valid ones).
    """
    key = _builtin_key(name)
    if key not in BUILTIN:
        raise VocabularyError(
            f"unknown vocabulary '{name}'; choose one of: {', '.join(BUILTIN)}",
            "see 'samadapter vocab list', or give your own with --classes / --classes-file",
        )
    return _load_builtin_cached(key)


def resolve_vocabulary(
    classes: str | None, classes_file: str | Path | None, vocab: str | None
) -> Vocabulary:
    """The vocabulary from the one of ``--classes``, ``--classes-file``, ``--vocab`` given.

    Args:
        classes: a ``--classes`` string (see :func:`parse_classes`) or ``None``.
        classes_file: a ``--classes-file`` path (see :func:`read_classes_file`) or ``None``.
        vocab: a builtin name (see :func:`load_builtin`) or ``None``.

    Returns:
        The vocabulary.

    Raises:
        VocabularyError: none or more than one source given, or the chosen source's own errors.
    """
    sources = (("--classes", classes), ("--classes-file", classes_file), ("--vocab", vocab))
    given = [flag for flag, value in sources if value is not None]
    if not given:
        raise VocabularyError("give one of --classes, --classes-file, --vocab", _SOURCES_HINT)
    if len(given) > 1:
        raise VocabularyError(
            f"give one of --classes, --classes-file, --vocab, not {' and '.join(given)}",
            "drop all but one of them",
        )
    if classes is not None:
        return parse_classes(classes)
    if classes_file is not None:
        return read_classes_file(classes_file)
    assert vocab is not None
    return load_builtin(vocab)


# --------------------------------------------------------------------------------------------------
# Text classifier
# --------------------------------------------------------------------------------------------------


def build_text_classifier(
    encode_text: Callable[[list[str]], torch.Tensor],
    vocab: Vocabulary,
    templates: Sequence[str] = TEMPLATES,
    batch_size: int = 256,
) -> torch.Tensor:
    """Text embedding of every name of ``vocab``, averaged over prompt templates.

    For each of the ``N`` flat names (:meth:`Vocabulary.flat_names`) the ``T`` prompts
    ``template.format(name)`` are encoded, each embedding is L2-normalised, the ``T`` are averaged
    and the mean is L2-normalised again. Prompts of many names go to ``encode_text`` together,
    ``batch_size`` prompts a call. Runs under :func:`torch.no_grad`.

    Args:
        encode_text: maps ``B`` prompts to a ``[B, C]`` float tensor (normalised or not), e.g. a
            tokenizer + CLIP text tower.
        vocab: the classes.
        templates: ``T`` format strings with one ``{}``; default :data:`TEMPLATES`.
        batch_size: prompts per ``encode_text`` call.

    Returns:
        ``[N, C]`` float32 tensor, unit-norm rows, on the device ``encode_text`` returns; row ``i``
        belongs to ``vocab.flat_names()[i]``.

    Raises:
        ValueError: no templates, a template without ``{}``, ``batch_size < 1``, or
            ``encode_text`` returning a wrongly shaped tensor.
    """
    import torch
    import torch.nn.functional as F

    templates = tuple(templates)
    if not templates:
        raise ValueError("build_text_classifier needs at least one template")
    for t in templates:
        if "{}" not in t:
            raise ValueError(f"template {t!r} has no '{{}}' for the class name")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    names = vocab.flat_names()
    prompts = [t.format(n) for n in names for t in templates]  # name-major: [N * T]
    chunks: list[torch.Tensor] = []
    with torch.no_grad():
        for start in range(0, len(prompts), batch_size):
            batch = prompts[start : start + batch_size]
            emb = encode_text(batch)
            if emb.ndim != 2 or emb.shape[0] != len(batch):
                raise ValueError(
                    f"encode_text returned shape {tuple(emb.shape)} for {len(batch)} prompts, "
                    f"expected [{len(batch)}, C]"
                )
            if chunks and emb.shape[1] != chunks[0].shape[1]:
                raise ValueError(
                    f"encode_text returned {emb.shape[1]} channels, earlier {chunks[0].shape[1]}"
                )
            chunks.append(F.normalize(emb.float(), dim=-1))
        per_prompt = torch.cat(chunks)  # [N * T, C]
        mean = per_prompt.view(len(names), len(templates), -1).mean(dim=1)  # [N, C]
        return F.normalize(mean, dim=-1)


def class_logits(
    name_logits: torch.Tensor, name_to_class: Sequence[int] | torch.Tensor, num_classes: int
) -> torch.Tensor:
    """Per-class logits: the best logit among each class's names (synonyms).

    Args:
        name_logits: ``[Q, N]`` logits of ``Q`` masks against the ``N`` flat names.
        name_to_class: ``[N]`` class index ``0..K-1`` of each name
            (:meth:`Vocabulary.name_to_class_index`).
        num_classes: ``K``; every class needs at least one name.

    Returns:
        ``[Q, K]`` tensor, same dtype and device as ``name_logits``; differentiable (the gradient
        flows to the best name of each class).

    Raises:
        ValueError: mismatched sizes, an index outside ``0..K-1``, or a class with no name.
    """
    import torch

    if name_logits.ndim != 2:
        raise ValueError(f"name_logits must be [Q, N], got shape {tuple(name_logits.shape)}")
    index = torch.as_tensor(name_to_class, dtype=torch.long, device=name_logits.device)
    q, n = name_logits.shape
    if index.shape != (n,):
        raise ValueError(f"name_to_class has shape {tuple(index.shape)}, name_logits has {n} names")
    counts = torch.bincount(index.clamp(min=0), minlength=num_classes) if n else index.new_zeros(0)
    if n and (int(index.min()) < 0 or int(index.max()) >= num_classes):
        raise ValueError(f"name_to_class holds indices outside 0..{num_classes - 1}")
    if num_classes < 1 or counts.numel() != num_classes or not bool((counts > 0).all()):
        raise ValueError(f"every one of the {num_classes} classes needs at least one name")
    if n == num_classes and torch.equal(index, torch.arange(n, device=index.device)):
        return name_logits  # one name per class, in order: nothing to reduce
    out = name_logits.new_full((q, num_classes), float("-inf"))
    return out.scatter_reduce(1, index.expand(q, n), name_logits, reduce="amax", include_self=True)
