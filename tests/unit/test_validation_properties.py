"""Property-based: malformed specs and data never escape as unhandled exceptions."""

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vaultsync.runtime.errors import SyncError
from vaultsync.secrets.destination import Owner, plan
from vaultsync.secrets.reconciler import parse_spec
from vaultsync.secrets.render import render

FIELDS = [
    "path",
    "mount",
    "version",
    "refreshInterval",
    "keys",
    "template",
    "destination",
    "authRef",
    "unknown",
]
DEST_FIELDS = ["name", "type", "creationPolicy", "deletionPolicy", "labels", "annotations"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**6),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.sampled_from(["Owner", "Merge", "Orphan", "Delete", "Retain", "0", "1m", "db", "a/b", "/x"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
key_maps = st.lists(
    st.fixed_dictionaries(
        {}, optional={"from": json_values, "to": json_values, "decodeBase64": json_values}
    ),
    max_size=4,
)
destinations = st.one_of(
    json_values, st.dictionaries(st.sampled_from(DEST_FIELDS), json_values, max_size=6)
)
near_valid = st.fixed_dictionaries(
    {
        "path": st.sampled_from(["app/db", "a", "x/y/z"]),
        "destination": st.fixed_dictionaries(
            {"name": st.sampled_from(["db", "app-creds"])},
            optional={
                "creationPolicy": st.sampled_from(["Owner", "Merge", "Orphan"]),
                "type": st.sampled_from(["Opaque", "kubernetes.io/tls"]),
                "labels": st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2),
            },
        ),
    },
    optional={
        "keys": key_maps,
        "template": st.dictionaries(st.text(max_size=6), st.text(max_size=30), max_size=3),
        "version": st.integers(-1, 5),
        "refreshInterval": st.sampled_from(["0", "1m", "5s", "1h30m", "bad", ""]),
    },
)
specs = st.one_of(
    near_valid,
    json_values,
    st.dictionaries(
        st.sampled_from(FIELDS),
        st.one_of(json_values, key_maps, destinations),
        max_size=8,
    ),
)
kv_data = st.dictionaries(st.text(max_size=12), json_values, max_size=6)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(raw=specs, data=kv_data, current=st.one_of(st.none(), json_values))
def test_validation_layer_never_raises_unhandled(raw: Any, data: Any, current: Any) -> None:
    try:
        spec = parse_spec(raw)
    except SyncError as exc:
        assert exc.reason == "InvalidSpec"
        assert not exc.retryable
        return
    try:
        rendered = render(spec, data)
        existing = current if isinstance(current, dict) else None
        plan(existing, spec.destination, Owner("n", "ns", "uid"), rendered, key=b"k" * 32)
    except SyncError as exc:
        assert exc.reason and str(exc)


@settings(max_examples=200)
@given(template=st.text(max_size=40), data=kv_data)
def test_any_template_text_is_a_result_or_a_template_error(template: str, data: Any) -> None:
    spec = parse_spec({"path": "p", "destination": {"name": "d"}, "template": {"out": template}})
    try:
        render(spec, data)
    except SyncError as exc:
        assert exc.reason in {"TemplateError", "SecretTooLarge"}
