"""The kind profile (e2e/harness/kind.py), checked where it can be without Docker: how it is
selected and why it skips, the build context the Dockerfile gets, and the manifests and chart
values it applies (through the real API server's validation, on whichever stack runs)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from e2e.harness import ROOT, HarnessError
from e2e.harness.chart import CHART, OPERATOR_NAMESPACE, render
from e2e.harness.kind import (
    IMAGE,
    KIND_SUITES,
    NODE_IMAGE,
    OPENBAO_ADDRESS,
    OPENBAO_NAMESPACE,
    PROFILE_VARIABLE,
    build_context,
    docker_problem,
    dockerfile_copy_sources,
    kind_values,
    openbao_manifests,
    profile,
    skip_reason,
)
from e2e.harness.stack import Stack

pytestmark = pytest.mark.e2e


def test_the_profile_is_local_unless_kind_is_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PROFILE_VARIABLE, raising=False)
    assert profile() == "local"
    monkeypatch.setenv(PROFILE_VARIABLE, "kind")
    assert profile() == "kind"
    monkeypatch.setenv(PROFILE_VARIABLE, "minikube")
    with pytest.raises(HarnessError, match="expected one of local, kind"):
        profile()


def test_without_docker_the_reason_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no docker CLI at all
    assert docker_problem() == "no docker CLI on PATH"
    fake = tmp_path / "docker"  # a CLI whose daemon is not there
    fake.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
    fake.chmod(0o755)
    problem = docker_problem()
    assert problem == "`docker info` failed: Cannot connect to the Docker daemon"
    assert "needs a Docker engine" in skip_reason(problem)


def test_the_kind_profile_skips_here_with_the_reason(tmp_path: Path) -> None:
    """The kind profile run for real on this machine: without a Docker engine every test
    skips, saying why (with one, this test has nothing to show)."""
    problem = docker_problem()
    if problem is None:
        pytest.skip("a Docker engine answers here: the kind profile runs instead of skipping")
    env = {**os.environ, PROFILE_VARIABLE: "kind", "PYTHONPATH": f"{ROOT / 'operator'}:{ROOT}"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "e2e/test_in_cluster.py", "e2e/test_ha.py", "-q", "-rs",
         "-p", "no:randomly", "-p", "no:cacheprovider", f"--basetemp={tmp_path / 'run'}"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "needs a Docker engine" in result.stdout, result.stdout
    assert "local control plane only" in result.stdout, result.stdout  # test_ha
    assert re.search(r"\b\d+ skipped\b", result.stdout) and " passed" not in result.stdout


def test_the_build_context_holds_what_the_image_needs_and_nothing_else() -> None:
    sent = build_context()
    assert "pyproject.toml" in sent
    sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / "operator").rglob("*.py")}
    sources = {s for s in sources if "__pycache__" not in s}
    assert sources <= set(sent), sorted(sources - set(sent))
    for path in sent:
        assert path == "pyproject.toml" or path.startswith("operator/vaultsync/"), path
        assert "__pycache__" not in path and not path.endswith((".pyc", ".pyo")), path
        assert ".egg-info" not in path, path  # pip install . makes its own
    for copied in dockerfile_copy_sources():
        copied = copied.rstrip("/")
        assert any(p == copied or p.startswith(copied + "/") for p in sent), copied


def test_the_kind_node_image_is_inside_the_charts_kube_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    found = re.fullmatch(r">=(\d+)\.(\d+)\.\d+(-0)?", chart["kubeVersion"])
    assert found, chart["kubeVersion"]
    node = re.search(r":v(\d+)\.(\d+)\.\d+$", NODE_IMAGE)
    assert node, NODE_IMAGE
    assert (int(node[1]), int(node[2])) >= (int(found[1]), int(found[2]))


def test_kind_suites_exist() -> None:
    here = Path(__file__).parent
    assert all((here / suite).is_file() for suite in KIND_SUITES), KIND_SUITES


def _dry_run(stack: Stack, objects: list[dict[str, object]]) -> list[str]:
    manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    result = stack.cp.kubectl(
        "apply", "--dry-run=server", "--validate=strict", "-o", "name", "-f", "-", input=manifest
    )
    return result.stdout.split()


def test_the_manifests_and_chart_values_it_applies_pass_the_api_server(
    stack: Stack, tmp_path: Path
) -> None:
    """OpenBao's manifests and the chart rendered with the kind values, through server-side
    dry runs (validation and admission, nothing persisted); the values are the ones the kind
    profile installs with (the image loaded into kind, never pulled; Vault in the cluster)."""
    objects = openbao_manifests()
    namespace = next(o for o in objects if o["kind"] == "Namespace")
    created = stack.cp.kubectl("get", "namespace", OPENBAO_NAMESPACE, check=False).returncode != 0
    stack.cp.kubectl("apply", "-f", "-", input=json.dumps(namespace))
    try:
        names = _dry_run(stack, [o for o in objects if o["kind"] != "Namespace"])
        assert len(names) == len(objects) - 1, names
    finally:
        if created:
            stack.cp.kubectl("delete", "namespace", OPENBAO_NAMESPACE, "--wait=false")

    release = f"vs-{uuid.uuid4().hex[:6]}"
    rendered = render(kind_values(), release=release, workdir=tmp_path)
    (deployment,) = (o for o in rendered if o["kind"] == "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == IMAGE
    assert container["imagePullPolicy"] == "Never"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    (connection,) = (o for o in rendered if o["kind"] == "VaultConnection")
    assert connection["spec"]["address"] == OPENBAO_ADDRESS
    assert all(o["metadata"].get("namespace") in (None, OPERATOR_NAMESPACE) for o in rendered), (
        "the kind profile installs into the operator's namespace"
    )
    names = _dry_run(stack, rendered)
    assert len(names) == len(rendered), names
