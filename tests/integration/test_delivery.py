"""Delivery end to end (DESIGN §5): Slack, PagerDuty and webhooks from the durable outbox.

Real HTTP receivers on loopback (receiver.py) stand in for Slack, PagerDuty and a webhook; each
test starts its own receivers and its own `trailhook serve` with a --config naming them, and
asserts what the receivers got: schema, limits, values, how often, and when.
"""

import hashlib
import hmac
import json
import os
import re
import shutil
import time
import unittest
import uuid

import harness
from harness import (RULE_ID, RULE_SPEC, RULE_TITLE, Service, ServiceTestCase, dumps,
                     make_temp_dir, matching_event, unique_image_id, write_config)
from receiver import (HMAC_KEY, HOOK_SECRET, HOOK_SECRET_HEADER, IMAGE_RE, ROUTING_KEY,
                      SIGNATURE_HEADER, Receiver, Reply, http_date, pagerduty_ok,
                      self_signed_context, slack_ok, webhook_ok)

ACCOUNT = "123456789012"
REGION = "us-west-2"
ACTOR_ARN = "arn:aws:sts::123456789012:assumed-role/example-role/example-user"
SOURCE_IP = "111.111.111.111"
REFERENCE = "https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/sharingamis-intro.html"
ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})$")

# How long "nothing more arrives" is watched for.
QUIET_SECONDS = 3.0


# ---- the rule spec's texts -------------------------------------------------------------------

def _spec_block(key):
    """The value of a top-level block scalar (`Key: |` literal or `Key: >` folded) of the spec."""
    with open(RULE_SPEC) as f:
        lines = f.read().split("\n")
    start = next(i for i, l in enumerate(lines) if l.startswith(key + ":"))
    style = lines[start].split(":", 1)[1].strip()
    body = []
    for l in lines[start + 1:]:
        if l.strip() and not l.startswith(" "):
            break
        body.append(l.strip())
    while body and not body[-1]:
        body.pop()
    return "\n".join(body) if style.startswith("|") else " ".join(body)


def norm(text):
    """Whitespace-insensitive form, with Slack's mrkdwn escapes undone."""
    text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return " ".join(text.split())


RUNBOOK = _spec_block("Runbook")
DESCRIPTION = _spec_block("Description")


# ---- events ------------------------------------------------------------------------------------

def make_private_event(image_id, event_id=None):
    """ModifyImageAttribute removing the public launch permission of @p image_id."""
    ev = matching_event(image_id=image_id, event_id=event_id)
    ev["requestParameters"]["launchPermission"] = {"remove": {"items": [{"group": "all"}]}}
    return ev


def reset_event(image_id, attribute="launchPermission"):
    ev = matching_event(image_id=image_id)
    ev["eventName"] = "ResetImageAttribute"
    ev["requestParameters"] = {"imageId": image_id, "attribute": attribute}
    return ev


def signature_of(body, key=HMAC_KEY):
    return "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def images_in(req):
    return set(IMAGE_RE.findall(req.body.decode("utf-8", "replace")))


# ---- the base class ------------------------------------------------------------------------------

