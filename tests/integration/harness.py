"""Helpers for trailhook's end-to-end tests: run the real binary, talk HTTP to it, read its output.

Python 3 standard library only. Paths come from the environment (ctest sets them):
  TRAILHOOK_BIN   the trailhook binary      (default /work/main/build/trailhook)
  TH_FIXTURES     tests/fixtures            (default /work/main/tests/fixtures)
  TH_SOURCE_DIR   the source tree           (default /work/main)
"""

import copy
import gzip
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import uuid

BIN = os.environ.get("TRAILHOOK_BIN", "/work/main/build/trailhook")
FIXTURES = os.environ.get("TH_FIXTURES", "/work/main/tests/fixtures")
SOURCE_DIR = os.environ.get("TH_SOURCE_DIR", "/work/main")
EVENTS_DIR = os.path.join(FIXTURES, "events")
CORPUS_DIR = os.path.join(FIXTURES, "corpus")
RULE_SPEC = os.path.join(SOURCE_DIR, "config", "rules", "aws_ami_modified_for_public_access.yml")

RULE_ID = "AWS.CloudTrail.AMIModifiedForPublicAccess"
RULE_TITLE = "Amazon Machine Image (AMI) Modified to Allow Public Access"

API_KEY = "it-key-0123456789abcdef"
API_KEY_2 = "it-key-rotated-fedcba9876543210"
BASIC_USER = "eventbridge"
BASIC_PASS = "s3cret:with-colon"

START_TIMEOUT = 15.0
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "WARNING: ThreadSanitizer")
STOP_TIMEOUT = 15.0


# ---- fixtures --------------------------------------------------------------------------------

def fixture_path(name):
    return os.path.join(EVENTS_DIR, name)


def load_fixture(name):
    with open(fixture_path(name), "rb") as f:
        return json.loads(f.read())


def unique(prefix=""):
    return prefix + uuid.uuid4().hex


def unique_image_id():
    return "ami-" + uuid.uuid4().hex[:17]


def event_detail(doc):
    """The CloudTrail record of a fixture: an EventBridge envelope's detail, or the doc itself."""
    return doc["detail"] if "detail-type" in doc and isinstance(doc.get("detail"), dict) else doc


def with_ids(doc, event_id=None, image_id=None, event_time=None, user_id=None):
    """A deep copy of a fixture (record or envelope) with fresh identifiers where asked."""
    doc = copy.deepcopy(doc)
    rec = event_detail(doc)
    if event_id is not None:
        rec["eventID"] = event_id
    if image_id is not None:
        rec["requestParameters"]["imageId"] = image_id
    if event_time is not None:
        rec["eventTime"] = event_time
    if user_id is not None:
        rec["requestParameters"]["launchPermission"]["add"]["items"] = [{"userId": user_id}]
    return doc


def matching_event(image_id=None, event_id=None, event_time=None):
    """The spec's "AMI Made Public" record, with a fresh eventID and imageId by default."""
    return with_ids(load_fixture("record_ami_made_public.json"),
                    event_id=event_id or unique("evt-"),
                    image_id=image_id or unique_image_id(),
                    event_time=event_time)


def non_matching_event(event_id=None):
    return with_ids(load_fixture("record_ami_not_made_public.json"),
                    event_id=event_id or unique("evt-"), image_id=unique_image_id())


def iso_utc(epoch_seconds):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_seconds))


def dumps(obj):
    return json.dumps(obj).encode()


# ---- processes -------------------------------------------------------------------------------

