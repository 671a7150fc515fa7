"""What finding opted-in workloads costs in memory: watching them vs listing on demand.

    python -m e2e.harness.bench.workload_memory [--count 1000]

Starts a local control plane, creates `count` Deployments (a realistic pod template: one
container, 12 environment variables, probes, resources; 0 replicas, so no pods), a tenth of
them annotated `vaultsync.io/restart-on-change`, and measures, each in a fresh Python process
(RSS from /proc, in MiB):

- `idle`: Python with kopf and the kubernetes client imported, a kopf operator with no
  handler on Deployments (the baseline of the kopf variants);
- `kopf-index`: the same operator plus `@kopf.index` on Deployments keeping only the opt-in
  annotation (the smallest thing a kopf watch can keep), after it has seen every Deployment;
- `kopf-event`: `@kopf.on.event` on Deployments, keeping nothing;
- `informer`: a plain watch keeping every Deployment as the typed client returns it (what an
  informer cache does);
- `list-full` / `list-metadata`: one LIST of the namespace's Deployments as JSON dicts / as
  PartialObjectMetadataList (no specs), keeping only the opted-in names; the peak (VmHWM)
  during the list and what stays after it;
- `vaultsync`: what the operator does on a data change (kube.workloads.Workloads.opted_in):
  metadata only, in pages of 100 (measured from after the imports).

The results are in docs/vaultsecret.md ("What watching workloads would cost").
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import client, config

from e2e.harness import ROOT
from e2e.harness.binaries import build
from e2e.harness.controlplane import ControlPlane

NAMESPACE = "workloads"
OPT_IN = "vaultsync.io/restart-on-change"


def deployment(index: int) -> dict[str, Any]:
    name = f"app-{index:04d}"
    annotations = {OPT_IN: "db-credentials"} if index % 10 == 0 else {}
    container = {
        "name": "app",
        "image": f"registry.example.com/team/app-{index % 50}:1.2.{index % 7}",
        "env": [{"name": f"SETTING_{n}", "value": f"value-{n}-{index}"} for n in range(12)],
        "ports": [{"name": "http", "containerPort": 8080}],
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"memory": "256Mi"},
        },
        "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "labels": {"app": name, "team": f"team-{index % 9}"},
            "annotations": annotations,
        },
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name, "team": f"team-{index % 9}"}},
                "spec": {"containers": [container]},
            },
        },
    }


PRELUDE = """
import gc, json, os, sys, threading, time
def rss():
    values = {}
    for line in open("/proc/self/status"):
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values
"""

KOPF = (
    PRELUDE
    + """
import kopf, logging
COUNT = int(sys.argv[1]); MODE = sys.argv[2]
seen = set()
def done():
    time.sleep(8); gc.collect(); print(json.dumps(rss()), flush=True); os._exit(0)
def saw(name):
    seen.add(name)
    if len(seen) == COUNT:
        threading.Thread(target=done, daemon=True).start()
@kopf.on.startup()
def configure(settings, **_):
    settings.posting.enabled = False
    settings.watching.server_timeout = 300
    if MODE == "idle":
        threading.Thread(target=done, daemon=True).start()
if MODE == "kopf-index":
    @kopf.index("apps", "v1", "deployments")
    def opted_in(name, annotations, **_):
        saw(name)
        value = annotations.get("vaultsync.io/restart-on-change")
        return {name: value} if value else None
if MODE == "kopf-event":
    @kopf.on.event("apps", "v1", "deployments")
    def event(name, **_):
        saw(name)
logging.getLogger().setLevel(logging.WARNING)
kopf.run(standalone=True, clusterwide=True)
"""
)

PLAIN = (
    PRELUDE
    + """
from kubernetes import client, config, watch
COUNT = int(sys.argv[1]); MODE = sys.argv[2]; NAMESPACE = sys.argv[3]
api = config.new_client_from_config(os.environ["KUBECONFIG"])
custom = client.CustomObjectsApi(api)
before = rss()
if MODE == "informer":
    cache = {}
    for event in watch.Watch().stream(client.AppsV1Api(api).list_namespaced_deployment, NAMESPACE):
        cache[event["object"].metadata.name] = event["object"]
        if len(cache) == COUNT:
            break
    gc.collect(); after = rss()
    print(json.dumps({**after, "before": before["VmRSS"], "kept": len(cache)}), flush=True)
