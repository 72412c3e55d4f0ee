"""The map's web server: the page, its static files and the tiles over HTTP.

:class:`MapServer` serves what ``python -m pipeline view`` shows. Every request goes
through one path (:meth:`MapSite.respond`): a malformed or unknown request gets a 4xx
answer with a short text body (400, 404; 501 for methods other than GET and HEAD), an
unexpected failure a 500, and none of them prints a traceback on the terminal (they go
to this module's logger: debug for bad requests, warning for failures). A client that
goes away before its answer is written (a browser cancelling tiles while panning) is
ignored quietly.

Host check. A page on another site can make a browser send requests to a server on
this machine by pointing a host name of its own at ``127.0.0.1`` (DNS rebinding); the
browser then sends that name in the ``Host:`` header. The server answers only requests
whose ``Host:`` names this machine: ``localhost``, ``127.0.0.1``, ``[::1]``, the
interface given to ``--host``, the address the request came in on, and for a server
on all interfaces the machine's host names. The port in the header is not checked, so
an SSH tunnel to another local port works. Anything else gets 400.

Serving beyond this machine. On an interface other than loopback the map is visible
to everyone who can reach it, without authentication: :attr:`MapServer.exposed` is
true and :attr:`MapServer.urls` lists the addresses others can use (the command line
prints both, :func:`pipeline.viewer.command.serve_map`).
"""

from __future__ import annotations

import contextlib
import http.server
import ipaddress
import logging
import re
import socket
import sys
import threading
from typing import Any
from urllib.parse import urlsplit

from pipeline.errors import InputError
from pipeline.settings.view import DEFAULT_PORT
from pipeline.viewer.page import Page
from pipeline.viewer.pyramid import Pyramid

logger = logging.getLogger(__name__)

__all__ = ["LOOPBACK_NAMES", "MapServer", "MapSite", "host_name"]

#: ``Host:`` names always served (this machine).
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
#: Seconds a connection may stay silent before the server closes it.
_IDLE_SECONDS = 60
#: A tile's URL: layer, level, column, row (at most 9 digits, no leading zeros).
_TILE_PATH = re.compile(r"^/tiles/([a-z0-9_-]{1,64})/(0|[1-9]\d{0,8})/(0|[1-9]\d{0,8})/(0|[1-9]\d{0,8})\.png$")
_CONTENT_TYPES = {".css": "text/css", ".js": "text/javascript", ".html": "text/html; charset=utf-8"}
#: Distinct refused ``Host:`` values reported as warnings (the rest at debug level).
_HOST_WARNINGS = 20
_Answer = tuple[int, bytes, str, bool]  # status, body, content type, cacheable


def host_name(value: str) -> str | None:
    """The host name of a ``Host:`` header value, lower case (``None`` if malformed).

    ``localhost:8765`` -> ``localhost``; ``[::1]:8765`` -> ``::1``; an IP address in
    its normal form; a trailing dot dropped.
    """
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, port = value[1:end], value[end + 1 :]
    else:
        name, colon, port = value.partition(":")
        port = colon + port
    if port and not re.fullmatch(r":\d{1,5}", port):
        return None
    name = name.rstrip(".")
    with contextlib.suppress(ValueError):
        return str(ipaddress.ip_address(name))
    return name if re.fullmatch(r"[a-z0-9_.-]{1,253}", name) else None


def _normal(name: str) -> str:
    """A host name or address (not a ``Host:`` value: no port, IPv6 without brackets) as :func:`host_name` gives it."""
    try:
        return str(ipaddress.ip_address(name.split("%")[0]))
    except ValueError:
        return name.strip().lower().rstrip(".")