class DeliveryTestCase(ServiceTestCase):
    """Receivers, configs and a service per test."""

    def receiver(self, default, **kw):
        r = Receiver(default=default, **kw).start()
        self.addCleanup(r.stop)
        return r

    def slack_receiver(self, **kw):
        return self.receiver(slack_ok(), name="slack", **kw)

    def pd_receiver(self, **kw):
        return self.receiver(pagerduty_ok(), name="pagerduty", **kw)

    def hook_receiver(self, **kw):
        return self.receiver(webhook_ok(), name="webhook", **kw)

    @staticmethod
    def slack_dest(rcv, name="slack", **extra):
        d = {"name": name, "type": "slack", "url": rcv.url("/slack"),
             "rate_per_minute": 6000, "burst": 100}
        d.update(extra)
        return d

    @staticmethod
    def pd_dest(rcv, name="pd", **extra):
        d = {"name": name, "type": "pagerduty", "url": rcv.url("/pd"), "secret": ROUTING_KEY,
             "rate_per_minute": 6000, "burst": 100}
        d.update(extra)
        return d

    @staticmethod
    def hook_dest(rcv, name="hook", **extra):
        d = {"name": name, "type": "webhook", "url": rcv.url("/hook"), "secret": HOOK_SECRET,
             "secret_header": HOOK_SECRET_HEADER, "hmac_secret": HMAC_KEY}
        d.update(extra)
        return d

    def service(self, destinations, state_dir=None, env=None, start=True, config_extra=None):
        config = {"destinations": destinations}
        config.update(config_extra or {})
        path = write_config(self, config)
        svc = Service(self, config=path, state_dir=state_dir, env=env)
        self.config_path = path
        return svc.start() if start else svc

    def post_alert(self, svc, ev=None):
        """Posts one matching event; @return the id of the alert it opened or joined."""
        ev = ev or matching_event()
        r = svc.post_events(dumps(ev))
        body = self.assertAccepted(r, 1, 1)
        self.assertEqual(len(body["alerts"]), 1, body)
        return body["alerts"][0]

    def assertQuiet(self, receivers, counts, seconds=QUIET_SECONDS):
        """Nothing beyond @p counts requests reaches @p receivers for @p seconds."""
        time.sleep(seconds)
        for rcv, n in zip(receivers, counts):
            self.assertEqual(rcv.count(), n, "%s got more requests: %r" % (rcv.name, rcv.all()))

    def wait_outbox(self, svc, predicate, timeout, *args):
        """Polls `outbox list ARGS` until predicate(rows) holds; @return the last rows."""
        deadline = time.monotonic() + timeout
        while True:
            r, rows = svc.outbox("list", *args)
            self.assertEqual(r.returncode, 0, r.stderr)
            if predicate(rows) or time.monotonic() > deadline:
                return rows
            time.sleep(0.2)

    # -- schema checks --

    def check_slack_alert(self, req, alert_id, image):
        self.assertEqual(req.method, "POST")
        self.assertTrue((req.header("Content-Type") or "").startswith("application/json"),
                        req.header("Content-Type"))
        msg = req.json
        self.assertIsInstance(msg, dict, req.body[:300])
        text = msg.get("text")
        self.assertIsInstance(text, str)
        self.assertTrue(0 < len(text) <= 4000, len(text))
        self.assertIn(RULE_TITLE, text, "fallback text: %r" % text)
        blocks = msg.get("blocks")
        self.assertIsInstance(blocks, list)
        self.assertTrue(0 < len(blocks) <= 50, len(blocks))
        headers = [b for b in blocks if b.get("type") == "header"]
        self.assertEqual(len(headers), 1, blocks)
        h = headers[0]["text"]
        self.assertEqual(h.get("type"), "plain_text")
        self.assertLessEqual(len(h["text"]), 150)
        self.assertIn("Medium", h["text"])
        self.assertIn(RULE_TITLE, h["text"])
        all_text, fields, context = [], [], []
        for b in blocks:
            self.assertIn(b.get("type"), ("header", "section", "context", "divider", "actions",
                                          "rich_text", "image"), b)
            if "block_id" in b:
                self.assertLessEqual(len(b["block_id"]), 255)
            if b["type"] == "section":
                if "text" in b:
                    self.assertLessEqual(len(b["text"]["text"]), 3000)
                    all_text.append(b["text"]["text"])
                fs = b.get("fields", [])
                self.assertLessEqual(len(fs), 10)
                for f in fs:
                    self.assertLessEqual(len(f["text"]), 2000)
                    fields.append(f["text"])
                    all_text.append(f["text"])
            elif b["type"] == "context":
                els = b.get("elements", [])
                self.assertTrue(0 < len(els) <= 10, els)
                context.extend(e.get("text", "") for e in els)
        joined = norm("\n".join(all_text))
        self.assertIn(norm(RUNBOOK), joined, "runbook text missing")
        self.assertIn(norm(DESCRIPTION), joined, "description missing")
        ftext = "\n".join(fields)
        for value in (ACCOUNT, REGION, image, ACTOR_ARN, SOURCE_IP):
            self.assertIn(value, ftext, "field value %s missing from %r" % (value, fields))
        self.assertIn(REFERENCE, joined)
        self.assertTrue(re.search(r"https://[^\s|>]*console\.aws\.amazon\.com[^\s|>]*" + image,
                                  joined), "no AWS console link to the image")
        ctext = "\n".join(context)
        self.assertIn(RULE_ID, ctext)
        self.assertIn("T1537", ctext)

    def check_pd_trigger(self, req, alert_id, image):
        self.assertTrue((req.header("Content-Type") or "").startswith("application/json"))
        self.assertLessEqual(len(req.body), 512 * 1024)
        ev = req.json
        self.assertIsInstance(ev, dict, req.body[:300])
        self.assertEqual(ev.get("routing_key"), ROUTING_KEY)
        self.assertEqual(ev.get("event_action"), "trigger")
        self.assertEqual(ev.get("dedup_key"), alert_id)
        self.assertLessEqual(len(ev["dedup_key"]), 255)
        p = ev.get("payload")
        self.assertIsInstance(p, dict)
        self.assertIsInstance(p.get("summary"), str)
        self.assertTrue(0 < len(p["summary"]) <= 1024, p["summary"])
        self.assertIsInstance(p.get("source"), str)
        self.assertNotEqual(p["source"], "")
        self.assertEqual(p.get("severity"), "warning")  # Medium
        self.assertRegex(p.get("timestamp", ""), ISO_TIME)
        for key in ("component", "group", "class"):
            self.assertIsInstance(p.get(key), str, key)
            self.assertNotEqual(p[key], "", key)
        cd = p.get("custom_details")
        self.assertIsInstance(cd, dict)
        cdtext = json.dumps(cd)
        for value in (image, ACCOUNT, ACTOR_ARN, SOURCE_IP, "ModifyImageAttribute",
                      "arn:aws:iam::123456789012:role/example-role"):
            self.assertIn(value, cdtext, "custom_details lack %s" % value)
        links = ev.get("links")
        self.assertIsInstance(links, list)
        for l in links:
            self.assertIsInstance(l.get("href"), str)
            self.assertIsInstance(l.get("text"), str)
        hrefs = [l["href"] for l in links]
        self.assertIn(REFERENCE, hrefs)
        self.assertTrue(any("console.aws.amazon.com" in h and image in h for h in hrefs), hrefs)

    def check_hook(self, req, alert_id, kind="alert"):
        self.assertTrue((req.header("Content-Type") or "").startswith("application/json"))
        self.assertEqual(req.header(HOOK_SECRET_HEADER), HOOK_SECRET)
        self.assertEqual(req.header(SIGNATURE_HEADER), signature_of(req.body),
                         "bad signature over %r" % req.body[:200])
        doc = req.json
        self.assertIsInstance(doc, dict)
        self.assertEqual(doc.get("type"), kind)
        self.assertEqual(doc.get("id"), alert_id)
        return doc


