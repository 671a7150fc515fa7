"""Transit against a real OpenBao: keys kept as declared (every key type created, adoption,
drift repair, fixed settings and min versions refused, a schedule that rotates once per due
time), deletion, the batches of encrypt, decrypt and rewrap with their failures, and the
`vaultsync encrypt` and `rewrap` commands."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import hvac
import pytest
import yaml

from e2e.harness.openbao import OpenBao
from vaultsync.api.transit import KeyType, VaultTransitKeySpec, context_for
from vaultsync.transit import commands
from vaultsync.transit.keys import KeyResult, converge
from vaultsync.transit.manifests import ManifestError, from_pairs
from vaultsync.vault import transit
from vaultsync.vault.transit import DecryptDenied, DecryptFailed, TransitKeyNotFound

pytestmark = pytest.mark.integration
MOUNT = "transit"
CONTEXT = context_for("team-a")


@pytest.fixture(scope="module")
def vault(bao: OpenBao) -> hvac.Client:
    """The harness's OpenBao mounts transit at transit/."""
    return bao.client()


@pytest.fixture
def name() -> str:
    return f"it-{uuid.uuid4().hex[:8]}"


class Claims(list[bool]):
    def __call__(self, managed: bool) -> None:
        self.append(managed)


def spec(**raw: Any) -> VaultTransitKeySpec:
    return VaultTransitKeySpec.model_validate(raw)


def keep(
    vault: hvac.Client, name: str, wanted: VaultTransitKeySpec, managed: bool = False, **kw: Any
) -> tuple[KeyResult, Claims]:
    claims = Claims()
    result = converge(vault, wanted, name, managed, claims, kw.get("now") or datetime.now(UTC))
    return result, claims


def limited_token(vault: hvac.Client, policy: str) -> hvac.Client:
    name = f"it-{uuid.uuid4().hex[:8]}"
    vault.sys.create_or_update_policy(name, policy)
    token = vault.auth.token.create(policies=[name], ttl="10m")["auth"]["client_token"]
    return hvac.Client(url=vault.url, token=token)


@pytest.mark.parametrize("type_", list(KeyType))
def test_every_key_type_is_created_as_declared(vault: hvac.Client, type_: KeyType) -> None:
    name = f"it-{type_.value}-{uuid.uuid4().hex[:6]}"
    wanted = spec(type=type_.value)
    result, claims = keep(vault, name, wanted)
    assert claims == [True]  # recorded before the create call
    assert result.outcome.ready, result.outcome.message
    assert result.managed and [n.reason for n in result.notes] == ["Created"]
    key = transit.read_key(vault, MOUNT, name)
    assert key is not None and key.type == type_.value and key.latest_version == 1
    assert not key.deletion_allowed
    if type_ is KeyType.HMAC:  # Vault reports no version times for hmac keys
        assert key.key_size == 32 and key.latest_created is None
    else:
        assert key.latest_created is not None
    again, claims = keep(vault, name, wanted, managed=True)
    assert again.outcome.ready and again.notes == [] and claims == []


def test_creation_settings_and_one_way_settings(vault: hvac.Client, name: str) -> None:
    wanted = spec(derived=True, convergentEncryption=True, autoRotatePeriod="720h")
    result, _ = keep(vault, name, wanted)
    assert result.outcome.ready, result.outcome.message
    key = transit.read_key(vault, MOUNT, name)
    assert key is not None and key.derived and key.convergent_encryption
    assert key.auto_rotate_period == 720 * 3600 and not key.exportable
    assert result.next_rotation == key.latest_created + timedelta(hours=720)  # type: ignore[operator]
    result, _ = keep(vault, name, spec(**{**wanted.model_dump(by_alias=True), "exportable": True}))
    assert result.outcome.ready
    key = transit.read_key(vault, MOUNT, name)
    assert key is not None and key.exportable
    result, _ = keep(vault, name, wanted, managed=True)  # the spec switched it off again
    assert result.outcome.reason == "KeyMismatch" and not result.outcome.retryable
    assert "exportable is on" in result.outcome.message


def test_an_existing_key_is_adopted_and_kept_as_declared(vault: hvac.Client, name: str) -> None:
    vault.write(f"{MOUNT}/keys/{name}", type="chacha20-poly1305")
    result, claims = keep(vault, name, spec(type="chacha20-poly1305"))
    assert claims == [] and not result.managed
    assert result.outcome.ready and "adopted" in result.outcome.message
    other, _ = keep(vault, name, spec(type="aes256-gcm96"))
    assert other.outcome.reason == "KeyMismatch" and not other.managed
    assert "type is chacha20-poly1305, not aes256-gcm96" in other.outcome.message
    key = transit.read_key(vault, MOUNT, name)
    assert key is not None and key.type == "chacha20-poly1305"


