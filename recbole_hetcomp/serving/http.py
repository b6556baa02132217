"""``hetcomp-serve``: the Recommender behind a small JSON HTTP endpoint (standard library).

    GET /recommend?user=196&k=10[&exclude_known=false]   -> {"user", "fallback", "items": [...]}
    GET /similar?item=50&k=10                            -> {"item", "items": [...]}
    GET /healthz                                         -> {"status": "ok", "model", ...}

Threads serve connections (HTTP/1.1 keep-alive); every request is answered, a bad one with a
4xx and a JSON error (400 a bad parameter, 404 an unknown path, 405 and ``Allow: GET`` for any
other method), a failure of ours with a 500: no request can stop the server.
"""

import json
import logging
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from recbole_hetcomp.errors import HetCompError

MAX_K = 1000
_DIGITS = re.compile(r"[0-9]{1,18}")
log = logging.getLogger("hetcomp-serve")


class BadRequest(Exception):
    """A request we answer with 400 and its message."""


def make_server(recommender, host="127.0.0.1", port=8080, quiet=True):
    """A ThreadingHTTPServer serving ``recommender`` (call ``serve_forever`` on it)."""

    class Handler(_Handler):
        rec = recommender
        log_requests = not quiet

    server = _Server((host, port), Handler)
    return server


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 drops connection attempts when 32 clients connect at
    # once; each then waits a 1 s SYN retransmit (measured: p99 1.25 s at 32 clients).
    request_queue_size = 128


def serve_in_thread(recommender, host="127.0.0.1", port=0):
    """Start a server in a background thread (tests, benchmarks); returns (server, url)."""
    server = make_server(recommender, host, port)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, f"http://{host}:{server.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse their connection
    # Headers and body leave in one write, without Nagle's wait: written apart, a keep-alive
    # client's delayed ACK held every response ~40 ms (measured: 23 requests/s at 1 client).
    wbufsize = 1 << 16
    disable_nagle_algorithm = True
    rec = None
    log_requests = False

    def do_GET(self):  # noqa: N802 - http.server's naming
        try:
            url = urlsplit(self.path)
            query = parse_qs(url.query, keep_blank_values=True)
            if url.path == "/healthz":
                body = {"status": "ok", "model": self.rec.card.get("model"),
                        "dataset": self.rec.card.get("dataset"), "users": self.rec.n_users,
                        "items": self.rec.n_items}
            elif url.path == "/recommend":
                user = _one(query, "user")
                k = _int(query, "k", 10)
                exclude = _bool(query, "exclude_known", True)
                body = self.rec.recommend([user], k=k, exclude_known=exclude)[0].as_dict()
            elif url.path == "/similar":
                item = _one(query, "item")
                k = _int(query, "k", 10)
                pairs = self.rec.similar_items([item], k=k)[0]
                body = {"item": item, "items": [{"item": t, "score": s} for t, s in pairs]}
            else:
                return self._send(404, {"error": f"no such endpoint {url.path}: use /recommend, "
                                                 "/similar or /healthz"})
        except (BadRequest, HetCompError) as exc:
            return self._send(400, {"error": str(exc)})
        except Exception as exc:  # noqa: BLE001 - a bug of ours must not stop the server
            log.exception("request failed")
            return self._send(500, {"error": f"internal error ({type(exc).__name__})"})
        return self._send(200, body)

    def do_POST(self):  # noqa: N802
        self._refuse()

    do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_TRACE = do_CONNECT = do_POST

    def _refuse(self):
        length = self.headers.get("Content-Length")
        if length and _DIGITS.fullmatch(length) and int(length) <= 1 << 20:
            self.rfile.read(int(length))  # drain the body so the connection stays usable
        elif length or self.headers.get("Transfer-Encoding"):
            self.close_connection = True  # an unread body would be taken for the next request
        self._send(405, {"error": f"{self.command} is not supported: use GET"},
                   {"Allow": "GET"})

    def send_error(self, code, message=None, explain=None):
        """http.server's own refusals (a malformed request line, an unknown method, headers
        too long) in JSON like every other error, not its HTML page."""
        if code == 501:  # a method http.server has no do_ for: not allowed, like POST
            self._refuse()
        else:
            self.close_connection = True
            self._send(code, {"error": message or self.responses.get(code, ("error",))[0]},
                       {"Connection": "close"})
        self.wfile.flush()  # http.server flushes after a do_ method, not after send_error

    def _send(self, status, body, headers=None):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":  # a HEAD answer has headers only: its client reads no body
            self.wfile.write(data)

    def log_message(self, format, *args):  # noqa: A002 - http.server's signature
        if self.log_requests:
            log.info("%s %s", self.address_string(), format % args)


def _one(query, name):
    values = query.get(name)
    if not values or not values[0]:
        raise BadRequest(f"missing query parameter '{name}'")
    if len(values) > 1:
        raise BadRequest(f"give '{name}' once")
    return values[0]


def _int(query, name, default):
    values = query.get(name)
    if not values:
        return default
    text = values[0]
    # str.isdigit() also accepts "²" and other digits int() refuses; a bounded length keeps
    # int() from a million-digit string.
    if not _DIGITS.fullmatch(text) or not 1 <= int(text) <= MAX_K:
        raise BadRequest(f"'{name}' must be an integer from 1 to {MAX_K}, got {text!r}")
    return int(text)


def _bool(query, name, default):
    values = query.get(name)
    if not values:
        return default
    text = values[0].lower()
    if text not in ("true", "false", "1", "0"):
        raise BadRequest(f"'{name}' must be true or false, got {values[0]!r}")
    return text in ("true", "1")
