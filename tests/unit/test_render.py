import base64
import time

import pytest

from vaultsync.api.secret import VaultSecretSpec
from vaultsync.secrets.render import (
    MAX_SECRET_BYTES,
    REDACTED,
    RenderError,
    declared_keys,
    render,
)


def spec(**fields: object) -> VaultSecretSpec:
    return VaultSecretSpec.model_validate(
        {"path": "app/db", "destination": {"name": "db"}, **fields}
    )


def test_all_keys_by_default_and_non_strings_as_json() -> None:
    out = render(spec(), {"user": "app", "port": 5432, "opts": {"ssl": True}, "on": False})
    assert out == {
        "user": b"app",
        "port": b"5432",
        "opts": b'{"ssl":true}',
        "on": b"false",
    }


def test_selected_keys_are_renamed_and_others_dropped() -> None:
    out = render(spec(keys=[{"from": "user", "to": "DB_USER"}]), {"user": "app", "pw": "x"})
    assert out == {"DB_USER": b"app"}


def test_base64_decoding_is_opt_in_per_key() -> None:
    blob = bytes(range(256))
    data = {"cert": base64.b64encode(blob).decode()}
    out = render(spec(keys=[{"from": "cert", "decodeBase64": True}]), data)
    assert out == {"cert": blob}


def test_bad_base64_names_the_key_not_the_value() -> None:
    with pytest.raises(RenderError) as err:
        render(spec(keys=[{"from": "cert", "decodeBase64": True}]), {"cert": "not*base64!"})
    assert err.value.reason == "InvalidBase64"
    assert "not*base64!" not in str(err.value)


def test_template_builds_keys_and_replaces_the_default_selection() -> None:
    out = render(
        spec(template={"DSN": "postgres://{{ user }}:{{ password }}@db/app"}),
        {"user": "app", "password": "s3cret"},
    )
    assert out == {"DSN": b"postgres://app:s3cret@db/app"}


def test_template_and_keys_together() -> None:
    out = render(
        spec(keys=[{"from": "user"}], template={"greeting": "hi {{ data['user'] }}"}),
        {"user": "app"},
    )
    assert out == {"user": b"app", "greeting": b"hi app"}


def test_template_error_is_redacted() -> None:
    with pytest.raises(RenderError) as err:
        render(spec(template={"x": "{{ password.missing }}"}), {"password": "hunter2-value"})
    assert err.value.reason == "TemplateError"
    assert "hunter2-value" not in str(err.value)


def test_template_undefined_variable() -> None:
    with pytest.raises(RenderError) as err:
        render(spec(template={"x": "{{ nope }}"}), {"password": "p"})
    assert err.value.reason == "TemplateError"
    assert "nope" in str(err.value)


def test_template_sandbox_blocks_attribute_escape() -> None:
    with pytest.raises(RenderError) as err:
        render(spec(template={"x": "{{ ''.__class__.__mro__ }}"}), {})
    assert err.value.reason == "TemplateError"


def test_error_text_that_would_quote_a_value_is_redacted() -> None:
    with pytest.raises(RenderError) as err:
        render(spec(template={"x": "{{ data[password] }}"}), {"password": "hunter2-value"})
    assert "hunter2-value" not in str(err.value)
    assert REDACTED in str(err.value)


@pytest.mark.parametrize("key", ["has space", "slash/key", "", "ü"])
def test_invalid_kv_key_is_refused(key: str) -> None:
    with pytest.raises(RenderError) as err:
        render(spec(), {key: "v"})
    assert err.value.reason == "InvalidKey"


def test_missing_selected_key() -> None:
    with pytest.raises(RenderError) as err:
        render(spec(keys=[{"from": "absent"}]), {"user": "app"})
    assert err.value.reason == "KeyNotFound"


def test_over_one_mebibyte_is_refused() -> None:
    with pytest.raises(RenderError) as err:
        render(spec(), {"big": "x" * MAX_SECRET_BYTES})
    assert err.value.reason == "SecretTooLarge"


def test_a_template_rendering_over_one_mebibyte_is_refused_as_too_large() -> None:
    """The same reason as data over the limit: the worker stops at the limit and says why."""
    with pytest.raises(RenderError) as err:
        render(spec(template={"x": "{{ 'x' * 2000000 }}"}), {"password": "hunter2-value"})
    assert err.value.reason == "SecretTooLarge"
    assert "'x'" in str(err.value) and "hunter2" not in str(err.value)
    assert render(spec(template={"x": "{{ password }}"}), {"password": "p"}) == {"x": b"p"}


def test_the_keys_a_spec_writes_are_known_before_the_data() -> None:
    """What a Merge checks before a credential is issued; copying every key says nothing."""
    keys = [{"from": "username", "to": "DB_USER"}, {"from": "password"}]
    shaped = spec(keys=keys, template={"URL": "{{ username }}"})
    assert declared_keys(shaped) == {"DB_USER", "password", "URL"}
    assert set(render(shaped, {"username": "u", "password": "p"})) == declared_keys(shaped)
    assert declared_keys(spec()) == frozenset()


@pytest.mark.parametrize(
    "source",
    ["{{ 7 ** 1000000000 }}", "{{ ('x' * 600000000) | length }}"],
    ids=["hours-of-cpu", "gigabytes"],
)
def test_a_runaway_template_is_a_template_error_and_the_next_renders(source: str) -> None:
    """Rendered in a worker process with limits, not in the operator (templating.py)."""
    with pytest.raises(RenderError) as err:
        render(spec(template={"x": source}), {"password": "hunter2-value"})
    assert err.value.reason == "TemplateError"
    assert render(spec(template={"x": "{{ password }}"}), {"password": "p"}) == {"x": b"p"}


def test_a_template_that_recursed_is_a_template_error() -> None:
    with pytest.raises(RenderError) as err:
        render(spec(template={"x": "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}"}), {})
    assert err.value.reason == "TemplateError"
    assert "RecursionError" in str(err.value)


@pytest.mark.parametrize(
    ("value", "source"),
    [
        ({"inner": "hunter2-value"}, "{{ data[nested.inner] }}"),
        (["hunter2-value"], "{{ data[nested[0]] }}"),
        ({"deep": [{"er": "hunter2-value"}]}, "{{ data[nested.deep[0].er] }}"),
    ],
    ids=["object", "list", "nested"],
)
def test_a_value_inside_a_json_value_is_redacted_too(value: object, source: str) -> None:
    """KV values may be JSON objects and lists: the strings in them are values as much."""
    with pytest.raises(RenderError) as err:
        render(spec(template={"x": source}), {"nested": value})
    assert err.value.reason == "TemplateError"
    assert "hunter2-value" not in str(err.value)
    assert REDACTED in str(err.value)


def test_a_template_stopped_once_is_not_run_again_on_the_same_data() -> None:
    """While one is stopped every other template waits: a retry of the same fails at once."""
    runaway = spec(template={"x": "{{ 7 ** 999999999 }}"})
    for _ in range(2):
        started = time.monotonic()
        with pytest.raises(RenderError) as err:
            render(runaway, {"password": "p"})
        assert "took longer than" in str(err.value)
    assert time.monotonic() - started < 1
