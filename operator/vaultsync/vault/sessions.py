"""One Vault login per identity, reused until renewal fails.

Peers log in on every reconcile and pile up tokens until Vault falls over; here
a token is cached per identity (endpoint + auth method + who logs in), renewed
when two thirds of its TTL have passed, and replaced by a fresh login when
renewal fails or the token is rejected.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import hvac

from vaultsync.runtime import metrics
from vaultsync.vault.client import Endpoint, new_client
from vaultsync.vault.errors import AuthenticationFailed, translate
from vaultsync.vault.observe import timed

MIN_USEFUL_TTL = 30.0


@dataclass(frozen=True)
class KubernetesLogin:
    mount: str
    role: str
    namespace: str
    service_account: str
    audiences: tuple[str, ...] = ()
    expiration_seconds: int = 600


@dataclass(frozen=True)
class TokenLogin:
    namespace: str
    secret_name: str
    key: str


@dataclass(frozen=True)
class Identity:
    endpoint: Endpoint
    login: KubernetesLogin | TokenLogin

    def describe(self) -> str:
        if isinstance(self.login, KubernetesLogin):
            return (
                f"ServiceAccount {self.login.namespace}/{self.login.service_account} "
                f"via {self.login.mount} role {self.login.role!r}"
            )
        return f"token from Secret {self.login.namespace}/{self.login.secret_name}"


class CredentialSource(Protocol):
    """Where login material comes from (the Kubernetes API in production)."""

    def service_account_token(
        self, namespace: str, name: str, audiences: tuple[str, ...], expiration_seconds: int
    ) -> str: ...

    def secret_value(self, namespace: str, name: str, key: str) -> str: ...


@dataclass
class _Session:
    client: hvac.Client
    issued_at: float
    ttl: float | None
    renewable: bool

    def renew_due(self, now: float) -> bool:
        return self.ttl is not None and now >= self.issued_at + self.ttl * 2 / 3


class Sessions:
    def __init__(
        self,
        credentials: CredentialSource,
        clock: Callable[[], float] = time.monotonic,
        pool_size: int = 16,
    ) -> None:
        self._credentials = credentials
        self._pool_size = pool_size
        self._clock = clock
        self._sessions: dict[Identity, _Session] = {}
        self._locks: dict[Identity, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, identity: Identity) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(identity, threading.Lock())

    def client(self, identity: Identity) -> hvac.Client:
        """An authenticated client for identity, logging in only when needed."""
        with self._lock(identity):
            session = self._sessions.get(identity)
            now = self._clock()
            if session is not None and session.renew_due(now):
                session = self._renewed(session) if session.renewable else None
            if session is None:
                session = self._login(identity)
            self._sessions[identity] = session
            return session.client

    def invalidate(self, identity: Identity, client: hvac.Client) -> None:
        """Forget a session whose token Vault rejected (revoked, expired, policy change)."""
        with self._lock(identity):
            session = self._sessions.get(identity)
            if session is not None and session.client is client:
                del self._sessions[identity]

    def cached(self, identity: Identity) -> bool:
        return identity in self._sessions

    def _renewed(self, session: _Session) -> _Session | None:
        try:
            with timed("token_renew"):
                response = session.client.auth.token.renew_self()
        except Exception:  # any failure means: log in again
            metrics.VAULT_TOKEN_RENEWALS.labels("failed").inc()
            return None
        ttl = float(response["auth"]["lease_duration"])
        if ttl < MIN_USEFUL_TTL:
            metrics.VAULT_TOKEN_RENEWALS.labels("exhausted").inc()
            return None
        metrics.VAULT_TOKEN_RENEWALS.labels("renewed").inc()
        return _Session(session.client, self._clock(), ttl, session.renewable)

    def _login(self, identity: Identity) -> _Session:
        method = "kubernetes" if isinstance(identity.login, KubernetesLogin) else "token"
        try:
            return self._log_in(identity)
        except Exception as exc:
            metrics.VAULT_LOGIN_FAILURES.labels(method, metrics.reason_of(exc)).inc()
            raise

    def _log_in(self, identity: Identity) -> _Session:
        login = identity.login
        if isinstance(login, TokenLogin):
            token = self._credentials.secret_value(login.namespace, login.secret_name, login.key)
            metrics.VAULT_LOGINS.labels("token").inc()
            return _Session(
                new_client(identity.endpoint, token, self._pool_size), self._clock(), None, False
            )
        jwt = self._credentials.service_account_token(
            login.namespace, login.service_account, login.audiences, login.expiration_seconds
        )
        client = new_client(identity.endpoint, pool_size=self._pool_size)
        with timed("login"):
            try:
                response = client.auth.kubernetes.login(login.role, jwt, mount_point=login.mount)
            except Exception as exc:
                error = translate(exc, f"login as {identity.describe()}")
                if error.reason in ("PermissionDenied", "VaultRequestInvalid"):
                    raise AuthenticationFailed(str(error)) from None
                raise error from None
        metrics.VAULT_LOGINS.labels("kubernetes").inc()
        auth = response["auth"]
        return _Session(
            client, self._clock(), float(auth["lease_duration"]) or None, bool(auth["renewable"])
        )
