"""What one grant lets through: row filter, projection and masks, and the delivery schema.

Pure functions; the router builds one :class:`DeliveryPlan` per active grant and calls it per
record.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import hmac
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from exchange.catalog.model import CatalogEntry
from exchange.grants.model import GrantTerms, Mask, Predicate
from exchange.grants.rules import effective_masks

RowFilter = Callable[[Mapping[str, Any]], bool]
DELIVERY_NAMESPACE = "exchange.delivery"


def compile_filter(predicates: Sequence[Predicate]) -> RowFilter:
    """A row passes when every predicate holds; a null value never matches."""
    checks = [_predicate(p) for p in predicates]
    if not checks:
        return lambda _row: True
    return lambda row: all(check(row) for check in checks)


def _predicate(p: Predicate) -> RowFilter:
    name = p.field
    if p.op == "prefix":
        prefix = str(p.values[0])
        return lambda row: isinstance(v := row.get(name), str) and v.startswith(prefix)
    # Filter values come from YAML or the CLI as text or numbers; compare both as text so that
    # `region_code: {eq: 140602}` matches the string "140602".
    wanted = frozenset(_text(v) for v in p.values)
    return lambda row: (v := row.get(name)) is not None and _text(v) in wanted


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return str(value)


def mask_value(value: Any, mask: Mask, salt: bytes) -> str | None:
    """The masked text of a value; ``None`` stays ``None``."""
    if value is None or mask.kind == "redact":
        return None
    text = _text(value)
    if mask.kind == "hash":
        # hmac.digest: OpenSSL in one call, several times faster than an hmac.new object.
        return hmac.digest(salt, text.encode("utf-8"), "sha256").hex()
    if mask.kind == "none":
        return text
    keep = mask.first + mask.last
    if len(text) <= keep:
        # Too short to show anything and still hide something: hide it all.
        return "*" * len(text)
    tail = text[len(text) - mask.last :] if mask.last else ""
    return text[: mask.first] + "*" * (len(text) - keep) + tail


def delivery_record_schema(
    entry: CatalogEntry, record_schema: Mapping[str, Any], grant: GrantTerms
) -> dict[str, Any]:
    """The granted fields of the entry's record, in the entry's order, all optional.

    Masked fields become strings. Every field is a union with null and defaults to null, so a
    grant's later changes (a field added or dropped) stay readable for its consumer.
    """
    masks = effective_masks(grant, entry)
    granted = set(grant.fields)
    fields = []
    for field in record_schema["fields"]:
        name = field["name"]
        if name not in granted:
            continue
        if name in masks:
            ftype: Any = ["null", "string"]
        else:
            ftype = copy.deepcopy(field["type"])
            branches = ftype if isinstance(ftype, list) else [ftype]
            ftype = ["null", *(b for b in branches if b != "null")]
        out = {"name": name, "type": ftype, "default": None}
        doc = field.get("doc")
        if doc:
            out["doc"] = doc + (f" Masked: {masks[name].describe()}." if name in masks else "")
        fields.append(out)
    return {
        "type": "record",
        "name": _record_name(grant.consumer, entry.id),
        "namespace": DELIVERY_NAMESPACE,
        "doc": f"{entry.title} ({entry.id}) as delivered to {grant.consumer}.",
        "fields": fields,
    }


def delivery_schema(
    entry: CatalogEntry, record_schema: Mapping[str, Any], grant: GrantTerms
) -> dict[str, Any]:
    """The delivery envelope: op, the projected record, the source event's id and time."""
    return {
        "type": "record",
        "name": _record_name(grant.consumer, entry.id) + "Change",
        "namespace": DELIVERY_NAMESPACE,
        "doc": f"Changes of {entry.id} delivered to {grant.consumer} under a grant.",
        "fields": [
            {
                "name": "op",
                "type": {
                    "type": "enum",
                    "name": "Op",
                    "namespace": "exchange",
                    "symbols": ["c", "u", "d", "r"],
                },
            },
            {
                "name": "after",
                "type": ["null", delivery_record_schema(entry, record_schema, grant)],
                "default": None,
            },
            {"name": "provider", "type": "string", "doc": "The entry's provider department."},
            {
                "name": "ts_ms",
                "type": {"type": "long", "logicalType": "timestamp-millis"},
                "doc": "When the change was read at the source.",
            },
            {
                "name": "event_id",
                "type": "string",
                "doc": "The change's id under this grant: the same for a repeat, unrelated to "
                "its id under any other grant.",
            },
            {"name": "grant_id", "type": "string", "doc": "The grant this delivery is made under."},
            {
                "name": "source_position",
                "type": ["null", "string"],
                "default": None,
                "doc": "The change's place in the source, as a token of this grant (the same "
                "for a repeat). Optional so that deliveries written before it existed stay "
                "readable.",
            },
        ],
    }


