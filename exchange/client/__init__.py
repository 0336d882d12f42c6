"""The consumer SDK: a department reads its delivery topics (see docs/consuming.md), and objects
to records it finds wrong through the portal (docs/quality.md)."""

from exchange.client.consumer import Change, ClientError, ConsumerStats, DeliveryConsumer
from exchange.client.portal import PortalCallError, PortalClient

__all__ = [
    "Change",
    "ClientError",
    "ConsumerStats",
    "DeliveryConsumer",
    "PortalCallError",
    "PortalClient",
]