# ---- happy paths -------------------------------------------------------------------------------

class HappyPathTest(DeliveryTestCase):
    def setUp(self):
        self.slack = self.slack_receiver()
        self.pd = self.pd_receiver()
        self.hook = self.hook_receiver()
        self.svc = self.service([self.slack_dest(self.slack), self.pd_dest(self.pd),
                                 self.hook_dest(self.hook), {"name": "console", "type": "console"}])
        self.ev = matching_event()
        self.image = self.ev["requestParameters"]["imageId"]
        self.alert_id = self.post_alert(self.svc, self.ev)

    def test_slack_block_kit_message(self):
        got = self.slack.wait_delivered(1, timeout=10)
        self.assertEqual(len(got), 1, self.slack.all())
        self.assertEqual(got[0].path, "/slack")
        self.check_slack_alert(got[0], self.alert_id, self.image)

    def test_pagerduty_trigger(self):
        got = self.pd.wait_delivered(1, timeout=10)
        self.assertEqual(len(got), 1, self.pd.all())
        self.assertEqual(got[0].path, "/pd")
        self.check_pd_trigger(got[0], self.alert_id, self.image)

    def test_webhook_document(self):
        got = self.hook.wait_delivered(1, timeout=10)
        self.assertEqual(len(got), 1, self.hook.all())
        doc = self.check_hook(got[0], self.alert_id)
        self.assertEqual(doc.get("rule"), RULE_ID)
        self.assertEqual(doc.get("title"), RULE_TITLE)
        self.assertEqual(doc.get("severity"), "Medium")
        self.assertIn(self.image, got[0].body.decode())
        # The webhook carries the same document as the console line.
        line = self.svc.wait_console(self.alert_id)[0]
        for key in ("id", "rule", "title", "severity", "context", "remediation"):
            self.assertEqual(doc.get(key), line.get(key), key)

    def test_second_event_in_dedup_window_pages_nobody(self):
        for rcv in (self.slack, self.pd, self.hook):
            self.assertEqual(len(rcv.wait_delivered(1, timeout=10)), 1, rcv.name)
        second = self.post_alert(self.svc, matching_event(image_id=self.image))
        self.assertEqual(second, self.alert_id)
        self.assertQuiet([self.slack, self.pd, self.hook], [1, 1, 1])
        self.assertEqual(self.svc.alert(self.alert_id)["event_count"], 2)
        r, rows = self.svc.outbox("list", "--pending")
        self.assertEqual(rows, [], r.stdout)


class ConfigPathsTest(DeliveryTestCase):
    def test_env_quick_path(self):
        slack = self.slack_receiver()
        pd = self.pd_receiver()
        svc = Service(self, env={"TRAILHOOK_SLACK_WEBHOOK_URL": slack.url("/services/T/B/x"),
                                 "TRAILHOOK_PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
                                 "TRAILHOOK_PAGERDUTY_URL": pd.url("/v2/enqueue")}).start()
        ev = matching_event()
        alert_id = self.post_alert(svc, ev)
        s = slack.wait_delivered(1, timeout=10)
        p = pd.wait_delivered(1, timeout=10)
        self.assertEqual(len(s), 1, slack.all())
        self.assertEqual(len(p), 1, pd.all())
        self.assertEqual(s[0].path, "/services/T/B/x")
        self.assertEqual(p[0].path, "/v2/enqueue")
        self.check_slack_alert(s[0], alert_id, ev["requestParameters"]["imageId"])
        self.check_pd_trigger(p[0], alert_id, ev["requestParameters"]["imageId"])

    def test_min_severity(self):
        low = self.slack_receiver()
        high = self.pd_receiver()
        svc = self.service([self.slack_dest(low, min_severity="Medium"),
                            self.pd_dest(high, min_severity="High")])
        image = unique_image_id()
        self.post_alert(svc, matching_event(image_id=image))
        self.assertEqual(len(low.wait_delivered(1, timeout=10)), 1)
        # The resolution goes where the alert went, and only there.
        self.assertAccepted(svc.post_events(dumps(make_private_event(image))), 1, 0)
        self.assertEqual(len(low.wait_delivered(2, timeout=10)), 2)
        self.assertRegex(low.delivered()[1].json["text"], r"(?i)resolved")
        self.assertQuiet([low, high], [2, 0], seconds=2)

    def test_rate_limit_spaces_sends(self):
        slack = self.slack_receiver()
        svc = self.service([self.slack_dest(slack, rate_per_minute=120, burst=1)])
        for _ in range(4):
            self.post_alert(svc)
        got = slack.wait_delivered(4, timeout=15)
        self.assertEqual(len(got), 4)
        span = got[-1].arrived - got[0].arrived
        # 120/min with a burst of 1: one send every 0.5 s.
        self.assertGreaterEqual(span, 1.4, [r.arrived for r in got])


