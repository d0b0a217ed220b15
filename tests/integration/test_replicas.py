"""Several replicas on one Redis (issue "Several replicas: Redis", item 4).

Two or three `trailhook serve` processes, each with its own port and state_dir, share one real
redis-server (redis_server.py: a private one on a free loopback port, AOF fsynced on every write)
through TRAILHOOK_STATE_BACKEND=redis and TRAILHOOK_STATE_REDIS_URL, and the same destinations:
loopback receivers standing in for Slack, PagerDuty (routing key; dedup_key = alert id) and a
signed webhook (receiver.py). What the replicas must share: seen eventIDs, dedup windows, alerts
and the outbox.

  SameEventTest        the same matching event on two replicas (an EventBridge retry landing
                       elsewhere; in turn, then at the same instant): both 202 with the same alert
                       id, duplicates=1 on the second; one Slack message, one PagerDuty trigger
                       (dedup_key = the alert id), one webhook delivery.
  OneImageTest         events for one image (distinct eventIDs) spread over three replicas, the
                       first three at the same instant: one alert, event_count = the number of
                       events on every replica's GET /alerts; one notification per destination.
  KilledReplicaTest    receivers down, events posted to one replica only; once its lanes hold the
                       rows (pending in the destinations' consumer groups), kill -9; receivers up:
                       another replica (claim_after_seconds 8) delivers every alert, exactly once
                       per destination.
  RedisRestartTest     Redis stopped and restarted under load from client threads posting to two
                       replicas: while down ingest answers 503 with Retry-After (never 202) and
                       /readyz turns 503 within 6 s; clients re-send their 503s like EventBridge
                       until a 202. After the restart: /readyz 200 again, every 202 has its stored
                       alert, every alert delivered once per destination, no duplicate beyond an
                       at-least-once one the outage excuses (a receiver's 2xx from 0.5 s before the
                       stop until Redis was back, whose acknowledgement Redis could not take;
                       counted apart). GET /alerts is read again on a 503 (Retry-After); one after
                       /readyz said 200 again is noted in the summary.
  StartWithoutRedisTest a replica started while Redis is down starts (healthz 200), is unready
                       and answers 503 + Retry-After, and becomes ready when Redis comes up.

At the end the module prints a table (events acknowledged, 503s re-sent, alerts, and per
destination: delivered, duplicates, lost). Skipped, saying why, when redis-server is not installed.
Run by hand:
    cd tests/integration && TRAILHOOK_BIN=../../build/trailhook python3 -m unittest -v test_replicas
"""

import hashlib
import hmac
import http.client
import random
import threading
import time
import unittest

import harness
from harness import Service, ServiceTestCase, dumps, matching_event, outbox_cli, write_config
from harness import unique_image_id
from receiver import (HMAC_KEY, HOOK_SECRET, HOOK_SECRET_HEADER, IMAGE_RE, ROUTING_KEY,
                      SIGNATURE_HEADER, Receiver, Reply, pagerduty_ok, slack_ok, webhook_ok)
from redis_server import RedisServer, require_redis_server

DESTS = ("slack", "pagerduty", "webhook")

QUIET_SECONDS = 2.5     # nothing more may arrive for this long once everything was delivered
DELIVERY_TIMEOUT = 30.0
READY_DOWN_WITHIN = 6.0  # /readyz 503 this soon after Redis stops (housekeeper probes every 5 s)
READY_UP_WITHIN = 20.0   # /readyz 200 this soon after Redis is back (reconnect backoff + probe)
EXCUSE_S = 0.5           # a duplicate is excused when its first 2xx came this long before
                         # Redis stopped (or later, while it was down)

T0 = time.monotonic()
SUMMARY = []  # one dict per scenario, printed by tearDownModule


def setUpModule():
    require_redis_server()


def tearDownModule():
    if not SUMMARY:
        return
    print_summary(SUMMARY)


