"""The schema registry's REST API (Confluent's; Apicurio serves it under ``/apis/ccompat/v7``).

Seven calls on the standard library's ``http.client`` instead of confluent-kafka's
``SchemaRegistryClient``: that client imports httpx, authlib, joserfc and cryptography for OAuth
the exchange does not use, 17.8 MB of resident memory in every process (measured: importing
``confluent_kafka.schema_registry`` after ``confluent_kafka``), a sixth of what a 10,000-grant
router worker may use beside its grants. What it did that we use is here: keep-alive connections,
basic authentication, TLS with our CA and an optional client certificate, and tries again with
jittered exponential waits on refused connections, timeouts and 408/429/5xx (its defaults: 3
retries, 1 s doubling up to 20 s).
"""

from __future__ import annotations

import base64
import http.client
import json
import random
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from exchange.config.settings import RegistrySettings
from exchange.kafka.errors import RegistryError

#: Confluent error codes for "no such subject" / "no such version".
_NOT_FOUND = {40401, 40402, 40403, 40408}
#: Answers worth asking again: the registry or a proxy in front of it is busy or restarting.
_RETRIABLE = {408, 429, 500, 502, 503, 504}
RETRY_WAIT_S = 1.0
RETRY_MAX_WAIT_S = 20.0
_ACCEPT = (
    "application/vnd.schemaregistry.v1+json, application/vnd.schemaregistry+json, application/json"
)
_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


@dataclass(frozen=True)
class RegisteredSchema:
    subject: str
    version: int
    schema_id: int
    schema: dict[str, Any]


class _RefusedError(Exception):
    """The registry answered with an error status (and, usually, Confluent's error code)."""

    def __init__(self, status: int, error_code: int | None, message: str) -> None:
        super().__init__(message)
        self.status, self.error_code, self.message = status, error_code, message


def retry_wait_s(attempt: int) -> float:
    """Full jitter (AWS's name): random in [0, min(1 s x 2^attempt, 20 s)], as confluent's client.

    Jitter spreads the retries of many threads and processes that lost the registry at once.
    """
    return random.random() * min(RETRY_WAIT_S * 2.0**attempt, RETRY_MAX_WAIT_S)


def refusal(status: int, body: bytes) -> _RefusedError:
    """The registry's error answer read as Confluent's ``{"error_code": n, "message": s}``."""
    try:
        data = json.loads(body)
        code, message = data.get("error_code"), data.get("message")
    except (ValueError, AttributeError):
        code, message = None, None
    if not isinstance(message, str):
        message = f"HTTP {status}: {body[:200].decode('utf-8', 'replace') or 'no body'}"
    return _RefusedError(status, code if isinstance(code, int) else None, message)


