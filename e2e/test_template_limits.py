"""A tenant's template cannot take the operator down: a template that would compute for hours
or allocate gigabytes is a TemplateError of its own VaultSecret, and every other object keeps
syncing meanwhile."""

from __future__ import annotations

import pytest

from e2e.harness.manifests import vault_secret
from e2e.harness.polling import eventually
from e2e.harness.stack import Stack

pytestmark = pytest.mark.e2e

HOURS_OF_CPU = "{{ 7 ** 1000000000 }}"
GIGABYTES = "{{ ('x' * 600000000) | length }}"


@pytest.mark.parametrize("source", [HOURS_OF_CPU, GIGABYTES], ids=["cpu", "memory"])
def test_a_runaway_template_is_a_template_error_and_others_keep_syncing(
    stack: Stack, tenant: str, uid: str, source: str
) -> None:
    stack.put(f"{tenant}/db", {"password": f"runaway-{uid}"})
    stack.apply(vault_secret(tenant, "runaway", f"{tenant}/db", template={"x": source}))
    condition = eventually(
        lambda: (c := stack.ready_is(tenant, "runaway", "False")) and c, 60, "TemplateError"
    )
    assert condition["reason"] == "TemplateError", condition
    assert stack.secret_data(tenant, "runaway") is None

    stack.apply(vault_secret(tenant, "plain", f"{tenant}/db", template={"p": "{{ password }}"}))
    data = eventually(lambda: stack.secret_data(tenant, "plain"), 30, "the other Secret")
    assert data == {"p": f"runaway-{uid}"}