def print_summary(rows):
    print()
    print("replicas on one Redis (redis-server %s, %s): %.1fs"
          % (rows[0].get("redis_version", "?"), harness.BIN, time.monotonic() - T0))
    head = "%-34s %4s %6s %5s %6s" % ("scenario", "repl", "acked", "503s", "alerts")
    sub = " | %-9s %4s %4s %4s"
    print(head + "".join(sub % (d, "dlv", "dup", "lost") for d in DESTS) + " | result")
    rows = sorted(rows, key=lambda r: r["scenario"])
    for r in rows:
        line = "%-34s %4d %6d %5d %6d" % (r["scenario"][:34], r["replicas"], r["acked"],
                                          r["s503"], r["alerts"])
        for d in DESTS:
            s = r["dests"].get(d, {})
            dup = str(s.get("dup", "-"))
            if s.get("excused"):
                dup += "(%d)" % s["excused"]
            line += " | %-9s %4s %4s %4s" % ("", s.get("delivered", "-"), dup, s.get("lost", "-"))
        print(line + " | " + r.get("result", "?"))
    print("acked = events answered 202 (re-posts of an acknowledged event included); 503s = "
          "503 answers (each with Retry-After) the clients sent again until 202; alerts = distinct "
          "alerts the 202s named; dlv = those alerts answered 2xx by the receiver; dup = 2xx "
          "beyond the first (in parentheses: excused by a Redis stop); lost = acknowledged, never "
          "delivered")
    for r in rows:
        for note in r.get("notes", []):
            print("  %s: %s" % (r["scenario"], note))


def signature_of(body):
    return "sha256=" + hmac.new(HMAC_KEY.encode(), body, hashlib.sha256).hexdigest()


