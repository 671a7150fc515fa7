"""`vaultsync run` starts the operator; `vaultsync crds DIR` writes the CRDs; `vaultsync encrypt`
and `vaultsync rewrap` make VaultSecret manifests that carry transit ciphertext."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import socket
import sys
import threading
from pathlib import Path

import kopf

from vaultsync.runtime.readiness import Readiness
from vaultsync.runtime.sharding import Sharding

LOG_FORMATS = ("plain", "json")


def _logger_name(record: logging.LogRecord) -> bool:
    record.logger = record.name  # an extra attribute: kopf's JSON formatter adds it as a field
    return True


def configure_logging(log_format: str, verbose: bool) -> None:
    """plain: one line of text per record. json: one JSON object per line, from kopf's own
    JSON formatter (message, severity, timestamp, logger, exc_info, and `object`, the
    apiVersion/kind/namespace/name/uid of the object a kopf record is about)."""
    if log_format == "json":
        kopf.configure(verbose=verbose, log_format=kopf.LogFormat.JSON, log_refkey="object")
        for handler in logging.getLogger().handlers:
            handler.addFilter(_logger_name)
    else:
        logging.basicConfig(
            level=logging.DEBUG if verbose else logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )


def _run(args: argparse.Namespace) -> None:
    from vaultsync import handlers  # noqa: F401 - registers the handlers with kopf

    configure_logging(args.log_format, args.verbose)
    if not args.verbose:
        # kopf says "Handler ... succeeded" for every watch event; keep its warnings only
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    # Readiness (runtime/readiness.py): kopf raises `started` once the startup handlers are
    # done; handlers.configure adds the watch checks and the Vault report to memo.readiness.
    readiness, started = Readiness(), threading.Event()
    if args.readiness:
        readiness.add("startup", lambda: None if started.is_set() else "starting")
        readiness.serve(args.readiness)
    try:
        sharding = _sharding(args)
    except ValueError as exc:
        raise SystemExit(f"vaultsync run: {exc}") from None
    asyncio.run(
        kopf.operator(
            clusterwide=True,
            standalone=True,  # replicas meet through Leases of their own (kube/leases.py)
            liveness_endpoint=args.liveness,
            ready_flag=started,
            memo=kopf.Memo(readiness=readiness if args.readiness else None, sharding=sharding),
        )
    )


def _positive(text: str) -> int:
    raise argparse.ArgumentTypeError(f"{text} is not a positive number")


def _sharding(args: argparse.Namespace) -> Sharding | None:
    """--shards N: the namespaces shared out in N shards. --peering NAME: the live replica of
    highest priority does everything, the others stand by; equal priorities would be decided
    by name, hence a random default."""
    identity = args.identity or socket.gethostname().lower()
    if args.shards is not None:
        return Sharding(identity, args.shards, args.lease_group, args.lease_duration)
    if args.peering:
        priority = args.priority if args.priority is not None else random.randint(1, 2**30)
        lifetime = float(os.environ.get("VAULTSYNC_PEERING_LIFETIME", "60"))
        return Sharding(identity, 0, args.peering, lifetime, priority)
    return None


def _crds(args: argparse.Namespace) -> None:
    from vaultsync.api.crds import write_all

    for directory in args.dirs:
        for path in write_all(Path(directory)):
            print(path)


def _read(source: str) -> str:
    """A manifest's text from a file, or stdin for "-"."""
    return sys.stdin.read() if source == "-" else Path(source).read_text()


def _transit(args: argparse.Namespace) -> None:
    from vaultsync.runtime.errors import SyncError
    from vaultsync.transit import commands
    from vaultsync.transit.manifests import ManifestError

    access = commands.VaultAccess(args.vault_addr, args.vault_token, args.vault_cacert)
    try:
        if args.command == "encrypt":
            manifest = None if args.file is None else _read(args.file)
            plain = commands.plain_input(manifest, args.pairs)
            output = commands.encrypt(
                access.client(),
                plain,
                key=args.key,
                mount=args.mount,
                name=args.name,
                namespace=args.namespace,
            )
        else:
            output = commands.rewrap(access.client(), _read(args.file), args.namespace)
    except (ManifestError, SyncError, OSError) as exc:
        raise SystemExit(f"vaultsync {args.command}: {exc}") from None
    sys.stdout.write(output)


