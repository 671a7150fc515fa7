"""Timing and error counts of Vault operations, labelled by operation name only.

`@request("kv_read")` on a function of this package times every call of it in
`vaultsync_vault_request_duration_seconds{operation}` and counts a failure in
`vaultsync_vault_request_errors_total{operation, reason}` with the reason of the error the
function raises (SecretNotFound, PermissionDenied, CheckAndSetFailed...; an hvac or requests
exception is named by the reason errors.translate gives it).
An answer the function turns into a normal result (a missing policy read as None) is not an
error. Paths, names and identities never become labels: the operation is a constant of the
call site.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

from vaultsync.runtime import metrics
from vaultsync.runtime.errors import SyncError
from vaultsync.vault.errors import translate

P = ParamSpec("P")
T = TypeVar("T")

OPERATIONS = frozenset(
    {
        "kv_read",
        "kv_write",
        "kv_metadata_write",
        "password_generate",
        "pki_issue",
        "pki_revoke",
        "credential_read",
        "lease_renew",
        "lease_revoke",
        "policy_read",
        "policy_write",
        "policy_delete",
        "role_read",
        "role_write",
        "role_delete",
        "audit_list",
        "audit_enable",
        "audit_disable",
        "transit_key_read",
        "transit_key_write",
        "transit_key_rotate",
        "transit_key_delete",
        "transit_encrypt",
        "transit_decrypt",
        "transit_rewrap",
        "seal_status",
        "login",
        "token_renew",
        "token_lookup",
    }
)
"""Every operation label value; docs/metrics.md lists them."""


@contextmanager
def timed(operation: str) -> Iterator[None]:
    """Time the block as one `operation`; an exception leaving it counts as an error."""
    if operation not in OPERATIONS:
        raise ValueError(f"unknown Vault operation {operation!r}")
    started = time.monotonic()
    try:
        yield
    except Exception as exc:
        reason = exc.reason if isinstance(exc, SyncError) else translate(exc, operation).reason
        metrics.VAULT_REQUEST_ERRORS.labels(operation, reason).inc()
        raise
    finally:
        metrics.VAULT_REQUEST_SECONDS.labels(operation).observe(time.monotonic() - started)


def request(operation: str) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Decorate a function that performs one Vault operation: see the module docstring."""
    if operation not in OPERATIONS:
        raise ValueError(f"unknown Vault operation {operation!r}")

    def decorate(function: Callable[P, T]) -> Callable[P, T]:
        @functools.wraps(function)
        def observed(*args: P.args, **kwargs: P.kwargs) -> T:
            with timed(operation):
                return function(*args, **kwargs)

        return observed

    return decorate