class ReplicaTestCase(ServiceTestCase):
    """One redis-server, three receivers and a shared config per test; replicas on demand."""

    scenario = None  # the summary's name for this test's row

    def setUp(self):
        self.redis = RedisServer(self).start()
        self.receivers = {}
        for name, ok in (("slack", slack_ok()), ("pagerduty", pagerduty_ok()),
                         ("webhook", webhook_ok())):
            r = Receiver(default=ok, name=name).start()
            self.addCleanup(r.stop)
            self.receivers[name] = r
        self.replicas = []
        self.row = None

    # -- setup helpers --

    def config(self, timeout_ms=5000, concurrency=4):
        common = {"rate_per_minute": 60000, "burst": 1000, "concurrency": concurrency,
                  "timeout_ms": timeout_ms, "connect_timeout_ms": 1000}
        s, p, h = (self.receivers[d] for d in DESTS)
        dests = [
            dict(name="slack", type="slack", url=s.url("/slack"), **common),
            dict(name="pagerduty", type="pagerduty", url=p.url("/pd"), secret=ROUTING_KEY,
                 **common),
            dict(name="webhook", type="webhook", url=h.url("/hook"), secret=HOOK_SECRET,
                 secret_header=HOOK_SECRET_HEADER, hmac_secret=HMAC_KEY, **common),
        ]
        return write_config(self, {"destinations": dests})

    def redis_env(self, claim_after=None):
        env = {"TRAILHOOK_STATE_BACKEND": "redis",
               "TRAILHOOK_STATE_REDIS_URL": self.redis.url(0),
               "TRAILHOOK_WORKERS": "2"}
        if claim_after is not None:
            env["TRAILHOOK_STATE_CLAIM_AFTER_SECONDS"] = str(claim_after)
        return env

    def replica(self, config, claim_after=None, start=True):
        """A `trailhook serve` on the shared Redis with its own port and state_dir."""
        svc = Service(self, config=config, env=self.redis_env(claim_after))
        svc.name = "replica-%d" % (len(self.replicas) + 1)
        self.replicas.append(svc)
        return svc.start() if start else svc

    # -- reading what happened --

    def diag(self, ids=(), lines=25):
        """The replicas' warn/error lines (and any line naming one of @p ids), the streams'
        consumer groups, Redis's log tail: appended to failure messages."""
        out = []
        for svc in self.replicas:
            text = svc.stderr_text().splitlines()
            pick = [l for l in text if '"level":"warn"' in l or '"level":"error"' in l
                    or any(i in l for i in ids)]
            state = "running" if svc.proc and svc.proc.poll() is None else \
                "exited %s" % (svc.proc.returncode if svc.proc else None)
            out.append("--- %s (port %s, %s), %d of %d stderr lines:" %
                       (getattr(svc, "name", "?"), svc.port, state, min(lines, len(pick)),
                        len(text)))
            out.extend("  " + l[:400] for l in pick[-lines:])
        try:
            if self.redis.running():
                out.append("--- redis stream groups: %s" % self.redis.stream_groups())
        except Exception as e:  # noqa: BLE001 (diagnostics only)
            out.append("--- redis stream groups: %r" % e)
        out.append("--- redis log tail:\n" + self.redis.log_text()[-1500:])
        return "\n".join(out)

    def deliveries(self, images):
        """{dest: {image: [2xx requests naming it]}} for the images of @p images."""
        images = set(images)
        out = {}
        for d in DESTS:
            per = {}
            for req in self.receivers[d].delivered():
                for img in set(IMAGE_RE.findall(req.body.decode("utf-8", "replace"))) & images:
                    per.setdefault(img, []).append(req)
            out[d] = per
        return out

    def wait_delivered(self, images, timeout=DELIVERY_TIMEOUT):
        """Waits until every image of @p images reached every destination (2xx)."""
        deadline = time.monotonic() + timeout
        images = set(images)
        while True:
            got = self.deliveries(images)
            if all(set(got[d]) >= images for d in DESTS) or time.monotonic() > deadline:
                return got
            time.sleep(0.2)

    def check_requests(self, alert_of_image, got):
        """PagerDuty's dedup_key and the webhook's id are the alert id; webhooks are signed."""
        for img, reqs in got["pagerduty"].items():
            for q in reqs:
                self.assertEqual(q.json.get("dedup_key"), alert_of_image[img],
                                 "PagerDuty dedup_key is not the alert id: %r" % q)
                self.assertEqual(q.json.get("event_action"), "trigger")
                self.assertEqual(q.json.get("routing_key"), ROUTING_KEY)
        for img, reqs in got["webhook"].items():
            for q in reqs:
                self.assertEqual(q.json.get("id"), alert_of_image[img], q)
                self.assertEqual(q.header(SIGNATURE_HEADER), signature_of(q.body))
                self.assertEqual(q.header(HOOK_SECRET_HEADER), HOOK_SECRET)

    def tally(self, images, got, excuse=None):
        """Per destination: delivered, dup, excused (by @p excuse(first request)), lost."""
        stats = {}
        for d in DESTS:
            per = got[d]
            dup = excused = 0
            for img, reqs in per.items():
                if len(reqs) > 1:
                    first = min(reqs, key=lambda q: q.answered_at)
                    if excuse is not None and excuse(first):
                        excused += len(reqs) - 1
                    else:
                        dup += len(reqs) - 1
            stats[d] = {"delivered": len(set(per) & set(images)), "dup": dup + excused,
                        "unexcused": dup, "excused": excused, "lost": len(set(images) - set(per))}
        return stats

    def summary_row(self, replicas, acked, s503, alerts, stats, notes=()):
        self.row = {"scenario": self.scenario, "replicas": replicas, "acked": acked,
                    "s503": s503, "alerts": alerts, "dests": stats, "notes": list(notes),
                    "redis_version": self.redis.version(), "result": "FAIL"}
        SUMMARY.append(self.row)

    def passed(self):
        if self.row is not None:
            self.row["result"] = "ok"

    def tearDown(self):
        if self.row is None:  # failed before its deliveries were counted
            SUMMARY.append({"scenario": self.scenario, "replicas": len(self.replicas),
                            "acked": getattr(self, "acked", 0), "s503": getattr(self, "s503", 0),
                            "alerts": 0, "dests": {}, "notes": [],
                            "redis_version": self.redis.version(), "result": "FAIL (early)"})

    def dead_letters(self, svc):
        r, rows = outbox_cli(svc.state_dir, "list", "--dead", env=self.redis_env())
        self.assertEqual(r.returncode, 0, "trailhook outbox list --dead on Redis failed: %s"
                         % r.stderr.decode(errors="replace"))
        return rows

    def assert_exactly_once(self, images, alert_of_image, excuse=None, notes=()):
        """Waits for every delivery, then a quiet spell; asserts one 2xx per alert and
        destination (duplicates @p excuse accepts are reported, not failed)."""
        got = self.wait_delivered(images)
        time.sleep(QUIET_SECONDS)  # a second send would show up now
        got = self.deliveries(images)
        stats = self.tally(images, got, excuse)
        self.summary_row(len(self.replicas), self.acked, self.s503,
                         len(set(alert_of_image.values())), stats, notes)
        self.check_requests(alert_of_image, got)
        ids = sorted(set(alert_of_image.values()))
        for d in DESTS:
            s = stats[d]
            if s["lost"]:
                missing = sorted(set(images) - set(got[d]))
                self.fail("%s: %d of %d alerts never delivered (images %s)\n%s"
                          % (d, s["lost"], len(images), missing[:5],
                             self.diag([alert_of_image[i] for i in missing[:5]])))
            if s["unexcused"]:
                twice = {img: [(q.answered_at - T0) for q in reqs]
                         for img, reqs in got[d].items() if len(reqs) > 1}
                self.fail("%s: %d duplicate deliveries (image: 2xx times) %s\n%s"
                          % (d, s["unexcused"], dict(list(twice.items())[:5]),
                             self.diag([alert_of_image[i] for i in list(twice)[:5]])))
        return got, stats, ids


