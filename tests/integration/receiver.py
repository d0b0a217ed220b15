"""A scriptable HTTP receiver standing in for Slack, PagerDuty and generic webhooks.

Python 3 standard library only. One Receiver listens on 127.0.0.1 (a free port, or a given one),
serves each connection on its own thread and records every request it reads: path, headers, raw
body, parsed JSON body, monotonic arrival time, and what it answered.

Answers come from a per-path script: a list of Reply consumed in order, then the path's default
(or the receiver's default). Modes on top of the script:
  fail_randomly(fraction, ...)  answer a random fraction with 500 or 429 + Retry-After
  hang(seconds)                 read the request, then sleep and close without answering
  down() / up()                 close the listening socket (and open connections), then listen
                                again on the same port
Broken answers (for fault injection), as scripted or fail_randomly replies:
  Reply(None, reset=True)       read the request, then reset the connection (RST, no answer)
  Reply(None, raw=b"...")       read the request, write these bytes (not HTTP), then close
TLS: pass an ssl.SSLContext (server side); handshakes happen on the connection's own thread, and
failed handshakes are counted in tls_failures (no request is recorded for them).

Every answer that was fully written while the receiver was up has `answered` set to its status;
a request the receiver did not answer (hang, down while serving) has answered None. So
"delivered" below means: answered 2xx.
"""

import email.utils
import http.server
import json
import os
import random
import re
import socket
import socketserver
import ssl
import struct
import threading
import time

__all__ = ["Reply", "Request", "Receiver", "slack_ok", "pagerduty_ok", "webhook_ok",
           "http_date", "ROUTING_KEY", "HOOK_SECRET", "HOOK_SECRET_HEADER", "HMAC_KEY",
           "SIGNATURE_HEADER", "IMAGE_RE"]

# What the delivery tests configure and the receivers check: the PagerDuty routing key, the
# webhook's secret header and HMAC key, and how an image id looks in what they receive.
ROUTING_KEY = "ROUTINGKEY0123456789abcdef012345"
HOOK_SECRET = "s3cret"
HOOK_SECRET_HEADER = "X-Hook-Secret"
HMAC_KEY = "hmackey"
SIGNATURE_HEADER = "X-Trailhook-Signature"
IMAGE_RE = re.compile(r"ami-[0-9a-f]{17}")


class Reply:
    """One scripted answer. status None: send nothing and close the connection after @p delay.
    @p reset: after @p delay, reset the connection (TCP RST) instead of answering.
    @p raw: after @p delay, write these bytes as they are (garbage, not HTTP) and close.
    Neither counts as answered."""

    def __init__(self, status=200, body=b"", headers=None, delay=0.0, content_type=None,
                 reset=False, raw=None):
        self.status = status
        self.reset = reset
        self.raw = raw
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            content_type = content_type or "application/json"
        elif isinstance(body, str):
            body = body.encode()
        self.body = body  # bytes, or a function of the Request giving bytes
        self.headers = dict(headers or {})
        if content_type:
            self.headers.setdefault("Content-Type", content_type)
        self.delay = delay

    def __repr__(self):
        return "Reply(%r, %r, delay=%r)" % (self.status, self.body[:60], self.delay)


def slack_ok():
    return Reply(200, b"ok", content_type="text/html")


def _pd_answer(req):
    key = req.json.get("dedup_key") if isinstance(req.json, dict) else None
    return json.dumps({"status": "success", "message": "Event processed",
                       "dedup_key": key}).encode()


def pagerduty_ok():
    """PagerDuty's 202, echoing the event's dedup_key as PagerDuty does."""
    return Reply(202, _pd_answer, content_type="application/json")


def webhook_ok():
    return Reply(200, {"ok": True})


def http_date(epoch_seconds):
    """An IMF-fixdate, as a Retry-After HTTP-date."""
    return email.utils.formatdate(epoch_seconds, usegmt=True)


