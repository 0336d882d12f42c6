"""The schema registry (Confluent API; Apicurio serves it under ``/apis/ccompat/v7``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from exchange.config.settings import RegistrySettings
from exchange.kafka.errors import RegistryError

_T = TypeVar("_T")
#: Confluent error codes for "no such subject" / "no such version".
_NOT_FOUND = {40401, 40402, 40403, 40408}


@dataclass(frozen=True)
class RegisteredSchema:
    subject: str
    version: int
    schema_id: int
    schema: dict[str, Any]


class Registry:
    def __init__(self, settings: RegistrySettings) -> None:
        self.url = settings.url
        try:
            self._client = SchemaRegistryClient(settings.client_config())
        except ValueError as exc:  # the client refuses unknown or inconsistent settings
            raise RegistryError(
                f"schema registry at {self.url}: bad client settings: {exc}"
            ) from exc

    def close(self) -> None:
        """Closes the client's HTTP connections (and drops its schema cache)."""
        self._client.close()

    def latest(self, subject: str) -> RegisteredSchema | None:
        """The latest version under ``subject``, or ``None`` if the subject does not exist."""
        found = self._optional(
            f"read latest schema of {subject}", self._client.get_latest_version, subject
        )
        if found is None:
            return None
        return RegisteredSchema(
            subject,
            int(found.version or 0),
            int(found.schema_id or 0),
            json.loads(found.schema.schema_str or "{}"),
        )

    def schema_by_id(self, schema_id: int) -> dict[str, Any]:
        found = self._call(f"read schema id {schema_id}", self._client.get_schema, schema_id)
        schema = json.loads(found.schema_str or "{}")
        if not isinstance(schema, dict):
            raise RegistryError(f"schema id {schema_id} is not an Avro record schema")
        return schema

    def register(self, subject: str, schema_json: str) -> int:
        return self._call(
            f"register schema under {subject}",
            self._client.register_schema,
            subject,
            Schema(schema_json, "AVRO"),
        )

    def lookup(self, subject: str, schema_json: str) -> int | None:
        """The id of ``schema_json`` if it is registered under ``subject``, else ``None``."""
        found = self._optional(
            f"look up schema under {subject}",
            self._client.lookup_schema,
            subject,
            Schema(schema_json, "AVRO"),
        )
        return None if found is None else int(found.schema_id or 0)

    def is_compatible(self, subject: str, schema_json: str) -> bool:
        return self._call(
            f"check compatibility under {subject}",
            self._client.test_compatibility,
            subject,
            Schema(schema_json, "AVRO"),
        )

    def compatibility(self, subject: str) -> str | None:
        """The subject's own compatibility level, ``None`` if it has none set."""
        level = self._optional(
            f"read compatibility of {subject}", self._client.get_compatibility, subject
        )
        return str(level) if level is not None else None

    def set_compatibility(self, subject: str, level: str) -> None:
        self._call(
            f"set compatibility of {subject}", self._client.set_compatibility, subject, level
        )

    def _optional(self, what: str, fn: Callable[..., _T], *args: Any) -> _T | None:
        """Like :meth:`_call`, but "no such subject or version" is ``None``, not an error."""
        try:
            return self._call(what, fn, *args)
        except RegistryError as exc:
            if exc.http_status == 404 or exc.error_code in _NOT_FOUND:
                return None
            raise

    def _call(self, what: str, fn: Callable[..., _T], *args: Any) -> _T:
        try:
            return fn(*args)
        except SchemaRegistryError as exc:
            raise RegistryError(
                f"schema registry at {self.url}: cannot {what}: {exc.error_message}",
                http_status=exc.http_status_code,
                error_code=exc.error_code,
            ) from exc
        except Exception as exc:  # connection refused, timeouts: the HTTP client's errors
            raise RegistryError(f"schema registry at {self.url}: cannot {what}: {exc}") from exc
