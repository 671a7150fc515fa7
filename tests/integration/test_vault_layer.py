"""The Vault layer against a real OpenBao: KV reads, error mapping, login reuse."""

import uuid
from collections.abc import Iterator

import hvac
import pytest

from e2e.harness.openbao import OpenBao
from vaultsync.vault import kv
from vaultsync.vault.client import Endpoint, new_client
from vaultsync.vault.errors import (
    AuthenticationFailed,
    PermissionDenied,
    SecretNotFound,
    SecretVersionDeleted,
    VaultSealed,
    VaultUnavailable,
)
from vaultsync.vault.sessions import Identity, Sessions, TokenLogin

pytestmark = pytest.mark.integration


@pytest.fixture
def path(root: hvac.Client) -> Iterator[str]:
    name = f"it/{uuid.uuid4().hex[:8]}"
    yield name
    root.secrets.kv.v2.delete_metadata_and_all_versions(name, mount_point="secret")


def test_read_latest_and_pinned_versions(root: hvac.Client, path: str) -> None:
    root.secrets.kv.v2.create_or_update_secret(path, {"a": "1"}, mount_point="secret")
    root.secrets.kv.v2.create_or_update_secret(path, {"a": "2", "n": 3}, mount_point="secret")
    latest = kv.read(root, "secret", path)
    assert (latest.version, latest.data) == (2, {"a": "2", "n": 3})
    assert kv.read(root, "secret", path, 1).data == {"a": "1"}


def test_missing_path_and_missing_version(root: hvac.Client, path: str) -> None:
    with pytest.raises(SecretNotFound):
        kv.read(root, "secret", path)
    root.secrets.kv.v2.create_or_update_secret(path, {"a": "1"}, mount_point="secret")
    with pytest.raises(SecretNotFound):
        kv.read(root, "secret", path, 9)


def test_deleted_and_destroyed_versions(root: hvac.Client, path: str) -> None:
    root.secrets.kv.v2.create_or_update_secret(path, {"a": "1"}, mount_point="secret")
    root.secrets.kv.v2.create_or_update_secret(path, {"a": "2"}, mount_point="secret")
    root.secrets.kv.v2.delete_secret_versions(path, [2], mount_point="secret")
    with pytest.raises(SecretVersionDeleted):
        kv.read(root, "secret", path)
    root.secrets.kv.v2.destroy_secret_versions(path, [1], mount_point="secret")
    with pytest.raises(SecretVersionDeleted):
        kv.read(root, "secret", path, 1)


def test_permission_denied_is_mapped_and_names_no_value(root: hvac.Client, path: str) -> None:
    root.secrets.kv.v2.create_or_update_secret(path, {"pw": "do-not-leak"}, mount_point="secret")
    root.sys.create_or_update_policy(
        "it-nothing", 'path "secret/data/other/*" { capabilities = ["read"] }'
    )
    token = root.auth.token.create(policies=["it-nothing"], ttl="5m")["auth"]["client_token"]
    limited = hvac.Client(url=root.url, token=token)
    with pytest.raises(PermissionDenied) as err:
        kv.read(limited, "secret", path)
    assert "do-not-leak" not in str(err.value)
    assert path in str(err.value)


def test_bad_token_is_an_authentication_error(bao: OpenBao, path: str) -> None:
    with pytest.raises((AuthenticationFailed, PermissionDenied)):
        kv.read(hvac.Client(url=bao.address, token="s.nope"), "secret", path)


def test_unreachable_server() -> None:
    client = new_client(Endpoint("http://127.0.0.1:1", timeout=2))
    with pytest.raises(VaultUnavailable):
        kv.read(client, "secret", "x")


class CountingCredentials:
    def __init__(self, token: str) -> None:
        self.token = token
        self.reads = 0

    def service_account_token(self, *args: object) -> str:
        raise AssertionError("not used")

    def secret_value(self, namespace: str, name: str, key: str) -> str:
        self.reads += 1
        return self.token


def test_one_login_per_identity_reused(bao: OpenBao, root: hvac.Client, path: str) -> None:
    root.secrets.kv.v2.create_or_update_secret(path, {"a": "1"}, mount_point="secret")
    creds = CountingCredentials(bao.root_token)
    sessions = Sessions(creds)
    identity = Identity(Endpoint(bao.address), TokenLogin("ns", "tok", "token"))
    other = Identity(Endpoint(bao.address), TokenLogin("ns2", "tok", "token"))
    for _ in range(5):
        kv.read(sessions.client(identity), "secret", path)
    assert creds.reads == 1
    kv.read(sessions.client(other), "secret", path)
    assert creds.reads == 2
    sessions.invalidate(identity, sessions.client(identity))
    kv.read(sessions.client(identity), "secret", path)
    assert creds.reads == 3


def test_sealed_server_is_reported_as_sealed(tmp_path_factory: pytest.TempPathFactory) -> None:
    server = OpenBao(tmp_path_factory.mktemp("sealed"))
    server.start()
    try:
        server.client().secrets.kv.v2.create_or_update_secret("x", {"a": "1"}, mount_point="secret")
        client = new_client(Endpoint(server.address), server.root_token)
        server.seal()
        with pytest.raises(VaultSealed):
            kv.read(client, "secret", "x")
        server.unseal()
        assert kv.read(client, "secret", "x").data == {"a": "1"}
    finally:
        server.stop()
