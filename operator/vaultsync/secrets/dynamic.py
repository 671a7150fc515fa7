"""VaultDynamicSecret reconciliation: a leased credential (a database engine's creds/<role>,
or a static role's static-creds/<role>) -> a Kubernetes Secret, shaped like a VaultSecret's.

The lease is renewed at renewalPercent of its duration while Vault extends it; when Vault no
longer does (max_ttl), a new credential is issued, the Secret gets it in one write, the
restart targets roll once (their trigger is the HMAC of the data), and the old lease is
revoked after revokeGracePeriod. The Secret's annotation (leased.py) and status say which
lease is held and what is still to revoke, so a restarted operator re-uses the live lease:
no new credential, no revocation, no rollout. A lease Vault no longer knows is replaced.

Never loses data: every failure happens before the single Secret write and leaves the Secret
as it was; a credential issued in a reconcile that then fails is revoked at once. The tenant's
own identity reads, renews and revokes. Credentials go from Vault's answer into the Secret's
data and nowhere else.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from functools import cache, partial
from typing import Any

import hvac

from vaultsync.api.base import DeletionPolicy, parse, parse_duration
from vaultsync.api.dynamic import VaultDynamicSecretSpec
from vaultsync.api.secret import Destination
from vaultsync.kube import events, hmackey, secrets
from vaultsync.kube.api import Kube
from vaultsync.kube.logref import about
from vaultsync.runtime import metrics
from vaultsync.runtime.errors import SyncError
from vaultsync.runtime.outcome import Outcome, Result
from vaultsync.runtime.scheduling import sooner
from vaultsync.runtime.settings import Settings
from vaultsync.runtime.view import View
from vaultsync.secrets import leased, renewal
from vaultsync.secrets.destination import Action, Owner, is_managed_by, plan
from vaultsync.secrets.digest import keyed_digest
from vaultsync.secrets.leased import Decision, Held, Lease, Pending, Record, Step
from vaultsync.secrets.render import declared_keys, render
from vaultsync.secrets.renewal import Lifetime, rfc3339
from vaultsync.secrets.writer import TenantSecretReconciler, needs_release
from vaultsync.vault import leases
from vaultsync.vault.authenticated import with_client
from vaultsync.vault.errors import PermissionDenied
from vaultsync.vault.leases import LeaseGone
from vaultsync.vault.sessions import Identity, Sessions

KIND = "VaultDynamicSecret"
Who = Callable[[], Identity]
"""The tenant's identity, found when first needed."""
Key = tuple[str, str]
"""An object's (namespace, name)."""
REVOKE_RETRY = 10.0
"""Seconds before a failed revocation of a replaced lease is tried again."""
log = logging.getLogger(__name__)


def parse_spec(raw: Any) -> VaultDynamicSecretSpec:
    """The validated spec, or a non-retryable InvalidSpec error naming the first problem."""
    return parse(VaultDynamicSecretSpec, raw)


def destination(
    spec: VaultDynamicSecretSpec, record: Record | None, key: bytes, owner: Owner
) -> Destination:
    """The Secret as destination.py plans it, with the lease record (bound to owner and this
    Secret) among the annotations vaultsync keeps."""
    if record is None:
        return spec.destination
    text = record.text(key, leased.Binding.of(owner, spec.destination.name))
    annotations = {**spec.destination.annotations, leased.LEASE_ANNOTATION: text}
    return spec.destination.model_copy(update={"annotations": annotations})


def _keeps(held: Held | str) -> str:
    """The credential a failure leaves in the Secret, for the message."""
    if not isinstance(held, Held):
        return ""
    lease = held.record.lease_id
    return f"the credential of lease {lease}" if lease else "the static role's password"


