"""What every portal replica follows: its own topics, the grants and the published catalog.

One :class:`~exchange.kafka.tables.Tables` thread per replica; requests are answered from it,
never by reading a topic whole (a 1,000-entry catalog and its grants listed by 200 sessions at
once). Writes go through :class:`~exchange.portal.writer.PortalWriter` and are put into the
tables once committed, so a replica reads its own writes at once; a write made by another
replica a moment ago is found by :meth:`PortalState.sync`.
"""

from __future__ import annotations

import json
from typing import Any

from exchange.catalog.published import PublishedCatalogEntry, parse_catalog_record
from exchange.config import ExchangeSettings
from exchange.grants.model import Grant
from exchange.grants.store import GrantTable
from exchange.kafka.tables import Tables
from exchange.portal.model import Account, ApiToken, Demand, Lockout, Notice, Session, Webhook
from exchange.quality.objections import Objection

__all__ = ["PortalState"]


class PortalState:
    """The portal's view of the platform. No network until :meth:`start`."""

    def __init__(self, settings: ExchangeSettings) -> None:
        t = settings.topics
        self.topics = t
        self.tables = Tables(
            settings.kafka,
            {
                t.portal_accounts: Account.decode,
                t.portal_tokens: ApiToken.decode,
                t.portal_sessions: Session.decode,
                t.portal_lockouts: Lockout.decode,
                t.portal_demands: Demand.decode,
                t.portal_notices: Notice.decode,
                t.portal_webhooks: Webhook.decode,
                t.objections: Objection.decode,
                t.quality_measures: json.loads,
                t.grants: Grant.decode,
                t.catalog: parse_catalog_record,
            },
            "portal",
        )

    def start(self, timeout: float) -> None:
        self.tables.start(timeout)

    def stop(self) -> None:
        self.tables.stop()

    def sync(self, timeout: float = 5.0) -> bool:
        return self.tables.sync(timeout)

    # -- lookups -----------------------------------------------------------------------------

    def account(self, account_id: str) -> Account | None:
        found: Account | None = self.tables.get(self.topics.portal_accounts, account_id)
        return found

    def accounts(self) -> dict[str, Account]:
        return self.tables.items(self.topics.portal_accounts)

    def token(self, token_id: str) -> ApiToken | None:
        found: ApiToken | None = self.tables.get(self.topics.portal_tokens, token_id)
        return found

    def tokens(self) -> dict[str, ApiToken]:
        return self.tables.items(self.topics.portal_tokens)

    def session(self, key: str) -> Session | None:
        found: Session | None = self.tables.get(self.topics.portal_sessions, key)
        return found

    def sessions(self) -> dict[str, Session]:
        return self.tables.items(self.topics.portal_sessions)

    def lockout(self, account_id: str) -> Lockout | None:
        found: Lockout | None = self.tables.get(self.topics.portal_lockouts, account_id)
        return found

    def demand(self, demand_id: str) -> Demand | None:
        found: Demand | None = self.tables.get(self.topics.portal_demands, demand_id)
        return found

    def demands(self) -> dict[str, Demand]:
        return self.tables.items(self.topics.portal_demands)

    def notices(self) -> dict[str, Notice]:
        return self.tables.items(self.topics.portal_notices)

    def webhook(self, department: str) -> Webhook | None:
        found: Webhook | None = self.tables.get(self.topics.portal_webhooks, department)
        return found

    def objection(self, objection_id: str) -> Objection | None:
        found: Objection | None = self.tables.get(self.topics.objections, objection_id)
        return found

    def objections(self) -> dict[str, Objection]:
        return self.tables.items(self.topics.objections)

    def measures(self, entry_id: str) -> dict[str, Any] | None:
        """The quality worker's latest measures of an entry (``quality/measures.py``)."""
        found: dict[str, Any] | None = self.tables.get(self.topics.quality_measures, entry_id)
        return found

    def grant(self, grant_id: str) -> Grant | None:
        found: Grant | None = self.tables.get(self.topics.grants, grant_id)
        return found

    def grants(self) -> GrantTable:
        return GrantTable(grants=self.tables.items(self.topics.grants))

    def catalog(self) -> dict[str, PublishedCatalogEntry]:
        return self.tables.items(self.topics.catalog)

    def put(self, topic: str, key: str, value: Any | None) -> None:
        self.tables.put(topic, key, value)
