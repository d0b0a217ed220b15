#!/usr/bin/env python3
"""The delivery chaos run: nothing lost, nothing twice, under failing and flapping receivers.

1 000 alerts (1 000 distinct images, posted in batches) go to Slack, PagerDuty and webhook
receivers that fail 30% of requests (a mix of 500 and 429 with Retry-After: 1) and go down for
30 s in the middle of the run. The script waits until trailhook's outbox has no pending row (with
a deadline), then prints per destination: delivered unique, duplicates, lost, attempts, elapsed.
Exit status 0 only when every alert reached every destination exactly once (and no dead letter).

Run by hand from the source tree:
    python3 tests/integration/chaos.py            (binary: $TRAILHOOK_BIN or build/trailhook)
    python3 tests/integration/chaos.py --alerts 200 --down-seconds 10   (a quicker look)
ctest runs it as integration_chaos.
"""

import argparse
import hashlib
import hmac
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import standalone  # noqa: E402,F401  (first: the environment harness reads on import)
import harness  # noqa: E402
from harness import (Cleanups, Service, dumps, matching_event, outbox_cli,  # noqa: E402
                     pending_count, unique_image_id, wait_for_drain, write_config)
from receiver import (HMAC_KEY, HOOK_SECRET, IMAGE_RE, ROUTING_KEY, Receiver, Reply,  # noqa: E402
                      pagerduty_ok, slack_ok, webhook_ok)



def log(fmt, *args):
    print("[%7.1fs] %s" % (time.monotonic() - T0, fmt % args), flush=True)


T0 = time.monotonic()


def failing_replies(retry_after):
    return [Reply(500, b"internal error"),
            Reply(429, {"ok": False, "error": "rate_limited", "retry_after": retry_after},
                  headers={"Retry-After": str(retry_after)})]


def stats_for(rcv, images, t_start, pending_images):
    per = {}
    bad_sig = 0
    first_arrival = None
    last_delivery = None
    for req in rcv.all():
        if first_arrival is None:
            first_arrival = req.arrived
        if not req.delivered:
            continue
        last_delivery = req.answered_at
        if rcv.name == "webhook":
            sig = "sha256=" + hmac.new(HMAC_KEY.encode(), req.body, hashlib.sha256).hexdigest()
            if req.header("X-Trailhook-Signature") != sig:
                bad_sig += 1
        for img in set(IMAGE_RE.findall(req.body.decode("utf-8", "replace"))) & images:
            per[img] = per.get(img, 0) + 1
    unique = len(per)
    return {
        "destination": rcv.name,
        "delivered_unique": unique,
        "duplicates": sum(n - 1 for n in per.values()),
        "pending": len((images - set(per)) & pending_images),
        "lost": len(images - set(per) - pending_images),
        "attempts": rcv.count(),
        "answered_2xx": len(rcv.delivered()),
        "bad_signatures": bad_sig,
        "elapsed_s": round(last_delivery - t_start, 1) if last_delivery else None,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--alerts", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--fail", type=float, default=0.30, help="fraction of requests failed")
    ap.add_argument("--retry-after", type=int, default=1)
    ap.add_argument("--down-seconds", type=float, default=30.0)
    ap.add_argument("--deadline", type=float, default=800.0,
                    help="seconds to wait for the outbox to drain once the receivers are back "
                         "(the default keeps the whole run under ctest's 900 s)")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args(argv)

    if not os.access(harness.BIN, os.X_OK):
        print("no trailhook binary at %s (set TRAILHOOK_BIN)" % harness.BIN, file=sys.stderr)
        return 2

    cl = Cleanups()
    try:
        return run(args, cl)
    finally:
        cl.run()


