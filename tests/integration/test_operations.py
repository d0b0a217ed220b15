"""Operations end to end (issue 4, items 1, 2, 3, 6 and 7): what an SRE running trailhook sees.

- GET /metrics in the Prometheus text format 0.0.4, read by a small exposition-format parser
  written here (families, HELP/TYPE, samples with labels, histogram invariants), and counters
  that move by exactly what a scenario implies;
- the admin listener keeping /metrics and /alerts apart from ingest;
- SIGTERM: requests in flight finish, new ones get 503 + Retry-After, deliveries get
  drain_grace_seconds and the rest stays in the outbox; a second signal exits at once;
- one JSON object per stderr line, with request_id / event_id, and no secret anywhere;
- `trailhook healthcheck [URL]` for a container HEALTHCHECK.

Reload (item 4) and TLS (item 5) are tested in test_reload.py and test_tls.py.
"""

import base64
import gzip
import http.client
import json
import math
import re
import signal
import socket
import threading
import time
import unittest
import uuid

import harness
from harness import (API_KEY, API_KEY_2, BASIC_PASS, BASIC_USER, RULE_ID, Service,
                     ServiceTestCase, dumps, free_port, matching_event, non_matching_event,
                     outbox_cli, run_cli, unique, unique_image_id, write_config)
from receiver import Receiver, Reply, pagerduty_ok, slack_ok, webhook_ok

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Every family the service documents, with its TYPE and the label names its samples carry
# (histograms: without `le`).
FAMILIES = {
    "trailhook_build_info": ("gauge", {"version"}),
    "trailhook_http_requests_total": ("counter", {"handler", "code"}),
    "trailhook_http_request_duration_seconds": ("histogram", {"handler"}),
    "trailhook_events_received_total": ("counter", {"format"}),
    "trailhook_events_rejected_total": ("counter", {"reason"}),
    "trailhook_rule_evaluations_total": ("counter", {"rule", "result"}),
    "trailhook_alerts_total": ("counter", {"rule", "severity"}),
    "trailhook_alerts_deduplicated_total": ("counter", {"rule"}),
    "trailhook_notifications_total": ("counter", {"destination", "type"}),
    "trailhook_notifications_failed_total": ("counter", {"destination", "reason"}),
    "trailhook_notification_latency_seconds": ("histogram", {"destination"}),
    "trailhook_notification_retries_total": ("counter", {"destination"}),
    "trailhook_outbox_pending": ("gauge", {"destination"}),
    "trailhook_outbox_dead_letters": ("gauge", {"destination"}),
    "trailhook_queue_depth": ("gauge", set()),
    "trailhook_queue_capacity": ("gauge", set()),
    "trailhook_config_last_reload_successful": ("gauge", set()),
    "trailhook_config_last_reload_success_timestamp_seconds": ("gauge", set()),
    "process_cpu_seconds_total": ("counter", set()),
    "process_resident_memory_bytes": ("gauge", set()),
    "process_virtual_memory_bytes": ("gauge", set()),
    "process_open_fds": ("gauge", set()),
    "process_max_fds": ("gauge", set()),
    "process_start_time_seconds": ("gauge", set()),
}

# The closed sets of label values (anything else would be free text or unbounded cardinality).
HANDLERS = {"/events", "/healthz", "/readyz", "/alerts", "/metrics", "other"}
FORMATS = {"record", "envelope", "records", "array", "ndjson", "empty"}
REJECT_REASONS = {"malformed", "unauthorized", "too_large", "unsupported", "saturated",
                  "store_unavailable", "not_found", "other"}
RESULTS = {"match", "nomatch", "error"}
SEVERITIES = {"Info", "Low", "Medium", "High", "Critical"}
NOTIFY_TYPES = {"alert", "resolve", "rule_error"}
# "other" is the implementation's never-expected fallback (deliver.c); always 0 here.
FAIL_REASONS = {"client", "server", "ratelimited", "timeout", "network", "other"}

IPV4 = re.compile(r"(?<![\d.])\d{1,3}(\.\d{1,3}){3}(?![\d.])")
ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})$")


# ---- a small Prometheus text-format (0.0.4) parser -------------------------------------------

class ExpositionError(ValueError):
    pass


METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
FLOAT = re.compile(r"^(?:[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]?Inf|NaN)$")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


class Sample:
    def __init__(self, name, labels, value, line):
        self.name = name
        self.labels = labels  # dict
        self.value = value
        self.line = line

    def __repr__(self):
        return "<%s>" % self.line


class Family:
    def __init__(self, name):
        self.name = name
        self.help = None
        self.type = None
        self.samples = []


def _parse_float(text, lineno):
    if not FLOAT.match(text):
        raise ExpositionError("line %d: %r is not a sample value" % (lineno, text))
    return float(text.replace("Inf", "inf").replace("NaN", "nan"))


def _parse_labels(line, pos, lineno):
    """Parses `{name="value",...}` from line[pos] == '{'. @return (labels, position after)."""
    labels = {}
    pos += 1
    while True:
        while pos < len(line) and line[pos] == " ":
            pos += 1
        if pos < len(line) and line[pos] == "}":
            return labels, pos + 1
        m = LABEL_NAME.match(line, pos)
        if not m:
            raise ExpositionError("line %d: bad label name at column %d" % (lineno, pos + 1))
        name = m.group(0)
        pos = m.end()
        if not line.startswith('="', pos):
            raise ExpositionError("line %d: label %s has no =\"value\"" % (lineno, name))
        pos += 2
        value = []
        while True:
            if pos >= len(line):
                raise ExpositionError("line %d: unterminated value of label %s" % (lineno, name))
            c = line[pos]
            if c == "\\":
                nxt = line[pos + 1:pos + 2]
                if nxt not in ("\\", '"', "n"):
                    raise ExpositionError("line %d: bad escape \\%s" % (lineno, nxt))
                value.append("\n" if nxt == "n" else nxt)
                pos += 2
            elif c == '"':
                pos += 1
                break
            else:
                value.append(c)
                pos += 1
        if name in labels:
            raise ExpositionError("line %d: label %s twice" % (lineno, name))
        labels[name] = "".join(value)
        if pos < len(line) and line[pos] == ",":
            pos += 1
        elif pos < len(line) and line[pos] == "}":
            return labels, pos + 1
        else:
            raise ExpositionError("line %d: expected , or } after label %s" % (lineno, name))


