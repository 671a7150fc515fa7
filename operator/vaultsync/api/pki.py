"""VaultPKISecret: a certificate from Vault's PKI secrets engine in a kubernetes.io/tls Secret
(namespaced).

Every rule is written twice with one message: as CEL on the schema (the API server refuses
the object at apply time) and as a pydantic validator (an object an older API server let
through still ends as a clear InvalidSpec). IP addresses are checked exactly in Python only:
CEL's IP functions need Kubernetes 1.31, the chart supports 1.30.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated

from pydantic import AfterValidator, ConfigDict, Field, model_validator

from vaultsync.api.base import ConditionedStatus, Duration, K8sName, Model, parse_duration
from vaultsync.api.names import Check, VaultMount, VaultName, cel, validator
from vaultsync.api.restart import RESTART_DESCRIPTION, RestartSpec, RolloutRestartTargets
from vaultsync.api.secret import SecretDestination

TLS_TYPE = "kubernetes.io/tls"
MAX_NAMES = 100

# One entry of a list that Vault receives comma-separated: no comma, no blank.
LIST_ENTRY = Check(
    "!self.matches('[,\\\\s]')",
    "must not contain ',' or whitespace: Vault takes names in comma-separated lists",
    lambda s: re.search(r"[,\s]", s) is None,
)
IP_RE = r"^[0-9a-fA-F:.]+$"
URI_RE = r"^[a-zA-Z][-a-zA-Z0-9+.]*:\S+$"


def _ip(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError("must be an IPv4 or IPv6 address") from None
    return value


Name = Annotated[
    str,
    Field(min_length=1, max_length=253, json_schema_extra=cel([LIST_ENTRY])),
    validator([LIST_ENTRY]),
]
IpSan = Annotated[str, Field(min_length=2, max_length=45, pattern=IP_RE), AfterValidator(_ip)]
UriSan = Annotated[
    str,
    Field(min_length=3, max_length=2048, pattern=URI_RE, json_schema_extra=cel([LIST_ENTRY])),
    validator([LIST_ENTRY]),
]

MESSAGES = {
    "one_renewal": "set renewBefore or renewalPercent, not both",
    "renew_before_ttl": "renewBefore must be shorter than ttl: the certificate would be "
    "renewed as soon as it is issued",
    "ttl_not_zero": 'ttl must be a duration of at least 1s ("0" is not a lifetime)',
}


class TLSDestination(SecretDestination):
    """The kubernetes.io/tls Secret written, in the VaultPKISecret's namespace: tls.crt (the
    certificate, then its chain), tls.key (the private key) and ca.crt (the issuing CA)."""


class VaultPKISecretSpec(Model):
    """Which certificate to issue from a PKI role, when to re-issue it, and the Secret to write
    it to."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.renewBefore) || !has(self.renewalPercent)",
                    "message": MESSAGES["one_renewal"],
                },
                {
                    "rule": "!has(self.renewBefore) || !has(self.ttl) || "
                    "duration(self.renewBefore) < duration(self.ttl)",
                    "message": MESSAGES["renew_before_ttl"],
                },
                {
                    "rule": "!has(self.ttl) || duration(self.ttl) >= duration('1s')",
                    "message": MESSAGES["ttl_not_zero"],
                },
            ]
        }
    )

    auth_ref: K8sName = Field(
        default="default",
        description="The VaultAuth to log in with: the one of this name in the VaultPKISecret's "
        "namespace, else the one in the operator's namespace if its allowedNamespaces lists "
        "this namespace (AuthNotAllowed otherwise). The tenant's policy needs update on "
        "<mount>/issue/<role> (and on <mount>/revoke with revokeOnDelete).",
    )
    mount: VaultMount = Field(default="pki", description="Mount path of the PKI secrets engine.")
    role: VaultName = Field(
        description="The PKI role to issue with (<mount>/issue/<role>); it decides which names "
        "are allowed, the key type and the longest lifetime.",
    )
    common_name: Name = Field(
        description="The certificate's common name (CN), e.g. web.team-a.svc; the role must "
        "allow it."
    )
    alt_names: list[Name] = Field(
        default_factory=list,
        max_length=MAX_NAMES,
        description="DNS names (or email addresses) of the subject alternative name extension.",
    )
    ip_sans: list[IpSan] = Field(
        default_factory=list,
        max_length=MAX_NAMES,
        description="IP addresses (IPv4 or IPv6) of the subject alternative name extension.",
    )
    uri_sans: list[UriSan] = Field(
        default_factory=list,
        max_length=MAX_NAMES,
        description="URIs of the subject alternative name extension, e.g. "
        "spiffe://cluster.local/ns/team-a/sa/web; the role must allow them (allowed_uri_sans).",
    )
    ttl: Duration | None = Field(
        default=None,
        max_length=32,
        description="The certificate's requested lifetime, e.g. \"72h\"; absent: the role's "
        "ttl. Vault caps it at the role's max_ttl; renewal is timed from the lifetime the "
        "certificate really has.",
    )
    renew_before: Duration | None = Field(
        default=None,
        max_length=32,
        description='Re-issue this long before the certificate expires, e.g. "24h". When the '
        "certificate's lifetime is not longer than this (a role's max_ttl shortened it), the "
        "default applies instead. Not with renewalPercent.",
    )
    renewal_percent: int | None = Field(
        default=None,
        ge=1,
        le=99,
        description="Re-issue when this percentage of the certificate's lifetime (notBefore "
        "to notAfter) has passed. Absent, and without renewBefore: at two thirds of it.",
    )
    destination: TLSDestination = Field(
        description="The kubernetes.io/tls Secret written, in the VaultPKISecret's namespace: "
        "tls.crt (the certificate, then its chain), tls.key and ca.crt. With creationPolicy "
        "Merge these keys are added to an existing Secret, whose type is kept."
    )
    rollout_restart_targets: RolloutRestartTargets = Field(default_factory=list)
    restart: RestartSpec | None = Field(default=None, description=RESTART_DESCRIPTION)
    revoke_on_delete: bool = Field(
        default=False,
        description="When the VaultPKISecret is deleted, revoke its current certificate "
        "(<mount>/revoke, with the tenant's identity) so that it lands in the CRL. "
        "Certificates replaced by a renewal are not revoked: they expire.",
    )

    @model_validator(mode="after")
    def _renewal(self) -> VaultPKISecretSpec:
        if self.renew_before is not None and self.renewal_percent is not None:
            raise ValueError(MESSAGES["one_renewal"])
        if self.ttl is not None and parse_duration(self.ttl) < 1:
            raise ValueError(MESSAGES["ttl_not_zero"])
        if (
            self.renew_before is not None
            and self.ttl is not None
            and parse_duration(self.renew_before) >= parse_duration(self.ttl)
        ):
            raise ValueError(MESSAGES["renew_before_ttl"])
        return self


class VaultPKISecretStatus(ConditionedStatus):
    """The certificate the Secret holds, and when it is re-issued."""

    serial_number: str | None = Field(
        default=None,
        description="Serial number of the certificate the Secret holds, as Vault writes it "
        "(hex pairs separated by ':').",
    )
    not_before: str | None = Field(
        default=None, description="Start of the certificate's validity (RFC 3339)."
    )
    not_after: str | None = Field(
        default=None, description="End of the certificate's validity (RFC 3339)."
    )
    next_renewal: str | None = Field(
        default=None,
        description="When vaultsync re-issues the certificate (RFC 3339): from renewBefore or "
        "renewalPercent over the certificate's lifetime.",
    )
    last_issue_time: str | None = Field(
        default=None, description="When vaultsync last issued a certificate (RFC 3339)."
    )
    secret_name: str | None = Field(
        default=None, description="The Secret last written; a renamed destination releases it."
    )
