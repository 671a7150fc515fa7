"""`make dev` / `make down`: the local stack with the operator and examples/ applied.

Everything runs detached and is recorded under the state dir, so `make dev` returns
with the stack still up; run it again to re-show the state, `make down` to stop it.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path

from e2e.harness.binaries import build
from e2e.harness.chart import ChartRelease
from e2e.harness.controlplane import ControlPlane
from e2e.harness.openbao import OpenBao
from e2e.harness.polling import eventually
from e2e.harness.stack import Operator, apply, examples, start_stack
from e2e.harness.vaultadmin import grant_operator

EXAMPLE_DATA = {"username": "app", "password": "dev-only-password"}


DEV_TOKEN_LIFETIME = 365 * 24 * 3600
"""The dev stack may run for long: its operator's ServiceAccount token is asked for a year."""


def _components(state: Path) -> tuple[ControlPlane, OpenBao, ChartRelease, Operator]:
    """The operator runs as the chart runs it (e2e/harness/chart.py), with the chart's
    defaults: its ServiceAccount, RBAC, env and args."""
    cp = ControlPlane(state / "cluster")
    release = ChartRelease(cp, state / "chart", token_lifetime=DEV_TOKEN_LIFETIME)
    return cp, OpenBao(state / "openbao"), release, Operator(state / "operator", release)


def up(state: Path) -> None:
    build()
    cp, bao, release, operator = _components(state)
    start_stack(cp, bao)
    release.install()
    grant_operator(bao.client())  # the one bootstrap step; examples/ do the rest
    kv = bao.client().secrets.kv.v2
    kv.create_or_update_secret("team-a/db", EXAMPLE_DATA, mount_point="secret")
    operator.start()
    apply(cp, examples(bao.address))
    eventually(
        lambda: (
            cp.kubectl("get", "secret", "db-credentials", "-n", "team-a", check=False).returncode
            == 0
        ),
        120,
        "the synced Secret team-a/db-credentials",
    )
    cp.kubectl("wait", "--for=condition=Ready", "vaultsecret/db", "-n", "team-a", "--timeout=60s")
    print(cp.kubectl("get", "vaultpolicies,vaulttransitkeys,vaultsecrets", "-A").stdout)
    secret = cp.kubectl(
        "get", "secret", "db-credentials", "-n", "team-a", "-o", "jsonpath={.data}"
    ).stdout
    print("Secret team-a/db-credentials (decoded; example data from secret/team-a/db):")
    for key, value in sorted(json.loads(secret).items()):
        print(f"  {key}: {base64.b64decode(value).decode()}")
    print(
        f"\nexport KUBECONFIG={cp.kubeconfig} VAULT_ADDR={bao.address} "
        f"VAULT_TOKEN={bao.root_token}\n"
        f"kubectl: {cp.binaries.kubectl}\noperator log: {operator.log}\n"
        "Try: bao kv put secret/team-a/db username=app password=changed  "
        "(the Secret follows within 10s)\nStop everything with: make down"
    )


def down(state: Path) -> None:
    cp, bao, _release, operator = _components(state)
    operator.stop()
    bao.stop()
    cp.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.harness.dev")
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument("--state-dir", type=Path, default=Path(".dev"))
    args = parser.parse_args(argv)
    state = args.state_dir.resolve()
    (up if args.command == "up" else down)(state)
    return 0


if __name__ == "__main__":
    sys.exit(main())
