"""Vault data (VaultSecret's KV data and decrypted values, VaultDynamicSecret's credentials)
-> Secret data: key selection, renaming, base64 decoding, templates.

Pure functions, but for templates: a tenant writes them, so they are rendered in a worker
process with limits on time and memory (templating.py). Errors name keys and reasons, never
values: a message that could quote a value (template errors) is redacted before it leaves
this module.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from typing import Any

from vaultsync.api.names import secret_key_problem
from vaultsync.api.secret import Shape
from vaultsync.runtime.errors import SyncError
from vaultsync.secrets.templating import (
    MAX_SECRET_BYTES,
    TemplateFailed,
    TemplateOversized,
    as_text,
    render_all,
)

REDACTED = "[redacted]"


class RenderError(SyncError):
    """The spec and the Vault data do not make a valid Secret: only a change of one of them
    helps, so it is not retryable (Stalled)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message, reason=reason, retryable=False)


def _texts(value: Any) -> Iterator[str]:
    """value as the Secret would hold it, and every value inside a JSON object or list: a
    message may quote any of them."""
    yield as_text(value)
    inner = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    for item in inner:
        yield from _texts(item)


def _redact(message: str, data: dict[str, Any]) -> str:
    texts = {text for value in data.values() for text in _texts(value)}
    for text in sorted(texts, key=len, reverse=True):
        if len(text) >= 3:
            message = message.replace(text, REDACTED)
    return message


def _check_key(key: str) -> None:
    problem = secret_key_problem(key)
    if problem:
        raise RenderError("InvalidKey", f"{key[:60]!r} is not a valid Secret key: it {problem}")


def _selected(spec: Shape, data: dict[str, Any]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    if not spec.keys:
        if spec.template:
            return out
        for key, value in data.items():
            _check_key(key)
            out[key] = as_text(value).encode()
        return out
    for mapping in spec.keys:
        if mapping.from_ not in data:
            raise RenderError("KeyNotFound", f"key {mapping.from_!r} is not in the Vault data")
        target = mapping.target
        _check_key(target)
        value = data[mapping.from_]
        if mapping.decode_base64:
            try:
                out[target] = base64.b64decode(as_text(value), validate=True)
            except (binascii.Error, ValueError):
                raise RenderError(
                    "InvalidBase64", f"key {mapping.from_!r} is not valid base64"
                ) from None
        else:
            out[target] = as_text(value).encode()
    return out


def _templated(spec: Shape, data: dict[str, Any]) -> dict[str, bytes]:
    """The template keys, rendered in the template worker (templating.py: a template can
    neither hang nor exhaust the operator)."""
    for key in spec.template:
        _check_key(key)
    try:
        rendered = render_all(spec.template, {**data, "data": data})
    except TemplateOversized as exc:
        raise RenderError(
            "SecretTooLarge", f"template {exc.key!r} renders more than a Secret holds (1 MiB)"
        ) from None
    except TemplateFailed as exc:
        message = _redact(exc.message, data)
        raise RenderError("TemplateError", f"template {exc.key!r}: {message}") from None
    return {key: text.encode() for key, text in rendered.items()}


def declared_keys(spec: Shape) -> frozenset[str]:
    """The Secret keys spec writes whatever the data holds (keys' targets, template keys);
    none when every key of the data is copied, which only the data tells."""
    return frozenset({m.target for m in spec.keys} | set(spec.template))


def render(
    spec: Shape, data: dict[str, Any], decrypted: dict[str, bytes] | None = None
) -> dict[str, bytes]:
    """The Secret's data for spec from the KV data and the decrypted values of
    spec.encrypted (data key -> plaintext), which are written as they are and are template
    variables too (shadowing a KV key of the same name)."""
    decrypted = decrypted or {}
    selected = _selected(spec, data)
    both = sorted(set(selected) & set(decrypted))
    if both:
        raise RenderError(
            "DuplicateKey",
            f"Secret key {both[0]!r} comes from both the KV data and spec.encrypted.data; "
            "select the KV keys with spec.keys",
        )
    texts = {k: v.decode("utf-8", "replace") for k, v in decrypted.items()}
    out = {**selected, **decrypted, **_templated(spec, {**data, **texts})}
    size = sum(len(k) + len(v) for k, v in out.items())
    if size > MAX_SECRET_BYTES:
        raise RenderError(
            "SecretTooLarge", f"rendered data is {size} bytes; Secrets hold at most 1 MiB"
        )
    return out
