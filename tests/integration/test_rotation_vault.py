"""The Vault side of rotation against a real OpenBao: check-and-set writes, custom metadata that
keeps foreign keys, created_time, password policies, and denials that name the capability."""

from __future__ import annotations

import string
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import hvac
import pytest

from vaultsync.api.rotation import RotationKey, RotationSpec
from vaultsync.secrets.rotation import protocol
from vaultsync.secrets.rotation.generate import rotated_data
from vaultsync.secrets.rotation.intent import (
    FinishPending,
    Pending,
    RetryPending,
    Rotate,
    decide,
    read_record,
    with_done,
    with_pending,
)
from vaultsync.vault import kv
from vaultsync.vault.errors import CheckAndSetFailed, PasswordPolicyNotFound, RotationDenied

pytestmark = pytest.mark.integration

SECRET_VALUE = "do-not-leak-7f3a"
POLICY_RULES = """
length = 24
rule "charset" {
  charset = "abcdefghijklmnopqrstuvwxyz"
  min-chars = 1
}
rule "charset" {
  charset = "0123456789"
  min-chars = 4
}
"""


@pytest.fixture
def path(root: hvac.Client) -> Iterator[str]:
    name = f"rot/{uuid.uuid4().hex[:8]}"
    root.secrets.kv.v2.create_or_update_secret(
        name, {"username": "app", "password": SECRET_VALUE}, mount_point="secret"
    )
    yield name
    root.secrets.kv.v2.delete_metadata_and_all_versions(name, mount_point="secret")


@pytest.fixture
def password_policy(root: hvac.Client) -> Iterator[str]:
    name = f"rot-{uuid.uuid4().hex[:8]}"
    root.adapter.put(f"/v1/sys/policies/password/{name}", json={"policy": POLICY_RULES})
    yield name
    root.adapter.delete(f"/v1/sys/policies/password/{name}")


def token_for(root: hvac.Client, hcl: str) -> hvac.Client:
    name = f"rot-{uuid.uuid4().hex[:8]}"
    root.sys.create_or_update_policy(name, hcl)
    token = root.auth.token.create(policies=[name], ttl="5m")["auth"]["client_token"]
    return hvac.Client(url=root.url, token=token)


def rotating_tenant(root: hvac.Client, path: str, password_policy: str = "none") -> hvac.Client:
    """The grants the issue asks of a tenant that rotates its own path."""
    return token_for(
        root,
        f"""
        path "secret/data/{path}" {{ capabilities = ["read", "create", "update"] }}
        path "secret/metadata/{path}" {{ capabilities = ["read", "update"] }}
        path "sys/policies/password/{password_policy}/generate" {{ capabilities = ["read"] }}
        """,
    )


def test_check_and_set_write_returns_the_new_version(root: hvac.Client, path: str) -> None:
    assert kv.write(root, "secret", path, {"password": "new"}, cas=1) == 2
    assert kv.write(root, "secret", path, {"password": "newer"}, cas=2) == 3
    secret = kv.read(root, "secret", path)
    assert (secret.version, secret.data) == (3, {"password": "newer"})


def test_check_and_set_on_a_stale_version_fails_and_writes_nothing(
    root: hvac.Client, path: str
) -> None:
    kv.write(root, "secret", path, {"password": "someone else"}, cas=1)
    with pytest.raises(CheckAndSetFailed) as err:
        kv.write(root, "secret", path, {"password": SECRET_VALUE + "x"}, cas=1)
    assert err.value.reason == "CheckAndSetFailed"
    assert SECRET_VALUE not in str(err.value)
    assert path in str(err.value)
    secret = kv.read(root, "secret", path)
    assert (secret.version, secret.data) == (2, {"password": "someone else"})


