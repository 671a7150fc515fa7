"""Session fixtures: a real control plane, a real OpenBao and the operator as a process.

Everything is started once per session in a temporary directory and torn down at the
end; tests isolate themselves with namespaces of their own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from e2e.harness.binaries import build
from e2e.harness.chart import ChartRelease, e2e_values
from e2e.harness.controlplane import ControlPlane
from e2e.harness.kind import (
    KIND_SUITES,
    PROFILE_VARIABLE,
    docker_problem,
    kind_stack,
    profile,
    skip_reason,
)
from e2e.harness.manifests import namespace_object
from e2e.harness.openbao import OpenBao
from e2e.harness.stack import Operator, Stack, add_tenant, grant_tenant, start_stack
from e2e.harness.vaultadmin import ADMIN_SERVICE_ACCOUNT, grant_operator, operator_objects

pytestmark = pytest.mark.e2e


PROFILE = profile()
"""local (the default): the local control plane; kind: e2e/harness/kind.py (needs Docker)."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Each profile runs its suites: in-cluster tests only under kind, and under kind only
    the suites that make sense in-cluster (KIND_SUITES); the rest skip, saying why."""
    here = Path(__file__).parent
    for item in items:
        if here not in item.path.parents:
            continue
        module = item.path.name
        if PROFILE == "local" and module == "test_in_cluster.py":
            reason = f"in-cluster only: {PROFILE_VARIABLE}=kind selects it (needs a Docker engine)"
            item.add_marker(pytest.mark.skip(reason=reason))
        elif PROFILE == "kind" and module not in KIND_SUITES:
            reason = "local control plane only (e2e/harness/kind.py: KIND_SUITES)"
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if PROFILE == "kind":
        yield from _kind_stack(tmp_path_factory)
        return
    build()
    root = tmp_path_factory.mktemp("stack")
    cp = ControlPlane(root / "cluster")
    bao = OpenBao(root / "openbao")
    # The operator runs as the chart runs it (e2e/harness/chart.py): the chart's ServiceAccount,
    # RBAC, env and args, with the e2e values (Argo Rollouts granted: the restart tests use
    # them; audit devices write under pytest's temporary directories, and only there).
    audit_dirs = str(tmp_path_factory.getbasetemp())
    release = ChartRelease(cp, root / "chart", e2e_values(auditFileDirs=[audit_dirs]))
    operator = Operator(root / "operator", release, verbose=True)
    try:
        start_stack(cp, bao)
        release.install()
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


def _kind_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The kind profile's Stack: the image, OpenBao and the chart in a kind cluster."""
    problem = docker_problem()
    if problem is not None:
        pytest.skip(skip_reason(problem))
    root = tmp_path_factory.mktemp("kind")
    with kind_stack(root) as (cp, bao, operator):
        api = config.new_client_from_config(str(cp.kubeconfig))
        core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
        stack = Stack(cp, bao, operator, core, custom, root / "no-audit-log")  # type: ignore[arg-type]
        yield stack
        leaks = stack.leaks()
        assert not leaks, leaks


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


@pytest.fixture
def uid() -> str:
    return uuid.uuid4().hex[:6]


@pytest.fixture
def namespaces(stack: Stack) -> Iterator[list[str]]:
    """Names for namespaces a test creates; they are deleted afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        stack.cp.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")


@pytest.fixture(scope="module")
def operator_identity(stack: Stack) -> None:
    """The operator's own Vault identity (VaultAuth ADMIN_SERVICE_ACCOUNT in its namespace), for the
    modules whose kinds configure Vault cluster-wide."""
    grant_operator(stack.vault)
    stack.apply(*operator_objects(ADMIN_SERVICE_ACCOUNT, "default", stack.bao.address))
