"""Who created a policy and its role, recorded in Vault: the first line of the policy. Pure.

status.policies is dropped by GitOps tools and most backups, and an object re-created from
its manifest starts without it: from status alone, everything vaultsync had created would
then look pre-existing (adopted) and never be cleaned up. So every policy vaultsync writes
starts with a comment line of its own that says which VaultPolicy wrote it and whether
vaultsync created the policy and the role that grants it, or found them (adopted):

    # managed-by: vaultsync VaultPolicy/tenants; policy created; role kubernetes/tenant-a created

The owner is the VaultPolicy's kind and name, not its uid, so that the same manifest applied
again is recognised as the same owner. The line is only ever read back from the first line
of the text, and vaultsync always writes its own first line before the spec's text, so no
spec (`hcl` included; a namespace name or a rendered rule cannot hold a newline) can forge
one; writing a policy directly needs `sys/policies/acl` write, which is root-equivalent.
Kubernetes-auth roles have no field for such a note, so the role's half of the record lives in
the same line: the policy is always written before its role.

Status stays the first record (written before anything in Vault): the line is consulted only
for objects status does not name, which is what a re-created object (or one written by an
older vaultsync) has.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from vaultsync.api.policy import ManagedPolicy
from vaultsync.policies.fanout import Key, Wanted, policy_key, role_key

KIND = "VaultPolicy"
PREFIX = "# managed-by: vaultsync "
_LINE = re.compile(
    "# managed-by: vaultsync (?P<owner>VaultPolicy/[a-z0-9][-a-z0-9.]*)"
    "; policy (?P<policy>created|adopted)"
    "(?:; role (?P<mount>\\S+)/(?P<role>[-_.a-zA-Z0-9]+) (?P<role_state>created|adopted))?"
)


def owner_id(name: str) -> str:
    """The owner a VaultPolicy named `name` writes into its policies."""
    return f"{KIND}/{name}"


@dataclass(frozen=True)
class Marker:
    """What a policy's first line says."""

    owner: str
    policy_created: bool
    role: Key | None = None
    role_created: bool = False


def _state(created: bool) -> str:
    return "created" if created else "adopted"


def marker_line(owner: str, wanted: Wanted, adopted: Mapping[Key, bool]) -> str:
    """The first line vaultsync writes into wanted's policy (no newline)."""
    line = f"{PREFIX}{owner}; policy {_state(not adopted.get(policy_key(wanted.policy), False))}"
    role = wanted.role
    if role is not None:
        created = not adopted.get(role_key(role.mount, role.name), False)
        line += f"; role {role.mount}/{role.name} {_state(created)}"
    return line


def stamped(owner: str, wanted: Wanted, adopted: Mapping[Key, bool]) -> str:
    """The policy text vaultsync writes (and compares with Vault's): its line, then the spec's."""
    return f"{marker_line(owner, wanted, adopted)}\n{wanted.text}"


def read_marker(text: str | None) -> Marker | None:
    """The marker in a policy's first line; None if the text has none (or no text)."""
    if not text:
        return None
    found = _LINE.fullmatch(text.split("\n", 1)[0])
    if found is None:
        return None
    role = None
    if found["role"] is not None:
        role = role_key(found["mount"], found["role"])
    return Marker(
        owner=found["owner"],
        policy_created=found["policy"] == "created",
        role=role,
        role_created=found["role_state"] == "created",
    )


def vouched(text: str | None, owner: str, wanted: Wanted) -> dict[Key, bool]:
    """Adopted flags that the policy's current text (None: no such policy) settles for wanted.

    No policy: vaultsync will create it (not adopted). A policy whose first line names this
    owner: what the line says, for the policy and for the role if it names wanted's role.
    Any other policy existed before this owner wanted it: adopted. A role the line does not
    settle is left out (the caller asks Vault whether it exists).
    """
    key = policy_key(wanted.policy)
    if text is None:
        return {key: False}
    marker = read_marker(text)
    if marker is None or marker.owner != owner:
        return {key: True}
    flags = {key: not marker.policy_created}
    role = wanted.role
    if role is not None and marker.role == role_key(role.mount, role.name):
        flags[marker.role] = not marker.role_created
    return flags


def recorded(text: str | None, owner: str, wanted: Wanted) -> ManagedPolicy | None:
    """The status entry a policy's first line stands for, if it names this owner (else None).

    A role the line does not name is taken as adopted: without a record it is never deleted.
    """
    marker = read_marker(text)
    if marker is None or marker.owner != owner:
        return None
    flags = vouched(text, owner, wanted)
    if wanted.role is not None:
        flags.setdefault(role_key(wanted.role.mount, wanted.role.name), True)
    return wanted.record(flags)
