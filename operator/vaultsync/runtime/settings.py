"""Operator settings, read once from the environment at start-up."""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass

DEFAULT_AUDIT_FILE_DIRS = "/vault/audit/"


def _float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def normalise_path(path: str) -> str:
    """An absolute path without `.`, `..`, empty segments or a trailing slash, lexically
    (symlinks are not resolved): "/vault/audit/../../etc/passwd" is "/etc/passwd"."""
    return "/" + posixpath.normpath(path).lstrip("/")


def parse_dirs(text: str) -> tuple[str, ...]:
    """Comma-separated absolute directories, normalised ("/vault/audit/" -> "/vault/audit")."""
    dirs = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        if not entry.startswith("/"):
            raise ValueError(f"VAULTSYNC_AUDIT_FILE_DIRS: {entry!r} is not an absolute directory")
        dirs.append(normalise_path(entry))
    return tuple(dirs)


@dataclass(frozen=True)
class Settings:
    namespace: str
    metrics_port: int
    workers: int
    min_backoff: float
    max_backoff: float
    resync_interval: float = 60.0
    audit_file_dirs: tuple[str, ...] = parse_dirs(DEFAULT_AUDIT_FILE_DIRS)

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            namespace=os.environ.get(
                "VAULTSYNC_NAMESPACE", os.environ.get("POD_NAMESPACE", "vaultsync-system")
            ),
            metrics_port=int(os.environ.get("VAULTSYNC_METRICS_PORT", "8080")),
            workers=int(os.environ.get("VAULTSYNC_WORKERS", "32")),
            min_backoff=_float("VAULTSYNC_MIN_BACKOFF", 5.0),
            max_backoff=_float("VAULTSYNC_MAX_BACKOFF", 300.0),
            resync_interval=_float("VAULTSYNC_RESYNC_INTERVAL", 60.0),
            audit_file_dirs=parse_dirs(
                os.environ.get("VAULTSYNC_AUDIT_FILE_DIRS", DEFAULT_AUDIT_FILE_DIRS)
            ),
        )

    def backoff(self, failures: int) -> float:
        """Exponential backoff after the n-th consecutive failure (n >= 1)."""
        return float(min(self.max_backoff, self.min_backoff * 2 ** max(0, failures - 1)))
