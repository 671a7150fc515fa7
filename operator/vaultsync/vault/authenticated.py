"""Running Vault operations with an identity's cached session."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import hvac

from vaultsync.vault.errors import AuthenticationFailed, PermissionDenied
from vaultsync.vault.observe import timed
from vaultsync.vault.sessions import Identity, Sessions

T = TypeVar("T")


def _token_alive(client: hvac.Client) -> bool:
    try:
        with timed("token_lookup"):
            client.auth.token.lookup_self()
    except Exception:
        return False
    return True


def with_client(sessions: Sessions, identity: Identity, operation: Callable[[hvac.Client], T]) -> T:
    """Run operation with identity's session; if Vault no longer honours its token, log in once
    more and run it again.

    A refusal while the token is still alive is a missing grant, not a lost session: it
    is raised as it is, so that a missing permission does not cost a new login (and a
    new token in Vault) on every reconcile.
    """
    was_cached = sessions.cached(identity)
    client = sessions.client(identity)
    try:
        return operation(client)
    except (PermissionDenied, AuthenticationFailed):
        if not was_cached or _token_alive(client):
            raise
        sessions.invalidate(identity, client)
        return operation(sessions.client(identity))
