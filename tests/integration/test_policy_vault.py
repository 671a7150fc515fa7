"""Policies, Kubernetes-auth roles and VaultPolicy convergence against a real OpenBao, and
ownership recorded in the policies' first lines (what a restore from the manifest keeps)."""

import uuid

import hvac
import pytest

from e2e.harness.openbao import OpenBao
from vaultsync.api.policy import ManagedPolicy, VaultPolicySpec
from vaultsync.policies.fanout import Wanted, desired
from vaultsync.policies.ownership import owner_id
from vaultsync.policies.reconciler import converge, remove_all
from vaultsync.vault import policies, roles
from vaultsync.vault.policies import PolicyRejected
from vaultsync.vault.roles import KubernetesRole

pytestmark = pytest.mark.integration
OWNER = owner_id("it")


def _line(policy: str, role: str | None = None) -> str:
    """The first line vaultsync writes: policy and role states ("created"/"adopted")."""
    line = f"# managed-by: vaultsync {OWNER}; policy {policy}"
    return line + (f"; role {role}" if role else "") + "\n"


@pytest.fixture
def root(bao: OpenBao) -> hvac.Client:
    client = bao.client()
    if "kubernetes/" not in client.sys.list_auth_methods()["data"]:
        client.sys.enable_auth_method("kubernetes")
    return client


@pytest.fixture
def name() -> str:
    return f"it-{uuid.uuid4().hex[:8]}"


def _role(name: str, **changes: object) -> KubernetesRole:
    fields: dict[str, object] = {
        "service_accounts": ["web", "app"],
        "namespaces": ["b", "a"],
        "policies": [name],
        "ttl": 3600,
        "max_ttl": 7200,
        "audience": "vault",
    }
    fields.update(changes)
    return KubernetesRole.of("kubernetes", name, **fields)  # type: ignore[arg-type]


def test_rendered_policy_is_accepted_and_read_back_verbatim(root: hvac.Client, name: str) -> None:
    text = policies.render_hcl([("secret/data/x/*", ["read", "list"]), ("sys/mounts", ["read"])])
    policies.write(root, name, text)
    assert policies.read(root, name) == text


def test_missing_policy_reads_as_none_and_deletes_quietly(root: hvac.Client, name: str) -> None:
    assert policies.read(root, name) is None
    policies.delete(root, name)


def test_rejected_policy_keeps_the_previous_text(root: hvac.Client, name: str) -> None:
    good = policies.render_hcl([("secret/data/x/*", ["read"])])
    policies.write(root, name, good)
    with pytest.raises(PolicyRejected) as caught:
        policies.write(root, name, 'path "x" { capabilities = ["reed"] }')
    assert 'invalid capability "reed"' in str(caught.value)
    assert caught.value.reason == "PolicyRejected" and not caught.value.retryable
    assert policies.read(root, name) == good


def test_role_round_trip_and_audience_drift_is_cleared(root: hvac.Client, name: str) -> None:
    assert roles.read(root, "kubernetes", name) is None
    wanted = _role(name, audience="")
    roles.write(root, wanted)
    assert roles.read(root, "kubernetes", name) == wanted
    root.write_data(f"auth/kubernetes/role/{name}", data={"audience": "hand-edited"})
    assert roles.read(root, "kubernetes", name) != wanted
    roles.write(root, wanted)
    assert roles.read(root, "kubernetes", name) == wanted
    roles.delete(root, "kubernetes", name)
    assert roles.read(root, "kubernetes", name) is None
    roles.delete(root, "kubernetes", name)


def test_a_role_write_leaves_the_fields_it_does_not_declare(root: hvac.Client, name: str) -> None:
    by_hand = {"token_ttl": 1800, "audience": "set-by-hand", "token_num_uses": 3}
    root.write_data(
        f"auth/kubernetes/role/{name}",
        data={"bound_service_account_names": ["x"], "bound_service_account_namespaces": ["a"]},
    )
    root.write_data(f"auth/kubernetes/role/{name}", data=by_hand)
    wanted = _role(name, ttl=None, audience=None)
    assert not wanted.holds(roles.read(root, "kubernetes", name)), "bindings and max_ttl differ"
    roles.write(root, wanted)
    assert wanted.holds(roles.read(root, "kubernetes", name))
    data = root.read(f"auth/kubernetes/role/{name}")["data"]
    assert {k: data[k] for k in by_hand} == by_hand
    assert data["token_max_ttl"] == 7200

    roles.write(root, _role(name, ttl=None, audience=None, max_ttl=None), {"token_max_ttl"})
    data = root.read(f"auth/kubernetes/role/{name}")["data"]
    assert data["token_max_ttl"] == 0, "reset to Vault's default"
    assert {k: data[k] for k in by_hand} == by_hand


