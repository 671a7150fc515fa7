"""The object reference on our log records (kube/logref.py)."""

from __future__ import annotations

import json
import logging

from vaultsync.cli import configure_logging
from vaultsync.kube.logref import about


def test_reference_of_an_object_leaves_out_what_it_lacks() -> None:
    body = {
        "apiVersion": "vaultsync.io/v1alpha1",
        "kind": "VaultPolicy",
        "metadata": {"name": "p", "uid": "u-1"},
    }
    assert about(body) == {
        "k8s_ref": {
            "apiVersion": "vaultsync.io/v1alpha1",
            "kind": "VaultPolicy",
            "name": "p",
            "uid": "u-1",
        }
    }


def test_the_json_log_format_writes_it_as_the_records_object() -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure_logging("json", verbose=False)
        formatter = root.handlers[-1].formatter
    finally:
        root.handlers[:], root.level = handlers, level
    assert formatter is not None
    body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"namespace": "a", "name": "b"}}
    record = logging.LogRecord("vaultsync.x", logging.INFO, __file__, 1, "hi %s", ("x",), None)
    record.__dict__.update(about(body))
    written = json.loads(formatter.format(record))
    assert written["message"] == "hi x"
    assert written["object"] == {
        "apiVersion": "v1",
        "kind": "Secret",
        "namespace": "a",
        "name": "b",
    }
