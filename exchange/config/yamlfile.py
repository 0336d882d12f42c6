"""YAML loading that remembers where every value came from.

PyYAML drops positions when it builds Python objects, so we compose the node tree ourselves and
record the line of every mapping key and list item by its path. Duplicate keys, which PyYAML
silently accepts (the last one wins), are reported instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from exchange.config.problems import ConfigError, Loc, Problem, format_loc, problems_from_validation


@dataclass
class YamlDocument:
    """Parsed YAML data plus the 1-based line of each path in it."""

    file: Path
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)


def load_yaml(file: Path) -> YamlDocument:
    """Load one YAML file; raise :class:`ConfigError` naming the file and line on any problem."""
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError([Problem(file, "(file)", "file not found")]) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(file, "(file)", f"cannot read: {exc}")]) from exc
    return parse_yaml(text, file)


def parse_yaml(text: str, file: Path) -> YamlDocument:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.load(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        reason = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise ConfigError([Problem(file, "(yaml)", f"invalid YAML: {reason}", line)]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(file, "(yaml)", f"invalid YAML: {exc}")]) from exc
    doc = YamlDocument(file, data)
    problems: list[Problem] = []
    if node is not None:
        _walk(node, (), doc.lines, problems, file)
    if problems:
        raise ConfigError(problems)
    return doc


def _walk(
    node: yaml.Node, loc: Loc, lines: dict[Loc, int], problems: list[Problem], file: Path
) -> None:
    lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                problems.append(
                    Problem(
                        file,
                        format_loc((*loc, key)),
                        f"duplicate key (first at line {seen[key]})",
                        line,
                    )
                )
                continue
            seen[key] = line
            lines[(*loc, key)] = line
            _walk(value_node, (*loc, key), lines, problems, file)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*loc, index), lines, problems, file)


_M = TypeVar("_M", bound=BaseModel)


def load_items(
    file: Path, key: str, model: type[_M], problems: list[Problem]
) -> tuple[YamlDocument, list[tuple[int, _M]]] | None:
    """A YAML file ``{key: [...]}`` validated item by item, each valid item with its index.

    A bad item is reported in ``problems`` (file, field path, line) and skipped, so its
    neighbours still load.
    """
    try:
        doc = load_yaml(file)
    except ConfigError as exc:
        problems.extend(exc.problems)
        return None
    data = doc.data
    if not isinstance(data, dict) or set(data) != {key} or not isinstance(data[key], list):
        problems.append(
            Problem(file, "(top level)", f"must be a mapping with one key, {key}: [...]", 1)
        )
        return None
    items = []
    for index, item in enumerate(data[key]):
        try:
            items.append((index, model.model_validate(item)))
        except ValidationError as exc:
            problems.extend(
                problems_from_validation(exc, file, doc.lines, item, prefix=(key, index))
            )
    return doc, items
