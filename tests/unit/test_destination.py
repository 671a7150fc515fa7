import base64
from typing import Any

import pytest

from vaultsync.api.secret import Destination
from vaultsync.runtime.errors import SyncError
from vaultsync.secrets.destination import (
    HASH_ANNOTATION,
    KEYS_ANNOTATION,
    MANAGED_LABEL,
    OWNER_ANNOTATION,
    Action,
    Owner,
    Plan,
    owner_name,
    released,
    unmarked,
)
from vaultsync.secrets.destination import data_hash as keyed_data_hash
from vaultsync.secrets.destination import drifted as keyed_drifted
from vaultsync.secrets.destination import plan as keyed_plan

KEY = b"k" * 32


def plan(*args: Any) -> Plan:
    return keyed_plan(*args, key=KEY)


def drifted(secret: dict[str, Any]) -> bool:
    return keyed_drifted(secret, key=KEY)


def data_hash(data: dict[str, bytes]) -> str:
    return keyed_data_hash(data, key=KEY)


OWNER = Owner("db", "team-a", "uid-1")


def dest(**fields: Any) -> Destination:
    return Destination.model_validate({"name": "db-creds", **fields})


def created(data: dict[str, bytes], **fields: Any) -> dict[str, Any]:
    return plan(None, dest(**fields), OWNER, data).body


def test_create_owned_secret() -> None:
    step = plan(None, dest(labels={"app": "api"}), OWNER, {"k": b"v"})
    assert step.action is Action.CREATE
    meta = step.body["metadata"]
    assert meta["ownerReferences"][0]["uid"] == "uid-1"
    assert meta["ownerReferences"][0]["controller"] is True
    assert meta["labels"]["app"] == "api"
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "vaultsync"
    assert step.body["data"] == {"k": base64.b64encode(b"v").decode()}


def test_orphan_has_no_owner_reference() -> None:
    body = created({"k": b"v"}, creationPolicy="Orphan")
    assert body["metadata"]["ownerReferences"] == []


def test_unchanged_data_plans_nothing() -> None:
    body = created({"k": b"v"})
    assert plan(body, dest(), OWNER, {"k": b"v"}).action is Action.NONE


def test_changed_data_plans_a_replace_keeping_foreign_metadata() -> None:
    body = created({"k": b"v"})
    body["metadata"]["annotations"]["someone/else"] = "x"
    body["metadata"]["resourceVersion"] = "7"
    step = plan(body, dest(), OWNER, {"k": b"w"})
    assert step.action is Action.REPLACE
    assert step.body["metadata"]["annotations"]["someone/else"] == "x"
    assert step.body["metadata"]["resourceVersion"] == "7"
    assert step.body["metadata"]["annotations"][HASH_ANNOTATION] == data_hash({"k": b"w"})


def test_hand_added_key_is_removed() -> None:
    body = created({"k": b"v"})
    body["data"]["extra"] = "eA=="
    step = plan(body, dest(), OWNER, {"k": b"v"})
    assert step.action is Action.REPLACE
    assert "extra" not in step.body["data"]


def test_foreign_secret_is_a_conflict() -> None:
    foreign = {"metadata": {"name": "db-creds"}, "data": {"a": "YQ=="}, "type": "Opaque"}
    with pytest.raises(SyncError) as err:
        plan(foreign, dest(), OWNER, {"k": b"v"})
    assert err.value.reason == "SecretConflict"


def test_type_change_is_reported_not_forced() -> None:
    body = created({"k": b"v"})
    with pytest.raises(SyncError) as err:
        plan(body, dest(type="kubernetes.io/tls"), OWNER, {"k": b"v"})
    assert err.value.reason == "SecretTypeImmutable"


def test_merge_needs_an_existing_secret() -> None:
    with pytest.raises(SyncError) as err:
        plan(None, dest(creationPolicy="Merge"), OWNER, {"k": b"v"})
    assert err.value.reason == "DestinationMissing"


def test_merge_keeps_other_keys_and_drops_keys_it_no_longer_writes() -> None:
    foreign = {"metadata": {"name": "db-creds"}, "data": {"theirs": "YQ=="}, "type": "Opaque"}
    first = plan(foreign, dest(creationPolicy="Merge"), OWNER, {"a": b"1", "b": b"2"}).body
    assert set(first["data"]) == {"theirs", "a", "b"}
    assert first["metadata"]["annotations"][KEYS_ANNOTATION] == '["a", "b"]'
    assert first["metadata"]["ownerReferences"] == []
    second = plan(first, dest(creationPolicy="Merge"), OWNER, {"a": b"1"}).body
    assert set(second["data"]) == {"theirs", "a"}


def test_drift_detection() -> None:
    body = created({"k": b"v"})
    assert not drifted(body)
    body["data"]["k"] = base64.b64encode(b"edited").decode()
    assert drifted(body)


def test_drift_in_merge_secret_ignores_foreign_keys() -> None:
    foreign = {"metadata": {"name": "db-creds"}, "data": {"theirs": "YQ=="}, "type": "Opaque"}
    body = plan(foreign, dest(creationPolicy="Merge"), OWNER, {"a": b"1"}).body
    body["data"]["theirs"] = "Yg=="
    assert not drifted(body)
    del body["data"]["a"]
    assert drifted(body)


