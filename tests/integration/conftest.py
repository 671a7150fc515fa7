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