def test_created_time_is_the_version_read(root: hvac.Client, path: str) -> None:
    first = kv.read(root, "secret", path)
    kv.write(root, "secret", path, {"password": "new"}, cas=1)
    second = kv.read(root, "secret", path)
    assert kv.read(root, "secret", path, 1).created_time == first.created_time
    assert first.created_time.tzinfo is not None
    assert first.created_time < second.created_time
    assert abs(datetime.now(UTC) - second.created_time) < timedelta(minutes=1)
    versions = root.secrets.kv.v2.read_secret_metadata(path, mount_point="secret")["data"]
    assert datetime.fromisoformat(versions["versions"]["2"]["created_time"]) == second.created_time


def test_custom_metadata_round_trip_keeps_foreign_keys_and_settings(
    root: hvac.Client, path: str
) -> None:
    root.secrets.kv.v2.update_metadata(
        path,
        max_versions=7,
        delete_version_after="2h",
        custom_metadata={"owner": "team-a"},
        mount_point="secret",
    )
    secret = kv.read(root, "secret", path)
    assert secret.custom_metadata == {"owner": "team-a"}
    pending = Pending(base_version=secret.version, slot=datetime(2025, 1, 1, tzinfo=UTC))
    kv.write_custom_metadata(root, "secret", path, with_pending(secret.custom_metadata, pending))

    again = kv.read(root, "secret", path)
    assert again.version == secret.version, "a metadata write makes no version"
    assert again.custom_metadata["owner"] == "team-a"
    assert read_record(again.custom_metadata).pending == pending
    done = with_done(again.custom_metadata, pending, datetime.now(UTC))
    kv.write_custom_metadata(root, "secret", path, done)
    assert kv.read(root, "secret", path).custom_metadata == done

    metadata = root.secrets.kv.v2.read_secret_metadata(path, mount_point="secret")["data"]
    assert metadata["max_versions"] == 7
    assert metadata["delete_version_after"] == "2h0m0s"


def test_writing_custom_metadata_replaces_the_whole_map(root: hvac.Client, path: str) -> None:
    """Why intent returns complete maps: Vault keeps no key that is not sent."""
    kv.write_custom_metadata(root, "secret", path, {"a": "1", "b": "2"})
    kv.write_custom_metadata(root, "secret", path, {"a": "1"})
    assert kv.read(root, "secret", path).custom_metadata == {"a": "1"}


def test_password_policy_generates_with_a_limited_token(
    root: hvac.Client, path: str, password_policy: str
) -> None:
    tenant = rotating_tenant(root, path, password_policy)
    values = {kv.generate_password(tenant, password_policy) for _ in range(5)}
    assert len(values) == 5
    for value in values:
        assert len(value) == 24
        assert set(value) <= set(string.ascii_lowercase + string.digits)
        assert sum(c.isdigit() for c in value) >= 4


def test_missing_password_policy(root: hvac.Client) -> None:
    with pytest.raises(PasswordPolicyNotFound) as err:
        kv.generate_password(root, "no-such-policy")
    assert "no-such-policy" in str(err.value)


def test_denials_name_the_missing_capability_and_change_nothing(
    root: hvac.Client, path: str, password_policy: str
) -> None:
    reader = token_for(
        root,
        f"""
        path "secret/data/{path}" {{ capabilities = ["read"] }}
        path "secret/metadata/{path}" {{ capabilities = ["read"] }}
        """,
    )
    before = kv.read(reader, "secret", path)

    with pytest.raises(RotationDenied) as write_err:
        kv.write(reader, "secret", path, {"password": SECRET_VALUE + "-new"}, cas=before.version)
    assert f"needs 'update' (and 'create') on secret/data/{path}" in str(write_err.value)

    with pytest.raises(RotationDenied) as metadata_err:
        kv.write_custom_metadata(reader, "secret", path, {"vaultsync-pending": "{}"})
    assert f"needs 'update' on secret/metadata/{path}" in str(metadata_err.value)

    with pytest.raises(RotationDenied) as generate_err:
        kv.generate_password(reader, password_policy)
    assert f"needs 'read' on sys/policies/password/{password_policy}/generate" in str(
        generate_err.value
    )

    for err in (write_err, metadata_err, generate_err):
        assert err.value.reason == "RotationDenied"
        assert SECRET_VALUE not in str(err.value)
    after = kv.read(root, "secret", path)
    assert (after.version, after.data, after.custom_metadata) == (
        before.version,
        before.data,
        before.custom_metadata,
    )


