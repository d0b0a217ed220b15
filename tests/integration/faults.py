#!/usr/bin/env python3
"""The fault-injection run: kill -9 under load, broken receivers; nothing acknowledged is lost.

One trailhook (a state dir, destinations slack + pagerduty + webhook) takes continuous load from
several client threads — single matching events for fresh images, non-matching events, re-posts
of acknowledged events (an EventBridge retry: same eventID), new events for already alerted
images, and arrays mixing them — while its receivers fail a fraction of requests (500, 429 with
Retry-After: 1, a hang past the destination's timeout_ms, a connection reset, garbage bytes that
are not HTTP, a truncated answer) and the service is killed with SIGKILL every few seconds (some
kills right after a burst of posts, so deliveries are in flight) and restarted on the same state
dir and port. A request that got no answer (the kill) or 503 is not acknowledged and is sent
again, as EventBridge does, until it gets its 202.

At the end the load stops, the receivers answer 2xx, trailhook restarts once more (SIGTERM, then
start) and the outbox must drain (with a deadline). Then, from the 202 answers, the store (read
with sqlite3 after the last stop) and what each receiver answered 2xx, it prints a table and
checks:
  - every alert id a 2xx answer returned is stored, and every acknowledged matching event's
    image has an alert (one alert per image);
  - each destination got every acknowledged alert at least once (lost = 0);
  - no alert was delivered twice, unless the delivery answered first was followed within 0.5 s
    by a kill (at-least-once: the receiver's 2xx came, trailhook died before recording it) —
    those are "excused" duplicates, reported apart;
  - no dead letter, a consistent 202 for every request (counts, distinct alerts, an eventID
    counted once), no unexpected status, no crash, an intact database.
Exit status 0 only when all of that holds; the last line says RESULT: PASS or RESULT: FAIL.

Run by hand from the source tree:
    python3 tests/integration/faults.py                  (binary: $TRAILHOOK_BIN or build/trailhook)
    python3 tests/integration/faults.py --duration 30 --kills 8 --seed 42     (a quicker look)
    python3 tests/integration/faults.py --faults 500,429,hang,reset           (some faults only)
The seed drives every random choice of the script (load mix, kill times, receiver faults); it is
printed, and a failure prints the command line that replays it (thread timing still varies).
On failure the service's logs (every generation) and a copy of its state dir are kept and their
place printed. ctest runs it as integration_faults (label slow).
"""

import argparse
import hashlib
import hmac
import http.client
import json
import os
import random
import re
import shutil
import sqlite3
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
if "TRAILHOOK_BIN" not in os.environ:
    os.environ["TRAILHOOK_BIN"] = os.path.join(os.path.dirname(os.path.dirname(HERE)), "build",
                                               "trailhook")
os.environ.setdefault("TH_SOURCE_DIR", os.path.dirname(os.path.dirname(HERE)))
os.environ.setdefault("TH_FIXTURES", os.path.join(os.path.dirname(HERE), "fixtures"))

import harness  # noqa: E402  (after the environment is set: harness reads it on import)
from harness import (Service, dumps, matching_event, non_matching_event,  # noqa: E402
                     outbox_cli, unique_image_id, write_config)
from receiver import Receiver, Reply, pagerduty_ok, slack_ok, webhook_ok  # noqa: E402

ROUTING_KEY = "ROUTINGKEY0123456789abcdef012345"
HOOK_SECRET = "s3cret"
HMAC_KEY = "hmackey"
IMAGE_RE = re.compile(r"ami-[0-9a-f]{17}")
SLACK_ALERT_RE = re.compile(r"Alert: ([0-9a-f]{32})")
EXCUSE_S = 0.5  # a duplicate is excused when its earlier 2xx came at most this long before a kill
FAULT_KINDS = ("500", "429", "hang", "reset", "garbage", "truncated")
DESTS = ("slack", "pagerduty", "webhook")


class Cleanups:
    """What harness expects of a test case: addCleanup, run in reverse at the end."""

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


T0 = time.monotonic()


def log(fmt, *args):
    print("[%7.1fs] %s" % (time.monotonic() - T0, fmt % args), flush=True)


def rel(t):
    return "%.3fs" % (t - T0) if t is not None else "-"


def fault_replies(kinds, retry_after, hang_s):
    """The receivers' broken answers, one entry per kind (fail_randomly picks uniformly)."""
    table = {
        "500": Reply(500, b"internal error"),
        "429": Reply(429, {"ok": False, "error": "rate_limited", "retry_after": retry_after},
                     headers={"Retry-After": str(retry_after)}),
        # Reads the request, answers nothing, closes after the destination gave up.
        "hang": Reply(None, delay=hang_s),
        "reset": Reply(None, reset=True),
        "garbage": Reply(None, raw=b"\x16\x03\x01\x00\x05garbage, not HTTP\r\n\r\n"),
        "truncated": Reply(None, raw=b"HTTP/1.1 500 Internal Server Error\r\n"
                                      b"Content-Length: 100\r\n\r\ntrunc"),
    }
    return [table[k] for k in kinds]


