"""HTTP push: a department system POSTs JSON records of the connector's entry.

``POST /v1/entries/<entry>/records`` with ``Authorization: Bearer <token>`` (the department's token
from the tokens file) and a JSON body: one record object or a list of them. Keys are the entry's
field names; ``_op`` (``c``, ``u`` or ``d``; default ``u``) and ``_id`` (the sender's own id of
the record version, which makes a resent record carry the same event id) are optional.

A batch is all or nothing: ``202`` once Kafka acknowledged every record; ``400`` with the errors of
each bad record (index, field, reason), and then nothing of the batch is published (the bad
records go to the DLQ); ``401`` for a missing or unknown token, ``403`` for another department's
(the answer does not say whose). Each request carries ``X-Request-Id`` and ``X-Request-Time``:
a replay is refused with ``409`` and nothing changes (``replay.py``). With ``tls_cert_file`` and
``tls_key_file`` the endpoint speaks HTTPS only.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import ssl
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web

from connectors.config import ConnectorConfig, HttpSourceConfig
from connectors.encoding import encoding_error
from connectors.errors import SourceError
from connectors.publisher import Publisher
from connectors.records import Op, RowError, RowMapper
from connectors.sources.base import Preview
from connectors.sources.replay import REQUEST_ID, REQUEST_TIME, ReplayGuard
from exchange.catalog.keys import record_key
from exchange.config import ConfigError, Problem, load_yaml
from exchange.kafka.columns import ColumnValueError

log = logging.getLogger(__name__)
#: A tuple, not a set: JSON may give a list or an object, which a set cannot look up.
_OPS = ("c", "u", "d")


class HttpPushSource:
    def __init__(self, config: ConnectorConfig) -> None:
        assert isinstance(config.source, HttpSourceConfig)
        self.config = config
        self.source: HttpSourceConfig = config.source
        self.tokens_file = config.resolve(config.source.tokens_file)
        self.path = f"/v1/entries/{config.entry}/records"
        #: Port actually bound (differs from the configured one when that is 0).
        self.port: int | None = None
        self.ready = threading.Event()

    # -- Source protocol ---------------------------------------------------------------------

    def check(self) -> list[str]:
        self.tokens()
        scheme = "https" if self.tls() is not None else "http"
        replay = (
            f"; {REQUEST_ID} and {REQUEST_TIME} within {self.source.replay_window_s:g} s"
            if self.source.replay_window_s
            else ""
        )
        return [
            f"POST {scheme}://{self.source.host}:{self.source.port}{self.path} "
            f"(bearer token of {self.config.department} from {self.tokens_file}{replay})"
        ]

    def tls(self) -> ssl.SSLContext | None:
        """The server's TLS context, or ``None`` without ``tls_cert_file``; a ConfigError
        naming the setting when the files cannot be read."""
        cert, key = self.source.tls_cert_file, self.source.tls_key_file
        if cert is None or key is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(self.config.resolve(cert), self.config.resolve(key))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                [
                    Problem(
                        self.config.file or Path("."),
                        "source.tls_cert_file",
                        f"cannot load the certificate {self.config.resolve(cert)} with the key "
                        f"{self.config.resolve(key)}: {exc}",
                    )
                ]
            ) from exc
        return context

    def preview(self, mapper: RowMapper, limit: int) -> list[Preview]:
        return []  # records arrive only when a department system pushes them

    def run(
        self,
        publisher: Publisher,
        saved: dict[str, Any] | None,
        stop: threading.Event,
        once: bool,
    ) -> None:
        if once:
            raise SourceError("HTTP push has nothing to drain: run it without --once", code="ONCE")
        asyncio.run(self._serve(publisher, stop))

    # -- tokens ------------------------------------------------------------------------------

    def tokens(self) -> dict[str, str]:
        """``tokens: {department: token}``; a value ``sha256:<hex>`` is the token's digest."""
        if not self.tokens_file.is_file():
            raise ConfigError(
                [
                    Problem(
                        self.config.file or self.tokens_file,
                        "source.tokens_file",
                        f"{self.tokens_file} does not exist (or is not a file); write "
                        "`tokens: {department: token}` there, or point the setting at it",
                    )
                ]
            )
        doc = load_yaml(self.tokens_file)
        data = doc.data
        if not isinstance(data, dict) or not isinstance(data.get("tokens"), dict):
            raise ConfigError([Problem(self.tokens_file, "tokens", "must be {department: token}")])
        tokens = {str(k): str(v) for k, v in data["tokens"].items()}
        if self.config.department not in tokens:
            raise ConfigError(
                [
                    Problem(
                        self.tokens_file,
                        "tokens",
                        f"no token for department {self.config.department}",
                        doc.lines.get(("tokens",)),
                    )
                ]
            )
        return tokens

    def department_of(self, header: str | None, tokens: dict[str, str]) -> str | None:
        if not header or not header.startswith("Bearer "):
            return None
        try:
            given = header[len("Bearer ") :].strip().encode()
        except UnicodeEncodeError:  # bytes that are not UTF-8: no token has them
            return None
        digest = hashlib.sha256(given).hexdigest()
        found = None
        for department, token in tokens.items():
            expected = token.removeprefix("sha256:") if token.startswith("sha256:") else None
            same = (
                hmac.compare_digest(digest, expected)
                if expected is not None
                else hmac.compare_digest(given, token.encode())
            )
            if same:
                found = department
        return found

    # -- server ------------------------------------------------------------------------------

    async def _serve(self, publisher: Publisher, stop: threading.Event) -> None:
        tokens = self.tokens()
        app = web.Application(client_max_size=self.source.max_body_bytes)
        handler = _Handler(self, publisher, tokens)
        app.router.add_post("/v1/entries/{entry}/records", handler.post)
        app.router.add_get("/healthz", handler.health)
        tls = self.tls()
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.source.host, self.source.port, ssl_context=tls)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise SourceError(
                f"cannot listen on {self.source.host}:{self.source.port}: {exc.strerror}",
                code="PORT_TAKEN",
            ) from exc
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self.source.port
        scheme = "https" if tls is not None else "http"
        log.info(
            "accepting records on %s://%s:%s%s", scheme, self.source.host, self.port, self.path
        )
        self.ready.set()
        poller = threading.Thread(target=_poll_until, args=(publisher, stop), daemon=True)
        poller.start()
        try:
            while not stop.is_set():
                await asyncio.sleep(0.2)
        finally:
            await runner.cleanup()
            poller.join(timeout=5)