class MapSite:
    """What the server answers: the page, its static files and the pyramid's tiles.

    Parameters
    ----------
    pyramid : Pyramid
        The tiles.
    page : Page
        The page.
    hosts : iterable of str
        Host names and addresses served besides :data:`LOOPBACK_NAMES` and the address a
        request came in on.
    """

    def __init__(self, pyramid: Pyramid, page: Page, hosts: Any = ()) -> None:
        self.index = page.html.encode("utf-8")
        self.static = dict(page.static)
        self.layers = frozenset(pyramid.layers)
        self.grid = pyramid.grid
        self.tiles = pyramid.tiles_location
        self.hosts = LOOPBACK_NAMES | {_normal(h) for h in hosts}
        self._refused: set[str] = set()

    def respond(self, target: str, hosts: list[str], local_address: str) -> _Answer:
        """The answer to ``GET target``.

        Parameters
        ----------
        target : str
            The request target (``/tiles/bands/0/0/0.png``).
        hosts : list of str
            The request's ``Host:`` headers.
        local_address : str
            The address of this machine the request came in on.

        Returns
        -------
        tuple of (int, bytes, str, bool)
            Status, body, content type, whether the answer may be cached.
        """
        name = host_name(hosts[0]) if len(hosts) == 1 else None
        if name is None or name not in self.hosts | _own_names(local_address):
            shown = ", ".join(repr(h[:100]) for h in hosts) or "none"
            level = (
                logging.WARNING if len(self._refused) < _HOST_WARNINGS and shown not in self._refused else logging.DEBUG
            )
            self._refused.add(shown)
            logger.log(
                level, "map server: refused a request with Host %s (only this machine's names are served)", shown
            )
            return _text(400, "host not served: this map answers only requests for this machine's names")
        try:
            path = urlsplit(target).path
        except ValueError:
            return _text(400, "malformed request target")
        if path in ("/", "/index.html"):
            return 200, self.index, _CONTENT_TYPES[".html"], False
        source = self.static.get(path[1:])
        if source is not None:
            return 200, source.read_bytes(), _CONTENT_TYPES.get(source.suffix, "application/octet-stream"), False
        match = _TILE_PATH.match(path)
        if match and match[1] in self.layers:
            z, x, y = int(match[2]), int(match[3]), int(match[4])
            if z <= self.grid.max_level:
                rows, cols = self.grid.tile_counts(z)
                if x < cols and y < rows:
                    tile = self.tiles / f"{match[1]}/{z}/{x}/{y}.png"
                    with contextlib.suppress(FileNotFoundError):
                        return 200, tile.path.read_bytes() if tile.is_local else tile.read_bytes(), "image/png", True
        return _text(404, "not found")


def _own_names(local_address: str) -> set[str]:
    """The names of the address a request came in on (an IPv4 address mapped into IPv6 as both)."""
    try:
        address = ipaddress.ip_address(local_address.split("%")[0])
    except ValueError:
        return set()
    mapped = getattr(address, "ipv4_mapped", None)
    return {str(address), str(mapped)} if mapped else {str(address)}


def _text(status: int, message: str) -> _Answer:
    return status, f"{message}\n".encode(), "text/plain; charset=utf-8", False


class _Handler(http.server.BaseHTTPRequestHandler):
    """One connection: every GET and HEAD through :meth:`MapSite.respond`."""

    server: _Server
    server_version = "MorpheusMap"
    sys_version = ""
    timeout = _IDLE_SECONDS

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionError, TimeoutError) as exc:  # the client went away
            self.close_connection = True
            logger.debug("map server: %s went away (%s)", self.client_address[0], type(exc).__name__)

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        self._answer(body=True)

    def do_HEAD(self) -> None:  # noqa: N802 - the http.server API
        self._answer(body=False)

    def _answer(self, *, body: bool) -> None:
        try:
            status, data, kind, cache = self.server.site.respond(
                self.path, self.headers.get_all("Host") or [], self.connection.getsockname()[0]
            )
        except Exception as exc:  # a bug or an unreadable tile: one line here, the traceback at debug level
            logger.warning("map server: %s failed: %s: %s", self.path[:200], type(exc).__name__, exc)
            logger.debug("map server: traceback", exc_info=True)
            status, data, kind, cache = _text(500, "internal error")
        if status >= 400:
            logger.debug("map server: %s %s -> %d", self.client_address[0], self.path[:200], status)
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "max-age=86400" if cache else "no-cache")
        self.end_headers()
        if body:
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the http.server API
        logger.debug("map server: %s %s", self.address_string(), format % args)


