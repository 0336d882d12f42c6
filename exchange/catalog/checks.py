"""Cross-checks over a loaded catalog: the things no single file can know is wrong."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from exchange.catalog.avro import FieldType, record_fields
from exchange.catalog.model import MAX_TOPIC_LENGTH, TOPIC_CHARS
from exchange.config import Problem
from exchange.rules.rules import STRING_RULES

if TYPE_CHECKING:
    from exchange.catalog.load import Catalog, LoadedEntry

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def check_entries(catalog: Catalog, source_prefix: str) -> list[Problem]:
    problems: list[Problem] = []
    collisions: dict[str, str] = {}
    for loaded in catalog.entries.values():
        problems.extend(_check_identity(loaded, catalog, source_prefix))
        problems.extend(_check_against_schema(loaded))
        problems.extend(_consistency_problems(loaded, catalog))
        # Kafka warns that '.' and '_' collide in metric names; two such topics are ambiguous.
        topic = source_prefix + loaded.entry.id
        folded = topic.replace(".", "_")
        if folded in collisions and collisions[folded] != topic:
            problems.append(
                loaded.source.problem(
                    f"topic {topic} collides with {collisions[folded]} in Kafka metric names "
                    "('.' and '_' are treated alike)",
                    "id",
                )
            )
        collisions.setdefault(folded, topic)
    return problems


def _check_identity(loaded: LoadedEntry, catalog: Catalog, source_prefix: str) -> list[Problem]:
    entry, src = loaded.entry, loaded.source
    out = []
    known_provider = entry.provider in catalog.departments
    if not known_provider:
        out.append(
            src.problem(f"unknown provider {entry.provider!r} (not in departments)", "provider")
        )
    topic = source_prefix + entry.id
    if not TOPIC_CHARS.match(topic):
        bad = "".join(sorted({c for c in topic if not TOPIC_CHARS.match(c)}))
        out.append(
            src.problem(
                f"id {entry.id!r} is not valid in a Kafka topic name ({topic}): "
                f"characters {bad!r} are not allowed (only a-z A-Z 0-9 . _ -)",
                "id",
            )
        )
    elif len(topic) > MAX_TOPIC_LENGTH:
        out.append(src.problem(f"topic name {topic} is longer than {MAX_TOPIC_LENGTH}", "id"))
    else:
        provider, _, name = entry.id.partition(".")
        # With an unknown provider the id cannot match it either: one problem is enough.
        if known_provider and (provider != entry.provider or not _NAME.match(name)):
            out.append(
                src.problem(
                    f"id {entry.id!r} must be <provider>.<name> with provider {entry.provider!r} "
                    "and a name of lower-case letters, digits and _",
                    "id",
                )
            )
    return out


def _check_against_schema(loaded: LoadedEntry) -> list[Problem]:
    if loaded.schema is None:
        return []  # already reported as a schema problem
    entry, src = loaded.entry, loaded.source
    fields = record_fields(loaded.schema)
    schema_file = entry.schema_file
    out = []
    for i, key in enumerate(entry.key):
        if key not in fields:
            out.append(src.problem(f"key field {key!r} is not in schema {schema_file}", "key", i))
        elif fields[key].nullable:
            out.append(src.problem(f"key field {key!r} is nullable in {schema_file}", "key", i))
    for name, spec in entry.fields.items():
        if name not in fields:
            out.append(
                src.problem(f"field {name!r} is not in schema {schema_file}", "fields", name)
            )
            continue
        ftype = fields[name]
        out += _layout_problems(loaded, name, fields)
        for i, rule in enumerate(spec.rules):
            if rule.name in STRING_RULES and not ftype.is_string:
                out.append(
                    src.problem(
                        f"rule {rule.name} needs a string field, {name!r} is {ftype.avro_type}",
                        "fields",
                        name,
                        "rules",
                        i,
                    )
                )
            elif rule.name == "range" and not ftype.is_numeric:
                out.append(
                    src.problem(
                        f"rule range needs a numeric field, {name!r} is {ftype.avro_type}",
                        "fields",
                        name,
                        "rules",
                        i,
                    )
                )
    return out


def _layout_problems(
    loaded: LoadedEntry, name: str, fields: Mapping[str, FieldType]
) -> list[Problem]:
    """A field's layout must name fields of the entry and fit within its length."""
    layout = loaded.entry.fields[name].layout
    if layout is None:
        return []
    src = loaded.source
    out = []
    for i, part in enumerate(layout.parts):
        where = ("fields", name, "layout", "parts", i)
        if part.source not in fields:
            out.append(src.problem(f"layout of {name!r}: no field {part.source!r}", *where))
        if part.chars[1] > layout.length:
            out.append(
                src.problem(
                    f"layout of {name!r}: chars {list(part.chars)} go past its length "
                    f"{layout.length}",
                    *where,
                )
            )
    return out


def _consistency_problems(loaded: LoadedEntry, catalog: Catalog) -> list[Problem]:
    """A declared cross-entry check names a field of this entry and one of another entry."""
    out = []
    src = loaded.source
    own = record_fields(loaded.schema) if loaded.schema is not None else None
    seen: set[str] = set()
    for i, check in enumerate(loaded.entry.checks):
        if check.id in seen:
            out.append(src.problem(f"check id {check.id!r} is used twice", "checks", i, "id"))
        seen.add(check.id)
        if own is not None and check.field not in own:
            out.append(
                src.problem(f"check {check.id}: no field {check.field!r}", "checks", i, "field")
            )
        other = catalog.entries.get(check.exists_in)
        if other is None:
            out.append(
                src.problem(
                    f"check {check.id}: no catalog entry {check.exists_in!r}",
                    "checks",
                    i,
                    "exists_in",
                )
            )
        elif other.schema is not None and check.target_field not in record_fields(other.schema):
            out.append(
                src.problem(
                    f"check {check.id}: {check.exists_in} has no field {check.target_field!r}",
                    "checks",
                    i,
                    "as",
                )
            )
    return out
