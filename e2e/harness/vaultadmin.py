"""Helpers for the cluster-wide configuration kinds (VaultPolicy, VaultAuditDevice,
VaultTransitKey): the operator's own Vault identity and an
OpenBao that refuses API-created audit devices but declares one in its config.

These kinds log in as the operator: a VaultAuth in the operator's
namespace whose ServiceAccount maps to a Vault role with the policy below.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import hvac

from e2e.harness.manifests import API_VERSION
from e2e.harness.openbao import OpenBao
from e2e.harness.stack import OPERATOR_NAMESPACE

ADMIN_SERVICE_ACCOUNT = "vaultsync-admin"
ADMIN_POLICY = """\
path "sys/policies/acl/*" { capabilities = ["create", "read", "update", "delete", "list"] }
path "auth/+/role/*" { capabilities = ["create", "read", "update", "delete", "list"] }
path "sys/audit" { capabilities = ["read", "sudo"] }
path "sys/audit/*" { capabilities = ["create", "update", "delete", "sudo"] }
path "transit/keys/*" { capabilities = ["create", "read", "update", "delete", "list"] }
"""
DECLARED_AUDIT_PATH = "declared"


def grant_operator(vault: hvac.Client, role: str = ADMIN_SERVICE_ACCOUNT) -> None:
    """Vault side: the admin policy and a Kubernetes-auth role for the operator's SA."""
    vault.sys.create_or_update_acl_policy(role, ADMIN_POLICY)
    vault.write_data(
        f"auth/kubernetes/role/{role}",
        data={
            "bound_service_account_names": [ADMIN_SERVICE_ACCOUNT],
            "bound_service_account_namespaces": [OPERATOR_NAMESPACE],
            "token_policies": [role],
            "token_ttl": 3600,
        },
    )


def operator_objects(auth: str, connection: str, address: str) -> list[dict[str, Any]]:
    """Kubernetes side: the ServiceAccount, a VaultConnection and the operator's VaultAuth."""
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": ADMIN_SERVICE_ACCOUNT, "namespace": OPERATOR_NAMESPACE},
        },
        {
            "apiVersion": API_VERSION,
            "kind": "VaultConnection",
            "metadata": {"name": connection},
            "spec": {"address": address},
        },
        {
            "apiVersion": API_VERSION,
            "kind": "VaultAuth",
            "metadata": {"name": auth, "namespace": OPERATOR_NAMESPACE},
            "spec": {
                "connectionRef": connection,
                "kubernetes": {
                    "role": ADMIN_SERVICE_ACCOUNT,
                    "serviceAccount": ADMIN_SERVICE_ACCOUNT,
                },
            },
        },
    ]


class OpenBaoWithDeclaredAudit(OpenBao):
    """An OpenBao whose config declares a file audit device (an OpenBao >= 2.4 `audit` block)."""

    def _write_config(self) -> Path:
        config = super()._write_config()
        log = json.dumps(str(self.workdir / "declared-audit.log"))
        config.write_text(
            config.read_text()
            + f'audit "file" "{DECLARED_AUDIT_PATH}" {{\n'
            + f"  options {{\n    file_path = {log}\n  }}\n}}\n"
        )
        return config
