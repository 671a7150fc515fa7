"""Which client configurations kube/transport.py's own connections cover."""

from __future__ import annotations

import pytest
from kubernetes import client

from vaultsync.kube.transport import Requests


def _requests(**settings: object) -> Requests:
    configuration = client.Configuration(host="http://127.0.0.1:1")
    for name, value in settings.items():
        setattr(configuration, name, value)
    return Requests(client.ApiClient(configuration))


def test_a_plain_configuration_is_served_directly() -> None:
    assert _requests().direct
    assert _requests(assert_hostname=False).direct


def test_a_proxy_goes_through_the_api_client() -> None:
    assert not _requests(proxy="http://proxy.example:3128").direct


def test_a_proxy_bypassed_for_the_server_is_not_used() -> None:
    assert _requests(proxy="http://proxy.example:3128", no_proxy="127.0.0.1").direct


@pytest.mark.parametrize(
    "settings",
    [
        {"tls_server_name": "kubernetes.default"},
        {"assert_hostname": "kubernetes.default"},
        {"socket_options": []},
    ],
)
def test_tls_and_socket_settings_of_its_own_go_through_the_api_client(
    settings: dict[str, object],
) -> None:
    assert not _requests(**settings).direct
