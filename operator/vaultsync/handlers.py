"""kopf glue: the only module with decorators. Domain logic lives in the kind packages.

kopf runs the process (startup, login, liveness, cleanup) and keeps VaultAuths,
VaultConnections and namespaces (their labels, and which are being deleted) in memory as its
indexes; our kinds and the Secrets we write are followed by informers of our own
(kube/informer.py), which cost a fraction of kopf's per-event processing. Each kind has one
scheduler (runtime/scheduling.py), which starts once kopf's indexes hold every object:
every object its informer delivers is reconciled, then due again after its refresh or resync
interval (or a backoff after a failure) unless an event wakes it first (a spec change, its
Secret edited, its deletion, Vault back), with a bounded number of reconciles at once. For
kinds that may undo something on deletion (`Kind.cleanup`) the first reconcile adds our
finalizer where the object needs it, and the deletion is one more turn of the scheduler:
the cleanup, then the finalizer's removal, never beside a reconcile of the same object.
With several replicas (`--shards`, `--peering`), a replica runs only the objects it holds
the Lease for (kube/leases.py). The kinds are one table (`KINDS`).
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, cast

import aiohttp
import kopf

from vaultsync import GROUP, VERSION
from vaultsync.api.base import parse_duration
from vaultsync.audit.reconciler import VaultAuditDeviceReconciler
from vaultsync.connections.auth import VaultAuthReconciler
from vaultsync.connections.health import VaultConnectionReconciler, default_connection_problem
from vaultsync.kube import events, finalizers, hmackey
from vaultsync.kube.api import Kube, connect, watchable
from vaultsync.kube.credentials import KubeCredentials
from vaultsync.kube.informer import Deliver, Informer
from vaultsync.kube.leases import Coordinator, Hooks
from vaultsync.kube.logref import about
from vaultsync.kube.status import StatusWriteFailed
from vaultsync.policies.reconciler import VaultPolicyReconciler
from vaultsync.reconcile import clean_up, reconcile
from vaultsync.runtime import metrics, scheduling
from vaultsync.runtime.errors import SyncError
from vaultsync.runtime.readiness import Readiness
from vaultsync.runtime.reconciler import CleaningReconciler, Reconciler
from vaultsync.runtime.settings import Settings
from vaultsync.runtime.sharding import Sharding, shard_of
from vaultsync.runtime.view import Namespaces, View
from vaultsync.secrets.destination import MANAGED_LABEL, drifted, owner_of
from vaultsync.secrets.dynamic import VaultDynamicSecretReconciler
from vaultsync.secrets.pki import VaultPKISecretReconciler, until_renewal
from vaultsync.secrets.reconciler import ROTATE_ANNOTATION, VaultSecretReconciler
from vaultsync.transit.reconciler import VaultTransitKeyReconciler
from vaultsync.vault.sessions import Sessions

REFRESH_ANNOTATION = "vaultsync.io/refresh"
EVENTS_DRAIN = 5.0  # seconds at most to post the Events still queued at exit
KOPF_CONNECTIONS = 32  # kopf's requests (finalizers, watches) at once; more wait their turn
log = logging.getLogger(__name__)
Snapshot = dict[str, Any]


def _generation(body: Mapping[str, Any]) -> object:
    return body["metadata"].get("generation")


def _vaultsecret_trigger(body: Mapping[str, Any]) -> object:
    """What makes a VaultSecret sync out of schedule: its generation, the refresh or the
    rotate annotation."""
    annotations = body["metadata"].get("annotations") or {}
    return (
        body["metadata"].get("generation"),
        annotations.get(REFRESH_ANNOTATION),
        annotations.get(ROTATE_ANNOTATION),
    )


def _refresh_interval(snapshot: Snapshot, _settings: Settings) -> float | None:
    try:
        interval = parse_duration((snapshot.get("spec") or {}).get("refreshInterval", "1m"))
    except ValueError:
        return None
    return interval or None


def _resync_interval(_snapshot: Snapshot, settings: Settings) -> float | None:
    return settings.resync_interval


def _until_renewal(snapshot: Snapshot, _settings: Settings) -> float | None:
    return until_renewal(snapshot.get("status") or {})


Build = Callable[[Kube, Sessions, Settings], Reconciler]


@dataclass(frozen=True)
class Kind:
    """One row of the table: how the handlers drive a kind's reconciler."""

    plural: str
    build: Build  # (kube, sessions, the operator's settings)
    healthy_wait: Callable[[Snapshot, Settings], float | None] = _resync_interval
    trigger: Callable[[Mapping[str, Any]], object] = _generation
    namespaces: bool = False  # the reconciler reads the namespaces and their labels
    cleanup: bool = False  # deletion waits for the reconciler's cleanup (a finalizer)
    # A kind whose Ready says whether Vault can be reached: retried at most this often while
    # it fails, and its turning Ready retries at once every object waiting after a failure.
    recovery_probe: float | None = None


