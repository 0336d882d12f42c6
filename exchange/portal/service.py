"""The portal's actions: who is calling, and what they may do, done and audited.

:class:`Portal` is what the HTTP layer (``api.py``) calls; it holds no state of its own beyond
caches (everything is on the followed topics, ``state.py``), so replicas are interchangeable.
Every login, failed login and change is an audit event on the replica's own chain
(``portal.<replica>``), written in one transaction with the record it changes. Permissions are
``policy.py``'s pure functions, enforced here from the caller's session or token.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import secrets as stdlib_secrets
import threading
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any

from pydantic import ValidationError

from exchange.audit.events import Happening
from exchange.audit.writer import AuditWriter, OutRecord
from exchange.catalog.apply import source_topic
from exchange.catalog.load import Catalog
from exchange.catalog.model import CatalogEntry
from exchange.config import ExchangeSettings
from exchange.errors import ExchangeError
from exchange.grants.model import Actor, Grant, GrantRequest
from exchange.grants.rules import GrantError, narrowed
from exchange.grants.store import GrantStore
from exchange.kafka.admin import Admin
from exchange.portal import policy
from exchange.portal.errors import (
    BadRequestError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    PortalError,
    TooManyAttemptsError,
    UnauthenticatedError,
)
from exchange.portal.limits import AddressLimiter, after_failure, locked_for
from exchange.portal.listing import EntryRow, entry_rows
from exchange.portal.model import (
    ROLES,
    Account,
    ApiToken,
    Demand,
    Notice,
    Principal,
    Role,
    Session,
    Webhook,
    account_id,
)
from exchange.portal.notices import WebhookSender, demand_notices, due_notices, grant_notices
from exchange.portal.objections import ObjectionDesk
from exchange.portal.secrets import (
    TOKEN_PREFIX,
    digest,
    hash_password,
    new_secret,
    password_problem,
    same,
    split_token,
    verify_password,
)
from exchange.portal.state import PortalState
from exchange.portal.trail import TrailView
from exchange.quality.assessment import Assessment, Period, ScoreRow, parse_period
from exchange.quality.history import ScoreHistory, history_key
from exchange.quality.report import gather_assessment

__all__ = ["Login", "Portal", "parse_roles"]

log = logging.getLogger(__name__)
#: A session's idle end is written again at most this often (a write per page view would
#: make browsing a Kafka transaction per request).
IDLE_REFRESH_S = 60.0
#: GrantError codes and the portal errors they become.
_GRANT_ERRORS: dict[str, type[PortalError]] = {
    "BAD_REQUEST": BadRequestError,
    "NOT_ALLOWED": ForbiddenError,
    "NOT_APPROVER": ForbiddenError,
    "EXISTS": ConflictError,
    "BAD_STATE": ConflictError,
    "NO_GRANT": NotFoundError,
    "UNKNOWN_ENTRY": ConflictError,
    "NEVER_SHARED": ConflictError,
    "MASK_UNDONE": ConflictError,
}


class Login:
    """A new session: the cookie value and the CSRF token, handed to the browser once."""

    def __init__(self, session_id: str, csrf: str, principal: Principal) -> None:
        self.session_id = session_id
        self.csrf = csrf
        self.principal = principal


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Portal:
    """One replica's actions. No network until :meth:`start`."""

    def __init__(
        self,
        settings: ExchangeSettings,
        catalog: Catalog,
        replica: str,
        clock: Callable[[], dt.datetime] = _now,
        chain: str | None = None,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.replica = replica
        #: The audit chain it writes: ``portal.<replica>`` (principal ``portal``), or, for the
        #: operator's shell, one of the operator's chains.
        self.chain = chain or f"portal.{replica}"
        self.clock = clock
        self.state = PortalState(settings)
        self.trail = TrailView(settings)
        self.operators: Collection[str] = settings.grants.operators
        self._writer: AuditWriter | None = None
        #: The chain's writer is one transaction at a time.
        self._write_lock = threading.Lock()
        self._addresses = AddressLimiter(settings.portal.login_failures_per_ip_per_minute)
        #: Notices made by the grant change under way (under the write lock).
        self._made_notices: list[Notice] = []
        self.webhooks = WebhookSender(settings, self.state.webhook, self._webhook_result)
        self._stop = threading.Event()
        #: When each entry's source topic was last written, refreshed by the terms watcher.
        self.last_updates: dict[str, dt.datetime] = {}
        self._terms = threading.Thread(target=self._watch_terms, name="portal-terms", daemon=True)
        #: Each entry's and department's latest scores, read by the terms watcher.
        self.scores = ScoreHistory(settings)
        self.objections = ObjectionDesk(
            settings,
            self.state,
            lambda kind, actor, details, records: self._write(
                kind, actor, details, records, grant_id=details["grant"]
            ),
            self.entry,
            clock,
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Follow the topics (until read to their end) and open the audit chain."""
        self.state.start(self.settings.kafka.request_timeout_s * 4)
        self._writer = AuditWriter.connect(self.settings, self.chain)
        self.trail.start()
        self.webhooks.start()
        self._terms.start()

    def stop(self) -> None:
        self._stop.set()
        if self._terms.ident is not None:
            self._terms.join(timeout=10)
        self.webhooks.stop()
        self.scores.close()
        self.trail.stop()
        self.state.stop()
        if self._writer is not None:
            self._writer.close()

    @property
    def writer(self) -> AuditWriter:
        if self._writer is None:
            raise RuntimeError("the portal was not started")
        return self._writer

    # -- writing -----------------------------------------------------------------------------

    def _write(
        self,
        kind: str,
        actor: str,
        details: dict[str, Any],
        records: Sequence[tuple[str, str, Any | None]] = (),
        **about: str | None,
    ) -> None:
        """An audit event and the records it is about (``(topic, key, model or None)``), in one
        transaction; then served by this replica at once."""
        happening = Happening(
            kind=kind,
            actor=actor,
            ts_ms=int(self.clock().timestamp() * 1000),
            details=details,
            **about,
        )
        out = [
            OutRecord(topic, key.encode("utf-8"), None if value is None else value.encode())
            for topic, key, value in records
        ]
        with self._write_lock:
            self.writer.write([happening], with_records=out)
        for topic, key, value in records:
            self.state.put(topic, key, value)

    # -- logging in --------------------------------------------------------------------------

    def login(self, department: str, username: str, password: str, address: str) -> Login:
        """A session for a person, or :class:`UnauthenticatedError` (the same for a wrong
        username and a wrong password, and as slow); locked accounts and busy addresses get
        :class:`TooManyAttemptsError`."""
        if self._addresses.blocked(address):
            raise TooManyAttemptsError(
                "too many failed logins from this address; wait a minute", code="RATE_LIMITED"
            )
        now = self.clock()
        aid = account_id(department, username)
        account = self.state.account(aid)
        wait = locked_for(self.state.lockout(aid), now)
        if wait > 0:
            self._failed_login(aid, address, "locked", count=False)
            raise TooManyAttemptsError(
                f"this account is locked after repeated failed logins; try again in "
                f"{wait / 60:.0f} min",
                code="LOCKED",
            )
        ok = verify_password(account.password_hash if account else None, password)
        if not ok or account is None or account.disabled:
            self._addresses.failed(address)
            self._failed_login(aid, address, "disabled" if ok else "bad credentials")
            raise UnauthenticatedError(
                "wrong department, username or password", code="BAD_CREDENTIALS"
            )
        session_id, csrf = new_secret(), new_secret()
        p = self.settings.portal
        session = Session(
            account=aid,
            csrf_hash=digest(csrf),
            created_at=now,
            expires_at=now + dt.timedelta(seconds=p.session_max_s),
            idle_until=now + dt.timedelta(seconds=p.session_idle_s),
        )
        records: list[tuple[str, str, Any | None]] = [
            (self.settings.topics.portal_sessions, digest(session_id), session)
        ]
        if self.state.lockout(aid) is not None:
            records.append((self.settings.topics.portal_lockouts, aid, None))
        self._write("portal.login", _person(account), {"address": address}, records)
        return Login(session_id, csrf, self._person(account, digest(session_id), session))

    def _failed_login(self, aid: str, address: str, why: str, count: bool = True) -> None:
        p = self.settings.portal
        records: list[tuple[str, str, Any | None]] = []
        if count:
            lockout = after_failure(
                self.state.lockout(aid),
                self.clock(),
                p.login_max_failures,
                p.lockout_window_s,
                p.lockout_s,
            )
            records.append((self.settings.topics.portal_lockouts, aid, lockout))
        self._write("portal.login_failed", aid, {"address": address, "why": why}, records)

    def logout(self, principal: Principal) -> None:
        if principal.session_key is None:
            return
        self._write(
            "portal.logout",
            principal.name,
            {},
            [(self.settings.topics.portal_sessions, principal.session_key, None)],
        )

    # -- who is calling ----------------------------------------------------------------------

    def by_session(self, session_id: str) -> Principal:
        """The person of a session cookie, or :class:`UnauthenticatedError`."""
        key = digest(session_id)
        session = self.state.session(key)
        if session is None and self.state.sync(2.0):
            # Made a moment ago by another replica.
            session = self.state.session(key)
        now = self.clock()
        if session is None or session.ended:
            raise UnauthenticatedError("not logged in", code="NO_SESSION")
        if now >= session.expires_at or now >= session.idle_until:
            raise UnauthenticatedError("the session has expired; log in again", code="EXPIRED")
        account = self.state.account(session.account)
        if account is None or account.disabled:
            raise UnauthenticatedError("the account is disabled", code="DISABLED")
        left_idle = (session.idle_until - now).total_seconds()
        if self.settings.portal.session_idle_s - left_idle >= IDLE_REFRESH_S:
            session = session.model_copy(
                update={
                    "idle_until": min(
                        session.expires_at,
                        now + dt.timedelta(seconds=self.settings.portal.session_idle_s),
                    )
                }
            )
            with self._write_lock:
                self.writer.write(
                    [],
                    with_records=[
                        OutRecord(
                            self.settings.topics.portal_sessions,
                            key.encode(),
                            session.encode(),
                        )
                    ],
                )
            self.state.put(self.settings.topics.portal_sessions, key, session)
        return self._person(account, key, session)

    def by_token(self, token: str) -> Principal:
        """The department system of an API token, or :class:`UnauthenticatedError`."""
        parts = split_token(token)
        found = self.state.token(parts[0]) if parts else None
        if parts is None or found is None or not same(parts[1], found.secret_hash):
            raise UnauthenticatedError("unknown API token", code="BAD_TOKEN")
        if found.revoked:
            raise UnauthenticatedError("the API token was revoked", code="TOKEN_REVOKED")
        if self.clock() >= found.expires_at:
            raise UnauthenticatedError("the API token has expired", code="TOKEN_EXPIRED")
        return Principal(
            kind="token",
            department=found.department,
            name=f"token:{found.id}",
            roles=found.roles,
        )

    @staticmethod
    def check_csrf(principal: Principal, token: str | None) -> None:
        """A cookie-authenticated change must send back its session's CSRF token."""
        if principal.kind != "person":
            return
        if not token or principal.csrf_hash is None or not same(token, principal.csrf_hash):
            raise ForbiddenError(
                "missing or wrong CSRF token (send the X-CSRF-Token header or the csrf field)",
                code="CSRF",
            )

    def _person(self, account: Account, key: str, session: Session) -> Principal:
        return Principal(
            kind="person",
            department=account.department,
            name=account.id,
            roles=account.roles,
            csrf_hash=session.csrf_hash,
            session_key=key,
        )

    # -- accounts and tokens -----------------------------------------------------------------

    def create_account(
        self,
        by: Principal | None,
        department: str,
        username: str,
        password: str,
        roles: Collection[Role],
        display_name: str = "",
    ) -> Account:
        """``by`` ``None``: the operator bootstrapping at a shell (``exchange portal
        accounts``), which may only be run by whoever holds the platform's configuration."""
        if department not in self.catalog.departments:
            raise BadRequestError(f"department: unknown department {department!r}", code="BAD_DEPT")
        if by is not None:
            policy.require_account_admin(by, department, self.operators)
            policy.require_roles_grantable(by, department, roles, self.operators)
        elif "operator" in roles and department not in self.operators:
            raise BadRequestError(
                f"{department} is not a platform operator department", code="BAD_ROLES"
            )
        problem = password_problem(password, username)
        if problem:
            raise BadRequestError(f"password: {problem}", code="WEAK_PASSWORD")
        aid = account_id(department, username)
        self.state.sync()
        if self.state.account(aid) is not None:
            raise ConflictError(f"account {aid} exists already", code="EXISTS")
        now = self.clock()
        who = by.name if by else "operator (shell)"
        try:
            account = Account(
                department=department,
                username=username,
                display_name=display_name,
                roles=frozenset(roles),
                password_hash=hash_password(password),
                created_at=now,
                created_by=who,
                updated_at=now,
            )
        except ValidationError as exc:
            raise BadRequestError(_first(exc), code="BAD_ACCOUNT") from exc
        self._write(
            "portal.account.created",
            who,
            {"account": aid, "roles": sorted(roles)},
            [(self.settings.topics.portal_accounts, aid, account)],
        )
        return account

    def update_account(
        self,
        by: Principal,
        aid: str,
        *,
        roles: Collection[Role] | None = None,
        disabled: bool | None = None,
        password: str | None = None,
    ) -> Account:
        account = self.state.account(aid)
        if account is None:
            raise NotFoundError(f"no account {aid!r}", code="NO_ACCOUNT")
        policy.require_account_admin(by, account.department, self.operators)
        changes: dict[str, Any] = {"updated_at": self.clock()}
        if roles is not None:
            policy.require_roles_grantable(by, account.department, roles, self.operators)
            changes["roles"] = frozenset(roles)
        if disabled is not None:
            changes["disabled"] = disabled
        if password is not None:
            problem = password_problem(password, account.username)
            if problem:
                raise BadRequestError(f"password: {problem}", code="WEAK_PASSWORD")
            changes["password_hash"] = hash_password(password)
        updated = account.model_copy(update=changes)
        records: list[tuple[str, str, Any | None]] = [
            (self.settings.topics.portal_accounts, aid, updated)
        ]
        if disabled or password is not None:
            # Its sessions end with it (a disabled account, or a password reset).
            records += [
                (self.settings.topics.portal_sessions, key, None)
                for key, s in self.state.sessions().items()
                if s.account == aid
            ]
        details = {
            "account": aid,
            "roles": sorted(updated.roles),
            "disabled": updated.disabled,
            "password_changed": password is not None,
        }
        self._write("portal.account.updated", by.name, details, records)
        return updated

    def accounts(self, by: Principal, department: str) -> list[Account]:
        policy.require_account_admin(by, department, self.operators)
        return sorted(
            (a for a in self.state.accounts().values() if a.department == department),
            key=lambda a: a.username,
        )

    def issue_token(
        self, by: Principal, department: str, name: str, roles: Collection[Role], days: int
    ) -> tuple[ApiToken, str]:
        """A token for a department system; the secret is returned once, never stored."""
        policy.require_account_admin(by, department, self.operators)
        policy.require_roles_grantable(by, department, roles, self.operators, token=True)
        if not 1 <= days <= self.settings.portal.token_max_days:
            raise BadRequestError(
                f"days: 1 to {self.settings.portal.token_max_days}", code="BAD_TOKEN_DAYS"
            )
        if not name.strip():
            raise BadRequestError("name: say which system the token is for", code="BAD_NAME")
        token_id, secret = stdlib_secrets.token_hex(8), new_secret()
        now = self.clock()
        token = ApiToken(
            id=token_id,
            department=department,
            name=name.strip(),
            roles=frozenset(roles),
            secret_hash=digest(secret),
            created_at=now,
            created_by=by.name,
            expires_at=now + dt.timedelta(days=days),
        )
        self._write(
            "portal.token.issued",
            by.name,
            {"token": token_id, "department": department, "name": token.name, "days": days},
            [(self.settings.topics.portal_tokens, token_id, token)],
        )
        return token, f"{TOKEN_PREFIX}{token_id}_{secret}"

    def revoke_token(self, by: Principal, token_id: str) -> ApiToken:
        token = self.state.token(token_id)
        if token is None:
            raise NotFoundError(f"no token {token_id!r}", code="NO_TOKEN")
        policy.require_account_admin(by, token.department, self.operators)
        revoked = token.model_copy(update={"revoked": True})
        self._write(
            "portal.token.revoked",
            by.name,
            {"token": token_id, "department": token.department},
            [(self.settings.topics.portal_tokens, token_id, revoked)],
        )
        return revoked

    def tokens(self, by: Principal, department: str) -> list[ApiToken]:
        policy.require_account_admin(by, department, self.operators)
        return sorted(
            (t for t in self.state.tokens().values() if t.department == department),
            key=lambda t: t.created_at,
        )

    # -- the catalog -------------------------------------------------------------------------

    def entry(self, entry_id: str) -> CatalogEntry | None:
        loaded = self.catalog.entries.get(entry_id)
        return loaded.entry if loaded else None

    @functools.cached_property
    def entry_rows(self) -> dict[str, EntryRow]:
        """Every entry as listed (made once: the catalog does not change while we run)."""
        return entry_rows(self.catalog)

    def entries(self) -> dict[str, CatalogEntry]:
        return {e: loaded.entry for e, loaded in self.catalog.entries.items()}

    # -- grants ------------------------------------------------------------------------------

    def _store(self, principal: Principal) -> GrantStore:
        return GrantStore(
            self.settings,
            self.catalog,
            Actor(department=principal.department, person=principal.name),
            clock=self.clock,
            writer=self.writer,
            grants=self.state.grants,
            also=self._grant_notices,
        )

    def _grant_notices(self, grant: Grant, kind: str) -> list[OutRecord]:
        """The notices a grant change sends, written in its transaction (and served by this
        replica once the action ends)."""
        made = grant_notices(grant, kind, self.entry(grant.request.entry), self.clock())
        self._made_notices.extend(made)
        return [self._notice_record(n) for n in made]

    def _notice_record(self, notice: Notice) -> OutRecord:
        topic = self.settings.topics.portal_notices
        return OutRecord(topic, notice.id.encode(), notice.encode())

    def _grant_action(self, principal: Principal, fn: Callable[[GrantStore], Grant]) -> Grant:
        """Run a grant change with the chain's lock; GrantErrors as portal errors."""
        self.state.sync()
        try:
            with self._write_lock:
                self._made_notices = []
                grant = fn(self._store(principal))
                made, self._made_notices = self._made_notices, []
        except GrantError as exc:
            kind = _GRANT_ERRORS.get(exc.code or "", BadRequestError)
            raise kind(exc.message, code=exc.code) from exc
        self.state.put(self.settings.topics.grants, grant.id, grant)
        for notice in made:
            self.state.put(self.settings.topics.portal_notices, notice.id, notice)
        return grant

    def grants(self, principal: Principal) -> list[Grant]:
        """Every grant that concerns the caller's department (as consumer or provider)."""
        visible = policy.visible_grants(
            principal, self.state.grants().grants.values(), self.entries(), self.operators
        )
        return sorted(visible, key=lambda g: g.requested_at, reverse=True)

    def grant(self, principal: Principal, grant_id: str) -> Grant:
        grant = self.state.grant(grant_id)
        if grant is None:
            raise NotFoundError(f"no grant {grant_id!r}", code="NO_SUCH_GRANT")
        policy.require_visible(principal, grant, self.entry(grant.request.entry), self.operators)
        return grant

    def activity(self, principal: Principal, grant_id: str) -> dict[str, Any]:
        """What was delivered under a grant and what happened to it (the audit trail), for
        its consumer and provider only."""
        self.grant(principal, grant_id)
        return self.trail.activity(grant_id)

    def request(self, principal: Principal, request: GrantRequest) -> Grant:
        policy.require_requester(principal, request.consumer, self.operators)
        return self._grant_action(principal, lambda s: s.request(request, origin="portal"))

    def decide(
        self,
        principal: Principal,
        grant_id: str,
        approve: bool,
        note: str = "",
        fields: Sequence[str] | None = None,
        valid_until: dt.datetime | None = None,
    ) -> Grant:
        """Approve (``fields``/``valid_until``: granting less than asked) or reject."""
        grant = self.grant(principal, grant_id)
        entry = self.entry(grant.request.entry)
        if entry is None:
            raise ConflictError(
                f"{grant_id}: entry {grant.request.entry} is no longer in the catalog",
                code="UNKNOWN_ENTRY",
            )
        policy.require_decider(principal, grant, entry, self.operators, note, not approve)
        if approve:
            if fields is None and valid_until is None:
                return self._grant_action(principal, lambda s: s.approve(grant_id, note))
            try:
                terms = narrowed(grant.request, fields, valid_until)
            except GrantError as exc:
                raise BadRequestError(exc.message, code=exc.code) from exc
            return self._grant_action(principal, lambda s: s.approve(grant_id, note, terms))
        return self._grant_action(principal, lambda s: s.reject(grant_id, note))

    def revoke(self, principal: Principal, grant_id: str, note: str = "") -> Grant:
        grant = self.grant(principal, grant_id)
        policy.require_revoker(principal, grant, self.entry(grant.request.entry), self.operators)
        return self._grant_action(principal, lambda s: s.revoke(grant_id, note))

    def inbox(self, principal: Principal) -> list[Grant]:
        """Requests waiting for the caller's decision."""
        out = []
        for grant in self.grants(principal):
            entry = self.entry(grant.request.entry)
            if grant.state != "requested" or entry is None:
                continue
            try:
                policy.require_decider(principal, grant, entry, self.operators, "-", False)
            except PortalError:
                continue
            out.append(grant)
        return out

    # -- 供需对接清单 ------------------------------------------------------------------------

    def demands(self, state: str | None = None) -> list[Demand]:
        """Every department's needs (the list is public to all departments), newest first."""
        found = [d for d in self.state.demands().values() if state in (None, "", d.state)]
        return sorted(found, key=lambda d: d.created_at, reverse=True)

    def post_demand(
        self,
        principal: Principal,
        title: str,
        purpose: str,
        fields: Sequence[str] = (),
        holder: str | None = None,
    ) -> Demand:
        policy.require_demand_poster(principal)
        if holder and holder not in self.catalog.departments:
            raise BadRequestError(f"holder: unknown department {holder!r}", code="BAD_DEPT")
        try:
            demand = Demand(
                id=f"need-{stdlib_secrets.token_hex(4)}",
                department=principal.department,
                title=title.strip(),
                fields=tuple(f.strip() for f in fields if f.strip()),
                purpose=purpose.strip(),
                holder=holder or None,
                created_at=self.clock(),
                created_by=principal.name,
            )
        except ValidationError as exc:
            raise BadRequestError(_first(exc), code="BAD_DEMAND") from exc
        self._write(
            "portal.demand.posted",
            principal.name,
            {"demand": demand.id, "title": demand.title, "holder": demand.holder},
            [
                (self.settings.topics.portal_demands, demand.id, demand),
                *self._notice_rows(demand_notices(demand, self.clock())),
            ],
        )
        return demand

    def answer_demand(
        self,
        principal: Principal,
        demand_id: str,
        outcome: str,
        *,
        entry: str | None = None,
        due: dt.date | None = None,
        note: str = "",
    ) -> Demand:
        """matched (to ``entry``), accepted (for cataloguing by ``due``) or declined (``note``
        says why)."""
        demand = self.state.demand(demand_id)
        if demand is None:
            raise NotFoundError(f"no need {demand_id!r}", code="NO_DEMAND")
        policy.require_demand_answerer(principal, demand.holder, self.operators)
        if demand.state != "open":
            raise ConflictError(
                f"{demand_id} was answered already ({demand.state})", code="ANSWERED"
            )
        changes: dict[str, Any] = {"note": note.strip()}
        if outcome == "matched":
            if not entry or self.entry(entry) is None:
                raise BadRequestError(f"entry: no catalog entry {entry!r}", code="BAD_ENTRY")
            changes["entry"] = entry
        elif outcome == "accepted":
            if due is None or due <= self.clock().date():
                raise BadRequestError("due: a date after today", code="BAD_DUE")
            changes["due"] = due
        elif outcome == "declined":
            if not note.strip():
                raise BadRequestError("a declined need needs its reason", code="REASON_REQUIRED")
        else:
            raise BadRequestError(
                f"outcome: matched, accepted or declined, not {outcome!r}", code="BAD_OUTCOME"
            )
        answered = demand.model_copy(
            update={
                **changes,
                "state": outcome,
                "answered_at": self.clock(),
                "answered_by": principal.name,
            }
        )
        self._write(
            "portal.demand.answered",
            principal.name,
            {
                "demand": demand_id,
                "outcome": outcome,
                "entry": answered.entry,
                "due": answered.due.isoformat() if answered.due else None,
                "note": answered.note,
            },
            [
                (self.settings.topics.portal_demands, demand_id, answered),
                *self._notice_rows(demand_notices(answered, self.clock())),
            ],
        )
        return answered

    # -- quality -----------------------------------------------------------------------------

    def measures(self, principal: Principal, entry_id: str) -> dict[str, Any] | None:
        """An entry's quality measures, for its provider, the platform operators and the
        departments granted it (record counts and null shares say something of the data
        itself: not for everyone); ``None`` for anyone else. A check's failing values (the
        entry's own records' values) only for its provider."""
        found = self.state.measures(entry_id)
        entry = self.entry(entry_id)
        if found is None or entry is None or not self._sees_quality(principal, entry):
            return None
        if principal.department == entry.provider:
            return found
        return {**found, "checks": [{**c, "samples": []} for c in found.get("checks", [])]}

    def score_history(self, principal: Principal, entry_id: str) -> list[ScoreRow] | None:
        """The entry's latest scores with their parts, newest first (as :meth:`measures`,
        for the provider, the departments granted it and the operators)."""
        entry = self.entry(entry_id)
        if entry is None or not self._sees_quality(principal, entry):
            return None
        return self.scores.of(history_key(entry_id, entry.provider))

    def _sees_quality(self, principal: Principal, entry: CatalogEntry) -> bool:
        me = principal.department
        if me == entry.provider or policy.is_operator(principal, self.operators):
            return True
        return any(
            g.request.entry == entry.id
            and g.request.consumer == me
            and g.decision is not None
            and g.state in ("approved", "revoked")
            for g in self.state.grants().grants.values()
        )

    def assessment(self, principal: Principal, period: str) -> tuple[Period, list[Assessment]]:
        """监督考核 of every department over ``period`` (platform operators only)."""
        policy.require_operator(principal, self.operators)
        try:
            when = parse_period(period, self.settings.quality.utc_offset_hours)
        except ValueError as exc:
            raise BadRequestError(str(exc), code="BAD_PERIOD") from exc
        names = {d: dept.name for d, dept in self.catalog.departments.items()}
        return when, gather_assessment(self.settings, when, names)

    # -- notices and webhooks ----------------------------------------------------------------

    def _notice_rows(self, notices: Sequence[Notice]) -> list[tuple[str, str, Any | None]]:
        return [(self.settings.topics.portal_notices, n.id, n) for n in notices]

    def notices(self, principal: Principal, limit: int = 100) -> list[Notice]:
        """The caller's department's inbox, newest first."""
        mine = [n for n in self.state.notices().values() if n.department == principal.department]
        return sorted(mine, key=lambda n: n.at, reverse=True)[:limit]

    def set_webhook(self, principal: Principal, department: str, url: str) -> tuple[Webhook, str]:
        """A department's webhook; the signing secret is returned (shown once)."""
        policy.require_account_admin(principal, department, self.operators)
        secret = new_secret()
        try:
            hook = Webhook(
                department=department,
                url=url.strip(),
                secret=secret,
                created_at=self.clock(),
                created_by=principal.name,
            )
        except ValidationError as exc:
            raise BadRequestError(_first(exc), code="BAD_WEBHOOK") from exc
        self._write(
            "portal.webhook.set",
            principal.name,
            {"department": department, "url": hook.url},
            [(self.settings.topics.portal_webhooks, department, hook)],
        )
        return hook, secret

    def remove_webhook(self, principal: Principal, department: str) -> None:
        policy.require_account_admin(principal, department, self.operators)
        self._write(
            "portal.webhook.removed",
            principal.name,
            {"department": department},
            [(self.settings.topics.portal_webhooks, department, None)],
        )

    def _webhook_result(self, notice: Notice, result: str, attempts: int) -> None:
        """Each webhook delivery is on the trail: sent, or failed after every attempt."""
        try:
            self._write(
                f"portal.webhook.{result}",
                f"portal.{self.replica}",
                {"notice": notice.id, "department": notice.department, "attempts": attempts},
            )
        except ExchangeError as exc:  # logged; the sender goes on
            log.warning("cannot audit a webhook delivery: %s", exc)

    def _watch_terms(self) -> None:
        """Every ``portal.notice_check_s``: each entry's last update, and the notices grants'
        terms make due (ending within 7 days, ended) that nobody wrote yet. Replicas doing it
        at once write the same keys."""
        admin = Admin(self.settings.kafka)
        while True:
            try:
                self.last_updates = self._last_updates(admin)
            except Exception as exc:  # keep watching: the next round tries again
                log.warning("reading when entries were last updated: %s", exc)
            try:
                self.scores.update()
            except Exception as exc:
                log.warning("reading the score history: %s", exc)
            try:
                self._due_notices()
            except Exception as exc:
                log.warning("looking for grants ending: %s", exc)
            if self._stop.wait(self.settings.portal.notice_check_s):
                return

    def _last_updates(self, admin: Admin) -> dict[str, dt.datetime]:
        """When each entry's source topic was last written (its newest record's timestamp,
        asked of the broker without reading any record)."""
        topics = self.settings.topics
        by_topic = {source_topic(topics, e): e for e in self.catalog.entries}
        counts = admin.partition_counts()
        tps = [(t, p) for t in by_topic if t in counts for p in range(counts[t])]
        out: dict[str, dt.datetime] = {}
        for (topic, _p), ms in admin.last_write_ms(tps).items():
            at = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
            entry = by_topic[topic]
            out[entry] = max(out.get(entry, at), at)
        return out

    def _due_notices(self) -> None:
        now = self.clock()
        known = self.state.notices()
        for grant in self.state.grants().grants.values():
            due = [
                n
                for n in due_notices(grant, self.entry(grant.request.entry), now)
                if n.id not in known
            ]
            if due:
                self._write(
                    "portal.notice",
                    f"portal.{self.replica}",
                    {"grant": grant.id, "notices": [n.id for n in due]},
                    self._notice_rows(due),
                    grant_id=grant.id,
                )


def _person(account: Account) -> str:
    return account.id


def _first(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(x) for x in err["loc"])
    return f"{where}: {err['msg']}"


def parse_roles(raw: Iterable[str]) -> list[Role]:
    """Roles named on a command line or in a form; unknown names are refused."""
    out: list[Role] = []
    for name in raw:
        name = name.strip()
        if not name:
            continue
        if name not in ROLES:
            raise BadRequestError(
                f"roles: unknown role {name!r}; choose from {', '.join(ROLES)}", code="BAD_ROLES"
            )
        out.append(name)
    return out
