"""The Kubernetes requests every reconcile makes, over our own connections (kube/transport.py),
against the real API server: answers, refusals and an unreachable or untrusted server."""

from __future__ import annotations

import json
import socket
import uuid
from pathlib import Path

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from e2e.harness.manifests import vault_secret
from e2e.harness.pki import Ca, distinguished_name, write_pem
from e2e.harness.polling import eventually
from e2e.harness.stack import Stack
from vaultsync import GROUP, VERSION
from vaultsync.kube import secrets, status
from vaultsync.kube.api import Kube, describe
from vaultsync.kube.core import CoreV1
from vaultsync.runtime.errors import SyncError

pytestmark = pytest.mark.e2e


def _configuration(stack: Stack) -> client.Configuration:
    configuration = client.Configuration()
    config.load_kube_config(str(stack.cp.kubeconfig), client_configuration=configuration)
    return configuration


def _kube(configuration: client.Configuration) -> Kube:
    api = client.ApiClient(configuration)
    return Kube(CoreV1(api), client.CustomObjectsApi(api))


@pytest.fixture(params=["direct", "through the ApiClient"])
def kube(request: pytest.FixtureRequest, stack: Stack) -> Kube:
    """Over our own connections, and through the ApiClient (socket options of its own are
    one of the configurations our connections leave to it): the same answers either way."""
    configuration = _configuration(stack)
    if request.param != "direct":
        configuration.socket_options = []
    kube = _kube(configuration)
    assert kube.core.requests.direct == (request.param == "direct")
    return kube


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_secret_round_trip_and_refusals(stack: Stack, tenant: str, kube: Kube) -> None:
    name = f"rt-{uuid.uuid4().hex[:6]}"
    body = {"metadata": {"name": name, "labels": {"a": "b"}}, "data": {"k": "djE="}}
    created = kube.core.create_namespaced_secret(tenant, body, field_manager="vaultsync-test")
    assert created["metadata"]["name"] == name
    managers = [m["manager"] for m in created["metadata"]["managedFields"]]
    assert managers == ["vaultsync-test"]  # the query string reached the server
    read = kube.core.read_namespaced_secret(name, tenant)
    assert read["data"] == {"k": "djE="}
    with pytest.raises(ApiException) as exists:
        kube.core.create_namespaced_secret(tenant, body)
    assert exists.value.status == 409
    assert describe(exists.value) == f'409 secrets "{name}" already exists'
    stale = {**read, "data": {"k": "djI="}}
    kube.core.replace_namespaced_secret(name, tenant, stale)
    with pytest.raises(ApiException) as conflict:  # the same resourceVersion again
        kube.core.replace_namespaced_secret(name, tenant, {**stale, "data": {"k": "djM="}})
    assert conflict.value.status == 409
    assert stack.secret_data(tenant, name) == {"k": "v2"}
    kube.core.delete_namespaced_secret(name, tenant)
    assert secrets.read(kube, tenant, name) is None  # 404
    with pytest.raises(ApiException) as invalid:
        kube.core.create_namespaced_secret(tenant, {"metadata": {"name": "Not_Valid"}})
    assert invalid.value.status == 422


def test_status_patch_of_our_kind(stack: Stack, tenant: str, kube: Kube) -> None:
    """A merge patch of the status subresource: the server answers with the object as
    patched, and a patch of an object that is gone is no failure."""
    name = f"st-{uuid.uuid4().hex[:6]}"
    stack.apply(vault_secret(tenant, name, f"{tenant}/absent"))
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{tenant}/vaultsecrets/{name}/status"
    answer = json.loads(
        kube.core.requests.call(
            "PATCH",
            path,
            body={"status": {"observedGeneration": 7}},
            content_type="application/merge-patch+json",
        )
    )
    assert answer["status"]["observedGeneration"] == 7
    assert answer["spec"]["path"] == f"{tenant}/absent"  # the spec is left as it was
    status.patch(kube, "vaultsecrets", tenant, f"gone-{name}", {"observedGeneration": 1})

    def operator_writes_it_again() -> bool:  # the operator's own patches work alike
        conditions = stack.vaultsecret(tenant, name).get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" for c in conditions)

    eventually(operator_writes_it_again, 60, "the operator's status of the VaultSecret")


def test_unreachable_server_is_a_retryable_failure(stack: Stack, tenant: str) -> None:
    configuration = _configuration(stack)
    configuration.host = f"https://127.0.0.1:{_free_port()}"
    kube = _kube(configuration)
    with pytest.raises(ApiException) as refused:
        kube.core.read_namespaced_secret("any", tenant)
    assert refused.value.status == 0
    assert describe(refused.value).startswith("API server unreachable: ConnectionRefusedError")
    with pytest.raises(SyncError) as failed:
        secrets.read(kube, tenant, "any")
    assert failed.value.retryable and failed.value.reason == "KubernetesError"
    with pytest.raises(status.StatusWriteFailed, match="API server unreachable"):
        status.patch(kube, "vaultsecrets", tenant, "any", {"observedGeneration": 1})


def test_untrusted_server_is_refused(stack: Stack, tenant: str, tmp_path: Path) -> None:
    """A CA that did not sign the API server's certificate: no request is sent."""
    other_ca = tmp_path / "ca.crt"
    write_pem(other_ca, Ca(distinguished_name("not-the-cluster-ca")).certificate())
    configuration = _configuration(stack)
    configuration.ssl_ca_cert = str(other_ca)
    kube = _kube(configuration)
    assert kube.core.requests.direct
    with pytest.raises(ApiException) as refused:
        kube.core.read_namespaced_secret("any", tenant)
    assert refused.value.status == 0
    assert "CERTIFICATE_VERIFY_FAILED" in describe(refused.value)
