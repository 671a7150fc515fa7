"""What the kube-apiserver served, from its own `apiserver_request_total`: requests by verb and
resource, less the ones the benchmark itself made.

Only resource requests count: non-resource ones (`/metrics` scraped here, discovery, health)
are left out, and so are WATCH and CONNECT, which are long-running and counted when they end.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from e2e.harness.controlplane import ControlPlane
from e2e.harness.metrics import parse

REQUESTS = "apiserver_request_total"
LONG_RUNNING = ("WATCH", "CONNECT")
BACKGROUND = ("leases",)
"""Coordination, not per-object work: the control plane keeps writing Leases by itself
(kube-controller-manager's leader election, the API server's identity lease), and replicas
with `--shards` renew theirs on a timer, whatever the number of objects. Shown, but not in
the totals."""

Requests = Counter[str]
"""Request counts by "VERB resource[/subresource]", e.g. "PATCH vaultsecrets/status"."""


def request_key(verb: str, resource: str, subresource: str = "") -> str:
    return f"{verb} {resource}" + (f"/{subresource}" if subresource else "")


def served(cp: ControlPlane) -> Requests:
    """The API server's request counters now (admin kubeconfig, `get --raw /metrics`); only
    the lines of REQUESTS go to prometheus_client's parser, the rest of the page is large."""
    text = cp.kubectl("get", "--raw", "/metrics").stdout
    wanted = "\n".join(
        line
        for line in text.splitlines()
        if line.startswith((REQUESTS, f"# HELP {REQUESTS} ", f"# TYPE {REQUESTS} "))
    )
    found: Requests = Counter()
    for sample in parse(wanted + "\n"):
        labels = sample.labels
        if sample.name != REQUESTS or not labels.get("resource"):
            continue
        if labels["verb"] in LONG_RUNNING:
            continue
        found[request_key(labels["verb"], labels["resource"], labels.get("subresource", ""))] += (
            int(sample.value)
        )
    return found


@dataclass(frozen=True)
class Snapshot:
    """The API server's counts and the benchmark's own requests at one moment."""

    served: Requests
    own: Requests

    def since(self, before: Snapshot) -> Requests:
        """Requests served since before, the benchmark's own taken out."""
        delta = self.served.copy()
        delta.subtract(before.served)
        delta.subtract(self.own)
        delta.update(before.own)
        return Counter({key: n for key, n in delta.items() if n > 0})


def counted(requests: Requests) -> int:
    """The total, BACKGROUND resources left out."""
    return sum(n for key, n in requests.items() if resource_of(key) not in BACKGROUND)


def resource_of(key: str) -> str:
    """The resource of a request_key, without verb and subresource."""
    return key.split(" ")[1].split("/")[0]
