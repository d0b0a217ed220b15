"""Alert latency: from trailhook's 2xx for a make-public event to the Slack message arriving at
a loopback receiver."""

import http.client
import json
import time

import inputs
import procs
from procs import HarnessError
from report import Row, ratio

GOAL_P99_MS = 10.0
SPACING_S = 0.020       # one event every 20 ms: each alert is delivered on its own
WAIT_FOR_DELIVERY = 15.0


def percentile(values, pct):
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))  # ceil
    return ordered[int(rank) - 1]


class AlertBench:
    def __init__(self, ctx, public_record):
        self.ctx = ctx
        self.template = inputs.alert_template(public_record)

    def event(self, seq, rng):
        """(imageId, body): a make-public envelope with its own eventID and imageId, so each
        opens a new alert. The "f" keeps these IDs apart from the ingest runs' (hex run tags
        that start at 0001)."""
        fill = "f%011d" % seq
        body = inputs.compact(inputs.envelope(self.template, rng))
        return "ami-00000" + fill, body.replace(inputs.SEQ_PLACEHOLDER, fill)

    def run(self, count, rng):
        ctx = self.ctx
        proc, port = procs.start_trailhook(ctx.trailhook, ctx.workdir, "trailhook-alerts",
                                           ctx.slack.url())
        ctx.own(proc)
        try:
            acked = self.send(port, count, rng)
            arrivals = self.wait_for(acked)
            floor = self.receiver_floor(count)
        finally:
            status = proc.stop()
        if status != 0:
            raise HarnessError("trailhook exited with status %s; log: %s"
                               % (status, proc.log_tail()))
        self.report(acked, arrivals, floor)

    def send(self, port, count, rng):
        """POSTs the events one at a time on one connection, on a 20 ms schedule. Returns
        {imageId: monotonic time the 2xx was read}."""
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        acked = {}
        next_due = time.monotonic()
        for seq in range(count):
            image, body = self.event(seq, rng)
            pause = next_due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            next_due += SPACING_S
            conn.request("POST", "/events", body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            answer = resp.read()
            acked[image] = time.monotonic()
            if resp.status != 202 or json.loads(answer).get("matched") != 1:
                raise HarnessError("POST /events answered %d %r for a make-public event"
                                   % (resp.status, answer[:300]))
        conn.close()
        return acked

    def wait_for(self, acked):
        """{imageId: arrival time} of the Slack messages naming each image."""
        deadline = time.monotonic() + WAIT_FOR_DELIVERY
        arrivals = {}
        while time.monotonic() < deadline:
            arrivals = self.match(acked)
            if len(arrivals) == len(acked):
                break
            time.sleep(0.1)
        return arrivals

    def match(self, acked):
        """The receiver is shared with the ingest runs, whose alerts name other images."""
        arrivals = {}
        for arrived, images in self.ctx.slack.snapshot():
            for image in images:
                if image in acked and image not in arrivals:
                    arrivals[image] = arrived
        return arrivals

    def receiver_floor(self, count):
        """The baseline: a fresh loopback connection and POST to the receiver, as one delivery
        does, timed from here: the floor of what any delivery costs on this machine."""
        times = []
        port = self.ctx.slack.port
        for _ in range(min(count, 50)):
            start = time.monotonic()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("POST", "/services/floor", b'{"text":"floor"}',
                         {"Content-Type": "application/json"})
            conn.getresponse().read()
            conn.close()
            times.append((time.monotonic() - start) * 1000)
        return percentile(times, 99)

    def report(self, acked, arrivals, floor_p99):
        delays = [(arrivals[i] - acked[i]) * 1000 for i in acked if i in arrivals]
        missing = len(acked) - len(delays)
        self.ctx.report.add(Row(
            "Slack alerts delivered", "%d of %d" % (len(delays), len(acked)), goal="all",
            ok=missing == 0, check=True))
        if not delays:
            return
        p99 = percentile(delays, 99) if not missing else float("inf")
        self.ctx.report.add(Row(
            "alert latency p99 (2xx -> Slack)", "%.2f ms" % p99,
            "loopback POST %.2f ms" % floor_p99, ratio(p99, floor_p99),
            "<= %.0f ms" % GOAL_P99_MS, p99 <= GOAL_P99_MS,
            details=["%d events %d ms apart: p50 %.2f p99 %.2f max %.2f min %.2f ms" % (
                len(acked), SPACING_S * 1000, percentile(delays, 50), percentile(delays, 99),
                max(delays), min(delays))]))