def _family_of(name, families):
    """The declared family a sample name belongs to (histograms: _bucket, _sum, _count)."""
    if name in families:
        return families[name]
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix):
            f = families.get(name[:-len(suffix)])
            if f is not None and f.type in ("histogram", "summary"):
                return f
    return None


class Exposition:
    """A parsed scrape: families by name, every sample, and lookups for tests."""

    def __init__(self, text):
        self.text = text
        self.families = {}
        self.samples = []
        self._parse(text)
        self._check_histograms()

    def _parse(self, text):
        if text and not text.endswith("\n"):
            raise ExpositionError("the exposition does not end with a newline")
        current = None
        closed = set()  # families whose samples are over: their lines must not come back
        seen = set()
        for lineno, line in enumerate(text.split("\n")[:-1], 1):
            if line.strip() == "":
                continue
            if line.startswith("#"):
                parts = line.split(None, 3)
                if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                    name = parts[2]
                    if not METRIC_NAME.fullmatch(name):
                        raise ExpositionError("line %d: bad metric name %r" % (lineno, name))
                    f = self.families.get(name)
                    if f is None:
                        f = self.families[name] = Family(name)
                    if f.samples:
                        raise ExpositionError("line %d: %s of %s after its samples"
                                              % (lineno, parts[1], name))
                    if current is not None and current is not f:
                        closed.add(current.name)
                    if name in closed:
                        raise ExpositionError("line %d: family %s is split" % (lineno, name))
                    current = f
                    if parts[1] == "HELP":
                        if f.help is not None:
                            raise ExpositionError("line %d: second HELP for %s" % (lineno, name))
                        f.help = parts[3] if len(parts) > 3 else ""
                    else:
                        if f.type is not None:
                            raise ExpositionError("line %d: second TYPE for %s" % (lineno, name))
                        if len(parts) != 4 or parts[3] not in TYPES:
                            raise ExpositionError("line %d: bad TYPE line %r" % (lineno, line))
                        f.type = parts[3]
                continue
            m = METRIC_NAME.match(line)
            if not m:
                raise ExpositionError("line %d: not a sample: %r" % (lineno, line))
            name = m.group(0)
            pos = m.end()
            labels = {}
            if pos < len(line) and line[pos] == "{":
                labels, pos = _parse_labels(line, pos, lineno)
            rest = line[pos:]
            if not rest.startswith(" "):
                raise ExpositionError("line %d: no blank before the value: %r" % (lineno, line))
            fields = rest.split()
            if len(fields) not in (1, 2):
                raise ExpositionError("line %d: trailing garbage: %r" % (lineno, line))
            value = _parse_float(fields[0], lineno)
            if len(fields) == 2 and not re.fullmatch(r"-?\d+", fields[1]):
                raise ExpositionError("line %d: bad timestamp %r" % (lineno, fields[1]))
            f = _family_of(name, self.families)
            if f is None or f.type is None:
                raise ExpositionError("line %d: sample %s before its # TYPE" % (lineno, name))
            if f is not current:
                raise ExpositionError("line %d: sample %s outside its family's block"
                                      % (lineno, name))
            if f.type in ("counter", "gauge") and name != f.name:
                raise ExpositionError("line %d: %s sample named %s" % (lineno, f.type, name))
            key = (name, tuple(sorted(labels.items())))
            if key in seen:
                raise ExpositionError("line %d: duplicate series %s" % (lineno, line))
            seen.add(key)
            s = Sample(name, labels, value, line)
            f.samples.append(s)
            self.samples.append(s)

    def _check_histograms(self):
        for f in self.families.values():
            if f.type != "histogram":
                continue
            groups = {}
            for s in f.samples:
                base = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
                g = groups.setdefault(base, {"buckets": [], "sum": None, "count": None})
                if s.name == f.name + "_bucket":
                    if "le" not in s.labels:
                        raise ExpositionError("%s without le" % s.line)
                    g["buckets"].append((_parse_float(s.labels["le"], 0), s.value, s.line))
                elif s.name == f.name + "_sum":
                    g["sum"] = s.value
                elif s.name == f.name + "_count":
                    g["count"] = s.value
                else:
                    raise ExpositionError("%s in histogram %s" % (s.line, f.name))
            for base, g in groups.items():
                where = "%s%r" % (f.name, dict(base))
                b = g["buckets"]
                if not b or g["sum"] is None or g["count"] is None:
                    raise ExpositionError("%s lacks buckets, _sum or _count" % where)
                bounds = [le for le, _, _ in b]
                if bounds != sorted(bounds) or len(set(bounds)) != len(bounds):
                    raise ExpositionError("%s: bucket bounds not increasing: %r" % (where, bounds))
                if not math.isinf(bounds[-1]) or bounds[-1] < 0:
                    raise ExpositionError("%s: the last bucket is not le=\"+Inf\"" % where)
                counts = [c for _, c, _ in b]
                if any(later < earlier for earlier, later in zip(counts, counts[1:])):
                    raise ExpositionError("%s: buckets not cumulative: %r" % (where, counts))
                if counts[-1] != g["count"]:
                    raise ExpositionError("%s: +Inf bucket %r != _count %r"
                                          % (where, counts[-1], g["count"]))
                if g["sum"] < 0 or (g["count"] == 0 and g["sum"] != 0):
                    raise ExpositionError("%s: _sum %r with _count %r"
                                          % (where, g["sum"], g["count"]))

    # -- lookups --

    def find(self, name, **labels):
        """Samples named @p name whose labels include @p labels."""
        return [s for s in self.samples if s.name == name and
                all(s.labels.get(k) == v for k, v in labels.items())]

    def value(self, name, **labels):
        """The sum of the matching samples; 0 when there is none (a series not created yet)."""
        return sum(s.value for s in self.find(name, **labels))

    def one(self, name, **labels):
        found = self.find(name, **labels)
        if len(found) != 1:
            raise AssertionError("%d samples %s%r, expected one" % (len(found), name, labels))
        return found[0].value