def run(args, cl):
    receivers = []
    for i, (name, ok) in enumerate((("slack", slack_ok()), ("pagerduty", pagerduty_ok()),
                                    ("webhook", webhook_ok()))):
        r = Receiver(default=ok, name=name, seed=args.seed + i).start()
        cl.addCleanup(r.stop)
        r.fail_randomly(args.fail, failing_replies(args.retry_after))
        receivers.append(r)
    slack, pd, hook = receivers
    common = {"rate_per_minute": 60000, "burst": 1000, "concurrency": args.concurrency,
              "timeout_ms": 5000, "connect_timeout_ms": 1000}
    dests = [
        dict(name="slack", type="slack", url=slack.url("/slack"), **common),
        dict(name="pagerduty", type="pagerduty", url=pd.url("/pd"), secret=ROUTING_KEY, **common),
        dict(name="webhook", type="webhook", url=hook.url("/hook"), secret=HOOK_SECRET,
             secret_header="X-Hook-Secret", hmac_secret=HMAC_KEY, **common),
    ]
    cfg = write_config(cl, {"destinations": dests})
    svc = Service(cl, config=cfg, env={"TRAILHOOK_LOG_LEVEL": "warn"}).start()
    log("trailhook %s on port %d, state %s; receivers %s", harness.BIN, svc.port, svc.state_dir,
        ", ".join("%s:%d" % (r.name, r.port) for r in receivers))

    images = [unique_image_id() for _ in range(args.alerts)]
    alert_of = {}
    half = len(images) // 2
    t_start = time.monotonic()

    def post(chunk):
        r = svc.post_events(dumps([matching_event(image_id=img) for img in chunk]))
        if r.status != 202 or len(r.json.get("alerts", [])) != len(chunk):
            raise RuntimeError("POST /events: %r" % r)
        for img, aid in zip(chunk, r.json["alerts"]):
            alert_of[img] = aid

    for i in range(0, half, args.batch):
        post(images[i:min(i + args.batch, half)])
    log("posted %d alerts", half)
    time.sleep(2.0)
    for r in receivers:
        r.down()
    t_down = time.monotonic()
    log("receivers down (pending rows: %s)", pending_count(svc.state_dir))
    for i in range(half, len(images), args.batch):
        post(images[i:i + args.batch])
    log("posted the other %d alerts while down", len(images) - half)
    if len(set(alert_of.values())) != len(images):
        raise RuntimeError("expected %d distinct alerts, got %d"
                           % (len(images), len(set(alert_of.values()))))
    time.sleep(max(0.0, args.down_seconds - (time.monotonic() - t_down)))
    for r in receivers:
        r.up()
    log("receivers up again after %.1fs (pending rows: %s)", time.monotonic() - t_down,
        pending_count(svc.state_dir))

    drained, _ = wait_for_drain(svc, receivers, time.monotonic() + args.deadline, log)
    if svc.proc.poll() is not None:
        log("trailhook exited with %s", svc.proc.returncode)
    t_drained = time.monotonic()
    log("outbox %s after %.1fs", "drained" if drained else "NOT drained", t_drained - t_start)
    time.sleep(3.0)  # anything still on its way would show as a duplicate

    _, dead = outbox_cli(svc.state_dir, "list", "--dead")
    image_of = {aid: img for img, aid in alert_of.items()}
    recorded_failures, max_attempts, pending_of = {}, {}, {}
    for d in dests:
        _, rows = outbox_cli(svc.state_dir, "list", "--destination", d["name"])
        recorded_failures[d["name"]] = sum(r.get("attempts", 0) for r in rows)
        max_attempts[d["name"]] = max([r.get("attempts", 0) for r in rows] or [0])
        pending_of[d["name"]] = {image_of.get(r["ref"]) for r in rows if r["state"] == "pending"}
    image_set = set(images)
    stats = [stats_for(r, image_set, t_start, pending_of[d["name"]])
             for r, d in zip(receivers, dests)]
    alert_ids = set(alert_of.values())
    bad_keys = sum(1 for req in pd.delivered() if req.json.get("dedup_key") not in alert_ids)
    svc.stop()
    sanitizer = any(m in svc.stderr_text() for m in harness.SANITIZER_MARKERS)

    print()
    print("chaos run: %d alerts x 3 destinations, %.0f%% of requests failed (500 / 429 "
          "Retry-After %d), receivers down %.0fs mid-run, concurrency %d"
          % (args.alerts, args.fail * 100, args.retry_after, args.down_seconds,
             args.concurrency))
    fmt = "%-10s %10s %10s %8s %5s %9s %11s %9s %8s %10s"
    print(fmt % ("dest", "delivered", "duplicates", "pending", "lost", "attempts", "failed(ob)",
                 "max_tries", "bad_sig", "elapsed_s"))
    for s, d in zip(stats, dests):
        print(fmt % (s["destination"], s["delivered_unique"], s["duplicates"], s["pending"],
                     s["lost"], s["attempts"], recorded_failures[d["name"]],
                     max_attempts[d["name"]], s["bad_signatures"], s["elapsed_s"]))
    print("delivered = distinct alerts answered 2xx; pending = not yet delivered, still queued "
          "at the deadline; lost = neither")
    print("attempts = requests the receiver read; failed(ob) = failed attempts trailhook "
          "recorded in its outbox (incl. refused connections while down); max_tries = most "
          "failed attempts of one row; elapsed_s = first post to last delivery")
    print("outbox: %s, dead letters: %d, pagerduty unknown dedup_keys: %d, total %.1fs"
          % ("empty" if drained else "NOT empty", len(dead), bad_keys, t_drained - t_start))
    ok = (drained and not dead and bad_keys == 0 and not sanitizer and
          all(s["delivered_unique"] == args.alerts and s["duplicates"] == 0 and
              s["lost"] == 0 and s["pending"] == 0 and s["bad_signatures"] == 0
              for s in stats))
    if sanitizer:
        print("sanitizer report on trailhook's stderr")
    print("RESULT: %s" % ("PASS: every alert delivered to every destination exactly once"
                          if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
