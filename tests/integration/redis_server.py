"""A real, private `redis-server` for tests: its own loopback port and its own temp dir.

Python 3 standard library only. Nothing here assumes a Redis is already running: RedisServer
starts one with

    redis-server --port P --bind 127.0.0.1 --dir D --appendonly yes --appendfsync always --save ''

so every write Redis acknowledged is in the append-only file before the reply, and stop() then
start() (same port, same dir) or kill() then start() loses nothing acknowledged. RDB snapshots
are off; the AOF is the only persistence.

    from redis_server import RedisServer, require_redis_server
    require_redis_server()                    # unittest.SkipTest when redis-server is missing
    r = RedisServer(testcase).start()         # waits until PING answers PONG
    url = r.url(db=0)                         # redis://127.0.0.1:P/0
    r.stop()                                  # SHUTDOWN (graceful: the AOF is flushed), wait
    r.start()                                 # again, on the same port and dir
    r.kill()                                  # SIGKILL
    r.command("XINFO", "GROUPS", "key")       # a raw RESP client for looking inside

With a testcase (a TestCase, or its class) the server is killed and its dir removed at cleanup;
without one, call cleanup() (or use it as a context manager). Its log is D/redis.log
(log_text()), kept with the dir until cleanup.
"""

import os
import shutil
import socket
import subprocess
import tempfile
import time
import unittest

from harness import free_port, terminate

__all__ = ["RedisServer", "RedisError", "redis_server_path", "require_redis_server"]

START_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0


def redis_server_path():
    """The redis-server executable ($REDIS_SERVER or on PATH), or None."""
    explicit = os.environ.get("REDIS_SERVER")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    return shutil.which("redis-server")


def require_redis_server():
    """Raises unittest.SkipTest, saying what to install, when redis-server is not installed."""
    if redis_server_path() is None:
        raise unittest.SkipTest("redis-server is not installed (Debian: apt-get install "
                                "redis-server; `.ci/deps test` installs it), so the Redis state "
                                "backend cannot be tested here")


class RedisError(Exception):
    """An error reply (-ERR ...) from Redis."""


# ---- a minimal RESP2 client ------------------------------------------------------------------

def _encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, bytes):
            b = a
        elif isinstance(a, str):
            b = a.encode()
        else:
            b = str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