KINDS = [
    Kind(
        "vaultsecrets",
        VaultSecretReconciler,
        healthy_wait=_refresh_interval,
        trigger=_vaultsecret_trigger,
        cleanup=True,
    ),
    Kind(
        "vaultpolicies",
        VaultPolicyReconciler,
        namespaces=True,
        cleanup=True,
    ),
    Kind("vaultauditdevices", VaultAuditDeviceReconciler, cleanup=True),
    Kind("vaulttransitkeys", VaultTransitKeyReconciler, cleanup=True),
    Kind(
        "vaultpkisecrets",
        VaultPKISecretReconciler,
        healthy_wait=_until_renewal,
        cleanup=True,
    ),
    Kind(
        "vaultdynamicsecrets",
        VaultDynamicSecretReconciler,
        healthy_wait=_until_renewal,
        cleanup=True,
    ),
    Kind("vaultconnections", VaultConnectionReconciler, recovery_probe=0.5),
    Kind("vaultauths", VaultAuthReconciler),
]


@dataclass
class Context:
    settings: Settings
    kube: Kube
    reconcilers: dict[str, Reconciler]
    hmac_key: bytes  # keyed digests of Secret data (kube/hmackey.py)
    schedulers: dict[str, scheduling.Scheduler] = field(default_factory=dict)
    indexes: dict[str, kopf.Index[Any, Any]] | None = None  # set once kopf has them (indexed)
    serving: list[asyncio.Task[None]] = field(default_factory=list)
    coordinator: Coordinator | None = None  # with several replicas: what this one works on
    coordinating: asyncio.Task[None] | None = None
    ready: dict[tuple[str, str], bool] = field(default_factory=dict)  # VaultConnections seen
    informers: list[Informer] = field(default_factory=list)  # our kinds and our Secrets

    def indexed(self, kwargs: Mapping[str, Any]) -> None:
        """kopf's indexes, from the keyword arguments of its first handler call (kopf calls
        none before they hold every object): the schedulers start reconciling then."""
        if self.indexes is not None:
            return
        self.indexes = {index: kwargs[index] for index in INDEXES}
        for plural, scheduler in self.schedulers.items():
            self.serving.append(asyncio.create_task(scheduler.serve(), name=f"{plural} scheduler"))

    def owns(self, namespace: str) -> bool:
        return self.coordinator is None or self.coordinator.owns(namespace)


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    config = Settings.from_env()
    # Our finalizer is ours (kube/finalizers.py); kopf's, never set, is a name of its own, so
    # that kopf (which removes its finalizer where no handler needs one) leaves ours alone.
    settings.persistence.finalizer = f"kopf.{GROUP}/unused"
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.execution.max_workers = config.workers
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(config.workers))
    sharding: Sharding | None = getattr(memo, "sharding", None)
    manager = "vaultsync" if sharding is None else f"vaultsync-{sharding.identity}"
    agent = f"vaultsync/{metrics.version()}" + (
        "" if sharding is None else f" ({sharding.identity})"
    )
    kube = connect(pool_size=2 * config.workers, field_manager=manager, agent=agent)
    try:  # created once in the operator's namespace, shared by replicas
        hmac_key = await asyncio.to_thread(hmackey.shared, kube, config.namespace)
    except SyncError as exc:
        raise kopf.TemporaryError(str(exc), delay=10) from None
    kube = replace(kube, events=events.Poster(kube))
    sessions = Sessions(KubeCredentials(kube), pool_size=2 * config.workers)
    memo.ctx = ctx = Context(
        settings=config,
        kube=kube,
        reconcilers={kind.plural: kind.build(kube, sessions, config) for kind in KINDS},
        hmac_key=hmac_key,
    )
    for kind in KINDS:
        scheduler = scheduling.Scheduler(_runner(kind, ctx), concurrency=config.workers)
        ctx.schedulers[kind.plural] = scheduler
        path = f"/apis/{GROUP}/{VERSION}/{kind.plural}"
        ctx.informers.append(Informer(kube.core.requests, path, _watched(kind, ctx)))
    # Only the Secrets we write are watched (server-side): a Secret whose label is removed
    # leaves the selection, which the API server reports as DELETED, so it is repaired too.
    secrets = Informer(
        kube.core.requests, "/api/v1/secrets", _managed_secrets(ctx), label_selector=MANAGED_LABEL
    )
    ctx.informers.append(secrets)
    for informer in ctx.informers:
        informer.start()
    if sharding is not None:
        ctx.coordinator = Coordinator(
            kube,
            namespace=config.namespace,
            group=sharding.group,
            identity=sharding.identity,
            shards=sharding.shards,
            duration=sharding.duration,
            hooks=_shard_hooks(ctx, sharding.shards),
            priority=sharding.priority,
        )
        ctx.coordinating = asyncio.create_task(ctx.coordinator.run(), name="leases")
    if config.metrics_port:
        metrics.serve(config.metrics_port)
    readiness: Readiness | None = getattr(memo, "readiness", None)
    if readiness is not None:
        _readiness_checks(readiness, kube, config)
        if ctx.coordinator is not None:
            readiness.add("leases", ctx.coordinator.problem)


