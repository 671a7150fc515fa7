"""Test tooling: a real local stack (control plane, OpenBao, the operator) for `make dev`,
`make bench` and the e2e and integration tests. Nothing in here is a test.

- ``gobuild``, ``binaries``, ``helm``: Go builds of etcd, kube-*, kubectl and helm (cached)
- ``kstatus``: kstatus (sigs.k8s.io/cli-utils, what Flux uses) of live objects, by the Go
  helper in e2e/kstatus (cached)
- ``processes``, ``polling``: detached server processes and the one polling loop
- ``pki``, ``controlplane``, ``openbao``, ``kubeauth``: the servers and their wiring
- ``stack``, ``manifests``, ``conditions``, ``metrics``, ``vaultadmin``, ``argocd``: the
  operator as a process and what tests and benchmarks say to it and read from it
- ``cli`` (``python -m e2e.harness``), ``dev`` (``make dev``), ``bench`` (``make bench``)
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The repository's root directory."""


class HarnessError(RuntimeError):
    """A local component failed to build, start or stop."""


def log(message: str) -> None:
    print(f"harness: {message}", file=sys.stderr, flush=True)