class _Reader:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("redis closed the connection")
        self.buf += chunk

    def line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def exactly(self, n):
        while len(self.buf) < n + 2:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def reply(self):
        """One reply: str (simple), int, bytes or None (bulk), list or None (array);
        an error reply is returned as a RedisError instance (raised by the caller)."""
        line = self.line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode("utf-8", "replace")
        if kind == b"-":
            return RedisError(rest.decode("utf-8", "replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.exactly(n)
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise ConnectionError("not a RESP reply: %r" % line[:80])


def _raise_errors(value):
    if isinstance(value, RedisError):
        raise value
    if isinstance(value, list):
        for v in value:
            if isinstance(v, RedisError):
                raise v
    return value


def resp_command(port, *args, timeout=5.0, host="127.0.0.1", db=None):
    """Sends one command (after SELECT @p db when given) on a new connection.
    @return its reply (see _Reader.reply; errors raise RedisError)."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        r = _Reader(s)
        if db is not None:
            s.sendall(_encode(["SELECT", db]))
            _raise_errors(r.reply())
        s.sendall(_encode(args))
        return _raise_errors(r.reply())


def text(value):
    """A reply with its bytes decoded (recursively), for printing and comparing."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list):
        return [text(v) for v in value]
    return value


# ---- the server ------------------------------------------------------------------------------

class RedisServer:
    """One redis-server process on 127.0.0.1; survives stop()/kill() + start() with its data."""

    def __init__(self, testcase=None, port=None, directory=None, extra_args=()):
        require_redis_server()
        self.binary = redis_server_path()
        self.port = port
        self._own_dir = directory is None
        self.dir = directory or tempfile.mkdtemp(prefix="trailhook-redis-")
        self.extra_args = list(extra_args)
        self.proc = None
        self._log = None
        self.starts = 0
        if testcase is not None:
            if isinstance(testcase, type):
                testcase.addClassCleanup(self.cleanup)
            else:
                testcase.addCleanup(self.cleanup)

    # -- lifecycle --

    @property
    def log_path(self):
        return os.path.join(self.dir, "redis.log")

    def argv(self):
        return [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
                "--appendonly", "yes", "--appendfsync", "always", "--save", "",
                "--daemonize", "no", "--protected-mode", "yes", "--logfile", self.log_path,
                "--loglevel", "notice"] + self.extra_args

    def start(self, timeout=START_TIMEOUT):
        """Starts redis-server (again: same port, same dir) and waits until PING answers PONG.
        The first start picks a free port, and another one if that was taken meanwhile."""
        if self.running():
            return self
        first = self.port is None
        for attempt in range(3):
            if self.port is None:
                self.port = free_port()
            log_before = len(self.log_text())
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                self._wait_ping(timeout)
                self.starts += 1
                return self
            except RuntimeError:
                new_log = self.log_text()[log_before:]
                if first and attempt < 2 and self.proc.poll() is not None and \
                        "Address already in use" in new_log:
                    self.port = None
                    continue
                raise
        return self

    def _wait_ping(self, timeout):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode("utf-8", "replace") if self.proc.stderr \
                    else ""
                raise RuntimeError("redis-server exited with %s at start:\n%s\n%s"
                                   % (self.proc.returncode, err, self.log_text()[-3000:]))
            try:
                if self.ping(timeout=1.0):
                    return
            except (OSError, ConnectionError, RedisError) as e:  # loading the AOF: -LOADING
                last = e
            time.sleep(0.02)
        raise RuntimeError("redis-server on port %d does not answer PING after %.0fs (last: %r)"
                           "\n%s" % (self.port, timeout, last, self.log_text()[-3000:]))

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=STOP_TIMEOUT):
        """A graceful stop: SHUTDOWN (SIGTERM when the command cannot be sent), then wait.
        @return the exit status."""
        if not self.running():
            return None if self.proc is None else self.proc.returncode
        try:
            resp_command(self.port, "SHUTDOWN", timeout=2.0)
        except (OSError, ConnectionError, RedisError):
            pass  # the connection closes as the server exits: no reply is the normal case
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            if not terminate(self.proc, timeout):
                raise AssertionError("redis-server did not stop within %ss" % (2 * timeout))
        self._close_pipes()
        return self.proc.returncode

    def kill(self):
        """SIGKILL: no shutdown work at all (the AOF is fsynced on every write anyway)."""
        if self.running():
            self.proc.kill()
            self.proc.wait(10)
        self._close_pipes()

    def restart(self, timeout=START_TIMEOUT):
        self.stop()
        return self.start(timeout)

    def _close_pipes(self):
        if self.proc is not None and self.proc.stderr is not None:
            try:
                self.proc.stderr.close()
            except OSError:
                pass

    def cleanup(self):
        self.kill()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()

    # -- talking to it --

    def url(self, db=0):
        if self.port is None:
            self.port = free_port()  # a URL for a server that will be started later
        return "redis://127.0.0.1:%d/%d" % (self.port, db)

    def ping(self, timeout=2.0):
        return resp_command(self.port, "PING", timeout=timeout) == "PONG"

    def command(self, *args, db=None, timeout=5.0):
        """One command on a new connection (SELECT @p db first when given)."""
        return resp_command(self.port, *args, timeout=timeout, db=db)

    def version(self):
        try:
            out = subprocess.run([self.binary, "--version"], stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, timeout=10).stdout.decode()
        except (OSError, subprocess.SubprocessError):
            return "?"
        for word in out.split():
            if word.startswith("v="):
                return word[2:]
        return out.strip()

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    # -- looking inside (streams) --

    def keys(self, pattern="*", type_=None, db=None):
        """Every key matching @p pattern (SCAN, optionally of one TYPE), as str."""
        out, cursor = [], "0"
        while True:
            args = ["SCAN", cursor, "MATCH", pattern, "COUNT", 1000]
            if type_:
                args += ["TYPE", type_]
            cursor, batch = self.command(*args, db=db)
            cursor = text(cursor)
            out.extend(text(batch))
            if cursor == "0":
                return sorted(set(out))

    def stream_groups(self, db=None):
        """Every consumer group of every stream: a list of dicts with stream, group, pending
        (entries delivered to a consumer and not acknowledged), lag (entries not yet read, when
        Redis knows), and consumers {name: pending}."""
        groups = []
        for key in self.keys(type_="stream", db=db):
            for g in self.command("XINFO", "GROUPS", key, db=db) or []:
                info = dict(zip(text(g[0::2]), g[1::2]))
                name = text(info.get("name"))
                consumers = {}
                for c in self.command("XINFO", "CONSUMERS", key, name, db=db) or []:
                    ci = dict(zip(text(c[0::2]), c[1::2]))
                    consumers[text(ci.get("name"))] = ci.get("pending", 0)
                groups.append({"stream": key, "group": name, "pending": info.get("pending", 0),
                               "lag": info.get("lag"), "consumers": consumers})
        return groups
