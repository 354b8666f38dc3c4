"""The names ``--preset``, ``--sam``, ``--adapter``, ``--clip`` and ``--vocab`` accept, for help
texts and shell completion (read from the presets, the weights registry and the builtin
vocabularies; no torch). The options stay free strings checked when the command runs, so a bad
name gets samadapter's one-line error naming the choices."""

from __future__ import annotations

from collections.abc import Callable

from samadapter.presets import PRESETS
from samadapter.vocab import BUILTIN
from samadapter.weights import REGISTRY

TINY = "tiny-random"


def preset_names() -> list[str]:
    """``auto`` and every preset."""
    return ["auto", *PRESETS]


def sam_names() -> list[str]:
    """SAM architectures (``vit_b``...) then SAM 2.1 models, as ``--sam`` takes them."""
    sam = [spec.name.removeprefix("sam_") for spec in REGISTRY.values() if spec.kind == "sam"]
    sam2 = [spec.name for spec in REGISTRY.values() if spec.kind == "sam2"]
    return sam + sam2


def adapter_names() -> list[str]:
    """Supported Mask-Adapter weights of the registry, and ``none``."""
    return [
        spec.name for spec in REGISTRY.values() if spec.kind == "adapter" and spec.supported
    ] + ["none"]


def clip_names() -> list[str]:
    """CLIP architectures of the registry."""
    return [spec.name for spec in REGISTRY.values() if spec.kind == "clip"]


def vocab_names() -> list[str]:
    """Builtin vocabularies."""
    return list(BUILTIN)


def completer(names: Callable[[], list[str]], *, tests: bool = False) -> Callable[[str], list[str]]:
    """A shell-completion callback offering ``names()`` that start with what was typed (and
    ``tiny-random`` when ``tests``)."""

    def complete(incomplete: str) -> list[str]:
        offered = [*names(), TINY] if tests else names()
        return [name for name in offered if name.startswith(incomplete)]

    return complete