def base_env(extra=None):
    """The caller's environment without any TRAILHOOK_* variable, plus @p extra."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAILHOOK_")}
    env["TRAILHOOK_LOG_LEVEL"] = "info"
    for k, v in (extra or {}).items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = str(v)
    return env


def run_cli(args, env=None, input_bytes=None, timeout=120, cwd=None):
    """Runs `trailhook ARGS...` to completion. @return CompletedProcess with bytes stdout/stderr."""
    return subprocess.run([BIN] + list(args), input=input_bytes, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=base_env(env), timeout=timeout, cwd=cwd)


def to_yaml(obj, indent=0):
    """Block-style YAML for plain data (dicts, lists, str, int, float, bool, None); strings are
    double-quoted (JSON escapes are valid YAML), so no value is read as another type."""
    pad = "  " * indent
    if isinstance(obj, dict):
        if not obj:
            return pad + "{}\n"
        out = []
        for k, v in obj.items():
            if isinstance(v, (dict, list)) and v:
                out.append("%s%s:\n%s" % (pad, k, to_yaml(v, indent + 1)))
            else:
                out.append("%s%s: %s" % (pad, k, to_yaml(v, 0)))
        return "".join(out)
    if isinstance(obj, list):
        if not obj:
            return pad + "[]\n"
        out = []
        for v in obj:
            if not isinstance(v, (dict, list)) or not v:
                out.append(pad + "- " + to_yaml(v, 0))
                continue
            text = to_yaml(v, indent + 1)
            # "- " takes the place of the first line's indentation
            out.append(pad + "- " + text[len(pad) + 2:])
        return "".join(out)
    if obj is None:
        return "null\n"
    if isinstance(obj, bool):
        return ("true" if obj else "false") + "\n"
    if isinstance(obj, (int, float)):
        return repr(obj) + "\n"
    return json.dumps(str(obj)) + "\n"


def write_config(testcase, config, name="trailhook.yml"):
    """Writes @p config (a dict, or YAML text) into a temp dir of @p testcase. @return its path."""
    d = make_temp_dir(testcase, "trailhook-config-")
    path = os.path.join(d, name)
    with open(path, "w") as f:
        f.write(config if isinstance(config, str) else to_yaml(config))
    return path


def outbox_cli(state_dir, *args, env=None, timeout=60):
    """Runs `trailhook outbox ARGS... --state-dir DIR`.
    @return (CompletedProcess, list of the JSON objects among its stdout lines)."""
    r = run_cli(["outbox"] + list(args) + ["--state-dir", state_dir], env=env, timeout=timeout)
    rows = []
    for line in r.stdout.decode("utf-8", "replace").splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict):
            rows.append(doc)
    return r, rows


def terminate(proc, timeout):
    """SIGTERM, then wait up to @p timeout; kill -9 when it does not stop in time.
    @return True when it stopped by itself."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
        return True
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        return False


def pending_count(state_dir):
    """Outbox rows still to deliver, as `trailhook outbox list --pending` shows them."""
    r, rows = outbox_cli(state_dir, "list", "--pending")
    if r.returncode != 0:
        raise RuntimeError("outbox list --pending: %s" % r.stderr.decode())
    return len(rows)  # the command lists at most 1000: "1000" reads "1000 or more"


def wait_for_drain(svc, receivers, deadline, log):
    """Polls the outbox until it is empty, the monotonic @p deadline passes or the service
    exits; says where it stands every 10 s. @return (drained, pending rows last seen)."""
    last_report = 0
    n = None
    while time.monotonic() < deadline and svc.proc.poll() is None:
        n = pending_count(svc.state_dir)
        if n == 0:
            return True, 0
        if time.monotonic() - last_report > 10:
            log("pending rows: %s%s; delivered %s", n, "+" if n >= 1000 else "",
                ", ".join("%s %d" % (r.name, len(r.delivered())) for r in receivers))
            last_report = time.monotonic()
        time.sleep(1.0)
    return False, n


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def make_temp_dir(testcase, prefix="trailhook-it-"):
    """A temporary directory removed when @p testcase (a TestCase or its class) is cleaned up."""
    d = tempfile.mkdtemp(prefix=prefix)
    if isinstance(testcase, type):
        testcase.addClassCleanup(shutil.rmtree, d, ignore_errors=True)
    else:
        testcase.addCleanup(shutil.rmtree, d, ignore_errors=True)
    return d


class Cleanups:
    """What harness expects of a test case (addCleanup), for scripts that are not one: the
    cleanups run in reverse order at run(), each even when an earlier one failed."""

    def __init__(self):
        self._fns = []

    def addCleanup(self, fn, *args, **kw):
        self._fns.append((fn, args, kw))

    def run(self):
        while self._fns:
            fn, args, kw = self._fns.pop()
            try:
                fn(*args, **kw)
            except Exception as e:  # keep cleaning up
                print("cleanup: %s" % e, file=sys.stderr)


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # list of (name, value)
        self.body = body
        self._json = None

    def header(self, name):
        """The first value of header @p name (case-insensitive), or None."""
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    @property
    def json(self):
        if self._json is None:
            self._json = json.loads(self.body.decode("utf-8"))
        return self._json

    def __repr__(self):
        return "<HTTP %d %s>" % (self.status, self.body[:300])


