"""The built-in generator meets its rules; rotation replaces the listed keys only."""

from __future__ import annotations

import string
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from vaultsync.api.rotation import DEFAULT_SYMBOLS, GeneratorRules, RotationKey
from vaultsync.secrets.rotation.generate import generate, rotated_data


@st.composite
def generator_rules(draw: st.DrawFn) -> GeneratorRules:
    enabled = draw(
        st.fixed_dictionaries(
            {c: st.booleans() for c in ("lowercase", "uppercase", "digits", "symbols")}
        ).filter(lambda classes: any(classes.values()))
    )
    raw: dict[str, Any] = dict(enabled)
    mins = {
        "lowercase": "minLowercase",
        "uppercase": "minUppercase",
        "digits": "minDigits",
        "symbols": "minSymbols",
    }
    for cls, field in mins.items():
        if enabled[cls] and draw(st.booleans()):
            raw[field] = draw(st.integers(min_value=0, max_value=20))
        elif not enabled[cls] and draw(st.booleans()):
            raw[field] = 0
    if enabled["symbols"] and draw(st.booleans()):
        raw["symbolCharacters"] = "".join(
            draw(st.lists(st.sampled_from(string.punctuation), min_size=1, max_size=32))
        )
    floor = sum(raw.get(mins[c], 1) for c in mins if enabled[c])
    raw["length"] = draw(st.integers(min_value=max(8, floor), max_value=max(8, floor) + 100))
    return GeneratorRules.model_validate(raw)


@settings(max_examples=300, deadline=None)
@given(rules=generator_rules())
def test_every_value_meets_its_rules(rules: GeneratorRules) -> None:
    value = generate(rules)
    assert len(value) == rules.length
    classes = rules.classes()
    alphabet = set("".join(c.characters for c in classes))
    assert set(value) <= alphabet
    for cls in classes:
        assert sum(ch in cls.characters for ch in value) >= cls.minimum, cls.name


def test_default_rules_use_letters_and_digits_only() -> None:
    value = generate(GeneratorRules())
    assert len(value) == 32
    assert set(value) <= set(string.ascii_letters + string.digits)
    assert not set(value) & set(DEFAULT_SYMBOLS)


def test_values_differ_and_every_minimum_is_met_when_it_fills_the_length() -> None:
    rules = GeneratorRules.model_validate(
        {"length": 8, "minLowercase": 2, "minUppercase": 2, "minDigits": 2}
        | {"symbols": True, "minSymbols": 2, "symbolCharacters": "!"}
    )
    values = {generate(rules) for _ in range(50)}
    assert len(values) > 45
    for value in values:
        assert value.count("!") == 2
        assert sum(c.isdigit() for c in value) == 2
        assert sum(c.islower() for c in value) == sum(c.isupper() for c in value) == 2


KEY_NAMES = st.text(alphabet=string.ascii_letters + string.digits + "-._", min_size=1, max_size=8)
SECRET_KEYS = KEY_NAMES.filter(lambda k: k != "." and not k.startswith(".."))
KV_VALUES = st.one_of(st.text(max_size=20), st.integers(), st.booleans(), st.none())


@settings(max_examples=200, deadline=None)
@given(
    current=st.dictionaries(KEY_NAMES, KV_VALUES, max_size=8),
    listed=st.lists(SECRET_KEYS, max_size=5, unique=True),
    data=st.data(),
)
def test_only_listed_keys_change(
    current: dict[str, Any], listed: list[str], data: st.DataObject
) -> None:
    keys = [
        RotationKey.model_validate(
            {"name": name, "passwordPolicy": "pp"}
            if data.draw(st.booleans())
            else {"name": name, "generate": {"length": 12}}
        )
        for name in listed
    ]
    before = dict(current)
    asked: list[str] = []

    def from_policy(policy: str) -> str:
        asked.append(policy)
        return "from-policy-value"

    new = rotated_data(current, keys, from_policy)
    assert current == before, "the data read must not be modified"
    assert set(new) == set(current) | set(listed)
    for name, value in current.items():
        if name not in listed:
            assert new[name] == value
    for key in keys:
        if key.password_policy is not None:
            assert new[key.name] == "from-policy-value"
        else:
            assert isinstance(new[key.name], str) and len(new[key.name]) == 12
    assert asked == ["pp"] * sum(k.password_policy is not None for k in keys)
