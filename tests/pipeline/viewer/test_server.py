"""The map's web server (``pipeline.viewer.server``) spoken to in raw HTTP: one error path for
every request (4xx, never a traceback), clients that go away ignored quietly, the
``Host:`` check against DNS rebinding, and the warning when it serves the network.

Each test starts the real :class:`MapServer` on port 0 in a thread over a small finished
run (:func:`tests.pipeline.view_runs.card_run`, one zoom level).
"""

from __future__ import annotations

import argparse
import http.client
import socket
import struct
import time

import pytest

from pipeline.cli.view import add_parser, main
from pipeline.rundir.location import Location
from pipeline.viewer.command import prepare
from pipeline.viewer.server import MapServer, host_name
from tests.pipeline.view_runs import card_run


@pytest.fixture(scope="module")
def card_dir(tmp_path_factory):
    return card_run(tmp_path_factory.mktemp("view-server") / "run")


@pytest.fixture(scope="module")
def card_map(card_dir):
    return prepare(Location(card_dir), echo=lambda *_: None)


@pytest.fixture
def server(card_map):
    server = MapServer(*card_map, port=0).start()
    yield server
    server.stop()


def _port(server: MapServer) -> int:
    """The port the server is bound to."""
    return server.httpd.server_address[1]


def _get(server: MapServer, path: str, host: str | None = "localhost", method: str = "GET") -> tuple[int, bytes]:
    """``method path`` with the given ``Host:`` header (``None``: none at all)."""
    connection = http.client.HTTPConnection("127.0.0.1", _port(server), timeout=10)
    try:
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        if host is not None:
            connection.putheader("Host", host)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _raw(server: MapServer, data: bytes) -> bytes:
    """Send raw bytes, return everything the server answers before closing."""
    with socket.create_connection(("127.0.0.1", _port(server)), timeout=10) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _assert_still_serving(server: MapServer, card_dir) -> None:
    assert _get(server, "/")[0] == 200
    status, body = _get(server, "/tiles/compact/0/0/0.png")
    assert status == 200 and body == (card_dir / "viewer/tiles/compact/0/0/0.png").read_bytes()


def _assert_no_traceback(capfd) -> None:
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err and "Error" not in err, err[-2000:]


def test_bad_requests_get_4xx_and_no_traceback(server, card_dir, capfd):
    huge = "9" * 5000
    for path, status in [
        (f"/tiles/compact/{huge}/0/0.png", 404),
        (f"/tiles/compact/0/{huge}/0.png", 404),
        (f"/tiles/compact/0/0/{huge}.png", 404),
        ("/tiles/compact/0/0/99999999999.png", 404),
        ("/tiles/compact/1/0/0.png", 404),  # a level beyond the grid's one
        ("/tiles/compact/0/1/0.png", 404),
        ("/tiles/compact/0/00/0.png", 404),
        ("/tiles/spheroid/0/0/0.png", 404),  # not a layer of this run
        ("/static/../index.html", 404),
        ("/../../etc/passwd", 404),
        ("/" + "a" * 60000, 404),
        ("http://[::1/", 400),
    ]:  # urlsplit refuses the malformed IPv6 authority
        assert _get(server, path)[0] == status, path[:80]
    assert _get(server, "/", method="POST")[0] == 501
    assert _get(server, "/tiles/compact/0/0/0.png", method="HEAD") == (200, b"")
    for garbage in (b"GET / NOT-HTTP\r\n\r\n", b"GARBAGE\r\n\r\n"):  # answered without a status line
        assert b"Error code: 400" in _raw(server, garbage)
    many = b"".join(b"X-%d: 1\r\n" % i for i in range(200))
    assert _raw(server, b"GET / HTTP/1.1\r\nHost: localhost\r\n" + many + b"\r\n").startswith(b"HTTP/1.0 431")
    _assert_still_serving(server, card_dir)
    _assert_no_traceback(capfd)


def test_a_failure_while_answering_gets_500_and_no_traceback(server, card_dir, capfd):
    tile = card_dir / "viewer/tiles/coverage/0/0/0.png"
    data = tile.read_bytes()
    tile.unlink()
    tile.mkdir()  # unreadable as a file: not "not found", a failure
    try:
        assert _get(server, "/tiles/coverage/0/0/0.png") == (500, b"internal error\n")
    finally:
        tile.rmdir()
        tile.write_bytes(data)
    assert _get(server, "/tiles/coverage/0/0/0.png") == (200, data)
    _assert_no_traceback(capfd)