# ---- 1. the same event on two replicas ---------------------------------------------------------

class SameEventTest(ReplicaTestCase):
    scenario = "1 same event on 2 replicas"

    def test_same_event_on_two_replicas_is_one_alert_and_one_page(self):
        cfg = self.config()
        a, b = self.replica(cfg), self.replica(cfg)
        self.acked, self.s503 = 0, 0
        alert_of_image = {}

        # In turn: EventBridge's retry lands on the other replica after the first answered.
        ev = matching_event()
        image = ev["requestParameters"]["imageId"]
        first = self.assertAccepted(a.post_events(dumps(ev)), 1, 1)
        second = self.assertAccepted(b.post_events(dumps(ev)), 1, 1)
        self.acked += 2
        self.assertEqual(first.get("duplicates"), 0, first)
        self.assertEqual(second.get("duplicates"), 1, "the second replica did not see the "
                         "eventID the first stored: %r" % second)
        self.assertEqual(second["alerts"], first["alerts"], "two replicas, two alerts for one "
                         "event")
        alert_of_image[image] = first["alerts"][0]

        # At the same instant on both (a retry racing the first delivery), five times.
        for _ in range(5):
            ev = matching_event()
            body = dumps(ev)
            answers = [None, None]
            barrier = threading.Barrier(2)

            def post(i, svc):
                barrier.wait()
                answers[i] = svc.post_events(body)

            threads = [threading.Thread(target=post, args=(i, s)) for i, s in enumerate((a, b))]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            docs = [self.assertAccepted(r, 1, 1) for r in answers]
            self.acked += 2
            self.assertEqual(docs[0]["alerts"], docs[1]["alerts"],
                             "the same event at once on two replicas opened two alerts: %r"
                             % docs)
            self.assertEqual(sorted(d.get("duplicates") for d in docs), [0, 1],
                             "one of the two must count the eventID as a duplicate: %r" % docs)
            alert_of_image[ev["requestParameters"]["imageId"]] = docs[0]["alerts"][0]

        # Each alert counted its event once, whichever replica is asked.
        for svc in (a, b):
            stored = {x["id"]: x for x in svc.alerts(1000)}
            for img, aid in alert_of_image.items():
                self.assertIn(aid, stored, "%s does not list alert %s" % (svc.name, aid))
                self.assertEqual(stored[aid]["event_count"], 1, stored[aid])
        self.assert_exactly_once(list(alert_of_image), alert_of_image)
        for svc in (a, b):
            self.assertEqual(self.dead_letters(svc), [])
        self.passed()


# ---- 2. one image, events on three replicas ---------------------------------------------------

