"""The one shape every kind's reconciler has; the handlers drive it the same way for all.

`sync` looks at an object and acts (Vault, Secrets), returning what to record; it never
raises for a failure that belongs in a condition. `cleanup`, for kinds that have one, runs
when the object is deleted and returns a sentence for the log; raising SyncError retries it
after a backoff.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from vaultsync.runtime.outcome import Result
from vaultsync.runtime.view import View


class Reconciler(Protocol):
    kind: str
    plural: str

    def sync(self, body: Mapping[str, Any], view: View) -> Result: ...


class CleaningReconciler(Reconciler, Protocol):
    """A kind whose deletion may have to undo something (a finalizer holds it until then)."""

    def needs_cleanup(self, body: Mapping[str, Any]) -> bool:
        """Whether deleting this object must wait for cleanup: only then does it get our
        finalizer (a patch per object, and a deletion that waits for the operator)."""
        ...

    def cleanup(self, body: Mapping[str, Any], view: View) -> str: ...

    def forget(self, body: Mapping[str, Any]) -> None:
        """The object is gone: drop what is kept in memory about it."""
        ...
