#!/usr/bin/env python3
"""trailhook's benchmarks: ingest throughput and latency against nginx, offline eval against
Node.js, eval memory, alert latency to Slack, memory under load. See tests/bench/README.md.

  python3 tests/bench/bench.py [--trailhook PATH] [--duration S] [--rounds N]
                               [--only ingest,latency,eval,alert,rss] [--smoke] [--json FILE]
                               [--check]

Exit status: 0 (whatever the figures), 1 with --check when a goal fails, 2 when the harness
itself fails (a service does not start or crashes, answers are not 2xx, output is missing;
with --smoke, also any failed correctness check)."""

import argparse
import datetime
import http.client
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile

import inputs
import loadgen
from alerts import AlertBench
from evaluation import EvalBench
from ingest import IngestBench
from procs import HarnessError, SlackReceiver
from report import Report

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(os.path.dirname(BENCH_DIR))
PHASES = ("ingest", "latency", "eval", "alert", "rss")
TOOLS = ("wrk", "nginx", "node")

MIX_REQUESTS = 2000
# Share of requests that make an image public, each a new alert stored and posted to Slack: at
# 0.1 % and 50 000 requests/s that is 50 alerts a second, far above any real account's rate
# (Slack itself takes one message a second per webhook). --match-share 0.01 is the stress case.
MIX_MATCH_SHARE = 0.001

FULL = {"eval_large_mb": 64, "eval_small_mb": 16, "eval_tries": 3, "alerts": 200}
SMOKE = {"eval_large_mb": 1, "eval_small_mb": 0.25, "eval_tries": 1, "alerts": 20}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trailhook", default=os.path.join(REPO_DIR, "build", "trailhook"),
                   help="the binary to measure (default: build/trailhook)")
    p.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    p.add_argument("--rounds", type=int, default=3, help="ingest rounds (default 3)")
    p.add_argument("--only", default=",".join(PHASES),
                   help="comma-separated subset of " + ",".join(PHASES))
    p.add_argument("--smoke", action="store_true",
                   help="1 s runs, 1 round, 1 MB files: proves the harness works (for CI)")
    p.add_argument("--match-share", type=float, default=MIX_MATCH_SHARE,
                   help="share of ingest requests making an image public (default %g)"
                   % MIX_MATCH_SHARE)
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--check", action="store_true", help="exit 1 when a goal fails")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, inputs)")
    args = p.parse_args(argv)
    args.phases = {x.strip() for x in args.only.split(",") if x.strip()}
    unknown = args.phases - set(PHASES)
    if unknown:
        p.error("unknown --only item(s): " + ",".join(sorted(unknown)))
    if args.smoke:
        args.duration, args.rounds = 1, 1
    args.sizes = SMOKE if args.smoke else FULL
    return args


class Context:
    """What every measurement shares: settings, the work directory, the report, the Slack
    receiver and the processes to stop at the end."""

    def __init__(self, args):
        self.args = args
        self.smoke = args.smoke
        self.trailhook = os.path.abspath(args.trailhook)
        self.workdir = tempfile.mkdtemp(prefix="trailhook-bench-")
        self.report = Report()
        self.slack = None
        self.mix_path = os.path.join(self.workdir, "mix.ndjson")
        self.processes = []
        self.runs = 0

    def own(self, proc):
        self.processes.append(proc)
        return proc

    def run_tag(self):
        """4 hex digits, unique per wrk run, so alert IDs never repeat within a service."""
        self.runs += 1
        return "%04x" % self.runs

    def keep_alive_note(self, name, port):
        if not keeps_connection(port, self.first_plain_body()):
            self.report.note("%s answered POST /events with Connection: close; wrk reconnects "
                             "for every request" % name)

    def first_plain_body(self):
        with open(self.mix_path, encoding="utf-8") as f:
            for line in f:
                if inputs.SEQ_PLACEHOLDER not in line:
                    return line.strip()
        raise HarnessError("the request mix holds only templates")

    def cleanup(self):
        for proc in reversed(self.processes):
            proc.stop()
        if self.slack:
            self.slack.stop()
        if self.args.keep:
            print("work directory kept: " + self.workdir, file=sys.stderr)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)