class _Server(http.server.ThreadingHTTPServer):
    """A threading HTTP server of the address's family that never prints a traceback."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], family: socket.AddressFamily, site: MapSite) -> None:
        self.address_family = family
        self.site = site
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6:  # "::" serves IPv4 clients too
            with contextlib.suppress(OSError, AttributeError):
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            logger.debug("map server: %s went away (%s)", client_address[0], type(exc).__name__)
            return
        logger.warning("map server: a request from %s failed: %s: %s", client_address[0], type(exc).__name__, exc)
        logger.debug("map server: traceback", exc_info=True)


def _family(host: str, port: int) -> socket.AddressFamily:
    """The address family to serve ``host`` with (IPv4 for ``""`` and ``0.0.0.0``)."""
    if host in ("", "0.0.0.0"):
        return socket.AF_INET
    try:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    except (socket.gaierror, UnicodeError) as exc:
        raise InputError(
            f"cannot serve on {host!r}: not an address or known host name of this machine ({exc}); "
            "choose another --host"
        ) from exc


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def _outward_address(family: socket.AddressFamily) -> str | None:
    """The address of this machine on its default route (a UDP socket's route lookup: nothing is sent)."""
    probe = ("192.0.2.1", 9) if family == socket.AF_INET else ("2001:db8::1", 9)
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect(probe)
            return str(s.getsockname()[0])
    except OSError:
        return None


def _machine_names(family: socket.AddressFamily) -> list[str]:
    """The host names and addresses of this machine (no loopback) that others may reach it by."""
    names = [socket.gethostname(), socket.getfqdn()]
    with contextlib.suppress(OSError, UnicodeError):
        names += [info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, family, socket.SOCK_STREAM)]
    families = (socket.AF_INET6, socket.AF_INET) if family == socket.AF_INET6 else (family,)  # "::": both
    names += [_outward_address(f) or "" for f in families]
    out: list[str] = []
    for name in map(_normal, names):
        loopback = name in LOOPBACK_NAMES
        with contextlib.suppress(ValueError):
            loopback = loopback or ipaddress.ip_address(name).is_loopback
        if name and not loopback and name not in out:
            out.append(name)
    return out


class MapServer:
    """Serves a map page, its static files and its tiles over HTTP (a background thread).

    Parameters
    ----------
    pyramid : Pyramid
        The tiles.
    page : Page
        The page.
    host : str
        Interface (``127.0.0.1``: this machine only; ``0.0.0.0``: all IPv4 interfaces;
        ``::``: all).
    port : int
        Port (0: any free one).

    Raises
    ------
    InputError
        The interface is unknown or the port is taken.
    """

    def __init__(self, pyramid: Pyramid, page: Page, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
        family = _family(host, port)
        site = MapSite(pyramid, page)
        try:
            self.httpd = _Server((host, port), family, site)
        except OSError as exc:
            raise InputError(f"cannot serve on {host}:{port} ({exc}); choose another --port or --host") from exc
        bound = str(self.httpd.server_address[0])
        self.port = int(self.httpd.server_address[1])
        self.wildcard = ipaddress.ip_address(bound).is_unspecified
        self.exposed = not ipaddress.ip_address(bound).is_loopback
        others = _machine_names(family) if self.wildcard else [_normal(host), _normal(bound)]
        site.hosts |= set(others)
        self._others = [n for n in dict.fromkeys(others) if n and n not in LOOPBACK_NAMES]
        self._bound = bound
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The page's URL on this machine."""
        if self.wildcard:
            return _url("127.0.0.1" if self.httpd.address_family == socket.AF_INET else "::1", self.port)
        return _url(self._bound, self.port)

    @property
    def urls(self) -> list[str]:
        """The page's URLs for other machines (empty when it serves loopback only)."""
        return [_url(name, self.port) for name in self._others] if self.exposed else []

    def start(self) -> MapServer:
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="map-server", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted."""
        self.httpd.serve_forever()

    def stop(self) -> None:
        """Stop serving."""
        self.httpd.shutdown()
        self.httpd.server_close()