def test_converge_resets_only_the_role_fields_it_wrote(root: hvac.Client, name: str) -> None:
    raw = _fan_out(name).model_dump(by_alias=True, exclude_none=True)
    raw["kubernetesRole"]["tokenMaxTTL"] = "2h"
    namespaces = {"a": {"tenant": "yes"}}
    claims: list[list[ManagedPolicy]] = []
    wanted = desired(VaultPolicySpec.model_validate(raw), namespaces)
    first = converge(root, wanted, [], claims.append, OWNER)
    assert [r.role_fields for r in first.records] == [["token_max_ttl"]]
    assert claims == [first.records], "recorded before the write"
    root.write_data(f"auth/kubernetes/role/{name}-a", data={"token_ttl": 1800})

    del raw["kubernetesRole"]["tokenMaxTTL"]
    wanted = desired(VaultPolicySpec.model_validate(raw), namespaces)
    second = converge(root, wanted, first.records, claims.append, OWNER)
    assert second.writes == 1 and [r.role_fields for r in second.records] == [[]]
    data = root.read(f"auth/kubernetes/role/{name}-a")["data"]
    assert (data["token_max_ttl"], data["token_ttl"]) == (0, 1800)

    root.write_data(f"auth/kubernetes/role/{name}-a", data={"token_max_ttl": 5400})
    third = converge(root, wanted, second.records, claims.append, OWNER)
    assert third.writes == 0, "a value set by hand in a field vaultsync no longer writes"
    data = root.read(f"auth/kubernetes/role/{name}-a")["data"]
    assert (data["token_max_ttl"], data["token_ttl"]) == (5400, 1800)


def _fan_out(prefix: str) -> VaultPolicySpec:
    return VaultPolicySpec.model_validate(
        {
            "namespaceSelector": {"matchLabels": {"tenant": "yes"}},
            "policyName": f"{prefix}-{{namespace}}",
            "rules": [{"path": "secret/data/{namespace}/*", "capabilities": ["read"]}],
            "kubernetesRole": {"name": f"{prefix}-{{namespace}}", "serviceAccounts": ["*"]},
        }
    )


def test_fan_out_creates_repairs_and_removes(root: hvac.Client, name: str) -> None:
    spec = _fan_out(name)
    claims: list[list[ManagedPolicy]] = []
    namespaces = {"a": {"tenant": "yes"}, "b": {"tenant": "yes"}, "c": {}}
    wanted = desired(spec, namespaces)

    first = converge(root, wanted, [], claims.append, OWNER)
    assert not first.failures and first.writes == 4
    assert [r.namespace for r in first.records] == ["a", "b"]
    assert claims == [first.records], "ownership is recorded before anything is written"
    assert policies.read(root, f"{name}-a") == (
        _line("created", f"kubernetes/{name}-a created")
        + 'path "secret/data/a/*" {\n  capabilities = ["read"]\n}\n'
    )
    role = roles.read(root, "kubernetes", f"{name}-b")
    assert role is not None and role.namespaces == ("b",) and role.policies == (f"{name}-b",)

    again = converge(root, wanted, first.records, claims.append, OWNER)
    assert again.writes == 0 and len(claims) == 1, "nothing differs: nothing written"

    written = policies.read(root, f"{name}-a")
    root.sys.create_or_update_acl_policy(f"{name}-a", 'path "*" { capabilities = ["sudo"] }')
    root.write_data(f"auth/kubernetes/role/{name}-b", data={"bound_service_account_names": ["x"]})
    repaired = converge(root, wanted, first.records, claims.append, OWNER)
    assert repaired.writes == 2
    assert policies.read(root, f"{name}-a") == written, "the first line is restored too"
    role = wanted[1].role
    assert role is not None and role.holds(roles.read(root, "kubernetes", f"{name}-b"))

    namespaces["b"] = {}
    shrunk = converge(root, desired(spec, namespaces), first.records, claims.append, OWNER)
    assert [r.namespace for r in shrunk.records] == ["a"]
    assert policies.read(root, f"{name}-b") is None
    assert roles.read(root, "kubernetes", f"{name}-b") is None

    gone = converge(root, [], shrunk.records, claims.append, OWNER)
    assert gone.records == [] and policies.read(root, f"{name}-a") is None