def _vault_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vault-addr", help="Vault's address (default: $VAULT_ADDR)")
    parser.add_argument(
        "--vault-token", help="your Vault token (default: $VAULT_TOKEN; prefer the variable)"
    )
    parser.add_argument("--vault-cacert", help="CA file to trust Vault with ($VAULT_CACERT)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="vaultsync")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the operator")
    run.add_argument("--verbose", action="store_true")
    run.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=os.environ.get("VAULTSYNC_LOG_FORMAT", "plain"),
        help="plain text or one JSON object per line (default: $VAULTSYNC_LOG_FORMAT or plain)",
    )
    mode = run.add_mutually_exclusive_group()
    mode.add_argument(
        "--standalone", action="store_true", help="no peering: for a single replica or local runs"
    )
    mode.add_argument(
        "--peering",
        metavar="NAME",
        help="active/standby: replicas meet in Leases named NAME-* in the operator's namespace; "
        "the live one of highest priority works, the others stand by and take over within "
        "$VAULTSYNC_PEERING_LIFETIME seconds (default 60) when it dies",
    )
    mode.add_argument(
        "--shards",
        type=lambda text: int(text) if int(text) > 0 else _positive(text),
        metavar="N",
        help="share the work with other replicas: namespaces hashed into N shards, each held "
        "by one replica through a Lease; cluster-scoped kinds on one of them (the leader)",
    )
    run.add_argument(
        "--priority", type=int, help="with --peering: the highest live priority is active"
    )
    run.add_argument(
        "--identity",
        default=os.environ.get("POD_NAME"),
        help="with --shards or --peering: this replica's name, unique among them (default: "
        "$POD_NAME, else the host name)",
    )
    run.add_argument(
        "--lease-group",
        default="vaultsync",
        help="with --shards: the prefix of the Leases, in the operator's namespace",
    )
    run.add_argument(
        "--lease-duration",
        type=float,
        default=float(os.environ.get("VAULTSYNC_LEASE_DURATION", "15")),
        help="with --shards: seconds after which a dead replica's shards are taken over "
        "(default: $VAULTSYNC_LEASE_DURATION or 15)",
    )
    run.add_argument("--liveness", default="http://0.0.0.0:8081/healthz")
    run.add_argument(
        "--readiness",
        metavar="URL",
        help="serve readiness at this URL (http://HOST:PORT/PATH): 200 once started and "
        "able to watch everything it watches; off when not given",
    )
    run.set_defaults(func=_run)
    crds = commands.add_parser("crds", help="write the CRD manifests")
    crds.add_argument("dirs", nargs="+")
    crds.set_defaults(func=_crds)
    encrypt = commands.add_parser(
        "encrypt",
        help="print a VaultSecret manifest whose spec.encrypted holds the values of a Secret "
        "manifest, or of KEY=value pairs, as transit ciphertext (with your Vault token)",
    )
    encrypt.add_argument("pairs", nargs="*", metavar="KEY=value")
    encrypt.add_argument(
        "-f", "--file", help="a Secret manifest (data and stringData), - for stdin"
    )
    encrypt.add_argument("--key", required=True, help="the transit key to encrypt with")
    encrypt.add_argument("--mount", default="transit", help="the transit mount (transit)")
    encrypt.add_argument(
        "--name", help="the VaultSecret's and Secret's name (default: the Secret's)"
    )
    encrypt.add_argument(
        "--namespace",
        help="the VaultSecret's namespace, the transit context (default: the Secret's)",
    )
    _vault_flags(encrypt)
    encrypt.set_defaults(func=_transit)
    rewrap = commands.add_parser(
        "rewrap",
        help="print VaultSecret manifests with their ciphertexts rewrapped to the latest "
        "version of their transit key (other documents as they are)",
    )
    rewrap.add_argument("file", help="the manifests (YAML), - for stdin")
    rewrap.add_argument(
        "--namespace", help="for manifests without metadata.namespace: their namespace"
    )
    _vault_flags(rewrap)
    rewrap.set_defaults(func=_transit)
    args = parser.parse_args(argv)
    if args.command == "run" and args.log_format not in LOG_FORMATS:  # a bad $VAULTSYNC_LOG_FORMAT
        run.error(f"--log-format: {args.log_format!r} is not one of {', '.join(LOG_FORMATS)}")
    args.func(args)
