"""Offline eval: `trailhook eval` over CloudTrail log files, plain and gzip, against a Node.js
script doing the same work, and its peak memory on a small and a large file."""

import json
import os
import shutil
import subprocess
import sys
import time

import inputs
from procs import BENCH_DIR, HarnessError, clean_env
from report import Row, mb, ratio

SPEED_GOAL_MBPS = 250.0     # MB = 10^6 bytes of uncompressed JSON
NODE_GOAL = 2.0             # trailhook at least this many times Node's speed
MEMORY_SLACK_KB = 4 * 1024  # "a few MB": the large file may peak this much above the small one
EVAL_OK = (0, 1)            # eval exits 1 when something matched, which these files hold


def pin_prefix():
    """Both programs run on the same single core, so neither gets a second one for its
    allocator or I/O while the other does not."""
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", "1"]
    return []


class EvalBench:
    def __init__(self, ctx):
        self.ctx = ctx
        self.pin = pin_prefix()
        self.state_dir = os.path.join(ctx.workdir, "eval-state")  # empty: no new accounts
        self.files = {}  # label -> (path, uncompressed bytes, records)
        self.floor_kb = None

    # ---- inputs -------------------------------------------------------------------------

    def build_files(self, records, large_mb, small_mb):
        """The large file (plain and gzip) for speed, the small one for memory and the check
        that trailhook and the Node peer give the same verdicts."""
        for label, size_mb in (("large", large_mb), ("small", small_mb)):
            path = os.path.join(self.ctx.workdir, "cloudtrail-%s.json" % label)
            size, count = inputs.write_records_file(path, records, int(size_mb * 1e6))
            self.files[label] = (path, size, count)
        path, size, count = self.files["large"]
        inputs.gzip_file(path, path + ".gz")
        self.files["large.gz"] = (path + ".gz", size, count)

    # ---- running ------------------------------------------------------------------------

    def run(self, argv, stdout_path=None):
        """Runs argv once (pinned); returns its wall time in seconds."""
        out = open(stdout_path, "wb") if stdout_path else subprocess.DEVNULL
        try:
            start = time.monotonic()
            proc = subprocess.run(self.pin + argv, stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=subprocess.PIPE, env=self.env())
            wall = time.monotonic() - start
        finally:
            if stdout_path:
                out.close()
        self.check_status(argv, proc.returncode, proc.stderr)
        return wall

    def peak_rss_kb(self, argv):
        """Peak RSS of one run of argv in a fresh process, through peak_rss.py."""
        report = os.path.join(self.ctx.workdir, "peak_rss.txt")
        launcher = [sys.executable, "-I", "-S", os.path.join(BENCH_DIR, "peak_rss.py"), report]
        proc = subprocess.run(launcher + self.pin + argv, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=self.env())
        with open(report) as f:
            maxrss, polled, status = (int(x) for x in f.read().split())
        self.check_status(argv, status, proc.stderr)
        if self.floor_kb is None:
            return maxrss
        return maxrss if maxrss > self.floor_kb else polled

    def measure_floor(self):
        """The launcher's own size, below which ru_maxrss says nothing about the command."""
        self.floor_kb = None
        self.floor_kb = self.peak_rss_kb(["true"])

    def env(self):
        return clean_env({"TRAILHOOK_STATE_DIR": self.state_dir})

    @staticmethod
    def check_status(argv, status, stderr):
        if status not in EVAL_OK:
            raise HarnessError("%s exited with status %d: %s" % (
                " ".join(argv), status, stderr[-2000:].decode("utf-8", "replace").strip()))

    def trailhook_argv(self, path):
        return [self.ctx.trailhook, "eval", path]

    @staticmethod
    def node_argv(path):
        return ["node", os.path.join(BENCH_DIR, "eval_peer.js"), path]

    # ---- speed --------------------------------------------------------------------------

    def speed(self, tries):
        for label, name in (("large", ".json"), ("large.gz", ".json.gz")):
            path, size, count = self.files[label]
            th, node = [], []
            for _ in range(tries):  # alternated, best of each
                th.append(self.run(self.trailhook_argv(path)))
                node.append(self.run(self.node_argv(path)))
            th_mbps = size / 1e6 / min(th)
            node_mbps = size / 1e6 / min(node)
            row = self.ctx.report.add(Row(
                "eval MB/s, %s %s" % (mb(size), name), "%.0f MB/s" % th_mbps,
                "node %.0f MB/s" % node_mbps, ratio(th_mbps, node_mbps),
                ">= %.0f MB/s and >= %.0f x node" % (SPEED_GOAL_MBPS, NODE_GOAL),
                th_mbps >= SPEED_GOAL_MBPS and th_mbps >= NODE_GOAL * node_mbps))
            row.details.append("%d records; wall s trailhook %s, node %s" % (
                count, " ".join("%.2f" % w for w in th), " ".join("%.2f" % w for w in node)))

    # ---- memory -------------------------------------------------------------------------

    def memory(self):
        """Peak RSS of eval on the small and the large plain file, each in a fresh process:
        reading a log file as a stream keeps it flat, holding it whole makes it grow."""
        small_path, small_size, _ = self.files["small"]
        large_path, large_size, _ = self.files["large"]
        self.measure_floor()
        small_kb = self.peak_rss_kb(self.trailhook_argv(small_path))
        large_kb = self.peak_rss_kb(self.trailhook_argv(large_path))
        node_kb = self.peak_rss_kb(self.node_argv(large_path))
        self.ctx.report.add(Row(
            "eval peak RSS, %s file" % mb(large_size), "%.1f MB" % (large_kb / 1024),
            "%s file %.1f MB" % (mb(small_size), small_kb / 1024), ratio(large_kb, small_kb),
            "<= small + %d MB" % (MEMORY_SLACK_KB // 1024),
            large_kb <= small_kb + MEMORY_SLACK_KB,
            details=["Node peer on the %s file %.1f MB; measuring floor %.1f MB (below it, "
                     "polled VmHWM)" % (mb(large_size), node_kb / 1024, self.floor_kb / 1024)]))

    # ---- correctness --------------------------------------------------------------------

    def agreement(self):
        """trailhook and the Node peer must give the same verdict for every record, or the
        speed comparison compares different work."""
        path, _, count = self.files["small"]
        outputs = {}
        for name, argv in (("trailhook", self.trailhook_argv(path)),
                           ("node", self.node_argv(path))):
            out_path = os.path.join(self.ctx.workdir, "eval-%s.out" % name)
            self.run(argv, stdout_path=out_path)
            outputs[name] = read_verdicts(out_path)
        th, node = outputs["trailhook"], outputs["node"]
        matches = sum(1 for _, m, _ in th if m)
        self.ctx.report.add(Row(
            "eval verdicts vs Node peer", "%d lines, %d matches" % (len(th), matches),
            "node %d lines, %d matches" % (len(node), sum(1 for _, m, _ in node if m)),
            goal="same, %d records" % count, ok=th == node and len(th) == count and matches > 0,
            check=True))


def read_verdicts(path):
    """(index, match, dedup) of every line of eval output."""
    verdicts = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            doc = json.loads(line)
            verdicts.append((doc["index"], doc["match"], doc.get("dedup")))
    return verdicts
