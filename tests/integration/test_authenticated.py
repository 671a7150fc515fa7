"""with_client against a real OpenBao: a revoked token is replaced by one new login; a token
that is alive but lacks a grant keeps its session (no login per reconcile)."""

import hvac
import pytest

from e2e.harness.openbao import OpenBao
from vaultsync.vault import policies
from vaultsync.vault.authenticated import with_client
from vaultsync.vault.client import Endpoint
from vaultsync.vault.errors import PermissionDenied
from vaultsync.vault.sessions import Identity, Sessions, TokenLogin

pytestmark = pytest.mark.integration


class FreshTokens:
    """Login material: a new token with the given policies for every login."""

    def __init__(self, root: hvac.Client, policies: list[str]) -> None:
        self.root = root
        self.policies = policies
        self.issued: list[str] = []

    def secret_value(self, namespace: str, name: str, key: str) -> str:
        token = str(
            self.root.auth.token.create(policies=self.policies, ttl="1h")["auth"]["client_token"]
        )
        self.issued.append(token)
        return token

    def service_account_token(
        self, namespace: str, name: str, audiences: tuple[str, ...], expiration_seconds: int
    ) -> str:
        raise AssertionError("not used")


def _setup(bao: OpenBao) -> tuple[FreshTokens, Sessions, Identity]:
    root = bao.client()
    root.sys.create_or_update_acl_policy(
        "it-read-own", 'path "sys/policies/acl/it-read-own" { capabilities = ["read"] }'
    )
    tokens = FreshTokens(root, ["it-read-own"])
    return tokens, Sessions(tokens), Identity(Endpoint(bao.address), TokenLogin("ns", "s", "k"))


def test_revoked_token_is_replaced_once(bao: OpenBao) -> None:
    tokens, sessions, identity = _setup(bao)
    assert with_client(sessions, identity, lambda c: policies.read(c, "it-read-own"))
    bao.client().auth.token.revoke(tokens.issued[0])
    assert with_client(sessions, identity, lambda c: policies.read(c, "it-read-own"))
    assert len(tokens.issued) == 2


def test_missing_grant_keeps_the_session(bao: OpenBao) -> None:
    tokens, sessions, identity = _setup(bao)
    assert with_client(sessions, identity, lambda c: policies.read(c, "it-read-own"))
    for _ in range(3):
        with pytest.raises(PermissionDenied):
            with_client(sessions, identity, lambda c: policies.read(c, "root"))
    assert len(tokens.issued) == 1
