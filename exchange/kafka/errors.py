from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException

from exchange.errors import ExchangeError


class KafkaOpError(ExchangeError):
    """A Kafka operation failed; ``code`` is librdkafka's error name (e.g. ``_TIMED_OUT``)."""

    def __init__(self, message: str, *, code: str | None = None, retriable: bool = False) -> None:
        super().__init__(message, code=code)
        self.retriable = retriable

    @classmethod
    def wrap(cls, what: str, exc: BaseException) -> KafkaOpError:
        err = exc.args[0] if isinstance(exc, KafkaException) and exc.args else exc
        if isinstance(err, KafkaError):
            return cls(f"{what}: {err.str()}", code=err.name(), retriable=err.retriable())
        if isinstance(exc, TimeoutError):
            # An admin future that did not resolve in time: the broker is away or busy.
            return cls(f"{what}: no answer in time", code="_TIMED_OUT", retriable=True)
        return cls(f"{what}: {exc}")


class RegistryError(ExchangeError):
    """A schema-registry call failed; ``code`` is ``<http status>/<registry error code>``."""

    def __init__(
        self, message: str, *, http_status: int | None = None, error_code: int | None = None
    ):
        code = f"{http_status}/{error_code}" if http_status is not None else None
        super().__init__(message, code=code)
        self.http_status = http_status
        self.error_code = error_code
