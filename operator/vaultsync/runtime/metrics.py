"""Prometheus metrics. Labels never carry secret data, only names and reasons.

Every metric is described in docs/metrics.md (a unit test keeps the two in step). Vault
metrics are labelled by operation (kv_read, login, ...) and reason only: never a path, a
policy or role name, a namespace or an identity, so that their cardinality is fixed.
"""

from __future__ import annotations

import threading
from collections import Counter as Tally
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

VAULT_LOGINS = Counter(
    "vaultsync_vault_logins_total", "Vault logins performed, by auth method.", ["method"]
)
VAULT_TOKEN_RENEWALS = Counter(
    "vaultsync_vault_token_renewals_total", "Vault token renewals, by result.", ["result"]
)
SYNCS = Counter(
    "vaultsync_syncs_total", "Reconciliations, by kind and result reason.", ["kind", "reason"]
)
EVENTS_DROPPED = Counter(
    "vaultsync_events_dropped_total",
    "Kubernetes Events not posted because too many waited to be posted (status says the same).",
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
CERTIFICATE_EXPIRY = Gauge(
    "vaultsync_certificate_expiry_timestamp_seconds",
    "When the certificate a VaultPKISecret's Secret holds expires (its notAfter, Unix time).",
    ["namespace", "name"],
)
LEASE_EXPIRY = Gauge(
    "vaultsync_lease_expiry_timestamp_seconds",
    "When the lease of the credential a VaultDynamicSecret's Secret holds runs out unless "
    "renewed (a static role: its next rotation; Unix time).",
    ["namespace", "name"],
)
CREDENTIALS_ISSUED = Counter(
    "vaultsync_dynamic_credentials_issued_total",
    "Leased credentials VaultDynamicSecrets issued (a static role's reads not counted).",
)
LEASE_RENEWALS = Counter(
    "vaultsync_lease_renewals_total",
    "Lease renewals of VaultDynamicSecrets, by result: renewed, capped (Vault gave less than "
    "asked: the credential's end is near), or the reason it failed.",
    ["result"],
)
LEASE_REVOCATIONS = Counter(
    "vaultsync_lease_revocations_total",
    "Lease revocations of VaultDynamicSecrets (replaced credentials, deletions, credentials "
    "of a failed reconcile), by result: revoked, or the reason it failed.",
    ["result"],
)
REVOCATIONS_DROPPED = Counter(
    "vaultsync_revocations_dropped_total",
    "Revocations vaultsync gave up on, each said in a RevokeFailed Warning: a lease or "
    "certificate left to expire at its TTL, by kind and the reason the revocation failed.",
    ["kind", "reason"],
)

VAULT_LOGIN_FAILURES = Counter(
    "vaultsync_vault_login_failures_total",
    "Vault logins that failed, by auth method and reason.",
    ["method", "reason"],
)
VAULT_REQUEST_SECONDS = Histogram(
    "vaultsync_vault_request_duration_seconds",
    "Time of one Vault operation, by operation; failed ones included.",
    ["operation"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
VAULT_REQUEST_ERRORS = Counter(
    "vaultsync_vault_request_errors_total",
    "Vault operations that failed, by operation and reason.",
    ["operation", "reason"],
)
SHARDS_HELD = Gauge(
    "vaultsync_shard_held",
    "With --shards: 1 for each shard (or the leader) this replica holds and works on, else 0.",
    ["shard"],
)
SHARD_CHANGES = Counter(
    "vaultsync_shard_changes",
    "With --shards: shards this replica took (acquired), handed over (released) or lost "
    "(taken over by another replica, or not renewed in time).",
    ["shard", "change"],
)
BUILD_INFO = Gauge("vaultsync_build_info", "Always 1; the running vaultsync version.", ["version"])


def reason_of(exc: BaseException) -> str:
    """A bounded label value for a failure: the SyncError reason, else the exception type."""
    reason = getattr(exc, "reason", None)
    return reason if isinstance(reason, str) and reason else type(exc).__name__


class ObjectStates(Collector):
    """The last outcome of every object this replica reconciles, exported as counts by kind,
    ready and reason (`vaultsync_objects`): one series per state, not per object."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[tuple[str, str, str], tuple[bool, str]] = {}

    def set(self, kind: str, namespace: str, name: str, *, ready: bool, reason: str) -> None:
        with self._lock:
            self._states[(kind, namespace, name)] = (ready, reason)

    def forget(self, kind: str, namespace: str, name: str) -> None:
        """The object is deleted, or no longer reconciled here (standby replica, shutdown)."""
        with self._lock:
            self._states.pop((kind, namespace, name), None)

    def counts(self) -> Tally[tuple[str, bool, str]]:
        with self._lock:
            return Tally((kind, *state) for (kind, _, _), state in self._states.items())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "vaultsync_objects",
            "Objects this replica reconciles, by kind and the Ready condition of their last "
            "reconcile (ready true/false, reason).",
            labels=["kind", "ready", "reason"],
        )
        for (kind, ready, reason), count in sorted(self.counts().items()):
            family.add_metric([kind, "true" if ready else "false", reason], count)
        yield family


OBJECTS = ObjectStates()
REGISTRY.register(OBJECTS)


def version() -> str:
    try:
        return package_version("vaultsync")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


BUILD_INFO.labels(version()).set(1)


def serve(port: int) -> None:
    start_http_server(port, addr="0.0.0.0")