@kopf.on.login()
async def login(**kwargs: Any) -> kopf.AiohttpSession | None:
    """kopf's own connection to the API server (in-cluster config, or KUBECONFIG), with a
    bounded pool. kopf's default pool has no limit: a burst of new objects (a finalizer patch
    each) opened a TLS connection per object, each with its 64 KiB read buffer, and kept
    them open (500 connections measured at 1000 objects). Watches hold a connection each."""
    info = kopf.login_via_client(**kwargs)
    if info is None:
        return None
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=KOPF_CONNECTIONS, ssl=info.as_ssl_context()),
        headers=info.as_http_headers(),
        auth=info.as_aiohttp_basic_auth(),
        proxy=info.proxy_url,
        trust_env=info.trust_env,
    )
    return kopf.AiohttpSession(
        aiohttp_session=session,
        server=info.server,
        default_namespace=info.default_namespace,
        priority=info.priority,
        expiration=info.expiration,
    )


@kopf.on.cleanup()
async def stop_schedulers(memo: Any, **_: Any) -> None:
    ctx: Context | None = getattr(memo, "ctx", None)
    if ctx is None:
        return
    await asyncio.gather(*(asyncio.to_thread(i.stop) for i in ctx.informers))
    if ctx.coordinating is not None and ctx.coordinator is not None:  # hand the shards over
        ctx.coordinating.cancel()
        await asyncio.gather(ctx.coordinating, return_exceptions=True)
        await ctx.coordinator.stop(timeout=ctx.coordinator.period)
    for task in ctx.serving:
        task.cancel()
    await asyncio.gather(*ctx.serving, return_exceptions=True)
    for scheduler in ctx.schedulers.values():
        await scheduler.stop()
    if ctx.kube.events is not None:
        await asyncio.to_thread(ctx.kube.events.close, EVENTS_DRAIN)


