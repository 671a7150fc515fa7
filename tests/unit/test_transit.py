"""Transit's pure logic: the VaultTransitKey and encrypted-values specs and their CRD rules,
what a key's differences from its spec are, rendering decrypted values, and the manifests of
`vaultsync encrypt` and `vaultsync rewrap`."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from tests.schemas import nodes
from vaultsync.api.crds import KINDS, crd
from vaultsync.api.secret import MESSAGES as SECRET_MESSAGES
from vaultsync.api.secret import VaultSecretSpec
from vaultsync.api.transit import (
    CIPHERTEXT_PATTERN,
    MESSAGES,
    KeyType,
    VaultTransitKeySpec,
    context_for,
)
from vaultsync.cli import main
from vaultsync.secrets.render import REDACTED, RenderError, render
from vaultsync.transit.commands import plain_input
from vaultsync.transit.keys import config_drift, creation_settings, fixed_differences, next_rotation
from vaultsync.transit.manifests import (
    ManifestError,
    encrypted_of,
    from_pairs,
    from_secret,
    rewrapped,
    vault_secret,
    with_ciphertexts,
)
from vaultsync.vault.transit import TransitKey, parse_key

CIPHER = "vault:v1:c2VjcmV0LWNpcGhlcnRleHQ="
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def key_spec(**raw: Any) -> VaultTransitKeySpec:
    return VaultTransitKeySpec.model_validate(raw)


def crd_of(kind: str) -> dict[str, Any]:
    [found] = [k for k in KINDS if k.kind == kind]
    schema: dict[str, Any] = crd(found)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


# --- VaultTransitKey spec ----------------------------------------------------------------


def test_defaults_keep_the_key_and_take_aes256() -> None:
    spec = key_spec()
    assert spec.type is KeyType.AES256_GCM96 and spec.mount == "transit"
    assert spec.deletion_policy == "Retain"
    assert (spec.min_decryption_version, spec.min_encryption_version) == (1, 0)
    assert spec.name_in_vault("team-a") == "team-a"
    assert key_spec(keyName="other").name_in_vault("team-a") == "other"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"type": "aes256-gcm96", "keySize": 64}, MESSAGES["key_size"]),
        ({"convergentEncryption": True}, MESSAGES["convergent"]),
        ({"type": "rsa-2048", "derived": True}, MESSAGES["derivable"]),
        ({"autoRotatePeriod": "30m"}, MESSAGES["auto_rotate"]),
        (
            {"autoRotatePeriod": "720h", "rotation": {"interval": "24h"}},
            MESSAGES["one_rotation"],
        ),
        ({"minDecryptionVersion": 3, "minEncryptionVersion": 2}, MESSAGES["min_versions"]),
        ({"type": "hmac", "rotation": {"interval": "24h"}}, MESSAGES["hmac_rotation"]),
        ({"rotation": {"schedule": "0 3 * * *", "interval": "1h"}}, "exactly one of schedule"),
        ({"type": "des"}, "Input should be"),
        ({"keyName": "a/b"}, "String should match pattern"),
        ({"minDecryptionVersion": 0}, "greater than or equal to 1"),
    ],
)
def test_refused_specs(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        key_spec(**raw)


def test_accepted_specs() -> None:
    key_spec(type="hmac", keySize=64)
    key_spec(type="ed25519", derived=True)
    key_spec(derived=True, convergentEncryption=True, minDecryptionVersion=2)
    key_spec(autoRotatePeriod="1h")
    key_spec(rotation={"schedule": "0 3 * * *", "timeZone": "Europe/Berlin"})
    key_spec(minDecryptionVersion=3, minEncryptionVersion=3)
    assert key_spec(type="hmac").wanted_key_size() == 32
    assert key_spec().wanted_key_size() is None


def test_the_crd_lists_every_type_and_keeps_creation_settings_immutable() -> None:
    schema = crd_of("VaultTransitKey")
    spec = schema["properties"]["spec"]
    assert spec["properties"]["type"]["enum"] == [t.value for t in KeyType]
    rules = {r["message"]: r["rule"] for r in spec["x-kubernetes-validations"]}
    immutable = rules[MESSAGES["immutable"]]
    assert "self.keyName == oldSelf.keyName" in immutable
    assert "has(self.keyName) == has(oldSelf.keyName)" in immutable
    # the others compare what they mean: an explicit default is the same key as none
    for field, default in (
        ("mount", "'transit'"),
        ("type", "'aes256-gcm96'"),
        ("keySize", "32"),
        ("derived", "false"),
        ("convergentEncryption", "false"),
    ):
        assert (
            f"(has(self.{field}) ? self.{field} : {default}) == "
            f"(has(oldSelf.{field}) ? oldSelf.{field} : {default})"
        ) in immutable
    assert "oldSelf.exportable" in rules[MESSAGES["exportable"]]
    assert "oldSelf.allowPlaintextBackup" in rules[MESSAGES["backup"]]
    assert "oldSelf" not in rules[MESSAGES["auto_rotate"]]
    # every rule without oldSelf has its Python twin: a spec it refuses is refused here too
    assert {m for m, r in rules.items() if "oldSelf" not in r} <= set(MESSAGES.values())
    assert not any("default" in node for node in nodes(spec))
    assert schema["properties"]["status"]["properties"]["latestVersion"]["type"] == "integer"


# --- encrypted values in VaultSecret ---------------------------------------------------------


def secret_spec(**raw: Any) -> VaultSecretSpec:
    return VaultSecretSpec.model_validate({"destination": {"name": "s"}, **raw})


def encrypted(**data: str) -> dict[str, Any]:
    return {"key": "team-a", "data": data or {"API_TOKEN": CIPHER}}


def test_a_vaultsecret_takes_kv_encrypted_or_both() -> None:
    secret_spec(path="a/b")
    assert secret_spec(encrypted=encrypted()).path is None
    both = secret_spec(path="a/b", encrypted=encrypted(), keys=[{"from": "user"}])
    assert both.encrypted is not None and both.encrypted.mount == "transit"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({}, SECRET_MESSAGES["one_source"]),
        ({"encrypted": encrypted(), "keys": [{"from": "a"}]}, SECRET_MESSAGES["kv_needs_path"]),
        ({"encrypted": encrypted(), "version": 2}, SECRET_MESSAGES["kv_needs_path"]),
        (
            {"path": "a", "encrypted": encrypted(), "keys": [{"from": "x", "to": "API_TOKEN"}]},
            SECRET_MESSAGES["encrypted_keys"],
        ),
        (
            {"encrypted": encrypted(), "template": {"API_TOKEN": "{{ x }}"}},
            SECRET_MESSAGES["encrypted_keys"],
        ),
        ({"encrypted": encrypted(K="not-a-ciphertext")}, "String should match pattern"),
        ({"encrypted": encrypted(K="vault:v0:AAAA")}, "String should match pattern"),
        ({"encrypted": encrypted(**{"bad key": CIPHER})}, "Secret key"),
        ({"encrypted": {"key": "team-a", "data": {}}}, "at least 1 item"),
    ],
)
def test_refused_encrypted_specs(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        secret_spec(**raw)


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        (CIPHER, True),
        ("vault:v12:AbC+/9==", True),
        ("vault:v1:", False),
        ("vault:1:AAAA", False),
        ("vault:v1:AA AA", False),
        ("vault:v1:AAAA\n", False),
        ("secret", False),
    ],
)
def test_the_ciphertext_pattern(text: str, valid: bool) -> None:
    try:
        secret_spec(encrypted=encrypted(K=text))
    except ValidationError:
        assert not valid
    else:
        assert valid


def test_the_vaultsecret_crd_checks_sources_and_ciphertexts() -> None:
    spec = crd_of("VaultSecret")["properties"]["spec"]
    assert "path" not in spec.get("required", [])
    rules = {r["message"] for r in spec["x-kubernetes-validations"]}
    assert {SECRET_MESSAGES[m] for m in ("one_source", "kv_needs_path", "encrypted_keys")} <= rules
    data = spec["properties"]["encrypted"]["properties"]["data"]
    assert data["additionalProperties"]["pattern"] == CIPHERTEXT_PATTERN
    assert data["x-kubernetes-validations"]  # the keys are Secret keys


def test_decrypted_values_are_written_and_template_variables() -> None:
    spec = secret_spec(
        path="a",
        encrypted=encrypted(TOKEN=CIPHER),
        keys=[{"from": "user"}],
        template={"URL": "https://{{ user }}:{{ TOKEN }}@host"},
    )
    out = render(spec, {"user": "app", "pw": "x"}, {"TOKEN": b"t0ken"})
    assert out == {"user": b"app", "TOKEN": b"t0ken", "URL": b"https://app:t0ken@host"}
    binary = bytes(range(256))
    assert render(secret_spec(encrypted=encrypted()), {}, {"API_TOKEN": binary}) == {
        "API_TOKEN": binary
    }


def test_a_kv_key_and_an_encrypted_key_of_one_name_are_a_clear_failure() -> None:
    spec = secret_spec(path="a", encrypted=encrypted(user=CIPHER))
    with pytest.raises(RenderError) as err:
        render(spec, {"user": "kv-value"}, {"user": b"decrypted-value"})
    assert err.value.reason == "DuplicateKey" and "'user'" in str(err.value)
    assert "value" not in str(err.value).replace("'user'", "")


def test_a_template_error_never_quotes_a_decrypted_value() -> None:
    spec = secret_spec(encrypted=encrypted(TOKEN=CIPHER), template={"X": "{{ data[TOKEN] }}"})
    with pytest.raises(RenderError) as err:
        render(spec, {}, {"TOKEN": b"very-secret-token"})
    assert "very-secret-token" not in str(err.value) and REDACTED in str(err.value)


def test_the_context_binds_to_the_namespace() -> None:
    assert base64.b64decode(context_for("team-a")) == b"vaultsync:team-a"
    assert context_for("team-a") != context_for("team-b")


# --- a key against its spec ------------------------------------------------------------------


def vault_key(**fields: Any) -> TransitKey:
    data = {
        "name": "k",
        "type": "aes256-gcm96",
        "latest_version": 2,
        "min_decryption_version": 1,
        "min_encryption_version": 0,
        "keys": {"1": 1700000000, "2": int(NOW.timestamp()) - 3600},
        **fields,
    }
    return parse_key(data)


def test_parse_key_reads_both_shapes_of_version_times() -> None:
    assert vault_key().latest_created == NOW - timedelta(hours=1)
    asymmetric = vault_key(
        type="ed25519",
        latest_version=1,
        keys={"1": {"creation_time": "2026-06-01T10:00:00.123456789Z", "public_key": "x"}},
    )
    assert asymmetric.latest_created == datetime(2026, 6, 1, 10, 0, 0, 123456, tzinfo=UTC)
    assert vault_key(keys={}).latest_created is None


def test_creation_settings() -> None:
    assert creation_settings(key_spec(type="hmac", autoRotatePeriod="24h")) == {
        "type": "hmac",
        "derived": False,
        "convergent_encryption": False,
        "exportable": False,
        "allow_plaintext_backup": False,
        "auto_rotate_period": "86400s",
        "key_size": 32,
    }


def test_fixed_differences_name_what_vault_cannot_change() -> None:
    assert fixed_differences(key_spec(), vault_key()) == []
    found = fixed_differences(
        key_spec(type="chacha20-poly1305"),
        vault_key(derived=True, exportable=True, allow_plaintext_backup=True),
    )
    assert found == [
        "type is aes256-gcm96, not chacha20-poly1305",
        "derived is true",
        "exportable is on and cannot be switched off",
        "allowPlaintextBackup is on and cannot be switched off",
    ]
    hmac = vault_key(type="hmac", key_size=64)
    assert fixed_differences(key_spec(type="hmac", keySize=64), hmac) == []
    assert fixed_differences(key_spec(type="hmac"), hmac) == ["keySize is 64, not 32"]
    assert fixed_differences(key_spec(exportable=True), vault_key()) == []  # config sets it


def test_config_drift_is_what_a_hand_changed() -> None:
    assert config_drift(key_spec(), vault_key()) == {}
    drifted = vault_key(min_decryption_version=2, auto_rotate_period=3600, deletion_allowed=True)
    assert config_drift(key_spec(), drifted) == {
        "min_decryption_version": (2, 1),
        "auto_rotate_period": (3600, 0),
        "deletion_allowed": (True, False),
    }
    assert config_drift(key_spec(exportable=True, minEncryptionVersion=2), vault_key()) == {
        "min_encryption_version": (0, 2),
        "exportable": (False, True),
    }


def test_next_rotation_by_vaultsync_or_by_vault() -> None:
    made = NOW - timedelta(hours=1)
    assert next_rotation(key_spec(), vault_key(), NOW) is None
    daily = key_spec(rotation={"schedule": "0 3 * * *"})
    assert next_rotation(daily, vault_key(), NOW) == datetime(2026, 6, 2, 3, tzinfo=UTC)
    hourly = key_spec(rotation={"interval": "24h"})
    assert next_rotation(hourly, vault_key(), NOW) == made + timedelta(hours=24)
    vaults = vault_key(auto_rotate_period=7200)
    assert next_rotation(key_spec(autoRotatePeriod="2h"), vaults, NOW) == made + timedelta(hours=2)


# --- vaultsync encrypt / rewrap manifests ----------------------------------------------------


def test_pairs() -> None:
    assert from_pairs(["A=1", "B=x=y", "C="]).values == {"A": b"1", "B": b"x=y", "C": b""}
    for bad, said in ((["A"], "KEY=value"), (["A=1", "A=2"], "twice"), (["a b=1"], "Secret key")):
        with pytest.raises(ManifestError, match=said) as err:
            from_pairs(bad)
        assert "=1" not in str(err.value) and "=2" not in str(err.value)
    with pytest.raises(ManifestError, match="argument 2 is not KEY=value") as err:
        from_pairs(["A=1", "hunter2-typed-without-its-key"])  # a value given alone
    assert "hunter2" not in str(err.value)


def test_a_secret_manifest_with_data_and_string_data() -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/basic-auth",
        "metadata": {
            "name": "db",
            "namespace": "team-a",
            "labels": {"x": "y", "vaultsync.io/managed": "true"},
            "annotations": {
                "team": "a",
                "kubectl.kubernetes.io/last-applied-configuration": '{"stringData": "s3cret"}',
            },
        },
        "data": {"username": base64.b64encode(b"app").decode(), "password": "b2xk"},
        "stringData": {"password": "s3cret"},
    }
    plain = from_secret(doc)
    assert plain.values == {"username": b"app", "password": b"s3cret"}
    # the Secret's own metadata is carried; ours and kubectl's copy of the values are not
    assert (plain.labels, plain.annotations) == ({"x": "y"}, {"team": "a"})
    assert (plain.name, plain.namespace, plain.type) == ("db", "team-a", "kubernetes.io/basic-auth")
    with pytest.raises(ManifestError, match="not valid base64") as err:
        from_secret({**doc, "data": {"k": "!!s3cret!!"}})
    assert "s3cret" not in str(err.value)
    with pytest.raises(ManifestError, match="not 'ConfigMap'"):
        from_secret({**doc, "kind": "ConfigMap"})
    # YAML reads `enabled: true` as a boolean, which the API refuses in stringData: not "True"
    for value, kind in ((True, "bool"), (5, "int"), (1.5, "float")):
        with pytest.raises(ManifestError, match=f"stringData\\['k'\\] is a {kind}.*quote it"):
            from_secret({**doc, "stringData": {"k": value}})
    with pytest.raises(ManifestError, match="no data"):
        from_secret({"kind": "Secret", "metadata": {"name": "x"}})


def test_input_is_one_secret_manifest_or_pairs() -> None:
    with pytest.raises(ManifestError, match="or KEY=value"):
        plain_input(None, [])
    with pytest.raises(ManifestError, match="or KEY=value"):
        plain_input("kind: Secret", ["A=1"])
    with pytest.raises(ManifestError, match="found 2 documents"):
        plain_input("kind: Secret\n---\nkind: Secret\n", [])
    text = "kind: Secret\nmetadata: {name: a, namespace: b}\nstringData: {K: v}\n"
    assert plain_input(text, []).values == {"K": b"v"}


def test_the_vaultsecret_manifest_is_a_valid_vaultsecret() -> None:
    manifest = vault_secret(
        "db",
        "team-a",
        mount="transit",
        key="team-a",
        ciphertexts={"b": CIPHER, "a": CIPHER},
        secret_type="kubernetes.io/basic-auth",
        labels={"app": "db"},
        annotations={"team": "a"},
    )
    assert manifest["apiVersion"] == "vaultsync.io/v1alpha1"
    assert manifest["metadata"] == {"name": "db", "namespace": "team-a"}
    spec = VaultSecretSpec.model_validate(manifest["spec"])
    assert spec.encrypted is not None and list(spec.encrypted.data) == ["a", "b"]
    assert spec.destination.type == "kubernetes.io/basic-auth"
    assert (spec.destination.labels, spec.destination.annotations) == ({"app": "db"}, {"team": "a"})
    opaque = vault_secret("db", "team-a", mount="transit", key="k", ciphertexts={"a": CIPHER})
    assert opaque["spec"]["destination"] == {"name": "db"}


def test_rewrap_swaps_ciphertexts_and_nothing_else() -> None:
    doc = vault_secret("db", "team-a", mount="tr", key="k", ciphertexts={"a": CIPHER})
    doc["metadata"]["labels"] = {"app": "x"}
    wrapped = encrypted_of(doc)
    assert wrapped is not None
    assert (wrapped.namespace, wrapped.mount, wrapped.key) == ("team-a", "tr", "k")
    new = with_ciphertexts(doc, {"a": "vault:v2:AAAA"})
    assert new["spec"]["encrypted"]["data"] == {"a": "vault:v2:AAAA"}
    assert doc["spec"]["encrypted"]["data"] == {"a": CIPHER}  # the input is not changed
    assert {**new, "spec": None} == {**doc, "spec": None}
    assert encrypted_of({"kind": "Secret"}) is None
    del doc["metadata"]["namespace"]
    with pytest.raises(ManifestError, match="--namespace"):
        encrypted_of(doc)
    assert encrypted_of(doc, "other") is not None


def test_a_rewrap_keeps_the_ciphertexts_at_the_version_vault_rewrapped_to() -> None:
    old = {"a": "vault:v1:OLD1", "b": "vault:v2:OLD2", "c": "vault:v10:OLD3"}
    fresh = {"a": "vault:v2:NEW1", "b": "vault:v2:NEW2", "c": "vault:v10:NEW3"}
    assert rewrapped(old, fresh) == {
        "a": "vault:v2:NEW1",
        "b": "vault:v2:OLD2",
        "c": "vault:v10:OLD3",
    }


def test_the_cli_needs_a_key_and_vault(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    with pytest.raises(SystemExit):
        main(["encrypt", "A=1"])
    assert "--key" in capsys.readouterr().err
    monkeypatch.delenv("VAULT_ADDR", raising=False)
    monkeypatch.delenv("VAULT_TOKEN", raising=False)
    with pytest.raises(SystemExit, match="VAULT_ADDR") as err:
        main(["encrypt", "--key", "k", "--name", "a", "--namespace", "b", "A=s3cret"])
    assert "s3cret" not in str(err.value.code)
