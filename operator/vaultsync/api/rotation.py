"""VaultSecret rotation: when new values are generated and written back to Vault, and how.

Every rule is written twice with one message: as CEL on the schema node it concerns (so the
API server refuses the object at apply time) and as a pydantic validator (so an object an
older API server let through still ends as a clear InvalidSpec). The CRD carries no defaults,
so the CEL rules spell out the defaults of absent fields themselves. Only the time zone name
is checked in Python alone: CEL has no time zone database.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Annotated, Self

from cronsim import CronSim, CronSimError
from pydantic import ConfigDict, Field, field_validator, model_validator
from pydantic.config import JsonDict

from vaultsync.api.base import Duration, Model, parse_duration
from vaultsync.api.names import SECRET_KEY_CHECKS, Check, SecretKey, cel, validator

MAX_KEYS = 32
MAX_INTERVAL_HOURS = 87600
DEFAULT_SYMBOLS = "!#%&*+-=?@^_"

# Five fields separated by blanks; Python's \s is limited to ASCII like RE2's.
CRON_FIELDS_RE = r"^\s*\S+(\s+\S+){4}\s*$"
# A Vault password policy name (Vault's GenericNameRegex, ASCII): one request path segment.
POLICY_NAME_RE = r"^[a-zA-Z0-9_]([-._a-zA-Z0-9]*[a-zA-Z0-9_])?$"
# ASCII punctuation: ! to /, : to @, [ to `, { to ~.
SYMBOLS_RE = r"^[!-/:-@\[-`{-~]+$"

MESSAGES = {
    "one_timing": "exactly one of schedule or interval must be set",
    "zone_needs_schedule": "timeZone applies to schedule only",
    "five_fields": "schedule must be a cron expression of 5 fields "
    "(minute hour day-of-month month day-of-week)",
    "interval_range": "interval must be between 1s and 87600h (10 years)",
    "unique_names": "two keys entries have the same name",
    "one_generator": "exactly one generator (passwordPolicy or generate) must be set",
    "one_class": "generate needs at least one character class enabled",
    "min_needs_class": "a minimum above 0 needs its character class enabled",
    "mins_fit": "the minimums per character class add up to more than length",
    "symbols_need_class": "symbolCharacters needs symbols: true",
}


def _cel_literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _regex_check(regex: str, message: str) -> Check:
    return Check(
        f"self.matches({_cel_literal(regex)})",
        message,
        lambda s: re.fullmatch(regex, s) is not None,
    )


POLICY_NAME = _regex_check(
    POLICY_NAME_RE,
    "must be a Vault password policy name: letters, digits and '_', with '-' or '.' inside",
)
SYMBOL_CHARACTERS = _regex_check(SYMBOLS_RE, "may only contain ASCII punctuation")


def _rules(*pairs: tuple[str, str]) -> JsonDict:
    """json_schema_extra putting (CEL rule, MESSAGES key) pairs on a schema node."""
    return {"x-kubernetes-validations": [{"rule": r, "message": MESSAGES[m]} for r, m in pairs]}


# --- the built-in generator -------------------------------------------------------------------


@dataclass(frozen=True)
class CharacterClass:
    """An enabled character class of a built-in generator and its effective minimum."""

    name: str
    characters: str
    minimum: int


# CEL for the classes: whether each is enabled, and its effective minimum, when the field may
# be absent (the CRD has no defaults).
_ON = {
    "lowercase": "(!has(self.lowercase) || self.lowercase)",
    "uppercase": "(!has(self.uppercase) || self.uppercase)",
    "digits": "(!has(self.digits) || self.digits)",
    "symbols": "(has(self.symbols) && self.symbols)",
}
_MIN_FIELD = {
    "lowercase": "minLowercase",
    "uppercase": "minUppercase",
    "digits": "minDigits",
    "symbols": "minSymbols",
}


def _cel_min(cls: str) -> str:
    field = _MIN_FIELD[cls]
    return f"(has(self.{field}) ? self.{field} : ({_ON[cls]} ? 1 : 0))"


Minimum = Annotated[int, Field(ge=0, le=1024)]


class GeneratorRules(Model):
    """Built-in generator: random characters from Python's `secrets`.

    A minimum left unset is 1 for an enabled class and 0 for a disabled one, so by default
    every enabled class appears at least once (what most password rules ask for).
    """

    model_config = ConfigDict(
        json_schema_extra=_rules(
            (" || ".join(_ON.values()), "one_class"),
            (
                " && ".join(
                    f"(!has(self.{_MIN_FIELD[c]}) || self.{_MIN_FIELD[c]} == 0 || {_ON[c]})"
                    for c in _ON
                ),
                "min_needs_class",
            ),
            (
                " + ".join(_cel_min(c) for c in _ON) + " <= (has(self.length) ? self.length : 32)",
                "mins_fit",
            ),
            ("!has(self.symbolCharacters) || " + _ON["symbols"], "symbols_need_class"),
        )
    )

    length: int = Field(default=32, ge=8, le=1024, description="Characters in a value.")
    lowercase: bool = Field(default=True, description="Use lowercase letters a-z.")
    uppercase: bool = Field(default=True, description="Use uppercase letters A-Z.")
    digits: bool = Field(default=True, description="Use digits 0-9.")
    symbols: bool = Field(default=False, description="Use the characters of symbolCharacters.")
    min_lowercase: Minimum | None = Field(
        default=None,
        description="At least this many lowercase letters; absent: 1 if enabled, else 0.",
    )
    min_uppercase: Minimum | None = Field(
        default=None,
        description="At least this many uppercase letters; absent: 1 if enabled, else 0.",
    )
    min_digits: Minimum | None = Field(
        default=None, description="At least this many digits; absent: 1 if enabled, else 0."
    )
    min_symbols: Minimum | None = Field(
        default=None, description="At least this many symbols; absent: 1 if enabled, else 0."
    )
    symbol_characters: Annotated[str, validator([SYMBOL_CHARACTERS])] = Field(
        default=DEFAULT_SYMBOLS,
        min_length=1,
        max_length=32,
        json_schema_extra=cel([SYMBOL_CHARACTERS]),
        description="The symbols to use (ASCII punctuation); only with symbols: true.",
    )

    def classes(self) -> list[CharacterClass]:
        """The enabled character classes with their effective minimums."""
        candidates = [
            ("lowercase", self.lowercase, string.ascii_lowercase, self.min_lowercase),
            ("uppercase", self.uppercase, string.ascii_uppercase, self.min_uppercase),
            ("digits", self.digits, string.digits, self.min_digits),
            (
                "symbols",
                self.symbols,
                "".join(sorted(set(self.symbol_characters))),
                self.min_symbols,
            ),
        ]
        return [
            CharacterClass(name, chars, 1 if minimum is None else minimum)
            for name, enabled, chars, minimum in candidates
            if enabled
        ]

    @model_validator(mode="after")
    def _consistent(self) -> GeneratorRules:
        enabled = {c.name for c in self.classes()}
        if not enabled:
            raise ValueError(MESSAGES["one_class"])
        mins = {
            "lowercase": self.min_lowercase,
            "uppercase": self.min_uppercase,
            "digits": self.min_digits,
            "symbols": self.min_symbols,
        }
        if any(m and name not in enabled for name, m in mins.items()):
            raise ValueError(MESSAGES["min_needs_class"])
        if sum(c.minimum for c in self.classes()) > self.length:
            raise ValueError(MESSAGES["mins_fit"])
        if "symbol_characters" in self.model_fields_set and not self.symbols:
            raise ValueError(MESSAGES["symbols_need_class"])
        return self


# --- keys and the rotation spec ---------------------------------------------------------------


class RotationKey(Model):
    """A KV key that rotation replaces, and how its new value is made."""

    model_config = ConfigDict(
        json_schema_extra=_rules(
            ("has(self.passwordPolicy) != has(self.generate)", "one_generator")
        )
    )

    name: SecretKey = Field(
        max_length=253,
        json_schema_extra=cel(SECRET_KEY_CHECKS),
        description="The KV key to replace; the other keys of the secret keep their values.",
    )
    password_policy: Annotated[str, validator([POLICY_NAME])] | None = Field(
        default=None,
        max_length=128,
        json_schema_extra=cel([POLICY_NAME]),
        description="A Vault/OpenBao password policy whose generate endpoint makes the value "
        "(sys/policies/password/<name>/generate; the VaultSecret's identity needs read on it).",
    )
    generate: GeneratorRules | None = Field(
        default=None, description="Built-in generator rules (length and character classes)."
    )

    @model_validator(mode="after")
    def _one_generator(self) -> RotationKey:
        if (self.password_policy is None) == (self.generate is None):
            raise ValueError(MESSAGES["one_generator"])
        return self


TIMING_RULES: list[dict[str, str]] = [
    {"rule": "has(self.schedule) != has(self.interval)", "message": MESSAGES["one_timing"]},
    {
        "rule": "!has(self.timeZone) || has(self.schedule)",
        "message": MESSAGES["zone_needs_schedule"],
    },
    {
        "rule": f"!has(self.schedule) || self.schedule.matches({_cel_literal(CRON_FIELDS_RE)})",
        "message": MESSAGES["five_fields"],
    },
    {
        "rule": "!has(self.interval) || (duration(self.interval) >= duration('1s') "
        f"&& duration(self.interval) <= duration('{MAX_INTERVAL_HOURS}h'))",
        "message": MESSAGES["interval_range"],
    },
]
"""CEL rules of a rotation timing (`self` is the object with schedule, timeZone, interval)."""

ROTATION_RULES: list[dict[str, str]] = [
    *TIMING_RULES,
    {
        "rule": "self.keys.all(a, self.keys.exists_one(b, b.name == a.name))",
        "message": MESSAGES["unique_names"],
    },
]
"""CEL rules of the rotation object (`self` is spec.rotation). RotationSpec already carries
them on its own schema node, so a field `rotation: RotationSpec | None` brings them along."""


@cache
def _zones() -> frozenset[str]:
    """The IANA zone names of the tzdata package (a dependency, so that zoneinfo finds every
    one of them in any image, and machine links such as "localtime" are not taken)."""
    return frozenset(resources.files("tzdata").joinpath("zones").read_text().split())


class RotationTiming(Model):
    """When something is rotated: a cron schedule in a time zone, or an interval. Shared by
    VaultSecret rotation (RotationSpec) and VaultTransitKey's own schedule."""

    model_config = ConfigDict(
        json_schema_extra={"x-kubernetes-validations": [{**r} for r in TIMING_RULES]}
    )

    schedule: str | None = Field(
        default=None,
        max_length=128,
        description='A cron expression of 5 fields, e.g. "0 3 * * *", evaluated in timeZone. '
        "After downtime across several slots it is rotated once.",
    )
    time_zone: str = Field(
        default="UTC",
        min_length=1,
        max_length=64,
        description='IANA time zone of schedule, e.g. "Europe/Berlin"; only with schedule.',
    )
    interval: Duration | None = Field(
        default=None,
        max_length=32,
        description='Rotate every interval instead of on a schedule, e.g. "720h"; 1s to 87600h.',
    )

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if value not in _zones():
            raise ValueError(f"timeZone {value!r} is not an IANA time zone name")
        return value

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not re.fullmatch(CRON_FIELDS_RE, value, re.ASCII):
            raise ValueError(MESSAGES["five_fields"])
        try:
            CronSim(value, datetime(2000, 1, 1))
        except CronSimError as exc:
            raise ValueError(f"schedule: {exc}") from None
        return value

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: str | None) -> str | None:
        if value is not None and not 1 <= parse_duration(value) <= MAX_INTERVAL_HOURS * 3600:
            raise ValueError(MESSAGES["interval_range"])
        return value

    @model_validator(mode="after")
    def _one_timing(self) -> Self:
        if (self.schedule is None) == (self.interval is None):
            raise ValueError(MESSAGES["one_timing"])
        if "time_zone" in self.model_fields_set and self.schedule is None:
            raise ValueError(MESSAGES["zone_needs_schedule"])
        return self


class RotationSpec(RotationTiming):
    """When a VaultSecret's listed keys get new values, written back to Vault."""

    model_config = ConfigDict(
        json_schema_extra={"x-kubernetes-validations": [{**r} for r in ROTATION_RULES]}
    )

    keys: list[RotationKey] = Field(
        min_length=1,
        max_length=MAX_KEYS,
        description="The KV keys that get new values (unique names); other keys are kept.",
    )

    @model_validator(mode="after")
    def _unique_names(self) -> RotationSpec:
        names = [k.name for k in self.keys]
        if len(names) != len(set(names)):
            raise ValueError(MESSAGES["unique_names"])
        return self
