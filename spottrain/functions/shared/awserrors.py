"""Turn AWS answers worth retrying into TransientError, which the state machine retries with backoff."""

from __future__ import annotations

import contextlib
from typing import Iterator

from botocore.exceptions import ClientError, ConnectionError as BotocoreConnectionError

from spottrain.contract.status import TransientError

THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "SlowDown",
        "RequestThrottled",
        "ServiceUnavailable",
        "InternalError",
    }
)


def error_code(error: ClientError) -> str:
    return error.response.get("Error", {}).get("Code", "")


def is_transient(error: ClientError) -> bool:
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    return error_code(error) in THROTTLING_CODES or status >= 500


@contextlib.contextmanager
def transient_errors() -> Iterator[None]:
    """Re-raise throttling, 5xx and connection failures as TransientError; anything else unchanged."""
    try:
        yield
    except ClientError as exc:
        if is_transient(exc):
            raise TransientError(f"{error_code(exc) or 'HTTP 5xx'}: {exc}") from exc
        raise
    except BotocoreConnectionError as exc:
        raise TransientError(str(exc)) from exc
