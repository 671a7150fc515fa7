"""VaultTransitKey reconciliation: a transit key kept as declared (keys.py), with the
operator's own Vault identity, as VaultPolicy and VaultAuditDevice are.

Ownership follows VaultAuditDevice's rules: `status.managed` is set to true *before* the
create call, so a crash in between cannot make vaultsync forget that it created the key; a key
that already existed is adopted (kept as declared, never deleted). Transit keys have no field
that could carry an ownership marker in Vault, so status is the only record: an object
re-created from its manifest without status finds the key existing and adopts it, which is
the safe side for something whose deletion destroys every ciphertext made with it. Within one
operator process the ownership last recorded is remembered by uid, as the object's body may
lag behind our own status patches.

Two VaultTransitKeys declaring the same key (same VaultConnection, mount and key name): the
older one (creationTimestamp, then name) keeps it; the other is KeyConflict and touches
nothing, not even on deletion.

The key is deleted only when the object is deleted with deletionPolicy Delete and vaultsync
created it; deletion_allowed is set just before.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from vaultsync import GROUP, VERSION
from vaultsync.api.base import DeletionPolicy, parse
from vaultsync.api.transit import VaultTransitKeySpec
from vaultsync.connections.identity import Identities, find_auth
from vaultsync.kube import events, status
from vaultsync.kube.api import Kube, cluster_objects
from vaultsync.kube.claims import Claims
from vaultsync.kube.logref import about
from vaultsync.runtime.errors import SyncError
from vaultsync.runtime.outcome import Outcome, Result
from vaultsync.runtime.settings import Settings
from vaultsync.runtime.view import View
from vaultsync.transit.keys import KeyResult, converge
from vaultsync.vault import transit
from vaultsync.vault.authenticated import with_client
from vaultsync.vault.client import Endpoint
from vaultsync.vault.sessions import Sessions

log = logging.getLogger(__name__)
DEFAULT_MOUNT = "transit"


def _text(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def _age(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("creationTimestamp") or ""), str(meta.get("name") or "")


def vault_key(endpoint: Endpoint, mount: str, name: str) -> str:
    """Where a key is: the Vault, its namespace and the key's path."""
    namespace = endpoint.namespace.strip("/")
    return f"{endpoint.address.rstrip('/')} namespace {namespace or '(root)'}: {mount}/keys/{name}"


