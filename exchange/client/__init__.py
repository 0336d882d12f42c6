"""The consumer SDK: a department reads its delivery topics (see docs/consuming.md)."""

from exchange.client.consumer import Change, ClientError, ConsumerStats, DeliveryConsumer

__all__ = ["Change", "ClientError", "ConsumerStats", "DeliveryConsumer"]
