"""Thin wrappers over confluent-kafka: admin, schema registry, and compacted control topics.

Library errors are wrapped in :class:`KafkaOpError` / :class:`RegistryError`, keeping the
librdkafka error name or the registry's HTTP and error codes.
"""

from exchange.kafka.errors import KafkaOpError, RegistryError

__all__ = ["KafkaOpError", "RegistryError"]