def pending_count(state_dir):
    r, rows = outbox_cli(state_dir, "list", "--pending")
    if r.returncode != 0:
        raise RuntimeError("outbox list --pending: %s" % r.stderr.decode())
    return len(rows)  # the command lists at most 1000: "1000" reads "1000 or more"


# ---- load --------------------------------------------------------------------------------------

class Load:
    """What the clients sent and what trailhook acknowledged (2xx), shared by the threads."""

    def __init__(self, svc, args):
        self.svc = svc
        self.args = args
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.c = dict(requests=0, acked=0, no_answer=0, s503=0, other=0, retried=0,
                      events=0, matching=0, reposts=0, matching_reposts=0, joins=0, duplicates=0,
                      leftovers=0)
        self.acked_events = {}   # eventID -> (matching, image)
        self.pool = []           # acknowledged (doc, matching, image) for re-posts
        self.image_alerts = {}   # image -> set of alert ids answered for it
        self.acked_alerts = {}   # alert id -> monotonic time of the first 2xx naming it
        self.anomalies = []      # (kind, text)
        self.other_statuses = {}
        self.leftovers = []      # unacknowledged requests when the load stopped
        self.pool_rng = random.Random(args.seed)

    def anomaly(self, kind, text):
        with self.lock:
            self.anomalies.append((kind, text))
        log("ANOMALY %s: %s", kind, text)

    # -- building requests --

    def _acked_sample(self, rng, matching_only=False):
        with self.lock:
            if not self.pool:
                return None
            for _ in range(8):
                doc, matching, image = self.pool[rng.randrange(len(self.pool))]
                if matching or not matching_only:
                    return doc, matching, image
        return None

    def _item(self, rng, kind, images):
        """One event of a request: a dict with doc, eventID, image, matching, repost."""
        if kind == "repost":
            got = self._acked_sample(rng)
            if got is not None and got[2] not in images:
                doc, matching, image = got
                return dict(doc=doc, event_id=doc["eventID"], image=image, matching=matching,
                            repost=True, join=False)
            kind = "fresh"
        if kind == "join":
            got = self._acked_sample(rng, matching_only=True)
            if got is not None and got[2] not in images:
                image = got[2]
                doc = matching_event(image_id=image)
                return dict(doc=doc, event_id=doc["eventID"], image=image, matching=True,
                            repost=False, join=True)
            kind = "fresh"
        if kind == "nonmatch":
            doc = non_matching_event()
            return dict(doc=doc, event_id=doc["eventID"], image=doc["requestParameters"]["imageId"],
                        matching=False, repost=False, join=False)
        image = unique_image_id()
        doc = matching_event(image_id=image)
        return dict(doc=doc, event_id=doc["eventID"], image=image, matching=True, repost=False,
                    join=False)

    def build(self, rng):
        """@return (items, body bytes): mostly one fresh matching event, sometimes an array."""
        r = rng.random()
        if r < 0.55:
            kinds, array = ["fresh"], False
        elif r < 0.65:
            kinds, array = ["nonmatch"], False
        elif r < 0.77:
            kinds, array = ["repost"], False
        elif r < 0.82:
            kinds, array = ["join"], False
        else:
            array = True
            kinds = [rng.choices(("fresh", "nonmatch", "repost", "join"), (6, 2, 2, 1))[0]
                     for _ in range(rng.randint(2, 12))]
        return self.build_kinds(rng, kinds, array)

    def build_kinds(self, rng, kinds, array=True):
        items, images = [], set()
        for k in kinds:
            it = self._item(rng, k, images)
            if it["matching"] and it["image"] in images:  # distinct images within a request
                continue
            images.add(it["image"])
            items.append(it)
        docs = [it["doc"] for it in items]
        body = dumps(docs if array or len(docs) != 1 else docs[0])
        return items, body

    # -- sending --

    def post_once(self, body):
        """@return (status or None when there was no answer, parsed body or None)."""
        with self.lock:
            self.c["requests"] += 1
        try:
            r = self.svc.post_events(body, timeout=20)
        except (OSError, http.client.HTTPException):
            return None, None
        try:
            doc = r.json
        except ValueError:
            doc = None
        return r.status, doc

    def send(self, items, body, rng, who):
        """Sends until acknowledged; when the load stops first, leaves it for after the last
        restart. @return True when acknowledged."""
        first = True
        while True:
            if not first:
                with self.lock:
                    self.c["retried"] += 1
            first = False
            status, doc = self.post_once(body)
            if status is not None and 200 <= status < 300:
                self.record(items, status, doc, who)
                return True
            with self.lock:
                if status is None:
                    self.c["no_answer"] += 1
                elif status == 503:
                    self.c["s503"] += 1
                else:
                    self.c["other"] += 1
                    self.other_statuses[status] = self.other_statuses.get(status, 0) + 1
            if status is not None and status != 503:
                self.anomaly("unexpected_status", "%s answered %d: %r" % (who, status, doc))
                return False
            if self.stop.is_set():
                with self.lock:
                    self.leftovers.append((items, body))
                return False
            time.sleep(rng.uniform(0.1, 0.5))

    def record(self, items, status, doc, who):
        if status != 202 or not isinstance(doc, dict):
            self.anomaly("unexpected_2xx", "%s got %d: %r" % (who, status, doc))
            return
        matching = [it for it in items if it["matching"]]
        alerts = doc.get("alerts") if isinstance(doc.get("alerts"), list) else []
        reposts = sum(1 for it in matching if it["repost"])
        dups = doc.get("duplicates", -1)
        now = time.monotonic()
        if doc.get("accepted") != len(items) or doc.get("matched") != len(matching) \
                or len(alerts) != len(matching):
            self.anomaly("answer_mismatch",
                         "%s: %d events (%d matching) answered %s" %
                         (who, len(items), len(matching), json.dumps(doc)))
        if not (reposts <= dups <= len(matching)):
            self.anomaly("eventid_counted_twice" if dups < reposts else "answer_mismatch",
                         "%s: %d re-posted matching eventIDs (of %d matching), duplicates=%s: %s"
                         % (who, reposts, len(matching), dups,
                            [it["event_id"] for it in matching if it["repost"]]))
        with self.lock:
            self.c["acked"] += 1
            self.c["events"] += len(items)
            self.c["matching"] += len(matching)
            self.c["reposts"] += sum(1 for it in items if it["repost"])
            self.c["matching_reposts"] += reposts
            self.c["joins"] += sum(1 for it in items if it["join"])
            self.c["duplicates"] += max(dups, 0)
            for aid in alerts:
                self.acked_alerts.setdefault(aid, now)
            if len(alerts) == len(matching):
                for it, aid in zip(matching, alerts):
                    self.image_alerts.setdefault(it["image"], set()).add(aid)
            else:  # no order to rely on: the store check below still covers these images
                for it in matching:
                    self.image_alerts.setdefault(it["image"], set())
            for it in items:
                self.acked_events[it["event_id"]] = (it["matching"], it["image"])
                if not it["repost"] and not it["join"]:
                    entry = (it["doc"], it["matching"], it["image"])
                    if len(self.pool) < 4000:
                        self.pool.append(entry)
                    else:
                        self.pool[self.pool_rng.randrange(len(self.pool))] = entry

    def client(self, idx, seed):
        rng = random.Random(seed * 1000003 + idx)
        who = "client-%d" % idx
        while not self.stop.is_set():
            items, body = self.build(rng)
            if items:
                self.send(items, body, rng, who)
            time.sleep(rng.uniform(0, self.args.think))