def test_release_owner_delete_leaves_it_to_the_garbage_collector() -> None:
    body = created({"k": b"v"})
    step = released(body, dest(), OWNER)
    assert step is not None and step.action is Action.NONE


def test_release_owner_retain_drops_only_our_owner_reference() -> None:
    body = created({"k": b"v"})
    body["metadata"]["ownerReferences"].append({"uid": "other", "name": "x"})
    step = released(body, dest(deletionPolicy="Retain"), OWNER)
    assert step is not None and step.action is Action.REPLACE
    assert step.body["metadata"]["ownerReferences"] == [{"uid": "other", "name": "x"}]
    assert step.body["data"] == body["data"]


def test_release_orphan_delete_deletes_and_orphan_retain_keeps() -> None:
    body = created({"k": b"v"}, creationPolicy="Orphan")
    assert released(body, dest(creationPolicy="Orphan"), OWNER) is None
    kept = released(body, dest(creationPolicy="Orphan", deletionPolicy="Retain"), OWNER)
    assert kept is not None and kept.body["data"] == body["data"]


def test_release_never_touches_a_secret_we_do_not_manage() -> None:
    foreign = {"metadata": {"name": "db-creds"}, "data": {"a": "YQ=="}, "type": "Opaque"}
    step = released(foreign, dest(creationPolicy="Orphan"), OWNER)
    assert step is not None and step.action is Action.NONE


def test_release_merge_removes_our_keys_or_keeps_them() -> None:
    foreign = {"metadata": {"name": "db-creds"}, "data": {"theirs": "YQ=="}, "type": "Opaque"}
    merged = plan(foreign, dest(creationPolicy="Merge"), OWNER, {"a": b"1"}).body
    gone = released(merged, dest(creationPolicy="Merge"), OWNER)
    assert gone is not None and gone.body["data"] == {"theirs": "YQ=="}
    assert KEYS_ANNOTATION not in gone.body["metadata"]["annotations"]
    kept = released(merged, dest(creationPolicy="Merge", deletionPolicy="Retain"), OWNER)
    assert kept is not None and set(kept.body["data"]) == {"theirs", "a"}


def test_a_second_vaultsecret_cannot_merge_into_the_same_secret() -> None:
    foreign = {"metadata": {"name": "db-creds"}, "data": {"theirs": "YQ=="}, "type": "Opaque"}
    merged = plan(foreign, dest(creationPolicy="Merge"), OWNER, {"a": b"1"}).body
    other = Owner("other", "team-a", "uid-2")
    with pytest.raises(SyncError) as err:
        plan(merged, dest(creationPolicy="Merge"), other, {"b": b"2"})
    assert err.value.reason == "SecretConflict"
    assert "'db'" in str(err.value)


def test_release_after_a_rename_deletes_even_an_owned_secret() -> None:
    body = created({"k": b"v"})
    assert released(body, dest(), OWNER, owner_stays=True) is None
    kept = released(body, dest(deletionPolicy="Retain"), OWNER, owner_stays=True)
    assert kept is not None and kept.body["metadata"]["ownerReferences"] == []


def foreign(kind: str = "Opaque", **data: str) -> dict[str, Any]:
    return {"metadata": {"name": "db-creds"}, "data": data, "type": kind}


MERGE = {"creationPolicy": "Merge"}


def test_merge_refuses_a_key_it_did_not_write_and_writes_nothing() -> None:
    secret = foreign(password="a2VlcC1tZQ==", other="eA==")
    with pytest.raises(SyncError) as err:
        plan(secret, dest(**MERGE), OWNER, {"password": b"new", "user": b"u"})
    assert err.value.reason == "KeyConflict"
    assert "'password'" in str(err.value) and "'user'" not in str(err.value)
    assert "a2VlcC1tZQ==" not in str(err.value)


def test_merge_updates_the_keys_it_wrote_before() -> None:
    first = plan(foreign(other="eA=="), dest(**MERGE), OWNER, {"password": b"1"}).body
    second = plan(first, dest(**MERGE), OWNER, {"password": b"2"})
    assert second.action is Action.REPLACE
    assert second.body["data"] == {"other": "eA==", "password": base64.b64encode(b"2").decode()}


def _without_key_record(secret: dict[str, Any]) -> dict[str, Any]:
    annotations = dict(secret["metadata"]["annotations"])
    del annotations[KEYS_ANNOTATION]
    return {**secret, "metadata": {**secret["metadata"], "annotations": annotations}}


@pytest.mark.parametrize("now", [b"1", b"2"], ids=["same-data", "new-data"])
def test_merge_keys_whose_record_was_removed_by_hand_are_proven_by_the_hash(now: bytes) -> None:
    """The data-hash is a keyed HMAC of what vaultsync wrote: keys whose values match it are
    ours, though the managed-keys annotation is gone."""
    written = plan(foreign(other="eA=="), dest(**MERGE), OWNER, {"password": b"1"}).body
    again = plan(_without_key_record(written), dest(**MERGE), OWNER, {"password": now})
    assert again.action is Action.REPLACE
    assert again.body["metadata"]["annotations"][KEYS_ANNOTATION] == '["password"]'
    assert again.body["data"] == {"other": "eA==", "password": base64.b64encode(now).decode()}


