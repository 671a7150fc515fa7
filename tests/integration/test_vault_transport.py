"""The clients' own transport (hvac over kept-alive http.client connections, and a urllib3 pool
for proxies and redirects) against a real OpenBao: every kind of answer hvac knows, paths that
need encoding, connections the server closes, redirects from a standby, and an HTTP proxy from
the environment."""

import http.server
import json
import threading
import urllib.request
import uuid
from collections.abc import Iterator

import hvac
import pytest

from e2e.harness.openbao import OpenBao
from vaultsync.vault import kv
from vaultsync.vault.client import Endpoint, new_client
from vaultsync.vault.errors import PermissionDenied, SecretNotFound, VaultUnavailable

pytestmark = pytest.mark.integration


@pytest.fixture
def path(root: hvac.Client) -> Iterator[str]:
    name = f"transport/{uuid.uuid4().hex[:8]}"
    yield name
    root.secrets.kv.v2.delete_metadata_and_all_versions(name, mount_point="secret")


def _serve(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_answers_of_every_shape(bao: OpenBao, root: hvac.Client, path: str) -> None:
    client = new_client(Endpoint(bao.address), bao.root_token)
    # POST with a JSON body, a 200 answer as a dict
    version = kv.write(client, "secret", path, {"a": "1"}, cas=0)
    kv.write(client, "secret", path, {"a": "2"}, cas=version)
    # GET with a query parameter (the version), and without
    assert kv.read(client, "secret", path, version).data == {"a": "1"}
    assert kv.read(client, "secret", path).data == {"a": "2"}
    # a 204 answer comes back as a response object
    kv.write_custom_metadata(client, "secret", path, {"owner": "transport-test"})
    assert kv.read(client, "secret", path).custom_metadata == {"owner": "transport-test"}
    # LIST, a method of Vault's own
    listed = client.secrets.kv.v2.list_secrets(path="transport", mount_point="secret")
    assert path.split("/")[1] in listed["data"]["keys"]
    # refusals are hvac's exceptions, mapped as before
    with pytest.raises(SecretNotFound):
        kv.read(client, "secret", path + "-missing")
    root.sys.create_or_update_policy("transport-none", 'path "nothing/*" { capabilities = [] }')
    token = root.auth.token.create(policies=["transport-none"], ttl="5m")["auth"]["client_token"]
    with pytest.raises(PermissionDenied):
        kv.read(new_client(Endpoint(bao.address), token), "secret", path)


def test_a_path_with_spaces_and_non_ascii_is_encoded(bao: OpenBao, root: hvac.Client) -> None:
    name = f"transport/{uuid.uuid4().hex[:8]} team ü"
    root.secrets.kv.v2.create_or_update_secret(name, {"k": "v"}, mount_point="secret")
    try:
        client = new_client(Endpoint(bao.address), bao.root_token)
        assert kv.read(client, "secret", name).data == {"k": "v"}
    finally:
        root.secrets.kv.v2.delete_metadata_and_all_versions(name, mount_point="secret")


def test_connections_the_server_closed_are_not_reused(
    bao: OpenBao, root: hvac.Client, path: str
) -> None:
    """A kept-alive connection closed by the server between requests (an idle timeout) is
    noticed before the next request; one it closes as a request arrives, unanswered, fails a
    write (it may have been done) and is retried once on a new connection for a read."""
    root.secrets.kv.v2.create_or_update_secret(path, {"k": "v"}, mount_point="secret")
    mode = {"close": "after-answer"}
    sent: list[str] = []

    class Closing(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # kept alive unless closed here

        def _forward(self) -> None:
            if mode["close"] == "unanswered" and self.served:
                self.close_connection = True
                return
            self.served = True
            sent.append(self.command)
            length = int(self.headers.get("Content-Length") or 0)
            forwarded = urllib.request.Request(
                bao.address + self.path,
                data=self.rfile.read(length) if length else None,
                headers={k: v for k, v in self.headers.items() if k.startswith("X-Vault")},
                method=self.command,
            )
            with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                forwarded
            ) as answer:
                body = answer.read()
            self.send_response(answer.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            if mode["close"] == "after-answer":
                self.close_connection = True

        def setup(self) -> None:
            super().setup()
            self.served = False

        do_GET = do_POST = _forward

        def log_message(self, *args: object) -> None:
            pass

    for server in _serve(Closing):
        client = new_client(Endpoint(server), bao.root_token)
        for _ in range(3):
            assert kv.read(client, "secret", path).data == {"k": "v"}
        mode["close"] = "unanswered"
        assert kv.read(client, "secret", path).data == {"k": "v"}  # a new connection
        assert kv.read(client, "secret", path).data == {"k": "v"}  # retried on a new one
        reads = len(sent)
        with pytest.raises(VaultUnavailable):
            kv.write(client, "secret", path, {"k": "w"}, cas=1)
        assert len(sent) == reads  # never sent twice
        assert kv.read(client, "secret", path).data == {"k": "v"}


def test_other_bodies_take_hvacs_own_path(bao: OpenBao, path: str) -> None:
    """A request with a body the pool does not send itself (raw data here, a snapshot's
    stream in hvac) goes through requests, with the same address, token and answers."""
    client = new_client(Endpoint(bao.address), bao.root_token)
    body = json.dumps({"data": {"raw": "1"}})
    answer = client.adapter.post(f"/v1/secret/data/{path}", data=body)
    assert answer["data"]["version"] == 1
    assert kv.read(client, "secret", path).data == {"raw": "1"}


def test_redirect_from_a_standby_is_followed_with_the_token(
    bao: OpenBao, root: hvac.Client, path: str
) -> None:
    root.secrets.kv.v2.create_or_update_secret(path, {"k": "v"}, mount_point="secret")

    class Standby(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(307)
            self.send_header("Location", bao.address + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    for standby in _serve(Standby):
        assert kv.read(new_client(Endpoint(standby), bao.root_token), "secret", path).data == {
            "k": "v"
        }


def test_http_proxy_from_the_environment(
    bao: OpenBao, root: hvac.Client, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    root.secrets.kv.v2.create_or_update_secret(path, {"k": "v"}, mount_point="secret")
    seen: list[str] = []

    class Proxy(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            forwarded = urllib.request.Request(self.path, headers=dict(self.headers))
            with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                forwarded
            ) as answer:
                body = answer.read()
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.headers["Content-Type"])
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    # the proxy is a name the test's own loopback exclusion does not cover
    address = bao.address.replace("127.0.0.1", "localhost")
    for proxy in _serve(Proxy):
        monkeypatch.setenv("HTTP_PROXY", proxy)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        client = new_client(Endpoint(address), bao.root_token)
        assert kv.read(client, "secret", path).data == {"k": "v"}
        assert seen == [f"{address}/v1/secret/data/{path}"]
        monkeypatch.setenv("NO_PROXY", "localhost")
        kv.read(new_client(Endpoint(address), bao.root_token), "secret", path)
        assert len(seen) == 1