# ---- the run -----------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=90.0, help="seconds of load")
    ap.add_argument("--kills", type=int, default=20, help="kill -9 count during the load")
    ap.add_argument("--seed", type=int, default=None, help="default: a fresh one, printed")
    ap.add_argument("--clients", type=int, default=4, help="client threads")
    ap.add_argument("--think", type=float, default=0.3,
                    help="most seconds a client waits between requests")
    ap.add_argument("--fail", type=float, default=0.25, help="fraction of requests failed")
    ap.add_argument("--faults", default=",".join(FAULT_KINDS),
                    help="comma-separated, of: " + ", ".join(FAULT_KINDS))
    ap.add_argument("--retry-after", type=int, default=1)
    ap.add_argument("--timeout-ms", type=int, default=2000, help="the destinations' timeout_ms")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--burst", type=int, default=30, help="events posted right before a "
                    "burst kill")
    ap.add_argument("--big-batch", type=int, default=300, help="events of the array a "
                    "mid-batch kill interrupts")
    ap.add_argument("--deadline", type=float, default=300.0,
                    help="seconds for the outbox to drain once the receivers answer 2xx")
    ap.add_argument("--keep", action="store_true", help="keep logs and state even on PASS")
    args = ap.parse_args(argv)
    if args.seed is None:
        args.seed = int.from_bytes(os.urandom(4), "big") % 1000000
    args.fault_kinds = [k.strip() for k in args.faults.split(",") if k.strip()]
    bad = [k for k in args.fault_kinds if k not in FAULT_KINDS]
    if bad:
        ap.error("unknown fault kind(s): %s" % ", ".join(bad))

    if not os.access(harness.BIN, os.X_OK):
        print("no trailhook binary at %s (set TRAILHOOK_BIN)" % harness.BIN, file=sys.stderr)
        return 2

    cl = Cleanups()
    try:
        return run(args, cl)
    finally:
        cl.run()


