"""The Helm chart as the harness runs the operator: as the chart's ServiceAccount, with the
chart's RBAC, env and args.

`helm template` (helm built by e2e/harness/helm.py) renders charts/vaultsync with the values a
test chooses. Everything it renders except the Deployment is applied for real (ServiceAccount,
ClusterRole, ClusterRoleBinding, the Role for the Leases with several replicas, and whatever
else the chart grows); the Deployment's only container becomes a local process instead of a pod: its
args and env as rendered, with `fieldRef`s resolved as the kubelet would and listen addresses
moved from 0.0.0.0 to 127.0.0.1 (a process has no pod IP). It authenticates with a kubeconfig
that holds only the ServiceAccount's token from the TokenRequest API (no client certificate),
so a permission the code needs and the chart lacks fails like it would in a cluster.

Tokens: the harness asks the TokenRequest API for TOKEN_LIFETIME (24 h: tests may ask for long
lives; the local kube-apiserver sets no --service-account-max-token-expiration) and asks again
whenever a process (re)starts with less than REFRESH_BEFORE left. A running process keeps the
token it loaded, which outlives any test session by far.
"""

from __future__ import annotations

import base64
import copy
import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from e2e.harness import ROOT, HarnessError
from e2e.harness.controlplane import ControlPlane
from e2e.harness.helm import build_helm
from e2e.harness.processes import HOST, JsonFile

CHART = ROOT / "charts" / "vaultsync"
OPERATOR_NAMESPACE = "vaultsync-system"
RELEASE = "vaultsync"
TOKEN_LIFETIME = 24 * 3600
REFRESH_BEFORE = 3600
RUN_ELSEWHERE = {"Deployment"}
"""Rendered kinds the harness does not apply: the Deployment runs as a local process."""


def e2e_values(*, argo_rollouts: bool = True, **config: Any) -> dict[str, Any]:
    """The values the e2e tests install the chart with: short backoffs and resyncs, Argo
    Rollouts granted unless argo_rollouts is False; config adds or overrides config values."""
    return {
        "config": {"minBackoff": 1, "maxBackoff": 5, "resyncInterval": 2, **config},
        "rbac": {"argoRollouts": argo_rollouts},
    }


def render(
    values: dict[str, Any] | None = None,
    *,
    namespace: str = OPERATOR_NAMESPACE,
    release: str = RELEASE,
    workdir: Path | None = None,
) -> list[dict[str, Any]]:
    """`helm template` of the chart with values (nested, as in a values file)."""
    args = [str(build_helm()), "template", release, str(CHART), "--namespace", namespace]
    if values:
        if workdir is None:
            raise HarnessError("render with values needs a workdir for the values file")
        workdir.mkdir(parents=True, exist_ok=True)
        path = workdir / f"values-{release}.yaml"
        path.write_text(yaml.safe_dump(values))
        args += ["--values", str(path)]
    result = subprocess.run(args, capture_output=True, text=True, check=False, timeout=120)
    if result.returncode != 0:
        raise HarnessError(f"helm template failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Values merged as helm merges values files: maps deeply, everything else replaced."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@dataclass(frozen=True)
class Container:
    """The operator container of the rendered Deployment, as a local process runs it."""

    args: list[str]
    env: dict[str, str]


def container(objects: list[dict[str, Any]], namespace: str, pod: str) -> Container:
    """Args and env of the Deployment's single container, fieldRefs resolved for a pod named
    pod in namespace, 0.0.0.0 listen addresses made 127.0.0.1."""
    (deployment,) = (o for o in objects if o["kind"] == "Deployment")
    (spec,) = deployment["spec"]["template"]["spec"]["containers"]
    fields = {"metadata.namespace": namespace, "metadata.name": pod}
    env: dict[str, str] = {}
    for item in spec.get("env") or []:
        if "value" in item:
            env[item["name"]] = str(item["value"])
            continue
        path = ((item.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
        if path not in fields:
            raise HarnessError(f"the harness cannot run env {item!r} of the chart's container")
        env[item["name"]] = fields[path]
    args = [str(arg).replace("//0.0.0.0:", f"//{HOST}:") for arg in spec.get("args") or []]
    return Container(args, env)


class ChartRelease:
    """The chart rendered for one release: its objects applied (all but the Deployment) and
    its ServiceAccount's token in a kubeconfig of its own."""

    def __init__(
        self,
        cp: ControlPlane,
        workdir: Path,
        values: dict[str, Any] | None = None,
        *,
        release: str = RELEASE,
        namespace: str = OPERATOR_NAMESPACE,
        token_lifetime: int = TOKEN_LIFETIME,
    ) -> None:
        """token_lifetime: seconds asked of the TokenRequest API for each token."""
        self.cp = cp
        self.workdir = workdir
        self.values = values or {}
        self.release = release
        self.namespace = namespace
        self.token_lifetime = token_lifetime
        self._token = JsonFile(workdir / f"token-{release}.json")
        self._rendered: dict[str, list[dict[str, Any]]] = {}

    def render(self, extra: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        values = merge(self.values, extra or {})
        key = json.dumps(values, sort_keys=True)
        if key not in self._rendered:
            self._rendered[key] = render(
                values, namespace=self.namespace, release=self.release, workdir=self.workdir
            )
        return copy.deepcopy(self._rendered[key])

    def applied(self) -> list[dict[str, Any]]:
        """What install applies: everything the chart renders but the Deployment."""
        return [o for o in self.render() if o["kind"] not in RUN_ELSEWHERE]

    @property
    def service_account(self) -> str:
        (deployment,) = (o for o in self.render() if o["kind"] == "Deployment")
        name: str = deployment["spec"]["template"]["spec"]["serviceAccountName"]
        return name

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"

    def install(self) -> None:
        self.cp.kubectl("create", "namespace", self.namespace, check=False)
        self.cp.kubectl("apply", "-f", "-", input=_list(self.applied()))

    def uninstall(self) -> None:
        self.cp.kubectl(
            "delete", "--ignore-not-found", "--wait=false", "-f", "-", input=_list(self.applied())
        )

    def container(self, extra: dict[str, Any] | None = None, pod: str = "") -> Container:
        """The container as rendered with extra values on top of the release's."""
        return container(self.render(extra), self.namespace, pod or f"{self.release}-local")

    def kubeconfig(self) -> Path:
        """A kubeconfig that authenticates with the ServiceAccount's token only; a new token
        from the TokenRequest API when the one on file has less than REFRESH_BEFORE left."""
        path = self.workdir / f"kubeconfig-{self.release}"
        state = self._token.read()
        if path.exists() and state.get("expires", 0) - time.time() > REFRESH_BEFORE:
            return path
        account = self.service_account
        token = self.cp.kubectl(
            "create", "token", account, "-n", self.namespace, f"--duration={self.token_lifetime}s"
        ).stdout.strip()
        admin = yaml.safe_load(self.cp.kubeconfig.read_text())
        (cluster,) = admin["clusters"]
        JsonFile(path).write(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [cluster],
                "users": [{"name": account, "user": {"token": token}}],
                "contexts": [
                    {"name": account, "context": {"cluster": cluster["name"], "user": account}}
                ],
                "current-context": account,
            }
        )
        self._token.write({"expires": expiry(token)})
        return path


def expiry(token: str) -> float:
    """The `exp` claim of a JWT (what the API server granted, not what was asked)."""
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return float(claims["exp"])


def _list(objects: list[dict[str, Any]]) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