# ---- helpers -------------------------------------------------------------------------------------

def scrape(testcase, svc, port=None):
    """GET /metrics; checks status and content type; @return the parsed Exposition."""
    r = svc.request("GET", "/metrics", auth=False, port=port)
    testcase.assertEqual(r.status, 200, r)
    testcase.assertEqual(r.header("Content-Type"), CONTENT_TYPE)
    try:
        return Exposition(r.body.decode("utf-8"))
    except ExpositionError as e:
        raise AssertionError("the /metrics output does not parse: %s\n%s"
                             % (e, r.body.decode("utf-8", "replace")[:4000]))


def scrape_until(testcase, svc, predicate, timeout=10, port=None):
    """Scrapes until predicate(exposition) holds (or the time is up); @return the last scrape.
    Request counters are updated once a connection is over, a moment after the client has the
    answer; delivery counters once the deliverer has settled the row."""
    deadline = time.monotonic() + timeout
    while True:
        e = scrape(testcase, svc, port)
        if predicate(e) or time.monotonic() > deadline:
            return e
        time.sleep(0.05)


def receiver(testcase, default, **kw):
    r = Receiver(default=default, **kw).start()
    testcase.addCleanup(r.stop)
    return r


def webhook_dest(rcv, name="hook", **extra):
    d = {"name": name, "type": "webhook", "url": rcv.url("/hook")}
    d.update(extra)
    return d


def filler_record():
    """A CloudTrail record no rule looks at (cheap to evaluate, never matches)."""
    return {"eventVersion": "1.08", "eventTime": "2024-01-01T00:00:00Z",
            "eventSource": "s3.amazonaws.com", "eventName": "GetObject",
            "awsRegion": "us-east-1", "eventID": "filler-" + uuid.uuid4().hex,
            "recipientAccountId": "123456789012"}


def evaluated_filler_record():
    """A record the rule evaluates and never matches (a failed ModifyImageAttribute): unlike
    filler_record(), it is parsed into a tree, so a request of many takes a while."""
    return {"eventVersion": "1.08", "eventSource": "ec2.amazonaws.com",
            "eventName": "ModifyImageAttribute", "errorCode": "Client.AuthFailure",
            "eventID": "failed-" + uuid.uuid4().hex, "recipientAccountId": "123456789012"}


def rule_error_event():
    """ModifyImageAttribute whose launchPermission item is a string: Python would raise."""
    ev = matching_event()
    ev["requestParameters"]["launchPermission"]["add"]["items"] = ["all"]
    return ev


def assert_no_secret(testcase, text, secrets, where):
    """Fails naming the lines (the secret masked) where any of @p secrets appears in @p text."""
    for secret in secrets:
        if secret in text:
            lines = [l.replace(secret, "<SECRET>") for l in text.splitlines() if secret in l]
            testcase.fail("a secret (%s...) is in %s:\n%s"
                          % (secret[:6], where, "\n".join(lines[:5])))


def basic(user, password):
    return "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()


# ---- 1. the exposition ---------------------------------------------------------------------------

