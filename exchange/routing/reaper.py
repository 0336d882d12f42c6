"""Nothing left after a grant changes or ends: its generation's delivery topic is deleted.

Each revision of an active grant delivers to a topic of its own (``TopicSettings.delivery_of``,
``GrantTerms.generation``). Once a generation is no longer active (revoked, expired, or
replaced by a new revision: narrowed, widened, renewed) nothing it delivered may stay readable,
so its topic goes. Every router worker sweeps: it lists the delivery topics of the catalog's
entries and deletes those that no active grant generation of its grant book writes and that
were unwanted for ``grace_s`` (a sweep every 2 s, 10 s grace: gone within about 12 s of the
change, the issue asks for 30).

The grace keeps a deletion from racing the other workers: a worker whose book has not heard of
the change yet may still write the old generation (its transaction then fails, it aborts and
routes the records again under the book it has by then). A worker sweeps only while its own
book is current (younger than the grace), so a worker cut off from the grants topic never
deletes the topic of a generation it has not heard of. Shared topics of the layout before
generations (``<prefix><consumer>.<entry>``) go the same way: every grant's current rows arrive
again in its generation's topic.

:func:`unwanted` is the rule, a pure function; :class:`Reaper` adds the grace and the I/O.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Collection, Iterable, Mapping

from exchange.config import ExchangeSettings
from exchange.config.settings import TopicSettings
from exchange.grants.model import GrantTerms
from exchange.kafka.admin import Admin
from exchange.routing import metrics

__all__ = ["Reaper", "unwanted"]

log = logging.getLogger(__name__)


def unwanted(
    topics: Iterable[str],
    grants: Iterable[GrantTerms],
    entries: Collection[str],
    names: TopicSettings,
    now: dt.datetime,
) -> set[str]:
    """Delivery topics of ``entries`` that no grant generation active at ``now`` writes.

    Topics under the delivery prefix that name no entry of the catalog (another deployment's,
    or a name this rule does not recognise) are left alone."""
    wanted = {
        names.delivery_of(g.consumer, g.entry, g.id, g.generation())
        for g in grants
        if g.is_active(now)
    }
    out = set()
    for topic in topics:
        if topic in wanted or not topic.startswith(names.delivery_prefix):
            continue
        parts = names.delivery_parts(topic)
        if parts is not None:
            entry = parts[1]
        else:
            # The shared topic before generations: <prefix><consumer>.<entry>.
            entry = topic[len(names.delivery_prefix) :].partition(".")[2]
        if entry in entries:
            out.add(topic)
    return out


class Reaper:
    """Deletes the delivery topics :func:`unwanted` names once they stayed so for a grace."""

    def __init__(self, settings: ExchangeSettings, admin: Admin) -> None:
        self.settings = settings
        self.admin = admin
        self.grace_s = settings.router.ended_topic_grace_s
        #: Unwanted topics and since when (monotonic seconds): seen so in every sweep since.
        self._since: dict[str, float] = {}

    def sweep(
        self,
        book_age_s: float,
        grants: Mapping[str, GrantTerms],
        entries: Collection[str],
        now: dt.datetime,
    ) -> list[str]:
        """Blocking: one sweep; returns the topics deleted."""
        if book_age_s >= self.grace_s:
            # Not sure of the grants: another worker sweeps, or this one once it is current.
            self._since.clear()
            return []
        topics = self.admin.partition_counts()
        found = unwanted(topics, grants.values(), entries, self.settings.topics, now)
        clock = time.monotonic()
        self._since = {t: self._since.get(t, clock) for t in found}
        due = sorted(t for t, since in self._since.items() if clock - since >= self.grace_s)
        if due:
            self.admin.delete_topics(due)
            for topic in due:
                del self._since[topic]
                log.info("deleted delivery topic %s: its grant generation ended", topic)
            metrics.TOPICS_DELETED.inc(len(due))
        return due
