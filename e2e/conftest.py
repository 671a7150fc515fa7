"""Session fixtures: a real control plane, a real OpenBao and the operator as a process.

Everything is started once per session in a temporary directory and torn down at the
end; tests isolate themselves with namespaces of their own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client, config

from e2e.harness.binaries import build
from e2e.harness.controlplane import ControlPlane
from e2e.harness.manifests import namespace_object
from e2e.harness.openbao import OpenBao
from e2e.harness.stack import Operator, Stack, add_tenant, grant_tenant, start_stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    build()
    root = tmp_path_factory.mktemp("stack")
    cp = ControlPlane(root / "cluster")
    bao = OpenBao(root / "openbao")
    # Audit devices in the tests write under pytest's temporary directories, and only there.
    audit_dirs = str(tmp_path_factory.getbasetemp())
    operator = Operator(
        root / "operator", cp.kubeconfig, verbose=True, VAULTSYNC_AUDIT_FILE_DIRS=audit_dirs
    )
    try:
        start_stack(cp, bao)
        audit_log = root / "openbao" / "audit.log"
        bao.client().sys.enable_audit_device(
            "file", path="file", options={"file_path": str(audit_log)}
        )
        operator.start()
        api = config.new_client_from_config(str(cp.kubeconfig))
        stack = Stack(
            cp, bao, operator, client.CoreV1Api(api), client.CustomObjectsApi(api), audit_log
        )
        yield stack
        leaks = stack.leaks()
        assert not leaks, leaks
    finally:
        operator.stop()
        bao.stop()
        cp.stop()


@pytest.fixture
def tenant(stack: Stack) -> Iterator[str]:
    """A fresh namespace with a VaultAuth `default` and a Vault role/policy of its own."""
    namespace = f"t-{uuid.uuid4().hex[:8]}"
    add_tenant(stack.cp, stack.bao, namespace)
    yield namespace
    stack.cp.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.fixture
def victim(stack: Stack) -> Iterator[str]:
    """Another tenant's namespace, with its own Vault role and policy and KV data at <victim>/db
    (no VaultAuth): what a tenant must not get at."""
    namespace = f"v-{uuid.uuid4().hex[:8]}"
    stack.apply(namespace_object(namespace))
    grant_tenant(stack.vault, namespace)
    stack.put(f"{namespace}/db", {"password": f"victim-secret-{uuid.uuid4().hex[:6]}"})
    yield namespace
    stack.cp.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
