"""VaultPKISecret reconciliation: a certificate from Vault's PKI engine -> a kubernetes.io/tls
Secret, issued again before it expires.

The Secret is the record: the certificate it holds (read back with `cryptography`) says when
the next renewal is due, and an annotation on it says which request it was issued for. So a
restarted operator or a lost status neither re-issues early nor late, and a reconcile that
finds nothing due makes no Vault call and writes nothing. A certificate is issued when the
Secret holds none (missing, unreadable, edited by hand), when the request changed (the spec),
or when its renewal time has come; the tenant's own identity asks <mount>/issue/<role>.

Never loses data: every failure happens before the single Secret write, and leaves the Secret
as it was (the certificate it holds stays valid until its notAfter); the object reports
Ready=False with a reason and is retried with backoff. The private key goes from Vault's
answer into the Secret's data and nowhere else.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from vaultsync.api.base import parse, parse_duration
from vaultsync.api.pki import TLS_TYPE, TLSDestination, VaultPKISecretSpec
from vaultsync.api.secret import CreationPolicy, Destination
from vaultsync.kube import hmackey, secrets
from vaultsync.kube.logref import about
from vaultsync.runtime import metrics
from vaultsync.runtime.conditions import now_rfc3339
from vaultsync.runtime.errors import SyncError
from vaultsync.runtime.outcome import Outcome, Result
from vaultsync.runtime.scheduling import sooner
from vaultsync.runtime.view import View
from vaultsync.secrets import renewal
from vaultsync.secrets.certificates import (
    CERT_KEY,
    REQUEST_ANNOTATION,
    TLS_KEYS,
    Certificate,
    CertificateUnreadable,
    held,
    request_digest,
    rfc3339,
    tls_data,
)
from vaultsync.secrets.certificates import parse as parse_certificate
from vaultsync.secrets.destination import Action, Owner, drifted, is_managed_by, plan
from vaultsync.secrets.writer import TenantSecretReconciler, needs_release
from vaultsync.vault import pki
from vaultsync.vault.authenticated import with_client
from vaultsync.vault.errors import VaultError

KIND = "VaultPKISecret"
log = logging.getLogger(__name__)


def parse_spec(raw: Any) -> VaultPKISecretSpec:
    """The validated spec, or a non-retryable InvalidSpec error naming the first problem."""
    return parse(VaultPKISecretSpec, raw)


def certificate_request(spec: VaultPKISecretSpec) -> pki.CertificateRequest:
    ttl = None if spec.ttl is None else max(1, int(parse_duration(spec.ttl)))
    return pki.CertificateRequest(
        common_name=spec.common_name,
        alt_names=tuple(spec.alt_names),
        ip_sans=tuple(spec.ip_sans),
        uri_sans=tuple(spec.uri_sans),
        ttl=ttl,
    )


def destination(dest: TLSDestination, digest: str | None) -> Destination:
    """The Secret as destination.py plans it: of type kubernetes.io/tls (Merge: the existing
    Secret's type), with the request digest among the annotations vaultsync keeps."""
    annotations = dict(dest.annotations)
    if digest is not None:
        annotations[REQUEST_ANNOTATION] = digest
    fields = dest.model_dump() | {"annotations": annotations}
    if dest.creation_policy is not CreationPolicy.MERGE:
        fields["type"] = TLS_TYPE
    # validated as dest already; the digest is under vaultsync.io/, which users may not declare
    return Destination.model_construct(**fields)


def renewal_of(certificate: Certificate, spec: VaultPKISecretSpec) -> renewal.Renewal:
    before = None if spec.renew_before is None else parse_duration(spec.renew_before)
    return renewal.renewal(certificate.lifetime, before=before, percent=spec.renewal_percent)


@dataclass(frozen=True)
class Kept:
    """The certificate a Secret of ours holds, with its TLS data and the request digest."""

    certificate: Certificate
    data: dict[str, bytes]
    digest: str | None


def kept(current: Mapping[str, Any] | None, owner: Owner, key: bytes) -> Kept | str:
    """What the Secret holds that can be kept, or why nothing can."""
    if current is None:
        return "the Secret does not exist"
    if not is_managed_by(current, owner):
        return "the Secret holds no certificate of this VaultPKISecret"
    if drifted(current, key=key):
        return "the Secret was changed by someone else"
    found = held(current)
    if found is None:
        return "the Secret holds no readable certificate"
    annotations = (current.get("metadata") or {}).get("annotations") or {}
    return Kept(found[0], found[1], annotations.get(REQUEST_ANNOTATION))


def why_issue(
    holding: Kept | str, digest: str, spec: VaultPKISecretSpec, now: datetime
) -> str | None:
    """Why a certificate must be issued now, or None when the one held is to be kept."""
    if isinstance(holding, str):
        return holding
    if holding.digest != digest:
        return "the certificate request changed"
    due = renewal_of(holding.certificate, spec).at
    if now >= due:
        return f"its renewal time {rfc3339(due)} has come"
    return None


def until_renewal(status: Mapping[str, Any], now: datetime | None = None) -> float | None:
    """Seconds until status.nextRenewal, or None when there is none in the future."""
    moment = renewal.parse_time(status.get("nextRenewal"))
    if moment is None:
        return None
    left = (moment - (now or datetime.now(UTC))).total_seconds()
    return left if left > 0 else None


def _keeps(holding: Kept | str) -> str:
    """The certificate a failure leaves in the Secret, for the message."""
    if not isinstance(holding, Kept):
        return ""
    cert = holding.certificate
    return f"certificate {cert.serial_number}, valid until {rfc3339(cert.not_after)}"


class VaultPKISecretReconciler(TenantSecretReconciler):
    """Everything a VaultPKISecret reconcile needs; one instance per operator."""

    kind = KIND
    plural = "vaultpkisecrets"

    def _current(self, namespace: str, name: str, serial: str | None) -> dict[str, Any] | None:
        """The Secret, from the watch's copy when that holds the certificate status names;
        else read: a decision to issue never rests on a copy that may be stale."""
        seen = self.kube.secrets.get(namespace, name)
        found = held(seen)
        if serial and found is not None and found[0].serial_number == serial:
            return seen
        return secrets.read(self.kube, namespace, name)

    def _issue(
        self, body: Mapping[str, Any], view: View, spec: VaultPKISecretSpec
    ) -> tuple[Certificate, dict[str, bytes]]:
        identity = self.tenant_identity(body, spec.auth_ref, view)
        wanted = certificate_request(spec)
        issued = with_client(
            self.sessions, identity, lambda c: pki.issue(c, spec.mount, spec.role, wanted)
        )
        data = tls_data(issued)
        try:
            return parse_certificate(data[CERT_KEY]), data
        except CertificateUnreadable:
            raise VaultError(
                f"issue a certificate from {spec.mount}/issue/{spec.role}: Vault returned "
                "no readable certificate"
            ) from None

    def sync(self, body: Mapping[str, Any], view: View) -> Result:
        fields: dict[str, Any] = {}
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        status = body.get("status") or {}
        holding: Kept | str = "the spec is invalid"
        try:
            spec = parse_spec(body.get("spec"))
            owner = Owner(name, namespace, meta["uid"], kind=KIND)
            digest = request_digest(spec.auth_ref, spec.mount, spec.role, certificate_request(spec))
            dest = destination(spec.destination, digest)
            key = hmackey.shared(self.kube, self.namespace)
            current = self._current(namespace, dest.name, status.get("serialNumber"))
            holding = kept(current, owner, key)
            if isinstance(holding, Kept):
                self._observe(body, holding.certificate, spec, fields)
            now = datetime.now(UTC)
            why = why_issue(holding, digest, spec, now)
            if why is None and isinstance(holding, Kept):
                certificate, data = holding.certificate, holding.data
            else:
                # what the write would refuse (a foreign Secret, Merge without one) is found
                # before a certificate is issued for nothing
                plan(current, dest, owner, dict.fromkeys(TLS_KEYS, b""), key=key)
                certificate, data = self._issue(body, view, spec)
                log.info(
                    "%s %s/%s: issued certificate %s: %s",
                    KIND,
                    namespace,
                    name,
                    certificate.serial_number,
                    why,
                    extra=about(body),
                )
                fields["lastIssueTime"] = now_rfc3339()
            previous, step = self.writer.write(namespace, dest, owner, data, key)
            self.writer.release_renamed(body, dest, owner)
        except SyncError as exc:
            return Result(Outcome.failed(exc, _keeps(holding)), fields)
        when = self._observe(body, certificate, spec, fields)
        fields["secretName"] = dest.name
        restarted = self.restarts.after_sync(body, spec, key, previous, data)  # never fails
        message = (
            f"Secret {dest.name!r} holds certificate {certificate.serial_number}, valid until "
            f"{rfc3339(certificate.not_after)}; renewed at {rfc3339(when.at)}"
        )
        return Result(
            Outcome(
                True,
                "Issued",
                f"{message} ({when.note})" if when.note else message,
                written=why is not None or step.action is not Action.NONE,
                wake_after=sooner(renewal.wait(when.at, datetime.now(UTC)), restarted.wake_after),
                conditions=(restarted.condition,),
            ),
            fields,
        )

    def _observe(
        self,
        body: Mapping[str, Any],
        certificate: Certificate,
        spec: VaultPKISecretSpec,
        fields: dict[str, Any],
    ) -> renewal.Renewal:
        """Status fields and the expiry metric of the certificate the Secret holds."""
        meta = body["metadata"]
        when = renewal_of(certificate, spec)
        fields.update(
            serialNumber=certificate.serial_number,
            notBefore=rfc3339(certificate.not_before),
            notAfter=rfc3339(certificate.not_after),
            nextRenewal=rfc3339(when.at),
        )
        metrics.CERTIFICATE_EXPIRY.labels(meta["namespace"], meta["name"]).set(
            certificate.not_after.timestamp()
        )
        return when

    def needs_cleanup(self, body: Mapping[str, Any]) -> bool:
        """With revokeOnDelete, or a Secret that is not simply garbage collected."""
        try:
            spec = parse_spec(body.get("spec"))
        except SyncError:
            return False  # it never issued anything
        return spec.revoke_on_delete or needs_release(spec.destination)

    def forget(self, body: Mapping[str, Any]) -> None:
        super().forget(body)
        meta = body["metadata"]
        with contextlib.suppress(KeyError):  # never set: it never held a certificate
            metrics.CERTIFICATE_EXPIRY.remove(meta["namespace"], meta["name"])

    def cleanup(self, body: Mapping[str, Any], view: View) -> str:
        """Revoke the certificate (revokeOnDelete), then apply the deletion policy to the
        Secret, before the VaultPKISecret goes away."""
        meta = body["metadata"]
        try:
            spec = parse_spec(body.get("spec"))
        except SyncError:
            done = ["its spec was invalid, it never issued anything"]
        else:
            owner = Owner(meta["name"], meta["namespace"], meta["uid"], kind=KIND)
            done = [self._revoke(body, view, spec, owner)] if spec.revoke_on_delete else []
            done.append(self.writer.release(body, destination(spec.destination, None), owner))
        self.forget(body)  # after the revocation: it may need the remembered identity
        return f"{KIND} {meta['namespace']}/{meta['name']} deleted: {'; '.join(done)}"

    def _revoke(
        self, body: Mapping[str, Any], view: View, spec: VaultPKISecretSpec, owner: Owner
    ) -> str:
        """Revoke the certificate this object holds: status's, else its own Secret's (never
        that of a Secret it does not manage: another object's certificate, in its way)."""
        meta = body["metadata"]
        serial = (body.get("status") or {}).get("serialNumber")
        if not serial:
            current = secrets.read(self.kube, meta["namespace"], spec.destination.name)
            found = held(current) if current and is_managed_by(current, owner) else None
            serial = found[0].serial_number if found is not None else None
        if not serial:
            return "no certificate to revoke"

        def revoke() -> None:
            identity = self.tenant_identity(body, spec.auth_ref, view)
            with_client(self.sessions, identity, lambda c: pki.revoke(c, spec.mount, serial))

        failed = self.revoke_patiently(body, view, revoke, f"certificate {serial}")
        return failed or f"revoked certificate {serial}"