class LimitsTest(DeliveryTestCase):
    """Slack's and PagerDuty's limits hold for any rule text and any event: cut, never refused."""

    def test_oversized_texts_are_cut_not_refused(self):
        rules = make_temp_dir(self, "trailhook-rules-")
        with open(RULE_SPEC) as f:
            spec = f.read()
        long_title = "Very Long Title " + "é" * 300
        long_runbook = "\n".join("Step %d: %s" % (i, "check the image " * 8) for i in range(60))
        spec = spec.replace('DisplayName: "%s"' % RULE_TITLE, 'DisplayName: "%s"' % long_title)
        start = spec.index("Runbook: |")
        end = spec.index("Reference:")
        spec = spec[:start] + "Runbook: |\n" + "".join(
            "  " + l + "\n" for l in long_runbook.split("\n")) + spec[end:]
        with open(os.path.join(rules, "ami.yml"), "w") as f:
            f.write(spec)
        slack, pd = self.slack_receiver(), self.pd_receiver()
        svc = self.service([self.slack_dest(slack), self.pd_dest(pd)],
                           config_extra={"rules_dir": rules})
        ev = matching_event()
        ev["userAgent"] = "agent/" + "x" * 5000
        # ~700 KB of identity: more than PagerDuty's 512 KB for the whole event.
        ev["userIdentity"]["sessionContext"]["blob"] = ["%06d" % i + "y" * 94 for i in range(7000)]
        alert_id = self.post_alert(svc, ev)
        s = slack.wait_delivered(1, timeout=15)
        p = pd.wait_delivered(1, timeout=15)
        self.assertEqual(len(s), 1, slack.all())
        self.assertEqual(len(p), 1, pd.all())
        msg = s[0].json
        self.assertLessEqual(len(msg["text"]), 4000)
        self.assertLessEqual(len(msg["blocks"]), 50)
        header = [b for b in msg["blocks"] if b["type"] == "header"][0]["text"]["text"]
        self.assertLessEqual(len(header), 150)
        self.assertTrue(header.endswith("\u2026"), header)
        self.assertIn("Very Long Title", header)
        for b in msg["blocks"]:
            if b["type"] == "section":
                if "text" in b:
                    self.assertLessEqual(len(b["text"]["text"]), 3000)
                self.assertLessEqual(len(b.get("fields", [])), 10)
                for f in b.get("fields", []):
                    self.assertLessEqual(len(f["text"]), 2000)
        self.assertIn("\u2026", json.dumps(msg, ensure_ascii=False))
        self.assertIn("Step 0:", s[0].body.decode())
        ev_pd = p[0].json
        self.assertLessEqual(len(p[0].body), 512 * 1024)
        self.assertEqual(ev_pd["event_action"], "trigger")
        self.assertEqual(ev_pd["dedup_key"], alert_id)
        self.assertLessEqual(len(ev_pd["payload"]["summary"]), 1024)
        self.assertEqual(ev_pd["payload"]["severity"], "warning")


# ---- retries and dead letters ------------------------------------------------------------------

