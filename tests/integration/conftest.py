"""A real OpenBao server (raft storage, initialised and unsealed) for the Vault layer tests."""

from collections.abc import Iterator
from pathlib import Path

import hvac
import pytest

from e2e.harness.openbao import OpenBao
from e2e.harness.vaultadmin import OpenBaoWithDeclaredAudit


@pytest.fixture(scope="session")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBao]:
    server = OpenBao(Path(tmp_path_factory.mktemp("openbao")))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def locked_bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBao]:
    """An OpenBao without `unsafe_allow_api_audit_creation`, with one declared audit device."""
    server = OpenBaoWithDeclaredAudit(
        Path(tmp_path_factory.mktemp("openbao-locked")), allow_api_audit=False
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def root(bao: OpenBao) -> hvac.Client:
    """A root-token client of the shared server."""
    return bao.client()
