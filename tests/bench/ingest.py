"""Ingest: trailhook's POST /events throughput against nginx answering 204 to the same requests,
latency at half of nginx's rate, and trailhook's memory while it takes that load."""

import statistics
import time

import procs
from loadgen import CONNECTIONS, run_wrk
from procs import HarnessError, RssSampler, metric_sum, read_metrics
from report import Row, ratio

THROUGHPUT_GOAL = 0.75        # trailhook req/s >= this x nginx req/s
LATENCY_GOAL_MS = 2.0         # p99 at half of nginx's rate
RSS_GOAL_KB = 32 * 1024       # peak resident memory under ingest load
PACING_SHORTFALL = 0.9        # achieved below this share of the offered rate: more connections
CONNECTION_PERIOD_S = 0.004   # paced: each connection sends at most every 4 ms (see paced())
MAX_CONNECTIONS = 512
DRAIN_TIMEOUT = 30.0          # for the outbox to deliver the alerts the load created
SMOKE_DRAIN_TIMEOUT = 10.0


class Target:
    """A server under load and what was measured on it: `runs` are the unpaced wrk runs."""

    def __init__(self, name, proc, port):
        self.name = name
        self.proc = proc
        self.port = port
        self.runs = []
        self.rss_peak_kb = 0

    def median_rps(self):
        return statistics.median(r.rps for r in self.runs)


