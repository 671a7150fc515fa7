"""In the kind cluster only (VAULTSYNC_E2E_PROFILE=kind, e2e/harness/kind.py): the image the
Dockerfile builds, run by the chart as a pod, with the in-cluster config and the kubelet
probing it. In the default (local) profile these skip (e2e/conftest.py)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from e2e.harness.chart import OPERATOR_NAMESPACE, RELEASE
from e2e.harness.kind import IMAGE
from e2e.harness.manifests import vault_secret
from e2e.harness.polling import eventually
from e2e.harness.stack import Stack

pytestmark = pytest.mark.e2e


def operator_pod(stack: Stack) -> dict[str, Any]:
    out = stack.cp.kubectl(
        "get", "pods", "-n", OPERATOR_NAMESPACE, "-o", "json",
        "-l", f"app.kubernetes.io/instance={RELEASE}",
    )  # fmt: skip
    (pod,) = json.loads(out.stdout)["items"]
    found: dict[str, Any] = pod
    return found


def test_the_image_runs_as_the_chart_says_and_the_kubelet_finds_it_ready(stack: Stack) -> None:
    pod = operator_pod(stack)
    (container,) = pod["spec"]["containers"]
    assert container["image"] == IMAGE
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    conditions = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert conditions["Ready"] == "True"  # the kubelet's readiness probe passed
    (status,) = pod["status"]["containerStatuses"]
    assert status["ready"] is True and status["restartCount"] == 0
    user = stack.cp.kubectl(
        "exec", pod["metadata"]["name"], "-n", OPERATOR_NAMESPACE, "--", "id", "-u"
    )
    assert user.stdout.strip() == "65532"


def test_the_operator_uses_the_in_cluster_config(stack: Stack) -> None:
    assert "Client is configured in cluster with service account." in stack.operator.log_text()


def test_probes_through_the_api_server(stack: Stack) -> None:
    assert stack.operator.probe("healthz")[0] == 200
    status, body = stack.operator.probe("readyz")
    assert status == 200, body
    report = json.loads(body)
    assert report["ready"] is True
    assert all(v == "ok" for k, v in report["checks"].items() if k.startswith("watch ")), report


def test_a_vaultsecret_syncs_in_cluster(stack: Stack, tenant: str) -> None:
    value = f"in-cluster-{uuid.uuid4().hex[:8]}"
    stack.put(f"{tenant}/db", {"password": value})
    stack.apply(vault_secret(tenant, "db", f"{tenant}/db"))
    eventually(lambda: stack.secret_data(tenant, "db") == {"password": value}, 120, "the Secret")