class RetryTest(DeliveryTestCase):
    def test_429_retry_after_seconds_is_a_floor(self):
        slack = self.slack_receiver()
        slack.script("/slack", Reply(429, {"ok": False, "error": "rate_limited", "retry_after": 2},
                                     headers={"Retry-After": "2"}))
        svc = self.service([self.slack_dest(slack)])
        self.post_alert(svc)
        got = slack.wait_delivered(1, timeout=15)
        self.assertEqual(len(got), 1, slack.all())
        self.assertQuiet([slack], [2], seconds=1.5)
        first, second = slack.all()
        self.assertEqual(first.answered, 429)
        self.assertGreaterEqual(second.arrived - first.arrived, 1.98,
                                "retried before Retry-After: 2 had passed")
        self.assertEqual(first.body, second.body)

    def test_429_retry_after_http_date_is_a_floor(self):
        pd = self.pd_receiver()
        pd.script("/pd", Reply(429, {"status": "throttle"},
                               headers={"Retry-After": http_date(time.time() + 3)}))
        svc = self.service([self.pd_dest(pd)])
        alert_id = self.post_alert(svc)
        got = pd.wait_delivered(1, timeout=15)
        self.assertEqual(len(got), 1, pd.all())
        first, second = pd.all()[:2]
        # The date has whole seconds: at least 2 s of the 3 remain after the first answer.
        self.assertGreaterEqual(second.arrived - first.arrived, 1.9)
        self.assertEqual(second.json["dedup_key"], alert_id)
        self.assertQuiet([pd], [2], seconds=1)

    def test_500_five_times_then_200(self):
        hook = self.hook_receiver()
        hook.script("/hook", *[Reply(500, b"boom") for _ in range(5)])
        svc = self.service([self.hook_dest(hook, timeout_ms=2000, connect_timeout_ms=1000)])
        alert_id = self.post_alert(svc)
        # Full jitter on 1 s doubling: at most 1+2+4+8+16 = 31 s before the sixth attempt.
        got = hook.wait_delivered(1, timeout=60)
        self.assertEqual(len(got), 1, hook.all())
        self.assertEqual(hook.count(), 6, hook.all())
        self.assertEqual([r.answered for r in hook.all()], [500] * 5 + [200])
        for r in hook.all():
            self.check_hook(r, alert_id)
        self.assertQuiet([hook], [6], seconds=2)
        rows = self.wait_outbox(svc, lambda rows: rows and rows[0]["state"] == "done", 5,
                                "--destination", "hook")
        self.assertEqual([r["state"] for r in rows], ["done"], rows)

    def test_garbage_and_resets_are_retried_not_dead_letters(self):
        # A receiver that answers something other than HTTP, or resets, is broken for now,
        # not refusing the alert: libcurl's "Received HTTP/0.9" must not park it.
        hook = self.hook_receiver()
        hook.script("/hook", Reply(None, raw=b"garbage, not HTTP\r\n\r\n"),
                    Reply(None, reset=True), Reply(None, raw=b"\x00\x01\x02"))
        svc = self.service([self.hook_dest(hook, timeout_ms=2000, connect_timeout_ms=1000)])
        alert_id = self.post_alert(svc)
        got = hook.wait_delivered(1, timeout=30)
        self.assertEqual(len(got), 1, hook.all())
        self.assertEqual(hook.count(), 4, hook.all())
        self.check_hook(got[0], alert_id)
        rows = self.wait_outbox(svc, lambda rows: rows and rows[0]["state"] == "done", 5,
                                "--destination", "hook")
        self.assertEqual([r["state"] for r in rows], ["done"], rows)

    def test_400_invalid_payload_is_a_dead_letter_then_retry(self):
        slack = self.slack_receiver()
        slack.script("/slack", Reply(400, b"invalid_payload", content_type="text/html"))
        svc = self.service([self.slack_dest(slack)])
        alert_id = self.post_alert(svc)
        slack.wait_requests(1, timeout=10)
        self.assertQuiet([slack], [1], seconds=5)  # no retry storm: one attempt only
        dead = self.wait_outbox(svc, lambda rows: len(rows) == 1, 5, "--dead")
        self.assertEqual(len(dead), 1, dead)
        row = dead[0]
        for key in ("id", "destination", "kind", "ref", "state", "attempts", "last_error"):
            self.assertIn(key, row)
        self.assertEqual(row["destination"], "slack")
        self.assertEqual(row["kind"], "alert")
        self.assertEqual(row["ref"], alert_id)
        self.assertEqual(row["state"], "dead")
        self.assertIn("400", row["last_error"])
        self.assertIn("invalid_payload", row["last_error"])
        self.assertRegex(svc.stderr_text(), r"(?i)error.*dead letter|dead letter.*400")
        # The operator sends it again; Slack now answers 200.
        r, _ = svc.outbox("retry", str(row["id"]))
        self.assertEqual(r.returncode, 0, r.stderr)
        got = slack.wait_delivered(1, timeout=10)
        self.assertEqual(len(got), 1, slack.all())
        self.check_slack_alert(got[0], alert_id, images_in(got[0]).pop())
        self.assertQuiet([slack], [2], seconds=2)
        _, dead = svc.outbox("list", "--dead")
        self.assertEqual(dead, [])
        # Last, as it is cosmetic beside the rest: the listing counts the attempt that failed.
        self.assertGreaterEqual(row["attempts"], 1, "a dead letter after one try shows %r" % row)

    def test_dead_letter_drop(self):
        pd = self.pd_receiver()
        pd.script("/pd", Reply(400, {"status": "invalid event",
                                     "message": "Event object is invalid",
                                     "errors": ["Length of 'routing_key' is incorrect"]}))
        svc = self.service([self.pd_dest(pd)])
        alert_id = self.post_alert(svc)
        dead = self.wait_outbox(svc, lambda rows: len(rows) == 1, 10, "--dead")
        self.assertEqual(len(dead), 1, dead)
        self.assertEqual(dead[0]["ref"], alert_id)
        self.assertIn("400", dead[0]["last_error"])
        self.assertIn("invalid event", dead[0]["last_error"])
        # retry and drop refuse what is not a dead letter.
        r, _ = svc.outbox("drop", "999999")
        self.assertNotEqual(r.returncode, 0)
        r, _ = svc.outbox("drop", str(dead[0]["id"]))
        self.assertEqual(r.returncode, 0, r.stderr)
        _, rows = svc.outbox("list")
        self.assertEqual([x for x in rows if x["id"] == dead[0]["id"]], [])
        self.assertQuiet([pd], [1], seconds=2)

    def test_hanging_receiver_times_out_retry_succeeds_ingest_stays_fast(self):
        slack = self.slack_receiver()
        slack.script("/slack", Reply(None, delay=4))  # reads, then says nothing for 4 s
        svc = self.service([self.slack_dest(slack, timeout_ms=1000, connect_timeout_ms=1000)])
        first = self.post_alert(svc)
        slack.wait_requests(1, timeout=10)
        # While the only lane waits on the hanging receiver, ingest answers at once.
        latencies, more = [], []
        for _ in range(10):
            t0 = time.monotonic()
            more.append(self.post_alert(svc))
            latencies.append(time.monotonic() - t0)
        self.assertLess(max(latencies), 0.5, latencies)
        got = slack.wait_delivered(11, timeout=20)
        self.assertEqual(len(got), 11, slack.all())
        reqs = slack.all()
        self.assertIsNone(reqs[0].answered)
        retry_of_first = [r for r in reqs[1:] if images_in(r) == images_in(reqs[0])]
        self.assertEqual(len(retry_of_first), 1, reqs)
        self.assertGreaterEqual(retry_of_first[0].arrived - reqs[0].arrived, 0.95,
                                "the 1 s timeout did not fire first")
        self.assertLess(retry_of_first[0].arrived - reqs[0].arrived, 3.9,
                        "the transfer waited for the receiver, not for timeout_ms")
        per_image = {}
        for r in got:
            for img in images_in(r):
                per_image[img] = per_image.get(img, 0) + 1
        self.assertEqual(sorted(per_image.values()), [1] * 11, per_image)
        self.assertRegex(svc.stderr_text(), r"(?i)time(d)? ?out")