def test_merge_keys_the_hash_does_not_prove_stay_a_conflict() -> None:
    written = plan(foreign(other="eA=="), dest(**MERGE), OWNER, {"password": b"1"}).body
    edited = _without_key_record(written)
    edited["data"]["password"] = base64.b64encode(b"theirs now").decode()
    with pytest.raises(SyncError) as err:
        plan(edited, dest(**MERGE), OWNER, {"password": b"1"})
    assert err.value.reason == "KeyConflict"
    with pytest.raises(SyncError) as err:
        plan(_without_key_record(written), dest(**MERGE), OWNER, {"other": b"x"})
    assert err.value.reason == "KeyConflict", "the hash proves password, not other"


def test_merge_refuses_cluster_managed_secret_types() -> None:
    secret = foreign("kubernetes.io/service-account-token", token="dA==")
    with pytest.raises(SyncError) as err:
        plan(secret, dest(**MERGE), OWNER, {"extra": b"x"})
    assert err.value.reason == "SecretTypeNotMergeable"


def test_merge_leaves_another_tools_managed_by_label_alone() -> None:
    secret = foreign(other="eA==")
    secret["metadata"]["labels"] = {"app.kubernetes.io/managed-by": "Helm"}
    body = plan(secret, dest(**MERGE), OWNER, {"k": b"v"}).body
    assert body["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    assert body["metadata"]["labels"][MANAGED_LABEL] == "true"
    gone = released(body, dest(**MERGE), OWNER)
    assert gone is not None
    assert gone.body["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "Helm"}


def test_merge_declared_labels_conflict_or_are_taken_and_given_back() -> None:
    secret = foreign(other="eA==")
    secret["metadata"]["labels"] = {"team": "a", "same": "v"}
    with pytest.raises(SyncError) as err:
        plan(secret, dest(**MERGE, labels={"team": "b"}), OWNER, {"k": b"v"})
    assert err.value.reason == "KeyConflict"
    body = plan(secret, dest(**MERGE, labels={"same": "v", "new": "n"}), OWNER, {"k": b"v"}).body
    gone = released(body, dest(**MERGE), OWNER)
    assert gone is not None
    assert gone.body["metadata"]["labels"] == {"team": "a", "same": "v"}
    assert gone.body["metadata"]["annotations"] == {}


def test_release_of_a_merge_by_another_vaultsecret_touches_nothing() -> None:
    merged = plan(foreign(other="eA=="), dest(**MERGE), OWNER, {"a": b"1"}).body
    other = Owner("other", "team-a", "uid-2")
    step = released(merged, dest(**MERGE), other)
    assert step is not None and step.action is Action.NONE


def test_unmarked_keeps_data_and_foreign_metadata() -> None:
    merged = plan(foreign(other="eA=="), dest(**MERGE), OWNER, {"a": b"1"}).body
    merged["metadata"]["annotations"]["theirs"] = "t"
    body = unmarked(merged)
    assert body["data"] == merged["data"]
    assert body["metadata"]["annotations"] == {"theirs": "t"}
    assert MANAGED_LABEL not in body["metadata"]["labels"]


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m["labels"].__setitem__("app", "edited"),
        lambda m: m["labels"].pop("app"),
        lambda m: m["labels"].pop(MANAGED_LABEL),
        lambda m: m["annotations"].__setitem__("note", "edited"),
        lambda m: m["annotations"].pop(OWNER_ANNOTATION),
    ],
)
def test_declared_metadata_and_markers_are_part_of_drift(edit: Any) -> None:
    spec = dest(labels={"app": "api"}, annotations={"note": "n"})
    body = plan(None, spec, OWNER, {"k": b"v"}).body
    assert not drifted(body)
    edit(body["metadata"])
    assert drifted(body)
    assert owner_name(body) == "db"


def test_declared_metadata_edits_are_repaired_and_undeclared_ones_removed() -> None:
    body = plan(None, dest(labels={"app": "api", "old": "o"}), OWNER, {"k": b"v"}).body
    body["metadata"]["labels"]["app"] = "edited"
    body["metadata"]["labels"]["theirs"] = "t"
    step = plan(body, dest(labels={"app": "api"}), OWNER, {"k": b"v"})
    assert step.action is Action.REPLACE
    labels = step.body["metadata"]["labels"]
    assert labels["app"] == "api" and labels["theirs"] == "t" and "old" not in labels
    assert plan(step.body, dest(labels={"app": "api"}), OWNER, {"k": b"v"}).action is Action.NONE


def test_hash_of_data_alone_is_unchanged_without_declared_metadata() -> None:
    body = created({"k": b"v"})
    assert body["metadata"]["annotations"][HASH_ANNOTATION] == data_hash({"k": b"v"})
