"""The operator runs as the chart runs it: the chart's ServiceAccount (a TokenRequest token,
no client certificate), RBAC, args and env; its liveness and readiness endpoints over HTTP.

Every other e2e test already talks to such an operator (e2e/conftest.py): these tests check
that it really is one, and what its probes say in each state.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.harness.chart import OPERATOR_NAMESPACE, ChartRelease, e2e_values
from e2e.harness.polling import eventually
from e2e.harness.stack import Operator, Stack

pytestmark = pytest.mark.e2e
VAULT_CHECK = "vault (VaultConnection default)"


def probe(operator: Operator, which: str) -> tuple[int | None, dict[str, Any]]:
    status, body = operator.probe(which)
    return status, (json.loads(body) if which == "readyz" and body else {})


def ready(operator: Operator) -> dict[str, Any] | None:
    status, body = probe(operator, "readyz")
    return body if status == 200 else None


def vault_ok(operator: Operator) -> bool:
    body = ready(operator)
    return body is not None and body["checks"][VAULT_CHECK] == "ok"


def test_the_operator_authenticates_as_the_charts_service_account(stack: Stack) -> None:
    kubeconfig = yaml.safe_load(stack.operator.kubeconfig.read_text())
    (user,) = kubeconfig["users"]
    assert set(user["user"]) == {"token"}, "a token only: no client certificate, no admin"
    whoami = stack.cp.kubectl(
        "auth", "whoami", "-o", "json", "--kubeconfig", str(stack.operator.kubeconfig)
    )
    username = json.loads(whoami.stdout)["status"]["userInfo"]["username"]
    assert username == f"system:serviceaccount:{OPERATOR_NAMESPACE}:vaultsync"
    denied = stack.cp.kubectl(
        "get", "configmaps", "-A", "--kubeconfig", str(stack.operator.kubeconfig), check=False
    )
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()


def test_the_operator_runs_with_the_charts_args_and_env(stack: Stack) -> None:
    """Exactly the rendered container's args and env (addresses on loopback, fieldRefs
    resolved), as the process's /proc shows them."""
    args, env = stack.operator.command()
    assert stack.operator.process is not None
    pid = stack.operator.process.pid
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]
    assert [a.decode() for a in argv][-len(args) :] == args
    assert "--standalone" in args
    assert any(a.startswith("--liveness=http://127.0.0.1:") for a in args)
    assert any(a.startswith("--readiness=http://127.0.0.1:") for a in args)
    environ = dict(
        item.decode().split("=", 1)
        for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        if b"=" in item
    )
    assert {name: environ.get(name) for name in env} == env
    assert env["POD_NAMESPACE"] == OPERATOR_NAMESPACE  # fieldRef metadata.namespace
    assert "VAULTSYNC_NAMESPACE" not in environ
    assert env["VAULTSYNC_WORKERS"] == "32"  # a chart default


def test_liveness_and_readiness_over_http(stack: Stack, tenant: str) -> None:
    """Both probes answer 200; readiness names what it checked, all fine, Vault included."""
    assert probe(stack.operator, "healthz")[0] == 200
    body = eventually(lambda: ready(stack.operator), 30, "/readyz 200")
    assert body["ready"] is True
    checks = body["checks"]
    assert checks["startup"] == "ok"
    for watched in (
        "vaultsecrets.vaultsync.io",
        "vaultpkisecrets.vaultsync.io",
        "vaultdynamicsecrets.vaultsync.io",
        "vaultpolicies.vaultsync.io",
        "vaultauditdevices.vaultsync.io",
        "vaulttransitkeys.vaultsync.io",
        "vaultconnections.vaultsync.io",
        "vaultauths.vaultsync.io",
        "secrets",
        "namespaces",
        "customresourcedefinitions.apiextensions.k8s.io",
    ):
        assert checks[f"watch {watched}"] == "ok", checks
    assert "leases" not in checks  # standalone: no Leases
    assert body["informational"] == [VAULT_CHECK]
    eventually(lambda: vault_ok(stack.operator), 30, "Vault reported reachable")


def test_a_vault_outage_leaves_the_operator_ready_and_says_so(stack: Stack, tenant: str) -> None:
    eventually(lambda: vault_ok(stack.operator), 30, "Vault reported reachable")
    stack.bao.seal()
    try:
        body = eventually(
            lambda: (b := ready(stack.operator)) and "sealed" in b["checks"][VAULT_CHECK] and b,
            30,
            "readiness reporting the sealed Vault",
        )
        assert body["ready"] is True
        assert probe(stack.operator, "healthz")[0] == 200
    finally:
        stack.bao.unseal()
    eventually(lambda: vault_ok(stack.operator), 30, "Vault reported reachable again")


@pytest.fixture
def own_release(stack: Stack, tmp_path: Path) -> Iterator[ChartRelease]:
    """A release of the chart whose operator replaces the session's for one test."""
    release = ChartRelease(
        stack.cp, tmp_path / "chart", e2e_values(), release=f"vs-{uuid.uuid4().hex[:6]}"
    )
    stack.operator.stop()
    try:
        yield release
    finally:
        release.uninstall()
        stack.operator.start()


def test_readiness_follows_rbac(stack: Stack, own_release: ChartRelease, tmp_path: Path) -> None:
    """Unready while it may not start (no ClusterRoleBinding yet), ready once bound, unready
    again while its ClusterRole refuses to watch namespaces; the body says why."""
    objects = own_release.applied()
    binding = next(o for o in objects if o["kind"] == "ClusterRoleBinding")
    role = next(
        o
        for o in objects
        if o["kind"] == "ClusterRole" and o["metadata"]["name"] == binding["roleRef"]["name"]
    )
    stack.apply(*(o for o in objects if o["kind"] != "ClusterRoleBinding"))
    operator = Operator(tmp_path / "operator", own_release)
    operator.start(wait=False)  # it cannot start: no metrics until it can read its HMAC key
    try:
        status, body = eventually(
            lambda: (answer := probe(operator, "readyz"))[0] is not None and answer,
            30,
            "/readyz answering",
        )
        assert status == 503 and body["checks"]["startup"] == "starting", body
        eventually(lambda: "forbidden" in operator.log_text().lower(), 60, "startup refused (403)")
        status, body = probe(operator, "readyz")
        assert status == 503 and body["checks"]["startup"] == "starting", body
        stack.apply(binding)
        eventually(lambda: ready(operator), 60, "/readyz 200 once bound")
        assert probe(operator, "healthz")[0] == 200

        narrowed = json.loads(json.dumps(role))
        for rule in narrowed["rules"]:
            if rule["resources"] == ["namespaces"]:
                rule["verbs"] = [v for v in rule["verbs"] if v != "watch"]
        stack.apply(narrowed)
        status, body = eventually(
            lambda: (answer := probe(operator, "readyz"))[0] == 503 and answer,
            30,
            "/readyz 503 without watch on namespaces",
        )
        assert body["checks"]["watch namespaces"].startswith("cannot watch namespaces: 403")
        assert body["checks"]["watch secrets"] == "ok"
        assert probe(operator, "healthz")[0] == 200  # not a reason to restart it
        stack.apply(role)
        eventually(lambda: ready(operator), 30, "/readyz 200 again")
    finally:
        operator.stop()
