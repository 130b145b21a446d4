"""Atomic file writes: results and caches are never left half-written.

Everything goes to a temp file in the target's folder first, then `os.replace` swaps it in, so a
reader (or a resumed run after kill -9) sees either the old file or the whole new one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import yaml

from merkit.errors import ConfigError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp makes owner-only (0600) files; results should get the permissions any new file gets.
_FILE_MODE = 0o666 & ~_current_umask()


def write_atomic(path: str | Path, write: Callable[[IO[Any]], None], binary: bool = False) -> Path:
    """Call `write(handle)` on a temp file beside `path`, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        mode = "wb" if binary else "w"
        with os.fdopen(fd, mode, **({} if binary else {"encoding": "utf-8", "newline": ""})) as f:
            write(f)
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def user_cache_dir() -> Path:
    """merkit's folder for what is cheap to rebuild and slow to build:
    `$XDG_CACHE_HOME/merkit`, else `~/.cache/merkit`."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "merkit"


def check_writable(path: str | Path, kind: str = "folder") -> Path:
    """Refuse, before any work, an output that cannot be created: `path` is a file where a
    folder is wanted (or the reverse), lies under a file, or its folder is read-only."""
    path = Path(path)
    if path.exists():
        if kind == "folder" and not path.is_dir():
            raise ConfigError(f"{path}: exists and is a file; the output must be a folder")
        if kind == "file" and path.is_dir():
            raise ConfigError(f"{path}: exists and is a folder; the output must be a file")
    parent = path if kind == "folder" and path.exists() else path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{path}: cannot be created, {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{path}: cannot be written, {parent} is read-only")
    return path


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    return write_atomic(path, lambda handle: handle.write(data), binary=True)


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_atomic(path, lambda handle: handle.write(text))


def write_json_atomic(path: str | Path, data: object) -> Path:
    return write_atomic(path, lambda handle: json.dump(data, handle, indent=2, sort_keys=False))


def write_yaml_atomic(path: str | Path, data: dict[str, Any]) -> Path:
    """`data` as YAML (plain types only: see `plain`), written atomically."""
    text = yaml.safe_dump(plain(data), sort_keys=False, allow_unicode=True)
    return write_text_atomic(path, text)


def plain(value: Any) -> Any:
    """`value` with YAML/JSON-safe types only: tuples become lists, paths and str subclasses
    (torch's version string) str, numpy scalars Python numbers."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, str | Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value


def differences(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two plain nested dicts (e.g. two configs)."""
    keys = list(dict.fromkeys([*a, *b]))
    found: list[str] = []
    for key in keys:
        name = f"{prefix}{key}"
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            found.extend(differences(va, vb, f"{name}."))
        elif va != vb:
            found.append(name)
    return found


class _AliasRefused(yaml.YAMLError):
    def __init__(self, anchor: str, line: int) -> None:
        super().__init__(anchor, line)
        self.anchor, self.line = anchor, line


class _NoAliasLoader(yaml.SafeLoader):
    """The safe loader (no tag runs code) refusing aliases (`*name`): a few lines of them can
    stand for billions of values (an "alias bomb") once merkit walks the config, and nothing
    merkit writes or reads needs one. Refused at the first alias, before anything expands."""

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _AliasRefused(str(event.anchor), event.start_mark.line + 1)
        return super().compose_node(parent, index)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping read with the safe, alias-free loader; ConfigError if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_NoAliasLoader) or {}
    except _AliasRefused as exc:
        raise ConfigError(
            f"{path}: line {exc.line} uses the YAML alias *{exc.anchor}; merkit reads no aliases "
            "(a few can expand into billions of values): write the values out"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc.__class__.__name__})") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a merkit file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys, got {type(data).__name__}")
    return data