class VaultDynamicSecretReconciler(TenantSecretReconciler):
    """Everything a VaultDynamicSecret reconcile needs; one instance per operator."""

    kind = KIND
    plural = "vaultdynamicsecrets"

    def __init__(self, kube: Kube, sessions: Sessions, settings: Settings) -> None:
        super().__init__(kube, sessions, settings)
        self._holders: dict[Key, dict[str, Identity]] = {}
        """(namespace, name) -> lease -> the identity that read or renewed it, the one that
        may revoke it: after a change of authRef, the new identity may not."""

    def _held_by(self, key: Key, lease_id: str, identity: Identity) -> None:
        if lease_id:
            self._holders.setdefault(key, {})[lease_id] = identity

    def _holder(self, key: Key, lease_id: str) -> Who | None:
        """The identity known to hold the lease, or None (read before the operator started)."""
        found = self._holders.get(key, {}).get(lease_id)
        return None if found is None else (lambda: found)

    def _still_held(self, key: Key, lease_ids: set[str]) -> None:
        """Forget the holders of the leases the object no longer knows (revoked, gone)."""
        known = self._holders.get(key, {})
        for lease_id in set(known) - lease_ids:
            del known[lease_id]

    def _current(
        self, owner: Owner, name: str, lease_id: str | None, key: bytes
    ) -> dict[str, Any] | None:
        """The Secret, from the watch's copy when that holds the lease status names; else
        read: a decision to issue never rests on a copy that may be stale."""
        seen = self.kube.secrets.get(owner.namespace, name)
        record = None if seen is None else leased.record_on(seen, owner, key, lease_id)
        if lease_id is not None and record is not None and record.lease_id == lease_id:
            return seen
        return secrets.read(self.kube, owner.namespace, name)

    def sync(self, body: Mapping[str, Any], view: View) -> Result:
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        object_key: Key = (namespace, name)
        status = body.get("status") or {}
        fields: dict[str, Any] = {}
        held: Held | str = "the spec is invalid"
        fresh: leases.Credential | None = None
        try:
            spec = parse_spec(body.get("spec"))
            owner = Owner(name, namespace, meta["uid"], kind=KIND)
            key = hmackey.shared(self.kube, self.namespace)
            request = leased.request_digest(spec)
            listed = status.get("leaseID")
            current = self._current(owner, spec.destination.name, listed, key)
            held = leased.kept(current, owner, key, listed)
            now = datetime.now(UTC)
            lease = leased.lease_of(status, held.record) if isinstance(held, Held) else None
            decision = leased.decide(held, request, lease, spec.renewal_percent, now)
            # asked for only when Vault is: a reconcile with nothing due makes no request
            identity = cache(partial(self.tenant_identity, body, spec.auth_ref, view))
            if decision.step is Step.RENEW:
                assert isinstance(held, Held)
                lease, decision = self._renew(identity, held.record, lease, spec, fields)
                if not decision.gone:  # renewed: this identity holds the lease
                    self._held_by(object_key, held.record.lease_id, identity())
            to_revoke = leased.pending(held, status, None)
            if decision.step is Step.ISSUE:
                # what the write would refuse (a foreign Secret, Merge without one or into
                # keys of someone else's) is found before a credential is issued for nothing
                plan(
                    current,
                    spec.destination,
                    owner,
                    dict.fromkeys(declared_keys(spec), b""),
                    key=key,
                )
                fresh = self._issue(identity, spec)
                self._held_by(object_key, fresh.lease_id, identity())
                if fresh.leased and fresh.ttl < 1:  # it would be replaced again at once
                    raise leases.CredentialRefused(
                        f"read a credential from {spec.mount}/{spec.path}: Vault gave lease "
                        f"{fresh.lease_id} no duration"
                    )
                data = render(spec, fresh.data)
                record = leased.new_record(held, fresh, request, keyed_digest(key, data), now)
                lease = Lease.issued(fresh.ttl, fresh.renewable, now)
                grace = parse_duration(spec.revoke_grace_period)
                to_revoke += leased.replaced(held, status, grace, now, {decision.gone, *to_revoke})
                fields.update(lastIssueTime=rfc3339(now), lastRenewalTime=None)
                what = f"lease {fresh.lease_id}" if fresh.leased else "a static role"
                log.info(
                    "%s %s/%s: read %s: %s",
                    KIND,
                    namespace,
                    name,
                    what,
                    decision.why,
                    extra=about(body),
                )
            else:
                assert isinstance(held, Held)
                record, data = held.record, held.data
            to_revoke = tuple(p for p in to_revoke if p.lease_id != record.lease_id)
            still, failed = self._revoke_due(body, identity, to_revoke, now, fresh is not None)
            self._still_held(object_key, {record.lease_id, *(p.lease_id for p in still)})
            record = leased.with_revoke(record, still)
            dest = destination(spec, record, key, owner)
            previous, step = self.writer.write(namespace, dest, owner, data, key)
            self.writer.release_renamed(body, dest, owner)
        except SyncError as exc:
            if fresh is not None and fresh.lease_id:
                self._revoke_quietly(body, view, fresh.lease_id)
            return Result(Outcome.failed(exc, _keeps(held)), fields)
        if fresh is not None and fresh.leased:
            metrics.CREDENTIALS_ISSUED.inc()
        assert lease is not None
        next_at = self._observe(body, record, lease, spec, still, fields, dest.name)
        restarted = self.restarts.after_sync(body, spec, key, previous, data)  # never fails
        wake = sooner(renewal.wait(next_at, datetime.now(UTC)), restarted.wake_after)
        if still:
            first = min(p.at for p in still)
            wake = sooner(wake, REVOKE_RETRY if failed else renewal.wait(first, datetime.now(UTC)))
        holds = f"lease {record.lease_id}" if record.lease_id else "the static role's password"
        message = f"Secret {dest.name!r} holds the credential of {holds}; next: {rfc3339(next_at)}"
        if fresh is not None:
            message += f" (read now: {decision.why})"
        return Result(
            Outcome(
                True,
                "Leased",
                message,
                written=step.action is not Action.NONE,
                wake_after=wake,
                conditions=(restarted.condition,),
            ),
            {k: v for k, v in fields.items() if v is not None or k in status},
        )

    def _issue(self, identity: Who, spec: VaultDynamicSecretSpec) -> leases.Credential:
        return with_client(
            self.sessions, identity(), lambda c: leases.read(c, spec.mount, spec.path)
        )

    def _renew(
        self,
        identity: Who,
        record: Record,
        lease: Lease | None,
        spec: VaultDynamicSecretSpec,
        fields: dict[str, Any],
    ) -> tuple[Lease, Decision]:
        """Renew the lease for its issue duration; what to do after (a lease Vault no longer
        knows, or that ends now: issue)."""
        now = datetime.now(UTC)

        def renew(client: hvac.Client) -> leases.Renewed:
            return leases.renew(client, record.lease_id, record.ttl)

        try:
            got = with_client(self.sessions, identity(), renew)
        except LeaseGone as exc:
            metrics.LEASE_RENEWALS.labels(exc.reason).inc()
            why = f"Vault no longer knows lease {record.lease_id} ({exc})"
            gone = Decision(Step.ISSUE, why, gone=record.lease_id)
            return lease or Lease(Lifetime(now, now), None), gone
        except SyncError as exc:
            metrics.LEASE_RENEWALS.labels(exc.reason).inc()
            raise
        life = Lifetime(now, now + timedelta(seconds=got.ttl))
        after = leased.renewed(life, record.ttl, got.ttl, got.renewable)
        metrics.LEASE_RENEWALS.labels("capped" if after.credential_end else "renewed").inc()
        fields["lastRenewalTime"] = rfc3339(now)
        held = Held(record, {})
        decision = leased.decide(held, record.request, after, spec.renewal_percent, now)
        return after, decision

    def _revoke_due(
        self,
        body: Mapping[str, Any],
        identity: Who,
        pending: tuple[Pending, ...],
        now: datetime,
        issued: bool,
    ) -> tuple[tuple[Pending, ...], bool]:
        """Revoke the pending leases whose time has come (not in a reconcile that issued: the
        Secret is written first), each with the identity that holds it; (those left, whether
        a revocation failed). One whose holder is not known (read before the operator
        started) is revoked with the object's identity once: refused by Vault's policy (as
        when the authRef changed since), it is dropped with a Warning rather than retried
        until the lease expires."""
        if issued:
            return pending, False
        meta = body["metadata"]
        left: list[Pending] = []
        failed = False
        for item in pending:
            if item.at > now:
                left.append(item)
                continue
            holder = self._holder((meta["namespace"], meta["name"]), item.lease_id)
            try:
                self._revoke(holder or identity, item.lease_id)
            except SyncError as exc:
                if holder is None and isinstance(exc, PermissionDenied):
                    metrics.REVOCATIONS_DROPPED.labels(KIND, exc.reason).inc()
                    message = (
                        f"lease {item.lease_id} of a replaced credential was not revoked and "
                        "expires at its TTL: the identity that read it is not known (the "
                        f"operator started since) and the current one may not revoke it: {exc}"
                    )
                else:
                    failed = True
                    left.append(item)
                    message = (
                        f"lease {item.lease_id} of a replaced credential is not revoked yet: {exc}"
                    )
                log.warning(
                    "%s %s/%s: %s",
                    KIND,
                    meta["namespace"],
                    meta["name"],
                    message,
                    extra=about(body),
                )
                events.emit(self.kube, body, warning=True, reason="RevokeFailed", message=message)
        return tuple(left), failed

    def _revoke(self, identity: Who, lease_id: str) -> None:
        try:
            with_client(self.sessions, identity(), lambda c: leases.revoke(c, lease_id))
        except SyncError as exc:
            metrics.LEASE_REVOCATIONS.labels(exc.reason).inc()
            raise
        metrics.LEASE_REVOCATIONS.labels("revoked").inc()

    def _revoke_quietly(self, body: Mapping[str, Any], view: View, lease_id: str) -> None:
        """A credential issued in a reconcile that failed before the Secret held it: revoked
        at once (if that fails too, its lease expires unrenewed)."""
        try:
            spec = parse_spec(body.get("spec"))
            self._revoke(partial(self.tenant_identity, body, spec.auth_ref, view), lease_id)
        except SyncError as exc:
            log.warning("%s: lease %s of an unused credential: %s", KIND, lease_id, exc)

    def _observe(
        self,
        body: Mapping[str, Any],
        record: Record,
        lease: Lease,
        spec: VaultDynamicSecretSpec,
        still: tuple[Pending, ...],
        fields: dict[str, Any],
        secret: str,
    ) -> datetime:
        """Status fields and the expiry metric of the lease the Secret holds; when it is due."""
        meta = body["metadata"]
        now = datetime.now(UTC)
        due = leased.decide(Held(record, {}), record.request, lease, spec.renewal_percent, now)
        at = due.at or now
        end = lease.credential_end
        if not record.lease_id:
            end = lease.life.end
        fields.update(
            leaseID=record.lease_id,
            leaseDuration=record.ttl,
            leaseExpiry=rfc3339(lease.life.end),
            credentialExpiry=None if end is None else rfc3339(end),
            nextRenewal=rfc3339(at),
            pendingRevocations=[p.status() for p in still],
            secretName=secret,
        )
        metrics.LEASE_EXPIRY.labels(meta["namespace"], meta["name"]).set(lease.life.end.timestamp())
        return at

    def needs_cleanup(self, body: Mapping[str, Any]) -> bool:
        """Always: a lease to revoke (deletionPolicy Delete), or a Secret to release."""
        try:
            spec = parse_spec(body.get("spec"))
        except SyncError:
            return False  # it never issued anything
        revokes = spec.destination.deletion_policy is DeletionPolicy.DELETE
        return revokes or needs_release(spec.destination)

    def forget(self, body: Mapping[str, Any]) -> None:
        super().forget(body)
        meta = body["metadata"]
        self._holders.pop((meta["namespace"], meta["name"]), None)
        with contextlib.suppress(KeyError):  # never set: it never held a lease
            metrics.LEASE_EXPIRY.remove(meta["namespace"], meta["name"])

    def cleanup(self, body: Mapping[str, Any], view: View) -> str:
        """Revoke the lease and those pending (deletionPolicy Delete), then apply the deletion
        policy to the Secret, before the VaultDynamicSecret goes away."""
        meta = body["metadata"]
        try:
            spec = parse_spec(body.get("spec"))
        except SyncError:
            self.forget(body)
            return f"{KIND} {meta['namespace']}/{meta['name']} deleted: its spec was invalid"
        done = []
        owner = Owner(meta["name"], meta["namespace"], meta["uid"], kind=KIND)
        if spec.destination.deletion_policy is DeletionPolicy.DELETE:
            done.append(self._revoke_all(body, view, spec, owner))
        done.append(self.writer.release(body, spec.destination, owner))
        self.forget(body)  # after the revocations: they may need the remembered identity
        return f"{KIND} {meta['namespace']}/{meta['name']} deleted: {'; '.join(done)}"

    def _revoke_all(
        self, body: Mapping[str, Any], view: View, spec: VaultDynamicSecretSpec, owner: Owner
    ) -> str:
        """Revoke the leases this object holds: status's, and those of the record on its
        Secret only if the Secret and the record are its own (another object's Secret, in
        the way of this one, or a record copied from another Secret, holds a lease that is
        not this object's to revoke)."""
        meta = body["metadata"]
        status = body.get("status") or {}
        current = secrets.read(self.kube, meta["namespace"], spec.destination.name)
        if current is not None and not is_managed_by(current, owner):
            current = None
        key = hmackey.shared(self.kube, self.namespace)
        listed = status.get("leaseID")
        record = None if current is None else leased.record_on(current, owner, key, listed)
        held: Held | str = Held(record, {}) if record is not None else "no record"
        ids = [p.lease_id for p in leased.pending(held, status, None)]
        ids += [record.lease_id] if record is not None else []
        ids.append(str(status.get("leaseID") or ""))
        ids = [i for i in dict.fromkeys(ids) if i]
        if not ids:
            return "no lease to revoke"
        identity = cache(partial(self.tenant_identity, body, spec.auth_ref, view))
        revoked, failed = [], []
        for lease_id in ids:
            holder = self._holder((meta["namespace"], meta["name"]), lease_id)
            revoke = partial(self._revoke, holder or identity, lease_id)
            message = self.revoke_patiently(body, view, revoke, f"lease {lease_id}")
            if message is None:
                revoked.append(lease_id)
            else:
                failed.append(message)
        listed = f"lease{'s' if len(revoked) > 1 else ''} {', '.join(revoked)}"
        done = [f"revoked {listed}"] if revoked else []
        return "; ".join(done + failed)