def _reset(s: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a browser cancelling a request may."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def test_clients_that_go_away_are_ignored_quietly(server, card_map, card_dir, capfd):
    biggest = max(card_map[1].static, key=lambda url: card_map[1].static[url].stat().st_size)  # BokehJS, ~1 MB
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", _port(server)), timeout=10)
        s.sendall(f"GET /{biggest} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        s.recv(100)  # the answer has started: the reset lands in the middle of it
        _reset(s)
        s = socket.create_connection(("127.0.0.1", _port(server)), timeout=10)
        s.sendall(b"GET /tiles/compact/0/0/0.png HT")  # gone in the middle of the request line
        _reset(s)
    time.sleep(0.5)  # the handler threads see their resets
    _assert_still_serving(server, card_dir)
    _assert_no_traceback(capfd)


def test_only_this_machines_host_names_are_served(server, card_dir, capfd):
    port = _port(server)
    for host in (
        "localhost",
        f"localhost:{port}",
        "127.0.0.1",
        f"127.0.0.1:{port}",
        "[::1]",
        f"[::1]:{port}",
        "LOCALHOST:9000",
    ):  # any port: an SSH tunnel from another local port
        assert _get(server, "/", host=host)[0] == 200, host
    for host in (
        "evil.example",
        f"evil.example:{port}",
        "localhost.evil.example",
        "127.0.0.1.nip.io",
        f"attacker.test:{port}",
        "",
        "localhost:abc",
        "[::1",
        "localhost@evil.example",
        None,
    ):
        status, body = _get(server, "/tiles/compact/0/0/0.png", host=host)
        assert status == 400 and b"host not served" in body, host
    assert _raw(server, b"GET / HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\n\r\n").startswith(b"HTTP/1.0 400")
    _assert_still_serving(server, card_dir)
    _assert_no_traceback(capfd)


def test_host_names_are_parsed_like_a_browser_sends_them():
    assert host_name("LocalHost:8765") == "localhost" and host_name("localhost.") == "localhost"
    assert host_name("[::1]:8765") == "::1" and host_name("[0:0:0:0:0:0:0:1]") == "::1"
    assert host_name("127.0.0.1") == "127.0.0.1" and host_name("vm.example.org:80") == "vm.example.org"
    assert host_name("localhost:") is None and host_name("a b") is None and host_name("[::1]x") is None


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["view", *argv])


def test_serving_the_network_warns_and_prints_the_real_addresses(card_dir, card_map, monkeypatch, capsys):
    seen = {}

    def serve_briefly(self):  # instead of serving until Ctrl-C: a request by host name, then Ctrl-C
        seen["port"] = _port(self)
        self.start()
        try:
            seen["by name"] = _get(self, "/", host=f"{socket.gethostname()}:{_port(self)}")[0]
            seen["elsewhere"] = _get(self, "/", host=f"evil.example:{_port(self)}")[0]
        finally:
            self.httpd.shutdown()
        raise KeyboardInterrupt

    monkeypatch.setattr(MapServer, "serve_forever", serve_briefly)
    assert main(_args("--run-dir", str(card_dir), "--host", "0.0.0.0", "--port", "0")) == 0
    out, err = capsys.readouterr()
    port = seen["port"]
    assert port != 0 and f"http://127.0.0.1:{port}/" in out
    assert f"http://{socket.gethostname()}:{port}/" in out and ":0/" not in out
    assert "warning:" in err and "0.0.0.0" in err and "no authentication" in err and str(port) in err
    assert seen["by name"] == 200 and seen["elsewhere"] == 400

    assert main(_args("--run-dir", str(card_dir), "--port", "0")) == 0  # loopback: no warning
    out, err = capsys.readouterr()
    assert f"http://127.0.0.1:{seen['port']}/" in out and "warning" not in err and "other machines" not in out


def test_a_server_on_all_interfaces_lists_addresses_for_other_machines(card_map):
    server = MapServer(*card_map, host="0.0.0.0", port=0)
    try:
        assert server.exposed and _port(server) != 0
        assert server.url == f"http://127.0.0.1:{_port(server)}/"
        assert f"http://{socket.gethostname()}:{_port(server)}/" in server.urls
        assert all(not url.startswith(("http://127.", "http://localhost")) for url in server.urls)
    finally:
        server.httpd.server_close()
    local = MapServer(*card_map, port=0)
    try:
        assert not local.exposed and local.urls == []
    finally:
        local.httpd.server_close()