class ExpositionTest(ServiceTestCase):
    def test_every_family_with_its_type_and_no_secret(self):
        hook_secret = "whsec-" + uuid.uuid4().hex
        hmac_key = "hmac-" + uuid.uuid4().hex
        slack_token = "xoxtoken" + uuid.uuid4().hex
        routing_key = uuid.uuid4().hex
        hook = receiver(self, webhook_ok(), name="hook")
        slack = receiver(self, slack_ok(), name="slack")
        pd = receiver(self, pagerduty_ok(), name="pd")
        config = write_config(self, {"destinations": [
            webhook_dest(hook, secret=hook_secret, hmac_secret=hmac_key),
            {"name": "slack", "type": "slack", "url": slack.url("/services/T0/B0/" + slack_token),
             "rate_per_minute": 6000, "burst": 100},
            {"name": "pd", "type": "pagerduty", "url": pd.url("/pd"), "secret": routing_key,
             "rate_per_minute": 6000, "burst": 100},
        ]})
        svc = Service(self, config=config).start()
        # Some traffic first, so that the families have series with values (an ARN and an IP
        # are in the matching event: neither may become a label value).
        wrong_key = API_KEY[:-1] + "X"
        self.assertAccepted(svc.post_events(dumps(matching_event())), 1, 1)
        self.assertAccepted(svc.post_events(dumps(non_matching_event())), 1, 0)
        self.assertEqual(svc.post_events(dumps(non_matching_event()), auth=False,
                                         headers={"X-Api-Key": wrong_key}).status, 401)
        self.assertEqual(svc.request("GET", "/nowhere").status, 404)
        self.assertEqual(svc.request("GET", "/readyz", auth=False).status, 200)
        for rcv in (hook, slack, pd):
            self.assertEqual(len(rcv.wait_delivered(1, timeout=15)), 1, rcv.all())

        e = scrape_until(self, svc, lambda e: (e.value("trailhook_notifications_total") >= 3 and
                                               e.value("trailhook_outbox_pending") == 0))
        text = e.text

        for name, (ftype, label_names) in FAMILIES.items():
            f = e.families.get(name)
            self.assertIsNotNone(f, "family %s missing from /metrics" % name)
            self.assertEqual(f.type, ftype, "# TYPE of %s" % name)
            self.assertTrue(f.help, "%s has no # HELP text" % name)
            self.assertTrue(f.samples, "%s has no sample" % name)
            for s in f.samples:
                have = set(s.labels) - ({"le"} if s.name.endswith("_bucket") else set())
                self.assertEqual(have, label_names, "labels of %s" % s.line)
            if ftype == "counter":
                self.assertTrue(name.endswith("_total"), name)
        for f in e.families.values():
            self.assertTrue(f.help is not None and f.type is not None,
                            "%s lacks # HELP or # TYPE" % f.name)
            if f.type == "counter":
                for s in f.samples:
                    self.assertGreaterEqual(s.value, 0, s.line)

        # Values a user reads off a dashboard.
        self.assertEqual(e.one("trailhook_build_info"), 1)
        self.assertRegex(e.find("trailhook_build_info")[0].labels["version"], r"^\d+\.\d+")
        self.assertEqual(e.one("trailhook_config_last_reload_successful"), 1)
        ts = e.one("trailhook_config_last_reload_success_timestamp_seconds")
        start = e.one("process_start_time_seconds")
        self.assertLess(abs(ts - time.time()), 300, ts)
        self.assertLess(abs(start - time.time()), 300, start)
        self.assertGreater(e.one("process_resident_memory_bytes"), 1 << 20)
        self.assertGreaterEqual(e.one("process_virtual_memory_bytes"),
                                e.one("process_resident_memory_bytes"))
        self.assertGreater(e.one("process_open_fds"), 2)
        self.assertGreaterEqual(e.one("process_max_fds"), e.one("process_open_fds"))
        self.assertGreater(e.one("process_cpu_seconds_total"), 0)
        self.assertEqual(e.one("trailhook_queue_capacity"), 1024)
        self.assertEqual(e.one("trailhook_queue_depth"), 0)
        self.assertEqual({s.labels["destination"] for s in e.find("trailhook_outbox_pending")},
                         {"hook", "slack", "pd"})
        self.assertEqual(e.value("trailhook_outbox_pending"), 0)
        self.assertEqual(e.value("trailhook_outbox_dead_letters"), 0)
        self.assertEqual(e.value("trailhook_alerts_total", rule=RULE_ID, severity="Medium"), 1)
        self.assertEqual(e.value("trailhook_http_requests_total", handler="/events", code="401"), 1)
        self.assertEqual(e.value("trailhook_http_requests_total", handler="other", code="404"), 1)

        # Labels stay low-cardinality: closed sets, no ARN, no IP, no free text.
        closed_sets = {
            ("trailhook_http_requests_total", "handler"): HANDLERS,
            ("trailhook_http_request_duration_seconds_bucket", "handler"): HANDLERS,
            ("trailhook_events_received_total", "format"): FORMATS,
            ("trailhook_events_rejected_total", "reason"): REJECT_REASONS,
            ("trailhook_rule_evaluations_total", "result"): RESULTS,
            ("trailhook_alerts_total", "severity"): SEVERITIES,
            ("trailhook_notifications_total", "type"): NOTIFY_TYPES,
            ("trailhook_notifications_failed_total", "reason"): FAIL_REASONS,
        }
        for s in e.samples:
            for k, v in s.labels.items():
                allowed = closed_sets.get((s.name, k))
                if allowed is not None:
                    self.assertIn(v, allowed, s.line)
                if k == "code":
                    self.assertRegex(v, r"^([1-5]\d\d|other)$", s.line)
                if k == "rule":
                    self.assertEqual(v, RULE_ID, s.line)
                if k == "destination":
                    self.assertIn(v, {"hook", "slack", "pd"}, s.line)
                self.assertNotIn("arn:", v, s.line)
                self.assertIsNone(IPV4.search(v), "an IP address as a label value: " + s.line)
                self.assertIsNone(re.search(r"\s", v), "free text as a label value: " + s.line)
                self.assertLessEqual(len(v), 64, s.line)

        assert_no_secret(self, text, [API_KEY, API_KEY_2, BASIC_PASS, wrong_key, hook_secret,
                                      hmac_key, slack_token, routing_key], "/metrics")

    def test_the_parser_rejects_what_prometheus_would(self):
        # The parser is only worth what it refuses.
        bad = [
            "x_total 1\n",                                             # no TYPE
            "# TYPE x counter\nx 1",                                   # no final newline
            "# TYPE x counter\nx{a=\"1} 1\n",                          # unterminated value
            "# TYPE x counter\nx{a=1} 1\n",                            # unquoted value
            "# TYPE x counter\nx one\n",                               # not a number
            "# TYPE x counter\nx 1\nx 2\n",                            # duplicate series
            "# TYPE x counter\n# TYPE x gauge\nx 1\n",                 # two TYPEs
            "# TYPE x counter\nx 1\n# TYPE y gauge\ny 1\nx{a=\"b\"} 1\n",  # split family
            "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\n"
            "h_sum 1\nh_count 1\n",                                    # not cumulative
            "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",  # no +Inf
            "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",  # +Inf != count
        ]
        for text in bad:
            with self.assertRaises(ExpositionError, msg=repr(text)):
                Exposition(text)
        good = Exposition('# HELP a_total A "quoted" \\\\ help.\n# TYPE a_total counter\n'
                          'a_total{l="x\\"y\\\\z\\n"} 3\n'
                          '# TYPE h histogram\nh_bucket{le="0.5"} 1\nh_bucket{le="+Inf"} 2\n'
                          'h_sum 0.7\nh_count 2\n')
        self.assertEqual(good.one("a_total", l='x"y\\z\n'), 3)
        self.assertEqual(good.one("h_count"), 2)