class Service:
    """One `trailhook serve` process with its own state dir, stdout (console alerts) and stderr."""

    def __init__(self, testcase, state_dir=None, env=None, args=(), auth=True, host="127.0.0.1",
                 config=None, command_prefix=()):
        """@p config: a config file path, passed as --config. @p command_prefix: what runs the
        binary (e.g. valgrind and its options), nothing by default."""
        self.testcase = testcase
        self.state_dir = state_dir or make_temp_dir(testcase, "trailhook-state-")
        self.extra_env = dict(env or {})
        self.args = list(args) + (["--config", config] if config is not None else [])
        self.command_prefix = list(command_prefix)
        self.auth = auth
        self.host = host
        self.port = None
        self.proc = None
        self.stdout_lines = []
        self.stderr_lines = []
        self._cond = threading.Condition()
        self._threads = []

    # -- lifecycle --

    def env(self):
        e = {
            "TRAILHOOK_LISTEN": "%s:%d" % (self.host, self.port),
            "TRAILHOOK_STATE_DIR": self.state_dir,
        }
        if self.auth:
            e["TRAILHOOK_API_KEYS"] = API_KEY + "," + API_KEY_2
            e["TRAILHOOK_BASIC_AUTH"] = BASIC_USER + ":" + BASIC_PASS
        e.update(self.extra_env)
        return base_env(e)

    def _reader(self, stream, lines):
        for raw in iter(stream.readline, b""):
            with self._cond:
                lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._cond.notify_all()
        stream.close()

    def spawn(self):
        """Starts the process without waiting for it to be healthy."""
        if self.port is None:
            self.port = free_port()
        self.stdout_lines = []
        self.stderr_lines = []
        self.proc = subprocess.Popen(self.command_prefix + [BIN, "serve"] + self.args,
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=self.env())
        self._threads = [
            threading.Thread(target=self._reader, args=(self.proc.stdout, self.stdout_lines),
                             daemon=True),
            threading.Thread(target=self._reader, args=(self.proc.stderr, self.stderr_lines),
                             daemon=True),
        ]
        for t in self._threads:
            t.start()
        args = (self.proc, self.stderr_lines, list(self._threads))
        if isinstance(self.testcase, type):
            self.testcase.addClassCleanup(self._cleanup_proc, *args)
        else:
            self.testcase.addCleanup(self._cleanup_proc, *args)
        return self

    def start(self, timeout=START_TIMEOUT):
        """Starts and waits until GET /healthz answers 200; retries once on a port clash."""
        for attempt in range(3):
            self.spawn()
            try:
                self.wait_healthy(timeout)
                return self
            except RuntimeError:
                exited = self.proc.poll() is not None
                text = self.stderr_text()
                if exited and "cannot listen" in text and attempt < 2:
                    self.port = None
                    continue
                raise
        return self

    def wait_healthy(self, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.join_readers()
                raise RuntimeError("trailhook serve exited with %s before it was healthy:\n%s"
                                   % (self.proc.returncode, self.stderr_text()))
            try:
                r = self.request("GET", "/healthz", auth=False, timeout=2)
                if r.status == 200:
                    return
                last = r
            except OSError as e:
                last = e
            time.sleep(0.05)
        raise RuntimeError("trailhook serve not healthy after %.0fs (last: %r)\n%s"
                           % (timeout, last, self.stderr_text()))

    def stop(self, timeout=STOP_TIMEOUT):
        """SIGTERM, then wait; kill -9 when it does not stop in time. @return the exit status."""
        if self.proc is None or self.proc.poll() is not None:
            self.join_readers()
            return None if self.proc is None else self.proc.returncode
        stopped = terminate(self.proc, timeout)
        self.join_readers()
        if not stopped:
            raise AssertionError("trailhook did not stop within %ss of SIGTERM" % timeout)
        return self.proc.returncode

    def kill9(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.join_readers()

    def join_readers(self):
        for t in self._threads:
            t.join(5)

    @staticmethod
    def _cleanup_proc(proc, stderr_lines, threads):
        """Stops the process if still running; fails the test on a sanitizer report."""
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for t in threads:
            t.join(5)
        text = "\n".join(stderr_lines)
        if any(m in text for m in SANITIZER_MARKERS):
            raise AssertionError("sanitizer report on trailhook serve's stderr:\n" + text[-6000:])

    def wait_exit(self, timeout=10):
        """For a process expected to refuse to start: @return its exit status."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            self.join_readers()
            return None
        self.join_readers()
        return rc

    def outbox(self, *args):
        """`trailhook outbox ARGS...` on this service's state dir: (CompletedProcess, rows)."""
        return outbox_cli(self.state_dir, *args)

    # -- output --

    def stderr_text(self):
        with self._cond:
            return "\n".join(self.stderr_lines)

    def console_lines(self):
        """Every stdout line that is a JSON object (the console destination's alerts)."""
        out = []
        with self._cond:
            lines = list(self.stdout_lines)
        for line in lines:
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if isinstance(doc, dict):
                out.append(doc)
        return out

    def console_alerts(self, alert_id=None):
        docs = [d for d in self.console_lines() if "id" in d and d.get("type", "alert") == "alert"]
        if alert_id is not None:
            docs = [d for d in docs if d.get("id") == alert_id]
        return docs

    def wait_console(self, alert_id, count=1, timeout=10):
        """Waits until @p count console lines carry alert @p alert_id; @return those lines."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.console_alerts(alert_id)
            if len(found) >= count:
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return found
            with self._cond:
                self._cond.wait(min(remaining, 0.2))

    def settle_console(self, timeout=10):
        """Makes every alert queued so far reach stdout: posts a fresh matching event (a sentinel,
        a new alert) and waits for its console line; the console destination sends in order."""
        r = self.post_events(dumps(matching_event()))
        if r.status != 202 or len(r.json.get("alerts", [])) != 1:
            raise AssertionError("sentinel event not accepted: %r" % r)
        sentinel = r.json["alerts"][0]
        if not self.wait_console(sentinel, 1, timeout):
            raise AssertionError("sentinel alert %s never reached the console" % sentinel)
        time.sleep(0.1)
        return sentinel

    # -- HTTP --

    def request(self, method, path, body=None, headers=None, auth=True, timeout=30,
                chunked=False, port=None):
        """One request on a new connection. @p auth True sends the API key in X-Api-Key.
        @p port: another listener of this service (admin_listen); default the main one."""
        hdrs = {}
        if auth is True:
            hdrs["X-Api-Key"] = API_KEY
        hdrs.update(headers or {})
        conn = http.client.HTTPConnection("127.0.0.1", port or self.port, timeout=timeout)
        try:
            if chunked:
                conn.putrequest(method, path)
                for k, v in hdrs.items():
                    conn.putheader(k, v)
                conn.putheader("Transfer-Encoding", "chunked")
                conn.endheaders()
                step = 16384
                try:
                    for i in range(0, len(body), step):
                        piece = body[i:i + step]
                        conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
                    conn.send(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass
            else:
                try:
                    conn.request(method, path, body=body, headers=hdrs)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the server may answer (413, 401) before reading the whole body
            resp = conn.getresponse()
            data = resp.read()
            return Response(resp.status, resp.getheaders(), data)
        finally:
            conn.close()

    def post_events(self, body, content_type="application/json", headers=None, auth=True,
                    gzip_body=False, path="/events", timeout=60, port=None):
        hdrs = {}
        if content_type is not None:
            hdrs["Content-Type"] = content_type
        if gzip_body:
            body = gzip.compress(body)
            hdrs["Content-Encoding"] = "gzip"
        hdrs.update(headers or {})
        return self.request("POST", path, body=body, headers=hdrs, auth=auth, timeout=timeout,
                            port=port)

    def alerts(self, limit=100):
        r = self.request("GET", "/alerts?limit=%d" % limit)
        if r.status != 200:
            raise AssertionError("GET /alerts: %r" % r)
        return r.json["alerts"]

    def alert(self, alert_id):
        for a in self.alerts(1000):
            if a.get("id") == alert_id:
                return a
        return None


class ServiceTestCase(unittest.TestCase):
    """Adds assertions about the service's JSON answers."""

    maxDiff = 4000

    def assertJsonResponse(self, r, status):
        self.assertEqual(r.status, status, "expected HTTP %d, got %r" % (status, r))
        ctype = r.header("Content-Type") or ""
        self.assertTrue(ctype.startswith("application/json"), "Content-Type %r" % ctype)
        body = r.json
        self.assertIsInstance(body, dict)
        self.assertIsInstance(body.get("request_id"), str, "no request_id in %r" % body)
        self.assertNotEqual(body["request_id"], "")
        return body

    def assertAccepted(self, r, accepted, matched):
        body = self.assertJsonResponse(r, 202)
        self.assertEqual(body.get("accepted"), accepted, body)
        self.assertEqual(body.get("matched"), matched, body)
        self.assertIsInstance(body.get("alerts"), list, body)
        return body

