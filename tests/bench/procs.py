"""The processes a benchmark talks to: trailhook, the nginx and Node.js baselines, and a loopback
Slack receiver. Each runs from a temporary directory and is stopped by its own pid."""

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
START_TIMEOUT = 15.0


class HarnessError(Exception):
    """The benchmark itself is broken (a service does not start, answers wrongly, crashes)."""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port, path, timeout=5.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def clean_env(extra):
    """The caller's environment without TRAILHOOK_* (trailhook refuses unknown ones), plus extra."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAILHOOK_")}
    env.update(extra)
    return env


class Process:
    """A child process, its output in <name>.log under the work directory."""

    def __init__(self, name, argv, workdir, env=None):
        self.name = name
        self.argv = argv
        self.log_path = os.path.join(workdir, name + ".log")
        self.env = env
        self.proc = None

    def start(self):
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, env=self.env)
        log.close()
        return self

    @property
    def pid(self):
        return self.proc.pid

    def wait_http(self, port, path, statuses):
        """Polls until GET path answers one of statuses; a child that exits is a harness error."""
        deadline = time.monotonic() + START_TIMEOUT
        last = None
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                status, _ = http_get(port, path, timeout=1.0)
                if status in statuses:
                    return
                last = "HTTP %d" % status
            except OSError as e:
                last = str(e)
            time.sleep(0.05)
        raise HarnessError("%s did not answer %s within %.0f s (%s); log: %s"
                           % (self.name, path, START_TIMEOUT, last, self.log_tail()))

    def check_alive(self):
        if self.proc.poll() is not None:
            raise HarnessError("%s exited with status %d; log: %s"
                               % (self.name, self.proc.returncode, self.log_tail()))

    def stop(self, timeout=20.0):
        """SIGTERM, then SIGKILL after timeout. Returns the exit status."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def log_tail(self, limit=2000):
        try:
            with open(self.log_path, "rb") as f:
                data = f.read()
        except OSError:
            return "(no log)"
        return data[-limit:].decode("utf-8", "replace").strip() or "(empty)"


# ---- trailhook ------------------------------------------------------------------------------

def trailhook_config(path, slack_url):
    """A config file with one Slack destination. The quick path (TRAILHOOK_SLACK_WEBHOOK_URL)
    keeps Slack's default of 60 sends a minute, which would measure the rate limit rather than
    the delivery path, so the destination is declared here without a limit."""
    with open(path, "w") as f:
        f.write("destinations:\n"
                "  - name: slack\n"
                "    type: slack\n"
                "    url: %s\n"
                "    rate_per_minute: 0\n" % json.dumps(slack_url))
    return path


def start_trailhook(binary, workdir, name, slack_url):
    """trailhook serve on a free loopback port (no credentials: loopback allows it), state in a
    fresh directory, alerts to the Slack receiver. Returns (process, port)."""
    port = free_port()
    state_dir = os.path.join(workdir, name + "-state")
    os.makedirs(state_dir)
    config = trailhook_config(os.path.join(workdir, name + ".yml"), slack_url)
    env = clean_env({"TRAILHOOK_LISTEN": "127.0.0.1:%d" % port,
                     "TRAILHOOK_STATE_DIR": state_dir,
                     "TRAILHOOK_LOG_LEVEL": "warn"})
    proc = Process(name, [binary, "serve", "--config", config], workdir, env).start()
    proc.wait_http(port, "/readyz", (200,))
    return proc, port


METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")


