"""VaultSecret reconciliation: Vault KV v2 -> a Kubernetes Secret.

Never loses data: every failure happens before the single Secret write, and
leaves the Secret as it was; the object reports Ready=False with a reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import hvac

from vaultsync.api.base import parse
from vaultsync.api.secret import VaultSecretSpec
from vaultsync.api.transit import context_for
from vaultsync.kube import events, hmackey
from vaultsync.kube.logref import about
from vaultsync.runtime import metrics
from vaultsync.runtime.conditions import ConditionUpdate, get_condition, now_rfc3339
from vaultsync.runtime.errors import SyncError
from vaultsync.runtime.outcome import Outcome, Result
from vaultsync.runtime.scheduling import sooner
from vaultsync.runtime.view import View
from vaultsync.secrets.destination import Action, Owner
from vaultsync.secrets.render import render
from vaultsync.secrets.rotation.intent import request_hash
from vaultsync.secrets.rotation.protocol import Rotation, create, rotate
from vaultsync.secrets.writer import TenantSecretReconciler, needs_release
from vaultsync.vault import kv, transit
from vaultsync.vault.authenticated import with_client
from vaultsync.vault.errors import SecretNotFound

ROTATE_ANNOTATION = "vaultsync.io/rotate"
"""Each new value of this annotation rotates the secret once."""
ROTATION_REQUEST = "RotationRequest"
"""The condition that says a `vaultsync.io/rotate` request cannot be honoured."""
SHOWN_REQUEST_CHARS = 64
log = logging.getLogger(__name__)


def _shown(request: str) -> str:
    """The annotation value as a message quotes it: a long one cut short, with its hash so
    that two long values still read differently."""
    if len(request) <= SHOWN_REQUEST_CHARS:
        return repr(request)
    return f"{request[:SHOWN_REQUEST_CHARS]!r}... (sha256 {request_hash(request)})"


def request_condition(spec: VaultSecretSpec, request: str | None) -> ConditionUpdate:
    """The RotationRequest condition for the `vaultsync.io/rotate` value request: False with
    reason RotationNotConfigured while a VaultSecret without spec.rotation carries one (the
    request is ignored; the sync goes on), absent otherwise. The message quotes the value, so
    each new value is a new message."""
    if not request or spec.rotation is not None:
        return ConditionUpdate(ROTATION_REQUEST, None)
    return ConditionUpdate(
        ROTATION_REQUEST,
        False,
        "RotationNotConfigured",
        f"{ROTATE_ANNOTATION}={_shown(request)} is ignored: this VaultSecret has no "
        "spec.rotation, so no key of it is rotated",
    )


def _seconds_until(rotation: Rotation | None) -> float | None:
    if rotation is None or rotation.next_rotation is None:
        return None
    return max(0.0, (rotation.next_rotation - datetime.now(UTC)).total_seconds())


@dataclass(frozen=True)
class Sources:
    """What one sync read: the KV secret (with path), its rotation, the decrypted values."""

    secret: kv.KVSecret | None
    rotation: Rotation | None
    decrypted: dict[str, bytes]


def _described(spec: VaultSecretSpec, secret: kv.KVSecret | None) -> str:
    parts = [] if secret is None else [f"version {secret.version} of {spec.mount}/{spec.path}"]
    if spec.encrypted is not None:
        enc = spec.encrypted
        parts.append(f"{len(enc.data)} value(s) decrypted with transit key {enc.mount}/{enc.key}")
    return " and ".join(parts)


def parse_spec(raw: Any) -> VaultSecretSpec:
    """The validated spec, or a non-retryable InvalidSpec error naming the first problem."""
    return parse(VaultSecretSpec, raw)


class VaultSecretReconciler(TenantSecretReconciler):
    """Everything a VaultSecret reconcile needs; one instance per operator."""

    kind = "VaultSecret"
    plural = "vaultsecrets"

    def _read(
        self, client: hvac.Client, spec: VaultSecretSpec, request: str | None, namespace: str
    ) -> Sources:
        """What the Secret is made of: the decrypted values, with the namespace as transit
        context, and the KV secret (rotated first when its rotation is due). Decrypted first:
        a value that fails stops the sync before a rotation writes to Vault."""
        decrypted: dict[str, bytes] = {}
        if spec.encrypted is not None:
            enc = spec.encrypted
            decrypted = transit.decrypt(
                client, enc.mount, enc.key, enc.data, context_for(namespace)
            )
        found, rotation = (None, None) if spec.path is None else self._kv(client, spec, request)
        return Sources(found, rotation, decrypted)

    def _kv(
        self, client: hvac.Client, spec: VaultSecretSpec, request: str | None
    ) -> tuple[kv.KVSecret, Rotation | None]:
        """The KV secret to sync, rotated first when its rotation is due."""
        assert spec.path is not None
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
                rotation = create(client, spec.mount, spec.path, spec.rotation, request, now)
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
        except SyncError as exc:
            return Outcome.failed(exc)
        requested = self._requested(body, spec, request)
        try:
            identity = self.identities.tenant(namespace, spec.auth_ref, view)
            sources = with_client(
                self.sessions, identity, lambda client: self._read(client, spec, request, namespace)
            )
            secret, rotation = sources.secret, sources.rotation
            if rotation is not None:
                fields.update(rotation.status)
                if rotation.rotated:
                    self._rotated(body, spec, rotation)
            data = render(spec, secret.data if secret else {}, sources.decrypted)
            owner = Owner(name, namespace, meta["uid"])
            key = hmackey.shared(self.kube, self.namespace)
            current, step = self.writer.write(namespace, spec.destination, owner, data, key)
            self.writer.release_renamed(body, spec.destination, owner)
        except SyncError as exc:
            return replace(Outcome.failed(exc), conditions=(requested,))
        restarted = self.restarts.after_sync(body, spec, key, current, data)  # never fails
        return Outcome(
            True,
            "Synced",
            f"Secret {spec.destination.name!r} holds {_described(spec, secret)}",
            version=secret.version if secret else None,
            written=step.action is not Action.NONE,
            wake_after=sooner(_seconds_until(rotation), restarted.wake_after),
            conditions=(restarted.condition, requested),
        )

    def _requested(
        self, body: Mapping[str, Any], spec: VaultSecretSpec, request: str | None
    ) -> ConditionUpdate:
        """request_condition, with a Warning Event when it newly says a request is ignored:
        once per annotation value, as status keeps the message it was said with."""
        update = request_condition(spec, request)
        if update.status is None:
            return update
        conditions = (body.get("status") or {}).get("conditions") or []
        before = get_condition(conditions, ROTATION_REQUEST)
        if before is None or (before.get("reason"), before.get("message")) != (
            update.reason,
            update.message,
        ):
            meta = body["metadata"]
            log.warning(
                "VaultSecret %s/%s: %s",
                meta["namespace"],
                meta["name"],
                update.message,
                extra=about(body),
            )
            events.emit(self.kube, body, warning=True, reason=update.reason, message=update.message)
        return update

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
        meta = body["metadata"]
        log.info(
            "VaultSecret %s/%s %s", meta["namespace"], meta["name"], message, extra=about(body)
        )
        events.emit(self.kube, body, warning=False, reason="Rotated", message=message)

    def sync(self, body: Mapping[str, Any], view: View) -> Result:
        fields: dict[str, Any] = {}
        outcome = self._outcome(body, view, fields)
        current = body.get("status") or {}
        if outcome.version is not None:
            fields["vaultVersion"] = outcome.version
        elif outcome.ready and current.get("vaultVersion") is not None:
            fields["vaultVersion"] = None  # no KV path any more: a merge patch removes it
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
        return needs_release(dest)

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
        return f"{what}: {self.writer.release(body, spec.destination, owner)}"