# ---- 2, 3. counters move by exactly what happened ------------------------------------------------

class CountersTest(ServiceTestCase):
    def test_a_scenario_moves_each_counter_by_its_exact_amount(self):
        svc = Service(self).start()
        before = scrape(self, svc)

        image = unique_image_id()
        body = {"Records": [matching_event(image_id=image), non_matching_event(),
                            non_matching_event()]}
        first = self.assertAccepted(svc.post_events(dumps(body)), 3, 1)
        self.assertEqual(len(first["alerts"]), 1, first)
        again = self.assertAccepted(svc.post_events(dumps(matching_event(image_id=image))), 1, 1)
        self.assertEqual(again["alerts"], first["alerts"], "the second match opened a new alert")
        self.assertJsonResponse(svc.post_events(b'{"Records": [{"eventID": '), 400)
        self.assertJsonResponse(svc.post_events(dumps(non_matching_event()), auth=False,
                                                headers={"X-Api-Key": "wrong-key"}), 401)

        def events_answered(e):
            return (e.value("trailhook_http_request_duration_seconds_count", handler="/events") -
                    before.value("trailhook_http_request_duration_seconds_count",
                                 handler="/events")) >= 4
        after = scrape_until(self, svc, events_answered)

        def delta(name, **labels):
            return after.value(name, **labels) - before.value(name, **labels)

        self.assertEqual(delta("trailhook_events_received_total"), 4)
        self.assertEqual(delta("trailhook_events_received_total", format="records"), 3)
        self.assertEqual(delta("trailhook_events_received_total", format="record"), 1)
        rule = {"rule": RULE_ID}
        self.assertEqual(delta("trailhook_rule_evaluations_total", result="match", **rule), 2)
        self.assertEqual(delta("trailhook_rule_evaluations_total", result="nomatch", **rule), 2)
        self.assertEqual(delta("trailhook_rule_evaluations_total", result="error", **rule), 0)
        self.assertEqual(delta("trailhook_alerts_total"), 1)
        self.assertEqual(delta("trailhook_alerts_total", severity="Medium", **rule), 1)
        self.assertEqual(delta("trailhook_alerts_deduplicated_total", **rule), 1)
        self.assertEqual(delta("trailhook_events_rejected_total", reason="malformed"), 1)
        self.assertEqual(delta("trailhook_events_rejected_total", reason="unauthorized"), 1)
        self.assertEqual(delta("trailhook_events_rejected_total"), 2, "other rejections moved")
        self.assertEqual(delta("trailhook_http_requests_total", handler="/events", code="202"), 2)
        self.assertEqual(delta("trailhook_http_requests_total", handler="/events", code="400"), 1)
        self.assertEqual(delta("trailhook_http_requests_total", handler="/events", code="401"), 1)
        self.assertEqual(delta("trailhook_http_requests_total", handler="/events"), 4)
        self.assertEqual(
            delta("trailhook_http_request_duration_seconds_count", handler="/events"), 4)
        self.assertGreater(
            delta("trailhook_http_request_duration_seconds_sum", handler="/events"), 0)
        self.assertEqual(
            delta("trailhook_http_request_duration_seconds_bucket", handler="/events", le="+Inf"),
            4)

    def test_a_failed_then_retried_delivery(self):
        hook = receiver(self, webhook_ok(), name="hook")
        hook.script("/hook", Reply(500, b"internal error"))  # once; then the default 200
        config = write_config(self, {"destinations": [webhook_dest(hook)]})
        svc = Service(self, config=config).start()
        dest = {"destination": "hook"}
        before = scrape(self, svc)

        r = svc.post_events(dumps(matching_event()))
        alert_id = self.assertAccepted(r, 1, 1)["alerts"][0]
        got = hook.wait_delivered(1, timeout=15)
        self.assertEqual(len(got), 1, hook.all())
        self.assertEqual([q.answered for q in hook.all()], [500, 200])
        self.assertEqual(got[0].json.get("id"), alert_id)

        after = scrape_until(self, svc, lambda e: (
            e.value("trailhook_notifications_total", type="alert", **dest) >= 1 and
            e.value("trailhook_outbox_pending", **dest) == 0))

        def delta(name, **labels):
            return after.value(name, **labels) - before.value(name, **labels)

        self.assertEqual(delta("trailhook_notifications_total", type="alert", **dest), 1)
        self.assertEqual(delta("trailhook_notifications_total", **dest), 1)
        self.assertEqual(delta("trailhook_notifications_failed_total", reason="server", **dest), 1)
        self.assertEqual(delta("trailhook_notifications_failed_total", **dest), 1)
        self.assertEqual(delta("trailhook_notification_retries_total", **dest), 1)
        self.assertEqual(delta("trailhook_notification_latency_seconds_count", **dest), 2)
        self.assertGreater(delta("trailhook_notification_latency_seconds_sum", **dest), 0)
        self.assertEqual(after.one("trailhook_outbox_pending", **dest), 0)
        self.assertEqual(after.one("trailhook_outbox_dead_letters", **dest), 0)


# ---- 4. the admin listener -----------------------------------------------------------------------

