"""The base of every error that ends up as a condition reason."""

from __future__ import annotations


class SyncError(Exception):
    """An error with a CamelCase reason for conditions; its message holds no secret data.

    `retryable` is False when only a change of the object can fix it (bad spec).
    """

    reason = "Error"
    retryable = True

    def __init__(self, message: str, *, reason: str | None = None, retryable: bool | None = None):
        super().__init__(message)
        if reason is not None:
            self.reason = reason
        if retryable is not None:
            self.retryable = retryable
