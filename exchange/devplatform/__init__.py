"""The local platform for development, the demo and the tests: ``exchange dev up|down|status|logs``.

A single-node Apache Kafka (KRaft, broker+controller) and an Apicurio Registry with its storage in
Kafka, both fetched from Maven Central with Maven and run as background processes.
"""

from exchange.devplatform.platform import ComponentStatus, LocalPlatform, PlatformError

__all__ = ["ComponentStatus", "LocalPlatform", "PlatformError"]
