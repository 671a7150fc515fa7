"""Transit end to end: VaultTransitKey's lifecycle (create, drift repair, min versions, a
rotation schedule, adoption, conflict, Retain and Delete, CEL), and encrypted values:
`vaultsync encrypt` -> kubectl apply -> the Secret holds the plaintext, rewrap after a
rotation (no Secret write), a retired version (reason, Secret kept), and tenancy (another
namespace gets nothing from copied ciphertext: denied without the grant, and with a derived
key not even with it). The session's leak scan looks for every plaintext used here."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hvac
import pytest
import yaml
from kubernetes import client

from e2e.harness import ROOT
from e2e.harness.conditions import ready_is
from e2e.harness.kubeauth import configure_kubernetes_auth
from e2e.harness.manifests import API_VERSION, deployment
from e2e.harness.openbao import OpenBao
from e2e.harness.polling import eventually
from e2e.harness.stack import Stack, add_tenant, tenant_policy
from e2e.harness.vaultadmin import ADMIN_SERVICE_ACCOUNT as AUTH
from e2e.harness.vaultadmin import grant_operator, operator_objects

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator_identity")]
PLURAL = "vaulttransitkeys"


def _key(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "VaultTransitKey",
        "metadata": {"name": name},
        "spec": {"authRef": AUTH, **spec},
    }


def _get(stack: Stack, name: str) -> dict[str, Any]:
    return stack.get(PLURAL, name)


def _ready(stack: Stack, name: str, status: str = "True") -> dict[str, Any] | None:
    return ready_is(_get(stack, name), status)


def _in_vault(stack: Stack, name: str) -> dict[str, Any] | None:
    response = stack.vault.read(f"transit/keys/{name}")
    return response["data"] if response else None


def _patch(stack: Stack, name: str, spec: dict[str, Any], check: bool = True) -> str:
    """A merge patch of the spec; what kubectl said on stderr (a refusal, with check=False)."""
    done = stack.cp.kubectl(
        "patch", PLURAL, name, "--type=merge", "-p", yaml.safe_dump({"spec": spec}), check=check
    )
    return done.stderr if done.returncode else ""


def _delete(stack: Stack, *names: str) -> None:
    stack.cp.kubectl("delete", PLURAL, *names, "--ignore-not-found", "--timeout=60s")


def _events(stack: Stack, name: str, reason: str) -> list[str]:
    found = stack.core.list_namespaced_event("default").items
    return [e.message for e in found if e.involved_object.name == name and e.reason == reason]


def _grant_decrypt(vault: hvac.Client, namespace: str, key: str) -> None:
    """The tenant's policy (e2e/harness/stack.py) plus decrypt with key."""
    rule = f'path "transit/decrypt/{key}" {{ capabilities = ["update"] }}\n'
    vault.sys.create_or_update_policy(f"{namespace}-read", tenant_policy(namespace) + rule)