def _shard_hooks(ctx: Context, shards: int) -> Hooks:
    """Objects of a shard this replica takes are due at once; those of a shard it no longer
    holds leave its metrics and forget the status it recorded (the next holder writes)."""

    def of(item: str) -> Callable[[scheduling.Key], bool]:
        return lambda key: shard_of(key[0], shards) == item

    def gained(item: str) -> None:
        for scheduler in ctx.schedulers.values():
            scheduler.wake_where(of(item))

    def lost(item: str) -> None:
        for kind in KINDS:
            scheduler = ctx.schedulers[kind.plural]
            reconciler = ctx.reconcilers[kind.plural]
            for key in filter(of(item), scheduler.keys()):
                metrics.OBJECTS.forget(reconciler.kind, *key)
                if kind.cleanup:
                    meta = {"namespace": key[0], "name": key[1]}
                    cast(CleaningReconciler, reconciler).forget({"metadata": meta})
                entry = scheduler.get(key)
                if entry is not None:
                    entry.context.status = None

    def busy(item: str) -> bool:
        return any(s.running_where(of(item)) for s in ctx.schedulers.values())

    return Hooks(gained=gained, lost=lost, busy=busy)


def _readiness_checks(readiness: Readiness, kube: Kube, config: Settings) -> None:
    """`vaultsync run --readiness`: ready once started (cli.py) and a watch can be established
    now, with the operator's own credentials, on everything it watches (our kinds, the Secrets
    it writes, namespaces, CRDs): the API server answers, the CRDs are served and RBAC grants
    list and watch; with several replicas, also while its Leases can be read and written
    (configure() adds that check). This is the same for the replica that works and for one
    that stands by, which watches everything too: a standby is Ready because it can take over
    at once; an unready standby would stall every rolling update (the new pod never counts as
    available) and make a PodDisruptionBudget count it as already disrupted.

    Vault, for the VaultConnection `default`, is reported in the body and never gates: an
    unready operator changes nothing for Vault (Kubernetes does not restart it for that, and
    its only Service carries metrics), but a Vault outage that made every replica unready
    would stall upgrades of the operator (helm --wait, a rollback with --atomic) and node
    drains, and hide it from whatever scrapes its metrics, just when they matter; each
    VaultConnection's own Ready condition says the same about its Vault."""
    watched: list[tuple[str, str, str, str | None]] = [
        *((GROUP, VERSION, kind.plural, None) for kind in KINDS),
        ("", "v1", "secrets", MANAGED_LABEL),
        ("", "v1", "namespaces", None),
        ("apiextensions.k8s.io", "v1", "customresourcedefinitions", None),
    ]
    for group, version, plural, selector in watched:
        name = f"watch {plural}.{group}" if group else f"watch {plural}"
        readiness.add(name, partial(watchable, kube, group, version, plural, selector))
    readiness.add(
        "vault (VaultConnection default)",
        partial(default_connection_problem, kube, config.namespace),
        gating=False,
    )


@kopf.index(GROUP, VERSION, "vaultauths")
def vault_auths(namespace: str | None, name: str, spec: kopf.Spec, **_: Any) -> dict[Any, Any]:
    return {(namespace, name): copy.deepcopy(dict(spec))}


@kopf.index(GROUP, VERSION, "vaultconnections")
def vault_connections(name: str, spec: kopf.Spec, **_: Any) -> dict[Any, Any]:
    return {(None, name): copy.deepcopy(dict(spec))}


@kopf.index("", "v1", "namespaces")
def namespace_labels(name: str, labels: kopf.Labels, **_: Any) -> dict[Any, Any]:
    return {name: dict(labels)}


@kopf.index("", "v1", "namespaces")
def terminating_namespaces(name: str, meta: kopf.Meta, **_: Any) -> dict[Any, Any] | None:
    """The namespaces being deleted (in none of the others): where a tenant's identity that
    is gone cannot come back, so a deletion need not wait for it (secrets/writer.py)."""
    return {name: True} if meta.get("deletionTimestamp") else None