def _poll_until(publisher: Publisher, stop: threading.Event) -> None:
    """Serve the producer's delivery callbacks while the server runs."""
    while not stop.is_set():
        publisher.poll(0.1)


class _Handler:
    def __init__(self, source: HttpPushSource, publisher: Publisher, tokens: dict[str, str]):
        self.source = source
        self.publisher = publisher
        self.tokens = tokens
        self.entry = publisher.entry
        self.fields = set(publisher.mapper.types)
        window = source.source.replay_window_s
        self.replays = ReplayGuard(window) if window else None

    async def health(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def post(self, request: web.Request) -> web.Response:
        department = self.source.department_of(request.headers.get("Authorization"), self.tokens)
        if department is None:
            return _error(401, "missing or unknown bearer token", {"WWW-Authenticate": "Bearer"})
        if department != self.source.config.department:
            # Says nothing of whose token it is: a valid token of another department is as
            # useless here as an unknown one, and the answer must not tell which.
            return _error(403, "this token may not publish through this endpoint")
        if request.match_info["entry"] != self.entry.id:
            return _error(404, f"this endpoint takes records of {self.entry.id} only")
        if self.replays is None:
            return await self._read(request, uuid.uuid4().hex[:12])
        sent_id = request.headers.get(REQUEST_ID)
        refusal = self.replays.admit(sent_id, request.headers.get(REQUEST_TIME))
        if refusal is not None:
            return _error(refusal.status, refusal.message)
        assert sent_id is not None  # admitted
        response = None
        try:
            response = await self._read(request, sent_id)
            return response
        finally:
            self.replays.settle(sent_id, response is not None and response.status == 202)

    async def _read(self, request: web.Request, request_id: str) -> web.Response:
        """The body's records checked and published (``request_id`` names them in positions)."""
        body = await request.read()
        try:
            parsed = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            await self._dead_letters([(body, [RowError(None, "bad_json", str(exc))], request_id)])
            return _error(400, f"body is not JSON: {exc}")
        items = parsed if isinstance(parsed, list) else [parsed]
        if not items:
            return _error(400, "no records in the body")
        if len(items) > self.source.source.max_batch:
            return _error(413, f"at most {self.source.source.max_batch} records per request")
        return await self._publish(items, request_id)

    async def _publish(self, items: list[Any], request_id: str) -> web.Response:
        checked = [self._check(item) for item in items]
        errors = [(i, errs) for i, (_op, _key, _rec, _ident, errs) in enumerate(checked) if errs]
        encoded: list[tuple[bytes, str]] = []
        if not errors:
            ts_ms = int(time.time() * 1000)
            for i, (op, key, record, identity, _errs) in enumerate(checked):
                try:
                    encoded.append(
                        self.publisher.encoder.encode(
                            op, key, record, f"http:{request_id}#{i}", identity, ts_ms
                        )
                    )
                except ColumnValueError as exc:
                    errors.append((i, [encoding_error(exc)]))
        if errors:
            await self._dead_letters(
                [
                    (items[i] if isinstance(items[i], dict) else None, errs, f"{request_id}#{i}")
                    for i, errs in errors
                ]
            )
            return web.json_response(
                {
                    "accepted": 0,
                    "rejected": len(errors),
                    "message": "nothing of this batch was published; fix the records and resend",
                    "errors": [
                        {"index": i, "field": e.field, "reason": e.code, "message": e.message}
                        for i, errs in errors
                        for e in errs
                    ],
                },
                status=400,
            )
        loop = asyncio.get_running_loop()
        futures = []
        for (op, key, _record, _identity, _errs), (value, _eid) in zip(
            checked, encoded, strict=True
        ):
            done = loop.create_future()
            self.publisher.metrics.rows_read.inc()
            self.publisher.send_encoded(op, key, value, on_done=_resolver(loop, done))
            futures.append(done)
        self.publisher.poll(0)
        failures = await self._wait(futures)
        if failures:
            return _error(503, f"Kafka did not acknowledge the records ({failures[0]}); resend")
        self.publisher.metrics.last_poll.set_to_current_time()
        return web.json_response(
            {"accepted": len(items), "event_ids": [eid for _value, eid in encoded]}, status=202
        )

    def _check(self, item: Any) -> tuple[Op, str, dict[str, Any] | None, str, list[RowError]]:
        if not isinstance(item, dict):
            return "u", "", None, "", [RowError(None, "not_object", "a record is a JSON object")]
        op = item.get("_op", "u")
        sender_id = item.get("_id")
        errors: list[RowError] = []
        if op not in _OPS:
            errors.append(RowError("_op", "bad_op", f"_op must be c, u or d, not {op!r}"))
            op = "u"
        unknown = sorted(k for k in item if k not in self.fields and k not in ("_op", "_id"))
        errors += [
            RowError(k, "unknown_field", f"{self.entry.id} has no field {k}") for k in unknown
        ]
        mapper = self.publisher.mapper
        if op == "d":
            record, problems = mapper.key_record(mapper.cells(item))
        else:
            record, problems = mapper.to_record(item)
        errors += problems
        if errors or record is None:
            return op, "", None, "", errors
        identity = f"id:{sender_id}" if sender_id is not None else ""
        return op, record_key(self.entry, record), record, identity, []

    async def _dead_letters(self, rejected: list[tuple[Any, list[RowError], str]]) -> None:
        loop = asyncio.get_running_loop()
        futures = []
        for data, errors, position in rejected:
            done = loop.create_future()
            self.publisher.reject(data, errors, f"http:{position}", on_done=_resolver(loop, done))
            futures.append(done)
        self.publisher.poll(0)
        failures = await self._wait(futures)
        if failures:
            log.error("could not write rejected records to the DLQ: %s", failures[0])

    async def _wait(self, futures: list[asyncio.Future[str | None]]) -> list[str]:
        timeout = self.source.config.publish.delivery_timeout_s
        try:
            results = await asyncio.wait_for(asyncio.gather(*futures), timeout)
        except TimeoutError:
            return [f"no acknowledgement within {timeout:g} s"]
        return [r for r in results if r is not None]


def _resolver(loop: asyncio.AbstractEventLoop, future: asyncio.Future[str | None]) -> Any:
    def done(error: str | None) -> None:
        loop.call_soon_threadsafe(_settle, future, error)

    return done


def _settle(future: asyncio.Future[str | None], error: str | None) -> None:
    if not future.done():
        future.set_result(error)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)
