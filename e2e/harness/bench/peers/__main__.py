"""``python -m e2e.harness.bench.peers``: build what it needs, run, write the report."""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from e2e.harness import ROOT
from e2e.harness.bench.measure import say
from e2e.harness.bench.peers import __doc__ as peers_doc
from e2e.harness.bench.peers import eso
from e2e.harness.bench.peers.measure import run_peers
from e2e.harness.bench.peers.report import report, table
from e2e.harness.binaries import build


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m e2e.harness.bench.peers", description=(peers_doc or "").split("\n")[0]
    )
    parser.add_argument("--size", type=int, default=1000, help="objects (KV entries)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks-peers.md")
    parser.add_argument("--namespaces", type=int, default=10, help="tenants = Vault identities")
    parser.add_argument("--refresh", type=int, default=15, help="refreshInterval, seconds")
    parser.add_argument(
        "--concurrency", default="1,16", help="ESO --concurrent settings, comma-separated"
    )
    parser.add_argument(
        "--timeout", type=float, default=900, help="bound of each wait for all objects (s)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    args = parser.parse_args(argv)
    concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    build()
    if eso.main() != 0:
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="vaultsync-bench-peers-"))
    ok = False
    try:
        result = run_peers(tmp, args.size, args.namespaces, args.refresh, concurrency, args.timeout)
        ok = result.base.error is None and all(run.error is None for run in result.eso)
        print(f"\n{table(result)}\n", flush=True)
    finally:
        if ok and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            say(f"stack files (logs) kept in {tmp}")
    text = report(result, args, time.monotonic() - started)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    say(f"wrote {args.out} in {(time.monotonic() - started) / 60:.1f} min")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
