"""Writing and releasing a destination Secret: what every kind that writes a Secret does with
the plans of destination.py (VaultSecret, VaultPKISecret, VaultDynamicSecret).

A write is planned from the watch's copy of our Secrets first, so a refresh that changes
nothing costs no API request; every decision that fails or writes over a Secret not known to
be ours rests on a fresh read. A release applies the deletion policy, and always finishes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from vaultsync.api.base import DeletionPolicy
from vaultsync.api.secret import CreationPolicy, Destination, SecretDestination
from vaultsync.connections.identity import Identities
from vaultsync.kube import events, secrets
from vaultsync.kube.api import Kube
from vaultsync.kube.logref import about
from vaultsync.runtime import metrics
from vaultsync.runtime.errors import SyncError
from vaultsync.runtime.settings import Settings
from vaultsync.runtime.view import View
from vaultsync.secrets.destination import Action, Owner, Plan, plan, released, unmarked
from vaultsync.secrets.renewal import parse_time
from vaultsync.secrets.restarts import Restarts
from vaultsync.vault.errors import (
    AuthenticationFailed,
    PermissionDenied,
    VaultSealed,
    VaultUnavailable,
)
from vaultsync.vault.sessions import Identity, Sessions

log = logging.getLogger(__name__)


def apply(kube: Kube, namespace: str, step: Plan) -> None:
    if step.action is Action.CREATE:
        secrets.create(kube, namespace, step.body)
    elif step.action is Action.REPLACE:
        secrets.replace(kube, namespace, step.body)


REVOKE_PATIENCE = 600.0
"""Seconds a deletion keeps retrying a revocation in Vault that fails for a reason that may
heal (Vault down: may_heal); after that, or at once for one that will not heal, the deletion
finishes without it and says so in a Warning Event: a deletion always finishes."""


def may_heal(error: SyncError, *, terminating: bool) -> bool:
    """Whether a revocation that failed during a deletion is worth retrying: Vault sealed or
    unreachable comes back. A refusal (the identity's login or policy) needs a person, and so
    does a VaultAuth gone (the operator started since, so no identity that issued is known):
    the deletion would only wait. In a namespace being deleted nothing of the identity can
    come back (its VaultAuth and ServiceAccount go with it, and nothing new may be created
    there), so there only Vault's availability is worth the wait."""
    if isinstance(error, (VaultUnavailable, VaultSealed)):
        return True
    if terminating or isinstance(error, (PermissionDenied, AuthenticationFailed)):
        return False
    return error.retryable and error.reason != "AuthNotFound"


def _deleting_for(body: Mapping[str, Any]) -> float:
    """Seconds since the object's deletion was asked for."""
    since = parse_time(body["metadata"].get("deletionTimestamp"))
    return 0.0 if since is None else (datetime.now(UTC) - since).total_seconds()


def needs_release(dest: SecretDestination) -> bool:
    """Whether deleting the object must wait to release its Secret: not for a Secret it owns
    and deletes with it (Owner + Delete, the default), which the garbage collector removes."""
    owned = dest.creation_policy is CreationPolicy.OWNER
    return not (owned and dest.deletion_policy is DeletionPolicy.DELETE)


class SecretWriter:
    """Writes and releases destination Secrets; one instance per reconciler."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    def write(
        self, namespace: str, dest: Destination, owner: Owner, data: dict[str, bytes], key: bytes
    ) -> tuple[dict[str, Any] | None, Plan]:
        """Bring the destination to data: (the Secret as it was, what was done).

        Planned first from the watch's copy of our Secrets, so a refresh that changes
        nothing costs no API request, and a new Secret is created without a read first.
        When that copy is stale or missing (a Secret not yet seen, or not ours: the create
        is refused; edited meanwhile: the replace at its resourceVersion is refused), or it
        plans a failure, the Secret is read and planned again: every decision that fails or
        writes over a Secret not known to be ours rests on a fresh read."""
        seen = self.kube.secrets.get(namespace, dest.name)
        try:
            step: Plan | None = plan(seen, dest, owner, data, key=key)
        except SyncError:
            step = None
        if step is not None and (seen is not None or step.action is Action.CREATE):
            try:
                apply(self.kube, namespace, step)
                return seen, step
            except SyncError as exc:  # a create checks the content before existence
                if seen is not None and exc.reason not in secrets.STALE:
                    raise
        current = secrets.read(self.kube, namespace, dest.name)
        step = plan(current, dest, owner, data, key=key)
        apply(self.kube, namespace, step)
        return current, step

    def release_renamed(self, body: Mapping[str, Any], dest: Destination, owner: Owner) -> None:
        """After a write to dest: the Secret written before under another name
        (status.secretName) gets the deletion policy."""
        previous = (body.get("status") or {}).get("secretName")
        if previous and previous != dest.name:
            renamed = dest.model_copy(update={"name": previous})
            self.release(body, renamed, owner, owner_stays=True)

    def release(
        self,
        body: Mapping[str, Any],
        dest: Destination,
        owner: Owner,
        *,
        owner_stays: bool = False,
    ) -> str:
        """Apply dest's deletion policy to a Secret this object no longer writes."""
        namespace = owner.namespace
        current = secrets.read(self.kube, namespace, dest.name)
        if current is None:
            return f"Secret {dest.name!r} was already gone"
        step = released(current, dest, owner, owner_stays=owner_stays)
        if step is None:
            secrets.delete(self.kube, namespace, dest.name)
            return f"deleted Secret {dest.name!r}"
        try:
            apply(self.kube, namespace, step)
        except SyncError as exc:
            if exc.reason != "SecretInvalid":
                raise
            return self._refused(body, current, exc)
        return f"Secret {dest.name!r} released ({step.action.value})"

    def _refused(self, body: Mapping[str, Any], current: dict[str, Any], error: SyncError) -> str:
        """The API server refuses the released Secret (removing our keys would make it
        invalid, as tls.key of a kubernetes.io/tls Secret): the release must still finish,
        so the Secret stays as it is, without our markers where the server accepts that."""
        name = current["metadata"]["name"]
        try:
            secrets.replace(self.kube, current["metadata"]["namespace"], unmarked(current))
            kept = "kept its data as it is (vaultsync's markers removed)"
        except SyncError:
            kept = "kept exactly as it is"
        message = f"Secret {name!r} {kept}: the API server refused the release: {error}"
        events.emit(self.kube, body, warning=True, reason="ReleaseRefused", message=message)
        return message


class TenantSecretReconciler:
    """What a reconciler of a kind that writes a Secret with the tenant's own Vault identity
    holds (VaultSecret, VaultPKISecret, VaultDynamicSecret); one instance per operator."""

    def __init__(self, kube: Kube, sessions: Sessions, settings: Settings) -> None:
        self.kube = kube
        self.sessions = sessions
        self.identities = Identities(kube, settings.namespace)
        self.namespace = settings.namespace  # where the HMAC key Secret lives
        self.restarts = Restarts(kube)
        self.writer = SecretWriter(kube)
        self._issuers: dict[tuple[str, str], Identity] = {}
        """(namespace, name) -> the identity an object last used in Vault."""

    def tenant_identity(self, body: Mapping[str, Any], auth_ref: str, view: View) -> Identity:
        """The tenant's identity, remembered: a deletion whose VaultAuth went first (with
        its namespace, whose controller deletes both at once) still revokes with the
        identity that issued, whose Vault session outlives the VaultAuth."""
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        try:
            identity = self.identities.tenant(meta["namespace"], auth_ref, view)
        except SyncError as exc:
            known = self._issuers.get(key)
            if known is None or exc.reason != "AuthNotFound" or not meta.get("deletionTimestamp"):
                raise
            return known
        self._issuers[key] = identity
        return identity

    def revoke_patiently(
        self, body: Mapping[str, Any], view: View, revoke: Callable[[], None], what: str
    ) -> str | None:
        """A revocation in Vault during body's deletion (what: "certificate 1a:2b"). A failure
        that may heal is raised again, so the deletion is retried, for REVOKE_PATIENCE; after
        that, or at once for one that will not heal, a Warning Event (and the log: no Event can
        be posted in a namespace being deleted) says so and the deletion goes on: the message
        is returned. None when revoked."""
        try:
            revoke()
        except SyncError as exc:
            terminating = body["metadata"]["namespace"] in view.terminating
            if may_heal(exc, terminating=terminating) and _deleting_for(body) < REVOKE_PATIENCE:
                raise
            message = f"{what} was not revoked and expires at its TTL; the deletion goes on: {exc}"
            metrics.REVOCATIONS_DROPPED.labels(body["kind"], exc.reason).inc()
            meta = body["metadata"]
            log.warning(
                "%s %s/%s: %s",
                body["kind"],
                meta["namespace"],
                meta["name"],
                message,
                extra=about(body),
            )
            events.emit(self.kube, body, warning=True, reason="RevokeFailed", message=message)
            return message
        return None

    def forget(self, body: Mapping[str, Any]) -> None:
        """The object is gone: what restarts and identities remember of it goes too."""
        meta = body["metadata"]
        self.restarts.forget(meta["namespace"], meta["name"])
        self._issuers.pop((meta["namespace"], meta["name"]), None)