# ---- crash safety, isolation -------------------------------------------------------------------

class CrashTest(DeliveryTestCase):
    def test_kill9_with_pending_alerts_then_restart_delivers_each_once(self):
        slack, pd, hook = self.slack_receiver(), self.pd_receiver(), self.hook_receiver()
        for r in (slack, pd, hook):
            r.down()
        dests = [self.slack_dest(slack), self.pd_dest(pd), self.hook_dest(hook)]
        svc = self.service(dests)
        images = [unique_image_id() for _ in range(5)]
        alerts = {self.post_alert(svc, matching_event(image_id=img)): img for img in images}
        self.assertEqual(len(alerts), 5)
        # Each destination has found its receiver down (connection refused). While it is down
        # the destination holds and probes, so not every row is tried: all 15 stay pending.
        def tried_everywhere(rows):
            failed = {r["destination"] for r in rows if r["attempts"] >= 1 and r["last_error"]}
            return len(rows) == 15 and len(failed) == 3
        rows = self.wait_outbox(svc, tried_everywhere, 10, "--pending")
        self.assertTrue(tried_everywhere(rows), rows)
        svc.kill9()
        for r in (slack, pd, hook):
            r.up()
        again = Service(self, config=self.config_path, state_dir=svc.state_dir).start()
        for r in (slack, pd, hook):
            r.wait_delivered(5, timeout=45)
        time.sleep(2)
        for rcv in (slack, pd, hook):
            per = {}
            for req in rcv.delivered():
                for img in images_in(req) & set(images):
                    per[img] = per.get(img, 0) + 1
            self.assertEqual(per, {img: 1 for img in images},
                             "%s: deliveries per image %r" % (rcv.name, per))
        for req in pd.delivered():
            self.assertIn(req.json["dedup_key"], alerts)
        for req in hook.delivered():
            self.check_hook(req, req.json["id"])
            self.assertEqual(alerts[req.json["id"]], images_in(req).pop())
        _, pending = again.outbox("list", "--pending")
        self.assertEqual(pending, [])


    def test_sigterm_while_a_receiver_hangs_stops_in_time_and_resumes(self):
        hook = self.hook_receiver()
        hook.script("/hook", Reply(None, delay=60))  # reads the request, never answers
        svc = self.service([self.hook_dest(hook, timeout_ms=30000)])
        alert_id = self.post_alert(svc)
        hook.wait_requests(1, timeout=10)
        t0 = time.monotonic()
        rc = svc.stop()  # fails the test when SIGTERM takes more than harness.STOP_TIMEOUT
        self.assertEqual(rc, 0, svc.stderr_text()[-2000:])
        self.assertLess(time.monotonic() - t0, harness.STOP_TIMEOUT)
        _, rows = harness.outbox_cli(svc.state_dir, "list", "--pending")
        self.assertEqual([r["ref"] for r in rows], [alert_id], "the abandoned send is not pending")
        again = Service(self, config=self.config_path, state_dir=svc.state_dir).start()
        got = hook.wait_delivered(1, timeout=15)
        self.assertEqual(len(got), 1, hook.all())
        self.check_hook(got[0], alert_id)
        self.assertQuiet([hook], [2], seconds=2)
        _, pending = again.outbox("list", "--pending")
        self.assertEqual(pending, [])