class OneImageTest(ReplicaTestCase):
    scenario = "2 one image over 3 replicas"
    EVENTS = 9

    def test_events_for_one_image_on_three_replicas_make_one_alert(self):
        cfg = self.config()
        reps = [self.replica(cfg) for _ in range(3)]
        self.acked, self.s503 = 0, 0
        image = unique_image_id()
        events = [matching_event(image_id=image) for _ in range(self.EVENTS)]
        answers = [None] * len(events)

        # The first three at the same instant, one per replica (the race for the dedup window);
        # then the rest round robin.
        barrier = threading.Barrier(3)

        def post(i):
            if i < 3:
                barrier.wait()
            answers[i] = reps[i % 3].post_events(dumps(events[i]))

        threads = [threading.Thread(target=post, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for i in range(3, len(events)):
            post(i)
        ids = set()
        for i, r in enumerate(answers):
            doc = self.assertAccepted(r, 1, 1)
            self.assertEqual(doc.get("duplicates"), 0, doc)
            ids.update(doc["alerts"])
        self.acked = len(answers)
        self.assertEqual(len(ids), 1, "events for one image on three replicas opened %d alerts: "
                         "%s\n%s" % (len(ids), sorted(ids), self.diag(sorted(ids))))
        alert_id = ids.pop()
        for svc in reps:
            stored = svc.alert(alert_id)
            self.assertIsNotNone(stored, "%s does not list alert %s" % (svc.name, alert_id))
            self.assertEqual(stored["event_count"], self.EVENTS,
                             "%s: event_count %s, expected %d" % (svc.name, stored["event_count"],
                                                                 self.EVENTS))
            same = [x for x in svc.alerts(1000) if image in x.get("dedup_key", "")]
            self.assertEqual([x["id"] for x in same], [alert_id], same)
        self.assert_exactly_once([image], {image: alert_id})
        self.passed()


# ---- 3. a replica killed with deliveries pending ------------------------------------------------

class KilledReplicaTest(ReplicaTestCase):
    scenario = "3 kill -9 with deliveries pending"
    ALERTS = 10
    CLAIM_AFTER = 8

    def pending_by_consumer(self):
        """{dest: {consumer: pending}} from the destinations' consumer groups."""
        out = {d: {} for d in DESTS}
        for g in self.redis.stream_groups():
            where = (g["stream"] + " " + g["group"]).lower()
            if "dead" in where:
                continue
            for d in DESTS:
                if d in where:
                    for c, n in g["consumers"].items():
                        if n:
                            out[d][c] = out[d].get(c, 0) + n
        return out

    def test_a_killed_replicas_deliveries_are_taken_over_once(self):
        # The receivers hold every request (then answer 503): the victim's lanes are in the
        # middle of a delivery when it dies, each holding one row a shared outbox gave it alone.
        # A lane takes one row at a time, so the others stay in the stream for any replica.
        # Each attempt waits out timeout_ms (6 s), so the lanes are caught mid-delivery; with
        # connect_timeout_ms it stays below claim_after_seconds (8 s), as the loader demands: a
        # live replica's delivery is never taken over.
        cfg = self.config(timeout_ms=6000)
        victim = self.replica(cfg, claim_after=self.CLAIM_AFTER)
        for r in self.receivers.values():
            r.set_default(Reply(503, delay=20.0))
        self.acked, self.s503 = 0, 0
        images = [unique_image_id() for _ in range(self.ALERTS)]
        alert_of_image = {}
        for img in images:
            doc = self.assertAccepted(victim.post_events(dumps(matching_event(image_id=img))),
                                      1, 1)
            alert_of_image[img] = doc["alerts"][0]
            self.acked += 1

        # Wait until the victim's lanes hold rows: read from every destination's group
        # (pending, not acknowledged: the receivers hold the requests). Rows its lanes did not
        # read yet stay new in the stream, for any replica; so wait for all, or for no change
        # in 1.5 s.
        deadline = time.monotonic() + 10
        last, since = None, time.monotonic()
        while True:
            held = self.pending_by_consumer()
            total = {d: sum(held[d].values()) for d in DESTS}
            if total != last:
                last, since = total, time.monotonic()
            if all(total[d] >= self.ALERTS for d in DESTS) or time.monotonic() > deadline or \
                    (all(total[d] >= 1 for d in DESTS) and time.monotonic() - since > 1.5):
                break
            time.sleep(0.2)
        victim_consumers = {c for d in DESTS for c in held[d]}
        notes = ["at the kill the victim's consumers held %s rows (slack/pagerduty/webhook, of %d "
                 "each)" % ("/".join(str(total[d]) for d in DESTS), self.ALERTS)]
        self.assertTrue(all(total[d] >= 1 for d in DESTS),
                        "the victim's lanes took no row of some destination within 10 s "
                        "(pending per destination and consumer: %s); the takeover would not be "
                        "tested\n%s" % (held, self.diag()))

        victim.kill9()
        t_kill = time.monotonic()
        oks = {"slack": slack_ok(), "pagerduty": pagerduty_ok(), "webhook": webhook_ok()}
        for name, r in self.receivers.items():
            r.set_default(oks[name])
        survivor = self.replica(cfg, claim_after=self.CLAIM_AFTER)
        got, stats, _ = self.assert_exactly_once(images, alert_of_image, notes=notes)
        last = max(q.answered_at for d in DESTS for reqs in got[d].values() for q in reqs)
        self.row["notes"].append("all delivered by the survivor %.1fs after the kill "
                                 "(claim_after_seconds %d)" % (last - t_kill, self.CLAIM_AFTER))
        # Nothing is left with the dead consumer, and the survivor lists every alert.
        after = self.pending_by_consumer()
        for d in DESTS:
            left = {c: n for c, n in after[d].items() if c in victim_consumers}
            self.assertEqual(left, {}, "%s: rows still pending with the dead replica's consumer "
                             "after everything was delivered: %s" % (d, left))
        stored = {x["id"] for x in survivor.alerts(1000)}
        self.assertLessEqual(set(alert_of_image.values()), stored)
        self.assertEqual(self.dead_letters(survivor), [])
        self.passed()


# ---- 4. Redis stopped and restarted under load ------------------------------------------------

class Load:
    """Client threads posting fresh matching events to the replicas in turn; a 503 is sent again
    (after a pause, like EventBridge) until it gets its 202."""

    def __init__(self, replicas, clients=3, think=(0.03, 0.08)):
        self.replicas = replicas
        self.clients = clients
        self.think = think
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.give_up = threading.Event()
        self.acked = {}        # image -> alert id
        self.answers = []      # (t_sent, t_answered, status, image, replica name)
        self.s503 = 0
        self.no_retry_after = []
        self.anomalies = []
        self.threads = []

    def start(self):
        for i in range(self.clients):
            t = threading.Thread(target=self.client, args=(i,), daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def finish(self, timeout):
        """Stops new events; waits for every client's 503s to be acknowledged."""
        self.stop.set()
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.1, deadline - time.monotonic()))
        if any(t.is_alive() for t in self.threads):
            self.give_up.set()
            for t in self.threads:
                t.join(10)
            return False
        return True

    def client(self, idx):
        rng = random.Random(idx)
        n = idx
        while not self.stop.is_set():
            image = unique_image_id()
            body = dumps(matching_event(image_id=image))
            while not self.give_up.is_set():
                svc = self.replicas[n % len(self.replicas)]
                n += 1
                t_sent = time.monotonic()
                try:
                    r = svc.post_events(body, timeout=20)
                except (OSError, http.client.HTTPException) as e:
                    with self.lock:
                        self.anomalies.append("%s: no answer: %r" % (svc.name, e))
                    time.sleep(0.5)
                    continue
                t_done = time.monotonic()
                with self.lock:
                    self.answers.append((t_sent, t_done, r.status, image, svc.name))
                if r.status == 202:
                    try:
                        alerts = r.json.get("alerts")
                    except ValueError:
                        alerts = None
                    with self.lock:
                        if not isinstance(alerts, list) or len(alerts) != 1:
                            self.anomalies.append("%s: 202 %r" % (svc.name, r.body[:300]))
                        else:
                            self.acked[image] = alerts[0]
                    break
                if r.status == 503:
                    with self.lock:
                        self.s503 += 1
                        if not (r.header("Retry-After") or "").strip():
                            self.no_retry_after.append(svc.name)
                    time.sleep(rng.uniform(0.3, 0.8))  # EventBridge backs off, then retries
                    continue
                with self.lock:
                    self.anomalies.append("%s: unexpected %r" % (svc.name, r))
                break
            time.sleep(rng.uniform(*self.think))


class RedisRestartTest(ReplicaTestCase):
    scenario = "4 Redis stop/restart under load"
    DOWN_SECONDS = 8.0

    def wait_readyz(self, replicas, want, within, since):
        """Polls /readyz of @p replicas until each answered @p want (200/503) once.
        @return {name: seconds after @p since}, or fails."""
        seen = {}
        deadline = since + within
        while len(seen) < len(replicas):
            for svc in replicas:
                if svc.name in seen:
                    continue
                try:
                    status = svc.request("GET", "/readyz", auth=False, timeout=3).status
                except OSError:
                    status = None
                if status == want:
                    seen[svc.name] = time.monotonic() - since
            if len(seen) < len(replicas):
                if time.monotonic() > deadline:
                    self.fail("/readyz of %s did not answer %d within %.0fs (answered so far: "
                              "%s)\n%s" % ([s.name for s in replicas if s.name not in seen],
                                           want, within, seen, self.diag()))
                time.sleep(0.1)
        return seen

    def list_alerts(self, svc, notes, within=10.0):
        """GET /alerts?limit=1000, sent again on 503 (Retry-After) for up to @p within seconds;
        a 503 after /readyz said 200 is noted for the summary."""
        deadline = time.monotonic() + within
        refused = 0
        while True:
            r = svc.request("GET", "/alerts?limit=1000")
            if r.status == 200:
                if refused:
                    notes.append("%s: GET /alerts answered 503 %d time(s) (%s) after /readyz was "
                                 "200 again, then 200" % (svc.name, refused, r_first.body[:80]))
                return r.json["alerts"]
            if r.status != 503 or time.monotonic() > deadline:
                self.fail("%s: GET /alerts: %r\n%s" % (svc.name, r, self.diag()))
            if not refused:
                r_first = r
            refused += 1
            time.sleep(0.25)

    def test_redis_restart_under_load_loses_nothing_acknowledged(self):
        cfg = self.config()
        reps = [self.replica(cfg), self.replica(cfg)]
        load = Load(reps).start()
        time.sleep(3.0)
        with load.lock:
            before = len(load.acked)
        self.assertGreater(before, 5, "the load got few 202s before the stop: %d\n%s"
                           % (before, self.diag()))

        t_stop_begin = time.monotonic()
        self.redis.stop()
        t_down = time.monotonic()
        unready = self.wait_readyz(reps, 503, READY_DOWN_WITHIN, t_down)
        for svc in reps:  # healthz stays 200: a Redis outage must not get the pod restarted
            self.assertEqual(svc.request("GET", "/healthz", auth=False).status, 200)
        time.sleep(max(0.0, self.DOWN_SECONDS - (time.monotonic() - t_down)))
        t_up_begin = time.monotonic()
        self.redis.start()
        t_up = time.monotonic()
        ready = self.wait_readyz(reps, 200, READY_UP_WITHIN, t_up)
        time.sleep(3.0)  # more load on the recovered replicas
        finished = load.finish(timeout=30)
        self.assertTrue(finished, "clients still had unacknowledged events 30 s after the "
                        "load stopped\n%s" % self.diag())

        with load.lock:
            answers = list(load.answers)
            acked = dict(load.acked)
        self.acked, self.s503 = len(acked), load.s503
        during = [a for a in answers if a[0] >= t_down and a[1] <= t_up_begin]
        statuses = {}
        for a in during:
            statuses[a[2]] = statuses.get(a[2], 0) + 1
        before = sum(1 for a in answers if a[2] == 503 and a[0] < t_down)
        after = sum(1 for a in answers if a[2] == 503 and a[1] > t_up)
        notes = ["while Redis was down (%.1fs): %s answers %s; /readyz 503 after %s s; /readyz "
                 "200 again %s s after the restart"
                 % (t_up_begin - t_down, len(during), statuses,
                    ", ".join("%.1f" % v for v in unready.values()),
                    ", ".join("%.1f" % v for v in ready.values())),
                 "503s outside the outage: %d sent while Redis was stopping, %d after it was back "
                 "(%d of them after /readyz was 200 on both)"
                 % (before, after, sum(1 for a in answers if a[2] == 503 and
                                       a[0] > t_up + max(ready.values())))]
        self.assertEqual(load.anomalies, [], "unexpected answers: %s\n%s"
                         % (load.anomalies[:5], self.diag()))
        self.assertEqual(load.no_retry_after, [], "503 without Retry-After from %s"
                         % sorted(set(load.no_retry_after)))
        bad = [a for a in during if a[2] != 503]
        self.assertEqual(bad, [], "answers other than 503 while Redis was down "
                         "(t_sent, t_answered, status, image, replica): %s\n%s"
                         % ([(round(x[0] - T0, 2), round(x[1] - T0, 2)) + x[2:] for x in bad[:5]],
                            self.diag([x[3] for x in bad[:5]])))
        self.assertGreater(statuses.get(503, 0), 0, "no request was answered while Redis was "
                           "down: the scenario tested nothing")

        # Every 202 has its alert, one per image, on both replicas.
        ids = set(acked.values())
        self.assertEqual(len(ids), len(acked), "distinct images shared an alert")
        listed = {}
        for svc in reps:
            listed[svc.name] = self.list_alerts(svc, notes)
        for svc in reps:
            stored = {x["id"]: x for x in listed[svc.name]}
            missing = sorted(ids - set(stored))
            self.assertEqual(missing, [], "%s: %d acknowledged alerts are not stored (first: "
                             "%s)\n%s" % (svc.name, len(missing), missing[:5],
                                          self.diag(missing[:5])))
            for img, aid in acked.items():
                self.assertTrue(stored[aid]["dedup_key"].endswith(img), stored[aid])
        # A 503 committed nothing: a refused image has no alert but the one its 202 named.
        by_image = {}
        for x in listed[reps[0].name]:
            m = IMAGE_RE.search(x.get("dedup_key", ""))
            if m:
                by_image.setdefault(m.group(0), []).append(x["id"])
        split = {img: v for img, v in by_image.items() if img in acked and len(v) > 1}
        self.assertEqual(split, {}, "images with several alerts")

        def excused(first):  # answered 2xx just before the stop: the ack could not be recorded
            return t_stop_begin - EXCUSE_S <= first.answered_at <= t_up

        got, stats, _ = self.assert_exactly_once(list(acked), acked, excuse=excused, notes=notes)
        for d in DESTS:
            for img, reqs in got[d].items():
                if len(reqs) > 1:
                    times = sorted(q.answered_at - t_stop_begin for q in reqs)
                    self.row["notes"].append(
                        "%s: alert %s answered 2xx %s s after the stop began (excused: the first "
                        "2xx came as Redis went away; its acknowledgement could not be stored)"
                        % (d, acked[img], ", ".join("%+.2f" % t for t in times)))
        for svc in reps:
            self.assertEqual(self.dead_letters(svc), [])
        self.passed()


# ---- 5. a replica started while Redis is down --------------------------------------------------

class StartWithoutRedisTest(ReplicaTestCase):
    scenario = "5 replica started before Redis"

    def test_starts_unready_and_becomes_ready_when_redis_comes_up(self):
        self.redis.stop()
        cfg = self.config()
        svc = self.replica(cfg)  # start() waits for /healthz 200
        self.assertEqual(svc.request("GET", "/healthz", auth=False).status, 200)
        deadline = time.monotonic() + READY_DOWN_WITHIN
        while True:
            r = svc.request("GET", "/readyz", auth=False)
            if r.status == 503 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertEqual(r.status, 503, "/readyz without Redis: %r" % r)
        ev = matching_event()
        r = svc.post_events(dumps(ev))
        self.assertEqual(r.status, 503, "POST /events without Redis: %r" % r)
        self.assertTrue((r.header("Retry-After") or "").strip(), "503 without Retry-After")
        s503 = 1

        t_up = time.monotonic()
        self.redis.start()
        deadline = t_up + READY_UP_WITHIN
        while True:
            r = svc.request("GET", "/readyz", auth=False)
            if r.status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertEqual(r.status, 200, "/readyz %.0fs after Redis came up: %r\n%s"
                         % (READY_UP_WITHIN, r, self.diag()))
        t_ready = time.monotonic() - t_up
        doc = self.assertAccepted(svc.post_events(dumps(ev)), 1, 1)  # the 503'd event, again
        self.assertEqual(doc.get("duplicates"), 0, "the refused attempt left its eventID: %r"
                         % doc)
        image = ev["requestParameters"]["imageId"]
        self.acked, self.s503 = 1, s503
        self.assert_exactly_once([image], {image: doc["alerts"][0]},
                                 notes=["ready %.1fs after Redis came up" % t_ready])
        self.passed()


if __name__ == "__main__":
    unittest.main()
