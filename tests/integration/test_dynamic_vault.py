"""The lease calls of the Vault layer against a real OpenBao and a real PostgreSQL: read a
dynamic credential that logs in, renew its lease (and see Vault cap it at max_ttl), revoke it
(the role is dropped), a lease Vault no longer knows, a static role's password, and what a
tenant without the grants is told. Every call is made with a tenant token holding only the
minimal policy that docs/vaultdynamicsecret.md gives."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import hvac
import pytest

from e2e.harness.openbao import OpenBao
from e2e.harness.postgres import STATIC_USER, Postgres
from vaultsync.vault import leases
from vaultsync.vault.errors import PermissionDenied

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    server = Postgres()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def mount(bao: OpenBao, postgres: Postgres) -> str:
    name = f"db-{uuid.uuid4().hex[:6]}"
    postgres.configure_vault(
        bao.client(), mount=name, ttl="6s", max_ttl="12s", rotation_period="1h"
    )
    return name


def tenant(root: hvac.Client, rules: str) -> hvac.Client:
    """A client whose token has only the policy rules (not even Vault's `default` policy,
    which grants sys/leases/renew)."""
    policy = f"db-tenant-{uuid.uuid4().hex[:6]}"
    root.sys.create_or_update_policy(policy, rules)
    created = root.auth.token.create(policies=[policy], ttl="10m", no_default_policy=True)
    token = created["auth"]["client_token"]
    return hvac.Client(url=root.url, token=token)


def minimal(mount: str) -> str:
    """The tenant policy of docs/vaultdynamicsecret.md for one role (and the static one)."""
    return (
        f'path "{mount}/creds/app" {{ capabilities = ["read"] }}\n'
        f'path "{mount}/static-creds/static" {{ capabilities = ["read"] }}\n'
        f'path "sys/leases/renew/{mount}/creds/app/*" {{ capabilities = ["update"] }}\n'
        f'path "sys/leases/revoke/{mount}/creds/app/*" {{ capabilities = ["update"] }}\n'
    )


def test_a_dynamic_credential_logs_in_renews_and_is_revoked(
    root: hvac.Client, mount: str, postgres: Postgres
) -> None:
    client = tenant(root, minimal(mount))
    before = postgres.counts()
    credential = leases.read(client, mount, "creds/app")
    assert credential.leased and credential.renewable and credential.ttl == 6
    assert credential.lease_id.startswith(f"{mount}/creds/app/")
    assert sorted(credential.data) == ["password", "username"]
    assert credential.data["password"] not in repr(credential)
    user, password = credential.data["username"], credential.data["password"]
    assert postgres.can_log_in(user, password)
    assert postgres.counts().issued == before.issued + 1 and user in postgres.roles()

    renewed = leases.renew(client, credential.lease_id, credential.ttl)
    assert renewed.ttl == 6 and renewed.renewable
    lookup = root.sys.read_lease(credential.lease_id)["data"]
    assert 4 <= lookup["ttl"] <= 6

    time.sleep(4)
    assert leases.renew(client, credential.lease_id, credential.ttl).ttl == 6
    time.sleep(4)  # past the first lease's end: the renewals kept it; max_ttl is 4 s away
    capped = leases.renew(client, credential.lease_id, credential.ttl)
    assert capped.ttl < credential.ttl  # Vault caps the extension at max_ttl
    assert postgres.can_log_in(user, password)

    leases.revoke(client, credential.lease_id)
    assert user not in postgres.roles()
    assert not postgres.can_log_in(user, password)
    after = postgres.counts()
    assert after.revoked == before.revoked + 1
    with pytest.raises(leases.LeaseGone):
        leases.renew(client, credential.lease_id, 6)
    leases.revoke(client, credential.lease_id)  # revoking again is done already


def test_a_lease_revoked_out_of_band_is_lease_gone(
    root: hvac.Client, mount: str, postgres: Postgres
) -> None:
    client = tenant(root, minimal(mount))
    credential = leases.read(client, mount, "creds/app")
    root.sys.revoke_lease(credential.lease_id)
    with pytest.raises(leases.LeaseGone, match="lease not found") as caught:
        leases.renew(client, credential.lease_id, 6)
    assert not caught.value.retryable
    assert credential.data["username"] not in postgres.roles()


def test_a_static_role_has_no_lease_and_says_when_it_rotates(
    root: hvac.Client, mount: str, postgres: Postgres
) -> None:
    client = tenant(root, minimal(mount))
    credential = leases.read(client, mount, "static-creds/static")
    assert not credential.leased and not credential.renewable
    assert 0 < credential.ttl <= 3600
    assert credential.data["username"] == STATIC_USER
    assert "ttl" not in credential.data  # it changes on every read: not data of the credential
    assert postgres.can_log_in(STATIC_USER, credential.data["password"])
    again = leases.read(client, mount, "static-creds/static")
    assert again.data == credential.data  # nothing rotated: the same data


def test_what_a_tenant_without_the_grants_is_told(root: hvac.Client, mount: str) -> None:
    nothing = tenant(root, 'path "secret/*" { capabilities = ["read"] }\n')
    with pytest.raises(PermissionDenied, match=f"needs 'read' on {mount}/creds/app"):
        leases.read(nothing, mount, "creds/app")
    credential = leases.read(tenant(root, minimal(mount)), mount, "creds/app")
    renew = f"needs 'update' on sys/leases/renew/{credential.lease_id}"
    with pytest.raises(PermissionDenied, match=renew):
        leases.renew(nothing, credential.lease_id, 6)
    with pytest.raises(PermissionDenied, match=f"needs 'update' on sys/leases/revoke/{mount}/"):
        leases.revoke(nothing, credential.lease_id)
    # the grants of one role do not reach the leases of another
    Postgres.add_role(root, "other", mount=mount, ttl="1m", max_ttl="1m")
    other = leases.read(root, mount, "creds/other")
    with pytest.raises(PermissionDenied):
        leases.revoke(tenant(root, minimal(mount)), other.lease_id)
    for lease in (credential.lease_id, other.lease_id):
        root.sys.revoke_lease(lease)


def test_a_path_that_issues_nothing_is_credential_refused(root: hvac.Client, mount: str) -> None:
    with pytest.raises(leases.CredentialRefused):
        leases.read(root, mount, "creds/no-such-role")
    root.secrets.kv.v2.create_or_update_secret("dyn-probe", {"a": "b"}, mount_point="secret")
    with pytest.raises(leases.CredentialRefused, match="no lease and no ttl"):
        leases.read(root, "secret", "data/dyn-probe")
