"""``python -m e2e.harness {build,up,down,status}``: the local control plane and OpenBao,
detached, for development (``make dev`` adds the operator and examples/ on top: e2e.harness.dev).

State lives in ``--state-dir`` (default .dev): `up` prints shell exports, `down` stops
everything and keeps the data unless --purge, `status` says what runs.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path

from e2e.harness import HarnessError, log
from e2e.harness.binaries import build
from e2e.harness.controlplane import ControlPlane
from e2e.harness.kubeauth import configure_kubernetes_auth
from e2e.harness.openbao import OpenBao
from e2e.harness.processes import JsonFile


def _components(state_dir: Path) -> tuple[ControlPlane, OpenBao]:
    return ControlPlane(state_dir / "cluster"), OpenBao(state_dir / "openbao")


def _exports(cp: ControlPlane, bao: OpenBao) -> str:
    env = {
        "KUBECONFIG": str(cp.kubeconfig),
        "VAULT_ADDR": bao.address,
        "VAULT_TOKEN": bao.root_token,
    }
    return "export " + " ".join(f"{name}={shlex.quote(value)}" for name, value in env.items())


def _cmd_build(_args: argparse.Namespace) -> int:
    binaries = build()
    print(binaries.kubectl.parent)
    print(binaries.etcd.parent)
    return 0


def _cmd_up(args: argparse.Namespace) -> int:
    cp, bao = _components(args.state_dir)
    if not (cp.running and bao.running):
        build()
        try:
            cp.start()
            bao.start()
            configure_kubernetes_auth(bao, cp)
        except BaseException:
            bao.stop()
            cp.stop()
            raise
        JsonFile(args.state_dir / "state.json").write(
            {
                "kubeconfig": str(cp.kubeconfig),
                "server": cp.server,
                "kubectl": str(cp.binaries.kubectl),
                "vault_addr": bao.address,
                "root_token": bao.root_token,
                "unseal_key": bao.unseal_key,
                "pids": cp.pids | {"openbao": bao.pid},
            }
        )
    log(f"kubectl: {cp.binaries.kubectl}")
    print(_exports(cp, bao))
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    cp, bao = _components(args.state_dir)
    bao.stop()
    cp.stop()
    (args.state_dir / "state.json").unlink(missing_ok=True)
    if args.purge:
        shutil.rmtree(cp.workdir, ignore_errors=True)
        shutil.rmtree(bao.workdir, ignore_errors=True)
        with suppress(OSError):
            args.state_dir.rmdir()
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    cp, bao = _components(args.state_dir)
    pids = cp.pids | {"openbao": bao.pid}
    for name, pid in pids.items():
        print(f"{name:<24} {'stopped' if pid is None else f'running (pid {pid})'}")
    if None in pids.values():
        return 1
    print(_exports(cp, bao))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m e2e.harness",
        description="Local Kubernetes control plane + OpenBao for development and e2e tests.",
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    commands.add_parser(
        "build", help="build the binaries (cached) and print their directories"
    ).set_defaults(handler=_cmd_build)
    for name, handler, description in (
        ("up", _cmd_up, "start everything detached and print shell exports"),
        ("down", _cmd_down, "stop everything (data is kept unless --purge)"),
        ("status", _cmd_status, "show what runs; exit status 1 unless everything does"),
    ):
        command = commands.add_parser(name, help=description)
        command.add_argument(
            "--state-dir",
            type=lambda p: Path(p).resolve(),
            default=".dev",
            help="where cluster and OpenBao state live (default: .dev)",
        )
        command.set_defaults(handler=handler)
    commands.choices["down"].add_argument(
        "--purge", action="store_true", help="also delete cluster and OpenBao data"
    )
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except HarnessError as error:
        print(f"harness: error: {error}", file=sys.stderr)
        return 1