class AdminListenerTest(ServiceTestCase):
    def test_metrics_and_alerts_only_on_admin_ingest_only_on_listen(self):
        admin = free_port()
        svc = Service(self, env={"TRAILHOOK_ADMIN_LISTEN": "127.0.0.1:%d" % admin}).start()
        main = svc.port
        # Ingest: the main listener only.
        alert_id = self.assertAccepted(svc.post_events(dumps(matching_event())), 1, 1)["alerts"][0]
        self.assertJsonResponse(svc.post_events(dumps(matching_event()), port=admin), 404)
        self.assertJsonResponse(svc.post_events(dumps(matching_event()), path="/", port=admin),
                                404)
        # Metrics and alerts: the admin listener only, even with credentials.
        self.assertEqual(svc.request("GET", "/metrics", port=main).status, 404)
        self.assertEqual(svc.request("GET", "/metrics", auth=False, port=main).status, 404)
        self.assertJsonResponse(svc.request("GET", "/alerts", port=main), 404)
        e = scrape_until(self, svc, lambda e: e.value("trailhook_http_requests_total",
                                                      handler="/events", code="202") >= 1,
                         port=admin)
        self.assertEqual(e.value("trailhook_events_received_total"), 1,
                         "the admin scrape does not see what ingest counted")
        r = svc.request("GET", "/alerts", port=admin)
        self.assertEqual(r.status, 200, r)
        self.assertEqual([a["id"] for a in r.json["alerts"]], [alert_id])
        self.assertJsonResponse(svc.request("GET", "/alerts", auth=False, port=admin), 401)
        # Health: both.
        for port in (main, admin):
            self.assertEqual(self.assertJsonResponse(
                svc.request("GET", "/healthz", auth=False, port=port), 200).get("status"), "ok")
            self.assertIs(self.assertJsonResponse(
                svc.request("GET", "/readyz", auth=False, port=port), 200).get("ready"), True)
        # The container HEALTHCHECK finds the admin listener by itself.
        r = run_cli(["healthcheck"], env=svc.env(), timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_without_admin_listen_everything_is_on_listen(self):
        svc = Service(self).start()
        self.assertAccepted(svc.post_events(dumps(non_matching_event())), 1, 0)
        self.assertEqual(scrape(self, svc).families["trailhook_build_info"].type, "gauge")
        self.assertEqual(svc.request("GET", "/alerts").status, 200)
        self.assertEqual(svc.request("GET", "/healthz", auth=False).status, 200)
        self.assertEqual(svc.request("GET", "/readyz", auth=False).status, 200)


# ---- 5. SIGTERM ----------------------------------------------------------------------------------

class DrainTest(ServiceTestCase):
    def test_request_in_flight_finishes_new_ones_get_503(self):
        grace = 2
        svc = Service(self, env={"TRAILHOOK_WORKERS": 1, "TRAILHOOK_MAX_EVENTS": 250000,
                                 "TRAILHOOK_DRAIN_GRACE_SECONDS": grace}).start()
        n = 200000
        event = matching_event()
        # Records the rule evaluates, so the request is still in flight at the signal.
        body = gzip.compress(dumps({"Records": [event] + [evaluated_filler_record()] * n}), 1)
        # Connections the service accepted before the signal, whose requests come after it.
        late_post = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=30)
        late_ready = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=30)
        late_post.connect()
        late_ready.connect()
        slow = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=60)
        for c in (late_post, late_ready, slow):
            self.addCleanup(c.close)
        slow.request("POST", "/events", body=body,
                     headers={"X-Api-Key": API_KEY, "Content-Type": "application/json",
                              "Content-Encoding": "gzip"})  # returns once the body is sent
        time.sleep(0.2)
        self.assertIsNone(svc.proc.poll())
        svc.proc.send_signal(signal.SIGTERM)
        time.sleep(0.1)

        # A brand-new connection: 503 + Retry-After, or refused/reset once the listener closes.
        fresh = {}

        def fresh_request():
            try:
                fresh["r"] = svc.post_events(dumps(matching_event()), timeout=30)
            except (ConnectionError, http.client.HTTPException, socket.timeout) as e:
                fresh["r"] = e
        t = threading.Thread(target=fresh_request, daemon=True)
        t.start()

        late_ready.request("GET", "/readyz")
        rr = late_ready.getresponse()
        ready_body = json.loads(rr.read())
        self.assertEqual(rr.status, 503, ready_body)
        self.assertIs(ready_body.get("ready"), False)
        self.assertIn("shutting down", ready_body.get("reasons", []))
        self.assertIsNotNone(rr.getheader("Retry-After"))

        late_post.request("POST", "/events", body=dumps(matching_event()),
                          headers={"X-Api-Key": API_KEY, "Content-Type": "application/json"})
        rp = late_post.getresponse()
        late_body = rp.read()
        self.assertEqual(rp.status, 503, late_body)
        self.assertRegex(rp.getheader("Retry-After") or "", r"^[1-9]\d*$")
        self.assertIn(b"shutting down", late_body)

        rs = slow.getresponse()
        slow_body = json.loads(rs.read())
        t_answer = time.monotonic()
        self.assertEqual(rs.status, 202, slow_body)
        self.assertEqual(slow_body.get("accepted"), n + 1)
        self.assertEqual(slow_body.get("matched"), 1)

        rc = svc.wait_exit(grace + 10)
        t_exit = time.monotonic()
        self.assertEqual(rc, 0, svc.stderr_text()[-3000:])
        self.assertLess(t_exit - t_answer, grace + 2,
                        "exit %.1fs after the last answer; drain_grace_seconds is %d"
                        % (t_exit - t_answer, grace))
        t.join(30)
        r = fresh.get("r")
        if isinstance(r, harness.Response):
            self.assertEqual(r.status, 503, r)
            self.assertIsNotNone(r.header("Retry-After"))
        else:
            self.assertIsInstance(r, (ConnectionError, http.client.HTTPException), repr(r))
        # What was acknowledged is stored.
        again = Service(self, state_dir=svc.state_dir).start()
        self.assertIsNotNone(again.alert(slow_body["alerts"][0]))

    def test_a_hanging_delivery_gets_the_grace_period_then_waits_in_the_outbox(self):
        grace = 2
        hook = receiver(self, webhook_ok(), name="hook")
        hook.script("/hook", Reply(None, delay=60))  # reads the first request, never answers
        config = write_config(self, {"drain_grace_seconds": grace, "destinations": [
            webhook_dest(hook, timeout_ms=60000)]})
        svc = Service(self, config=config).start()
        alert_id = self.assertAccepted(svc.post_events(dumps(matching_event())), 1, 1)["alerts"][0]
        self.assertEqual(len(hook.wait_requests(1, timeout=10)), 1)
        svc.proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        rc = svc.wait_exit(grace + 10)
        elapsed = time.monotonic() - t0
        self.assertEqual(rc, 0, svc.stderr_text()[-3000:])
        self.assertLess(elapsed, grace + 1.5, "SIGTERM to exit: %.1fs" % elapsed)
        self.assertGreater(elapsed, grace - 0.5,
                           "the delivery in progress was cut after %.1fs, before the %ds grace"
                           % (elapsed, grace))
        _, pending = outbox_cli(svc.state_dir, "list", "--pending")
        self.assertEqual([(p["destination"], p["ref"]) for p in pending], [("hook", alert_id)])
        # The next start sends it, once.
        again = Service(self, config=config, state_dir=svc.state_dir).start()
        got = hook.wait_delivered(1, timeout=15)
        self.assertEqual([q.json.get("id") for q in got], [alert_id])
        time.sleep(1.5)
        self.assertEqual(len(hook.delivered()), 1, hook.all())
        self.assertEqual(hook.count(), 2, hook.all())
        self.assertEqual(again.outbox("list", "--pending")[1], [])

    def test_a_delivery_that_ends_within_the_grace_is_not_sent_again(self):
        hook = receiver(self, webhook_ok(), name="hook")
        hook.script("/hook", Reply(200, {"ok": True}, delay=1.0))
        config = write_config(self, {"drain_grace_seconds": 5, "destinations": [
            webhook_dest(hook)]})
        svc = Service(self, config=config).start()
        self.assertAccepted(svc.post_events(dumps(matching_event())), 1, 1)
        self.assertEqual(len(hook.wait_requests(1, timeout=10)), 1)
        svc.proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        self.assertEqual(svc.wait_exit(15), 0, svc.stderr_text()[-3000:])
        self.assertLess(time.monotonic() - t0, 4.5, "it waited for more than the delivery")
        self.assertEqual(len(hook.delivered()), 1, hook.all())
        _, pending = outbox_cli(svc.state_dir, "list", "--pending")
        self.assertEqual(pending, [], "a delivered row is still pending: it will be sent again")

    def test_a_second_signal_exits_at_once_and_keeps_committed_alerts(self):
        hook = receiver(self, webhook_ok(), name="hook")
        hook.script("/hook", Reply(None, delay=60))
        config = write_config(self, {"drain_grace_seconds": 30, "destinations": [
            webhook_dest(hook, timeout_ms=60000)]})
        svc = Service(self, config=config).start()
        alert_id = self.assertAccepted(svc.post_events(dumps(matching_event())), 1, 1)["alerts"][0]
        self.assertEqual(len(hook.wait_requests(1, timeout=10)), 1)
        svc.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        self.assertIsNone(svc.proc.poll(), "it did not wait for the delivery in progress")
        svc.proc.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        rc = svc.wait_exit(10)
        self.assertIsNotNone(rc, "still running after the second signal")
        self.assertLess(time.monotonic() - t0, 2.0)
        again = Service(self, config=config, state_dir=svc.state_dir).start()
        self.assertIsNotNone(again.alert(alert_id), "a committed alert was lost")
        got = hook.wait_delivered(1, timeout=15)
        self.assertEqual([q.json.get("id") for q in got], [alert_id])