elif MODE == "vaultsync":
    from vaultsync.kube.api import Kube
    from vaultsync.kube.workloads import DEPLOYMENT, Workloads
    workloads = Workloads(Kube(client.CoreV1Api(api), custom))
    gc.collect(); before = rss()  # after the imports (the typed CoreV1Api alone is ~20 MiB)
    found = workloads.opted_in(DEPLOYMENT, NAMESPACE)
    gc.collect(); after = rss()
    print(json.dumps({**after, "before": before["VmRSS"], "peak": after["VmHWM"],
                      "kept": len(found)}), flush=True)
else:
    headers = {"Accept": "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"}
    response = custom.list_namespaced_custom_object(
        "apps", "v1", NAMESPACE, "deployments", _preload_content=False,
        **({"_headers": headers} if MODE == "list-metadata" else {}))
    raw = response.data
    listing = json.loads(raw)
    found = {i["metadata"]["name"] for i in listing["items"]
             if "vaultsync.io/restart-on-change" in (i["metadata"].get("annotations") or {})}
    size = len(raw)
    peak = rss()
    del listing, raw, response
    gc.collect(); after = rss()
    print(json.dumps({**after, "before": before["VmRSS"], "peak": peak["VmHWM"],
                      "bytes": size, "kept": len(found)}), flush=True)
"""
)


def measure(script: str, kubeconfig: Path, *args: str) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as handle:
        handle.write(textwrap.dedent(script))
    result = subprocess.run(
        [sys.executable, handle.name, *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={"KUBECONFIG": str(kubeconfig), "PYTHONPATH": str(ROOT / "operator")},
        check=False,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"{args}: no measurement\n{result.stdout}\n{result.stderr[-3000:]}")
    found: dict[str, Any] = json.loads(lines[-1])
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.harness.bench.workload_memory")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    build()
    with tempfile.TemporaryDirectory(prefix="vaultsync-workloads-") as tmp:
        cp = ControlPlane(Path(tmp) / "cluster")
        cp.start()
        try:
            api = config.new_client_from_config(str(cp.kubeconfig))
            client.CoreV1Api(api).create_namespace({"metadata": {"name": NAMESPACE}})
            apps = client.AppsV1Api(api)
            started = time.monotonic()
            with ThreadPoolExecutor(8) as pool:
                list(
                    pool.map(
                        lambda i: apps.create_namespaced_deployment(NAMESPACE, deployment(i)),
                        range(args.count),
                    )
                )
            print(f"{args.count} Deployments in {time.monotonic() - started:.1f}s", flush=True)
            time.sleep(5)  # let the deployment controller write its statuses
            count = str(args.count)
            rows: dict[str, list[dict[str, Any]]] = {}
            for _ in range(args.repeat):
                for mode in ("idle", "kopf-index", "kopf-event"):
                    rows.setdefault(mode, []).append(measure(KOPF, cp.kubeconfig, count, mode))
                for mode in ("informer", "list-full", "list-metadata", "vaultsync"):
                    rows.setdefault(mode, []).append(
                        measure(PLAIN, cp.kubeconfig, count, mode, NAMESPACE)
                    )
            print(json.dumps(rows, indent=1))
            print(
                f"\n{'variant':15} {'RSS MiB (median)':>18} {'peak':>8} {'before':>8} {'bytes':>10}"
            )
            for mode, samples in rows.items():
                samples.sort(key=lambda s: s["VmRSS"])
                mid = samples[len(samples) // 2]
                print(
                    f"{mode:15} {mid['VmRSS']:18.1f} {mid.get('peak', mid['VmHWM']):8.1f} "
                    f"{mid.get('before', float('nan')):8.1f} {mid.get('bytes', 0):10d}"
                )
        finally:
            cp.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