def _record_name(consumer: str, entry_id: str) -> str:
    parts = [consumer, *entry_id.replace(".", "_").split("_")]
    return "".join(p[:1].upper() + p[1:] for p in parts if p)


@dataclass(frozen=True)
class DeliveryPlan:
    """One grant applied to one entry: filter, project and mask a record; derive its key."""

    grant: GrantTerms
    entry: CatalogEntry
    fields: tuple[str, ...]
    masks: Mapping[str, Mask]
    row_filter: RowFilter
    salt: bytes
    #: A key field is masked: the delivered key is then a salted hash, never the value.
    hashed_key: bool

    @classmethod
    def build(cls, grant: GrantTerms, entry: CatalogEntry, salt: bytes) -> DeliveryPlan:
        """``salt``: the grant's own (``routing/salts.py``)."""
        masks = effective_masks(grant, entry)
        return cls(
            grant=grant,
            entry=entry,
            fields=tuple(grant.fields),
            masks=masks,
            row_filter=compile_filter(grant.row_filter),
            salt=salt,
            hashed_key=any(k in masks or k not in grant.fields for k in entry.key),
        )

    def accepts(self, record: Mapping[str, Any]) -> bool:
        return self.row_filter(record)

    def project(self, record: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.fields:
            value = record.get(name)
            mask = self.masks.get(name)
            out[name] = value if mask is None else mask_value(value, mask, self.salt)
        return out

    def key(self, key: bytes | None) -> bytes | None:
        """The delivered key: the source key, or its salted hash when it would reveal a field."""
        if key is None or not self.hashed_key:
            return key
        return hmac.digest(self.salt, key, "sha256").hex().encode("ascii")

    @functools.cached_property
    def ids_key(self) -> bytes:
        """The key of the grant's event ids and source positions (:func:`delivery_token`)."""
        return ids_key(self.salt)

    def token(self, kind: TokenKind, value: str) -> str:
        """``value`` (a source event id or position) as this grant's consumer sees it."""
        return delivery_token(self.ids_key, kind, value)


#: What a delivery token stands for: a source change's event id, or its place in the source.
TokenKind = Literal["event", "position"]
_TOKEN_TAGS: dict[str, bytes] = {"event": b"e\0", "position": b"p\0"}


def ids_key(salt: bytes) -> bytes:
    """A grant's key for :func:`delivery_token`, derived from its salt (``routing/salts.py``)."""
    return hmac.digest(salt, b"exchange delivery ids", "sha256")


def delivery_token(key: bytes, kind: TokenKind, value: str) -> str:
    """A source event id or position as one grant delivers it: 32 hex digits of
    HMAC-SHA256(grant's ids key, tag + value). The same change delivered again under the grant
    has the same token, so a repeat is still recognised; two grants' tokens of one change have
    nothing in common, so a department's copies under different grants (or two departments')
    cannot be joined by them. The router's kernel writes the same (``kernel/src/lib.rs``)."""
    return hmac.digest(key, _TOKEN_TAGS[kind] + value.encode(), "sha256")[:16].hex()
