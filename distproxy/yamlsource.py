"""YAML documents that remember where each value came from.

Operators edit distproxy's YAML files by hand, so every error must name the file, the line
and the key. ``load_marked`` parses with PyYAML's safe composer and returns ``Marked``
wrappers: plain values plus the line they were written on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


class SourceError(ValueError):
    """A problem in a YAML source file; ``str()`` reads ``file:line: key: cause``."""

    def __init__(self, path: Path | str, line: int | None, where: str, cause: str) -> None:
        self.path = str(path)
        self.line = line
        self.where = where
        self.cause = cause
        location = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{location}: {where}: {cause}" if where else f"{location}: {cause}")


@dataclass(frozen=True)
class Marked:
    """A YAML value with its 1-based source line. Mappings hold ``dict[str, Marked]``,
    sequences ``list[Marked]``; scalars hold the constructed Python value."""

    value: Any
    line: int

    def plain(self) -> Any:
        """The value with all marks removed."""
        if isinstance(self.value, dict):
            return {k: v.plain() for k, v in self.value.items()}
        if isinstance(self.value, list):
            return [v.plain() for v in self.value]
        return self.value


def _convert(node: yaml.Node, path: Path, constructor: yaml.constructor.SafeConstructor) -> Marked:
    line = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Marked] = {}
        for key_node, value_node in node.value:
            key = constructor.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise SourceError(path, key_node.start_mark.line + 1, "", f"keys must be strings, got {key!r}")
            if key in result:
                raise SourceError(path, key_node.start_mark.line + 1, key, "duplicate key")
            result[key] = _convert(value_node, path, constructor)
        return Marked(result, line)
    if isinstance(node, yaml.SequenceNode):
        return Marked([_convert(item, path, constructor) for item in node.value], line)
    return Marked(constructor.construct_object(node, deep=True), line)


def load_marked(path: Path | str, text: str | None = None) -> Marked:
    """Parse one YAML document from ``path`` (or from ``text``, named ``path``)."""
    path = Path(path)
    if text is None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise SourceError(path, None, "", f"cannot read: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise SourceError(path, None, "", f"not UTF-8 text ({exc.reason})") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark is not None else None
        raise SourceError(path, line, "", f"invalid YAML: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise SourceError(path, None, "", f"invalid YAML: {exc}") from None
    if node is None:
        raise SourceError(path, 1, "", "the file is empty")
    return _convert(node, path, yaml.constructor.SafeConstructor())