class Generations:
    """The stderr lines of every process the run started (harness keeps only the last one's)."""

    def __init__(self, svc):
        self.svc = svc
        self.gens = []  # (generation number, how it ended, stderr list)

    def started(self):
        self.gens.append([len(self.gens), "running", self.svc.stderr_lines])

    def ended(self, how):
        if self.gens:
            self.gens[-1][1] = how

    def lines(self):
        for n, how, lines in self.gens:
            for line in list(lines):
                yield n, line

    def write(self, path):
        with open(path, "w") as f:
            for n, how, lines in self.gens:
                f.write("==== generation %d (%s) ====\n" % (n, how))
                for line in list(lines):
                    f.write(line + "\n")

    def grep(self, needle, limit=12):
        out = ["gen %d: %s" % (n, line) for n, line in self.lines() if needle in line]
        return out[:limit] + (["... %d more" % (len(out) - limit)] if len(out) > limit else [])


def run(args, cl):
    rng = random.Random(args.seed)
    replay = ("python3 faults.py --seed %d --duration %g --kills %d --clients %d --faults %s"
              % (args.seed, args.duration, args.kills, args.clients, ",".join(args.fault_kinds)))
    log("seed %d (replay: %s)", args.seed, replay)

    hang_s = args.timeout_ms / 1000.0 + 1.0
    receivers = []
    for i, (name, ok) in enumerate((("slack", slack_ok()), ("pagerduty", pagerduty_ok()),
                                    ("webhook", webhook_ok()))):
        r = Receiver(default=ok, name=name, seed=args.seed * 10 + i).start()
        cl.addCleanup(r.stop)
        if args.fault_kinds and args.fail > 0:
            r.fail_randomly(args.fail, fault_replies(args.fault_kinds, args.retry_after, hang_s))
        receivers.append(r)
    slack, pd, hook = receivers
    common = {"rate_per_minute": 60000, "burst": 1000, "concurrency": args.concurrency,
              "timeout_ms": args.timeout_ms, "connect_timeout_ms": 1000}
    dests = [
        dict(name="slack", type="slack", url=slack.url("/slack"), **common),
        dict(name="pagerduty", type="pagerduty", url=pd.url("/pd"), secret=ROUTING_KEY, **common),
        dict(name="webhook", type="webhook", url=hook.url("/hook"), secret=HOOK_SECRET,
             secret_header="X-Hook-Secret", hmac_secret=HMAC_KEY, **common),
    ]
    cfg = write_config(cl, {"drain_grace_seconds": 1, "destinations": dests})
    svc = Service(cl, config=cfg, env={"TRAILHOOK_LOG_LEVEL": "info"})
    gens = Generations(svc)
    crashes = []  # (what, text)

    def start_service(why):
        try:
            svc.start()
        except RuntimeError as e:
            gens.started()
            gens.ended("failed to start")
            crashes.append(("restart failed (%s)" % why, str(e)[-4000:]))
            log("RESTART FAILED (%s): %s", why, str(e)[-2000:])
            return False
        gens.started()
        return True

    if not start_service("first start"):
        return finish_early(args, cl, gens, svc, crashes, replay)
    log("trailhook %s on port %d, state %s; receivers %s", harness.BIN, svc.port, svc.state_dir,
        ", ".join("%s:%d" % (r.name, r.port) for r in receivers))
    log("receivers fail %.0f%% of requests with: %s (hang %.1fs > timeout_ms %d)",
        args.fail * 100, ", ".join(args.fault_kinds), hang_s, args.timeout_ms)

    load = Load(svc, args)
    threads = [threading.Thread(target=load.client, args=(i, args.seed), daemon=True,
                                name="client-%d" % i) for i in range(args.clients)]
    t_load = time.monotonic()
    for t in threads:
        t.start()

    # -- kill -9 at random moments --
    kills = []  # dict(t0, t1, mode, port)
    t_end = t_load + args.duration

    def gap():
        """Spreads the kills left over the load time left (a restart and a burst take time)."""
        left = args.kills - len(kills)
        room = t_end - time.monotonic() - 0.5
        if left <= 0 or room <= 0:
            return args.duration
        return min(room, max(1.0, rng.uniform(0.3, 1.7) * room / (left + 0.5)))

    next_kill = time.monotonic() + gap()
    port = svc.port
    while time.monotonic() < t_end and not crashes:
        if svc.proc.poll() is not None:
            rc = svc.proc.returncode
            svc.join_readers()
            gens.ended("exited on its own with %s" % rc)
            crashes.append(("exited on its own with %s" % rc, svc.stderr_text()[-4000:]))
            log("TRAILHOOK EXITED ON ITS OWN with %s", rc)
            if not start_service("after an exit"):
                break
            continue
        if len(kills) < args.kills and time.monotonic() >= next_kill:
            mode = rng.choices(("plain", "burst", "mid"), (4, 4, 2))[0]
            if mode == "burst":  # deliveries in flight
                items, body = load.build_kinds(rng, ["fresh"] * args.burst)
                load.send(items, body, random.Random(rng.random()), "burst")
                time.sleep(rng.uniform(0.0, 0.3))
            elif mode == "mid":  # a large array being evaluated and committed
                items, body = load.build_kinds(rng, ["fresh"] * args.big_batch)
                th = threading.Thread(target=load.send, daemon=True, name="mid-batch",
                                      args=(items, body, random.Random(rng.random()),
                                            "mid-batch"))
                th.start()
                threads.append(th)
                time.sleep(rng.uniform(0.0, 0.15))
            t0 = time.monotonic()
            svc.kill9()
            t1 = time.monotonic()
            gens.ended("killed at %s" % rel(t0))
            kills.append(dict(t0=t0, t1=t1, mode=mode))
            ok = start_service("after kill %d" % len(kills))
            log("kill %d (%s) at %s; restarted in %.2fs%s", len(kills), mode, rel(t0),
                time.monotonic() - t1, "" if svc.port == port else
                " on another port %s (the old one was busy)" % svc.port)
            port = svc.port
            if not ok:
                break
            next_kill = time.monotonic() + gap()
        time.sleep(0.02)

    load.stop.set()
    for t in threads:
        t.join(60)
    t_load_end = time.monotonic()
    log("load stopped after %.1fs: %d requests, %d acknowledged, %d alerts, %d kills, "
        "%d requests left unacknowledged", t_load_end - t_load, load.c["requests"],
        load.c["acked"], len(load.acked_alerts), len(kills), len(load.leftovers))

    if crashes:
        return finish_early(args, cl, gens, svc, crashes, replay, load)

    # -- the end: healthy receivers, one more restart, leftovers, drain --
    for r in receivers:
        r.fail_randomly(0.0)
    t_stop = time.monotonic()
    try:
        stop_rc = svc.stop()
    except AssertionError as e:
        stop_rc = "did not stop: %s" % e
    gens.ended("SIGTERM at %s, exit %s" % (rel(t_stop), stop_rc))
    log("last restart: SIGTERM -> exit %s in %.1fs", stop_rc, time.monotonic() - t_stop)
    if stop_rc != 0:
        crashes.append(("SIGTERM exit status %s" % stop_rc, svc.stderr_text()[-4000:]))
    if not start_service("last restart"):
        return finish_early(args, cl, gens, svc, crashes, replay, load)

    leftovers, load.leftovers = load.leftovers, []
    load.stop.clear()
    lrng = random.Random(args.seed + 1)
    for items, body in leftovers:
        load.send(items, body, lrng, "leftover")
    load.stop.set()
    load.c["leftovers"] = len(leftovers)
    if load.leftovers:
        load.anomaly("never_acknowledged", "%d requests" % len(load.leftovers))

    deadline = time.monotonic() + args.deadline
    drained = False
    last_report = 0
    n = None
    while time.monotonic() < deadline:
        if svc.proc.poll() is not None:
            crashes.append(("exited on its own with %s while draining" % svc.proc.returncode,
                            svc.stderr_text()[-4000:]))
            break
        n = pending_count(svc.state_dir)
        if n == 0:
            drained = True
            break
        if time.monotonic() - last_report > 10:
            log("pending rows: %s%s; delivered %s", n, "+" if n >= 1000 else "",
                ", ".join("%s %d" % (r.name, len(r.delivered())) for r in receivers))
            last_report = time.monotonic()
        time.sleep(1.0)
    t_drained = time.monotonic()
    log("outbox %s %.1fs after the load stopped", "drained" if drained else
        "NOT drained (%s pending)" % n, t_drained - t_load_end)
    time.sleep(3.0)  # anything still on its way would show as a duplicate

    _, dead = outbox_cli(svc.state_dir, "list", "--dead")
    _, pending_rows = outbox_cli(svc.state_dir, "list", "--pending")
    try:
        api_alerts = [a.get("id") for a in svc.alerts(1000)]
    except (AssertionError, OSError, ValueError) as e:
        api_alerts = None
        crashes.append(("GET /alerts failed", str(e)[:2000]))
    t_stop2 = time.monotonic()
    try:
        stop_rc2 = svc.stop()
    except AssertionError as e:
        stop_rc2 = "did not stop: %s" % e
    gens.ended("SIGTERM at %s, exit %s" % (rel(t_stop2), stop_rc2))
    if stop_rc2 != 0:
        crashes.append(("final SIGTERM exit status %s" % stop_rc2, svc.stderr_text()[-4000:]))

    return verify(args, cl, svc, gens, load, receivers, kills, crashes, dead, pending_rows,
                  api_alerts, drained, replay, t_load, t_load_end, t_drained)