def _cli(stack: Stack, *args: str, input: str | None = None) -> str:
    """`vaultsync encrypt|rewrap` as a user runs it: their token in VAULT_TOKEN."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "operator"),
        "VAULT_ADDR": stack.bao.address,
        "VAULT_TOKEN": stack.bao.root_token,
    }
    done = subprocess.run(
        [sys.executable, "-m", "vaultsync", *args],
        input=input,
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return done.stdout


def _secret_manifest(namespace: str, name: str, values: dict[str, str]) -> str:
    doc = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "stringData": values,
    }
    return yaml.safe_dump(doc)


def _moved(manifest: str, namespace: str) -> str:
    """The same VaultSecret in another namespace: ciphertext copied as it is."""
    doc = yaml.safe_load(manifest)
    doc["metadata"]["namespace"] = namespace
    return yaml.safe_dump(doc)


def _restart_annotations(stack: Stack, namespace: str, name: str) -> dict[str, str]:
    """vaultsync's annotations on a Deployment's pod template (a new value: a restart)."""
    found = client.AppsV1Api(stack.core.api_client).read_namespaced_deployment(name, namespace)
    annotations = found.spec.template.metadata.annotations or {}
    return {k: v for k, v in annotations.items() if "vaultsync" in k}


def _reason(stack: Stack, namespace: str, name: str) -> dict[str, Any]:
    return eventually(lambda: stack.ready_is(namespace, name, "False"), 60, f"{name} not Ready")


def test_a_key_is_created_kept_as_declared_and_deleted_only_when_it_was_ours(
    stack: Stack, uid: str
) -> None:
    vault = stack.vault
    name, twin, adopted, kept = (f"tk-{uid}", f"tk-{uid}-twin", f"tk-{uid}-old", f"tk-{uid}-ret")
    stack.apply(_key(name, derived=True, deletionPolicy="Delete"))
    eventually(lambda: _ready(stack, name), 60, "the key Ready")
    status = _get(stack, name)["status"]
    assert status["managed"] is True and status["latestVersion"] == 1
    assert status["minDecryptionVersion"] == 1 and status["lastRotationTime"]
    key = _in_vault(stack, name)
    assert key is not None and key["derived"] and key["type"] == "aes256-gcm96"

    # drift: a hand rotation is kept, a hand change of the config is set back (with an Event)
    vault.write(f"transit/keys/{name}/rotate")
    vault.write(f"transit/keys/{name}/config", min_decryption_version=2, auto_rotate_period="2h")
    eventually(
        lambda: (k := _in_vault(stack, name)) and k["min_decryption_version"] == 1, 30, "set back"
    )
    assert _in_vault(stack, name)["auto_rotate_period"] == 0  # type: ignore[index]
    messages = eventually(lambda: _events(stack, name, "DriftRepaired"), 30, "the Event")
    assert any("min_decryption_version 2 -> 1" in m for m in messages)
    eventually(lambda: _get(stack, name)["status"].get("latestVersion") == 2, 30, "status")

    # min versions: above the latest is a clear reason and changes nothing; then applied
    _patch(stack, name, {"minDecryptionVersion": 5})
    ready = eventually(lambda: _ready(stack, name, "False"), 30, "refused")
    assert ready["reason"] == "MinVersionAboveLatest" and "latest version, 2" in ready["message"]
    assert _in_vault(stack, name)["min_decryption_version"] == 1  # type: ignore[index]
    _patch(stack, name, {"minDecryptionVersion": 2, "minEncryptionVersion": 2})
    eventually(lambda: _ready(stack, name), 30, "Ready with the min versions")
    key = _in_vault(stack, name)
    assert key is not None
    assert (key["min_decryption_version"], key["min_encryption_version"]) == (2, 2)

    # CEL: what Vault fixes at creation is immutable; exportable only goes one way
    refused = _patch(stack, name, {"type": "chacha20-poly1305"}, check=False)
    assert "fixed when the key is created" in refused
    # the defaults written out (or left out again) are the same key: no refusal
    assert _patch(stack, name, {"type": "aes256-gcm96", "mount": "transit"}) == ""
    assert _patch(stack, name, {"type": None, "mount": None, "convergentEncryption": False}) == ""
    refused = _patch(stack, name, {"derived": False}, check=False)
    assert "fixed when the key is created" in refused
    assert "at least 1h" in _patch(stack, name, {"autoRotatePeriod": "10m"}, check=False)
    _patch(stack, name, {"exportable": True})
    eventually(lambda: (_in_vault(stack, name) or {}).get("exportable"), 30, "exportable")
    assert "cannot be switched off" in _patch(stack, name, {"exportable": False}, check=False)

    # a second object for the same key: KeyConflict, and its deletion deletes nothing
    stack.apply(_key(twin, keyName=name, derived=True, deletionPolicy="Delete"))
    conflict = eventually(lambda: _ready(stack, twin, "False"), 30, "KeyConflict")
    assert conflict["reason"] == "KeyConflict" and repr(name) in conflict["message"]
    _delete(stack, twin)
    assert _in_vault(stack, name) is not None

    # an existing key is adopted: kept as declared, never deleted, even with Delete
    vault.write(f"transit/keys/{adopted}", type="ed25519")
    stack.apply(_key(adopted, type="ed25519", deletionPolicy="Delete"))
    eventually(lambda: _ready(stack, adopted), 30, "adopted Ready")
    assert _get(stack, adopted)["status"]["managed"] is False
    assert "adopted" in _ready(stack, adopted)["message"]  # type: ignore[index]
    stack.apply(_key(kept, type="rsa-2048"))  # deletionPolicy Retain, the default
    eventually(lambda: _ready(stack, kept), 60, "retained key Ready")
    _delete(stack, adopted, kept)
    assert _in_vault(stack, adopted) is not None and _in_vault(stack, kept) is not None

    # Delete on a key vaultsync created: deletion_allowed set by vaultsync, the key goes
    _delete(stack, name)
    assert _in_vault(stack, name) is None
    eventually(
        lambda: any("can no longer be decrypted" in m for m in _events(stack, name, "KeyDeleted")),
        30,
        "the KeyDeleted Event",
    )


@pytest.fixture
def other_vault(stack: Stack, tmp_path: Path, uid: str) -> Iterator[tuple[hvac.Client, str]]:
    """A second OpenBao, with the operator's identity in it through VaultAuth `other-<uid>`:
    (an admin client of it, that VaultAuth's name)."""
    bao = OpenBao(tmp_path / "other-openbao")
    bao.start()
    try:
        configure_kubernetes_auth(bao, stack.cp)
        grant_operator(bao.client())
        auth = f"other-{uid}"
        stack.apply(*operator_objects(auth, f"other-{uid}", bao.address))
        yield bao.client(), auth
    finally:
        bao.stop()


def test_a_key_created_in_one_vault_is_not_deleted_in_another(
    stack: Stack, uid: str, other_vault: tuple[hvac.Client, str]
) -> None:
    """status.managed says vaultsync created the key *it was about*: an authRef moved to
    another Vault finds a key of the same name there, which is not ours to delete."""
    other, auth = other_vault
    name = f"tk-{uid}-moved"
    other.write(f"transit/keys/{name}")  # someone else's key in the other Vault
    stack.apply(_key(name, deletionPolicy="Delete"))
    eventually(lambda: _ready(stack, name), 60, "the key Ready")
    assert _get(stack, name)["status"]["managed"] is True
    _patch(stack, name, {"authRef": auth})
    eventually(lambda: _ready(stack, name), 60, "Ready in the other Vault")
    assert _get(stack, name)["status"]["managed"] is False
    _delete(stack, name)
    assert other.read(f"transit/keys/{name}") is not None
    assert _in_vault(stack, name) is not None  # created here, left when the object moved away
    stack.vault.write(f"transit/keys/{name}/config", deletion_allowed=True)
    stack.vault.delete(f"transit/keys/{name}")


def test_a_schedule_rotates_the_key(stack: Stack, uid: str) -> None:
    name = f"tk-{uid}-rot"
    stack.apply(_key(name, type="chacha20-poly1305", rotation={"interval": "2s"}))
    eventually(lambda: _get(stack, name).get("status", {}).get("latestVersion", 0) >= 3, 60, "2")
    status = _get(stack, name)["status"]
    assert status["nextRotationTime"] and status["lastRotationTime"]
    eventually(lambda: _events(stack, name, "Rotated"), 30, "a Rotated Event")
    _patch(stack, name, {"rotation": None, "minDecryptionVersion": 2})
    eventually(lambda: _ready(stack, name), 30, "Ready without a schedule")
    assert (_in_vault(stack, name) or {}).get("min_decryption_version") == 2
    _delete(stack, name)


def test_encrypted_values_from_git_and_their_tenancy(
    stack: Stack, uid: str, namespaces: list[str]
) -> None:
    team, other, sharer = (f"tr-{uid}-{x}" for x in "abc")
    namespaces += [team, other, sharer]
    for namespace in namespaces:
        add_tenant(stack.cp, stack.bao, namespace)
    key = f"team-{uid}"
    stack.apply(_key(key, derived=True, deletionPolicy="Delete"))
    eventually(lambda: _ready(stack, key), 60, "the key")
    _grant_decrypt(stack.vault, team, key)
    _grant_decrypt(stack.vault, sharer, key)  # may decrypt with team's key: context says no
    plain = {"API_TOKEN": f"transit-plain-{uid}-token", "PASSWORD": f"transit-plain-{uid}-pw"}
    stack.values.update(plain.values())  # the leak scan at the end looks for them

    # encrypt -> commit-style apply -> the Secret holds the plaintext
    manifest = _cli(
        stack, "encrypt", "-f", "-", "--key", key, input=_secret_manifest(team, "api", plain)
    )
    assert not any(value in manifest for value in plain.values())
    stack.apply(deployment(team, "app"))  # restarted when the data changes, and only then
    restarts = {"rolloutRestartTargets": [{"kind": "Deployment", "name": "app"}]}
    doc = yaml.safe_load(manifest)
    doc["spec"].update(restarts)
    manifest = yaml.safe_dump(doc, sort_keys=False)
    stack.cp.kubectl("apply", "-f", "-", input=manifest)
    assert eventually(lambda: stack.secret_data(team, "api"), 60, "the Secret") == plain
    ready = eventually(lambda: stack.ready_is(team, "api", "True"), 30, "Ready")
    assert f"2 value(s) decrypted with transit key transit/{key}" in ready["message"]

    # with KV data and a template, in the same Secret
    stack.put(f"{team}/app", {"user": "app"})
    both = yaml.safe_load(manifest)
    both["metadata"]["name"] = "both"
    both["spec"].update(
        path=f"{team}/app",
        destination={"name": "both"},
        template={"URL": "https://{{ user }}:{{ API_TOKEN }}@api"},
    )
    stack.apply(both)
    merged = eventually(lambda: stack.secret_data(team, "both"), 60, "the merged Secret")
    # (a template without keys takes no KV key as it is: only the template's)
    assert merged == {**plain, "URL": f"https://app:{plain['API_TOKEN']}@api"}

    # tenancy: copied into a namespace without the grant: denied, no Secret
    stack.cp.kubectl("apply", "-f", "-", input=_moved(manifest, other))
    denied = _reason(stack, other, "api")
    assert denied["reason"] == "DecryptDenied" and f"transit/decrypt/{key}" in denied["message"]
    # and into one that may decrypt with the key: the context is team's namespace, not its
    stack.cp.kubectl("apply", "-f", "-", input=_moved(manifest, sharer))
    failed = _reason(stack, sharer, "api")
    assert failed["reason"] == "DecryptFailed" and "'API_TOKEN'" in failed["message"]
    assert stack.secret_data(other, "api") is None and stack.secret_data(sharer, "api") is None
    mine = f"transit-plain-{uid}-mine"
    stack.values.add(mine)
    own = _cli(stack, "encrypt", "--key", key, "--name", "own", "--namespace", sharer, f"K={mine}")
    stack.cp.kubectl("apply", "-f", "-", input=own)  # its own ciphertext decrypts there
    assert eventually(lambda: stack.secret_data(sharer, "own"), 60, "own") == {"K": mine}

    # a copy at v1, kept as it is (retired below)
    stack.cp.kubectl("apply", "-f", "-", input=manifest.replace("name: api\n", "name: old\n"))
    eventually(lambda: stack.secret_data(team, "old"), 60, "a second copy at v1")

    # a new value restarts the Deployment; a rewrap (same plaintext) writes and restarts nothing
    changed = {**plain, "PASSWORD": f"transit-plain-{uid}-pw2"}
    stack.values.add(changed["PASSWORD"])
    sealed = _cli(
        stack, "encrypt", "-f", "-", "--key", key, input=_secret_manifest(team, "api", changed)
    )
    doc = yaml.safe_load(sealed)
    doc["spec"].update(restarts)
    manifest = yaml.safe_dump(doc, sort_keys=False)
    stack.cp.kubectl("apply", "-f", "-", input=manifest)
    eventually(lambda: stack.secret_data(team, "api") == changed, 60, "the new value")
    template = eventually(lambda: _restart_annotations(stack, team, "app"), 30, "a restart")
    stack.vault.write(f"transit/keys/{key}/rotate")
    written = stack.core.read_namespaced_secret("api", team).metadata.resource_version
    rewrapped = _cli(stack, "rewrap", "-", input=manifest)
    assert "vault:v2:" in rewrapped and "vault:v1:" not in rewrapped
    assert (
        yaml.safe_load(rewrapped)["spec"]["rolloutRestartTargets"]
        == restarts["rolloutRestartTargets"]
    )
    stack.cp.kubectl("apply", "-f", "-", input=rewrapped)
    eventually(lambda: stack.ready_is(team, "api", "True"), 30, "the rewrapped generation")
    assert stack.vaultsecret(team, "api")["metadata"]["generation"] == 3
    assert stack.core.read_namespaced_secret("api", team).metadata.resource_version == written
    assert _restart_annotations(stack, team, "app") == template  # no restart

    # the old version retired: a clear reason for what was not rewrapped, its Secret kept
    _patch(stack, key, {"minDecryptionVersion": 2})
    eventually(lambda: _get(stack, key)["status"].get("minDecryptionVersion") == 2, 30, "retired")
    stack.cp.kubectl("annotate", "vaultsecret", "old", "-n", team, f"vaultsync.io/refresh={uid}")
    retired = eventually(
        lambda: (r := stack.ready(team, "old")) and r["status"] == "False" and r, 60, "retired"
    )
    assert retired["reason"] == "DecryptFailed" and "too old" in retired["message"]
    assert not any(value in retired["message"] for value in plain.values())
    assert stack.secret_data(team, "old") == plain
    assert stack.ready(team, "api")["status"] == "True"  # type: ignore[index]
    _delete(stack, key)
