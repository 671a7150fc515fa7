"""A VaultConnection's TLS CA and Vault namespace, against real OpenBao servers."""

from collections.abc import Iterator
from pathlib import Path

import hvac.exceptions
import pytest

from e2e.harness.openbao import OpenBao
from e2e.harness.polling import eventually
from vaultsync.vault import kv
from vaultsync.vault.client import Endpoint, new_client
from vaultsync.vault.errors import VaultUnavailable

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tls_bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBao]:
    server = OpenBao(Path(tmp_path_factory.mktemp("openbao-tls")), tls=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_the_connections_ca_is_trusted(tls_bao: OpenBao) -> None:
    assert tls_bao.address.startswith("https://")
    tls_bao.client().secrets.kv.v2.create_or_update_secret(
        "tls/app", {"k": "over-tls"}, mount_point="secret"
    )
    client = new_client(Endpoint(tls_bao.address, ca_pem=tls_bao.ca_pem), tls_bao.root_token)
    assert kv.read(client, "secret", "tls/app").data == {"k": "over-tls"}


def test_an_unknown_ca_is_refused_not_ignored(tls_bao: OpenBao) -> None:
    client = new_client(Endpoint(tls_bao.address), tls_bao.root_token)
    with pytest.raises(VaultUnavailable) as err:
        kv.read(client, "secret", "tls/app")
    assert "SSLError" in str(err.value)


def test_reads_happen_in_the_connections_vault_namespace(bao: OpenBao) -> None:
    root = bao.client()
    root.sys.create_namespace("team-ns")
    scoped = new_client(Endpoint(bao.address, namespace="team-ns"), bao.root_token)
    scoped.sys.enable_secrets_engine("kv", path="secret", options={"version": "2"})
    eventually(  # a fresh KV v2 mount refuses writes while it upgrades itself
        lambda: scoped.secrets.kv.v2.create_or_update_secret(
            "app", {"k": "in-ns"}, mount_point="secret"
        ),
        30,
        "the namespace's KV mount",
        retry_on=(hvac.exceptions.VaultError,),
    )
    assert kv.read(scoped, "secret", "app").data == {"k": "in-ns"}
    with pytest.raises(Exception):  # noqa: B017 - not in the root namespace
        kv.read(root, "secret", "app")
