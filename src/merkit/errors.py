"""User-facing errors: one sentence naming the file/row/frame at fault; the CLI exits with 2."""

from __future__ import annotations


class MerkitError(Exception):
    """A problem with the user's input or request (not a bug). The CLI prints it and exits 2."""

    exit_code = 2


class AnnotationError(MerkitError):
    """An annotation file is missing, empty, malformed, or holds a value that cannot be read."""


class LabelError(AnnotationError):
    """An emotion word that the chosen taxonomy does not know."""


class DataLayoutError(MerkitError):
    """Frames or folders are not where the dataset's layout says they should be."""


class ConfigError(MerkitError):
    """A configuration value or command-line option is invalid."""
