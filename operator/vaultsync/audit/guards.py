"""What a VaultAuditDevice spec must pass before anything is sent to Vault.

A typo or a copied manifest must not silently weaken the audit trail or clobber files:

- A file device writes only inside the operator's allowed directories
  (VAULTSYNC_AUDIT_FILE_DIRS): Vault appends to the file and chmods it, so pointing it at
  an existing file (/etc/passwd) damages that file. Paths are normalised lexically first,
  so `..` cannot climb out; symlinks on Vault's host cannot be seen from here. Vault's
  special values `stdout` and `discard` write no file and are always allowed.
- Options that weaken audit (api.audit.insecure_options) need
  spec.acknowledgeInsecureOptions; the CRD's CEL rules refuse them at apply time already,
  this is the same rule for objects an older API server let through.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

from vaultsync.api.audit import AuditType, InsecureOption, VaultAuditDeviceSpec, insecure_options
from vaultsync.runtime.outcome import Outcome
from vaultsync.runtime.settings import normalise_path

# Vault reads the file device's path from file_path, or from the older name path.
FILE_PATH_OPTIONS = ("file_path", "path")
SPECIAL_FILE_PATHS = ("stdout", "discard")


def inside(path: str, directory: str) -> bool:
    """Whether a normalised path lies below a normalised directory."""
    return directory == "/" or path.startswith(directory + "/")


def file_path_problem(
    type_: AuditType, options: Mapping[str, str], allowed: Sequence[str]
) -> str | None:
    """Why a file device may not write where its options say, or None."""
    if type_ != AuditType.FILE:
        return None
    for option in FILE_PATH_OPTIONS:
        value = options.get(option)
        if value is None or value in SPECIAL_FILE_PATHS:
            continue
        where = f"options.{option} {value!r}"
        if not value.startswith("/"):
            return f"{where} is not an absolute path (or stdout or discard)"
        path = normalise_path(value)
        if not any(inside(path, directory) for directory in allowed):
            dirs = ", ".join(f"{d}/" if d != "/" else d for d in allowed) or "none"
            shown = f" (that is {path!r})" if path != value else ""
            return (
                f"{where}{shown} is outside the directories where the operator lets audit "
                f"devices write files (VAULTSYNC_AUDIT_FILE_DIRS: {dirs}); audit devices may "
                "write to stdout or discard anywhere"
            )
    return None


def describe(found: Sequence[InsecureOption]) -> str:
    return "; ".join(f"{item} ({item.effect})" for item in found)


def refusal(spec: VaultAuditDeviceSpec, allowed: Sequence[str]) -> Outcome | None:
    """Why vaultsync will not enable the device the spec describes, or None."""
    problem = file_path_problem(spec.type, spec.options, allowed)
    if problem is not None:
        return Outcome(False, "FilePathNotAllowed", problem + "; nothing enabled", retryable=False)
    found = insecure_options(spec.type, spec.options)
    if found and not spec.acknowledge_insecure_options:
        message = (
            f"options that weaken the audit trail: {describe(found)}. Nothing enabled: set "
            "spec.acknowledgeInsecureOptions to true if this is intended"
        )
        return Outcome(False, "InsecureOptions", message, retryable=False)
    return None


class Reminders:
    """When to repeat a warning about a key: at once when what it says is new or changed,
    then again every `every` seconds while it still holds (checked at each resync)."""

    def __init__(self, every: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.every = every
        self.clock = clock
        self._last: dict[str, tuple[object, float]] = {}

    def due(self, key: str, what: object) -> bool:
        now = self.clock()
        last = self._last.get(key)
        if last is not None and last[0] == what and now - last[1] < self.every:
            return False
        self._last[key] = (what, now)
        return True

    def forget(self, key: str) -> None:
        self._last.pop(key, None)
