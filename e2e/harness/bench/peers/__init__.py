"""`make bench-peers`: External Secrets Operator beside the floor and vaultsync, one run.

Optional, in neither `make test` nor `make bench`. On one local stack of the kind `make bench`
uses (e2e.harness.bench.measure.Bench: control plane + OpenBao, 10 tenants, N two-key KV v2
entries, default N = 1000): the floor and vaultsync's sync from start as `make bench` measures
them, then External Secrets Operator (built from the Go module proxy: ``eso``) on the same
entries with each --concurrent setting (default 1 and 16), timed from its process start the
same way, with CPU, peak RSS, API requests per object and, at steady state, Kubernetes and
Vault requests per object per refresh interval (``measure``). The table goes to
docs/benchmarks-peers.md (``report``).

    python -m e2e.harness.bench.peers [--size 1000] [--concurrency 1,16]
                                      [--out docs/benchmarks-peers.md]
"""
