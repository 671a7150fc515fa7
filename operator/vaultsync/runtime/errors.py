"""The base of every error that ends up as a condition reason."""

from __future__ import annotations


class SyncError(Exception):
    """An error with a CamelCase reason for conditions; its message holds no secret data.

    `retryable` is False when retrying cannot help until a person changes something: the
    object's spec, the Vault data or configuration it names, or a conflicting object. The
    object is then Stalled (kstatus: Failed) and looked at again only at its usual interval
    (refresh or resync) or when it changes. True (the default) when the failure may heal
    without a person: an outage, a race, or another object not there yet (as when a GitOps
    tool applies several at once); the object is Reconciling (kstatus: InProgress) and
    retried with backoff. The table of reasons is in docs/gitops.md.
    """

    reason = "Error"
    retryable = True

    def __init__(self, message: str, *, reason: str | None = None, retryable: bool | None = None):
        super().__init__(message)
        if reason is not None:
            self.reason = reason
        if retryable is not None:
            self.retryable = retryable