def test_drift_is_set_back_with_a_note(vault: hvac.Client, name: str) -> None:
    wanted = spec()
    keep(vault, name, wanted)
    vault.write(f"{MOUNT}/keys/{name}/rotate")
    vault.write(
        f"{MOUNT}/keys/{name}/config",
        min_decryption_version=2,
        auto_rotate_period="2h",
        deletion_allowed=True,
    )
    result, _ = keep(vault, name, wanted, managed=True)
    assert result.outcome.ready
    [note] = result.notes
    assert note.reason == "DriftRepaired" and note.warning
    assert "min_decryption_version 2 -> 1" in note.message
    assert "auto_rotate_period 7200 -> 0" in note.message
    key = transit.read_key(vault, MOUNT, name)
    assert key is not None
    assert (key.min_decryption_version, key.auto_rotate_period, key.deletion_allowed) == (
        1,
        0,
        False,
    )
    assert result.key == key


def test_min_versions_above_the_latest_change_nothing(vault: hvac.Client, name: str) -> None:
    keep(vault, name, spec())
    result, _ = keep(vault, name, spec(minDecryptionVersion=3), managed=True)
    assert result.outcome.reason == "MinVersionAboveLatest" and not result.outcome.retryable
    vault.write(f"{MOUNT}/keys/{name}/rotate")
    vault.write(f"{MOUNT}/keys/{name}/rotate")
    result, _ = keep(vault, name, spec(minDecryptionVersion=3), managed=True)
    assert result.outcome.ready
    key = transit.read_key(vault, MOUNT, name)
    assert key is not None and key.min_decryption_version == 3


def test_a_schedule_rotates_once_per_due_time(vault: hvac.Client, name: str) -> None:
    wanted = spec(rotation={"interval": "24h"})
    keep(vault, name, wanted)
    key = transit.read_key(vault, MOUNT, name)
    assert key is not None and key.latest_created is not None
    created = key.latest_created
    not_yet, _ = keep(vault, name, wanted, managed=True, now=created + timedelta(hours=23))
    assert not_yet.notes == [] and not_yet.key is not None and not_yet.key.latest_version == 1
    assert not_yet.next_rotation == created + timedelta(hours=24)
    later = created + timedelta(hours=25)
    due, _ = keep(vault, name, wanted, managed=True, now=later)
    assert [n.reason for n in due.notes] == ["Rotated"]
    assert due.key is not None and due.key.latest_version == 2
    # the new version is the record: the interval counts from it, whatever asks again
    rotated = due.key.latest_created
    assert rotated is not None and rotated >= created  # Vault keeps whole seconds
    again, _ = keep(vault, name, wanted, managed=True, now=rotated + timedelta(hours=23))
    assert again.notes == [] and again.key is not None and again.key.latest_version == 2
    assert again.next_rotation == rotated + timedelta(hours=24)


def test_delete_sets_deletion_allowed_itself(vault: hvac.Client, name: str) -> None:
    keep(vault, name, spec())
    transit.delete_key(vault, MOUNT, name)
    assert transit.read_key(vault, MOUNT, name) is None
    transit.delete_key(vault, MOUNT, name)  # gone already: no error


def test_encrypt_decrypt_rewrap(vault: hvac.Client, name: str) -> None:
    keep(vault, name, spec(derived=True))
    values = {"A": b"first-plaintext", "B": bytes(range(256))}
    sealed = transit.encrypt(vault, MOUNT, name, values, CONTEXT)
    assert all(c.startswith("vault:v1:") for c in sealed.values())
    assert transit.decrypt(vault, MOUNT, name, sealed, CONTEXT) == values
    vault.write(f"{MOUNT}/keys/{name}/rotate")
    fresh = transit.rewrap(vault, MOUNT, name, sealed, CONTEXT)
    assert all(c.startswith("vault:v2:") for c in fresh.values()) and fresh != sealed
    assert transit.decrypt(vault, MOUNT, name, fresh, CONTEXT) == values


def test_decrypt_failures_name_the_value_never_quote_it(vault: hvac.Client, name: str) -> None:
    keep(vault, name, spec(derived=True))
    sealed = transit.encrypt(vault, MOUNT, name, {"TOKEN": b"the-plaintext"}, CONTEXT)
    with pytest.raises(DecryptFailed) as err:  # another namespace's context
        transit.decrypt(vault, MOUNT, name, sealed, context_for("team-b"))
    assert "'TOKEN'" in str(err.value) and "the-plaintext" not in str(err.value)
    assert sealed["TOKEN"] not in str(err.value) and not err.value.retryable
    with pytest.raises(DecryptFailed, match="'BAD'"):
        transit.decrypt(vault, MOUNT, name, {**sealed, "BAD": "vault:v1:AAAA"}, CONTEXT)
    vault.write(f"{MOUNT}/keys/{name}/rotate")
    vault.write(f"{MOUNT}/keys/{name}/config", min_decryption_version=2)
    with pytest.raises(DecryptFailed, match="too old"):
        transit.decrypt(vault, MOUNT, name, sealed, CONTEXT)
    with pytest.raises(TransitKeyNotFound):
        transit.decrypt(vault, MOUNT, f"{name}-none", sealed, CONTEXT)


