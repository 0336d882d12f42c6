"""Telling departments: notices for their inbox, and webhooks that carry them out.

What a change tells whom is :func:`grant_notices` and :func:`due_notices`, pure. The notices
are written with the change they are about, in its transaction (``service.py``), on the
compacted ``portal_notices``; each replica follows them for the inboxes.

:class:`WebhookSender` POSTs each notice to its department's webhook, if it set one: JSON,
signed ``X-Exchange-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`` with
``X-Exchange-Timestamp`` (a receiver refuses old timestamps, so a captured request cannot be
replayed later) and ``X-Exchange-Notice`` (the notice id: a receiver drops one it has seen). The
replicas share the work through a consumer group on the notices topic, so each notice is sent
by one replica; its offset is committed once the POST was answered 2xx or every attempt failed
(then the failure is logged and counted): at least once, in order per partition. A department
whose endpoint is down holds back the notices behind its own in that partition for at most
the attempts' waits (1+2+4+8 s and the timeouts).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import Consumer, KafkaError

from exchange.catalog.model import CatalogEntry
from exchange.config import ExchangeSettings
from exchange.grants.model import Grant
from exchange.portal.model import Demand, Notice, NoticeKind, Webhook
from exchange.quality.objections import Objection

__all__ = [
    "EXPIRING_DAYS",
    "WebhookSender",
    "demand_notices",
    "due_notices",
    "escalation_notices",
    "grant_notices",
    "objection_notices",
    "sign",
]

log = logging.getLogger(__name__)
EXPIRING_DAYS = 7
_DECIDED = {"grant.approved": "已同意", "grant.rejected": "已驳回"}


def _title(entry: CatalogEntry | None, grant: Grant) -> str:
    return entry.title if entry else grant.request.entry


def _about_grant(
    grant: Grant, dept: str, what: NoticeKind, text: str, at: dt.datetime, link: str = ""
) -> Notice:
    """A notice about a grant, keyed by what, the grant's revision and who is told."""
    return Notice(
        id=f"{what}:{grant.id}:r{grant.revision}:{dept}",
        department=dept,
        kind=what,
        at=at,
        text=text,
        link=link or f"/grants/{grant.id}",
        grant_id=grant.id,
    )


def _both_sides(grant: Grant, entry: CatalogEntry | None) -> list[str]:
    return [grant.request.consumer, *([entry.provider] if entry else [])]


def grant_notices(
    grant: Grant, kind: str, entry: CatalogEntry | None, at: dt.datetime
) -> list[Notice]:
    """Who is told of a grant change (the audit kind ``grant.*``)."""
    consumer = grant.request.consumer
    title = _title(entry, grant)
    if kind in ("grant.requested", "grant.amended") and entry is not None:
        text = f"{consumer} 申请 {title}"
        return [_about_grant(grant, entry.provider, "request_filed", text, at, "/inbox")]
    if kind in _DECIDED:
        text = f"{title} 的申请{_DECIDED[kind]}"
        return [_about_grant(grant, consumer, "request_decided", text, at)]
    if kind == "grant.revoked":
        text = f"{title} 的授权已终止"
        return [_about_grant(grant, d, "grant_ended", text, at) for d in _both_sides(grant, entry)]
    return []


def due_notices(grant: Grant, entry: CatalogEntry | None, now: dt.datetime) -> list[Notice]:
    """Notices a grant's term makes due now: ending within 7 days, or ended."""
    if grant.state != "approved":
        return []
    status = grant.status(now)
    until = grant.request.valid_until
    what: NoticeKind
    if status == "active" and until - now <= dt.timedelta(days=EXPIRING_DAYS):
        what, text = "grant_expiring", f"{_title(entry, grant)} 的授权将于 {until.date()} 到期"
    elif status == "expired":
        what, text = "grant_ended", f"{_title(entry, grant)} 的授权已到期"
    else:
        return []
    return [_about_grant(grant, d, what, text, now) for d in _both_sides(grant, entry)]


def demand_notices(demand: Demand, at: dt.datetime) -> list[Notice]:
    """Who is told of a need: its named holder when posted, its poster when answered."""
    what: NoticeKind
    if demand.state == "open":
        if demand.holder is None:
            return []
        dept, what, text = (
            demand.holder,
            "demand_posted",
            f"{demand.department} 需要 {demand.title}",
        )
    else:
        dept, what, text = demand.department, "demand_answered", f"需求 {demand.title} 已答复"
    return [
        Notice(
            id=f"{what}:{demand.id}:{dept}",
            department=dept,
            kind=what,
            at=at,
            text=text,
            link="/demands",
            demand_id=demand.id,
        )
    ]