def read_metrics(port):
    """/metrics as {(name, labels text): value}."""
    status, body = http_get(port, "/metrics")
    if status != 200:
        raise HarnessError("GET /metrics answered %d" % status)
    values = {}
    for line in body.decode().splitlines():
        m = METRIC_LINE.match(line)
        if m:
            values[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return values


def metric_sum(metrics, name, label_filter=""):
    """Sum of a metric over its series whose labels contain label_filter."""
    return sum(v for (n, labels), v in metrics.items() if n == name and label_filter in labels)


# ---- baselines ------------------------------------------------------------------------------

NGINX_CONF = """\
{user}daemon off;
worker_processes auto;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    # Bodies stay in memory, as trailhook keeps them; 204 after reading (and discarding) them.
    client_body_buffer_size 1m;
    client_max_body_size 10m;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 204; }}
    }}
}}
"""


def start_nginx(workdir):
    """nginx answering 204 to everything. As root it would switch to nobody, who cannot write
    the temporary directory, so it stays root there."""
    port = free_port()
    ngx_dir = os.path.join(workdir, "nginx")
    os.makedirs(ngx_dir)
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = os.path.join(ngx_dir, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(user=user, dir=ngx_dir, port=port))
    proc = Process("nginx", ["nginx", "-p", ngx_dir, "-c", conf, "-e",
                             os.path.join(ngx_dir, "nginx-error.log")], workdir).start()
    proc.wait_http(port, "/", (204,))
    return proc, port


def start_node_peer(workdir):
    port = free_port()
    script = os.path.join(BENCH_DIR, "ingest_peer.js")
    proc = Process("node-peer", ["node", script, str(port)], workdir).start()
    proc.wait_http(port, "/healthz", (200,))
    return proc, port


# ---- Slack receiver -------------------------------------------------------------------------

class SlackReceiver:
    """Drives slack_receiver.py: a loopback Slack webhook in its own process that answers 200
    "ok" and keeps each message's arrival time (CLOCK_MONOTONIC, comparable with this
    process's time.monotonic()) and the AMI IDs it names."""

    def __init__(self, workdir):
        self.port_file = os.path.join(workdir, "slack-receiver.port")
        script = os.path.join(BENCH_DIR, "slack_receiver.py")
        self.proc = Process("slack-receiver", [sys.executable, script, self.port_file], workdir)
        self.port = None

    def start(self):
        self.proc.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not os.path.exists(self.port_file):
            self.proc.check_alive()
            if time.monotonic() > deadline:
                raise HarnessError("the Slack receiver did not start: " + self.proc.log_tail())
            time.sleep(0.02)
        with open(self.port_file) as f:
            self.port = int(f.read())
        return self

    def url(self):
        return "http://127.0.0.1:%d/services/T000BENCH/B000BENCH/bench" % self.port

    def stop(self):
        self.proc.stop()

    def snapshot(self):
        """[(arrived, [AMI IDs])] of every message so far."""
        self.proc.check_alive()
        status, body = http_get(self.port, "/messages")
        if status != 200:
            raise HarnessError("the Slack receiver answered %d" % status)
        return [(arrived, ids) for arrived, ids in json.loads(body)["messages"]]

    def count(self):
        return len(self.snapshot())


# ---- memory of a running process ------------------------------------------------------------

def proc_status_kb(pid, field):
    """VmRSS / VmHWM of a process in KiB, or None once it is gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class RssSampler:
    """Samples the VmRSS of a process and its children every interval on a thread, keeping the
    largest. The children count for nginx, whose workers do the work."""

    def __init__(self, pid, interval=0.05):
        self.pid = pid
        self.interval = interval
        self.peak_kb = 0
        self.samples = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stopping.is_set():
            rss = tree_rss_kb(self.pid)
            if rss:
                self.peak_kb = max(self.peak_kb, rss)
                self.samples += 1
            self.stopping.wait(self.interval)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.thread.join()


def child_pids(pid):
    """Direct children of a process, from /proc/<pid>/task/*/children."""
    kids = []
    try:
        tasks = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return kids
    for task in tasks:
        try:
            with open("/proc/%d/task/%s/children" % (pid, task)) as f:
                kids.extend(int(x) for x in f.read().split())
        except OSError:
            pass
    return kids


def tree_rss_kb(pid):
    """VmRSS of a process and its children (nginx's master and workers), in KiB."""
    total = 0
    for p in [pid] + child_pids(pid):
        total += proc_status_kb(p, "VmRSS") or 0
    return total