def test_decrypt_is_denied_without_the_grant(vault: hvac.Client, name: str) -> None:
    keep(vault, name, spec())
    sealed = transit.encrypt(vault, MOUNT, name, {"K": b"v"}, CONTEXT)
    other = limited_token(
        vault, f'path "{MOUNT}/decrypt/{name}-other" {{ capabilities = ["update"] }}'
    )
    with pytest.raises(DecryptDenied, match=f"needs 'update' on {MOUNT}/decrypt/{name}"):
        transit.decrypt(other, MOUNT, name, sealed, CONTEXT)
    allowed = limited_token(vault, f'path "{MOUNT}/decrypt/{name}" {{ capabilities = ["update"] }}')
    assert transit.decrypt(allowed, MOUNT, name, sealed, CONTEXT) == {"K": b"v"}


def test_the_encrypt_and_rewrap_commands(vault: hvac.Client, name: str) -> None:
    keep(vault, name, spec(derived=True))
    secret = (
        "apiVersion: v1\nkind: Secret\nmetadata: {name: api, namespace: team-a}\n"
        "stringData: {TOKEN: command-plaintext}\n"
    )
    text = commands.encrypt(vault, commands.plain_input(secret, []), key=name)
    assert "command-plaintext" not in text
    [doc] = yaml.safe_load_all(text)
    sealed = doc["spec"]["encrypted"]["data"]
    assert transit.decrypt(vault, MOUNT, name, sealed, CONTEXT) == {"TOKEN": b"command-plaintext"}
    with pytest.raises(ManifestError, match="no transit key"):
        commands.encrypt(vault, from_pairs(["K=v"]), key=f"{name}-none", name="a", namespace="b")
    assert transit.read_key(vault, MOUNT, f"{name}-none") is None  # not created on the way

    vault.write(f"{MOUNT}/keys/{name}/rotate")
    other = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: b}\n"
    out = list(yaml.safe_load_all(commands.rewrap(vault, text + "---\n" + other)))
    assert out[1] == yaml.safe_load(other)
    fresh = out[0]["spec"]["encrypted"]["data"]
    assert fresh["TOKEN"].startswith("vault:v2:")
    assert {**out[0], "spec": None} == {**doc, "spec": None}
    assert transit.decrypt(vault, MOUNT, name, fresh, CONTEXT) == {"TOKEN": b"command-plaintext"}


def test_a_second_rewrap_changes_nothing(vault: hvac.Client, name: str) -> None:
    """Vault encrypts again on every rewrap: a manifest at the latest version comes back as it
    was (no diff in Git), and of a mixed one only the values at an older version change."""
    keep(vault, name, spec(derived=True))
    first = commands.encrypt(vault, from_pairs(["A=a"]), key=name, name="x", namespace="team-a")
    assert commands.rewrap(vault, first) == first
    vault.write(f"{MOUNT}/keys/{name}/rotate")
    [doc] = yaml.safe_load_all(first)
    newer = transit.encrypt(vault, MOUNT, name, {"B": b"b"}, CONTEXT)["B"]
    doc["spec"]["encrypted"]["data"]["B"] = newer
    once = commands.rewrap(vault, yaml.safe_dump(doc))
    data = yaml.safe_load(once)["spec"]["encrypted"]["data"]
    assert data["A"].startswith("vault:v2:") and data["B"] == newer
    assert transit.decrypt(vault, MOUNT, name, data, CONTEXT) == {"A": b"a", "B": b"b"}
    assert commands.rewrap(vault, once) == once


def test_a_rewrap_changes_the_ciphertexts_and_not_one_character_more(
    vault: hvac.Client, name: str
) -> None:
    """Comments, quoting and the other documents of a manifest kept in Git stay as they are;
    a ciphertext folded over lines (not in the text verbatim) gets the manifests printed anew."""
    keep(vault, name, spec(derived=True))
    sealed = transit.encrypt(vault, MOUNT, name, {"A": b"a"}, CONTEXT)["A"]
    text = (
        "# the team's API token\n"
        "apiVersion: vaultsync.io/v1alpha1\n"
        "kind: VaultSecret\n"
        "metadata: {name: api, namespace: team-a}  # flow style\n"
        "spec:\n"
        "  encrypted:\n"
        f"    key: '{name}'\n"
        "    data:\n"
        f'      A: "{sealed}"   # rotated yearly\n'
        "  destination: {name: api}\n"
        "---\n"
        "# not a VaultSecret\n"
        "kind: ConfigMap\n"
        "data: {b: 'c'}\n"
    )
    vault.write(f"{MOUNT}/keys/{name}/rotate")
    out = commands.rewrap(vault, text)
    fresh = next(yaml.safe_load_all(out))["spec"]["encrypted"]["data"]["A"]
    assert fresh.startswith("vault:v2:") and out == text.replace(sealed, fresh)
    assert transit.decrypt(vault, MOUNT, name, {"A": fresh}, CONTEXT) == {"A": b"a"}

    folded = text.replace(sealed, f"{sealed[:20]}\\\n        {sealed[20:]}")
    assert next(yaml.safe_load_all(folded)) == next(yaml.safe_load_all(text))
    [doc, other] = yaml.safe_load_all(commands.rewrap(vault, folded))
    assert doc["spec"]["encrypted"]["data"]["A"].startswith("vault:v2:")
    assert other == {"kind": "ConfigMap", "data": {"b": "c"}}
