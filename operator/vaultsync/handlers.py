"""kopf glue: the only module with decorators. Domain logic lives elsewhere.

Every object of ours (VaultSecret, VaultPolicy, VaultAuditDevice, VaultConnection,
VaultAuth) runs as one daemon: a loop that reconciles, then waits (refresh or resync
interval, or a backoff after a failure) unless a watch wakes it first. VaultAuths,
VaultConnections and namespaces are also kept in memory by kopf indexes.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import kopf

from vaultsync import GROUP, MANAGED_BY, MANAGED_BY_LABEL, VERSION, metrics, scheduling
from vaultsync.api.base import parse_duration
from vaultsync.audit import AuditReconciler
from vaultsync.authcheck import AuthChecker
from vaultsync.connection import ConnectionChecker
from vaultsync.destination import OWNER_ANNOTATION, drifted
from vaultsync.errors import SyncError
from vaultsync.guard import Guard
from vaultsync.kube.api import connect
from vaultsync.kube.credentials import KubeCredentials
from vaultsync.kube.status import StatusWriteFailed
from vaultsync.policy import PolicyReconciler
from vaultsync.report import Outcome
from vaultsync.settings import Settings
from vaultsync.sync import Directory, SecretSyncer
from vaultsync.vault.sessions import Sessions

REFRESH_ANNOTATION = "vaultsync.io/refresh"
log = logging.getLogger(__name__)


@dataclass
class Context:
    settings: Settings
    syncer: SecretSyncer
    wakers: scheduling.Wakers
    policies: PolicyReconciler
    audits: AuditReconciler
    connections: ConnectionChecker
    auth_checks: AuthChecker
    policy_wakers: scheduling.Wakers = field(default_factory=scheduling.Wakers)
    connection_wakers: scheduling.Wakers = field(default_factory=scheduling.Wakers)
    auth_wakers: scheduling.Wakers = field(default_factory=scheduling.Wakers)
    audit_wakers: scheduling.Wakers = field(default_factory=scheduling.Wakers)


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    config = Settings.from_env()
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.peering.lifetime = config.peering_lifetime  # a crashed active replica's takeover time
    settings.execution.max_workers = config.workers
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(config.workers))
    kube = connect(pool_size=config.workers)
    sessions = Sessions(KubeCredentials(kube), pool_size=config.workers)
    memo.ctx = Context(
        settings=config,
        syncer=SecretSyncer(kube, sessions, operator_namespace=config.namespace),
        wakers=scheduling.Wakers(),
        policies=PolicyReconciler(kube, sessions, operator_namespace=config.namespace),
        audits=AuditReconciler(kube, sessions, operator_namespace=config.namespace),
        connections=ConnectionChecker(kube),
        auth_checks=AuthChecker(kube),
    )
    if config.metrics_port:
        metrics.serve(config.metrics_port)


@kopf.index(GROUP, VERSION, "vaultauths")
def vault_auths(namespace: str | None, name: str, spec: kopf.Spec, **_: Any) -> dict[Any, Any]:
    return {(namespace, name): copy.deepcopy(dict(spec))}


@kopf.index(GROUP, VERSION, "vaultconnections")
def vault_connections(name: str, spec: kopf.Spec, **_: Any) -> dict[Any, Any]:
    return {(None, name): copy.deepcopy(dict(spec))}


def _lookup(index: kopf.Index[Any, Any]) -> Any:
    def find(namespace: str | None, name: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = next(iter(index.get((namespace, name), [])), None)
        return found

    return find


def _directory(kwargs: dict[str, Any]) -> Directory:
    return Directory(_lookup(kwargs["vault_auths"]), _lookup(kwargs["vault_connections"]))


def _vaultsecret_trigger(body: kopf.Body) -> object:
    """What makes a VaultSecret sync out of schedule: its generation or refresh annotation."""
    return body.metadata.get("generation"), body.metadata.annotations.get(REFRESH_ANNOTATION)


def _generation(body: kopf.Body) -> object:
    return body.metadata.get("generation")


def _refresh_interval(snapshot: dict[str, Any]) -> float | None:
    try:
        interval = parse_duration((snapshot.get("spec") or {}).get("refreshInterval", "1m"))
    except ValueError:
        return None
    return interval or None


def _guard(memo: Any) -> Guard:
    guard: Guard | None = getattr(memo, "guard", None)
    if guard is None:
        guard = memo.guard = Guard()
    return guard


async def _reconcile_loop(
    *,
    key: scheduling.Key,
    wakers: scheduling.Wakers,
    prepare: Callable[[dict[str, Any]], Callable[[], Outcome]],
    healthy_wait: Callable[[dict[str, Any]], float | None],
    trigger: Callable[[kopf.Body], object],
    body: kopf.Body,
    stopped: kopf.DaemonStopped,
    memo: Any,
) -> None:
    """Reconcile, then wait: healthy_wait after success, a backoff after a retryable
    failure, unless a watch wakes the object first (spec change, drift, namespaces)."""
    ctx: Context = memo.ctx
    wake = wakers.register(key)
    failures = 0
    try:
        while not stopped and not body.metadata.get("deletionTimestamp"):
            memo.trigger = trigger(body)
            snapshot = copy.deepcopy(dict(body))
            try:
                outcome = await asyncio.to_thread(_guard(memo).run, prepare(snapshot))
            except StatusWriteFailed as exc:
                failures += 1
                raise kopf.TemporaryError(str(exc), delay=ctx.settings.backoff(failures)) from None
            if outcome is None:
                return
            failures = 0 if outcome.ready else failures + 1
            retry_soon = not outcome.ready and outcome.retryable
            delay = ctx.settings.backoff(failures) if retry_soon else healthy_wait(snapshot)
            await scheduling.wait(wake, stopped.wait(), delay)
    finally:
        wakers.forget(key)


async def _cleanup(cleanup: Callable[[], str], memo: Any, retry: int) -> None:
    """Run cleanup once no reconcile runs (and none after): see guard.py."""
    ctx: Context = memo.ctx
    try:
        message = await asyncio.to_thread(_guard(memo).finish, cleanup)
    except SyncError as exc:
        raise kopf.TemporaryError(str(exc), delay=ctx.settings.backoff(retry + 1)) from None
    log.info("%s", message)


def _wake_on_change(
    wakers: scheduling.Wakers,
    key: scheduling.Key,
    type: str,
    body: kopf.Body,
    memo: Any,
    trigger: Callable[[kopf.Body], object],
) -> None:
    seen = getattr(memo, "trigger", None)
    if type != "DELETED" and seen is not None and trigger(body) != seen:
        wakers.wake(key)


@kopf.daemon(GROUP, VERSION, "vaultsecrets", cancellation_timeout=10.0)
async def vaultsecret_loop(
    body: kopf.Body,
    namespace: str | None,
    name: str,
    stopped: kopf.DaemonStopped,
    memo: Any,
    **kwargs: Any,
) -> None:
    ctx: Context = memo.ctx
    directory = _directory(kwargs)

    def prepare(snapshot: dict[str, Any]) -> Callable[[], Outcome]:
        return lambda: ctx.syncer.reconcile(snapshot, directory)

    await _reconcile_loop(
        key=(namespace or "", name),
        wakers=ctx.wakers,
        prepare=prepare,
        healthy_wait=_refresh_interval,
        trigger=_vaultsecret_trigger,
        body=body,
        stopped=stopped,
        memo=memo,
    )


@kopf.on.delete(GROUP, VERSION, "vaultsecrets")
async def vaultsecret_deleted(body: kopf.Body, memo: Any, retry: int, **_: Any) -> None:
    snapshot = copy.deepcopy(dict(body))
    await _cleanup(lambda: memo.ctx.syncer.release(snapshot), memo, retry)


@kopf.on.event(GROUP, VERSION, "vaultsecrets")
async def vaultsecret_changed(
    type: str, body: kopf.Body, namespace: str | None, name: str, memo: Any, **_: Any
) -> None:
    key = (namespace or "", name)
    _wake_on_change(memo.ctx.wakers, key, type, body, memo, _vaultsecret_trigger)


@kopf.on.event("", "v1", "secrets", labels={MANAGED_BY_LABEL: MANAGED_BY})
async def managed_secret_changed(
    type: str, body: kopf.Body, namespace: str | None, memo: Any, **_: Any
) -> None:
    owner = body.metadata.annotations.get(OWNER_ANNOTATION)
    if owner and (type == "DELETED" or drifted(copy.deepcopy(dict(body)))):
        memo.ctx.wakers.wake((namespace or "", owner))


# VaultPolicy and VaultAuditDevice: cluster-scoped Vault configuration, done as the
# operator. Each object runs a loop like a VaultSecret's, resyncing every
# VAULTSYNC_RESYNC_INTERVAL to repair drift; namespaces are indexed so that fan-out
# policies follow namespaces appearing, disappearing and being relabelled.


@kopf.index("", "v1", "namespaces")
def namespace_labels(name: str, labels: kopf.Labels, **_: Any) -> dict[Any, Any]:
    return {name: dict(labels)}


def _namespaces(index: kopf.Index[Any, Any]) -> dict[str, dict[str, str]]:
    return {name: next(iter(labels), {}) for name, labels in index.items()}


async def _resync_loop(
    wakers: scheduling.Wakers,
    prepare: Callable[[dict[str, Any]], Callable[[], Outcome]],
    body: kopf.Body,
    name: str,
    stopped: kopf.DaemonStopped,
    memo: Any,
) -> None:
    """The loop of a cluster-scoped configuration kind: resync to repair drift in Vault."""
    await _reconcile_loop(
        key=("", name),
        wakers=wakers,
        prepare=prepare,
        healthy_wait=lambda _: memo.ctx.settings.resync_interval,
        trigger=_generation,
        body=body,
        stopped=stopped,
        memo=memo,
    )


@kopf.daemon(GROUP, VERSION, "vaultpolicies", cancellation_timeout=10.0)
async def vaultpolicy_loop(
    body: kopf.Body, name: str, stopped: kopf.DaemonStopped, memo: Any, **kwargs: Any
) -> None:
    ctx: Context = memo.ctx
    directory = _directory(kwargs)
    index = kwargs["namespace_labels"]

    def prepare(snapshot: dict[str, Any]) -> Callable[[], Outcome]:
        namespaces = _namespaces(index)  # copied here: the index changes in the event loop
        return lambda: ctx.policies.reconcile(snapshot, directory, namespaces)

    await _resync_loop(ctx.policy_wakers, prepare, body, name, stopped, memo)


@kopf.on.delete(GROUP, VERSION, "vaultpolicies")
async def vaultpolicy_deleted(body: kopf.Body, memo: Any, retry: int, **kwargs: Any) -> None:
    directory = _directory(kwargs)
    snapshot = copy.deepcopy(dict(body))
    await _cleanup(lambda: memo.ctx.policies.cleanup(snapshot, directory), memo, retry)


@kopf.on.event(GROUP, VERSION, "vaultpolicies")
async def vaultpolicy_changed(type: str, body: kopf.Body, name: str, memo: Any, **_: Any) -> None:
    _wake_on_change(memo.ctx.policy_wakers, ("", name), type, body, memo, _generation)


@kopf.on.event("", "v1", "namespaces")
async def namespace_changed(memo: Any, **_: Any) -> None:
    """A namespace appeared, went or changed labels: fan-out policies recompute their set."""
    memo.ctx.policy_wakers.wake_all()


@kopf.daemon(GROUP, VERSION, "vaultauditdevices", cancellation_timeout=10.0)
async def vaultauditdevice_loop(
    body: kopf.Body, name: str, stopped: kopf.DaemonStopped, memo: Any, **kwargs: Any
) -> None:
    ctx: Context = memo.ctx
    directory = _directory(kwargs)

    def prepare(snapshot: dict[str, Any]) -> Callable[[], Outcome]:
        return lambda: ctx.audits.reconcile(snapshot, directory)

    await _resync_loop(ctx.audit_wakers, prepare, body, name, stopped, memo)


@kopf.on.delete(GROUP, VERSION, "vaultauditdevices")
async def vaultauditdevice_deleted(body: kopf.Body, memo: Any, retry: int, **kwargs: Any) -> None:
    directory = _directory(kwargs)
    snapshot = copy.deepcopy(dict(body))
    await _cleanup(lambda: memo.ctx.audits.cleanup(snapshot, directory), memo, retry)


@kopf.on.event(GROUP, VERSION, "vaultauditdevices")
async def vaultauditdevice_changed(
    type: str, body: kopf.Body, name: str, memo: Any, **_: Any
) -> None:
    _wake_on_change(memo.ctx.audit_wakers, ("", name), type, body, memo, _generation)


@kopf.daemon(GROUP, VERSION, "vaultconnections", cancellation_timeout=10.0)
async def vaultconnection_loop(
    body: kopf.Body, name: str, stopped: kopf.DaemonStopped, memo: Any, **_: Any
) -> None:
    """Health of the server: no login, the same answer for every tenant."""
    ctx: Context = memo.ctx

    def prepare(snapshot: dict[str, Any]) -> Callable[[], Outcome]:
        return lambda: ctx.connections.reconcile(snapshot)

    await _resync_loop(ctx.connection_wakers, prepare, body, name, stopped, memo)


@kopf.on.event(GROUP, VERSION, "vaultconnections")
async def vaultconnection_changed(
    type: str, body: kopf.Body, name: str, memo: Any, **_: Any
) -> None:
    _wake_on_change(memo.ctx.connection_wakers, ("", name), type, body, memo, _generation)


@kopf.daemon(GROUP, VERSION, "vaultauths", cancellation_timeout=10.0)
async def vaultauth_loop(
    body: kopf.Body,
    namespace: str | None,
    name: str,
    stopped: kopf.DaemonStopped,
    memo: Any,
    **kwargs: Any,
) -> None:
    """Whether the VaultAuth is usable: its spec, its connection, its token Secret."""
    ctx: Context = memo.ctx
    connections = _lookup(kwargs["vault_connections"])

    def prepare(snapshot: dict[str, Any]) -> Callable[[], Outcome]:
        return lambda: ctx.auth_checks.reconcile(snapshot, connections)

    await _reconcile_loop(
        key=(namespace or "", name),
        wakers=ctx.auth_wakers,
        prepare=prepare,
        healthy_wait=lambda _: ctx.settings.resync_interval,
        trigger=_generation,
        body=body,
        stopped=stopped,
        memo=memo,
    )


@kopf.on.event(GROUP, VERSION, "vaultauths")
async def vaultauth_changed(
    type: str, body: kopf.Body, namespace: str | None, name: str, memo: Any, **_: Any
) -> None:
    key = (namespace or "", name)
    _wake_on_change(memo.ctx.auth_wakers, key, type, body, memo, _generation)
