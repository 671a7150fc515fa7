"""Checks on the strings that become Vault request paths, Secret keys and selector labels.

Each check is written once here, as a CEL rule for the CRD (so the API server refuses the
object at apply time, with the message) and as a Python predicate for the pydantic models (so
an object an older API server let through still gets a clear InvalidSpec), with one message
for both.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator, Field, JsonValue
from pydantic.config import JsonDict


@dataclass(frozen=True)
class Check:
    """A rule over one string: `cel` reads it as `self`, `holds` is the same test in Python."""

    cel: str
    message: str
    holds: Callable[[str], bool]


def cel_rules(
    checks: Sequence[Check], subject: str = "self", *, unless: str = "", what: str = ""
) -> list[JsonValue]:
    """CEL rules applying checks to subject (a CEL expression), each skipped when `unless`
    holds, with `what` (naming the subject) before each message."""
    return [
        {
            "rule": f"{unless} || ({_on(c, subject)})" if unless else _on(c, subject),
            "message": f"{what} {c.message}" if what else c.message,
        }
        for c in checks
    ]


def cel(checks: Sequence[Check]) -> JsonDict:
    """json_schema_extra putting checks on the schema node of the string itself."""
    return {"x-kubernetes-validations": cel_rules(checks)}


def cel_on_keys(checks: Sequence[Check], what: str) -> JsonDict:
    """json_schema_extra putting checks on every key of a map (`what` names the keys).

    The message cannot name the failing key: a messageExpression listing them costs too much
    for the API server's estimate (map keys have no maxLength)."""
    return {
        "x-kubernetes-validations": [
            {"rule": f"self.all(k, {_on(c, 'k')})", "message": f"{what} {c.message}"}
            for c in checks
        ]
    }


def _literal(text: str) -> str:
    """text as a CEL string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _on(check: Check, subject: str) -> str:
    return re.sub(r"\bself\b", subject, check.cel)


def _matches(regex: str) -> str:
    """CEL testing `self` against an RE2 regex (unanchored, like re.search)."""
    return f"self.matches({_literal(regex)})"


def problems(checks: Sequence[Check], value: str) -> list[str]:
    return [c.message for c in checks if not c.holds(value)]


def validator(checks: Sequence[Check]) -> AfterValidator:
    def validate(value: str) -> str:
        found = problems(checks, value)
        if found:
            raise ValueError("; ".join(found))
        return value

    return AfterValidator(validate)


# --- Vault request paths: mounts, KV paths, audit device paths, ACL rule paths ---------------

_URL_UNSAFE = frozenset("%?#\\")
_UNSAFE_CATEGORIES = frozenset({"Cc", "Zs", "Zl", "Zp"})  # RE2's \p{Cc} and \p{Z}


def _url_safe(value: str) -> bool:
    return not any(c in _URL_UNSAFE or unicodedata.category(c) in _UNSAFE_CATEGORIES for c in value)


NO_LEADING_SLASH = Check(
    "!self.startsWith('/')",
    "must not start with '/'",
    lambda s: not s.startswith("/"),
)
NO_TRAILING_SLASH = Check(
    "!self.endsWith('/')",
    "must not end with '/'",
    lambda s: not s.endswith("/"),
)
NO_EMPTY_SEGMENT = Check(
    "!self.contains('//')",
    "must not contain an empty segment ('//')",
    lambda s: "//" not in s,
)
NO_DOT_SEGMENT = Check(
    "!" + _matches(r"(^|/)\.\.?(/|$)"),
    "must not contain a '.' or '..' segment: Vault would resolve it to another path",
    lambda s: not any(part in (".", "..") for part in s.split("/")),
)
URL_SAFE = Check(
    "!" + _matches(r"[%?#\\\p{Cc}\p{Z}]"),
    "must not contain '%', '?', '#', '\\', whitespace or control characters: they would be "
    "decoded or cut off in the request URL",
    _url_safe,
)

VAULT_PATH_CHECKS = [
    NO_LEADING_SLASH,
    NO_TRAILING_SLASH,
    NO_EMPTY_SEGMENT,
    NO_DOT_SEGMENT,
    URL_SAFE,
]
"""A path in Vault's API (mount, KV path, audit device path): relative, clean segments."""

NO_QUOTE = Check(
    "!self.contains('\"')",
    "must not contain '\"': the path is written into the policy's HCL",
    lambda s: '"' not in s,
)
ACL_PATH_CHECKS = [NO_LEADING_SLASH, NO_EMPTY_SEGMENT, NO_DOT_SEGMENT, URL_SAFE, NO_QUOTE]
"""A Vault ACL rule path: as VAULT_PATH_CHECKS, but a trailing '/' is kept (it means the
directory itself, e.g. `secret/metadata/` for list) and the globs '*' and '+' are plain
characters here."""

AUDIT_PATH_CHARACTERS = Check(
    _matches("^[-_.a-zA-Z0-9/]*$"),
    "may only contain letters, digits, '-', '_', '.' and '/'",
    lambda s: re.fullmatch("[-_.a-zA-Z0-9/]*", s) is not None,
)
AUDIT_PATH_CHECKS = [*VAULT_PATH_CHECKS, AUDIT_PATH_CHARACTERS]
"""Where an audit device is mounted (sys/audit/<path>): a Vault path of plain characters."""

