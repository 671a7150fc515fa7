"""What a VaultPolicy wants in Vault, and which of it vaultsync owns. Pure functions.

A VaultPolicy yields one `Wanted` (a policy and maybe a role) per matching namespace,
or a single one without a namespaceSelector. What it wrote is recorded in its status
as `ManagedPolicy` entries; every Vault object in them is identified by a `Key`, and
carries an `adopted` flag when it existed before vaultsync first wrote it. A role's entry
also names the optional fields vaultsync wrote (`roleFields`): a field the spec omits is
never written, unless vaultsync wrote it before, in which case it is set back to Vault's
default once (`resets`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from vaultsync.api.base import parse_duration
from vaultsync.api.policy import PLACEHOLDER, ManagedPolicy, VaultPolicySpec
from vaultsync.policies.selectors import matches
from vaultsync.vault.policies import render_hcl
from vaultsync.vault.roles import KubernetesRole

Key = tuple[str, ...]
"""("policy", name) or ("role", mount, name)."""


def policy_key(name: str) -> Key:
    return ("policy", name)


def role_key(mount: str, name: str) -> Key:
    return ("role", mount, name)


@dataclass(frozen=True)
class Wanted:
    namespace: str | None
    policy: str
    text: str
    role: KubernetesRole | None

    @property
    def keys(self) -> list[Key]:
        keys = [policy_key(self.policy)]
        if self.role is not None:
            keys.append(role_key(self.role.mount, self.role.name))
        return keys

    def record(self, adopted: Mapping[Key, bool], role_fields: Iterable[str] = ()) -> ManagedPolicy:
        """Its status entry; role_fields: the role's optional fields recorded as written."""
        role = self.role
        return ManagedPolicy(
            namespace=self.namespace,
            policy=self.policy,
            adopted=adopted.get(policy_key(self.policy), False),
            role=role.name if role else None,
            role_mount=role.mount if role else None,
            role_adopted=adopted.get(role_key(role.mount, role.name), False) if role else False,
            role_fields=sorted(role_fields) if role else [],
        )


def _seconds(duration: str | None) -> int | None:
    """Seconds of a declared duration ("0" too); None when the spec omits it."""
    return None if duration is None else int(parse_duration(duration))


def wanted_for(spec: VaultPolicySpec, namespace: str | None) -> Wanted:
    """The policy (and role) for one namespace, `{namespace}` replaced (None: no fan-out)."""

    def fill(text: str) -> str:
        return text.replace(PLACEHOLDER, namespace) if namespace else text

    if spec.hcl is not None:
        text = fill(spec.hcl)
    else:
        text = render_hcl(
            (fill(rule.path), [c.value for c in rule.capabilities]) for rule in spec.rules or []
        )
    policy = fill(spec.policy_name)
    role = None
    if spec.kubernetes_role is not None:
        r = spec.kubernetes_role
        namespaces = [fill(n) for n in r.namespaces] if r.namespaces else [namespace or ""]
        role = KubernetesRole.of(
            r.mount,
            fill(r.name),
            service_accounts=r.service_accounts,
            namespaces=namespaces,
            policies=[policy],
            ttl=_seconds(r.token_ttl),
            max_ttl=_seconds(r.token_max_ttl),
            audience=r.audience,
        )
    return Wanted(namespace, policy, text, role)


def desired(spec: VaultPolicySpec, namespaces: Mapping[str, Mapping[str, str]]) -> list[Wanted]:
    """Everything the spec wants, given the cluster's namespaces and their labels."""
    selector = spec.namespace_selector
    if selector is None:
        return [wanted_for(spec, None)]
    return [
        wanted_for(spec, name) for name in sorted(namespaces) if matches(selector, namespaces[name])
    ]


def record_keys(record: ManagedPolicy) -> dict[Key, bool]:
    """The Vault objects a status entry names, with their adopted flags."""
    keys = {policy_key(record.policy): record.adopted}
    if record.role is not None and record.role_mount is not None:
        keys[role_key(record.role_mount, record.role)] = record.role_adopted
    return keys


def owned(records: Iterable[ManagedPolicy]) -> dict[Key, bool]:
    found: dict[Key, bool] = {}
    for record in records:
        for key, adopted in record_keys(record).items():
            found.setdefault(key, adopted)
    return found


def written_fields(records: Iterable[ManagedPolicy]) -> dict[Key, frozenset[str]]:
    """The optional role fields each recorded role names as written by vaultsync."""
    return {
        role_key(r.role_mount, r.role): frozenset(r.role_fields)
        for r in records
        if r.role is not None and r.role_mount is not None and r.role_fields
    }


def resets(wanted: Wanted, written: Mapping[Key, frozenset[str]]) -> frozenset[str]:
    """Optional fields of wanted's role that vaultsync wrote and the spec no longer declares:
    to set back to Vault's default. Fields it never wrote are not among them."""
    role = wanted.role
    if role is None:
        return frozenset()
    return written.get(role_key(role.mount, role.name), frozenset()) - set(role.options)


def stale(records: Iterable[ManagedPolicy], wanted: Iterable[Wanted]) -> list[ManagedPolicy]:
    """Status entries naming at least one Vault object that is no longer wanted."""
    keep = {key for w in wanted for key in w.keys}
    return [r for r in records if not set(record_keys(r)) <= keep]


def removable(record: ManagedPolicy, wanted: Iterable[Wanted]) -> list[Key]:
    """Objects of a stale entry to delete: unwanted and not adopted, roles before policies."""
    keep = {key for w in wanted for key in w.keys}
    keys = [k for k, adopted in record_keys(record).items() if k not in keep and not adopted]
    return sorted(keys, key=lambda k: k[0] != "role")