def read_store(state_dir):
    """@return (alerts {id: dedup_key}, integrity_check text, error or None)."""
    path = os.path.join(state_dir, "trailhook.db")
    try:
        db = sqlite3.connect(path, timeout=10)
        try:
            integrity = "; ".join(r[0] for r in db.execute("PRAGMA integrity_check"))
            alerts = {row[0]: row[1] for row in db.execute("SELECT id, dedup_key FROM alerts")}
        finally:
            db.close()
        return alerts, integrity, None
    except sqlite3.Error as e:
        return {}, "?", str(e)


def delivered_alert_ids(rcv, image_to_alert):
    """@return ({alert id: [delivered requests, by answer time]}, unidentified 2xx count,
    bad signatures, non-trigger deliveries)."""
    per, unknown, bad_sig, other_kind = {}, 0, 0, 0
    for req in rcv.delivered():
        aid = None
        doc = req.json if isinstance(req.json, dict) else {}
        if rcv.name == "pagerduty":
            aid = doc.get("dedup_key")
            if doc.get("event_action") != "trigger":
                other_kind += 1
        elif rcv.name == "webhook":
            aid = doc.get("id")
            if doc.get("type", "alert") != "alert":
                other_kind += 1
            sig = "sha256=" + hmac.new(HMAC_KEY.encode(), req.body, hashlib.sha256).hexdigest()
            if req.header("X-Trailhook-Signature") != sig:
                bad_sig += 1
        else:
            text = req.body.decode("utf-8", "replace")
            m = SLACK_ALERT_RE.search(text)
            if m:
                aid = m.group(1)
            else:
                imgs = set(IMAGE_RE.findall(text))
                aid = next((image_to_alert[i] for i in imgs if i in image_to_alert), None)
        if not isinstance(aid, str):
            unknown += 1
            continue
        per.setdefault(aid, []).append(req)
    for reqs in per.values():
        reqs.sort(key=lambda q: q.answered_at)
    return per, unknown, bad_sig, other_kind


