"""Errors a user can fix. The CLI prints each as one line and exits non-zero."""

from __future__ import annotations


class SamAdapterError(Exception):
    """Base class: a problem with the user's input, files or environment, with a hint to fix it.

    Args:
        message: what is wrong, naming the file / flag / value concerned.
        hint: how to fix it (optional); shown after the message.
    """

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class VocabularyError(SamAdapterError):
    """Empty, duplicate or unknown class names / vocabularies."""


class WeightsError(SamAdapterError):
    """Weights missing, not downloadable, or failing their checksum."""


class CheckpointError(SamAdapterError):
    """A checkpoint whose keys or shapes do not match the model."""


class ImageError(SamAdapterError):
    """A missing, unreadable or corrupt image."""


class OutputError(SamAdapterError):
    """Outputs that exist already (without ``--overwrite``), or cannot be written (disk full)."""


class ConfigError(SamAdapterError):
    """Unknown model names, presets or bad option values."""


class TrainingError(SamAdapterError):
    """Training that cannot go on: a non-finite loss or gradient, or nothing to learn from."""


class DatasetError(SamAdapterError):
    """A dataset that is missing, laid out differently than expected, or holds unreadable labels."""
