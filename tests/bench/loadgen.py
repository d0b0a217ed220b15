"""wrk runs with ingest.lua, and what their output says."""

import os
import re
import subprocess
from dataclasses import dataclass, field

from procs import HarnessError

LUA_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ingest.lua")
THREADS = 1
CONNECTIONS = 32

UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


@dataclass
class WrkResult:
    rps: float
    requests: int
    non_2xx: int
    socket_errors: dict
    latency_ms: dict = field(default_factory=dict)  # "50" -> ms, from --latency
    sent_templates: int = 0
    late_slots: int = 0
    connections: int = CONNECTIONS
    output: str = ""

    @property
    def errors(self):
        return sum(self.socket_errors.values())


def run_wrk(port, mix_path, run_tag, duration, connections=CONNECTIONS, rate=None):
    """One wrk run against POST /events on loopback; rate (req/s) paces it, None runs flat out."""
    argv = ["wrk", "-t%d" % THREADS, "-c%d" % connections, "-d%ds" % duration, "--latency",
            "--timeout", "5s", "-s", LUA_SCRIPT, "http://127.0.0.1:%d/events" % port,
            "--", mix_path, run_tag]
    if rate is not None:
        argv.append("%.3f" % (rate / THREADS))
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=duration + 60)
    if proc.returncode != 0:
        raise HarnessError("wrk failed (%d): %s" % (proc.returncode, proc.stdout[-2000:]))
    result = parse_wrk(proc.stdout)
    result.connections = connections
    return result


def parse_wrk(text):
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    total = re.search(r"^\s*(\d+) requests in ", text, re.M)
    bench = re.search(r"^bench: sent_templates=(\d+) late_slots=(\d+)", text, re.M)
    if not (rps and total and bench):
        raise HarnessError("unexpected wrk output:\n" + text)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    errors = dict(zip(("connect", "read", "write", "timeout"),
                      (int(x) for x in sock.groups()))) if sock else {}
    return WrkResult(rps=float(rps.group(1)), requests=int(total.group(1)),
                     non_2xx=int(non_2xx.group(1)) if non_2xx else 0, socket_errors=errors,
                     latency_ms=parse_latency(text), sent_templates=int(bench.group(1)),
                     late_slots=int(bench.group(2)), output=text)


def parse_latency(text):
    """The "Latency Distribution" block: 50%, 75%, 90%, 99% in milliseconds."""
    found = {}
    for pct, value, unit in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M):
        found[pct] = float(value) * UNIT_MS[unit]
    return found