def excusing_kill(req, kills):
    """The kill that excuses re-sending after @p req (its 2xx came within EXCUSE_S before the
    kill, or the kill came while it was being answered), or None."""
    for k in kills:
        if req.arrived <= k["t1"] and req.answered_at >= k["t0"] - EXCUSE_S:
            return k
    return None


def verify(args, cl, svc, gens, load, receivers, kills, crashes, dead, pending_rows, api_alerts,
           drained, replay, t_load, t_load_end, t_drained):
    stored, integrity, db_error = read_store(svc.state_dir)
    api_missing = [a for a in (api_alerts or []) if a not in stored]
    acked = set(load.acked_alerts)
    missing = sorted(acked - set(stored))
    images_without = []
    split_images = []
    stored_images = {}
    for aid, key in stored.items():
        m = IMAGE_RE.search(key or "")
        if m:
            stored_images.setdefault(m.group(0), set()).add(aid)
    for img, aids in load.image_alerts.items():
        if not stored_images.get(img):
            images_without.append(img)
        if len(aids) > 1 or len(stored_images.get(img, ())) > 1:
            split_images.append((img, sorted(aids), sorted(stored_images.get(img, ()))))
    not_acked = set(stored) - acked
    image_to_alert = {img: min(a) for img, a in stored_images.items() if a}

    rows = []
    problems = []
    for rcv in receivers:
        per, unknown, bad_sig, other_kind = delivered_alert_ids(rcv, image_to_alert)
        dup = excused = unexcused = 0
        unexcused_list, excused_list = [], []
        for aid, reqs in per.items():
            if len(reqs) < 2:
                continue
            dup += len(reqs) - 1
            for q in reqs[:-1]:
                k = excusing_kill(q, kills)
                if k is not None:
                    excused += 1
                    excused_list.append((aid, q, k))
                else:
                    unexcused += 1
                    unexcused_list.append((aid, q, reqs))
        lost = sorted(acked - set(per))
        pend = {r["ref"] for r in list(pending_rows) + list(dead)
                if r.get("destination") == rcv.name}
        rows.append(dict(dest=rcv.name, delivered=len(acked & set(per)), dup=dup,
                         excused=excused, unexcused=unexcused, lost=len(lost),
                         lost_pending=len(set(lost) & pend), unknown=unknown,
                         not_acked=len(set(per) - acked), attempts=rcv.count(),
                         answered_2xx=len(rcv.delivered()), bad_sig=bad_sig,
                         other_kind=other_kind, lost_ids=lost, unexcused_list=unexcused_list,
                         excused_list=excused_list))

    c = load.c
    print()
    print("faults run: seed %d, %.0fs of load, %d clients, %d kills (%d right after a burst of "
          "%d, %d during an array of %d), receivers failing %.0f%% (%s; hang %.1fs vs "
          "timeout_ms %d)"
          % (args.seed, t_load_end - t_load, args.clients, len(kills),
             sum(1 for k in kills if k["mode"] == "burst"), args.burst,
             sum(1 for k in kills if k["mode"] == "mid"), args.big_batch, args.fail * 100,
             ", ".join(args.fault_kinds) or "none", args.timeout_ms / 1000.0 + 1.0,
             args.timeout_ms))
    fmt2 = "  %-44s %8s"
    print("ingest")
    print(fmt2 % ("requests sent (incl. retries)", c["requests"]))
    print(fmt2 % ("requests acknowledged (2xx)", c["acked"]))
    print(fmt2 % ("no answer (kill, refused) -> sent again", c["no_answer"]))
    print(fmt2 % ("503 -> sent again", c["s503"]))
    print(fmt2 % ("requests sent again (EventBridge-style retry)", c["retried"]))
    print(fmt2 % ("other statuses", c["other"]))
    print(fmt2 % ("unacknowledged at load stop, sent after restart", c["leftovers"]))
    print(fmt2 % ("events acknowledged", c["events"]))
    print(fmt2 % ("  of which re-posts of an acknowledged event", c["reposts"]))
    print(fmt2 % ("matching events acknowledged", c["matching"]))
    print(fmt2 % ("  of which re-posts of an acknowledged event", c["matching_reposts"]))
    print(fmt2 % ("  of which new events for an alerted image", c["joins"]))
    print(fmt2 % ("duplicates counted by trailhook (>= re-posts)", c["duplicates"]))
    print(fmt2 % ("distinct alerts acknowledged", len(acked)))
    print(fmt2 % ("alerts stored (read with sqlite3)", len(stored)))
    print(fmt2 % ("newest alerts via GET /alerts?limit=1000", len(api_alerts or [])))
    print(fmt2 % ("  of which not in the store", len(api_missing)))
    print(fmt2 % ("acknowledged alerts missing from the store", len(missing)))
    print(fmt2 % ("acknowledged images without a stored alert", len(images_without)))
    print(fmt2 % ("images with more than one alert", len(split_images)))
    print(fmt2 % ("stored alerts no 2xx named (info)", len(not_acked)))
    print("delivery")
    fmt = "  %-10s %9s %5s %8s %10s %5s %8s %8s %6s %7s"
    print(fmt % ("dest", "delivered", "dups", "excused", "unexcused", "lost", "attempts",
                 "2xx", "unknown", "bad_sig"))
    for r in rows:
        print(fmt % (r["dest"], r["delivered"], r["dup"], r["excused"], r["unexcused"],
                     r["lost"], r["attempts"], r["answered_2xx"], r["unknown"], r["bad_sig"]))
    gaps = [k["t0"] - q.answered_at for r in rows for _, q, k in r["excused_list"]]
    if gaps:
        print("  excused duplicates: the earlier 2xx came %.3f to %.3fs before its kill "
              "(negative: while the kill was under way)" % (min(gaps), max(gaps)))
    print("  delivered = acknowledged alerts answered 2xx at least once; dups = 2xx beyond the "
          "first; excused = re-sends after a 2xx answered at most %.1fs before a kill; lost = "
          "acknowledged, never answered 2xx; unknown = 2xx not naming an alert" % EXCUSE_S)
    print("dead letters: %d, pending at the end: %d, kills: %d, restarts: %d, database: %s, "
          "drained %.1fs after the load stopped, total %.1fs"
          % (len(dead), len(pending_rows), len(kills), len(gens.gens) - 1,
             db_error or integrity, t_drained - t_load_end, time.monotonic() - T0))

    # -- details of what went wrong --
    if crashes:
        problems.append("%d crash(es)/failed restart(s)" % len(crashes))
        for what, text in crashes:
            print("\nCRASH: %s\n%s" % (what, text))
    if db_error or integrity != "ok":
        problems.append("database: %s" % (db_error or integrity))
    if api_missing or (api_alerts is not None and len(api_alerts) < min(1000, len(stored))):
        problems.append("GET /alerts disagrees with the store: %d of %d unknown"
                        % (len(api_missing), len(api_alerts)))
    if missing:
        problems.append("%d acknowledged alerts not stored" % len(missing))
        print("\nacknowledged but not stored (first 10): %s" % missing[:10])
    if images_without:
        problems.append("%d acknowledged images without an alert" % len(images_without))
        print("\nacknowledged images without an alert (first 10): %s" % images_without[:10])
    if split_images:
        problems.append("%d images with several alerts" % len(split_images))
        for img, a, s in split_images[:10]:
            print("image %s: answered alerts %s, stored alerts %s" % (img, a, s))
    if dead:
        problems.append("%d dead letters" % len(dead))
        print("\ndead letters (first 10 of %d):" % len(dead))
        for d in dead[:10]:
            print("  #%s %s %s %s attempts=%s: %s" % (d.get("id"), d.get("destination"),
                                                      d.get("kind"), d.get("ref"),
                                                      d.get("attempts"), d.get("last_error")))
        reasons = {}
        for d in dead:
            key = re.sub(r"[0-9a-f]{32}", "<id>", str(d.get("last_error")))
            reasons[key] = reasons.get(key, 0) + 1
        for k, v in sorted(reasons.items(), key=lambda kv: -kv[1]):
            print("  %5d x %s" % (v, k))
    if not drained:
        problems.append("outbox not drained (%d pending)" % len(pending_rows))
    anomalies = {}
    for kind, text in load.anomalies:
        anomalies.setdefault(kind, []).append(text)
    for kind, texts in anomalies.items():
        problems.append("%d %s" % (len(texts), kind))
        print("\n%s (first 5 of %d):" % (kind, len(texts)))
        for t in texts[:5]:
            print("  " + t[:600])
    for r in rows:
        if r["lost"]:
            problems.append("%s: %d lost" % (r["dest"], r["lost"]))
            print("\n%s: lost (first 5 of %d; %d of them still pending or dead letters):"
                  % (r["dest"], r["lost"], r["lost_pending"]))
            for aid in r["lost_ids"][:5]:
                print("  alert %s, acknowledged at %s" % (aid, rel(load.acked_alerts.get(aid))))
                for line in gens.grep(aid, 6):
                    print("    " + line[:300])
        if r["unexcused"]:
            problems.append("%s: %d unexcused duplicates" % (r["dest"], r["unexcused"]))
            print("\n%s: unexcused duplicates (first 5 of %d):" % (r["dest"], r["unexcused"]))
            for aid, q, reqs in r["unexcused_list"][:5]:
                after = [k["t0"] - q.answered_at for k in kills if k["t0"] >= q.answered_at]
                print("  alert %s: 2xx at %s; deliveries answered at %s; next kill %s later"
                      % (aid, rel(q.answered_at), ", ".join(rel(x.answered_at) for x in reqs),
                         "%.3fs" % min(after) if after else "never"))
                for line in gens.grep(aid, 8):
                    print("    " + line[:300])
        if r["unknown"] or r["bad_sig"] or r["other_kind"]:
            problems.append("%s: %d unidentified 2xx, %d bad signatures, %d non-alert"
                            % (r["dest"], r["unknown"], r["bad_sig"], r["other_kind"]))
    sanitizer = any(m in line for _, line in gens.lines() for m in harness.SANITIZER_MARKERS)
    if sanitizer:
        problems.append("sanitizer report")
    if len(acked) == 0:
        problems.append("nothing acknowledged")

    excused_total = sum(r["excused"] for r in rows)
    keep_dir = None
    if problems or args.keep:
        keep_dir = keep_evidence(svc, gens, args.seed)
        print("\nlogs of every generation and a copy of the state dir: %s" % keep_dir)
    if problems:
        print("replay: %s" % replay)
        print("RESULT: FAIL (seed %d): %s" % (args.seed, "; ".join(problems)))
        return 1
    print("RESULT: PASS (seed %d): %d acknowledged alerts stored and delivered to %d destinations "
          "after %d kills, none lost, %d duplicates all excused by a kill, no dead letter"
          % (args.seed, len(acked), len(rows), len(kills), excused_total))
    return 0


def keep_evidence(svc, gens, seed):
    d = tempfile.mkdtemp(prefix="trailhook-faults-%d-" % seed)
    gens.write(os.path.join(d, "trailhook.stderr.log"))
    try:
        shutil.copytree(svc.state_dir, os.path.join(d, "state"))
    except OSError as e:
        print("cannot copy the state dir: %s" % e, file=sys.stderr)
    return d


def finish_early(args, cl, gens, svc, crashes, replay, load=None):
    if load is not None:
        load.stop.set()
    for what, text in crashes:
        print("\nCRASH: %s\n%s" % (what, text))
    try:
        svc.kill9()
    except Exception:  # noqa: BLE001 (best effort)
        pass
    keep_dir = keep_evidence(svc, gens, args.seed)
    print("\nlogs of every generation and a copy of the state dir: %s" % keep_dir)
    print("replay: %s" % replay)
    print("RESULT: FAIL (seed %d): %s" % (args.seed, "; ".join(w for w, _ in crashes)))
    return 1


if __name__ == "__main__":
    sys.exit(main())