def _lookup(index: kopf.Index[Any, Any]) -> Any:
    def find(namespace: str | None, name: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = next(iter(index.get((namespace, name), [])), None)
        return found

    return find


INDEXES = ("vault_auths", "vault_connections", "namespace_labels", "terminating_namespaces")


def _view(kind: Kind, kwargs: dict[str, Any]) -> View:
    """Built in the event loop: the namespace copy must not race the index's updates."""
    namespaces: Namespaces = {}
    if kind.namespaces:
        index = kwargs["namespace_labels"]
        namespaces = {name: next(iter(labels), {}) for name, labels in index.items()}
    return View(
        _lookup(kwargs["vault_auths"]),
        _lookup(kwargs["vault_connections"]),
        namespaces,
        frozenset(kwargs["terminating_namespaces"]),
    )


@dataclass(slots=True)
class Tracked:
    """What a kind's scheduler keeps of one object between its reconciles."""

    body: bytes  # the version the watch delivered last, as compact JSON without managedFields
    trigger: object = None  # kind.trigger() of the version last reconciled
    status: dict[str, Any] | None = None  # as last recorded here: the watch may lag
    pacing: scheduling.Pacing = field(default_factory=scheduling.Pacing)
    unfinalized: object = None  # kind.trigger() of a version found to need no finalizer

    def snapshot(self) -> Snapshot:
        """A copy of the object to reconcile, in a thread."""
        found: Snapshot = json.loads(self.body)
        return found


def _compact(body: Mapping[str, Any]) -> bytes:
    """The object as kept between reconciles: without managedFields, which nothing reads and
    which are most of its size, and as bytes, a fraction of the memory of its dicts."""
    meta = {k: v for k, v in body["metadata"].items() if k != "managedFields"}
    return json.dumps({**body, "metadata": meta}, separators=(",", ":")).encode()


def _runner(kind: Kind, ctx: Context) -> scheduling.Run:
    reconciler = ctx.reconcilers[kind.plural]

    async def run(entry: scheduling.Entry) -> float | None:
        """Reconcile entry's object once (or finish its deletion); when it is due next: its
        healthy wait after a success, a backoff after a retryable failure, unless something
        wakes it first."""
        tracked: Tracked = entry.context
        if not ctx.owns(entry.key[0]):
            return None  # another replica's: due again when this one takes its shard
        snapshot = tracked.snapshot()
        if snapshot["metadata"].get("deletionTimestamp"):
            return await _finish(kind, ctx, entry, snapshot)
        assert ctx.indexes is not None  # schedulers serve once it is set
        view = _view(kind, ctx.indexes)
        tracked.trigger = kind.trigger(snapshot)
        if tracked.status is not None:
            snapshot["status"] = tracked.status
        try:
            if _needs_finalizer(kind, reconciler, tracked, snapshot):
                await asyncio.to_thread(finalizers.add, ctx.kube, kind.plural, snapshot)
            done = await asyncio.to_thread(reconcile, ctx.kube, reconciler, snapshot, view)
        except (StatusWriteFailed, SyncError) as exc:
            tracked.status = None  # read again from the watched object
            log.warning("%s %s/%s: %s", reconciler.kind, *entry.key, exc, extra=about(snapshot))
            backoff = tracked.pacing.failed(ctx.settings.backoff)
            entry.failing = tracked.pacing.retrying
            return backoff
        if ctx.schedulers[kind.plural].get(entry.key) is not entry:
            return None  # forgotten meanwhile (deleted)
        outcome, tracked.status = done.outcome, done.status
        metrics.OBJECTS.set(reconciler.kind, *entry.key, ready=outcome.ready, reason=outcome.reason)
        wait, recovered = tracked.pacing.after(
            ready=outcome.ready,
            retryable=outcome.retryable,
            healthy=kind.healthy_wait(snapshot, ctx.settings),
            wake_after=outcome.wake_after,
            backoff=ctx.settings.backoff,
            probe=kind.recovery_probe,
        )
        entry.failing = tracked.pacing.retrying
        if recovered and kind.recovery_probe is not None:  # Vault is back: retry the others
            for scheduler in ctx.schedulers.values():
                scheduler.wake_failing()
        return wait

    return run


def _needs_finalizer(kind: Kind, reconciler: Reconciler, tracked: Tracked, body: Snapshot) -> bool:
    """Asked once per version of what triggers a reconcile (the spec's generation): the
    answer parses the spec, a cost no refresh needs to pay again."""
    if not kind.cleanup or finalizers.has(body) or kind.trigger(body) == tracked.unfinalized:
        return False
    if cast(CleaningReconciler, reconciler).needs_cleanup(body):
        return True
    tracked.unfinalized = kind.trigger(body)
    return False


async def _finish(
    kind: Kind, ctx: Context, entry: scheduling.Entry, snapshot: Snapshot
) -> float | None:
    """A deleted object: its cleanup, then our finalizer's removal. It runs as one of the
    object's turns in the scheduler, so never beside a reconcile of it, and nothing starts a
    reconcile of it after. A failed cleanup is retried after a backoff (and said in a
    Warning Event by clean_up)."""
    if not kind.cleanup or not finalizers.has(snapshot):
        return None
    reconciler = cast(CleaningReconciler, ctx.reconcilers[kind.plural])
    assert ctx.indexes is not None
    view = _view(kind, ctx.indexes)

    def finish() -> str:
        message = clean_up(ctx.kube, reconciler, snapshot, view)
        finalizers.remove(ctx.kube, kind.plural, snapshot)
        return message

    tracked: Tracked = entry.context
    try:
        message = await asyncio.to_thread(finish)
    except SyncError as exc:
        log.warning("%s %s/%s: %s", reconciler.kind, *entry.key, exc, extra=about(snapshot))
        entry.failing = True
        return tracked.pacing.failed(ctx.settings.backoff)
    log.info("%s", message, extra=about(snapshot))
    return None


def _is_ready(body: Mapping[str, Any]) -> bool:
    conditions = (body.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _watched(kind: Kind, ctx: Context) -> Deliver:
    scheduler = ctx.schedulers[kind.plural]
    reconciler = ctx.reconcilers[kind.plural]

    def changed(type: str, body: dict[str, Any]) -> None:
        """Every version of every object of the kind, from its informer: a new object is due
        at once, a deleted one forgotten, and one whose trigger changed (not on our status
        writes) or that is being deleted is due now. With several replicas, a VaultConnection
        turning Ready (on whichever replica reconciles it) retries at once every object here
        that waits after a failure."""
        meta = body["metadata"]
        key = (meta.get("namespace") or "", meta["name"])
        if kind.recovery_probe is not None and ctx.coordinator is not None:
            ready = type != "DELETED" and _is_ready(body)
            if ready and ctx.ready.get(key) is False:
                for each in ctx.schedulers.values():
                    each.wake_failing()
            ctx.ready[key] = ready
        if type == "DELETED":
            scheduler.remove(key)
            metrics.OBJECTS.forget(reconciler.kind, *key)
            if kind.cleanup:
                cast(CleaningReconciler, reconciler).forget(body)
            return
        entry = scheduler.get(key)
        if entry is None:
            scheduler.add(key, Tracked(_compact(body)))
            return
        tracked: Tracked = entry.context
        tracked.body = _compact(body)
        if meta.get("deletionTimestamp") or (
            tracked.trigger is not None and kind.trigger(body) != tracked.trigger
        ):
            scheduler.wake(key)

    return changed


def _managed_secrets(ctx: Context) -> Deliver:
    seen = ctx.kube.secrets

    def changed(type: str, secret: dict[str, Any]) -> None:
        """A Secret we write was edited, deleted or unlabelled: the object that writes it (a
        VaultSecret, a VaultPKISecret, a VaultDynamicSecret) repairs it now. Every version
        seen is kept (kube.secrets) for reconciles to compare with."""
        meta = secret["metadata"]
        namespace, name = meta.get("namespace") or "", meta["name"]
        if type == "DELETED":  # or no longer labelled as ours
            if set(meta) == {"namespace", "name"}:  # found missing by a new list: name only
                secret = seen.get(namespace, name) or secret
            seen.drop(namespace, name)
        else:
            seen.put(secret)
        owner = owner_of(secret)
        if owner and (type == "DELETED" or drifted(secret, key=ctx.hmac_key)):
            plural = next((p for p, r in ctx.reconcilers.items() if r.kind == owner[0]), None)
            if plural is not None:
                ctx.schedulers[plural].wake((namespace, owner[1]))

    return changed


@kopf.on.event("", "v1", "namespaces")
async def namespace_changed(memo: Any, **kwargs: Any) -> None:
    """A namespace appeared, went or changed labels: fan-out policies recompute their set.
    kopf calls it first once its indexes hold every object (there is always a namespace)."""
    ctx: Context = memo.ctx
    ctx.indexed(kwargs)
    for kind in KINDS:
        if kind.namespaces:
            ctx.schedulers[kind.plural].wake_all()
