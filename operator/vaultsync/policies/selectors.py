"""metav1.LabelSelector matching, as the API server does it."""

from __future__ import annotations

from collections.abc import Mapping

from vaultsync.api.policy import LabelSelector, LabelSelectorRequirement, SelectorOperator


def _holds(requirement: LabelSelectorRequirement, labels: Mapping[str, str]) -> bool:
    present = requirement.key in labels
    if requirement.operator is SelectorOperator.IN:
        return present and labels[requirement.key] in requirement.values
    if requirement.operator is SelectorOperator.NOT_IN:
        return not present or labels[requirement.key] not in requirement.values
    if requirement.operator is SelectorOperator.EXISTS:
        return present
    return not present


def matches(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    """Every matchLabels pair and every expression holds; an empty selector matches all."""
    return all(labels.get(k) == v for k, v in selector.match_labels.items()) and all(
        _holds(r, labels) for r in selector.match_expressions
    )