class IsolationTest(DeliveryTestCase):
    def test_failing_slack_neither_delays_nor_duplicates_pagerduty(self):
        slack = self.receiver(Reply(500, b"rollup_error"), name="slack")
        pd = self.pd_receiver()
        svc = self.service([self.slack_dest(slack), self.pd_dest(pd)])
        ids = []
        for i in range(2):
            t0 = time.monotonic()
            ids.append(self.post_alert(svc))
            got = pd.wait_delivered(i + 1, timeout=10)
            self.assertEqual(len(got), i + 1)
            self.assertLess(got[i].arrived - t0, 2.0, "PagerDuty waited for Slack")
            self.assertEqual(got[i].json["dedup_key"], ids[i])
        time.sleep(QUIET_SECONDS)
        self.assertEqual(pd.count(), 2, pd.all())
        self.assertGreaterEqual(slack.count(), 3, "Slack is not being retried")
        self.assertEqual(slack.delivered(), [])


# ---- resolution --------------------------------------------------------------------------------

class ResolveTest(DeliveryTestCase):
    def setUp(self):
        self.slack = self.slack_receiver()
        self.pd = self.pd_receiver()
        self.hook = self.hook_receiver()
        self.svc = self.service([self.slack_dest(self.slack), self.pd_dest(self.pd),
                                 self.hook_dest(self.hook)])

    def all_delivered(self, n, timeout=10):
        for rcv in (self.slack, self.pd, self.hook):
            self.assertEqual(len(rcv.wait_delivered(n, timeout=timeout)), n,
                             "%s: %r" % (rcv.name, rcv.all()))

    def test_make_public_then_private_then_public_again(self):
        image = unique_image_id()
        first = self.post_alert(self.svc, matching_event(image_id=image))
        self.all_delivered(1)
        # Taking back another image's exposure resolves nothing.
        r = self.svc.post_events(dumps(make_private_event(unique_image_id())))
        self.assertAccepted(r, 1, 0)
        r = self.svc.post_events(dumps(make_private_event(image)))
        body = self.assertAccepted(r, 1, 0)
        self.assertEqual(body.get("alerts"), [], body)
        self.all_delivered(2)
        self.assertQuiet([self.slack, self.pd, self.hook], [2, 2, 2], seconds=1.5)

        trigger, resolve = self.pd.delivered()
        self.assertEqual(trigger.json["event_action"], "trigger")
        self.assertEqual(resolve.json.get("event_action"), "resolve")
        self.assertEqual(resolve.json.get("dedup_key"), first)
        self.assertEqual(resolve.json.get("dedup_key"), trigger.json["dedup_key"])
        self.assertEqual(resolve.json.get("routing_key"), ROUTING_KEY)

        msg = self.slack.delivered()[1].json
        self.assertIsInstance(msg.get("text"), str)
        self.assertRegex(msg["text"], r"(?i)resolved")
        self.assertIn(image, json.dumps(msg))
        self.assertLessEqual(len(msg.get("blocks", [])), 50)
        for b in msg.get("blocks", []):
            if b.get("type") == "header":
                self.assertLessEqual(len(b["text"]["text"]), 150)

        self.check_hook(self.hook.delivered()[1], first, kind="resolve")

        # A new exposure of the same image opens a new alert and pages again.
        second = self.post_alert(self.svc, matching_event(image_id=image))
        self.assertNotEqual(second, first)
        self.all_delivered(3)
        page = self.pd.delivered()[2].json
        self.assertEqual(page["event_action"], "trigger")
        self.assertEqual(page["dedup_key"], second)
        self.check_hook(self.hook.delivered()[2], second, kind="alert")
        self.assertIn(image, self.slack.delivered()[2].body.decode())
        self.assertQuiet([self.slack, self.pd, self.hook], [3, 3, 3], seconds=1.5)

    def test_reset_image_attribute_resolves(self):
        image = unique_image_id()
        alert_id = self.post_alert(self.svc, matching_event(image_id=image))
        self.all_delivered(1)
        # Resetting another attribute takes nothing back.
        self.assertAccepted(self.svc.post_events(dumps(reset_event(image, "kernel"))), 1, 0)
        self.assertAccepted(self.svc.post_events(dumps(reset_event(image))), 1, 0)
        self.all_delivered(2)
        resolve = self.pd.delivered()[1].json
        self.assertEqual(resolve["event_action"], "resolve")
        self.assertEqual(resolve["dedup_key"], alert_id)
        self.check_hook(self.hook.delivered()[1], alert_id, kind="resolve")
        self.assertQuiet([self.slack, self.pd, self.hook], [2, 2, 2], seconds=1.5)


class ResolveOrderTest(DeliveryTestCase):
    def test_resolve_never_overtakes_its_pending_trigger(self):
        """PagerDuty drops a resolve for a key it has not seen: the trigger must go first even
        when it is waiting for a retry."""
        pd = self.pd_receiver()
        # The trigger's first try meets a 429 that holds it back for 3 s.
        pd.script("/pd", Reply(429, {"status": "throttle"}, headers={"Retry-After": "3"}))
        svc = self.service([self.pd_dest(pd)])
        image = unique_image_id()
        alert_id = self.post_alert(svc, matching_event(image_id=image))
        pd.wait_requests(1, timeout=10)
        self.assertAccepted(svc.post_events(dumps(make_private_event(image))), 1, 0)
        got = pd.wait_delivered(2, timeout=30)
        self.assertEqual(len(got), 2, pd.all())
        self.assertEqual([r.json["event_action"] for r in got], ["trigger", "resolve"],
                         "PagerDuty got the resolve before the trigger")
        self.assertEqual({r.json["dedup_key"] for r in got}, {alert_id})


