"""The names ``--preset``, ``--sam``, ``--adapter``, ``--clip`` and ``--vocab`` accept, for help
texts and shell completion (read from the presets, the model registry and the builtin
vocabularies; no torch). The options stay free strings checked when the command runs, so a bad
name gets samadapter's one-line error naming the choices."""

from __future__ import annotations

from collections.abc import Callable

from samadapter import registry
from samadapter.presets import PRESETS
from samadapter.vocab import BUILTIN


def preset_names() -> list[str]:
    """``auto`` and every preset."""
    return ["auto", *PRESETS]


def sam_names() -> list[str]:
    """SAM architectures (``vit_b``...) then SAM 2.1 models, as ``--sam`` takes them."""
    return registry.names("sam")


def adapter_names() -> list[str]:
    """Supported Mask-Adapter weights of the registry, and ``none``."""
    return [*registry.names("adapter"), "none"]


def clip_names() -> list[str]:
    """CLIP architectures of the registry."""
    return registry.names("clip")


def vocab_names() -> list[str]:
    """Builtin vocabularies."""
    return list(BUILTIN)


def completer(names: Callable[[], list[str]], *, tests: bool = False) -> Callable[[str], list[str]]:
    """A shell-completion callback offering ``names()`` that start with what was typed (and
    the test models' name when ``tests``)."""

    def complete(incomplete: str) -> list[str]:
        offered = [*names(), registry.TINY] if tests else names()
        return [name for name in offered if name.startswith(incomplete)]

    return complete
