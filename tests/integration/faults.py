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

The third fault is a disk that fills up. Run as root (mount -t tmpfs works), the state dir gets a
tmpfs of its own (--disk-size, 256m: room enough for the run's database) and, at random moments of
the load, --disk-full episodes (default 4; 0 without root, saying why) fill what is left of it
with a filler file for 2-5 s, then delete it; some episodes have a kill -9 (and a restart on the
full disk) inside them, some end right before a kill. While the disk is full a commit fails:
ingest must answer 503 with Retry-After (never a 2xx for what was not committed; a commit that
still fits in the write-ahead log's room is a real 202 and must be stored), /readyz 503 once a
commit was refused; the clients send the request again until it gets its 202. The delivery lanes
cannot mark a row done either, so an alert answered 2xx while the disk was full is sent again:
such a duplicate is excused (apart from the kills' ones) only when its earlier 2xx came during an
episode (from the filler's first byte to its removal). The episodes are printed in the header and
the summary; the tmpfs is unmounted (umount -l) at the end, failure or not.

At the end the load stops, the receivers answer 2xx, trailhook restarts once more (SIGTERM, then
start) and the outbox must drain (with a deadline). Then, from the 202 answers, the store (read
with sqlite3 after the last stop) and what each receiver answered 2xx, it prints a table and
checks:
  - every alert id a 2xx answer returned is stored, and every acknowledged matching event's
    image has an alert (one alert per image);
  - each destination got every acknowledged alert at least once (lost = 0);
  - no alert was delivered twice, unless the delivery answered first was followed within 0.5 s
    by a kill (at-least-once: the receiver's 2xx came, trailhook died before recording it) or
    was answered while the disk was full (the "done" could not be written) — those are
    "excused" duplicates, each kind reported apart;
  - with a full disk: every refused commit was a 503 with Retry-After, /readyz never said ready
    on the full disk after a refused commit, and it is ready again at the end;
  - no dead letter, a consistent 202 for every request (counts, distinct alerts, an eventID
    counted once), no unexpected status, no crash, an intact database.
Exit status 0 only when all of that holds; the last line says RESULT: PASS or RESULT: FAIL.

Run by hand from the source tree:
    python3 tests/integration/faults.py                  (binary: $TRAILHOOK_BIN or build/trailhook)
    python3 tests/integration/faults.py --duration 30 --kills 8 --seed 42     (a quicker look)
    python3 tests/integration/faults.py --faults 500,429,hang,reset           (some faults only)
    python3 tests/integration/faults.py --disk-full 0                         (no full disk)
The seed drives every random choice of the script (load mix, kill times, receiver faults, disk
episodes); it is printed, and a failure prints the command line that replays it (thread timing
still varies).
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
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import standalone  # noqa: E402,F401  (first: the environment harness reads on import)
import harness  # noqa: E402
from harness import (Cleanups, Service, dumps, matching_event, non_matching_event,  # noqa: E402
                     outbox_cli, unique_image_id, wait_for_drain, write_config)
from receiver import (HMAC_KEY, HOOK_SECRET, IMAGE_RE, ROUTING_KEY, Receiver, Reply,  # noqa: E402
                      pagerduty_ok, slack_ok, webhook_ok)

SLACK_ALERT_RE = re.compile(r"Alert: ([0-9a-f]{32})")
EXCUSE_S = 0.5  # a duplicate is excused when its earlier 2xx came at most this long before a kill
FAULT_KINDS = ("500", "429", "hang", "reset", "garbage", "truncated")
DESTS = ("slack", "pagerduty", "webhook")
DISK_FULL_DEFAULT = 4  # episodes, when the state dir can have a tmpfs of its own
STORE_503 = "the store cannot take writes"  # the start of ingest's answer to a refused commit
READY_PROBE_S = 6.0  # /readyz fails at most this long after the disk filled (probe every 5 s)


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


# ---- a disk that fills up -----------------------------------------------------------------------

def mount_tmpfs(cl, size):
    """Mounts a tmpfs of @p size on a new temp dir, unmounted (umount -l) and removed by @p cl.
    @return (directory, None) or (None, why it cannot)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None, "mounting a tmpfs needs root"
    mnt = tempfile.mkdtemp(prefix="trailhook-faults-disk-")
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=" + size, "tmpfs", mnt],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        os.rmdir(mnt)
        return None, "mount -t tmpfs failed: %s" % e
    if r.returncode != 0:
        os.rmdir(mnt)
        return None, "mount -t tmpfs failed: %s" % (r.stderr.decode().strip() or
                                                    "exit status %d" % r.returncode)
    cl.addCleanup(os.rmdir, mnt)
    cl.addCleanup(subprocess.run, ["umount", "-l", mnt], stdout=subprocess.PIPE,
                  stderr=subprocess.PIPE)
    return mnt, None


class Disk:
    """The state dir's own tmpfs and its full episodes: a filler file next to the state dir takes
    every free block, then goes. An episode lasts from the filler's first byte to its removal."""

    def __init__(self, mnt, size):
        self.mnt = mnt
        self.size = size
        self.state_dir = os.path.join(mnt, "state")  # trailhook creates it
        self.filler = os.path.join(mnt, "filler")    # outside the state dir: not kept as evidence
        self.episodes = []  # dict(n, t0, t_full, t1, mode, dur, bytes, kills)
        self.current = None

    def fill(self, ep):
        """Writes the filler until the file system is full (ENOSPC), down to the last page.
        Unbuffered: a buffered file keeps what a short write left over and raises ENOSPC again
        when it is closed."""
        ep["t0"] = time.monotonic()
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            for chunk in (b"\0" * (1 << 20), b"\0" * 4096, b"\0" * 512):
                try:
                    while os.write(fd, chunk) > 0:
                        pass
                except OSError:  # ENOSPC: on with a smaller chunk
                    pass
        finally:
            os.close(fd)
        ep["t_full"] = time.monotonic()
        ep["bytes"] = os.path.getsize(self.filler)
        ep["t1"] = None
        ep["kills"] = []
        ep["n"] = len(self.episodes) + 1
        self.episodes.append(ep)
        self.current = ep

    def free(self):
        """Removes the filler (at the episode's end, or whenever the run ends early)."""
        try:
            os.unlink(self.filler)
        except FileNotFoundError:
            pass
        if self.current is not None:
            self.current["t1"] = time.monotonic()
            self.current = None

    def episode_at(self, t, slack=0.0):
        """The episode during which the disk was full at @p t (its end widened by @p slack)."""
        for ep in self.episodes:
            if ep["t0"] <= t and (ep["t1"] is None or t <= ep["t1"] + slack):
                return ep
        return None


def plan_episodes(rng, n, duration):
    """@return n episodes, in order: dict(at: seconds into the load, dur, mode, kill_in). Mode
    "kill_inside": a kill -9 (a restart on the full disk) kill_in seconds after it filled;
    "kill_after": a kill kill_in seconds after the filler went; "plain": none of its own."""
    if n <= 0:
        return []
    lo, hi = min(3.0, duration * 0.1), max(duration * 0.5, duration - 6.0)
    slot = (hi - lo) / n
    modes = ["kill_inside", "kill_after"][:n]
    modes += [rng.choices(("kill_inside", "kill_after", "plain"), (2, 2, 1))[0]
              for _ in range(n - len(modes))]
    rng.shuffle(modes)
    plan = []
    for i, mode in enumerate(modes):
        dur = min(rng.uniform(2.0, 5.0), max(0.5, slot * 0.7))
        at = lo + i * slot + rng.uniform(0.0, max(0.0, slot - dur - 0.5))
        kill_in = rng.uniform(0.3, max(0.4, dur - 0.5)) if mode == "kill_inside" \
            else rng.uniform(0.0, 0.4)
        plan.append(dict(at=at, dur=dur, mode=mode, kill_in=kill_in))
    return plan


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
                      leftovers=0, resent_503=0, acked_after_503=0, acked_after_store_503=0)
        self.answers_503 = []    # (sent, answered, error text, Retry-After or None, who)
        self.acks = []           # (sent, answered) of every acknowledged request
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
        """@return (status or None when there was no answer, parsed body or None, Retry-After
        or None, when it was sent)."""
        with self.lock:
            self.c["requests"] += 1
        sent = time.monotonic()
        try:
            r = self.svc.post_events(body, timeout=20)
        except (OSError, http.client.HTTPException):
            return None, None, None, sent
        try:
            doc = r.json
        except ValueError:
            doc = None
        return r.status, doc, r.header("Retry-After"), sent

    def send(self, items, body, rng, who):
        """Sends until acknowledged; when the load stops first, leaves it for after the last
        restart. @return True when acknowledged."""
        first = True
        prev = None  # the previous attempt's status
        refused = refused_store = False
        while True:
            if not first:
                with self.lock:
                    self.c["retried"] += 1
                    self.c["resent_503"] += prev == 503
            first = False
            status, doc, retry_after, sent = self.post_once(body)
            answered = time.monotonic()
            if status is not None and 200 <= status < 300:
                with self.lock:
                    self.acks.append((sent, answered))
                    self.c["acked_after_503"] += refused
                    self.c["acked_after_store_503"] += refused_store
                self.record(items, status, doc, who)
                return True
            prev = status
            with self.lock:
                if status is None:
                    self.c["no_answer"] += 1
                elif status == 503:
                    self.c["s503"] += 1
                    error = doc.get("error") if isinstance(doc, dict) else None
                    self.answers_503.append((sent, answered, str(error), retry_after, who))
                    refused = True
                    refused_store = refused_store or str(error).startswith(STORE_503)
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
    ap.add_argument("--disk-full", type=int, default=None, metavar="N",
                    help="episodes of a full disk (the state dir on a tmpfs of its own, filled "
                    "for 2-5 s); default %d when running as root and mount -t tmpfs works, else "
                    "0 (saying why)" % DISK_FULL_DEFAULT)
    ap.add_argument("--disk-size", default="256m",
                    help="the state dir's tmpfs size (room for the run's database)")
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

    if args.disk_full is not None and args.disk_full < 0:
        ap.error("--disk-full must be 0 or more")

    cl = Cleanups()

    def terminated(signum, frame):  # the cleanups (processes, filler, umount) run on SIGTERM too
        raise SystemExit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, terminated)
    try:
        disk, args.disk_note = None, None
        if args.disk_full != 0:
            mnt, why = mount_tmpfs(cl, args.disk_size)
            if mnt is None and args.disk_full is not None:
                print("--disk-full %d needs the state dir on a tmpfs of its own: %s"
                      % (args.disk_full, why), file=sys.stderr)
                return 2
            if mnt is None:
                args.disk_note = "%s; run as root for them" % why
                args.disk_full = 0
            else:
                disk = Disk(mnt, args.disk_size)
                cl.addCleanup(disk.free)  # before the unmount (cleanups run in reverse)
                if args.disk_full is None:
                    args.disk_full = DISK_FULL_DEFAULT
        else:
            args.disk_note = "--disk-full 0"
        return run(args, cl, disk)
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


def stop_service(svc, gens, crashes, what):
    """SIGTERM and wait; anything but exit 0 is recorded as a crash. @return the status."""
    t = time.monotonic()
    try:
        rc = svc.stop()
    except AssertionError as e:
        rc = "did not stop: %s" % e
    gens.ended("SIGTERM at %s, exit %s" % (rel(t), rc))
    if rc != 0:
        crashes.append(("%s exit status %s" % (what, rc), svc.stderr_text()[-4000:]))
    return rc


def run(args, cl, disk):
    rng = random.Random(args.seed)
    replay = ("python3 faults.py --seed %d --duration %g --kills %d --clients %d --faults %s "
              "--disk-full %d" % (args.seed, args.duration, args.kills, args.clients,
                                  ",".join(args.fault_kinds), args.disk_full))
    log("seed %d (replay: %s)", args.seed, replay)
    if args.disk_note:
        log("no full-disk episodes (%s)", args.disk_note)

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
    svc = Service(cl, config=cfg, env={"TRAILHOOK_LOG_LEVEL": "info"},
                  state_dir=disk.state_dir if disk is not None else None)
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
    # Its own generator: the kills and the load draw the same numbers with or without episodes.
    plan = plan_episodes(random.Random(args.seed * 7 + 3), args.disk_full, args.duration)
    if plan:
        log("state dir on its own tmpfs (%s, %s); %d disk-full episodes planned: %s",
            disk.size, disk.mnt, len(plan),
            ", ".join("+%.1fs for %.1fs (%s)" % (p["at"], p["dur"], p["mode"]) for p in plan))

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
    forced_kill = None  # (when, episode): an episode's own kill, inside it or right after it
    readyz = []         # (sent, status or None, episode) polled while the disk is full
    next_readyz = 0.0
    while time.monotonic() < t_end and not crashes:
        # -- a full disk: fill, poll /readyz, free --
        now = time.monotonic()
        if disk is not None and disk.current is None and plan and now >= t_load + plan[0]["at"]:
            ep = plan.pop(0)
            disk.fill(ep)
            ep["until"] = ep["t_full"] + ep["dur"]
            log("disk full %d (%s): filled %.1f MB in %.2fs, frees it in %.1fs",
                ep["n"], ep["mode"], ep["bytes"] / 1e6, ep["t_full"] - ep["t0"], ep["dur"])
            if ep["mode"] == "kill_inside" and len(kills) < args.kills:
                forced_kill = (ep["t_full"] + ep["kill_in"], ep)
            next_readyz = 0.0
        if disk is not None and disk.current is not None:
            ep = disk.current
            if now >= ep["until"]:
                disk.free()
                log("disk full %d: filler removed after %.2fs", ep["n"], ep["t1"] - ep["t0"])
                if ep["mode"] == "kill_after" and len(kills) < args.kills:
                    forced_kill = (ep["t1"] + ep["kill_in"], ep)
            elif now >= next_readyz:
                try:
                    st = svc.request("GET", "/readyz", auth=False, timeout=2).status
                except (OSError, http.client.HTTPException):
                    st = None
                readyz.append((now, st, ep))  # when it was sent: what came before, it saw
                next_readyz = time.monotonic() + 0.25
        if svc.proc.poll() is not None:
            rc = svc.proc.returncode
            svc.join_readers()
            gens.ended("exited on its own with %s" % rc)
            crashes.append(("exited on its own with %s" % rc, svc.stderr_text()[-4000:]))
            log("TRAILHOOK EXITED ON ITS OWN with %s", rc)
            if not start_service("after an exit"):
                break
            continue
        now = time.monotonic()
        if len(kills) < args.kills and (now >= next_kill or
                                        (forced_kill is not None and now >= forced_kill[0])):
            mode = rng.choices(("plain", "burst", "mid"), (4, 4, 2))[0]
            full = disk.current if disk is not None else None
            if full is not None and mode == "burst":
                mode = "plain"  # a burst is sent before the kill, 503 after 503 on a full disk
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
            kills.append(dict(t0=t0, t1=t1, mode=mode, disk=full))
            if full is not None:
                full["kills"].append(len(kills))
            elif disk is not None and disk.episodes and disk.episodes[-1]["t1"] is not None \
                    and t0 - disk.episodes[-1]["t1"] <= 1.0:
                disk.episodes[-1].setdefault("kill_after", len(kills))
            if forced_kill is not None and (forced_kill[1] is full or
                                            forced_kill[1]["t1"] is not None):
                forced_kill = None  # the episode has its kill (inside it, or after it)
            ok = start_service("after kill %d" % len(kills))
            log("kill %d (%s%s) at %s; restarted in %.2fs%s", len(kills), mode,
                ", disk full %d" % full["n"] if full is not None else "", rel(t0),
                time.monotonic() - t1, "" if svc.port == port else
                " on another port %s (the old one was busy)" % svc.port)
            port = svc.port
            if not ok:
                break
            next_kill = time.monotonic() + gap()
        time.sleep(0.02)

    if disk is not None and disk.current is not None:
        ep = disk.current
        disk.free()
        log("disk full %d: filler removed after %.2fs (the load ended)", ep["n"],
            ep["t1"] - ep["t0"])
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
    stop_rc = stop_service(svc, gens, crashes, "SIGTERM")
    log("last restart: SIGTERM -> exit %s in %.1fs", stop_rc, time.monotonic() - t_stop)
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

    drained, n = wait_for_drain(svc, receivers, time.monotonic() + args.deadline, log)
    if svc.proc.poll() is not None:
        crashes.append(("exited on its own with %s while draining" % svc.proc.returncode,
                        svc.stderr_text()[-4000:]))
    t_drained = time.monotonic()
    log("outbox %s %.1fs after the load stopped", "drained" if drained else
        "NOT drained (%s pending)" % n, t_drained - t_load_end)
    time.sleep(3.0)  # anything still on its way would show as a duplicate

    # Ready again: the housekeeper's probe (every 5 s) finds the store writable.
    ready_end, deadline = None, time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            ready_end = svc.request("GET", "/readyz", auth=False, timeout=5)
        except (OSError, http.client.HTTPException) as e:
            ready_end = e
        if getattr(ready_end, "status", None) == 200:
            break
        time.sleep(0.5)

    _, dead = outbox_cli(svc.state_dir, "list", "--dead")
    _, pending_rows = outbox_cli(svc.state_dir, "list", "--pending")
    try:
        api_alerts = [a.get("id") for a in svc.alerts(1000)]
    except (AssertionError, OSError, ValueError) as e:
        api_alerts = None
        crashes.append(("GET /alerts failed", str(e)[:2000]))
    stop_service(svc, gens, crashes, "final SIGTERM")

    return verify(args, cl, svc, gens, load, receivers, kills, crashes, dead, pending_rows,
                  api_alerts, drained, replay, t_load, t_load_end, t_drained, disk, readyz,
                  ready_end)


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


def episode_text(ep):
    extra = []
    if ep.get("kills"):
        extra.append("kill %s inside" % ", ".join(str(k) for k in ep["kills"]))
    if ep.get("kill_after"):
        extra.append("kill %d right after" % ep["kill_after"])
    return "#%d %s-%s (%.1fs%s)" % (ep["n"], rel(ep["t0"]), rel(ep["t1"]),
                                    (ep["t1"] or ep["t0"]) - ep["t0"],
                                    ", " + ", ".join(extra) if extra else "")


def verify(args, cl, svc, gens, load, receivers, kills, crashes, dead, pending_rows, api_alerts,
           drained, replay, t_load, t_load_end, t_drained, disk, readyz, ready_end):
    episodes = disk.episodes if disk is not None else []

    def full_at(t):
        return disk.episode_at(t) if disk is not None else None
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
        dup = excused = unexcused = disk_excused = 0
        unexcused_list, excused_list, disk_list = [], [], []
        for aid, reqs in per.items():
            if len(reqs) < 2:
                continue
            dup += len(reqs) - 1
            for q in reqs[:-1]:
                # Answered while the disk was full: its "done" could not be written.
                ep = full_at(q.answered_at)
                if ep is not None:
                    disk_excused += 1
                    disk_list.append((aid, q, ep))
                    continue
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
                         disk_excused=disk_excused, disk_list=disk_list,
                         lost_pending=len(set(lost) & pend), unknown=unknown,
                         not_acked=len(set(per) - acked), attempts=rcv.count(),
                         answered_2xx=len(rcv.delivered()), bad_sig=bad_sig,
                         other_kind=other_kind, lost_ids=lost, unexcused_list=unexcused_list,
                         excused_list=excused_list))

    # -- the 503s, /readyz and the acknowledgements against the episodes --
    def overlapping(sent, answered):
        for ep in episodes:
            if sent <= (ep["t1"] or float("inf")) and answered >= ep["t0"]:
                return ep
        return None

    store_503 = [a for a in load.answers_503 if a[2].startswith(STORE_503)]
    other_503 = [a for a in load.answers_503 if not a[2].startswith(STORE_503)]
    store_503_in = [a for a in store_503 if overlapping(a[0], a[1]) is not None]
    store_503_out = [a for a in store_503 if overlapping(a[0], a[1]) is None]
    no_retry_after = [a for a in load.answers_503 if not a[3]]
    other_reasons = {}
    for a in other_503:
        other_reasons[a[2]] = other_reasons.get(a[2], 0) + 1
    for ep in episodes:
        ep["refused"] = sum(1 for a in store_503 if overlapping(a[0], a[1]) is ep)
        ep["acked_full"] = sum(1 for snt, ans in load.acks
                               if snt >= ep["t_full"] and ans <= (ep["t1"] or float("inf")))
        polls = [(t, st) for t, st, e in readyz if e is ep and st is not None]
        ep["readyz"] = (sum(1 for _, st in polls if st == 503), len(polls))
        first_refusal = min([a[1] for a in store_503 if overlapping(a[0], a[1]) is ep] or
                            [float("inf")])
        # Ready on the full disk: after a refused commit (it makes /readyz fail at once), or
        # later than the housekeeper's probe (every 5 s) must have noticed.
        ep["ready_while_full"] = [t for t, st in polls if st == 200 and
                                  (t > first_refusal or t > ep["t_full"] + READY_PROBE_S)]
    acked_full = sum(ep["acked_full"] for ep in episodes)

    c = load.c
    print()
    print("faults run: seed %d, %.0fs of load, %d clients, %d kills (%d right after a burst of "
          "%d, %d during an array of %d), receivers failing %.0f%% (%s; hang %.1fs vs "
          "timeout_ms %d)"
          % (args.seed, t_load_end - t_load, args.clients, len(kills),
             sum(1 for k in kills if k["mode"] == "burst"), args.burst,
             sum(1 for k in kills if k["mode"] == "mid"), args.big_batch, args.fail * 100,
             ", ".join(args.fault_kinds) or "none", args.timeout_ms / 1000.0 + 1.0,
             args.timeout_ms)
          + ("; disk full %d times (tmpfs %s): %s" % (len(episodes), disk.size,
                                                     ", ".join(episode_text(e) for e in episodes))
             if disk is not None else "; no full-disk episodes (%s)" % args.disk_note))
    fmt2 = "  %-44s %8s"
    print("ingest")
    print(fmt2 % ("requests sent (incl. retries)", c["requests"]))
    print(fmt2 % ("requests acknowledged (2xx)", c["acked"]))
    print(fmt2 % ("no answer (kill, refused) -> sent again", c["no_answer"]))
    print(fmt2 % ("503 -> sent again", c["s503"]))
    print(fmt2 % ("  'store cannot take writes', disk full", len(store_503_in)))
    print(fmt2 % ("  'store cannot take writes', disk not full", len(store_503_out)))
    print(fmt2 % ("  other reasons (draining, queue full)", len(other_503)))
    print(fmt2 % ("  without Retry-After", len(no_retry_after)))
    print(fmt2 % ("re-sends after a 503", c["resent_503"]))
    print(fmt2 % ("requests acknowledged after a 503", c["acked_after_503"]))
    print(fmt2 % ("  of which after a disk-full 503", c["acked_after_store_503"]))
    print(fmt2 % ("acknowledged while the disk was full (info)", acked_full))
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
    fmt = "  %-10s %9s %5s %8s %9s %10s %5s %8s %8s %6s %7s"
    print(fmt % ("dest", "delivered", "dups", "excused", "disk_full", "unexcused", "lost",
                 "attempts", "2xx", "unknown", "bad_sig"))
    for r in rows:
        print(fmt % (r["dest"], r["delivered"], r["dup"], r["excused"], r["disk_excused"],
                     r["unexcused"], r["lost"], r["attempts"], r["answered_2xx"], r["unknown"],
                     r["bad_sig"]))
    gaps = [k["t0"] - q.answered_at for r in rows for _, q, k in r["excused_list"]]
    if gaps:
        print("  excused duplicates: the earlier 2xx came %.3f to %.3fs before its kill "
              "(negative: while the kill was under way)" % (min(gaps), max(gaps)))
    disk_dups = [(r["dest"], aid, q, ep) for r in rows for aid, q, ep in r["disk_list"]]
    if disk_dups:
        per_pair = {}
        for d, aid, _, _ in disk_dups:
            per_pair[(d, aid)] = per_pair.get((d, aid), 0) + 1
        print("  disk_full duplicates: %d re-sends of %d (destination, alert) pairs (at most %d "
              "of one) after a 2xx while the disk was full (the \"done\" could not be written), "
              "in episode%s %s"
              % (len(disk_dups), len(per_pair), max(per_pair.values()),
                 "s" if len({ep["n"] for _, _, _, ep in disk_dups}) > 1 else "",
                 ", ".join("#%d: %d" % (n, sum(1 for _, _, _, ep in disk_dups if ep["n"] == n))
                           for n in sorted({ep["n"] for _, _, _, ep in disk_dups}))))
    print("  delivered = acknowledged alerts answered 2xx at least once; dups = 2xx beyond the "
          "first; excused = re-sends after a 2xx answered at most %.1fs before a kill; "
          "disk_full = re-sends after a 2xx answered while the disk was full; lost = "
          "acknowledged, never answered 2xx; unknown = 2xx not naming an alert" % EXCUSE_S)
    print("dead letters: %d, pending at the end: %d, kills: %d, restarts: %d, database: %s, "
          "drained %.1fs after the load stopped, total %.1fs"
          % (len(dead), len(pending_rows), len(kills), len(gens.gens) - 1,
             db_error or integrity, t_drained - t_load_end, time.monotonic() - T0))
    if disk is not None:
        print("disk full episodes: %d of %d planned on a %s tmpfs, %.1fs full in all; %d "
              "requests refused (503 + Retry-After) then re-sent, %d acknowledged on the full "
              "disk (nothing to write, or the commit fit in the WAL's room); /readyz 503 in %d "
              "of %d polls while full; %d kills inside, %d right after; %d deliveries re-sent "
              "because the disk was full; ready at the end: %s"
              % (len(episodes), args.disk_full, disk.size,
                 sum((e["t1"] or e["t0"]) - e["t0"] for e in episodes), len(store_503_in),
                 acked_full, sum(e["readyz"][0] for e in episodes),
                 sum(e["readyz"][1] for e in episodes), sum(len(e["kills"]) for e in episodes),
                 sum(1 for e in episodes if e.get("kill_after")), len(disk_dups),
                 "yes" if getattr(ready_end, "status", None) == 200 else ready_end))
        for ep in episodes:
            print("  %s: filled %.1f MB in %.2fs; %d refused, %d acknowledged on the full disk, "
                  "/readyz 503 in %d of %d polls, %d deliveries re-sent"
                  % (episode_text(ep), ep["bytes"] / 1e6, ep["t_full"] - ep["t0"], ep["refused"],
                     ep["acked_full"], ep["readyz"][0], ep["readyz"][1],
                     sum(1 for _, _, _, e in disk_dups if e is ep)))
    else:
        print("disk full episodes: 0 (%s)" % args.disk_note)

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
                near = min(episodes, key=lambda e: min(abs(q.answered_at - e["t0"]),
                                                       abs(q.answered_at - (e["t1"] or e["t0"]))),
                           default=None)
                print("  alert %s: 2xx at %s; deliveries answered at %s; next kill %s later%s"
                      % (aid, rel(q.answered_at), ", ".join(rel(x.answered_at) for x in reqs),
                         "%.3fs" % min(after) if after else "never",
                         "; nearest disk-full episode %s" % episode_text(near) if near else ""))
                for line in gens.grep(aid, 8):
                    print("    " + line[:300])
        if r["unknown"] or r["bad_sig"] or r["other_kind"]:
            problems.append("%s: %d unidentified 2xx, %d bad signatures, %d non-alert"
                            % (r["dest"], r["unknown"], r["bad_sig"], r["other_kind"]))
    if episodes and not store_503_in:
        problems.append("the full disk refused no request (the 503 path was not exercised)")
    if store_503_out:
        problems.append("%d 'store cannot take writes' 503s with room on the disk"
                        % len(store_503_out))
        print("\nrefused commits with room on the disk (first 5 of %d):" % len(store_503_out))
        for sent, answered, error, ra, who in store_503_out[:5]:
            print("  %s: sent at %s, 503 at %s: %s" % (who, rel(sent), rel(answered), error))
    if no_retry_after:
        problems.append("%d 503s without Retry-After" % len(no_retry_after))
        for sent, answered, error, ra, who in no_retry_after[:5]:
            print("  503 without Retry-After: %s at %s: %s" % (who, rel(answered), error))
    if other_reasons:
        print("\nother 503s (not failures): %s" % "; ".join(
            "%d x %s" % (n, e) for e, n in sorted(other_reasons.items(), key=lambda kv: -kv[1])))
    for ep in episodes:
        if ep["ready_while_full"]:
            problems.append("/readyz 200 on the full disk after a refused commit or %.0fs "
                            "(episode %d)" % (READY_PROBE_S, ep["n"]))
            print("\nepisode %s: /readyz 200 after a refused commit or %.0fs at %s"
                  % (episode_text(ep), READY_PROBE_S,
                     ", ".join(rel(t) for t in ep["ready_while_full"][:10])))
    if getattr(ready_end, "status", None) != 200:
        problems.append("not ready at the end: %r" % (ready_end,))
    sanitizer = any(m in line for _, line in gens.lines() for m in harness.SANITIZER_MARKERS)
    if sanitizer:
        problems.append("sanitizer report")
    if len(acked) == 0:
        problems.append("nothing acknowledged")

    excused_total = sum(r["excused"] for r in rows)
    disk_total = sum(r["disk_excused"] for r in rows)
    keep_dir = None
    if problems or args.keep:
        keep_dir = keep_evidence(svc, gens, args.seed)
        print("\nlogs of every generation and a copy of the state dir: %s" % keep_dir)
    if problems:
        print("replay: %s" % replay)
        print("RESULT: FAIL (seed %d): %s" % (args.seed, "; ".join(problems)))
        return 1
    if disk is None:
        print("RESULT: PASS (seed %d): %d acknowledged alerts stored and delivered to %d "
              "destinations after %d kills (no full disk: %s), none lost, %d duplicates all "
              "excused by a kill, no dead letter"
              % (args.seed, len(acked), len(rows), len(kills), args.disk_note, excused_total))
        return 0
    print("RESULT: PASS (seed %d): %d acknowledged alerts stored and delivered to %d destinations "
          "after %d kills and %d disk-full episodes (%d requests refused with 503 and sent "
          "again), none lost, %d duplicates excused by a kill and %d by the full disk, no dead "
          "letter" % (args.seed, len(acked), len(rows), len(kills), len(episodes),
                      len(store_503_in), excused_total, disk_total))
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