class Request:
    """One request as the receiver read it."""

    def __init__(self, method, path, headers, body, arrived, conn_id):
        self.method = method
        self.path = path
        self.headers = headers  # http.client.HTTPMessage: case-insensitive get()
        self.body = body
        self.arrived = arrived  # time.monotonic() when the whole body had been read
        self.conn_id = conn_id
        self.answered = None  # the status sent, when the answer was fully written
        self.answered_at = None
        try:
            self.json = json.loads(body.decode("utf-8")) if body else None
        except (UnicodeDecodeError, ValueError):
            self.json = None

    def header(self, name):
        return self.headers.get(name)

    @property
    def delivered(self):
        return self.answered is not None and 200 <= self.answered < 300

    def __repr__(self):
        return "<%s %s answered=%s %s>" % (self.method, self.path, self.answered,
                                          self.body[:120])


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, receiver):
        self.receiver = receiver
        super().__init__(addr, _Handler)

    def process_request_thread(self, request, client_address):
        rcv = self.receiver
        if not rcv._track(request):
            self.shutdown_request(request)
            return
        try:
            if rcv.tls_context is not None:
                try:
                    request.settimeout(5)
                    tls = rcv.tls_context.wrap_socket(request, server_side=True)
                except (ssl.SSLError, OSError) as e:
                    with rcv._lock:
                        rcv.tls_failures += 1
                        rcv.tls_errors.append(str(e))
                    rcv._untrack(request)
                    try:
                        request.close()
                    except OSError:
                        pass
                    return
                tls.settimeout(None)
                rcv._retrack(request, tls)
                request = tls
            super().process_request_thread(request, client_address)
        finally:
            rcv._untrack(request)

    def handle_error(self, request, client_address):
        pass  # a client that went away mid-request is part of the game here


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def _handle(self):
        rcv = self.server.receiver
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        req = Request(self.command, self.path, self.headers, body, time.monotonic(),
                      id(self.connection))
        reply = rcv._record_and_choose(req)
        if reply.delay > 0:
            rcv._sleep(reply.delay)
        if reply.reset or reply.raw is not None:
            self._break_connection(reply)
            return
        if reply.status is None:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        payload = reply.body
        if callable(payload):
            payload = payload(req)
        # The receiver's lock orders answers against down(): an answer is either fully written
        # while up (and counted) or not written at all.
        with rcv._lock:
            if rcv._down:
                self.close_connection = True
                return
            try:
                self.send_response(reply.status)
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                self.wfile.flush()
            except OSError:
                self.close_connection = True
                return
            req.answered = reply.status
            req.answered_at = time.monotonic()
            rcv._cond.notify_all()

    def _break_connection(self, reply):
        """Garbage and/or a reset instead of an answer (req.answered stays None)."""
        self.close_connection = True
        sock = self.connection
        if reply.raw is not None:
            try:
                sock.sendall(reply.raw)
            except OSError:
                pass
        try:
            if reply.reset:
                # SO_LINGER 0: closing sends RST at once (no FIN, unsent data discarded).
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                os.close(sock.detach())
            else:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    do_POST = _handle
    do_PUT = _handle
    do_GET = _handle


