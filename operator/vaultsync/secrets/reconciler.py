"""VaultSecret reconciliation: Vault KV v2 -> a Kubernetes Secret.

Never loses data: every failure happens before the single Secret write, and
leaves the Secret as it was; the object reports Ready=False with a reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import hvac

from vaultsync.api.base import DeletionPolicy, parse
from vaultsync.api.secret import CreationPolicy, Destination, VaultSecretSpec
from vaultsync.connections.identity import Identities
from vaultsync.kube import events, hmackey, secrets
from vaultsync.kube.api import Kube
from vaultsync.runtime import metrics
from vaultsync.runtime.conditions import now_rfc3339
from vaultsync.runtime.errors import SyncError
from vaultsync.runtime.outcome import Outcome, Result
from vaultsync.runtime.scheduling import sooner
from vaultsync.runtime.settings import Settings
from vaultsync.runtime.view import View
from vaultsync.secrets.destination import Action, Owner, Plan, plan, released, unmarked
from vaultsync.secrets.render import render
from vaultsync.secrets.restarts import Restarts
from vaultsync.secrets.rotation.protocol import Rotation, create, rotate
from vaultsync.vault import kv
from vaultsync.vault.authenticated import with_client
from vaultsync.vault.errors import SecretNotFound
from vaultsync.vault.sessions import Sessions

ROTATE_ANNOTATION = "vaultsync.io/rotate"
"""Each new value of this annotation rotates the secret once."""
log = logging.getLogger(__name__)


def _seconds_until(rotation: Rotation | None) -> float | None:
    if rotation is None or rotation.next_rotation is None:
        return None
    return max(0.0, (rotation.next_rotation - datetime.now(UTC)).total_seconds())


def parse_spec(raw: Any) -> VaultSecretSpec:
    """The validated spec, or a non-retryable InvalidSpec error naming the first problem."""
    return parse(VaultSecretSpec, raw)


def apply(kube: Kube, namespace: str, step: Plan) -> None:
    if step.action is Action.CREATE:
        secrets.create(kube, namespace, step.body)
    elif step.action is Action.REPLACE:
        secrets.replace(kube, namespace, step.body)


class VaultSecretReconciler:
    """Everything a VaultSecret reconcile needs; one instance per operator."""

    kind = "VaultSecret"
    plural = "vaultsecrets"

    def __init__(self, kube: Kube, sessions: Sessions, settings: Settings) -> None:
        self.kube = kube
        self.sessions = sessions
        self.identities = Identities(kube, settings.namespace)
        self.namespace = settings.namespace  # where the HMAC key Secret lives
        self.restarts = Restarts(kube)

    def _read(
        self, client: hvac.Client, spec: VaultSecretSpec, request: str | None
    ) -> tuple[kv.KVSecret, Rotation | None]:
        """The KV secret to sync, rotated first when its rotation is due."""
        try:
            secret: kv.KVSecret | None = kv.read(client, spec.mount, spec.path, spec.version)
        except SecretNotFound:
            if spec.rotation is None:
                raise
            secret = None  # rotation creates it
        if spec.rotation is None:
            assert secret is not None
            return secret, None
        started = time.monotonic()
        now = datetime.now(UTC)
        try:
            if secret is None:
                rotation = create(client, spec.mount, spec.path, spec.rotation, now)
            else:
                rotation = rotate(
                    client, spec.mount, spec.path, spec.rotation, secret, request, now
                )
        except SyncError as exc:
            metrics.ROTATIONS.labels(exc.reason).inc()
            raise
        if rotation.rotated:
            metrics.ROTATIONS.labels(rotation.result).inc()
            metrics.ROTATION_SECONDS.observe(time.monotonic() - started)
        return rotation.secret, rotation

    def _outcome(self, body: Mapping[str, Any], view: View, fields: dict[str, Any]) -> Outcome:
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        request = (meta.get("annotations") or {}).get(ROTATE_ANNOTATION)
        try:
            spec = parse_spec(body.get("spec"))
            identity = self.identities.tenant(namespace, spec.auth_ref, view)
            secret, rotation = with_client(
                self.sessions, identity, lambda client: self._read(client, spec, request)
            )
            if rotation is not None:
                fields.update(rotation.status)
                if rotation.rotated:
                    self._rotated(body, spec, rotation)
            data = render(spec, secret.data)
            owner = Owner(name, namespace, meta["uid"])
            key = hmackey.shared(self.kube, self.namespace)
            current, step = self._write(namespace, spec.destination, owner, data, key)
            previous = (body.get("status") or {}).get("secretName")
            if previous and previous != spec.destination.name:
                renamed = spec.destination.model_copy(update={"name": previous})
                self._release(body, renamed, owner, owner_stays=True)
        except SyncError as exc:
            return Outcome.failed(exc)
        restarted = self.restarts.after_sync(body, spec, key, current, data)  # never fails
        return Outcome(
            True,
            "Synced",
            f"Secret {spec.destination.name!r} holds version {secret.version} of "
            f"{spec.mount}/{spec.path}",
            version=secret.version,
            written=step.action is not Action.NONE,
            wake_after=sooner(_seconds_until(rotation), restarted.wake_after),
            conditions=(restarted.condition,),
        )

    def _write(
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

    def _rotated(self, body: Mapping[str, Any], spec: VaultSecretSpec, rotation: Rotation) -> None:
        assert spec.rotation is not None
        keys = ", ".join(k.name for k in spec.rotation.keys)
        what = {
            "created": "created (rotation generates values)",
            "rotated": "rotated",
            "lost-race": "did not rotate (someone else wrote first; their version is synced)",
            "finished": "finished an interrupted rotation of",
        }[rotation.result]
        message = (
            f"{what} {keys} of {spec.mount}/{spec.path}: now version {rotation.secret.version}"
            f" ({rotation.why})"
        )
        log.info(
            "VaultSecret %s/%s %s", body["metadata"]["namespace"], body["metadata"]["name"], message
        )
        events.emit(self.kube, body, warning=False, reason="Rotated", message=message)

    def sync(self, body: Mapping[str, Any], view: View) -> Result:
        fields: dict[str, Any] = {}
        outcome = self._outcome(body, view, fields)
        current = body.get("status") or {}
        if outcome.version is not None:
            fields["vaultVersion"] = outcome.version
        if outcome.written or (outcome.ready and not current.get("lastSyncTime")):
            fields["lastSyncTime"] = now_rfc3339()
        if outcome.ready:
            fields["secretName"] = body["spec"]["destination"]["name"]
        return Result(outcome, fields)

    def needs_cleanup(self, body: Mapping[str, Any]) -> bool:
        """Not for a Secret it owns and deletes with it (Owner + Delete, the default): the
        garbage collector removes that one, and nothing else is left to undo."""
        try:
            dest = parse_spec(body.get("spec")).destination
        except SyncError:
            return False  # it never synced anything
        owned = dest.creation_policy is CreationPolicy.OWNER
        return not (owned and dest.deletion_policy is DeletionPolicy.DELETE)

    def forget(self, body: Mapping[str, Any]) -> None:
        self.restarts.forget(body["metadata"]["namespace"], body["metadata"]["name"])

    def cleanup(self, body: Mapping[str, Any], view: View) -> str:
        """Apply the deletion policy to the destination before the VaultSecret goes away."""
        meta = body["metadata"]
        what = f"VaultSecret {meta['namespace']}/{meta['name']} deleted"
        try:
            spec = parse_spec(body.get("spec"))
        except SyncError:
            return f"{what}: its spec was invalid, it never synced anything"
        owner = Owner(meta["name"], meta["namespace"], meta["uid"])
        self.restarts.forget(meta["namespace"], meta["name"])
        return f"{what}: {self._release(body, spec.destination, owner)}"

    def _release(
        self,
        body: Mapping[str, Any],
        dest: Destination,
        owner: Owner,
        *,
        owner_stays: bool = False,
    ) -> str:
        """Apply dest's deletion policy to a Secret this VaultSecret no longer writes."""
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
