"""What the portal keeps: people's accounts, departments' API tokens, sessions, login lockouts.

Each lives as JSON on a compacted control topic (``TopicSettings.portal_*``), keyed by its id,
so every portal replica reads the same state and none keeps any of its own (``store.py``).
Secrets are never stored: passwords as argon2id hashes, session ids, CSRF tokens and API tokens
as SHA-256 of random 256-bit values (``secrets.py``).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "ROLES",
    "TOKEN_ROLES",
    "Account",
    "ApiToken",
    "Demand",
    "DemandState",
    "Lockout",
    "Notice",
    "NoticeKind",
    "Principal",
    "Role",
    "Session",
    "Webhook",
    "account_id",
]

#: viewer: sees what concerns its department; applicant: requests grants for it and ends them;
#: approver: decides requests for its department's entries; admin: manages its department's
#: accounts and tokens; operator: a platform operator (大数据局), only in an operator department.
Role = Literal["viewer", "applicant", "approver", "admin", "operator"]
ROLES: tuple[Role, ...] = ("viewer", "applicant", "approver", "admin", "operator")
#: What a department system's token may do: never manage accounts, never act as the platform.
TOKEN_ROLES: tuple[Role, ...] = ("viewer", "applicant", "approver")
_USERNAME = re.compile(r"^[a-z][a-z0-9_.-]{1,63}$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def encode(self) -> bytes:
        return self.model_dump_json().encode("utf-8")


def account_id(department: str, username: str) -> str:
    """An account's key: usernames are unique within a department."""
    return f"{department}/{username}"


class Account(_Model):
    department: str
    username: str
    display_name: str = ""
    roles: frozenset[Role]
    #: argon2id, in its encoded form (parameters and salt included).
    password_hash: str
    disabled: bool = False
    created_at: dt.datetime
    created_by: str
    updated_at: dt.datetime

    @field_validator("username")
    @classmethod
    def _username(cls, value: str) -> str:
        if not _USERNAME.match(value):
            raise ValueError(
                "2-64 characters: lower-case letters, digits, '.', '_' or '-', starting with a "
                "letter"
            )
        return value

    @property
    def id(self) -> str:
        return account_id(self.department, self.username)

    @classmethod
    def decode(cls, value: bytes) -> Account:
        return cls.model_validate_json(value)


class ApiToken(_Model):
    """A department system's credential: ``exk_<id>_<secret>``, shown once."""

    id: str
    department: str
    name: str
    roles: frozenset[Role]
    #: SHA-256 of the secret part, hex.
    secret_hash: str
    created_at: dt.datetime
    created_by: str
    expires_at: dt.datetime
    revoked: bool = False

    @field_validator("roles")
    @classmethod
    def _token_roles(cls, value: frozenset[Role]) -> frozenset[Role]:
        extra = sorted(value - set(TOKEN_ROLES))
        if extra:
            raise ValueError(f"a token may hold {', '.join(TOKEN_ROLES)}; not {', '.join(extra)}")
        return value

    @classmethod
    def decode(cls, value: bytes) -> ApiToken:
        return cls.model_validate_json(value)


class Session(_Model):
    """A person logged in. Keyed by the SHA-256 of the session id in its cookie."""

    account: str
    #: SHA-256 of the CSRF token the session's pages and API calls must send back, hex.
    csrf_hash: str
    created_at: dt.datetime
    #: Absolute end (``portal.session_max_s`` after login) ...
    expires_at: dt.datetime
    #: ... and the idle end, moved on by use (at most once a minute: a write per request would
    #: make every page view a Kafka transaction).
    idle_until: dt.datetime
    ended: bool = False

    @classmethod
    def decode(cls, value: bytes) -> Session:
        return cls.model_validate_json(value)


class Lockout(_Model):
    """Failed logins of one account in the current window (shared by the replicas)."""

    failures: int = Field(0, ge=0)
    window_start: dt.datetime
    locked_until: dt.datetime | None = None

    @classmethod
    def decode(cls, value: bytes) -> Lockout:
        return cls.model_validate_json(value)


class Principal(_Model):
    """Who is calling: a person (by session) or a department system (by token)."""

    kind: Literal["person", "token"]
    department: str
    #: The account id, or ``token:<id>``.
    name: str
    roles: frozenset[Role]
    #: The session's CSRF hash (people only): cookie-authenticated writes must match it.
    csrf_hash: str | None = None
    #: The session key (people only), for logout.
    session_key: str | None = None

    def has(self, role: Role) -> bool:
        return role in self.roles


DemandState = Literal["open", "matched", "accepted", "declined"]


class Demand(_Model):
    """A need for data posted on the 供需对接清单, and its answer.

    open → matched (to an existing entry: one click makes a grant request), accepted (for
    cataloguing, with a due date) or declined (with the reason); each answer says who and when.
    """

    id: str
    #: The department that needs the data.
    department: str
    #: What data (in the department's words).
    title: str = Field(..., min_length=2, max_length=200)
    #: Which fields, as the department names them.
    fields: tuple[str, ...] = ()
    purpose: str = Field(..., min_length=2, max_length=1000)
    #: The department it believes holds the data (``None``: it does not know).
    holder: str | None = None
    state: DemandState = "open"
    created_at: dt.datetime
    created_by: str
    answered_at: dt.datetime | None = None
    answered_by: str | None = None
    #: matched: the catalog entry that has it.
    entry: str | None = None
    #: accepted: when the holder means to have it catalogued.
    due: dt.date | None = None
    #: declined: why; or a note with another answer.
    note: str = ""

    @classmethod
    def decode(cls, value: bytes) -> Demand:
        return cls.model_validate_json(value)


NoticeKind = Literal[
    "request_filed",
    "request_decided",
    "grant_expiring",
    "grant_ended",
    "demand_posted",
    "demand_answered",
    "objection_filed",
    "objection_changed",
    "objection_escalated",
]


class Notice(_Model):
    """Something a department is told: in its inbox, and by its webhook if it has one.

    ``id`` names what it is about (``grant_ended:<grant>:r<revision>``), so a notice two
    replicas both found due is written under one key and kept once."""

    id: str
    department: str
    kind: NoticeKind
    at: dt.datetime
    #: One line, as the inbox shows it.
    text: str
    #: Where in the portal it leads.
    link: str
    grant_id: str | None = None
    demand_id: str | None = None
    objection_id: str | None = None

    @classmethod
    def decode(cls, value: bytes) -> Notice:
        return cls.model_validate_json(value)


class Webhook(_Model):
    """Where a department's notices are also POSTed, HMAC-signed with ``secret``."""

    department: str
    url: str
    #: The signing secret (shown once when set; the portal must keep it to sign).
    secret: str
    created_at: dt.datetime
    created_by: str

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @classmethod
    def decode(cls, value: bytes) -> Webhook:
        return cls.model_validate_json(value)
