"""Exchange: government data sharing over Apache Kafka."""

__version__ = "0.1.0"
