"""Input that could hurt (issue 8, items 4-6), refused by the pydantic models with the same
message the CRD's CEL rules give at apply time (e2e/test_input_rejected.py asks the real API
server): Vault paths and mounts, Secret keys, keys/template collisions, selector labels."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from vaultsync.api import names
from vaultsync.api.audit import VaultAuditDeviceSpec
from vaultsync.api.auth import VaultAuthSpec
from vaultsync.api.base import parse
from vaultsync.api.crds import KINDS, crd
from vaultsync.api.policy import VaultPolicySpec
from vaultsync.api.secret import MESSAGES, VaultSecretSpec
from vaultsync.runtime.errors import SyncError
from vaultsync.secrets.render import RenderError, render

DOT_SEGMENT = names.NO_DOT_SEGMENT.message
LEADING = names.NO_LEADING_SLASH.message
TRAILING = names.NO_TRAILING_SLASH.message
EMPTY = names.NO_EMPTY_SEGMENT.message
URL_UNSAFE = names.URL_SAFE.message
KEY_DOTS = names.SECRET_KEY_NOT_DOTS.message
KEY_CHARS = names.SECRET_KEY_CHARACTERS.message
LABEL_KEY = names.LABEL_KEY_SHAPE.message
LABEL_KEY_LENGTHS = names.LABEL_KEY_LENGTHS.message
LABEL_VALUE = names.LABEL_VALUE_CHECKS[0].message
SAME_KEY = MESSAGES["keys_and_template"]

GOOD_PATHS = ["db", "team-a/db", "a/.hidden/b", "a/b...c/..d/d..", "x/+/y*", "kv-v2.team/x_y"]
BAD_PATHS = [
    ("..", DOT_SEGMENT),
    (".", DOT_SEGMENT),
    ("../../auth/token/lookup-self", DOT_SEGMENT),
    ("team/../other", DOT_SEGMENT),
    ("team/./db", DOT_SEGMENT),
    ("team/.", DOT_SEGMENT),
    ("team//db", EMPTY),
    ("/team/db", LEADING),
    ("/", LEADING),
    ("team/db/", TRAILING),
    ("team/%2e%2e/x", URL_UNSAFE),
    ("team/db?version=1", URL_UNSAFE),
    ("team/db#frag", URL_UNSAFE),
    ("team\\..\\x", URL_UNSAFE),
    ("team/d b", URL_UNSAFE),
    ("team/db\n", URL_UNSAFE),
    ("team/\tdb", URL_UNSAFE),
    ("team/d\x00b", URL_UNSAFE),
    ("team/d\x7fb", URL_UNSAFE),
    ("team/d\u0085b", URL_UNSAFE),  # C1 control (NEL)
    ("team/d\u00a0b", URL_UNSAFE),  # no-break space
    ("team/d\u2028b", URL_UNSAFE),  # line separator
]


def secret(**spec: Any) -> dict[str, Any]:
    return {"path": "team/db", "destination": {"name": "db"}, **spec}


def auth(mount: str) -> dict[str, Any]:
    return {"kubernetes": {"role": "r", "mount": mount}}


def policy(**spec: Any) -> dict[str, Any]:
    return {
        "policyName": "p-{namespace}",
        "namespaceSelector": {"matchLabels": {"tenant": "yes"}},
        "rules": [{"path": "secret/data/{namespace}/*", "capabilities": ["read"]}],
        **spec,
    }


def rule(path: str) -> dict[str, Any]:
    return policy(rules=[{"path": path, "capabilities": ["list"]}])


def role(mount: str) -> dict[str, Any]:
    return policy(
        kubernetesRole={"mount": mount, "name": "r-{namespace}", "serviceAccounts": ["*"]}
    )


def audit(path: str) -> dict[str, Any]:
    return {"type": "syslog", "path": path}


def labels(match_labels: dict[str, str]) -> dict[str, Any]:
    return policy(namespaceSelector={"matchLabels": match_labels})


def expression(key: str, values: list[str]) -> dict[str, Any]:
    return policy(
        namespaceSelector={"matchExpressions": [{"key": key, "operator": "In", "values": values}]}
    )


PathCase = tuple[type[BaseModel], Any, str]

# every Vault path-like field: (model, spec builder, field as `parse` names it)
PATH_FIELDS: list[PathCase] = [
    (VaultSecretSpec, lambda p: secret(path=p), "spec.path"),
    (VaultSecretSpec, lambda p: secret(mount=p), "spec.mount"),
    (VaultAuthSpec, auth, "spec.kubernetes.mount"),
    (VaultPolicySpec, role, "spec.kubernetesRole.mount"),
    (VaultPolicySpec, rule, "spec.rules.0.path"),
]


def problem(model: type[BaseModel], raw: dict[str, Any]) -> str:
    """The InvalidSpec message the operator would report for raw."""
    with pytest.raises(SyncError) as caught:
        parse(model, raw)
    assert caught.value.reason == "InvalidSpec" and not caught.value.retryable
    return str(caught.value)


def valid(model: type[BaseModel], raw: dict[str, Any]) -> None:
    model.model_validate(raw)


@pytest.mark.parametrize(("model", "build", "where"), PATH_FIELDS, ids=[w for *_, w in PATH_FIELDS])
@pytest.mark.parametrize(("value", "message"), BAD_PATHS)
def test_bad_vault_paths_are_refused(
    model: type[BaseModel], build: Any, where: str, value: str, message: str
) -> None:
    if where == "spec.rules.0.path" and message == TRAILING:
        pytest.skip("a trailing / is meaningful in an ACL path")
    said = problem(model, build(value))
    assert said.startswith(f"{where}: ") and message in said, said


@pytest.mark.parametrize(("model", "build", "where"), PATH_FIELDS, ids=[w for *_, w in PATH_FIELDS])
@pytest.mark.parametrize("value", GOOD_PATHS)
def test_good_vault_paths_pass(model: type[BaseModel], build: Any, where: str, value: str) -> None:
    valid(model, build(value))


@pytest.mark.parametrize(
    "path", ["secret/metadata/", "secret/data/+/config", "secret/data/{namespace}/*", "sys/*"]
)
def test_acl_paths_keep_globs_and_a_trailing_slash(path: str) -> None:
    valid(VaultPolicySpec, rule(path))


def test_acl_paths_refuse_quotes_for_hcl() -> None:
    assert names.NO_QUOTE.message in problem(VaultPolicySpec, rule('secret/"x'))


@pytest.mark.parametrize(("value", "message"), BAD_PATHS)
def test_bad_audit_device_paths(value: str, message: str) -> None:
    said = problem(VaultAuditDeviceSpec, audit(value))
    assert said.startswith("spec.path: ") and message in said


@pytest.mark.parametrize("value", ["a+b", "a*", "{namespace}", "ü"])
def test_audit_device_paths_are_plain_characters(value: str) -> None:
    assert names.AUDIT_PATH_CHARACTERS.message in problem(VaultAuditDeviceSpec, audit(value))


@pytest.mark.parametrize("value", ["file", "team/file.log", "a/.b", "..x"])
def test_good_audit_device_paths(value: str) -> None:
    valid(VaultAuditDeviceSpec, audit(value))


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        (policy(namespaceSelector=None, policyName="..", rules=None, hcl="x"), "spec.policyName"),
        (policy(namespaceSelector=None, policyName=".", rules=None, hcl="x"), "spec.policyName"),
        (
            policy(kubernetesRole={"name": "..", "serviceAccounts": ["*"], "namespaces": ["n"]}),
            "spec.kubernetesRole.name",
        ),
    ],
)
def test_names_that_are_path_segments_are_not_dots(raw: dict[str, Any], where: str) -> None:
    raw = {k: v for k, v in raw.items() if v is not None}
    said = problem(VaultPolicySpec, raw)
    assert said.startswith(where) and names.NOT_A_DOT_SEGMENT.message in said


# --- Secret keys ---------------------------------------------------------------------------

BAD_KEYS = [
    ("..", KEY_DOTS),
    (".", KEY_DOTS),
    ("..data", KEY_DOTS),
    ("...", KEY_DOTS),
    ("a b", KEY_CHARS),
    ("a/b", KEY_CHARS),
    ("", KEY_CHARS),
    ("k" * 254, KEY_CHARS),
    ("ü", KEY_CHARS),
]
GOOD_KEYS = [".hidden", "a..b", "a.", "tls.crt", "DB_PASSWORD", "-x", "k" * 253]


def refused_as(said: str, key: str, message: str) -> bool:
    """said refuses key for message (or, for a too long key, for its length alone)."""
    return message in said or (len(key) > 253 and "at most 253 characters" in said)


@pytest.mark.parametrize(("key", "message"), BAD_KEYS)
def test_bad_secret_keys(key: str, message: str) -> None:
    said = problem(VaultSecretSpec, secret(keys=[{"from": "a", "to": key}]))
    assert said.startswith("spec.keys.0.to") and refused_as(said, key, message), said
    said = problem(VaultSecretSpec, secret(template={key: "x"}))
    assert said.startswith("spec.template") and message in said, said
    if key:  # from may not be empty anyway
        said = problem(VaultSecretSpec, secret(keys=[{"from": key}]))
        assert said.startswith("spec.keys.0") and refused_as(said, key, message), said
        if len(key) <= 253:
            assert "from is the Secret key when to is not set" in said
    with pytest.raises(RenderError) as caught:
        render(VaultSecretSpec.model_validate(secret()), {key: "v"})
    assert caught.value.reason == "InvalidKey" and message in str(caught.value)


@pytest.mark.parametrize("key", GOOD_KEYS)
def test_good_secret_keys(key: str) -> None:
    valid(VaultSecretSpec, secret(keys=[{"from": "a", "to": key}]))
    valid(VaultSecretSpec, secret(template={key: "x"}))
    valid(VaultSecretSpec, secret(keys=[{"from": key}]))
    assert render(VaultSecretSpec.model_validate(secret()), {key: "v"}) == {key: b"v"}


def test_a_kv_key_kubernetes_refuses_can_be_renamed() -> None:
    spec = VaultSecretSpec.model_validate(secret(keys=[{"from": "..", "to": "dots"}]))
    assert render(spec, {"..": "v", ".": "w"}) == {"dots": b"v"}


# --- item 5: keys and template writing the same Secret key ----------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        secret(keys=[{"from": "user", "to": "dsn"}], template={"dsn": "x"}),
        secret(keys=[{"from": "dsn"}], template={"dsn": "x"}),
        secret(keys=[{"from": "a", "to": "b"}, {"from": "c"}], template={"x": "1", "c": "2"}),
    ],
)
def test_keys_and_template_writing_one_key_are_refused(raw: dict[str, Any]) -> None:
    assert SAME_KEY in problem(VaultSecretSpec, raw)


@pytest.mark.parametrize(
    "raw",
    [
        secret(keys=[{"from": "dsn", "to": "user"}], template={"dsn": "x"}),
        secret(keys=[{"from": "a"}], template={"b": "x"}),
        secret(template={"dsn": "x"}),
        secret(keys=[{"from": "dsn"}]),
    ],
)
def test_keys_and_template_writing_different_keys_pass(raw: dict[str, Any]) -> None:
    valid(VaultSecretSpec, raw)


# --- item 6: namespaceSelector labels ---------------------------------------------------------

BAD_LABEL_KEYS = [
    ("bad key", LABEL_KEY),
    ("-tier", LABEL_KEY),
    ("tier-", LABEL_KEY),
    ("a/b/c", LABEL_KEY),
    ("Example.com/tier", LABEL_KEY),
    ("example..com/tier", LABEL_KEY),
    ("/tier", LABEL_KEY),
    ("example.com/", LABEL_KEY),
    ("", LABEL_KEY),
    ("t" * 64, LABEL_KEY_LENGTHS),
    ("example.com/" + "t" * 64, LABEL_KEY_LENGTHS),
    ("a" * 254 + "/t", LABEL_KEY_LENGTHS),
]
GOOD_LABEL_KEYS = [
    "tier",
    "app.kubernetes.io/name",
    "kubernetes.io/metadata.name",
    "Tier_2.x-Y",
    "t" * 63,
    "a" * 253 + "/" + "n" * 63,
]
BAD_LABEL_VALUES = ["-x", "x-", "a b", "a/b", "ü", "v" * 64]
GOOD_LABEL_VALUES = ["", "x", "team-a", "A_b.c-D", "v" * 63]


@pytest.mark.parametrize(("key", "message"), BAD_LABEL_KEYS)
def test_bad_label_keys(key: str, message: str) -> None:
    said = problem(VaultPolicySpec, labels({key: "x"}))
    assert said.startswith("spec.namespaceSelector.matchLabels") and message in said
    said = problem(VaultPolicySpec, expression(key, ["x"]))
    assert said.startswith("spec.namespaceSelector.matchExpressions.0.key")
    assert message in said or "at least 1 character" in said


@pytest.mark.parametrize("key", GOOD_LABEL_KEYS)
def test_good_label_keys(key: str) -> None:
    valid(VaultPolicySpec, labels({key: "x"}))
    valid(VaultPolicySpec, expression(key, ["x"]))


@pytest.mark.parametrize("value", BAD_LABEL_VALUES)
def test_bad_label_values(value: str) -> None:
    for raw in (labels({"tier": value}), expression("tier", ["ok", value])):
        said = problem(VaultPolicySpec, raw)
        assert LABEL_VALUE in said or "at most 63 characters" in said, said


@pytest.mark.parametrize("value", GOOD_LABEL_VALUES)
def test_good_label_values(value: str) -> None:
    valid(VaultPolicySpec, labels({"tier": value}))
    valid(VaultPolicySpec, expression("tier", [value]))


# --- the CRD carries the same rules, on the field they are about ------------------------------


def spec_schema(kind: str) -> dict[str, Any]:
    [found] = [k for k in KINDS if k.kind == kind]
    schema: dict[str, Any] = crd(found)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return dict(schema["properties"]["spec"])


def node(schema: dict[str, Any], *path: str) -> dict[str, Any]:
    for step in path:
        schema = schema[step]
    return schema


def messages(schema: dict[str, Any]) -> list[str]:
    return [r["message"] for r in schema.get("x-kubernetes-validations", [])]


PATH_MESSAGES = [c.message for c in names.VAULT_PATH_CHECKS]


@pytest.mark.parametrize(
    ("kind", "path", "expected"),
    [
        ("VaultSecret", ("properties", "path"), PATH_MESSAGES),
        ("VaultSecret", ("properties", "mount"), PATH_MESSAGES),
        ("VaultAuth", ("properties", "kubernetes", "properties", "mount"), PATH_MESSAGES),
        ("VaultPolicy", ("properties", "kubernetesRole", "properties", "mount"), PATH_MESSAGES),
        (
            "VaultPolicy",
            ("properties", "rules", "items", "properties", "path"),
            [c.message for c in names.ACL_PATH_CHECKS],
        ),
        (
            "VaultAuditDevice",
            ("properties", "path"),
            [*PATH_MESSAGES, names.AUDIT_PATH_CHARACTERS.message],
        ),
        (
            "VaultSecret",
            ("properties", "keys", "items", "properties", "to"),
            [KEY_CHARS, KEY_DOTS],
        ),
        (
            "VaultSecret",
            ("properties", "template"),
            [f"template keys {KEY_CHARS}", f"template keys {KEY_DOTS}"],
        ),
        (
            "VaultPolicy",
            ("properties", "namespaceSelector", "properties", "matchLabels"),
            [f"matchLabels keys {LABEL_KEY}", f"matchLabels keys {LABEL_KEY_LENGTHS}"],
        ),
        (
            "VaultPolicy",
            (
                "properties",
                "namespaceSelector",
                "properties",
                "matchLabels",
                "additionalProperties",
            ),
            [LABEL_VALUE],
        ),
        (
            "VaultPolicy",
            (
                "properties",
                "namespaceSelector",
                "properties",
                "matchExpressions",
                "items",
                "properties",
                "key",
            ),
            [LABEL_KEY, LABEL_KEY_LENGTHS],
        ),
        (
            "VaultPolicy",
            (
                "properties",
                "namespaceSelector",
                "properties",
                "matchExpressions",
                "items",
                "properties",
                "values",
                "items",
            ),
            [LABEL_VALUE],
        ),
    ],
)
def test_cel_rules_sit_on_the_field(kind: str, path: tuple[str, ...], expected: list[str]) -> None:
    field = node(spec_schema(kind), *path)
    assert messages(field) == expected
    assert "maxLength" in field or "maxProperties" in field, "CEL cost needs a bound"


def test_collision_rule_is_in_the_crd() -> None:
    assert SAME_KEY in messages(spec_schema("VaultSecret"))


def test_cel_regexes_are_escaped_for_cel_string_literals() -> None:
    rule = names.URL_SAFE.cel
    assert rule == "!self.matches('[%?#\\\\\\\\\\\\p{Cc}\\\\p{Z}]')"
    assert names.LABEL_KEY_SHAPE.cel.count("\\\\.") == 1
