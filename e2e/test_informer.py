"""The informer (kube/informer.py) against the real API server: a list in pages, a watch that
the server ends every second and that is resumed each time, and a label selection that an
object leaves; every change arrives once, in order, and nothing arrives twice."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from kubernetes import client, config

from e2e.harness.stack import Stack
from vaultsync.kube.core import CoreV1
from vaultsync.kube.informer import Event, Informer

pytestmark = pytest.mark.e2e

LABEL = "e2e-informer"


def _core(stack: Stack) -> client.CoreV1Api:
    configuration = client.Configuration()
    config.load_kube_config(str(stack.cp.kubeconfig), client_configuration=configuration)
    return client.CoreV1Api(client.ApiClient(configuration))


def test_pages_resumed_watches_and_leaving_the_selection(stack: Stack, tenant: str) -> None:
    core = _core(stack)
    run = uuid.uuid4().hex[:6]
    selector = f"{LABEL}={run}"

    def secret(name: str, value: str) -> dict[str, Any]:
        return {
            "metadata": {"name": name, "labels": {LABEL: run}},
            "stringData": {"v": value},
        }

    before = [f"before-{i}" for i in range(5)]
    for name in before:
        core.create_namespaced_secret(tenant, secret(name, "0"))
    got: list[Event] = []

    async def main() -> None:
        follower = Informer(
            CoreV1(core.api_client).requests,
            f"/api/v1/namespaces/{tenant}/secrets",
            lambda kind, obj: got.append((kind, obj)),
            label_selector=selector,
            page=2,  # three pages
            server_timeout=1,  # a watch ends every second and is resumed from where it was
        )
        follower.start()
        try:
            await asyncio.to_thread(follower.listed.wait, 30)
            for step in range(4):  # changes spread over several resumed watches
                await asyncio.to_thread(
                    core.create_namespaced_secret, tenant, secret(f"w{step}", "0")
                )
                await asyncio.to_thread(
                    core.patch_namespaced_secret, before[step], tenant, {"stringData": {"v": "1"}}
                )
                await asyncio.sleep(0.7)
            await asyncio.to_thread(core.delete_namespaced_secret, "w0", tenant)
            unlabel = {"metadata": {"labels": {LABEL: None}}}
            await asyncio.to_thread(core.patch_namespaced_secret, "w1", tenant, unlabel)
            expected = 5 + 4 * 2 + 2
            for _ in range(100):
                if len(got) >= expected:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.5)  # another resumption: nothing is delivered again
        finally:
            await asyncio.to_thread(follower.stop)

    asyncio.run(main())
    seen = [(kind, obj["metadata"]["name"]) for kind, obj in got]
    assert sorted(seen[:5]) == [("ADDED", name) for name in before]
    assert seen[5:] == [
        *(
            change
            for step in range(4)
            for change in (("ADDED", f"w{step}"), ("MODIFIED", before[step]))
        ),
        ("DELETED", "w0"),
        ("DELETED", "w1"),  # no longer selected: the server says DELETED
    ]
    versions = [obj["metadata"]["resourceVersion"] for _, obj in got]
    assert len(set(versions)) == len(versions)