# ---- 6. logs -------------------------------------------------------------------------------------

class LogTest(ServiceTestCase):
    def test_json_lines_with_context_and_no_secret(self):
        slack_token = "xoxslack" + uuid.uuid4().hex
        down_token = "xoxdown" + uuid.uuid4().hex
        hook_secret = "whsec-" + uuid.uuid4().hex
        hmac_key = "hmac-" + uuid.uuid4().hex
        routing_key = uuid.uuid4().hex
        slack = receiver(self, slack_ok(), name="slack")
        slack.script("*", Reply(500, b"rollup_error"))
        hook = receiver(self, webhook_ok(), name="hook")
        hook.script("*", Reply(500, b"oops"))
        pd = receiver(self, pagerduty_ok(), name="pd")
        pd.script("*", Reply(429, {"status": "throttle"}, headers={"Retry-After": "1"}))
        closed = free_port()
        config = write_config(self, {"destinations": [
            {"name": "slack", "type": "slack", "url": slack.url("/services/T0/B0/" + slack_token),
             "rate_per_minute": 6000, "burst": 100},
            {"name": "slack-down", "type": "slack", "connect_timeout_ms": 500,
             "url": "http://127.0.0.1:%d/services/T1/B1/%s" % (closed, down_token)},
            webhook_dest(hook, secret=hook_secret, hmac_secret=hmac_key),
            {"name": "pd", "type": "pagerduty", "url": pd.url("/pd"), "secret": routing_key,
             "rate_per_minute": 6000, "burst": 100},
        ]})
        svc = Service(self, config=config, env={"TRAILHOOK_LOG_LEVEL": "debug"}).start()

        # A match sent with Basic auth (the password goes through the service).
        r = svc.post_events(dumps(matching_event()), auth=False,
                            headers={"Authorization": basic(BASIC_USER, BASIC_PASS)})
        self.assertAccepted(r, 1, 1)
        # A rule error.
        bad = rule_error_event()
        r = svc.post_events(dumps(bad))
        body = self.assertJsonResponse(r, 202)
        self.assertEqual(body.get("rule_errors"), 1, body)
        error_request_id = body["request_id"]
        # Wrong credentials of every kind (what a client sends is a secret too).
        wrong_key = API_KEY[:-2] + "zz"
        wrong_pass = BASIC_PASS + "-typo"
        for headers in ({"X-Api-Key": wrong_key}, {"Authorization": "Bearer " + wrong_key},
                        {"Authorization": basic(BASIC_USER, wrong_pass)}):
            self.assertJsonResponse(svc.post_events(dumps(matching_event()), auth=False,
                                                    headers=headers), 401)
        # A request libmicrohttpd itself refuses: its message goes through the JSON log.
        with socket.create_connection(("127.0.0.1", svc.port), timeout=5) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n")
            try:
                s.recv(4096)
            except OSError:
                pass
        # Deliveries fail (500, 429, connection refused) and are retried until they succeed.
        for rcv in (slack, hook, pd):
            self.assertEqual(len(rcv.wait_delivered(1, timeout=20)), 1, rcv.all())
        deadline = time.monotonic() + 10
        while "slack-down" not in svc.stderr_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(svc.stop(), 0)
        text = svc.stderr_text()

        docs = []
        for i, line in enumerate(svc.stderr_lines, 1):
            try:
                doc = json.loads(line)
            except ValueError:
                self.fail("stderr line %d is not JSON: %r" % (i, line))
            self.assertIsInstance(doc, dict, line)
            for key in ("time", "level", "module", "message"):
                self.assertIsInstance(doc.get(key), str, "no %r in %r" % (key, line))
            self.assertRegex(doc["time"], ISO_TIME, line)
            self.assertIn(doc["level"], ("debug", "info", "warn", "error"), line)
            self.assertNotEqual(doc["module"], "", line)
            docs.append(doc)
        self.assertGreater(len(docs), 5, text)

        secrets = [API_KEY, API_KEY_2, BASIC_PASS, wrong_key, wrong_pass, slack_token,
                   down_token, hook_secret, hmac_key, routing_key,
                   basic(BASIC_USER, BASIC_PASS).split()[1],
                   basic(BASIC_USER, wrong_pass).split()[1]]
        assert_no_secret(self, text, secrets, "the log")

        errors = [d for d in docs if bad["eventID"] in d["message"]]
        self.assertTrue(errors, "no log line about the rule error:\n" + text)
        for d in errors:
            self.assertEqual(d.get("request_id"), error_request_id, d)
            self.assertEqual(d.get("event_id"), bad["eventID"], d)
        self.assertTrue(any(d["level"] in ("warn", "error") for d in errors), errors)
        self.assertTrue(any(d["module"] == "deliver" and "slack-down" in d["message"]
                            for d in docs), "no log line about the unreachable destination")
        self.assertTrue(any(d["module"] == "deliver" and "hook" in d["message"] and
                            d["level"] in ("warn", "error") for d in docs),
                        "no log line about the failed webhook delivery")
        self.assertTrue(any("libmicrohttpd" in d["message"] for d in docs),
                        "libmicrohttpd's message is not in the JSON log:\n" + text)



