"""New values for the rotated keys: the built-in generator, and the data written back."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from vaultsync.api.rotation import GeneratorRules, RotationKey

_random = secrets.SystemRandom()


def generate(rules: GeneratorRules) -> str:
    """A random value meeting rules: the minimum of every enabled class, the rest drawn from
    all enabled classes together, shuffled so that the classes' positions are random too."""
    classes = rules.classes()
    alphabet = "".join(c.characters for c in classes)
    chosen = [secrets.choice(c.characters) for c in classes for _ in range(c.minimum)]
    chosen += [secrets.choice(alphabet) for _ in range(rules.length - len(chosen))]
    _random.shuffle(chosen)
    return "".join(chosen)


def rotated_data(
    current: Mapping[str, Any],
    keys: Sequence[RotationKey],
    from_policy: Callable[[str], str],
) -> dict[str, Any]:
    """current with a new value for every listed key (added when absent) and every other key
    as it was. from_policy(name) asks Vault's password policy `name` for a value."""
    data = dict(current)
    for key in keys:
        if key.generate is not None:
            data[key.name] = generate(key.generate)
        else:
            assert key.password_policy is not None  # RotationKey holds exactly one generator
            data[key.name] = from_policy(key.password_policy)
    return data
