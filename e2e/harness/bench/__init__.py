"""`make bench`: speed and memory of the operator against the real local stack.

For each size N (default 1000; `make bench-5000` runs 5000 into a file of its own) a fresh
stack (control plane + OpenBao + the operator as a process, not verbose) is started in a
temporary directory, with N VaultSecrets spread over a few tenant namespaces (each its own
VaultAuth, Vault role and policy: one Vault identity each). They are created with the
operator stopped, and the floor (``floor``: bare threads doing only the work each object
needs) is measured on them and undone; then the operator is started and timed until every
object is synced, with its CPU, peak RSS and the API server's requests per object
(``apiserver``). On that stack follow a window of no-op refreshes (writes, syncs, CPU, API and
Vault requests), the latency of KV changes and, unless --no-outage, recovery from a sealed
Vault. Unless --no-from-create, a second fresh stack times the sync from the first create
with the operator running. Then, on a stack of its own, --rotations VaultSecrets (100) rotate
at once, each restarting a Deployment of its own: time, Vault writes and rollouts, and a quiet
window with an operator restart in which nothing may change; a broken guarantee there fails
the run. Unless --no-sharding, a last stack runs --sharding-size VaultSecrets (1000) over 30
namespaces with one `--shards` replica and then three: the time to sync, the per-replica
split of shards, objects, CPU and memory, and the takeover after a kill and a clean stop.
Unless --no-dynamic, a stack with a PostgreSQL of its own runs --dynamic-size
VaultDynamicSecrets (100): the time to issue all, renewals per minute at steady state, the
leases outstanding after a SIGKILL and restart (must be N, with no credential read) and their
revocation on deletion; a broken guarantee fails the run. --operator-source runs another
checkout's operator/ (to compare commits). The results go to a Markdown file.

    python -m e2e.harness.bench [--sizes 1000] [--rotations 100]
                                [--only sizes|rotation|sharding|dynamic]
                                [--dynamic-size 100] [--operator-source DIR]
                                [--out docs/benchmarks.md]

``measure`` runs the phases of a size (with ``procstats`` reading /proc, ``floor`` and
``apiserver``), ``rotation`` those of the rotation scenario, ``sharding`` the replicas',
``dynamic`` the dynamic credentials',
``report`` writes the Markdown, ``__main__`` is the command line.
"""