class VaultTransitKeyReconciler:
    """Everything a VaultTransitKey reconcile needs; one instance per operator."""

    kind = "VaultTransitKey"
    plural = "vaulttransitkeys"

    def __init__(self, kube: Kube, sessions: Sessions, settings: Settings) -> None:
        self.kube = kube
        self.sessions = sessions
        self.identities = Identities(kube, settings.namespace)
        self.claims = Claims(kube, self.plural)
        self._located: dict[str, str] = {}
        """uid -> status.vaultKey last recorded, as Claims remembers status.managed."""

    def _target(self, raw: Mapping[str, Any], object_name: str, view: View) -> tuple[str, ...]:
        """Which key an object's spec declares: (its VaultConnection, mount, key name)."""
        auth_ref = str(raw.get("authRef") or "default")
        operator_namespace = self.identities.operator_namespace
        try:
            _, auth = find_auth(operator_namespace, auth_ref, view.auths, None)
            connection = auth.connection_ref
        except SyncError:
            connection = f"authRef {auth_ref}"
        mount = str(raw.get("mount") or DEFAULT_MOUNT)
        return connection, mount, str(raw.get("keyName") or object_name)

    def _holder(self, body: Mapping[str, Any], view: View) -> str | None:
        """The name of an older VaultTransitKey that declares the same key, if any."""
        name = body["metadata"]["name"]
        mine = self._target(body.get("spec") or {}, name, view)
        others = [
            other
            for other in cluster_objects(self.kube, GROUP, VERSION, self.plural)
            if other["metadata"]["name"] != name
            and not other["metadata"].get("deletionTimestamp")
            and self._target(other.get("spec") or {}, other["metadata"]["name"], view) == mine
            and _age(other) < _age(body)
        ]
        return min(others, key=_age)["metadata"]["name"] if others else None

    def _recorded(self, body: Mapping[str, Any]) -> str | None:
        """status.vaultKey: the key status.managed is about (None: recorded by a version that
        did not record it, so about the key the spec leads to)."""
        uid = body["metadata"]["uid"]
        return self._located.get(uid) or (body.get("status") or {}).get("vaultKey")

    def _converge(
        self, body: Mapping[str, Any], spec: VaultTransitKeySpec, view: View
    ) -> tuple[KeyResult, str | None]:
        """The key kept as declared, and where it is (None when that is not known)."""
        managed = self.claims.managed(body)
        name = spec.name_in_vault(body["metadata"]["name"])
        where = None
        try:
            holder = self._holder(body, view)
            if holder is not None:
                message = (
                    f"transit key {spec.mount}/{name} is declared by VaultTransitKey {holder!r}, "
                    "which is older; this object changes nothing (and deletes nothing)"
                )
                outcome = Outcome(False, "KeyConflict", message, retryable=False)
                return KeyResult(outcome, managed), where
            identity = self.identities.operator(spec.auth_ref, view)
            where = vault_key(identity.endpoint, spec.mount, name)
            recorded = self._recorded(body)
            if recorded != where:
                # another key than status.managed is about (authRef leads elsewhere): not one
                # vaultsync created, unless it creates it now; recorded before it can
                managed = managed and recorded is None
                fields = {"vaultKey": where, "managed": managed}
                status.patch(self.kube, self.plural, None, body["metadata"]["name"], fields)
                self._located[body["metadata"]["uid"]] = where
            result = with_client(
                self.sessions,
                identity,
                lambda client: converge(
                    client, spec, name, managed, self.claims.claim(body), datetime.now(UTC)
                ),
            )
            return result, where
        except SyncError as exc:
            return KeyResult(Outcome.failed(exc), managed), where

    def sync(self, body: Mapping[str, Any], view: View) -> Result:
        try:
            spec = parse(VaultTransitKeySpec, body.get("spec"))
        except SyncError as exc:
            return Result(Outcome.failed(exc), {"managed": self.claims.managed(body)})
        result, where = self._converge(body, spec, view)
        self.claims.remember(body, result.managed)
        for note in result.notes:
            log.info(
                "VaultTransitKey %s: %s", body["metadata"]["name"], note.message, extra=about(body)
            )
            events.emit(
                self.kube, body, warning=note.warning, reason=note.reason, message=note.message
            )
        fields: dict[str, Any] = {"managed": result.managed}
        if where is not None:
            fields["vaultKey"] = where
        key = result.key
        if key is not None:
            fields.update(
                latestVersion=key.latest_version,
                minDecryptionVersion=key.min_decryption_version,
                minEncryptionVersion=key.min_encryption_version,
                lastRotationTime=_text(key.latest_created),
                nextRotationTime=_text(result.next_rotation),
            )
        return Result(result.outcome, fields)

    def needs_cleanup(self, body: Mapping[str, Any]) -> bool:
        """Only with deletionPolicy Delete: a retained key needs nothing done on deletion."""
        return (body.get("spec") or {}).get("deletionPolicy") == DeletionPolicy.DELETE

    def forget(self, body: Mapping[str, Any]) -> None:
        self.claims.forget(body)
        self._located.pop(body["metadata"]["uid"], None)

    def cleanup(self, body: Mapping[str, Any], view: View) -> str:
        """Delete the key on deletion when the spec says Delete and vaultsync created it;
        raises SyncError (the deletion waits and retries)."""
        spec = body.get("spec") or {}
        name = body["metadata"]["name"]
        mount = str(spec.get("mount") or DEFAULT_MOUNT)
        key_name = str(spec.get("keyName") or name)
        where = f"transit key {mount}/{key_name}"
        managed, recorded = self.claims.managed(body), self._recorded(body)
        self.forget(body)
        if spec.get("deletionPolicy", DeletionPolicy.RETAIN) != DeletionPolicy.DELETE:
            return f"{where} left in Vault: deletionPolicy is Retain"
        if not managed:
            return f"{where} left in Vault: vaultsync did not create it (adopted or conflicting)"
        auth_ref = str(spec.get("authRef") or "default")
        try:
            identity = self.identities.operator(auth_ref, view)
            if recorded not in (None, vault_key(identity.endpoint, mount, key_name)):
                return f"{where} left in Vault: authRef leads to a key vaultsync did not create"
            with_client(
                self.sessions, identity, lambda client: transit.delete_key(client, mount, key_name)
            )
        except SyncError as exc:
            self.claims.remember(body, managed)
            raise SyncError(
                f"{exc} (set spec.deletionPolicy to Retain to delete without deleting the key)",
                reason=exc.reason,
            ) from None
        message = f"{where} deleted with every version: its ciphertexts can no longer be decrypted"
        events.emit(self.kube, body, warning=True, reason="KeyDeleted", message=message)
        return message
