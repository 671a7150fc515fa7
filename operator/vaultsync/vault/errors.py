"""A small error hierarchy over hvac/requests/urllib3/http.client failures.

Every error carries a CamelCase `reason` for conditions and a message that never
contains secret data: messages are built from the operation, the path and Vault's
own error strings, never from request or response bodies.
"""

from __future__ import annotations

import http.client
import re
import ssl
from typing import Any

import hvac
import hvac.exceptions as hv
import requests
import urllib3

from vaultsync.runtime.errors import SyncError


class VaultError(SyncError):
    reason = "VaultError"


class VaultUnavailable(VaultError):
    reason = "VaultUnavailable"


class VaultSealed(VaultError):
    reason = "VaultSealed"


class PermissionDenied(VaultError):
    reason = "PermissionDenied"


class AuthenticationFailed(VaultError):
    reason = "AuthenticationFailed"


class SecretNotFound(VaultError):
    """Nothing at the path (or that version): a person writes it or fixes the path."""

    reason = "SecretNotFound"
    retryable = False


class SecretVersionDeleted(VaultError):
    """The version read was deleted or destroyed: a person restores it or writes a new one."""

    reason = "SecretVersionDeleted"
    retryable = False


class InvalidRequest(VaultError):
    reason = "VaultRequestInvalid"


class CheckAndSetFailed(VaultError):
    """A KV write based on a version that is no longer the current one: someone else wrote."""

    reason = "CheckAndSetFailed"


class RotationDenied(PermissionDenied):
    """A request that rotation needs was refused; the message names the missing capability
    and the path it is needed on."""

    reason = "RotationDenied"


class PasswordPolicyNotFound(VaultError):
    """The password policy the spec names does not exist in Vault."""

    reason = "PasswordPolicyNotFound"
    retryable = False


_BY_HVAC: list[tuple[type[Exception], type[VaultError]]] = [
    (hv.VaultDown, VaultSealed),
    (hv.Forbidden, PermissionDenied),
    (hv.Unauthorized, AuthenticationFailed),
    (hv.InvalidPath, SecretNotFound),
    (hv.InvalidRequest, InvalidRequest),
    (hv.RateLimitExceeded, VaultUnavailable),
    (hv.BadGateway, VaultUnavailable),
    (hv.InternalServerError, VaultUnavailable),
]


_WRAPPED = re.compile(r"^\s*\d+ errors? occurred:\s*")
_BULLET = re.compile(r"\s*\n\s*\*\s*|^\s*\*\s*")


def clean(message: str) -> str:
    """Vault's message without Go's multierror wrapping ("1 error occurred:\n\t* ...")."""
    text = _WRAPPED.sub("", str(message))
    parts = [p.strip() for p in _BULLET.split(text) if p.strip()]
    return "; ".join(parts)


def _vault_errors(exc: hv.VaultError) -> str:
    errors = getattr(exc, "errors", None)
    if isinstance(errors, list) and errors:
        return "; ".join(filter(None, (clean(str(e)) for e in errors)))
    return type(exc).__name__


def translate(exc: Exception, action: str) -> VaultError:
    """Map an hvac/requests/urllib3/http.client exception (or a socket's OSError) to a
    VaultError describing `action`."""
    if isinstance(exc, VaultError):
        return exc
    if isinstance(exc, requests.exceptions.RequestException):
        return VaultUnavailable(f"{action}: cannot reach Vault ({type(exc).__name__})")
    if isinstance(exc, urllib3.exceptions.HTTPError):
        cause = getattr(exc, "reason", None) or exc
        return VaultUnavailable(f"{action}: cannot reach Vault ({type(cause).__name__})")
    if isinstance(exc, ssl.SSLError):  # the certificate, or the handshake
        why = f": {exc.reason}" if exc.reason else ""
        return VaultUnavailable(f"{action}: cannot reach Vault (SSLError{why})")
    if isinstance(exc, (OSError, http.client.HTTPException)):
        return VaultUnavailable(f"{action}: cannot reach Vault ({type(exc).__name__})")
    if isinstance(exc, hv.VaultError):
        for hvac_type, ours in _BY_HVAC:
            if isinstance(exc, hvac_type):
                return ours(f"{action}: {_vault_errors(exc)}")
        return VaultError(f"{action}: {_vault_errors(exc)}")
    return VaultError(f"{action}: {type(exc).__name__}")


def translate_refusal(exc: Exception, action: str, needs: str) -> VaultError:
    """translate(), with a refusal saying what the tenant's policy lacks (needs: "'update'
    on pki/issue/web")."""
    error = translate(exc, action)
    if isinstance(error, PermissionDenied):
        return PermissionDenied(f"{action}: permission denied; needs {needs}")
    return error


def update(client: hvac.Client, url: str, body: dict[str, Any], where: str, path: str) -> Any:
    """POST body to url (Vault's update); a refusal says the tenant's policy lacks 'update' on
    path (where: the action, for the message)."""
    try:
        return client.adapter.post(url, json=body)
    except Exception as exc:
        raise translate_refusal(exc, where, f"'update' on {path}") from None
