"""spec.rotation: defaults, what is refused, and CEL rules that carry the same messages."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import ValidationError

from tests.schemas import nodes
from vaultsync.api.crds import model_schema
from vaultsync.api.rotation import (
    DEFAULT_SYMBOLS,
    MESSAGES,
    POLICY_NAME,
    POLICY_NAME_RE,
    ROTATION_RULES,
    SYMBOL_CHARACTERS,
    SYMBOLS_RE,
    GeneratorRules,
    RotationSpec,
)
from vaultsync.api.secret import VaultSecretSpec
from vaultsync.secrets.reconciler import request_condition

GENERATED = {"name": "password", "generate": {}}


def rotation(**fields: Any) -> dict[str, Any]:
    return {"schedule": "0 3 * * *", "keys": [GENERATED], **fields}


def refused(raw: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as err:
        RotationSpec.model_validate(raw)
    return str(err.value)


def test_defaults() -> None:
    spec = RotationSpec.model_validate(rotation())
    assert (spec.schedule, spec.time_zone, spec.interval) == ("0 3 * * *", "UTC", None)
    rules = spec.keys[0].generate
    assert rules is not None
    assert (rules.length, rules.lowercase, rules.uppercase, rules.digits, rules.symbols) == (
        32,
        True,
        True,
        True,
        False,
    )
    assert [(c.name, c.minimum) for c in rules.classes()] == [
        ("lowercase", 1),
        ("uppercase", 1),
        ("digits", 1),
    ]
    with_symbols = GeneratorRules.model_validate({"symbols": True, "minDigits": 0})
    assert [(c.name, c.minimum) for c in with_symbols.classes()] == [
        ("lowercase", 1),
        ("uppercase", 1),
        ("digits", 0),
        ("symbols", 1),
    ]
    assert with_symbols.classes()[-1].characters == "".join(sorted(DEFAULT_SYMBOLS))


def test_accepted() -> None:
    RotationSpec.model_validate(
        {
            "interval": "720h",
            "keys": [
                {"name": "password", "passwordPolicy": "db-passwords"},
                {"name": "api.key", "generate": {"length": 64, "symbols": True, "minSymbols": 4}},
                {"name": "pin", "generate": {"length": 8, "lowercase": False, "uppercase": False}},
            ],
        }
    )
    RotationSpec.model_validate(rotation(schedule="*/5 1-3 * JAN-MAR mon#2", timeZone="Asia/Tokyo"))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"keys": [GENERATED]}, MESSAGES["one_timing"]),
        (rotation(interval="1h"), MESSAGES["one_timing"]),
        (
            {"interval": "1h", "timeZone": "UTC", "keys": [GENERATED]},
            MESSAGES["zone_needs_schedule"],
        ),
        (rotation(schedule="0 3 * * * *"), MESSAGES["five_fields"]),
        (rotation(schedule="@daily"), MESSAGES["five_fields"]),
        (rotation(schedule="61 3 * * *"), "schedule: Bad minute"),
        (rotation(schedule="0 3 31 2 *"), "schedule: Bad day-of-month"),
        (rotation(timeZone="Mars/Olympus"), "not an IANA time zone name"),
        (rotation(timeZone="localtime"), "not an IANA time zone name"),
        (rotation(timeZone="../../etc/passwd"), "not an IANA time zone name"),
        ({"interval": "0", "keys": [GENERATED]}, MESSAGES["interval_range"]),
        ({"interval": "500ms", "keys": [GENERATED]}, MESSAGES["interval_range"]),
        ({"interval": "87601h", "keys": [GENERATED]}, MESSAGES["interval_range"]),
        (rotation(keys=[]), "at least 1 item"),
        (rotation(keys=[GENERATED, GENERATED]), MESSAGES["unique_names"]),
        (rotation(keys=[{"name": "p"}]), MESSAGES["one_generator"]),
        (
            rotation(keys=[{"name": "p", "passwordPolicy": "x", "generate": {}}]),
            MESSAGES["one_generator"],
        ),
        (rotation(keys=[{"name": "a b", "generate": {}}]), "[-._a-zA-Z0-9]"),
        (rotation(keys=[{"name": "..", "generate": {}}]), "must not be '.' or '..'"),
        (rotation(keys=[{"name": "p", "passwordPolicy": "../x"}]), POLICY_NAME.message),
        (rotation(keys=[{"name": "p", "passwordPolicy": "a/b"}]), POLICY_NAME.message),
    ],
)
def test_refused(raw: dict[str, Any], message: str) -> None:
    assert message in refused(raw)


@pytest.mark.parametrize(
    ("generate", "message"),
    [
        ({"lowercase": False, "uppercase": False, "digits": False}, MESSAGES["one_class"]),
        ({"minSymbols": 1}, MESSAGES["min_needs_class"]),
        ({"digits": False, "minDigits": 2}, MESSAGES["min_needs_class"]),
        ({"length": 8, "minLowercase": 4, "minUppercase": 4}, MESSAGES["mins_fit"]),
        ({"length": 8, "minLowercase": 6, "minUppercase": 2}, MESSAGES["mins_fit"]),
        ({"symbolCharacters": "!?"}, MESSAGES["symbols_need_class"]),
        ({"symbols": True, "symbolCharacters": "!a"}, SYMBOL_CHARACTERS.message),
        ({"symbols": True, "symbolCharacters": "! "}, SYMBOL_CHARACTERS.message),
        ({"symbols": True, "symbolCharacters": ""}, "at least 1 character"),
        ({"length": 7}, "greater than or equal to 8"),
        ({"length": 1025}, "less than or equal to 1024"),
        ({"minDigits": -1}, "greater than or equal to 0"),
        ({"colour": "blue"}, "Extra inputs are not permitted"),
    ],
)
def test_generator_refused(generate: dict[str, Any], message: str) -> None:
    assert message in refused(rotation(keys=[{"name": "p", "generate": generate}]))


def test_disabled_class_with_minimum_zero_and_mins_that_fit_exactly() -> None:
    rules = GeneratorRules.model_validate(
        {"length": 8, "digits": False, "minDigits": 0, "minLowercase": 4, "minUppercase": 4}
    )
    assert sum(c.minimum for c in rules.classes()) == rules.length


def _validations(schema: Any) -> list[dict[str, str]]:
    return [r for node in nodes(schema) for r in node.get("x-kubernetes-validations", [])]


def test_schema_carries_every_rule_with_the_pydantic_message() -> None:
    schema = model_schema(RotationSpec)
    assert schema["x-kubernetes-validations"] == ROTATION_RULES
    messages = {r["message"] for r in _validations(schema)}
    assert set(MESSAGES.values()) <= messages
    assert not any("default" in node for node in nodes(schema))


def test_cel_regexes_are_the_python_ones() -> None:
    """The RE2 patterns in the CEL rules are the ones the Python checks use (RE2 and Python
    agree on these: character classes, \\s and \\S in ASCII)."""
    rules = " ".join(r["rule"] for r in _validations(model_schema(RotationSpec)))
    literals = [
        lit.replace("\\\\", "\\") for lit in re.findall(r"matches\('((?:[^'\\]|\\.)*)'\)", rules)
    ]
    cron = r"^\s*\S+(\s+\S+){4}\s*$"
    assert cron in literals
    assert re.fullmatch(cron, " 0  3 * * * ", re.ASCII)
    assert not re.fullmatch(cron, "0 3 * * * *", re.ASCII)
    for check, regex, good, bad in [
        (POLICY_NAME, POLICY_NAME_RE, ["db-x", "a", "a.b_c", "_x_"], ["", ".", "..", "-a", "a/b"]),
        (SYMBOL_CHARACTERS, SYMBOLS_RE, [DEFAULT_SYMBOLS, "[]\\`{}~"], ["", "a", "!0", "! ", "é"]),
    ]:
        assert regex in literals
        assert all(check.holds(v) for v in good)
        assert not any(check.holds(v) for v in bad)


def _vault_secret(**spec: Any) -> VaultSecretSpec:
    return VaultSecretSpec.model_validate(
        {"path": "team-a/db", "destination": {"name": "db"}, **spec}
    )


def test_a_rotate_request_without_spec_rotation_is_said_to_be_ignored() -> None:
    update = request_condition(_vault_secret(), "first")
    assert (update.type, update.status, update.reason) == (
        "RotationRequest",
        False,
        "RotationNotConfigured",
    )
    assert "vaultsync.io/rotate='first' is ignored" in update.message
    assert "spec.rotation" in update.message
    assert request_condition(_vault_secret(), "second").message != update.message


@pytest.mark.parametrize(
    ("spec", "request_value"),
    [({}, None), ({}, ""), ({"rotation": rotation()}, "first")],
)
def test_no_rotation_request_condition_without_an_ignored_request(
    spec: dict[str, Any], request_value: str | None
) -> None:
    update = request_condition(_vault_secret(**spec), request_value)
    assert (update.type, update.status) == ("RotationRequest", None)


def test_a_long_rotate_request_is_cut_short_and_told_apart_by_its_hash() -> None:
    first = request_condition(_vault_secret(), "x" * 100 + "1").message
    second = request_condition(_vault_secret(), "x" * 100 + "2").message
    assert first != second and "x" * 65 not in first and len(first) < 300
