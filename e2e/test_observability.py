"""Metrics scraped from the running operator, and its logs as JSON lines.

The metrics come from the session's operator (`stack.operator.metrics()`), parsed with
prometheus_client's own parser (e2e/harness/metrics.py). The JSON logs come from an operator
of their own (`vaultsync run --log-format json`, at DEBUG), on a control plane and OpenBao of
their own, so that every line it ever writes can be checked.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from e2e.harness.conditions import ready_condition
from e2e.harness.controlplane import ControlPlane
from e2e.harness.manifests import vault_auth, vault_secret
from e2e.harness.metrics import Metrics, parse, total
from e2e.harness.openbao import OpenBao
from e2e.harness.polling import eventually
from e2e.harness.stack import Operator, Stack, add_tenant, start_stack
from vaultsync import GROUP, VERSION

pytestmark = pytest.mark.e2e

OPERATIONS_SEEN = ("kv_read", "login", "seal_status")
"""Vault operations the session has done by the time the VaultSecrets below are Ready."""


def scrape(stack: Stack) -> Metrics:
    return parse(stack.operator.metrics())


def objects_by_state(samples: Metrics, kind: str) -> Counter[tuple[str, str]]:
    """vaultsync_objects of one kind, by (ready, reason)."""
    found: Counter[tuple[str, str]] = Counter()
    for s in samples:
        if s.name == "vaultsync_objects" and s.labels["kind"] == kind and s.value:
            found[(s.labels["ready"], s.labels["reason"])] += int(s.value)
    return found


def vaultsecrets_by_state(stack: Stack) -> Counter[tuple[str, str]]:
    """What the API says: VaultSecrets not being deleted, by their Ready condition."""
    found: Counter[tuple[str, str]] = Counter()
    listed: Any = stack.custom.list_cluster_custom_object(GROUP, VERSION, "vaultsecrets")
    for obj in listed["items"]:
        ready = ready_condition(obj)
        if obj["metadata"].get("deletionTimestamp") or ready is None:
            continue
        found[(ready["status"].lower(), ready["reason"])] += 1
    return found


def reason_is(stack: Stack, namespace: str, name: str, status: str, reason: str) -> bool:
    ready = ready_condition(stack.vaultsecret(namespace, name))
    return ready is not None and (ready["status"], ready["reason"]) == (status, reason)


def test_metrics_from_the_running_operator(stack: Stack, tenant: str) -> None:
    value = f"metrics-secret-{uuid.uuid4().hex[:8]}"
    stack.put(f"{tenant}/app", {"password": value})
    wrong_role = vault_auth(tenant, role=f"no-such-role-{uuid.uuid4().hex[:6]}")
    wrong_role["metadata"]["name"] = "wrong-role"
    before = scrape(stack)
    stack.apply(
        wrong_role,
        vault_secret(tenant, "app", f"{tenant}/app"),
        vault_secret(tenant, "missing", f"{tenant}/does-not-exist"),
        vault_secret(tenant, "refused", f"{tenant}/app", authRef="wrong-role"),
    )
    eventually(lambda: stack.ready_is(tenant, "app", "True"), 60, "app Ready")
    eventually(lambda: reason_is(stack, tenant, "missing", "False", "SecretNotFound"), 60)
    eventually(lambda: reason_is(stack, tenant, "refused", "False", "AuthenticationFailed"), 60)
    after = scrape(stack)

    def grew(name: str, **labels: str) -> bool:
        return total(after, name, **labels) > total(before, name, **labels)

    # build info: the version of the code that runs
    (info,) = [s for s in after if s.name == "vaultsync_build_info"]
    assert (info.labels, info.value) == ({"version": version("vaultsync")}, 1.0)
    # Vault latency by operation, errors by operation and reason, login failures
    for operation in OPERATIONS_SEEN:
        count = total(after, "vaultsync_vault_request_duration_seconds_count", operation=operation)
        assert count > 0, operation
    assert grew("vaultsync_vault_request_duration_seconds_count", operation="kv_read")
    assert grew("vaultsync_vault_request_duration_seconds_count", operation="login")
    errors = "vaultsync_vault_request_errors_total"
    assert grew(errors, operation="kv_read", reason="SecretNotFound")
    assert grew(errors, operation="login", reason="AuthenticationFailed")
    assert grew(
        "vaultsync_vault_login_failures_total", method="kubernetes", reason="AuthenticationFailed"
    )
    assert grew("vaultsync_vault_logins_total", method="kubernetes")
    operations = {s.labels["operation"] for s in after if "operation" in s.labels}
    assert {"kv_read", "login"} <= operations
    # objects by state: what the operator counts is what the API shows (once it settles)
    mine = objects_by_state(after, "VaultSecret")
    assert mine[("true", "Synced")] >= 1
    assert mine[("false", "SecretNotFound")] >= 1
    assert mine[("false", "AuthenticationFailed")] >= 1
    eventually(
        lambda: objects_by_state(scrape(stack), "VaultSecret") == vaultsecrets_by_state(stack),
        60,
        "vaultsync_objects{kind=VaultSecret} matching the VaultSecrets' Ready conditions",
    )
    # a deleted object leaves the count
    stack.custom.delete_namespaced_custom_object(GROUP, VERSION, tenant, "vaultsecrets", "missing")
    eventually(
        lambda: (
            objects_by_state(scrape(stack), "VaultSecret") == vaultsecrets_by_state(stack)
            and not exists(stack, tenant, "missing")
        ),
        60,
        "the deleted VaultSecret gone from vaultsync_objects",
    )
    # no label names a path, a namespace of ours or a value, and no value shows anywhere
    text = stack.operator.metrics()
    assert value not in text
    for s in scrape(stack):
        if s.name.startswith("vaultsync_") and not s.name.startswith("vaultsync_rollout_restarts"):
            for label in s.labels.values():
                assert tenant not in label and "does-not-exist" not in label, (s.name, s.labels)


def exists(stack: Stack, namespace: str, name: str) -> bool:
    try:
        stack.vaultsecret(namespace, name)
    except client.ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


# --------------------------------------------------------------------------- JSON logs


@dataclass
class JsonStack:
    cp: ControlPlane
    bao: OpenBao
    operator: Operator
    custom: client.CustomObjectsApi
    core: client.CoreV1Api


@pytest.fixture(scope="module")
def json_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JsonStack]:
    root = Path(tmp_path_factory.mktemp("jsonlogs"))
    cp, bao = ControlPlane(root / "cluster"), OpenBao(root / "openbao")
    operator = Operator(root / "operator", cp.kubeconfig, verbose=True, VAULTSYNC_LOG_FORMAT="json")
    try:
        start_stack(cp, bao)
        operator.start()
        api = config.new_client_from_config(str(cp.kubeconfig))
        yield JsonStack(cp, bao, operator, client.CustomObjectsApi(api), client.CoreV1Api(api))
    finally:
        operator.stop()
        bao.stop()
        cp.stop()


def test_json_logs_are_json_lines_without_secret_values(json_stack: JsonStack) -> None:
    namespace = f"json-{uuid.uuid4().hex[:6]}"
    add_tenant(json_stack.cp, json_stack.bao, namespace)
    value = f"json-log-secret-{uuid.uuid4().hex[:8]}"
    json_stack.bao.client().secrets.kv.v2.create_or_update_secret(
        f"{namespace}/db", {"password": value}, mount_point="secret"
    )
    manifest = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            vault_secret(namespace, "db", f"{namespace}/db"),
            vault_secret(namespace, "missing", f"{namespace}/nope"),
        ],
    }
    json_stack.cp.kubectl("apply", "-f", "-", input=json.dumps(manifest))

    def synced() -> bool:
        try:
            secret = json_stack.core.read_namespaced_secret("db", namespace)
        except client.ApiException:
            return False
        return bool(secret.data and "password" in secret.data)

    eventually(synced, 60, "the Secret synced")

    def failed() -> bool:
        obj: Any = json_stack.custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, "vaultsecrets", "missing"
        )
        ready = ready_condition(obj)
        return ready is not None and ready["reason"] == "SecretNotFound"

    eventually(failed, 60, "the missing path reported")
    text = json_stack.operator.log_text()
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) > 10
    records = []
    for line in lines:
        record = json.loads(line)  # every line is one JSON object
        assert isinstance(record, dict), line
        assert {"message", "severity", "timestamp", "logger"} <= record.keys(), line
        records.append(record)
    assert {r["severity"] for r in records} >= {"debug", "info"}
    about = [r for r in records if (r.get("object") or {}).get("namespace") == namespace]
    assert {(r["object"]["kind"], r["object"]["name"]) for r in about} >= {
        ("VaultSecret", "db"),
        ("VaultSecret", "missing"),
    }
    assert {r["logger"] for r in records} & {"kopf.objects", "vaultsync.handlers"}
    assert value not in text