# ---- TLS and secrets ---------------------------------------------------------------------------

class TlsTest(DeliveryTestCase):
    def test_self_signed_certificate_is_refused(self):
        if shutil.which("openssl") is None:
            self.skipTest("no openssl to make a certificate")
        d = make_temp_dir(self, "trailhook-tls-")
        rcv = self.receiver(slack_ok(), name="tls", tls_context=self_signed_context(d))
        self.assertTrue(rcv.url().startswith("https://127.0.0.1:"))
        svc = self.service([self.slack_dest(rcv)])
        alert_id = self.post_alert(svc)
        self.assertTrue(rcv.wait_for(lambda r: r.tls_failures >= 1, 10),
                        "trailhook never tried the TLS receiver")
        rows = self.wait_outbox(svc, lambda rows: rows and rows[0]["attempts"] >= 1, 10,
                                "--destination", "slack")
        self.assertEqual(len(rows), 1, rows)
        row = rows[0]
        self.assertEqual(row["ref"], alert_id)
        self.assertEqual(row["state"], "pending", "an unverifiable peer is retried, not parked")
        self.assertGreaterEqual(row["attempts"], 1)
        self.assertRegex(row["last_error"] or "", r"(?i)ssl|certificate|tls")
        self.assertEqual(rcv.all(), [], "a request went through an unverified TLS connection")


class SecretsTest(DeliveryTestCase):
    def test_secrets_never_in_logs_metrics_or_outbox(self):
        token = "xoxslacktoken" + uuid.uuid4().hex
        routing_key = uuid.uuid4().hex  # 32 characters, like an integration key
        hook_secret = "whsec" + uuid.uuid4().hex
        hmac_key = "hmackey" + uuid.uuid4().hex
        secrets = [token, routing_key, hook_secret, hmac_key]
        slack = self.receiver(Reply(400, b"invalid_token"), name="slack")
        slack.script("*", Reply(500, b"rollup_error"))
        pd = self.receiver(Reply(400, {"status": "invalid event", "message": "bad"}), name="pd")
        pd.script("*", Reply(429, {"status": "throttle"}, headers={"Retry-After": "1"}))
        hook = self.receiver(Reply(403, b"forbidden"), name="hook")
        hook.script("*", Reply(503, b"unavailable"))
        closed = "http://127.0.0.1:%d/hook/%s" % (harness.free_port(), token)
        dests = [
            {"name": "slack", "type": "slack",
             "url": slack.url("/services/T0AAAA/B0BBBB/" + token)},
            {"name": "pd", "type": "pagerduty", "url": pd.url("/pd"), "secret": routing_key},
            {"name": "hook", "type": "webhook", "url": hook.url("/hook"), "secret": hook_secret,
             "secret_header": HOOK_SECRET_HEADER, "hmac_secret": hmac_key},
            {"name": "down", "type": "webhook", "url": closed, "secret": hook_secret,
             "hmac_secret": hmac_key, "connect_timeout_ms": 500},
        ]
        svc = self.service(dests, env={"TRAILHOOK_LOG_LEVEL": "debug"})
        image = unique_image_id()
        self.post_alert(svc, matching_event(image_id=image))
        svc.post_events(dumps(make_private_event(image)))
        dead = self.wait_outbox(svc, lambda rows: len({r["destination"] for r in rows}) >= 3,
                                20, "--dead")
        self.assertEqual({r["destination"] for r in dead}, {"slack", "pd", "hook"}, dead)
        self.wait_outbox(svc, lambda rows: any(r["destination"] == "down" and r["attempts"] >= 1
                                               for r in rows), 10, "--pending")
        # The hook receiver saw the secrets (they are meant for it) ...
        self.assertEqual(hook.all()[0].header(HOOK_SECRET_HEADER), hook_secret)
        self.assertEqual(hook.all()[0].header(SIGNATURE_HEADER),
                         signature_of(hook.all()[0].body, hmac_key))
        self.assertEqual(pd.all()[0].json["routing_key"], routing_key)
        # ... and nobody else does.
        outputs = {}
        for args in (("list",), ("list", "--dead"), ("list", "--pending")):
            r, _ = svc.outbox(*args)
            outputs["outbox " + " ".join(args)] = (r.stdout + r.stderr).decode()
        outputs["/metrics"] = svc.request("GET", "/metrics", auth=True).body.decode()
        outputs["/alerts"] = svc.request("GET", "/alerts?limit=100").body.decode()
        svc.stop()
        outputs["stderr"] = svc.stderr_text()
        outputs["stdout"] = "\n".join(svc.stdout_lines)
        self.assertIn("slack", outputs["stderr"])  # the log did talk about the destinations
        for where, text in outputs.items():
            for s in secrets:
                self.assertNotIn(s, text, "a secret (%s...) appears in %s" % (s[:8], where))


if __name__ == "__main__":
    unittest.main()