NOT_A_DOT_SEGMENT = Check(
    "self != '.' && self != '..'",
    "must not be '.' or '..': it is a segment of a Vault request path",
    lambda s: s not in (".", ".."),
)
"""For a name that is one segment of a Vault request path (policy name, role name)."""

VAULT_NAME_RE = r"^[-_.a-zA-Z0-9]+$"
VaultName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=128,
        pattern=VAULT_NAME_RE,
        json_schema_extra=cel([NOT_A_DOT_SEGMENT]),
    ),
    validator([NOT_A_DOT_SEGMENT]),
]
"""The name of a secrets engine's role (a PKI or database role): one request path segment."""

VaultPath = Annotated[
    str,
    Field(min_length=1, max_length=512, json_schema_extra=cel(VAULT_PATH_CHECKS)),
    validator(VAULT_PATH_CHECKS),
]
VaultMount = Annotated[
    str,
    Field(min_length=1, max_length=128, json_schema_extra=cel(VAULT_PATH_CHECKS)),
    validator(VAULT_PATH_CHECKS),
]
AclPath = Annotated[
    str,
    Field(min_length=1, max_length=512, json_schema_extra=cel(ACL_PATH_CHECKS)),
    validator(ACL_PATH_CHECKS),
]
AuditPath = Annotated[
    str,
    Field(min_length=1, max_length=128, json_schema_extra=cel(AUDIT_PATH_CHECKS)),
    validator(AUDIT_PATH_CHECKS),
]

# --- Secret keys -------------------------------------------------------------------------------

SECRET_KEY_RE = r"^[-._a-zA-Z0-9]{1,253}$"

SECRET_KEY_CHARACTERS = Check(
    _matches(SECRET_KEY_RE),
    "must be 1 to 253 characters of [-._a-zA-Z0-9] (a valid Secret key)",
    lambda s: re.fullmatch(SECRET_KEY_RE, s) is not None,
)
SECRET_KEY_NOT_DOTS = Check(
    "self != '.' && !self.startsWith('..')",
    "must not be '.' or '..' or start with '..': Kubernetes refuses such Secret keys",
    lambda s: s != "." and not s.startswith(".."),
)
SECRET_KEY_CHECKS = [SECRET_KEY_CHARACTERS, SECRET_KEY_NOT_DOTS]


def secret_key_problem(key: str) -> str | None:
    """Why key cannot be a key of a Secret (or ConfigMap), or None."""
    found = problems(SECRET_KEY_CHECKS, key)
    return "; ".join(found) if found else None


SecretKey = Annotated[str, validator(SECRET_KEY_CHECKS)]
"""A Secret key; the schema checks go on the field or map that holds it."""

# --- label selectors, as Kubernetes validates its own ------------------------------------------

_DNS_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
LABEL_KEY_RE = rf"^({_DNS_SUBDOMAIN}/)?{_LABEL_NAME}$"
LABEL_VALUE_RE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"


def _label_key_lengths(key: str) -> bool:
    prefix, slash, _ = key.partition("/")
    return len(key.rsplit("/", 1)[-1]) <= 63 and (not slash or len(prefix) <= 253)


LABEL_KEY_SHAPE = Check(
    _matches(LABEL_KEY_RE),
    "must be a qualified name: an optional DNS subdomain prefix and '/', then a name of "
    "alphanumerics, '-', '_' or '.' that starts and ends with an alphanumeric",
    lambda s: re.fullmatch(LABEL_KEY_RE, s) is not None,
)
LABEL_KEY_LENGTHS = Check(
    f"!{_matches('(^|/)[^/]{64,}$')} && !{_matches('^[^/]{254,}/')}",
    "must have a name of at most 63 characters and a prefix of at most 253",
    _label_key_lengths,
)
LABEL_KEY_CHECKS = [LABEL_KEY_SHAPE, LABEL_KEY_LENGTHS]
LABEL_VALUE_CHECKS = [
    Check(
        _matches(LABEL_VALUE_RE),
        "must be empty or alphanumerics, '-', '_' or '.' starting and ending with an alphanumeric",
        lambda s: re.fullmatch(LABEL_VALUE_RE, s) is not None,
    )
]

NOT_OURS = Check(
    "!self.startsWith('vaultsync.io/')",
    "must not start with 'vaultsync.io/': vaultsync keeps its own records on the Secret there",
    lambda s: not s.startswith("vaultsync.io/"),
)
"""For the label and annotation keys a destination declares on its Secret."""
DeclaredKey = Annotated[str, validator([NOT_OURS])]

LabelKey = Annotated[str, validator(LABEL_KEY_CHECKS)]
"""A label key; the schema checks go on the field or map that holds it."""
LabelValue = Annotated[
    str,
    Field(max_length=63, json_schema_extra=cel(LABEL_VALUE_CHECKS)),
    validator(LABEL_VALUE_CHECKS),
]
