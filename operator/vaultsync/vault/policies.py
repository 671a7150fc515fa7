"""Vault ACL policies: HCL rendering, read, write, delete."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

import hvac

from vaultsync.vault.errors import InvalidRequest, SecretNotFound, VaultError, translate
from vaultsync.vault.observe import request


class PolicyRejected(VaultError):
    """Vault refused the policy text (it does not parse); only a spec change fixes it."""

    reason = "PolicyRejected"
    retryable = False


def render_hcl(rules: Iterable[tuple[str, Sequence[str]]]) -> str:
    """HCL for (path, capabilities) rules; strings are quoted so a path cannot inject rules."""
    blocks = []
    for path, capabilities in rules:
        quoted = ", ".join(json.dumps(c) for c in dict.fromkeys(capabilities))
        blocks.append(
            f"path {json.dumps(path, ensure_ascii=False)} {{\n  capabilities = [{quoted}]\n}}\n"
        )
    return "\n".join(blocks)


@request("policy_read")
def read(client: hvac.Client, name: str) -> str | None:
    """The policy's text, or None if there is no such policy."""
    try:
        response = client.sys.read_acl_policy(name)
    except Exception as exc:
        error = translate(exc, f"read policy {name!r}")
        if isinstance(error, SecretNotFound):
            return None
        raise error from None
    return str(response["data"]["policy"])


@request("policy_write")
def write(client: hvac.Client, name: str, text: str) -> None:
    try:
        client.sys.create_or_update_acl_policy(name, text)
    except Exception as exc:
        error = translate(exc, f"Vault rejected policy {name!r}")
        if isinstance(error, InvalidRequest):
            raise PolicyRejected(str(error)) from None
        raise error from None


@request("policy_delete")
def delete(client: hvac.Client, name: str) -> None:
    """Delete a policy; deleting a missing one is not an error."""
    try:
        client.sys.delete_acl_policy(name)
    except Exception as exc:
        raise translate(exc, f"delete policy {name!r}") from None
