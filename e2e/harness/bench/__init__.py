"""`make bench`: speed and memory of the operator against the real local stack.

For each size N a fresh stack (control plane + OpenBao + the operator as a process, not
verbose) is started in a temporary directory; N VaultSecrets spread over a few tenant
namespaces (each its own VaultAuth, Vault role and policy: one Vault identity each) are
applied at once, and the run measures the initial sync, Vault logins, a window of no-op
refreshes (writes, syncs, CPU), the latency of KV changes, the operator's memory and,
unless --no-outage, recovery from a sealed Vault. Then, on a stack of its own, --rotations
VaultSecrets (100) rotate at once, each restarting a Deployment of its own: time, Vault
writes and rollouts, and a quiet window with an operator restart in which nothing may change;
a broken guarantee there fails the run. The results go to a Markdown file.

    python -m e2e.harness.bench [--sizes 100,500] [--rotations 100] [--only sizes|rotation]
                                [--out docs/benchmarks.md]

``measure`` runs the phases of a size (with ``procstats`` reading /proc), ``rotation`` those
of the rotation scenario, ``report`` writes the Markdown, ``__main__`` is the command line.
"""