# ---- 7. healthcheck ------------------------------------------------------------------------------

class HealthcheckTest(ServiceTestCase):
    def test_exit_status_follows_healthz(self):
        svc = Service(self).start()
        r = run_cli(["healthcheck"], env=svc.env(), timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        url = "http://127.0.0.1:%d/healthz" % svc.port
        self.assertEqual(run_cli(["healthcheck", url], timeout=30).returncode, 0)
        # Not 200: a path that answers 404.
        r = run_cli(["healthcheck", "http://127.0.0.1:%d/nowhere" % svc.port], timeout=30)
        self.assertEqual(r.returncode, 1, r.stderr)
        # Nobody listening: the default URL from TRAILHOOK_LISTEN, and an explicit one.
        closed = free_port()
        env = dict(svc.env(), TRAILHOOK_LISTEN="127.0.0.1:%d" % closed)
        r = run_cli(["healthcheck"], env=env, timeout=30)
        self.assertEqual(r.returncode, 1, r.stderr)
        r = run_cli(["healthcheck", "http://127.0.0.1:%d/healthz" % closed], timeout=30)
        self.assertEqual(r.returncode, 1, r.stderr)
        # A stopped service is unhealthy.
        self.assertEqual(svc.stop(), 0)
        self.assertEqual(run_cli(["healthcheck", url], timeout=30).returncode, 1)



class SecondInstanceTest(ServiceTestCase):
    def test_a_second_service_on_a_taken_port_refuses_to_start(self):
        # A leftover instance sharing the port would silently take half the traffic.
        first = Service(self).start()
        second = Service(self)
        second.port = first.port
        second.spawn()
        self.assertNotEqual(second.wait_exit(10), 0)
        self.assertIn("cannot listen", second.stderr_text())
        self.assertEqual(first.post_events(dumps(non_matching_event(unique()))).status, 202)


if __name__ == "__main__":
    unittest.main()
