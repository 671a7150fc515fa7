"""Declared metadata and vaultsync's own markers are repaired like data, at once."""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from e2e.harness.manifests import vault_secret
from e2e.harness.polling import eventually
from e2e.harness.stack import Stack

pytestmark = pytest.mark.e2e

MANAGED_LABEL = "vaultsync.io/managed"


def metadata(stack: Stack, namespace: str, name: str) -> Any:
    return stack.core.read_namespaced_secret(name, namespace).metadata


def declared(stack: Stack, namespace: str) -> bool:
    meta = metadata(stack, namespace, "meta")
    labels, annotations = meta.labels or {}, meta.annotations or {}
    return bool(
        labels.get("app") == "api"
        and labels.get(MANAGED_LABEL) == "true"
        and annotations.get("team") == "payments"
        and annotations.get("vaultsync.io/vaultsecret") == "meta"
    )


@pytest.mark.parametrize(
    "patch",
    [
        {"metadata": {"labels": {"app": "edited-by-hand"}}},
        {"metadata": {"labels": {"app": None}}},
        {"metadata": {"labels": {MANAGED_LABEL: None}}},
        {"metadata": {"annotations": {"team": "edited-by-hand"}}},
        {"metadata": {"labels": {MANAGED_LABEL: None, "app": "x"}}},
    ],
    ids=["label-edited", "label-removed", "our-label-removed", "annotation-edited", "both"],
)
def test_declared_metadata_and_markers_are_repaired(
    stack: Stack, tenant: str, patch: dict[str, Any]
) -> None:
    stack.put(f"{tenant}/meta", {"k": "meta-value-1"})
    stack.apply(
        vault_secret(
            tenant,
            "meta",
            f"{tenant}/meta",
            refreshInterval="1h",  # only the watch can repair it within the wait below
            destination={
                "name": "meta",
                "labels": {"app": "api"},
                "annotations": {"team": "payments"},
            },
        )
    )
    eventually(lambda: declared(stack, tenant), 60, "metadata written", retry_on=(ApiException,))
    stack.core.patch_namespaced_secret("meta", tenant, patch)
    started = time.monotonic()
    eventually(lambda: declared(stack, tenant), 15, "declared metadata repaired", interval=0.1)
    assert time.monotonic() - started < 15


def test_vault_errors_read_without_multierror_wrapping(
    stack: Stack, tenant: str, victim: str
) -> None:
    stack.apply(vault_secret(tenant, "denied", f"{victim}/db"))
    condition = eventually(
        lambda: (c := stack.ready_is(tenant, "denied", "False")) and c, 60, "denied"
    )
    assert condition["reason"] == "PermissionDenied"
    assert "error occurred" not in condition["message"]
    assert not condition["message"].endswith("\n")
    assert "permission denied" in condition["message"]


def test_a_merged_secrets_key_record_removed_by_hand_is_repaired(stack: Stack, tenant: str) -> None:
    """The keys are proven ours by the keyed data-hash: no KeyConflict on our own key, and
    deleting the VaultSecret still removes it."""
    stack.core.create_namespaced_secret(
        tenant, {"metadata": {"name": "shared"}, "stringData": {"theirs": "their-value-1"}}
    )
    stack.put(f"{tenant}/merge", {"ours": "merged-value-1"})
    stack.apply(
        vault_secret(
            tenant,
            "merger",
            f"{tenant}/merge",
            refreshInterval="1h",
            destination={"name": "shared", "creationPolicy": "Merge"},
        )
    )
    both = {"theirs": "their-value-1", "ours": "merged-value-1"}
    eventually(lambda: stack.secret_data(tenant, "shared") == both, 60, "merged keys")
    patch = {"metadata": {"annotations": {"vaultsync.io/managed-keys": None}}}
    stack.core.patch_namespaced_secret("shared", tenant, patch)
    eventually(
        lambda: (
            (metadata(stack, tenant, "shared").annotations or {}).get("vaultsync.io/managed-keys")
            == '["ours"]'
        ),
        15,
        "the key record repaired",
    )
    assert stack.ready_is(tenant, "merger", "True")
    stack.cp.kubectl("delete", "vaultsecret", "merger", "-n", tenant, "--timeout=60s")
    assert stack.secret_data(tenant, "shared") == {"theirs": "their-value-1"}
