"""``--help`` that reads at 80 columns: click's plain layout, grouped by panel, with plain metavars.

Typer's rich help puts six columns side by side and, at 80 columns, cuts long option names
(``--no-cache-feat…``) and shows every parameter's Python type (``<bool>``, ``<list[str]>``).
:class:`HelpCommand` writes each option as ``--name / --no-name METAVAR`` followed by its help,
wrapped to the terminal (at most 80 columns; a long name gets its help on the next lines), in
sections named after the options' ``rich_help_panel``; metavars are click's (``TEXT``,
``INTEGER``, ``FLOAT``, ``PATH``, ``[a|b|c]`` for choices) unless an option sets its own, and the
usage line shows ``IMAGES...``. The layout is tested against the pinned Typer version
(``pyproject.toml``): it reads parameters' public click attributes and Typer's
``type_descriptor``.
"""

from __future__ import annotations

import enum
import textwrap
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

_click = typer.core._click  # typer's own click (vendored since typer 0.2x)

_MAX_CHOICES_WIDTH = 40


def _annotation(param: Any) -> Any:
    descriptor = getattr(param, "type_descriptor", None)
    return getattr(descriptor, "annotation", None)


def _choices(param: Any) -> list[str]:
    descriptor = getattr(param, "type_descriptor", None)
    choices = getattr(descriptor, "choices", None) or ()
    return [c.value if isinstance(c, enum.Enum) else str(c) for c in choices]


def metavar(param: Any) -> str:
    """The value placeholder of an option or argument (``""`` for flags)."""
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return ""
    if param.metavar:
        return str(param.metavar)
    choices = _choices(param)
    if choices:
        text = "[" + "|".join(choices) + "]"
        return text if len(text) <= _MAX_CHOICES_WIDTH else "NAME"
    annotation = _annotation(param)
    if isinstance(annotation, type):
        if issubclass(annotation, bool):
            return "BOOLEAN"
        if issubclass(annotation, int):
            return "INTEGER"
        if issubclass(annotation, float):
            return "FLOAT"
        if issubclass(annotation, Path):
            return "PATH"
    if param.param_type_name == "argument":
        return param.name.upper()
    return "TEXT"


def _range(param: Any) -> str:
    descriptor = getattr(param, "type_descriptor", None)
    info = getattr(descriptor, "parameter_info", None)
    low, high = getattr(info, "min", None), getattr(info, "max", None)
    if low is None and high is None:
        return ""
    if low is not None and high is not None:
        return f"{low}<=x<={high}"
    return f"x>={low}" if low is not None else f"x<={high}"


def _default(param: Any) -> str:
    shown = param.show_default
    if isinstance(shown, str):
        return shown
    if shown is False or param.default is None or callable(param.default):
        return ""
    value = param.default
    if getattr(param, "is_flag", False):  # off needs no saying; on names the flag
        longs = [o for o in param.opts if o.startswith("--")]
        return longs[0] if value is True and param.secondary_opts and longs else ""
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) if value else ""
    return str(value)


def help_record(param: Any) -> tuple[str, str] | None:
    """``(names and metavar, help with [default; range; required])`` of a parameter."""
    if getattr(param, "hidden", False):
        return None
    if param.param_type_name == "argument":
        names = metavar(param) + ("..." if param.nargs != 1 else "")
    else:
        shorts = [o for o in param.opts if not o.startswith("--")]
        longs = [o for o in param.opts if o.startswith("--")]
        names = ", ".join(shorts + longs)
        if param.secondary_opts:
            names += " / " + ", ".join(param.secondary_opts)
        value = metavar(param)
        if value:
            names += " " + value + ("..." if getattr(param, "multiple", False) else "")
    extra = []
    default = _default(param)
    if default:
        extra.append(f"default: {default}")
    bounds = _range(param)
    if bounds:
        extra.append(bounds)
    if param.required:
        extra.append("required")
    text = getattr(param, "help", None) or ""
    if extra:
        text = f"{text}  [{'; '.join(extra)}]" if text else f"[{'; '.join(extra)}]"
    return names, text


class HelpCommand(TyperCommand):
    """A Typer command whose ``--help`` is laid out by :func:`help_record`, in panels."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        """``[OPTIONS] IMAGES...`` rather than Typer's ``{images}...``."""
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name != "argument":
                continue
            name = metavar(param) + ("..." if param.nargs != 1 else "")
            pieces.append(name if param.required else f"[{name}]")
        return pieces

    def format_options(self, ctx: Any, formatter: Any) -> None:
        """Arguments, then options without a panel, then each panel in order of appearance."""
        sections: dict[str, list[tuple[str, str]]] = {"Arguments": [], "Options": []}
        for param in self.get_params(ctx):
            record = help_record(param)
            if record is None:
                continue
            if param.param_type_name == "argument":
                sections["Arguments"].append(record)
                continue
            panel = getattr(param, "rich_help_panel", None) or "Options"
            sections.setdefault(panel, []).append(record)
        for title, rows in sections.items():
            if rows:
                with formatter.section(title):
                    write_dl(formatter, rows)


def write_dl(
    formatter: Any, rows: list[tuple[str, str]], col_max: int = 30, col_spacing: int = 2
) -> None:
    """click's definition list, but help text is never broken at hyphens (``--no-merge``,
    ``coco-panoptic`` stay whole; only a word longer than the column is split) and names
    longer than ``col_max`` get their help below."""
    indent = " " * formatter.current_indent
    first = min(max(len(name) for name, _ in rows), col_max) + col_spacing
    width = max(formatter.width - formatter.current_indent - first, 20)
    for name, text in rows:
        lines = textwrap.wrap(text, width, break_on_hyphens=False) or [""]
        if len(name) > first - col_spacing:
            formatter.write(f"{indent}{name}\n")
            pad = indent + " " * first
            formatter.write("".join(f"{pad}{line}\n" for line in lines if line))
            continue
        formatter.write(f"{indent}{name:<{first}}{lines[0]}".rstrip() + "\n")
        formatter.write("".join(f"{indent}{' ' * first}{line}\n" for line in lines[1:]))


class HelpGroup(TyperGroup):
    """A Typer group whose sub-commands use :class:`HelpCommand` by default."""

    command_class = HelpCommand