class Registry:
    """One registry: thread-safe, one keep-alive connection per calling thread.

    Nothing is cached here: readers cache decoders per schema id (``wire.SchemaLookup``), and a
    cache of every subject looked up is what made the old client cost 37 MB while 10,000 grants
    were prepared.
    """

    def __init__(self, settings: RegistrySettings) -> None:
        self.url = settings.url
        parts = urlsplit(settings.url)
        if not parts.hostname:
            raise RegistryError(f"schema registry url {settings.url!r} names no host")
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port
        self._base = parts.path.rstrip("/")
        self._timeout = settings.timeout_s
        self._retries = settings.retries
        self._headers = {"Accept": _ACCEPT, "User-Agent": "exchange"}
        auth = settings.basic_auth()
        if auth is not None:
            token = base64.b64encode(auth.encode()).decode("ascii")
            self._headers["Authorization"] = f"Basic {token}"
        self._tls = _tls_context(settings) if self._https else None
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: set[http.client.HTTPConnection] = set()

    def close(self) -> None:
        """Closes every thread's connection; a later call opens a new one."""
        with self._lock:
            conns, self._open = self._open, set()
        for conn in conns:
            conn.close()

    def latest(self, subject: str) -> RegisteredSchema | None:
        """The latest version under ``subject``, or ``None`` if the subject does not exist."""
        found = self._optional(
            f"read latest schema of {subject}", "GET", f"subjects/{_q(subject)}/versions/latest"
        )
        if found is None:
            return None
        return RegisteredSchema(
            subject,
            int(found.get("version") or 0),
            int(found.get("id") or 0),
            json.loads(found.get("schema") or "{}"),
        )

    def schema_by_id(self, schema_id: int) -> dict[str, Any]:
        found = self._call(f"read schema id {schema_id}", "GET", f"schemas/ids/{int(schema_id)}")
        schema = json.loads(found.get("schema") or "{}")
        if not isinstance(schema, dict):
            raise RegistryError(f"schema id {schema_id} is not an Avro record schema")
        return schema

    def subjects_of(self, schema_id: int) -> set[str]:
        """The subjects ``schema_id`` is a version of (empty if the registry has no such id)."""
        try:
            found = self._call_list(
                f"read the subjects of schema id {schema_id}",
                f"schemas/ids/{int(schema_id)}/versions",
            )
        except RegistryError as exc:
            if _not_found(exc):
                return set()
            raise
        return {str(v["subject"]) for v in found if isinstance(v, dict) and "subject" in v}

    def register(self, subject: str, schema_json: str) -> int:
        found = self._call(
            f"register schema under {subject}",
            "POST",
            f"subjects/{_q(subject)}/versions",
            _avro(schema_json),
        )
        return int(found["id"])

    def lookup(self, subject: str, schema_json: str) -> int | None:
        """The id of ``schema_json`` if it is registered under ``subject``, else ``None``."""
        found = self._optional(
            f"look up schema under {subject}", "POST", f"subjects/{_q(subject)}", _avro(schema_json)
        )
        return None if found is None else int(found.get("id") or 0)

    def is_compatible(self, subject: str, schema_json: str) -> bool:
        found = self._call(
            f"check compatibility under {subject}",
            "POST",
            f"compatibility/subjects/{_q(subject)}/versions/latest",
            _avro(schema_json),
        )
        return bool(found.get("is_compatible"))

    def compatibility(self, subject: str) -> str | None:
        """The subject's own compatibility level, ``None`` if it has none set."""
        found = self._optional(f"read compatibility of {subject}", "GET", f"config/{_q(subject)}")
        level = None if found is None else found.get("compatibilityLevel")
        return str(level) if level is not None else None

    def set_compatibility(self, subject: str, level: str) -> None:
        self._call(
            f"set compatibility of {subject}",
            "PUT",
            f"config/{_q(subject)}",
            {"compatibility": level.upper()},
        )

    def _optional(
        self, what: str, method: str, path: str, body: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        """Like :meth:`_call`, but "no such subject or version" is ``None``, not an error."""
        try:
            return self._call(what, method, path, body)
        except RegistryError as exc:
            if _not_found(exc):
                return None
            raise

    def _call(
        self, what: str, method: str, path: str, body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The JSON object the registry answers, or a :class:`RegistryError` saying ``what``."""
        data = self._json(what, method, path, body)
        if not isinstance(data, dict):
            raise RegistryError(
                f"schema registry at {self.url}: cannot {what}: the answer is not a JSON "
                f"object: {str(data)[:200]}"
            )
        return data

    def _call_list(self, what: str, path: str) -> list[Any]:
        """Like :meth:`_call` for a GET the registry answers with a JSON array."""
        data = self._json(what, "GET", path, None)
        if not isinstance(data, list):
            raise RegistryError(
                f"schema registry at {self.url}: cannot {what}: the answer is not a JSON "
                f"array: {str(data)[:200]}"
            )
        return data

    def _json(self, what: str, method: str, path: str, body: dict[str, Any] | None) -> Any:
        payload = None if body is None else json.dumps(body).encode()
        try:
            status, answer = self._request(method, f"{self._base}/{path}", payload)
        except _RefusedError as exc:
            raise RegistryError(
                f"schema registry at {self.url}: cannot {what}: {exc.message}",
                http_status=exc.status,
                error_code=exc.error_code,
            ) from exc
        except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out, TLS
            raise RegistryError(
                f"schema registry at {self.url}: cannot {what}: {exc!r}; is it running "
                "and is registry.url right?"
            ) from exc
        try:
            return json.loads(answer) if answer else {}
        except ValueError:
            raise RegistryError(
                f"schema registry at {self.url}: cannot {what}: HTTP {status} with a body that "
                f"is not JSON: {answer[:200]!r}"
            ) from None

    def _request(self, method: str, path: str, payload: bytes | None) -> tuple[int, bytes]:
        """One request, tried again ``retries`` times after transient failures."""
        headers = dict(self._headers)
        if payload is not None:
            headers["Content-Type"] = _CONTENT_TYPE
        attempt = 0
        while True:
            try:
                status, answer = self._exchange(method, path, payload, headers)
            except (OSError, http.client.HTTPException):
                if attempt >= self._retries:
                    raise
            else:
                if 200 <= status < 300:
                    return status, answer
                if status not in _RETRIABLE or attempt >= self._retries:
                    raise refusal(status, answer)
            time.sleep(retry_wait_s(attempt))
            attempt += 1

    def _exchange(
        self, method: str, path: str, payload: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        """One HTTP round trip on this thread's connection.

        A kept-alive connection the registry has closed in the meantime fails on first use: that
        one is replaced and the request sent again at once, not counted as a retry.
        """
        conn, reused = self._connection()
        try:
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            answer = response.read()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            self._drop(conn)
            if not reused:
                raise
            return self._exchange(method, path, payload, headers)
        except BaseException:
            self._drop(conn)
            raise
        if response.will_close:
            self._drop(conn)
        return response.status, answer

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn, True
        if self._tls is not None:
            conn = http.client.HTTPSConnection(
                self._host, self._port, timeout=self._timeout, context=self._tls
            )
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        self._local.conn = conn
        with self._lock:
            self._open.add(conn)
        return conn, False

    def _drop(self, conn: http.client.HTTPConnection) -> None:
        conn.close()
        self._local.conn = None
        with self._lock:
            self._open.discard(conn)


def _not_found(exc: RegistryError) -> bool:
    """ "No such subject, version or schema": an answer, not a failure."""
    return exc.http_status == 404 or exc.error_code in _NOT_FOUND


def _q(subject: str) -> str:
    """A subject as one path segment: ``/`` and everything else escaped."""
    return quote(subject, safe="")


def _avro(schema_json: str) -> dict[str, Any]:
    return {"schema": schema_json, "schemaType": "AVRO"}


def _tls_context(settings: RegistrySettings) -> ssl.SSLContext:
    """Trusts ``ca_file`` (or the system's CAs) and presents the client certificate, if set."""
    try:
        context = ssl.create_default_context(
            cafile=None if settings.ca_file is None else str(settings.ca_file)
        )
        if settings.cert_file is not None and settings.key_file is not None:
            context.load_cert_chain(str(settings.cert_file), str(settings.key_file))
    except (OSError, ssl.SSLError) as exc:
        raise RegistryError(
            f"schema registry at {settings.url}: cannot load the TLS files "
            f"(registry.ca_file / cert_file / key_file): {exc}"
        ) from exc
    return context