def test_the_named_capabilities_are_enough(
    root: hvac.Client, path: str, password_policy: str
) -> None:
    """update (no create) on data/ and metadata/ of an existing secret, read on generate."""
    tenant = token_for(
        root,
        f"""
        path "secret/data/{path}" {{ capabilities = ["read", "update"] }}
        path "secret/metadata/{path}" {{ capabilities = ["update"] }}
        path "sys/policies/password/{password_policy}/generate" {{ capabilities = ["read"] }}
        """,
    )
    password = kv.generate_password(tenant, password_policy)
    assert kv.write(tenant, "secret", path, {"password": password}, cas=1) == 2
    kv.write_custom_metadata(tenant, "secret", path, {"vaultsync-last-slot": "x"})
    assert kv.read(root, "secret", path).custom_metadata == {"vaultsync-last-slot": "x"}


def _rotate(client: hvac.Client, path: str, keys: list[RotationKey], *, crash: bool) -> None:
    """The protocol of intent's docstring, stopping after the intent is written if crash."""
    secret = kv.read(client, "secret", path)
    slot = datetime(2025, 1, 1, 3, tzinfo=UTC)
    action = decide(read_record(secret.custom_metadata), secret.version, slot, None)
    assert isinstance(action, (Rotate, RetryPending, FinishPending))
    metadata = secret.custom_metadata
    if isinstance(action, Rotate):
        metadata = with_pending(metadata, action.pending)
        kv.write_custom_metadata(client, "secret", path, metadata)
        if crash:
            return
    if isinstance(action, (Rotate, RetryPending)):
        new = rotated_data(secret.data, keys, lambda name: kv.generate_password(client, name))
        kv.write(client, "secret", path, new, cas=action.pending.base_version)
    kv.write_custom_metadata(client, "secret", path, with_done(metadata, action.pending, slot))


def test_tenant_rotates_its_own_path_once_across_a_crash(
    root: hvac.Client, path: str, password_policy: str
) -> None:
    tenant = rotating_tenant(root, path, password_policy)
    keys = [RotationKey.model_validate({"name": "password", "passwordPolicy": password_policy})]
    _rotate(tenant, path, keys, crash=True)
    assert kv.read(root, "secret", path).version == 1
    _rotate(tenant, path, keys, crash=False)

    secret = kv.read(root, "secret", path)
    assert secret.version == 2
    assert secret.data["username"] == "app"
    assert secret.data["password"] != SECRET_VALUE and len(secret.data["password"]) == 24
    record = read_record(secret.custom_metadata)
    assert record.pending is None
    assert record.rotated_version == 2
    assert record.last_slot == datetime(2025, 1, 1, 3, tzinfo=UTC)


def test_a_request_there_when_rotation_creates_the_secret_is_done_by_the_creation(
    root: hvac.Client,
) -> None:
    """A VaultSecret applied with vaultsync.io/rotate already set (from Git, or again after
    its Vault secret was deleted): the creation is its rotation, not followed by another."""
    name = f"rot/{uuid.uuid4().hex[:8]}"
    tenant = rotating_tenant(root, name)
    spec = RotationSpec.model_validate(
        {"interval": "87600h", "keys": [{"name": "password", "generate": {"length": 20}}]}
    )
    now = datetime.now(UTC)
    try:
        created = protocol.create(tenant, "secret", name, spec, "from-git", now)
        assert created.result == "created"
        assert created.status["rotatedVersion"] == 1 and created.status["lastRotationTime"]
        secret = kv.read(tenant, "secret", name)
        again = protocol.rotate(tenant, "secret", name, spec, secret, "from-git", now)
        assert again.result == "idle"
        assert kv.read(root, "secret", name).version == 1
        later = protocol.rotate(tenant, "secret", name, spec, secret, "by-hand", now)
        assert later.result == "rotated"
    finally:
        root.secrets.kv.v2.delete_metadata_and_all_versions(name, mount_point="secret")
