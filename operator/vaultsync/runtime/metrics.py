"""Prometheus metrics. Labels never carry secret data, only names and reasons."""

from __future__ import annotations

from prometheus_client import Counter, Histogram, start_http_server

VAULT_LOGINS = Counter(
    "vaultsync_vault_logins_total", "Vault logins performed, by auth method.", ["method"]
)
VAULT_TOKEN_RENEWALS = Counter(
    "vaultsync_vault_token_renewals_total", "Vault token renewals, by result.", ["result"]
)
SYNCS = Counter(
    "vaultsync_syncs_total", "Reconciliations, by kind and result reason.", ["kind", "reason"]
)
SECRET_WRITES = Counter(
    "vaultsync_secret_writes_total", "Kubernetes Secret writes, by operation.", ["operation"]
)
SYNC_SECONDS = Histogram("vaultsync_sync_duration_seconds", "Time of one reconciliation.", ["kind"])
ROTATIONS = Counter(
    "vaultsync_rotations_total",
    "Rotations, by result: rotated, lost-race (an external write won), finished (an "
    "interrupted one completed), or the reason it failed.",
    ["result"],
)
ROTATION_SECONDS = Histogram(
    "vaultsync_rotation_duration_seconds", "Time of one rotation, from decision to read-back."
)
ROLLOUT_RESTARTS = Counter(
    "vaultsync_rollout_restarts_total",
    "Workload restarts vaultsync made because a Secret's data changed, by workload.",
    ["kind", "namespace", "name"],
)


def serve(port: int) -> None:
    start_http_server(port, addr="0.0.0.0")