def keeps_connection(port, body):
    """Whether a POST /events answer leaves the connection open, as wrk's numbers assume."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("POST", "/events", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        return not resp.will_close
    finally:
        conn.close()


# ---- header ---------------------------------------------------------------------------------

def first_line(argv):
    try:
        out = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             timeout=10).stdout
    except OSError as e:
        return "unavailable (%s)" % e
    return (out.strip().splitlines() or ["?"])[0]


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def write_header(ctx, corpus, n_records):
    args = ctx.args
    h = ctx.report.header
    h.append(("date", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")))
    h.append(("machine", "%d CPUs, %s, Linux %s, load %.2f at start" % (
        os.cpu_count() or 0, cpu_model(), platform.release(), os.getloadavg()[0])))
    h.append(("trailhook", "%s (%s)" % (first_line([ctx.trailhook, "--version"]), ctx.trailhook)))
    h.append(("peers", "%s; node %s; %s" % (first_line(["nginx", "-v"]),
                                             first_line(["node", "-v"]),
                                             " ".join(first_line(["wrk", "-v"]).split()[:2]))))
    h.append(("corpus", "%s (%d distinct records)"
              % (os.path.relpath(corpus, REPO_DIR), n_records)))
    h.append(("settings", "%s; wrk -t%d -c%d -d%ds, %d round(s)" % (
        "SMOKE: timings meaningless, goals not judged" if ctx.smoke else "full",
        loadgen.THREADS, loadgen.CONNECTIONS, args.duration, args.rounds)))


# ---- the measurements -----------------------------------------------------------------------

def run_ingest(ctx, records):
    bodies, n_alerts = inputs.build_mix(records, MIX_REQUESTS, ctx.args.match_share)
    inputs.write_mix(ctx.mix_path, bodies)
    sizes = inputs.body_sizes(bodies)
    ctx.report.header.append(("mix", "%d EventBridge envelopes, %d make-public (new alert each "
                                     "time), body median %d B, mean %d B, max %d B" % (
                                         len(bodies), n_alerts, sizes["median"], sizes["mean"],
                                         sizes["max"])))
    bench = IngestBench(ctx)
    bench.start()
    phases = ctx.args.phases
    if phases & {"ingest", "rss"}:
        bench.throughput(ctx.args.rounds, ctx.args.duration)
        bench.rss()
    bench.probe_keep_alive()
    if "latency" in phases:
        bench.latency(ctx.args.duration)
    bench.stop()


def run_alerts(ctx, records):
    public = [r for r in records if inputs.makes_image_public(r)]
    AlertBench(ctx, public[0]).run(ctx.args.sizes["alerts"], random.Random(2))


def run_eval(ctx, records):
    sizes = ctx.args.sizes
    bench = EvalBench(ctx)
    bench.build_files(records, sizes["eval_large_mb"], sizes["eval_small_mb"])
    bench.agreement()
    bench.speed(sizes["eval_tries"])
    bench.memory()


def check_tools(ctx):
    if not os.access(ctx.trailhook, os.X_OK):
        raise HarnessError("no trailhook binary at %s (make build, or --trailhook)"
                           % ctx.trailhook)
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        raise HarnessError("missing %s (.ci/deps bench installs them)" % ", ".join(missing))


def run(ctx):
    check_tools(ctx)
    corpus = inputs.find_corpus(REPO_DIR)
    records = inputs.load_records(corpus)
    write_header(ctx, corpus, len(records))
    ctx.slack = SlackReceiver(ctx.workdir).start()  # ingest runs create alerts too
    phases = ctx.args.phases
    if phases & {"ingest", "rss", "latency"}:
        run_ingest(ctx, records)
    if "alert" in phases:
        run_alerts(ctx, records)
    if "eval" in phases:
        run_eval(ctx, records)


def finish(ctx, error):
    """Prints the report; returns the exit status."""
    report = ctx.report
    print(report.render(judged=not ctx.smoke))
    failed_goals, failed_checks = report.failed_goals(), report.failed_checks()
    judged = [r for r in report.rows if r.ok is not None]
    print("\n%d of %d goals and checks passed%s" % (
        len(judged) - len(failed_goals) - len(failed_checks), len(judged),
        " (smoke: only checks count)" if ctx.smoke else ""))
    if ctx.args.json:
        doc = dict(report.as_dict(), harness_error=error)
        with open(ctx.args.json, "w") as f:
            json.dump(doc, f, indent=1)
    if error:
        print("harness error: " + error, file=sys.stderr)
        return 2
    if ctx.smoke:
        return 2 if failed_checks else 0
    if ctx.args.check and (failed_goals or failed_checks):
        return 1
    return 0


def main(argv):
    ctx = Context(parse_args(argv))
    error = None
    try:
        run(ctx)
    except HarnessError as e:
        error = str(e)
    finally:
        ctx.cleanup()
    return finish(ctx, error)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