class Receiver:
    """A recording, scriptable HTTP server on 127.0.0.1. Use as a context manager or call stop()."""

    def __init__(self, default=None, port=0, tls_context=None, name="receiver", seed=None):
        self.name = name
        self.port = port
        self.tls_context = tls_context
        self.default = default or Reply(200, b"ok")
        self.requests = []
        self.tls_failures = 0
        self.tls_errors = []
        self._scripts = {}   # path -> [Reply, ...] consumed in order
        self._defaults = {}  # path -> Reply
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._server = None
        self._thread = None
        self._down = True
        self._conns = {}  # raw socket -> socket to shut down on down()
        self._stop = threading.Event()  # releases hanging handlers on stop()
        self._fail_fraction = 0.0
        self._fail_replies = []
        self._hang = 0.0
        self._rng = random.Random(seed)

    # -- lifecycle --

    def start(self):
        self.up()
        return self

    def up(self):
        """Listens (again) on self.port; the first call picks a free port."""
        with self._lock:
            if not self._down:
                return self
        last = None
        for _ in range(100):  # the old socket's port may take a moment to be free again
            try:
                server = _Server(("127.0.0.1", self.port), self)
                break
            except OSError as e:
                last = e
                time.sleep(0.05)
        else:
            raise last
        self.port = server.server_address[1]
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                  name="%s-%d" % (self.name, self.port), daemon=True)
        with self._lock:
            self._server, self._thread, self._down = server, thread, False
        thread.start()
        return self

    def down(self):
        """Stops listening and cuts every open connection: clients see refused connections."""
        with self._lock:
            if self._down:
                return self
            self._down = True
            server, thread = self._server, self._thread
            conns = list(self._conns.values())
            self._server = self._thread = None
        server.shutdown()
        server.server_close()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        thread.join(5)
        return self

    def stop(self):
        self._stop.set()
        self.down()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def is_down(self):
        with self._lock:
            return self._down

    def url(self, path="/"):
        scheme = "https" if self.tls_context is not None else "http"
        return "%s://127.0.0.1:%d%s" % (scheme, self.port, path)

    # -- scripting --

    def script(self, path, *replies):
        """Appends answers for @p path ("*": any path without its own script), used in order."""
        with self._lock:
            self._scripts.setdefault(path, []).extend(replies)
        return self

    def set_default(self, reply, path=None):
        with self._lock:
            if path is None:
                self.default = reply
            else:
                self._defaults[path] = reply
        return self

    def fail_randomly(self, fraction, replies=None):
        """Answers @p fraction of requests (not taken by a script) with one of @p replies, picked
        at random; default half 500, half 429 with Retry-After: 1."""
        with self._lock:
            self._fail_fraction = fraction
            self._fail_replies = replies or [
                Reply(500, b"internal error"),
                Reply(429, {"ok": False, "error": "rate_limited", "retry_after": 1},
                      headers={"Retry-After": "1"}),
            ]
        return self

    def hang(self, seconds):
        """Reads each request, then waits @p seconds and closes without answering (0: off)."""
        with self._lock:
            self._hang = seconds
        return self

    # -- inside --

    def _track(self, sock):
        with self._lock:
            if self._down:
                return False
            self._conns[sock] = sock
            return True

    def _retrack(self, raw, wrapped):
        with self._lock:
            if raw in self._conns:
                self._conns[raw] = wrapped

    def _untrack(self, sock):
        with self._lock:
            self._conns.pop(sock, None)
            for k, v in list(self._conns.items()):
                if v is sock:
                    del self._conns[k]

    def _sleep(self, seconds):
        self._stop.wait(seconds)

    def _record_and_choose(self, req):
        with self._lock:
            self.requests.append(req)
            self._cond.notify_all()
            script = self._scripts.get(req.path)
            if not script:
                script = self._scripts.get("*")
            if script:
                return script.pop(0)
            if self._hang > 0:
                return Reply(None, delay=self._hang)
            if self._fail_fraction > 0 and self._rng.random() < self._fail_fraction:
                return self._rng.choice(self._fail_replies)
            return self._defaults.get(req.path, self.default)

    # -- reading what arrived --

    def all(self, path=None):
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    def delivered(self, path=None):
        return [r for r in self.all(path) if r.delivered]

    def count(self, path=None):
        return len(self.all(path))

    def wait_for(self, predicate, timeout):
        """Waits until predicate(self) is true; @return its last value."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = predicate(self)
                if value:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return value
                self._cond.wait(min(remaining, 0.2))

    def wait_requests(self, n, timeout=10, path=None):
        """Waits for at least @p n requests; @return the requests so far."""
        self.wait_for(lambda r: r.count(path) >= n, timeout)
        return self.all(path)

    def wait_delivered(self, n, timeout=10, path=None):
        self.wait_for(lambda r: len(r.delivered(path)) >= n, timeout)
        return self.delivered(path)

    def clear(self):
        with self._lock:
            self.requests = []


def self_signed_context(directory, cn="localhost"):
    """A server-side SSLContext with a fresh self-signed certificate written into @p directory."""
    import os
    import subprocess
    cert = os.path.join(directory, "cert.pem")
    key = os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj",
                    "/CN=" + cn, "-days", "1", "-keyout", key, "-out", cert],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx
