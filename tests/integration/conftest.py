"""A real OpenBao server (file storage, initialised and unsealed) for the Vault layer tests."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.localcluster import OpenBao


@pytest.fixture(scope="session")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBao]:
    server = OpenBao(Path(tmp_path_factory.mktemp("openbao")))
    server.start()
    try:
        yield server
    finally:
        server.stop()


DECLARED_AUDIT_PATH = "declared"


class _OpenBaoWithDeclaredAudit(OpenBao):
    """An OpenBao whose config declares a file audit device (OpenBao >= 2.4 `audit` block)."""

    def _write_config(self) -> Path:
        config = super()._write_config()
        log = self.workdir / "declared-audit.log"
        config.write_text(
            config.read_text()
            + f'audit "file" "{DECLARED_AUDIT_PATH}" {{\n'
            + f'  options {{\n    file_path = "{log}"\n  }}\n}}\n'
        )
        return config


@pytest.fixture(scope="session")
def locked_bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBao]:
    """An OpenBao without `unsafe_allow_api_audit_creation`, with one declared audit device."""
    server = _OpenBaoWithDeclaredAudit(
        Path(tmp_path_factory.mktemp("openbao-locked")), allow_api_audit=False
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()
