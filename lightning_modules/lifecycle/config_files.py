"""YAML errors named by file: jsonargparse reports a broken config as a problem in "<unicode string>"."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

YAML_SUFFIXES = (".yaml", ".yml")


def check_config_files(args: Sequence[Any]) -> str | None:
    """The first problem found in the YAML files that `--config` names (and the files they include by
    relative path), as `<file>: <problem> (line L, column C)`; None if every file parses."""
    seen: set[Path] = set()
    pending = [Path(str(p)) for p in _config_arguments(args)]
    while pending:
        path = pending.pop()
        if path in seen or not path.is_file():
            continue  # jsonargparse reports a missing file itself
        seen.add(path)
        try:
            content = yaml.safe_load(path.read_text())
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
            problem = getattr(error, "problem", None) or str(error).splitlines()[0]
            return f"{path}: not valid YAML: {problem}{where}"
        except (OSError, UnicodeDecodeError) as error:
            return f"{path}: cannot be read ({error})"
        pending.extend(path.parent / name for name in _included_files(content))
    return None


def _config_arguments(args: Sequence[Any]) -> Iterator[str]:
    args = [str(a) for a in args]
    for i, arg in enumerate(args):
        if arg in ("--config", "-c") and i + 1 < len(args):
            yield args[i + 1]
        elif arg.startswith("--config="):
            yield arg.split("=", 1)[1]


def _included_files(node: Any) -> Iterator[str]:
    """Relative YAML file names used as values (`data: _data.yaml`), which jsonargparse loads as configs."""
    if isinstance(node, dict):
        for value in node.values():
            yield from _included_files(value)
    elif isinstance(node, list):
        for value in node:
            yield from _included_files(value)
    elif isinstance(node, str) and node.endswith(YAML_SUFFIXES) and "\n" not in node:
        yield node
