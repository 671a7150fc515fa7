"""VaultPolicy reconciliation: ACL policies and Kubernetes-auth roles kept as declared.

Every resync compares what Vault has with what the spec wants and rewrites what
differs (drift repair); objects for namespaces that no longer match are deleted.

Ownership is recorded twice. In status.policies, an entry is recorded *before* its
objects are first written, so a crash in between cannot make vaultsync forget what it
created. An object that already existed when vaultsync first wanted it is recorded as
adopted: vaultsync keeps it in step from then on but never deletes it, neither when
its namespace stops matching nor when the VaultPolicy is deleted, because something
else depended on it before vaultsync came along. And in Vault, in the first line of
every policy it writes (ownership.py): status does not survive a restore from the
manifest, that line does. Objects status does not name are looked up there first, so a
re-created VaultPolicy takes what it created as its own again, not as adopted. The line
is part of the text compared with Vault's copy: drift repair restores it too.

Within one operator process the records last written are remembered by uid: the
object's body may lag behind our own status patches, and reading an older status
would make objects vaultsync just created look pre-existing (adopted).

A policy Vault rejects is reported (Ready=False with Vault's message); Vault keeps
the previous text, so a bad edit never takes a working policy away.

A role is written field by field: the bindings and policies always, an optional field
(tokenTTL, tokenMaxTTL, audience) only when the spec declares it, so what someone set in
Vault in a field the spec omits is never changed, neither by a write nor by drift repair.
The optional fields written are recorded in the status entry (roleFields), before the write
like the entry itself. A field recorded there that the spec no longer declares was
vaultsync's: it is set back to Vault's default once and then dropped from the record —
removing a line from the spec undoes what that line did, and nothing else. Without that
record (status lost) an omitted field is left as it is: vaultsync cannot tell its own old
value from one set by hand, and leaving one of its own is the lesser harm.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import hvac

from vaultsync.api.base import DeletionPolicy, parse
from vaultsync.api.policy import ManagedPolicy, VaultPolicySpec
from vaultsync.connections.identity import Identities
from vaultsync.kube import status
from vaultsync.kube.api import Kube
from vaultsync.policies.fanout import (
    Key,
    Wanted,
    desired,
    owned,
    removable,
    resets,
    stale,
    written_fields,
)
from vaultsync.policies.ownership import owner_id, recorded, stamped, vouched
from vaultsync.runtime.errors import SyncError
from vaultsync.runtime.outcome import Outcome, Result
from vaultsync.runtime.settings import Settings
from vaultsync.runtime.view import View
from vaultsync.vault import policies, roles
from vaultsync.vault.authenticated import with_client
from vaultsync.vault.errors import AuthenticationFailed, PermissionDenied
from vaultsync.vault.sessions import Identity, Sessions

Claim = Callable[[list[ManagedPolicy]], None]


@dataclass(frozen=True)
class Converged:
    records: list[ManagedPolicy]
    failures: dict[str, SyncError]
    writes: int


def _exists(client: hvac.Client, key: Key) -> bool:
    if key[0] == "policy":
        return policies.read(client, key[1]) is not None
    return roles.read(client, key[1], key[2]) is not None


def _delete(client: hvac.Client, key: Key) -> None:
    if key[0] == "policy":
        policies.delete(client, key[1])
    else:
        roles.delete(client, key[1], key[2])


def _discover(
    client: hvac.Client, wanted: Wanted, owner: str, known: Mapping[Key, bool]
) -> dict[Key, bool]:
    """Adopted flags of wanted's objects that `known` lacks: from the policy's first line, and
    for a role that line does not settle, from whether it exists."""
    missing = [key for key in wanted.keys if key not in known]
    if not missing:
        return {}
    flags = vouched(policies.read(client, wanted.policy), owner, wanted)
    return {key: flags[key] if key in flags else _exists(client, key) for key in missing}


def discover_own(
    client: hvac.Client, wanted: list[Wanted], records: list[ManagedPolicy], owner: str
) -> list[ManagedPolicy]:
    """Entries for wanted policies that `records` lacks and whose first line names owner:
    what an earlier object of the same name created (a restore from the manifest)."""
    known = owned(records)
    found = []
    for w in wanted:
        if any(key in known for key in w.keys):
            continue
        record = recorded(policies.read(client, w.policy), owner, w)
        if record is not None:
            found.append(record)
    return found


def _ensure(client: hvac.Client, wanted: Wanted, text: str, reset: frozenset[str]) -> int:
    """Write the policy (text) and then the role where Vault differs, in the role's declared
    fields and those to reset; the number of writes."""
    writes = 0
    if policies.read(client, wanted.policy) != text:
        policies.write(client, wanted.policy, text)
        writes += 1
    role = wanted.role
    if role is not None and not role.holds(roles.read(client, role.mount, role.name), reset):
        roles.write(client, role, reset)
        writes += 1
    return writes


def _fields(wanted: Wanted, written: Mapping[Key, frozenset[str]], done: bool) -> frozenset[str]:
    """The optional role fields to record for wanted: those it declares, and until its role
    has been written (done) also those recorded before, which may still hold our values."""
    if wanted.role is None:
        return frozenset()
    declared = frozenset(wanted.role.options)
    return declared if done else declared | resets(wanted, written)


def converge(
    client: hvac.Client,
    wanted: list[Wanted],
    records: list[ManagedPolicy],
    claim: Claim,
    owner: str,
) -> Converged:
    """Make Vault hold `wanted` and nothing else of what `records` owns; owner: the
    VaultPolicy's owner id (ownership.owner_id), written into and read from the policies.

    A failure for one namespace does not stop the others; a refused token does (the
    caller may log in again and retry).
    """
    adopted = owned(records)
    for w in wanted:
        adopted.update(_discover(client, w, owner, adopted))
    old = stale(records, wanted)
    written = written_fields(records)
    claimed = [w.record(adopted, _fields(w, written, False)) for w in wanted] + old
    if claimed != records:
        claim(claimed)
    failures: dict[str, SyncError] = {}
    writes = 0
    done = []
    for w in wanted:
        try:
            writes += _ensure(client, w, stamped(owner, w, adopted), resets(w, written))
            done.append(w)
        except (PermissionDenied, AuthenticationFailed):
            raise
        except SyncError as exc:
            failures[w.namespace or w.policy] = exc
    leftover = []
    for record in old:
        try:
            for key in removable(record, wanted):
                _delete(client, key)
                writes += 1
        except (PermissionDenied, AuthenticationFailed):
            raise
        except SyncError as exc:
            failures[record.namespace or record.policy] = exc
            leftover.append(record)
    kept = [w.record(adopted, _fields(w, written, w in done)) for w in wanted]
    return Converged(kept + leftover, failures, writes)


def _no_claim(records: list[ManagedPolicy]) -> None:
    """Removing everything claims nothing new."""


def remove_all(
    client: hvac.Client, wanted: list[Wanted], records: list[ManagedPolicy], owner: str
) -> tuple[Converged, list[ManagedPolicy]]:
    """Delete what records and the first lines of wanted's policies say vaultsync created;
    the result and every entry considered (adopted ones are kept)."""
    everything = records + discover_own(client, wanted, records, owner)
    return converge(client, [], everything, _no_claim, owner), everything


def records_of(body: Mapping[str, Any]) -> list[ManagedPolicy]:
    raw = (body.get("status") or {}).get("policies") or []
    return [ManagedPolicy.model_validate(entry) for entry in raw]


def _dump(records: list[ManagedPolicy]) -> list[dict[str, Any]]:
    return [r.model_dump(by_alias=True, exclude_defaults=True) for r in records]


def _summary(wanted: list[Wanted], records: list[ManagedPolicy]) -> str:
    if len(wanted) == 1 and wanted[0].namespace is None:
        w = wanted[0]
        text = f"policy {w.policy!r}" + (f" and role {w.role.name!r}" if w.role else "")
    else:
        text = f"{len(wanted)} matching namespaces: their policies and roles"
    adopted = sum(r.adopted for r in records) + sum(r.role_adopted for r in records)
    return text + " in step" + (f" ({adopted} adopted: they existed before)" if adopted else "")


def _failed(failures: dict[str, SyncError], total: int) -> Outcome:
    label = sorted(failures)[0]
    first = failures[label]
    where = "" if total <= 1 else f"{len(failures)} of {total} failed; {label}: "
    return Outcome(
        False,
        first.reason,
        where + str(first),
        retryable=any(e.retryable for e in failures.values()),
    )


class VaultPolicyReconciler:
    """Everything a VaultPolicy reconcile needs; one instance per operator."""

    kind = "VaultPolicy"
    plural = "vaultpolicies"

    def __init__(self, kube: Kube, sessions: Sessions, settings: Settings) -> None:
        self.kube = kube
        self.sessions = sessions
        self.identities = Identities(kube, settings.namespace)
        self._known: dict[str, list[ManagedPolicy]] = {}

    def _records(self, body: Mapping[str, Any]) -> list[ManagedPolicy]:
        uid = body["metadata"]["uid"]
        return self._known[uid] if uid in self._known else records_of(body)

    def _identity(self, auth_ref: str, view: View) -> Identity:
        return self.identities.operator(auth_ref, view)

    @staticmethod
    def _owner(body: Mapping[str, Any]) -> str:
        return owner_id(body["metadata"]["name"])

    def _claim(self, body: Mapping[str, Any]) -> Claim:
        def claim(records: list[ManagedPolicy]) -> None:
            status.patch(
                self.kube, self.plural, None, body["metadata"]["name"], {"policies": _dump(records)}
            )
            self._known[body["metadata"]["uid"]] = records

        return claim

    def _converge(self, body: Mapping[str, Any], view: View) -> tuple[Outcome, list[ManagedPolicy]]:
        records = self._records(body)
        try:
            spec = parse(VaultPolicySpec, body.get("spec"))
        except SyncError as exc:
            return Outcome.failed(exc), records
        wanted = desired(spec, view.namespaces)
        try:
            identity = self._identity(spec.auth_ref, view)
            result = with_client(
                self.sessions,
                identity,
                lambda client: converge(
                    client, wanted, records, self._claim(body), self._owner(body)
                ),
            )
        except SyncError as exc:  # what a claim recorded before the failure stands
            return Outcome.failed(exc), self._records(body)
        if result.failures:
            return _failed(result.failures, len(wanted)), result.records
        outcome = Outcome(
            True, "Synced", _summary(wanted, result.records), written=bool(result.writes)
        )
        return outcome, result.records

    def sync(self, body: Mapping[str, Any], view: View) -> Result:
        outcome, records = self._converge(body, view)
        self._known[body["metadata"]["uid"]] = records
        return Result(outcome, {"policies": _dump(records)})

    def needs_cleanup(self, body: Mapping[str, Any]) -> bool:
        return True  # the policies and roles it may have written in Vault

    def forget(self, body: Mapping[str, Any]) -> None:
        self._known.pop(body["metadata"]["uid"], None)

    def cleanup(self, body: Mapping[str, Any], view: View) -> str:
        """Delete what this VaultPolicy created (not adopted objects); raises SyncError.

        What status records is deleted, and so is what the first lines of the policies the
        spec wants name as this VaultPolicy's (an object re-created from its manifest and
        deleted before its first sync). With nothing in status that lookup is best effort:
        if Vault cannot be asked, the object goes without it (nothing of this object's own
        doing can be in Vault then) instead of waiting for a Vault it may never reach.
        """
        spec = body.get("spec") or {}
        records = self._records(body)
        if spec.get("deletionPolicy") == DeletionPolicy.RETAIN:
            message = "deletionPolicy is Retain: policies and roles left in Vault"
        else:
            message = self._remove(body, records, view)
        self._known.pop(body["metadata"]["uid"], None)
        return message

    def _remove(self, body: Mapping[str, Any], records: list[ManagedPolicy], view: View) -> str:
        try:
            wanted = desired(parse(VaultPolicySpec, body.get("spec")), view.namespaces)
        except SyncError:
            wanted = []  # an invalid spec wanted nothing: only what status records
        if not records and not wanted:
            return "nothing to remove"
        auth_ref = (body.get("spec") or {}).get("authRef") or "default"
        owner = self._owner(body)
        try:
            identity = self._identity(auth_ref, view)
            result, considered = with_client(
                self.sessions, identity, lambda client: remove_all(client, wanted, records, owner)
            )
        except SyncError as exc:
            if not records:
                return (
                    "nothing recorded to remove; Vault could not be asked for policies "
                    f"marked as this VaultPolicy's: {exc}"
                )
            raise SyncError(
                f"{exc} (set spec.deletionPolicy to Retain to delete without cleanup)",
                reason=exc.reason,
            ) from None
        if result.failures:
            label = sorted(result.failures)[0]
            raise SyncError(
                f"{label}: {result.failures[label]}", reason=result.failures[label].reason
            )
        if not considered:
            return "nothing to remove"
        kept = sum(owned(considered).values())
        return f"removed {result.writes} policies and roles" + (
            f"; kept {kept} adopted" if kept else ""
        )
