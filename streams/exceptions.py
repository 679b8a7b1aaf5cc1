"""Errors raised by the streaming layer; all derive from the project's root `CipulseError`."""

from schemas.exceptions import CipulseError


class StreamsError(CipulseError):
    """Something in the streaming layer failed in a way the operator can fix."""


class KafkaSetupError(StreamsError):
    """The broker is unreachable or a topic could not be created."""


class ApiRequestError(StreamsError):
    """A request to the REST API is malformed; the message says what to fix (HTTP 400)."""


class IngestRefused(StreamsError):
    """An HTTP ingest request is refused before anything reaches Kafka; `status` is the HTTP answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class RequestBodyRefused(StreamsError):
    """A state-changing API call's body cannot be read as JSON (422) or is too large (413)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class StreamPositionError(ApiRequestError):
    """A push-stream resume position (`Last-Event-ID`) cannot be read or does not fit the topic."""


class GateConfigError(StreamsError):
    """The quality gates file is missing, unparseable or invalid.

    Raised once, at start, before the worker runs; one line per problem as
    `file: gate 'id' (entry N): field X: message`, so every mistake is fixed in one pass.
    """
