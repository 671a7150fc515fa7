"""CustomResourceDefinitions generated from the pydantic models.

The committed YAML under crds/ (and the chart's copy) is the output of
`vaultsync crds`; a test fails when it is out of date.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from vaultsync import GROUP, VERSION
from vaultsync.api.audit import (
    VAULT_AUDIT_DEVICE_RULES,
    VaultAuditDeviceSpec,
    VaultAuditDeviceStatus,
)
from vaultsync.api.auth import VAULT_AUTH_RULES, VaultAuthSpec, VaultAuthStatus
from vaultsync.api.connection import VaultConnectionSpec, VaultConnectionStatus
from vaultsync.api.dynamic import VaultDynamicSecretSpec, VaultDynamicSecretStatus
from vaultsync.api.pki import VaultPKISecretSpec, VaultPKISecretStatus
from vaultsync.api.policy import VAULT_POLICY_RULES, VaultPolicySpec, VaultPolicyStatus
from vaultsync.api.secret import (
    SHAPE_RULES,
    VAULT_SECRET_RULES,
    VaultSecretSpec,
    VaultSecretStatus,
)
from vaultsync.api.transit import (
    VAULT_TRANSIT_KEY_RULES,
    VaultTransitKeySpec,
    VaultTransitKeyStatus,
)

JsonSchema = dict[str, Any]

READY_COLUMNS = [
    {
        "name": "Ready",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
    },
    {
        "name": "Reason",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
    },
]
AGE_COLUMN = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}


@dataclass(frozen=True)
class Kind:
    kind: str
    plural: str
    scope: str
    description: str
    spec: type[BaseModel]
    status: type[BaseModel]
    short_names: list[str] = field(default_factory=list)
    rules: list[dict[str, str]] = field(default_factory=list)
    columns: list[dict[str, str]] = field(default_factory=list)

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


KINDS: list[Kind] = [
    Kind(
        kind="VaultConnection",
        plural="vaultconnections",
        scope="Cluster",
        description="Where a Vault/OpenBao server is and how to trust it. VaultAuths name it "
        'in connectionRef ("default" when they name none). Ready when the server answers, is '
        "initialised and unsealed, checked without logging in.",
        spec=VaultConnectionSpec,
        status=VaultConnectionStatus,
        short_names=["vconn"],
        columns=[
            {"name": "Address", "type": "string", "jsonPath": ".spec.address"},
            *READY_COLUMNS,
            {"name": "Version", "type": "string", "jsonPath": ".status.serverVersion"},
        ],
    ),
    Kind(
        kind="VaultAuth",
        plural="vaultauths",
        scope="Namespaced",
        description="How the objects of a namespace log in to Vault: Kubernetes auth as a "
        "ServiceAccount of the object's own namespace, or a static token. Objects name it in "
        'authRef ("default" when they name none); one in the operator\'s namespace may be '
        "shared with the namespaces its allowedNamespaces lists.",
        spec=VaultAuthSpec,
        status=VaultAuthStatus,
        short_names=["vauth"],
        rules=VAULT_AUTH_RULES,
        columns=[
            {"name": "Connection", "type": "string", "jsonPath": ".spec.connectionRef"},
            {"name": "Role", "type": "string", "jsonPath": ".spec.kubernetes.role"},
            *READY_COLUMNS,
        ],
    ),
    Kind(
        kind="VaultSecret",
        plural="vaultsecrets",
        scope="Namespaced",
        description="Copies one KV v2 secret of Vault/OpenBao, and/or values kept in the spec "
        "as transit ciphertext (decrypted with the tenant's own identity), into one Kubernetes "
        "Secret of its namespace and keeps it there: refreshed on an interval, repaired when "
        "edited or deleted, never blanked by a failure. Optionally rotates keys on a schedule "
        "and restarts the workloads that use the Secret when its data changes.",
        spec=VaultSecretSpec,
        status=VaultSecretStatus,
        short_names=["vsec"],
        rules=VAULT_SECRET_RULES,
        columns=[
            {"name": "Path", "type": "string", "jsonPath": ".spec.path"},
            {"name": "Secret", "type": "string", "jsonPath": ".spec.destination.name"},
            *READY_COLUMNS,
            {"name": "Version", "type": "integer", "jsonPath": ".status.vaultVersion"},
        ],
    ),
    Kind(
        kind="VaultPKISecret",
        plural="vaultpkisecrets",
        scope="Namespaced",
        description="Issues a certificate from a role of Vault/OpenBao's PKI secrets engine, "
        "with the tenant's own identity, into one kubernetes.io/tls Secret of its namespace "
        "(tls.crt with the chain, tls.key, ca.crt), and issues it again before it expires or "
        "when the spec changes; a failure keeps the Secret as it is. Optionally restarts the "
        "workloads that use the Secret once per new certificate and revokes the certificate "
        "when deleted.",
        spec=VaultPKISecretSpec,
        status=VaultPKISecretStatus,
        short_names=["vpki"],
        columns=[
            {"name": "Common Name", "type": "string", "jsonPath": ".spec.commonName"},
            {"name": "Secret", "type": "string", "jsonPath": ".spec.destination.name"},
            *READY_COLUMNS,
            {"name": "Expires", "type": "string", "jsonPath": ".status.notAfter"},
            {"name": "Renewal", "type": "string", "jsonPath": ".status.nextRenewal"},
        ],
    ),
    Kind(
        kind="VaultDynamicSecret",
        plural="vaultdynamicsecrets",
        scope="Namespaced",
        description="Reads a leased credential of Vault/OpenBao (a database engine's "
        "creds/<role>, or static-creds/<role> whose password Vault rotates), with the tenant's "
        "own identity, into one Kubernetes Secret of its namespace, shaped like a VaultSecret's. "
        "Renews the lease while Vault extends it, issues a new credential before it ends, "
        "restarts the workloads that use the Secret once per new credential and revokes the "
        "old lease after a grace period; revokes its lease when deleted. A failure keeps the "
        "Secret as it is.",
        spec=VaultDynamicSecretSpec,
        status=VaultDynamicSecretStatus,
        short_names=["vdyn"],
        rules=SHAPE_RULES,
        columns=[
            {"name": "Path", "type": "string", "jsonPath": ".spec.path"},
            {"name": "Secret", "type": "string", "jsonPath": ".spec.destination.name"},
            *READY_COLUMNS,
            {"name": "Lease Expiry", "type": "string", "jsonPath": ".status.leaseExpiry"},
            {"name": "Next", "type": "string", "jsonPath": ".status.nextRenewal"},
        ],
    ),
    Kind(
        kind="VaultPolicy",
        plural="vaultpolicies",
        scope="Cluster",
        description="A Vault ACL policy and, optionally, the Kubernetes-auth role that grants "
        "it, kept as declared; with a namespaceSelector one of each per matching namespace. "
        "Written with the operator's own Vault identity.",
        spec=VaultPolicySpec,
        status=VaultPolicyStatus,
        short_names=["vpol"],
        rules=VAULT_POLICY_RULES,
        columns=[
            {"name": "Policy", "type": "string", "jsonPath": ".spec.policyName"},
            *READY_COLUMNS,
        ],
    ),
    Kind(
        kind="VaultAuditDevice",
        plural="vaultauditdevices",
        scope="Cluster",
        description="An audit device kept enabled in Vault: enabled when missing, re-enabled "
        "when disabled, never disabled by the reconciler. Options that weaken audit need "
        "acknowledgeInsecureOptions. Written with the operator's own Vault identity.",
        spec=VaultAuditDeviceSpec,
        status=VaultAuditDeviceStatus,
        short_names=["vaudit"],
        rules=VAULT_AUDIT_DEVICE_RULES,
        columns=[
            {"name": "Type", "type": "string", "jsonPath": ".spec.type"},
            {"name": "Path", "type": "string", "jsonPath": ".spec.path"},
            *READY_COLUMNS,
            {"name": "Managed", "type": "boolean", "jsonPath": ".status.managed"},
        ],
    ),
    Kind(
        kind="VaultTransitKey",
        plural="vaulttransitkeys",
        scope="Cluster",
        description="A key of Vault/OpenBao's transit secrets engine kept as declared: created "
        "when missing, rotated by Vault's scheduler or on a schedule of vaultsync's, its min "
        "versions and auto-rotation set back when changed by hand. Deleted only with "
        "deletionPolicy Delete and only if vaultsync created it, which makes every ciphertext "
        "of it undecryptable. Written with the operator's own Vault identity.",
        spec=VaultTransitKeySpec,
        status=VaultTransitKeyStatus,
        short_names=["vtkey"],
        rules=VAULT_TRANSIT_KEY_RULES,
        columns=[
            {"name": "Type", "type": "string", "jsonPath": ".spec.type"},
            *READY_COLUMNS,
            {"name": "Version", "type": "integer", "jsonPath": ".status.latestVersion"},
            {"name": "Managed", "type": "boolean", "jsonPath": ".status.managed"},
        ],
    ),
]


def _inline(node: Any, defs: dict[str, JsonSchema]) -> Any:
    """Resolve $refs and reduce pydantic's JSON Schema to a structural CRD schema, with each
    field's default still in `default` (see `without_defaults`)."""
    if isinstance(node, list):
        return [_inline(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _inline(merged, defs)
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        if len(options) == 1:
            rest = {k: v for k, v in node.items() if k != "anyOf"}
            return _inline({**options[0], **rest}, defs)
    out: JsonSchema = {}
    for key, value in node.items():
        if key in ("title", "$defs"):
            continue
        if key == "additionalProperties" and isinstance(value, bool):
            continue  # not structural; the API server prunes unknown fields anyway
        if key == "properties":
            out[key] = {name: _inline(sub, defs) for name, sub in value.items()}
        else:
            out[key] = _inline(value, defs)
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    return out


def shown_default(value: Any) -> str | None:
    """A default as the docs show it (JSON), or None when it says nothing (absent, empty)."""
    if value is None or value in ("", [], {}):
        return None
    return json.dumps(value)


def tidy(description: str) -> str:
    """A description on one line per paragraph (docstrings wrap at the code's line length)."""
    paragraphs = re.split(r"\n\s*\n", description.strip())
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)


def _with_default(description: str, value: Any) -> str:
    shown = shown_default(value)
    if shown is None:
        return description
    text = description.rstrip()
    return f"{text}{'' if text.endswith('.') else '.'} Defaults to {shown}."


def without_defaults(node: Any, *, describe: bool = True) -> Any:
    """The schema without `default`s, which a CRD must not carry (the API server would write
    them into users' objects); with `describe`, each one is told in its description instead."""
    if isinstance(node, list):
        return [without_defaults(item, describe=describe) for item in node]
    if not isinstance(node, dict):
        return node
    out: JsonSchema = {}
    for key, value in node.items():
        if key == "default":
            continue
        if key == "properties":
            out[key] = {n: without_defaults(v, describe=describe) for n, v in value.items()}
        else:
            out[key] = without_defaults(value, describe=describe)
    if describe and "default" in node:
        out["description"] = _with_default(node.get("description", ""), node["default"])
    if "description" in out:
        out["description"] = tidy(out["description"])
    return out


def model_schema(model: type[BaseModel], *, defaults: bool = False) -> JsonSchema:
    """The model's structural schema; with `defaults`, each field's default is kept in
    `default` (for the reference docs) instead of being told in its description."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    schema: JsonSchema = _inline(raw, raw.get("$defs", {}))
    if defaults:
        return schema
    result: JsonSchema = without_defaults(schema, describe=True)
    return result


UNOBSERVED: JsonSchema = {"observedGeneration": 0}
"""How a status the operator has not written yet reads: the API server applies these defaults
whenever it returns an object (they are not stored), so a new object, or one created while the
operator is down, has an observedGeneration below its generation and kstatus (Flux) says
InProgress instead of Current. `status` needs a default of its own ({}) for the one inside to
apply when there is no status at all."""


def status_schema(model: type[BaseModel]) -> JsonSchema:
    """A status model's schema: the operator writes status, so its defaults say nothing, except
    UNOBSERVED, the API server's until the operator first records an outcome."""
    result: JsonSchema = without_defaults(model_schema(model, defaults=True), describe=False)
    result["default"] = {}
    for name, value in UNOBSERVED.items():
        result["properties"][name]["default"] = value
    return result


TOP_LEVEL: dict[str, JsonSchema] = {
    "apiVersion": {
        "type": "string",
        "description": "APIVersion defines the versioned schema of this representation of an "
        "object. Servers should convert recognized schemas to the latest internal value, and "
        "may reject unrecognized values.",
    },
    "kind": {
        "type": "string",
        "description": "Kind is a string value representing the REST resource this object "
        "represents. Servers may infer this from the endpoint the client submits requests to. "
        "Cannot be updated. In CamelCase.",
    },
    "metadata": {"type": "object"},
}
"""The fields every object has, described as the Kubernetes API describes them; metadata only
by its type, since the API server refuses anything more in a CRD that has defaults (status
has), and `kubectl explain` shows ObjectMeta's own description for it anyway."""


def crd(kind: Kind) -> JsonSchema:
    spec = model_schema(kind.spec)
    if kind.rules:
        spec["x-kubernetes-validations"] = kind.rules
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": kind.crd_name},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.kind.lower(),
                "shortNames": kind.short_names,
                "categories": ["vaultsync"],
            },
            "scope": kind.scope,
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [*kind.columns, AGE_COLUMN],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": kind.description,
                            "required": ["spec"],
                            "properties": {
                                **TOP_LEVEL,
                                "spec": spec,
                                "status": status_schema(kind.status),
                            },
                        }
                    },
                }
            ],
        },
    }


HEADER = "# Generated by `vaultsync crds` from operator/vaultsync/api; do not edit.\n"


def render(kind: Kind) -> str:
    return HEADER + yaml.safe_dump(crd(kind), sort_keys=False, width=100)


def write_all(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in KINDS:
        path = directory / f"{kind.crd_name}.yaml"
        path.write_text(render(kind))
        written.append(path)
    return written
