"""The operator through a restart of kube-apiserver, on a stack of its own: its informers
(kube/informer.py) resume their watches once the server is back, so that a VaultSecret
applied afterwards syncs and a Secret deleted afterwards is written again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from e2e.harness.controlplane import ControlPlane
from e2e.harness.manifests import vault_secret
from e2e.harness.openbao import OpenBao
from e2e.harness.polling import eventually
from e2e.harness.stack import Operator, add_tenant, apply, secret_data, start_stack

pytestmark = pytest.mark.e2e

NAMESPACE = "restarted"


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ControlPlane, OpenBao]]:
    root = Path(tmp_path_factory.mktemp("apiserver-restart"))
    cp, bao = ControlPlane(root / "cluster"), OpenBao(root / "openbao")
    operator = Operator(root / "operator", cp.kubeconfig)
    try:
        start_stack(cp, bao)
        add_tenant(cp, bao, NAMESPACE)
        operator.start()
        yield cp, bao
    finally:
        operator.stop()
        bao.stop()
        cp.stop()


def test_changes_after_an_apiserver_restart_are_followed(
    own_stack: tuple[ControlPlane, OpenBao],
) -> None:
    cp, bao = own_stack
    vault = bao.client()
    for name in ("before", "after"):
        vault.secrets.kv.v2.create_or_update_secret(
            f"{NAMESPACE}/{name}", {"password": f"{name}-value"}, mount_point="secret"
        )
    # refreshed hourly: within the test only the watch of the Secret can bring it back
    apply(cp, [vault_secret(NAMESPACE, "before", f"{NAMESPACE}/before", refreshInterval="1h")])
    core = client.CoreV1Api(config.new_client_from_config(str(cp.kubeconfig)))
    eventually(lambda: secret_data(core, NAMESPACE, "before"), 60, "synced before the restart")

    cp.restart_apiserver(down=3)

    core = client.CoreV1Api(config.new_client_from_config(str(cp.kubeconfig)))
    apply(cp, [vault_secret(NAMESPACE, "after", f"{NAMESPACE}/after")])
    after = eventually(lambda: secret_data(core, NAMESPACE, "after"), 60, "a new VaultSecret")
    assert after == {"password": "after-value"}
    core.delete_namespaced_secret("before", NAMESPACE)
    again = eventually(
        lambda: secret_data(core, NAMESPACE, "before"), 60, "the deleted Secret written again"
    )
    assert again == {"password": "before-value"}
