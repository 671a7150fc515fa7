"""Operator settings, read once from the environment at start-up."""

from __future__ import annotations

import os
from dataclasses import dataclass


def _float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


@dataclass(frozen=True)
class Settings:
    namespace: str
    metrics_port: int
    workers: int
    min_backoff: float
    max_backoff: float
    resync_interval: float = 60.0
    peering_lifetime: int = 60

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            namespace=os.environ.get(
                "VAULTSYNC_NAMESPACE", os.environ.get("POD_NAMESPACE", "vaultsync-system")
            ),
            metrics_port=int(os.environ.get("VAULTSYNC_METRICS_PORT", "8080")),
            workers=int(os.environ.get("VAULTSYNC_WORKERS", "16")),
            min_backoff=_float("VAULTSYNC_MIN_BACKOFF", 5.0),
            max_backoff=_float("VAULTSYNC_MAX_BACKOFF", 300.0),
            resync_interval=_float("VAULTSYNC_RESYNC_INTERVAL", 60.0),
            peering_lifetime=int(os.environ.get("VAULTSYNC_PEERING_LIFETIME", "60")),
        )

    def backoff(self, failures: int) -> float:
        """Exponential backoff after the n-th consecutive failure (n >= 1)."""
        return float(min(self.max_backoff, self.min_backoff * 2 ** max(0, failures - 1)))
