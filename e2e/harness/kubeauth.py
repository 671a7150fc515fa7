"""OpenBao's Kubernetes auth pointed at the local control plane: how tenants log in."""

from __future__ import annotations

import json
from typing import Any

from e2e.harness.controlplane import ControlPlane
from e2e.harness.openbao import OpenBao

TOKEN_REVIEWER_NAMESPACE = "vaultsync-system"
TOKEN_REVIEWER_NAME = "vault-token-reviewer"
TOKEN_REVIEWER_TTL = "8760h"


def configure_kubernetes_auth(bao: OpenBao, cp: ControlPlane, mount: str = "kubernetes") -> None:
    """Point OpenBao's Kubernetes auth at `cp`, reviewing tokens as a dedicated SA.

    Idempotent. The reviewer is `vaultsync-system/vault-token-reviewer`, bound to
    `system:auth-delegator`, with a one-year TokenRequest token.
    """
    cp.kubectl("apply", "-f", "-", input=json.dumps(_token_reviewer_manifests()))
    jwt = cp.kubectl(
        "create",
        "token",
        TOKEN_REVIEWER_NAME,
        "--namespace",
        TOKEN_REVIEWER_NAMESPACE,
        f"--duration={TOKEN_REVIEWER_TTL}",
    ).stdout.strip()
    client = bao.client()
    if f"{mount}/" not in client.sys.list_auth_methods()["data"]:
        client.sys.enable_auth_method("kubernetes", path=mount)
    client.auth.kubernetes.configure(
        kubernetes_host=cp.server,
        kubernetes_ca_cert=cp.ca_pem,
        token_reviewer_jwt=jwt,
        disable_local_ca_jwt=True,
        mount_point=mount,
    )


def _token_reviewer_manifests() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": TOKEN_REVIEWER_NAMESPACE},
            },
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": TOKEN_REVIEWER_NAME, "namespace": TOKEN_REVIEWER_NAMESPACE},
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": f"{TOKEN_REVIEWER_NAME}-auth-delegator"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "system:auth-delegator",
                },
                "subjects": [
                    {
                        "kind": "ServiceAccount",
                        "name": TOKEN_REVIEWER_NAME,
                        "namespace": TOKEN_REVIEWER_NAMESPACE,
                    }
                ],
            },
        ],
    }