def test_pre_existing_objects_are_adopted_and_never_deleted(root: hvac.Client, name: str) -> None:
    spec = _fan_out(name)
    root.sys.create_or_update_acl_policy(f"{name}-a", 'path "old/*" { capabilities = ["read"] }')
    wanted = desired(spec, {"a": {"tenant": "yes"}})
    result = converge(root, wanted, [], lambda _: None, OWNER)
    [record] = result.records
    assert record.adopted and not record.role_adopted
    kept = _line("adopted", f"kubernetes/{name}-a created") + wanted[0].text
    assert policies.read(root, f"{name}-a") == kept, "adopted means kept in step"

    removed = converge(root, [], result.records, lambda _: None, OWNER)
    assert removed.records == []
    assert policies.read(root, f"{name}-a") == kept, "an adopted policy stays"
    assert roles.read(root, "kubernetes", f"{name}-a") is None, "the role was ours"


def test_one_rejected_policy_does_not_stop_the_others(root: hvac.Client, name: str) -> None:
    good = Wanted("a", f"{name}-a", 'path "a/*" { capabilities = ["read"] }\n', None)
    bad = Wanted("b", f"{name}-b", 'path "b/*" { capabilities = ["reed"] }\n', None)
    result = converge(root, [good, bad], [], lambda _: None, OWNER)
    assert set(result.failures) == {"b"}
    assert isinstance(result.failures["b"], PolicyRejected)
    assert policies.read(root, f"{name}-a") == _line("created") + good.text
    assert [r.policy for r in result.records] == [f"{name}-a", f"{name}-b"]


def test_a_re_created_object_takes_what_it_created_as_its_own(root: hvac.Client, name: str) -> None:
    """Restore from the manifest: status is gone, the first lines in Vault are not."""
    spec = _fan_out(name)
    root.sys.create_or_update_acl_policy(f"{name}-b", 'path "old/*" { capabilities = ["read"] }')
    root.write_data(
        f"auth/kubernetes/role/{name}-c",
        data={"bound_service_account_names": ["x"], "bound_service_account_namespaces": ["c"]},
    )
    wanted = desired(spec, {ns: {"tenant": "yes"} for ns in "abc"})
    first = converge(root, wanted, [], lambda _: None, OWNER)
    flags = [(r.namespace, r.adopted, r.role_adopted) for r in first.records]
    assert flags == [("a", False, False), ("b", True, False), ("c", False, True)]

    claims: list[list[ManagedPolicy]] = []
    restored = converge(root, wanted, [], claims.append, OWNER)
    assert restored.records == first.records, "the same ownership, read back from Vault"
    assert restored.writes == 0, "nothing differs: nothing written"
    assert claims == [first.records]

    result, considered = remove_all(root, wanted, [], OWNER)
    assert not result.failures and considered == first.records
    assert policies.read(root, f"{name}-a") is None and policies.read(root, f"{name}-c") is None
    assert roles.read(root, "kubernetes", f"{name}-a") is None
    assert roles.read(root, "kubernetes", f"{name}-b") is None, "created with an adopted policy"
    assert policies.read(root, f"{name}-b") is not None, "adopted: never deleted"
    assert roles.read(root, "kubernetes", f"{name}-c") is not None, "adopted: never deleted"


def test_deletion_without_status_leaves_other_owners_and_unmarked_policies(
    root: hvac.Client, name: str
) -> None:
    spec = _fan_out(name)
    wanted = desired(spec, {"a": {"tenant": "yes"}, "b": {"tenant": "yes"}})
    theirs = converge(root, wanted[:1], [], lambda _: None, owner_id("someone-else"))
    assert not theirs.records[0].adopted, "the other VaultPolicy created it"
    root.sys.create_or_update_acl_policy(f"{name}-b", 'path "b/*" { capabilities = ["read"] }')
    result, considered = remove_all(root, wanted, [], OWNER)
    assert considered == [] and result.writes == 0
    assert policies.read(root, f"{name}-a") is not None
    assert roles.read(root, "kubernetes", f"{name}-a") is not None
    assert policies.read(root, f"{name}-b") is not None
    [mine] = converge(root, wanted[:1], [], lambda _: None, OWNER).records
    assert mine.adopted and mine.role_adopted, "another VaultPolicy's objects: adopted"


def test_policies_written_before_markers_get_their_first_line_once(
    root: hvac.Client, name: str
) -> None:
    """Upgrade: status has the records, Vault has the spec's text without a first line."""
    spec = _fan_out(name)
    wanted = desired(spec, {"a": {"tenant": "yes"}})
    policies.write(root, f"{name}-a", wanted[0].text)
    assert wanted[0].role is not None
    roles.write(root, wanted[0].role)
    records = [wanted[0].record({})]
    upgraded = converge(root, wanted, records, lambda _: None, OWNER)
    assert upgraded.writes == 1 and upgraded.records == records
    assert policies.read(root, f"{name}-a") == (
        _line("created", f"kubernetes/{name}-a created") + wanted[0].text
    )
    assert converge(root, wanted, records, lambda _: None, OWNER).writes == 0
