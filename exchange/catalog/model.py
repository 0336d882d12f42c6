"""The catalog's data model: departments and the data resources (entries) they provide."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_serializer,
    field_validator,
    model_serializer,
    model_validator,
)

from exchange.rules import Rule, parse_rule
from exchange.rules.rules import rule_to_raw

Sensitivity = Literal["public", "internal", "sensitive"]
#: 无条件共享 / 有条件共享 / 不予共享.
SharingClass = Literal["unconditional", "conditional", "none"]
UpdateCycle = Literal[
    "realtime", "hourly", "daily", "weekly", "monthly", "quarterly", "yearly", "on_change"
]
Level = Literal["province", "city", "county"]

_ID = r"^[a-z][a-z0-9_]*$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Department(_Model):
    id: Annotated[str, Field(pattern=_ID, max_length=64)]
    name: Annotated[str, Field(min_length=1)]
    level: Level
    #: GB/T 2260 administrative division code, e.g. 140600 (朔州市), 140602 (朔城区).
    region_code: Annotated[str, Field(pattern=r"^\d{6}$")]
    parent: str | None = None


class LayoutPart(_Model):
    """Characters ``[start, end)`` of a field's text that another field of the entry gives away:
    the same characters (``same_as``), or only their parity (``parity_of``: GB 11643's gender)."""

    chars: tuple[Annotated[int, Field(ge=0)], Annotated[int, Field(ge=1)]]
    same_as: str | None = None
    parity_of: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> LayoutPart:
        if (self.same_as is None) == (self.parity_of is None):
            raise ValueError("name exactly one of same_as and parity_of")
        if self.chars[0] >= self.chars[1]:
            raise ValueError(f"chars {list(self.chars)}: the end must come after the start")
        return self

    @property
    def source(self) -> str:
        return self.same_as or self.parity_of or ""


class Layout(_Model):
    """What a structured identifier holds at fixed positions, so grant rules can refuse a mask
    that other granted fields undo. GB 11643's citizen ID: region (6), birth date (8), sequence
    (3, the last one's parity is the gender), check digit (ISO 7064 MOD 11-2)."""

    length: Annotated[int, Field(ge=1, le=256)]
    #: The last character is computed from the others.
    check_digit: bool = False
    #: How many values one character takes (10 for digits).
    alphabet: Annotated[int, Field(ge=2)] = 10
    parts: tuple[LayoutPart, ...] = ()


class FieldSpec(_Model):
    #: ``sensitive`` fields are masked in deliveries unless a grant unmasks them.
    sensitivity: Sensitivity = "internal"
    rules: tuple[Rule, ...] = ()
    layout: Layout | None = None

    @field_validator("rules", mode="before")
    @classmethod
    def _parse_rules(cls, raw: Any) -> tuple[Rule, ...]:
        if raw is None:
            return ()
        if not isinstance(raw, list):
            raise ValueError("rules must be a list, e.g. [required, citizen_id]")
        return tuple(parse_rule(item) for item in raw)

    @field_serializer("rules")
    def _dump_rules(self, rules: tuple[Rule, ...]) -> list[Any]:
        return [rule_to_raw(r) for r in rules]

    @model_serializer(mode="wrap")
    def _without_empty_layout(self, handler: SerializerFunctionWrapHandler) -> Any:
        # A field without a layout publishes as before: the catalog record of an entry that
        # did not change stays byte for byte the same (catalog apply republishes changes only).
        out = handler(self)
        if isinstance(out, dict) and out.get("layout") is None:
            out.pop("layout", None)
        return out


class Retention(_Model):
    #: Days a record is kept; ``None`` keeps it forever.
    days: Annotated[int, Field(ge=1)] | None = None
    #: Keep the latest record per key (lets a new consumer be backfilled with current state).
    compaction: bool = True

    def topic_config(self) -> dict[str, str]:
        """The Kafka topic configuration this retention means."""
        if self.compaction:
            policy = "compact" if self.days is None else "compact,delete"
        else:
            policy = "delete"
        retention_ms = -1 if self.days is None else self.days * 86_400_000
        return {"cleanup.policy": policy, "retention.ms": str(retention_ms)}


class ConsistencyCheck(_Model):
    """多源核验: every value of ``field`` in this entry's records must be a value of ``as`` in
    the current records of entry ``exists_in`` (e.g. each insured person's citizen_id is in the
    population entry). The quality worker counts the records that fail, with samples shown to
    the two providers (``exchange/quality/checks.py``)."""

    id: Annotated[str, Field(pattern=_ID, max_length=64)]
    title: str = ""
    field: str
    exists_in: str
    #: The field of ``exists_in`` holding the values (default: the same name).
    as_field: str | None = Field(None, alias="as")

    @property
    def target_field(self) -> str:
        return self.as_field or self.field


class CatalogEntry(_Model):
    #: ``<provider>.<name>``; also names the source topic ``src.<id>``.
    id: str
    title: Annotated[str, Field(min_length=1)]
    provider: str
    description: str = ""
    #: Avro schema file, relative to ``schemas/avro/``.
    schema_file: Path = Field(alias="schema")
    #: Business key field(s); the Kafka record key.
    key: tuple[str, ...]
    sharing: SharingClass
    update_cycle: UpdateCycle
    partitions: Annotated[int, Field(ge=1, le=1000)] = 3
    retention: Retention = Field(default_factory=Retention)
    fields: dict[str, FieldSpec] = Field(default_factory=dict)
    checks: tuple[ConsistencyCheck, ...] = ()

    @model_serializer(mode="wrap")
    def _without_empty_checks(self, handler: SerializerFunctionWrapHandler) -> Any:
        # An entry without checks publishes as before (catalog apply republishes changes only).
        out = handler(self)
        if isinstance(out, dict) and not out.get("checks"):
            out.pop("checks", None)
        return out

    @field_validator("key", mode="before")
    @classmethod
    def _key_list(cls, raw: Any) -> Any:
        if isinstance(raw, str):
            return (raw,)
        if isinstance(raw, list) and not raw:
            raise ValueError("key needs at least one field")
        return raw

    def sensitivity(self, field: str) -> Sensitivity:
        spec = self.fields.get(field)
        return spec.sensitivity if spec else "internal"


TOPIC_CHARS = re.compile(r"^[a-zA-Z0-9._-]+$")
#: Kafka's limit on topic name length.
MAX_TOPIC_LENGTH = 249