#: What each objection state tells, and whom: the side that moves next.
_OBJECTION_TEXT: dict[str, tuple[str, str]] = {
    "filed": ("provider", "{consumer} 对 {entry} 的数据提出质量异议"),
    "investigating": ("consumer", "{entry} 的质量异议正在排查"),
    "accepted": ("consumer", "{entry} 的质量异议已受理，待纠错"),
    "rejected": ("consumer", "{entry} 的质量异议被驳回"),
    "fixed": ("both", "{entry} 的质量异议已纠错，请确认"),
    "confirmed": ("provider", "{entry} 的质量异议已确认解决"),
}


def objection_notices(objection: Objection, title: str, at: dt.datetime) -> list[Notice]:
    """Who is told of an objection's step: the side whose move it is now."""
    side, text = _OBJECTION_TEXT[objection.state]
    depts = {
        "provider": [objection.provider],
        "consumer": [objection.consumer],
        "both": [objection.consumer, objection.provider],
    }[side]
    kind: NoticeKind = "objection_filed" if objection.state == "filed" else "objection_changed"
    line = text.format(consumer=objection.consumer, entry=title)
    return [_about_objection(objection, d, kind, line, at) for d in depts]


def escalation_notices(
    objection: Objection, title: str, operators: Iterable[str], at: dt.datetime
) -> list[Notice]:
    """A step past its deadline: the operators are told, and the side that is late."""
    late = objection.consumer if objection.state in ("fixed", "rejected") else objection.provider
    text = f"{title} 的质量异议 {objection.id} 超过办理时限（{objection.state}）"
    return [
        _about_objection(objection, d, "objection_escalated", text, at)
        for d in dict.fromkeys([*operators, late])
    ]


def _about_objection(
    objection: Objection, dept: str, kind: NoticeKind, text: str, at: dt.datetime
) -> Notice:
    return Notice(
        id=f"{kind}:{objection.id}:s{len(objection.history)}:{dept}",
        department=dept,
        kind=kind,
        at=at,
        text=text,
        link=f"/objections/{objection.id}",
        objection_id=objection.id,
    )


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header's value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


class WebhookSender:
    """One replica's share of the webhook deliveries (a member of the senders' group)."""

    def __init__(
        self,
        settings: ExchangeSettings,
        webhook_of: Callable[[str], Webhook | None],
        on_result: Callable[[Notice, str, int], None] | None = None,
    ) -> None:
        self._settings = settings
        self._webhook_of = webhook_of
        #: Told of each delivery: the notice, "sent" or "failed", the attempts.
        self._on_result = on_result or (lambda _n, _r, _a: None)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="portal-webhooks", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        topic = self._settings.topics.portal_notices
        consumer = Consumer(
            self._settings.kafka.client_config(
                **{
                    "group.id": f"{topic}.webhooks",
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    "isolation.level": "read_committed",
                }
            )
        )
        consumer.subscribe([topic])
        try:
            while not self._stop.is_set():
                msg = consumer.poll(0.5)
                if msg is None:
                    continue
                err = msg.error()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        log.warning("reading %s: %s", topic, err.str())
                    continue
                value = msg.value()
                if value is not None:
                    self._deliver(value)
                consumer.commit(message=msg, asynchronous=False)
        finally:
            consumer.close()

    def _deliver(self, value: bytes) -> None:
        try:
            notice = Notice.decode(value)
        except ValueError as exc:
            log.warning("a notice that cannot be read was not sent: %s", exc)
            return
        hook = self._webhook_of(notice.department)
        if hook is None:
            return
        body = json.dumps(notice.model_dump(mode="json"), ensure_ascii=False).encode()
        s = self._settings.portal
        for attempt in range(1, s.webhook_attempts + 1):
            if self._post(hook, notice, body, s.webhook_timeout_s):
                self._on_result(notice, "sent", attempt)
                return
            if attempt < s.webhook_attempts and self._stop.wait(2 ** (attempt - 1)):
                break
        log.warning(
            "webhook of %s: notice %s not delivered after %d attempts",
            notice.department,
            notice.id,
            s.webhook_attempts,
        )
        self._on_result(notice, "failed", s.webhook_attempts)

    @staticmethod
    def _post(hook: Webhook, notice: Notice, body: bytes, timeout: float) -> bool:
        timestamp = str(int(time.time()))
        request = urllib.request.Request(hook.url, data=body, method="POST")
        headers: dict[str, Any] = {
            "Content-Type": "application/json; charset=utf-8",
            "X-Exchange-Notice": notice.id,
            "X-Exchange-Timestamp": timestamp,
            "X-Exchange-Signature": sign(hook.secret, timestamp, body),
        }
        for name, header in headers.items():
            request.add_header(name, header)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                return bool(200 <= answer.status < 300)
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            log.info("webhook of %s: %s", notice.department, exc)
            return False
