"""``python -m e2e.harness.bench``: run the benchmark sizes and write the report."""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from e2e.harness import ROOT
from e2e.harness.bench import __doc__ as bench_doc
from e2e.harness.bench.dynamic import DynamicResult, run_dynamic
from e2e.harness.bench.measure import SizeResult, run_size, say
from e2e.harness.bench.report import (
    dynamic_section,
    report,
    rotation_table,
    sharding_table,
    table,
)
from e2e.harness.bench.rotation import RotationResult, run_rotation
from e2e.harness.bench.sharding import ShardingResult, run_sharding
from e2e.harness.binaries import build


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m e2e.harness.bench", description=(bench_doc or "").split("\n")[0]
    )
    parser.add_argument("--sizes", default="1000", help="comma-separated VaultSecret counts")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--namespaces", type=int, default=10, help="tenants = Vault identities")
    parser.add_argument("--refresh", type=int, default=15, help="refreshInterval, seconds")
    parser.add_argument("--changes", type=int, default=10, help="KV entries changed")
    parser.add_argument(
        "--timeout", type=float, default=900, help="bound of each wait for all objects (s)"
    )
    parser.add_argument("--no-outage", dest="outage", action="store_false")
    parser.add_argument(
        "--no-from-create",
        dest="from_create",
        action="store_false",
        help="skip the initial sync timed from the first create (a stack of its own per size)",
    )
    parser.add_argument(
        "--operator-source",
        type=Path,
        help="the operator/ directory of another checkout to run (default: this one's)",
    )
    parser.add_argument(
        "--rotations",
        type=int,
        default=100,
        help="VaultSecrets rotated at once, each restarting a Deployment of its own",
    )
    parser.add_argument(
        "--sharding-size",
        type=int,
        default=1000,
        help="VaultSecrets of the sharding scenario (3 sharded replicas against 1)",
    )
    parser.add_argument(
        "--no-sharding",
        dest="sharding",
        action="store_false",
        help="skip the sharding scenario (a stack of its own)",
    )
    parser.add_argument(
        "--dynamic-size",
        type=int,
        default=100,
        help="VaultDynamicSecrets of the dynamic scenario (database credentials, PostgreSQL)",
    )
    parser.add_argument(
        "--no-dynamic",
        dest="dynamic",
        action="store_false",
        help="skip the dynamic scenario (a stack and a PostgreSQL of its own)",
    )
    parser.add_argument(
        "--only",
        choices=("sizes", "rotation", "sharding", "dynamic"),
        help="run only the sizes, the rotation, the sharding or the dynamic scenario (the "
        "report holds only it)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if args.only not in (None, "sizes"):
        sizes = []

    # SIGTERM (e.g. a CI timeout) unwinds like Ctrl-C, through every teardown below
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    build()
    tmp = Path(tempfile.mkdtemp(prefix="vaultsync-bench-"))
    results: list[SizeResult] = []
    rotation: RotationResult | None = None
    sharding: ShardingResult | None = None
    dynamic: DynamicResult | None = None
    ok = True
    try:
        for size in sizes:
            result, size_ok = run_size(tmp / f"n{size}", size, args)
            results.append(result)
            ok = ok and size_ok
            if size_ok and not args.keep:
                shutil.rmtree(tmp / f"n{size}", ignore_errors=True)
            print(f"\n### N = {size}\n\n{table(result)}\n", flush=True)
        if args.rotations > 0 and args.only in (None, "rotation"):
            rotation, rotation_ok = run_rotation(tmp / "rotation", args)
            ok = ok and rotation_ok
            print(f"\n### Rotation, N = {args.rotations}\n\n{rotation_table(rotation)}\n")
        if args.sharding and args.only in (None, "sharding"):
            sharding, sharding_ok = run_sharding(tmp / "sharding", args)
            ok = ok and sharding_ok
            print(f"\n### Sharding, N = {sharding.size}\n\n{sharding_table(sharding)}\n")
        if args.dynamic and args.only in (None, "dynamic"):
            dynamic, dynamic_ok = run_dynamic(tmp / "dynamic", args)
            ok = ok and dynamic_ok
            print("\n".join(dynamic_section(dynamic)), flush=True)
    finally:
        if ok and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            say(f"stack files (logs) kept in {tmp}")
    text = report(results, rotation, args, time.monotonic() - started, sharding, dynamic)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    say(f"wrote {args.out} in {(time.monotonic() - started) / 60:.1f} min")
    if rotation is not None and rotation.violations:
        say("FAILED: rotation with restarts broke a guarantee (see the report):")
        for violation in rotation.violations:
            say(f"  - {violation}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