class IngestBench:
    def __init__(self, ctx):
        self.ctx = ctx
        self.targets = {}
        self.alerts_opened = 0

    # ---- services -----------------------------------------------------------------------

    def start(self):
        ctx = self.ctx
        nginx, nginx_port = procs.start_nginx(ctx.workdir)
        self.targets["nginx"] = Target("nginx", ctx.own(nginx), nginx_port)
        th, th_port = procs.start_trailhook(ctx.trailhook, ctx.workdir, "trailhook-ingest",
                                            ctx.slack.url())
        self.targets["trailhook"] = Target("trailhook", ctx.own(th), th_port)
        node, node_port = procs.start_node_peer(ctx.workdir)
        self.targets["node"] = Target("node", ctx.own(node), node_port)

    def probe_keep_alive(self):
        """Notes a server that closes the connection after each answer (after the counter
        checks, whose arithmetic this extra request would disturb)."""
        for t in self.targets.values():
            self.ctx.keep_alive_note(t.name, t.port)

    def load(self, target, duration, rate=None, connections=CONNECTIONS):
        with RssSampler(target.proc.pid) as sampler:
            result = run_wrk(target.port, self.ctx.mix_path, self.ctx.run_tag(), duration,
                             connections=connections, rate=rate)
        target.proc.check_alive()
        target.rss_peak_kb = max(target.rss_peak_kb, sampler.peak_kb)
        return result

    # ---- throughput ---------------------------------------------------------------------

    def throughput(self, rounds, duration):
        """Alternates nginx, trailhook and the Node peer each round, so drift in a shared
        machine's speed hits all of them alike; medians over the rounds are compared."""
        order = [self.targets[n] for n in ("nginx", "trailhook", "node")]
        for _ in range(rounds):
            for target in order:
                target.runs.append(self.load(target, duration))
        self.report_throughput()
        self.check_answers()
        self.check_evaluated()
        self.check_delivered()

    def report_throughput(self):
        nginx, th, node = (self.targets[n] for n in ("nginx", "trailhook", "node"))
        base = nginx.median_rps()
        row = self.ctx.report.add(Row(
            "ingest req/s (median)", "%.0f" % th.median_rps(), "nginx %.0f" % base,
            ratio(th.median_rps(), base), ">= %.2f x nginx" % THROUGHPUT_GOAL,
            th.median_rps() >= THROUGHPUT_GOAL * base))
        for t in (nginx, th, node):
            row.details.append("%s rounds %s" % (t.name, " ".join("%.0f" % r.rps for r in t.runs)))
        self.ctx.report.add(Row("ingest req/s, Node.js peer", "%.0f" % node.median_rps(),
                                "nginx %.0f" % base, ratio(node.median_rps(), base)))

    def check_answers(self):
        runs = self.targets["trailhook"].runs
        non_2xx = sum(r.non_2xx for r in runs)
        errors = sum(r.errors for r in runs)
        base = self.targets["nginx"].runs
        self.ctx.report.add(Row(
            "ingest answers not 2xx / socket errors", "%d / %d" % (non_2xx, errors),
            "nginx %d / %d" % (sum(r.non_2xx for r in base), sum(r.errors for r in base)),
            goal="0 / 0", ok=non_2xx == 0 and errors == 0, check=True))

    def check_evaluated(self):
        """trailhook's own counters must account for every answered request: one evaluation per
        event, and one new alert per make-public request. Requests still in flight when wrk
        stopped may be evaluated without wrk counting their answer, hence the slack."""
        target = self.targets["trailhook"]
        metrics = read_metrics(target.port)
        answered = sum(r.requests for r in target.runs)
        templates = sum(r.sent_templates for r in target.runs)
        in_flight = sum(r.connections for r in target.runs)
        evaluated = metric_sum(metrics, "trailhook_rule_evaluations_total")
        matched = metric_sum(metrics, "trailhook_rule_evaluations_total", 'result="match"')
        alerts = metric_sum(metrics, "trailhook_alerts_total")
        ok = (answered <= evaluated <= answered + in_flight
              and templates - in_flight <= alerts <= templates and matched == alerts)
        self.alerts_opened = int(alerts)
        row = self.ctx.report.add(Row(
            "events evaluated / alerts opened", "%d / %d" % (evaluated, alerts),
            "wrk answers %d / alert requests sent %d" % (answered, templates),
            goal="equal (+ in flight)", ok=ok, check=True))
        row.details.append("matches %d, rule errors %d, received %d" % (
            matched, metric_sum(metrics, "trailhook_rule_evaluations_total", 'result="error"'),
            metric_sum(metrics, "trailhook_events_received_total")))

    def check_delivered(self):
        """Every alert the load opened reaches the Slack receiver once the outbox drains."""
        timeout = SMOKE_DRAIN_TIMEOUT if self.ctx.smoke else DRAIN_TIMEOUT
        started = time.monotonic()
        delivered, pending = self.wait_for_outbox(started + timeout)
        drained = delivered >= self.alerts_opened and pending == 0
        self.ctx.report.add(Row(
            "Slack deliveries of those alerts", "%d (pending %d)" % (delivered, pending),
            "receiver got %d" % self.ctx.slack.count(), goal="all, within %.0f s" % timeout,
            ok=drained, check=True,
            details=["waited %.1f s after the last run" % (time.monotonic() - started)]))

    def wait_for_outbox(self, deadline):
        """(alerts delivered, notifications pending) once all are delivered or at deadline."""
        port = self.targets["trailhook"].port
        while True:
            metrics = read_metrics(port)
            delivered = metric_sum(metrics, "trailhook_notifications_total", 'type="alert"')
            pending = metric_sum(metrics, "trailhook_outbox_pending")
            if (delivered >= self.alerts_opened and pending == 0) or time.monotonic() > deadline:
                return delivered, pending
            time.sleep(0.2)

    # ---- latency at half load -----------------------------------------------------------

    def nginx_rate(self, duration):
        nginx = self.targets["nginx"]
        if not nginx.runs:  # latency alone: one calibration run
            nginx.runs.append(self.load(nginx, min(duration, 5)))
        return nginx.median_rps()

    def paced(self, target, rate, duration):
        """A run offering `rate`. Each connection waits for its answer before taking the next
        slot of the schedule, and wrk's timers tick in whole milliseconds, so a connection
        busy more than about 1 ms per slot falls behind and sends in bursts: enough
        connections that each sends every 4 ms or more keeps the arrivals even. When wrk still
        falls short (a saturated server), once more with twice as many."""
        connections = CONNECTIONS
        while connections < rate * CONNECTION_PERIOD_S and connections < MAX_CONNECTIONS:
            connections *= 2
        result = self.load(target, duration, rate=rate, connections=connections)
        if result.rps < PACING_SHORTFALL * rate and result.connections * 2 <= MAX_CONNECTIONS:
            retry = self.load(target, duration, rate=rate, connections=result.connections * 2)
            if retry.rps > result.rps:
                result = retry
        return result

    def latency(self, duration):
        rate = self.nginx_rate(duration) / 2
        base = self.paced(self.targets["nginx"], rate, duration)
        th = self.paced(self.targets["trailhook"], rate, duration)
        p99 = th.latency_ms.get("99", float("inf"))
        row = self.ctx.report.add(Row(
            "p99 latency at 1/2 nginx rate", "%.2f ms" % p99 + overload_mark(th, rate),
            "nginx %.2f ms" % base.latency_ms.get("99", 0),
            ratio(p99, base.latency_ms.get("99")),
            "<= %.1f ms" % LATENCY_GOAL_MS, p99 <= LATENCY_GOAL_MS and th.non_2xx == 0))
        row.details.extend(describe_paced(name, r, rate) for name, r in
                           (("nginx", base), ("trailhook", th)))
        if self.targets["trailhook"].runs:
            self.latency_at_own_half(duration)

    def latency_at_own_half(self, duration):
        """For information: the same at half of trailhook's own median rate."""
        rate = self.targets["trailhook"].median_rps() / 2
        res = self.paced(self.targets["trailhook"], rate, duration)
        self.ctx.report.add(Row("p99 latency at 1/2 trailhook rate",
                                "%.2f ms" % res.latency_ms.get("99", float("inf"))
                                + overload_mark(res, rate),
                                details=[describe_paced("trailhook", res, rate)]))

    # ---- memory -------------------------------------------------------------------------

    def rss(self):
        th = self.targets["trailhook"]
        hwm = procs.proc_status_kb(th.proc.pid, "VmHWM")
        if hwm is None:
            raise HarnessError("trailhook is gone before its VmHWM was read")
        nginx = self.targets["nginx"].rss_peak_kb
        self.ctx.report.add(Row(
            "trailhook RSS under ingest (VmHWM)", "%.1f MB" % (hwm / 1024),
            "nginx %.1f MB" % (nginx / 1024), ratio(hwm, nginx),
            "<= %d MB" % (RSS_GOAL_KB // 1024), hwm <= RSS_GOAL_KB,
            details=["sampled VmRSS max: trailhook %.1f MB, nginx (master + workers) %.1f MB, "
                     "Node peer %.1f MB" % (th.rss_peak_kb / 1024, nginx / 1024,
                                            self.targets["node"].rss_peak_kb / 1024)]))

    def stop(self):
        for t in self.targets.values():
            status = t.proc.stop()
            if status not in (0, None):
                raise HarnessError("%s exited with status %s; log: %s"
                                   % (t.name, status, t.proc.log_tail()))


def overload_mark(result, offered):
    """A paced run that fell well short of its rate measured a saturated server: say so."""
    if result.rps >= PACING_SHORTFALL * offered:
        return ""
    return " (saturated: %.0f%% of offered)" % (100.0 * result.rps / offered)


def describe_paced(name, r, offered):
    lat = r.latency_ms
    late = 100.0 * r.late_slots / r.requests if r.requests else 0.0
    return ("%s offered %.0f/s, achieved %.0f/s with %d connections, %.1f%% of sends more "
            "than 1 ms behind schedule, p50 %.2f p90 %.2f p99 %.2f ms, non-2xx %d"
            % (name, offered, r.rps, r.connections, late, lat.get("50", 0), lat.get("90", 0),
               lat.get("99", 0), r.non_2xx))
