"""Security review (issue "Hardening", item 5): each point, and the tests that prove it.

New tests are in this file unless a path is given; "existing" ones were already there and are not
repeated here.

1. Credentials are compared in constant time, against every configured credential.
   - ConstantTimeTest runs the real binary under valgrind's callgrind, collecting only inside
     th_auth_check and dumping after each call: one exact instruction profile per request
     (instruction counts, not timing, so no noise to average away).
     test_api_key_and_bearer_checks_run_the_same_instructions: with three keys configured, a
     presented key that is right (the first or the last configured), wrong in its first byte,
     wrong in its last byte, or unrelated, all of one length, runs the same instructions (same
     total, same per-function profile) in X-Api-Key and as a Bearer token; a key one byte short
     (long) costs what any key of that length costs, so being a prefix (an extension) of a key
     shows nowhere; and th_ct_equal is called once per configured key on every request (no
     early exit on a match).
     test_basic_checks_run_the_same_instructions: the same for Basic (wrong user, wrong password,
     first or last byte), with two credentials configured. Base64 decoding branches on the
     character class of what the client sent, so these candidates share one base64 shape.
     test_the_configured_length_interacts_with_nothing: keys of 23 to 41 characters against
     24- and then 40-character keys: the cost moves with the presented length and with the
     configured length, never with how the two compare (no short cut on equal lengths).
     Left out of the counts: the allocator (the Basic decode buffer; its cost depends on the
     heap, not on a secret), lazy symbol binding (LD_BIND_NOW) and a first, unmeasured pass.
     Checked against builds broken on purpose (early return on a match, memcmp-style compare,
     a length check first, early exit on the digest): each fails here. Skipped, saying why,
     when valgrind is missing (.ci/deps installs it), the binary is stripped, or it is a
     sanitizer build.
   - tests/test_hash.c ct_equal_rejects_a_difference_at_every_position,
     ct_equal_rejects_prefixes_and_extensions, ct_equal_compares_past_the_first_block: th_ct_equal
     is a correct comparison (any byte, any bit, prefix, extension, trailing NUL, later blocks).
   - tests/test_auth.c every_key_is_accepted_wherever_it_is_configured,
     near_misses_of_every_key_are_refused, basic_near_misses_are_refused,
     a_scheme_needs_its_space_and_a_value (and the existing api_key_header_any_of_several,
     bearer_and_basic): what th_auth_check accepts and refuses, for five keys and two Basic
     credentials.

2. A failed authentication does not say which part was wrong.
   - AuthFailureTest.test_every_failure_looks_the_same: 22 kinds of wrong credentials (wrong
     user, wrong password, wrong key in its first or last byte or length, a right key in the wrong
     header or scheme, none, malformed base64, ...) give one status, one body (apart from
     request_id), one set of headers (apart from Date and X-Request-Id; WWW-Authenticate the
     same), the same log lines (at debug) and the same change to /metrics.
   - existing: test_http.AuthTest (each kind is a 401 with WWW-Authenticate;
     test_secret_not_echoed), test_operations.LogTest.test_json_lines_with_context_and_no_secret
     (wrong credentials are not logged).

3. Secrets appear in nothing trailhook itself outputs.
   - SecretsTest.test_no_secret_in_any_output: every secret set at once (api_keys, basic_auth,
     state.redis_url, a Slack URL in the file and one in TRAILHOOK_SLACK_WEBHOOK_URL, a PagerDuty
     routing key in the file and one in TRAILHOOK_PAGERDUTY_ROUTING_KEY_FILE, webhook secret and
     hmac_secret inline and as _file, tokens in URL paths); a scenario of good and bad requests,
     deliveries, a retried 500, a connection refused, a 400 that becomes a dead letter, SIGHUP
     with four bad files (each holding new secrets) then a good one, `trailhook outbox list`,
     `trailhook config` (also on bad files and bad variables); then every secret, and slices of
     it, is looked for in: stderr, stdout, every response body and header, /metrics, /alerts,
     the CLI outputs, the SQLite tables and the raw bytes of every file in the state directory.
   - SecretsTest.test_credentials_in_a_url_are_not_shown: user:password in a destination URL or
     in pagerduty_url.
   - existing: test_delivery.SecretsTest (destination secrets vs logs, metrics, outbox),
     test_operations.LogTest and ExpositionTest (log, /metrics),
     test_readme.ConfigurationReference.test_secrets_are_marked_and_redacted (`trailhook config`),
     test_http.StartupTest.test_bad_max_body_bytes (a startup error).

4. Every outbound call verifies TLS and follows no redirect.
   - OutboundTest.test_every_destination_type_refuses_an_untrusted_certificate: Slack, PagerDuty
     and webhook destinations on an https receiver with a self-signed certificate: no request
     is read, trailhook_notifications_failed_total{reason="network"} counts it, the row stays
     pending with the TLS error.
   - OutboundTest.test_redirects_are_not_followed: 302 (Slack), 307 (PagerDuty), 308 (webhook)
     to a second receiver, which never hears of the alert; nothing counts as delivered.
   - existing: test_delivery.TlsTest.test_self_signed_certificate_is_refused (Slack: row pending,
     no request, the error names the certificate).
   - not tested, on purpose: `trailhook healthcheck` (cmd_healthcheck.c) turns verification off
     for its own GET /healthz, since the service's certificate names its public host, not
     loopback; it sends no credential and only reads the status.
   - not tested end to end: host-name verification (CURLOPT_SSL_VERIFYHOST 2 in httpc.c) needs a
     certificate the system trusts for another name, and trailhook has no CA-bundle setting a
     test could point at its own CA.

5. No open listener without credentials; no root in the container.
   - ListenTest.test_refuses_the_ipv6_wildcard_without_credentials,
     test_ipv6_wildcard_with_insecure_no_auth,
     test_refuses_a_non_loopback_address_without_credentials (IPv4 and IPv6 addresses of this
     host, and a host name other than localhost), test_non_loopback_address_with_insecure_no_auth,
     test_ipv6_loopback_needs_no_credentials,
     test_refuses_a_public_admin_listener_without_credentials (admin_listen serves /alerts and
     /-/reload), test_a_reload_cannot_drop_every_credential.
   - existing: test_http.StartupTest.test_refuses_all_interfaces_without_credentials,
     test_all_interfaces_with_insecure_no_auth, test_all_interfaces_with_credentials,
     test_loopback_without_credentials; tests/deploy/test_dockerfile.py
     test_user_is_numeric_and_not_root (USER 10001, not root).
"""

import base64
import collections
import glob
import hashlib
import hmac
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import string
import subprocess
import time
import unittest
import uuid

import harness
from harness import (API_KEY, BASIC_PASS, BASIC_USER, Service, ServiceTestCase, dumps,
                     free_port, make_temp_dir, matching_event, non_matching_event, run_cli,
                     write_config)
from receiver import Receiver, Reply, pagerduty_ok, self_signed_context, slack_ok, webhook_ok

JSON = {"Content-Type": "application/json"}


def basic(user, password):
    return "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()


def b64(text):
    return base64.b64encode(text.encode()).decode()


def secret(prefix):
    """A fresh secret: letters and digits only, so no escaping (JSON, URL) can hide it."""
    return prefix + uuid.uuid4().hex + uuid.uuid4().hex[:8]


def other_char(c, pool=string.ascii_lowercase + string.digits):
    return next(x for x in pool if x != c)


def flip_first(text):
    return other_char(text[0]) + text[1:]


def flip_last(text):
    return text[:-1] + other_char(text[-1])


def scrape(svc, headers=None):
    """GET /metrics as {series: value}."""
    r = svc.request("GET", "/metrics", auth=False, headers=headers)
    if r.status != 200:
        raise AssertionError("GET /metrics: %r" % r)
    out = {}
    for line in r.body.decode().splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            out[series] = float(value)
    return out


def metric(samples, name, **labels):
    """The sum of the samples of @p name whose labels include @p labels."""
    total = 0.0
    for series, value in samples.items():
        base, _, rest = series.partition("{")
        if base != name:
            continue
        if all('%s="%s"' % (k, v) in rest for k, v in labels.items()):
            total += value
    return total


def receiver(testcase, default, **kw):
    r = Receiver(default=default, **kw).start()
    testcase.addCleanup(r.stop)
    return r


def wait_until(predicate, timeout, interval=0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def http_get(host, port, path, headers=None, timeout=5):
    """One GET to @p host (IPv4 or IPv6 literal): (status, body)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def http_post(host, port, path, body, headers=None, timeout=10):
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers=dict(JSON, **(headers or {})))
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


# ---- 1. constant-time comparison, under callgrind ---------------------------------------------

VALGRIND = shutil.which("valgrind")
ALLOCATORS = {"malloc", "free", "calloc", "realloc", "th_xmalloc", "th_xcalloc", "th_xrealloc",
              "th_xstrdup", "th_xstrndup"}


class CallgrindProfile:
    """One callgrind dump (written with --compress-strings=no --compress-pos=no)."""

    def __init__(self, path):
        self.path = path
        self.total = None
        self.self_cost = collections.Counter()  # function -> Ir spent in it
        self.calls = collections.Counter()  # (caller, callee) -> number of calls
        self.inclusive = collections.Counter()  # (caller, callee) -> Ir spent in those calls
        fn = cfn = None
        call = None
        with open(path) as f:
            for line in f:
                line = line.rstrip("\n")
                if call is not None:  # the line after calls= is the cost of those calls
                    parts = line.split()
                    self.inclusive[call] += int(parts[1]) if len(parts) > 1 else 0
                    call = None
                elif line.startswith("fn="):
                    fn = line[3:]
                elif line.startswith("cfn="):
                    cfn = line[4:]
                elif line.startswith("calls="):
                    call = (fn, cfn)
                    self.calls[call] += int(line[6:].split()[0])
                elif line.startswith(("totals:", "summary:")):
                    self.total = int(line.split()[1])
                elif line[:1].isdigit() and fn is not None:
                    parts = line.split()
                    if len(parts) > 1:
                        self.self_cost[fn] += int(parts[1])
        # The allocator and whatever it calls: its cost depends on the heap, not on credentials.
        alloc = set(ALLOCATORS)
        grew = True
        while grew:
            more = {callee for (caller, callee) in self.calls if caller in alloc} - alloc
            alloc |= more
            grew = bool(more)
        self.allocator_ir = sum(ir for (caller, callee), ir in self.inclusive.items()
                                if caller not in alloc and callee in alloc)
        self.profile = {f: ir for f, ir in self.self_cost.items() if f not in alloc and ir}
        self.ct_calls = sum(n for (_, callee), n in self.calls.items() if callee == "th_ct_equal")
        self.ct_ir = sum(ir for (_, callee), ir in self.inclusive.items()
                         if callee == "th_ct_equal")

    @property
    def compared_ir(self):
        """Instructions of th_auth_check and all it calls, the allocator left out."""
        return self.total - self.allocator_ir

    def key(self):
        return (self.compared_ir, self.ct_calls, self.ct_ir, sorted(self.profile.items()))

    def describe(self):
        return "Ir %d (allocator %d left out), th_ct_equal: %d calls, %d Ir" % (
            self.compared_ir, self.allocator_ir, self.ct_calls, self.ct_ir)


class CallgrindService(Service):
    """`valgrind --tool=callgrind trailhook serve`, dumping a profile after each th_auth_check."""

    def __init__(self, testcase, out_dir, **kw):
        prefix = [VALGRIND, "--tool=callgrind", "--log-file=%s/valgrind.log" % out_dir,
                  "--callgrind-out-file=%s/callgrind.out" % out_dir,
                  "--toggle-collect=th_auth_check", "--dump-after=th_auth_check",
                  "--compress-strings=no", "--compress-pos=no"]
        super().__init__(testcase, command_prefix=prefix, **kw)
        self.out_dir = out_dir

    def profiles(self):
        """The profiles dumped so far, in call order."""
        paths = glob.glob(os.path.join(self.out_dir, "callgrind.out.*"))
        paths.sort(key=lambda p: int(p.rsplit(".", 1)[1]))
        return [CallgrindProfile(p) for p in paths]


def random_text(rng, n, alphabet=string.ascii_lowercase + string.digits):
    return "".join(rng.choice(alphabet) for _ in range(n))


def b64_shape(text):
    """The character classes of base64(@p text): what th_auth_base64_decode branches on."""
    out = []
    for c in b64(text):
        out.append("U" if c.isupper() else "L" if c.islower() else "D" if c.isdigit() else c)
    return "".join(out)


def same_shape_variant(text, positions, rng):
    """@p text with a different character at each of @p positions, base64 shape unchanged."""
    shape = b64_shape(text)
    chars = list(text)
    for i in positions:
        options = [c for c in string.ascii_letters + string.digits if c != text[i]]
        rng.shuffle(options)
        for c in options:
            trial = chars[:i] + [c] + chars[i + 1:]
            if b64_shape("".join(trial)) == shape:
                chars = trial
                break
        else:
            raise ValueError("no same-shape character for position %d" % i)
    return "".join(chars)


class ConstantTimeTest(ServiceTestCase):
    """Instruction counts of th_auth_check, per request, on the real binary."""

    ROUNDS = 3  # each candidate is measured three times, in alternating orders

    @classmethod
    def setUpClass(cls):
        if VALGRIND is None:
            raise unittest.SkipTest("valgrind is not installed (apt-get install valgrind; "
                                    ".ci/deps test installs it): constant-time checks skipped")
        with open(harness.BIN, "rb") as f:
            image = f.read()
        if b"__asan_init" in image or b"__tsan_init" in image:
            raise unittest.SkipTest("%s is a sanitizer build, which valgrind cannot run: "
                                    "constant-time checks skipped" % harness.BIN)
        if b"th_auth_check" not in image:
            raise unittest.SkipTest("%s has no symbol table (stripped): callgrind cannot find "
                                    "th_auth_check; constant-time checks skipped" % harness.BIN)

    def profiled_service(self, env):
        out = make_temp_dir(self, "trailhook-callgrind-")
        # Symbols bound at load time: the first call of a libc function is no dearer than the
        # next through lazy binding (_dl_fixup).
        svc = CallgrindService(self, out, auth=False, env=dict(env, LD_BIND_NOW="1"))
        svc.start(timeout=90)
        return svc

    def run_candidates(self, svc, candidates):
        """Sends each (label, headers) 1 + ROUNDS times; @return {label: [(status, profile), ...]}
        of the ROUNDS measured times."""
        # A first pass is not measured: the first connections' buffers land at addresses that
        # differ until the heap settles, which moves libc's page-boundary checks in strlen and
        # strncasecmp by a few instructions (the same for every credential).
        warm = len(candidates)
        sent = []
        order = list(candidates)
        for round_ in range(self.ROUNDS + 1):
            for label, headers in (order if round_ % 2 == 0 else reversed(order)):
                r = svc.post_events(dumps(non_matching_event()), headers=headers, auth=False,
                                    timeout=120)
                sent.append((label, r.status))
        svc.stop(timeout=60)
        profiles = svc.profiles()
        self.assertEqual(len(profiles), len(sent),
                         "expected one th_auth_check call (one dump) per request\n%s"
                         % svc.stderr_text()[-3000:])
        out = collections.defaultdict(list)
        for (label, status), p in zip(sent[warm:], profiles[warm:]):
            self.assertIsNotNone(p.total, p.path)
            out[label].append((status, p))
        return out

    def assertSamePath(self, results, labels, what):
        """Every candidate of @p labels ran the very same instructions.

        Each candidate is measured ROUNDS times; what differs between two runs of one and the
        same request (a buffer that lands near a page end, housekeeping on another thread
        between requests) cannot depend on a secret, so the candidates pass when one profile is
        common to all of them. A cost that depends on the candidate shows in every run of it,
        and leaves no profile in common."""
        common = None
        for label in labels:
            keys = {repr(p.key()) for _, p in results[label]}
            common = keys if common is None else common & keys
        if common:
            return
        lines = []
        for label in labels:
            seen = collections.OrderedDict()
            for _, p in results[label]:
                seen.setdefault(repr(p.key()), p)
            lines.append("  %s: %s" % (label, " | ".join(p.describe() for p in seen.values())))
        ref = results[labels[0]][0][1]
        diff = set()
        for label in labels[1:]:
            for _, p in results[label]:
                diff |= {f for f in set(p.profile) | set(ref.profile)
                         if p.profile.get(f) != ref.profile.get(f)}
        self.fail("%s: th_auth_check ran different instructions depending on the credential:\n"
                  "%s\n  functions whose cost differs from %r's: %s"
                  % (what, "\n".join(lines), labels[0], ", ".join(sorted(diff))))

    def assertEveryCredentialCompared(self, results, expected, what):
        for label, runs in results.items():
            for _, p in runs:
                self.assertEqual(p.ct_calls, expected,
                                 "%s %r: th_ct_equal called %d times, not once per configured "
                                 "credential (%d)" % (what, label, p.ct_calls, expected))

    def test_api_key_and_bearer_checks_run_the_same_instructions(self):
        rng = random.Random(1)
        keys = [random_text(rng, 32) for _ in range(3)]
        first, last = keys[0], keys[-1]
        svc = self.profiled_service({"TRAILHOOK_API_KEYS": ",".join(keys)})
        same_length = {
            "right, first configured": first,
            "right, last configured": last,
            "first byte wrong": flip_first(first),
            "last byte wrong": flip_last(first),
            "unrelated": random_text(rng, 32),
        }
        lengths = {
            "one byte short": first[:-1],
            "unrelated, one byte short": random_text(rng, 31),
            "one byte long": first + "0",
            "unrelated, one byte long": random_text(rng, 33),
        }
        candidates = []
        for scheme in ("header", "bearer"):
            for label, key in list(same_length.items()) + list(lengths.items()):
                headers = ({"X-Api-Key": key} if scheme == "header"
                           else {"Authorization": "Bearer " + key})
                candidates.append(("%s: %s" % (scheme, label), headers))
        results = self.run_candidates(svc, candidates)

        for label, runs in results.items():
            want = 202 if label.endswith("configured") else 401
            self.assertEqual([s for s, _ in runs], [want] * self.ROUNDS, label)
        self.assertEveryCredentialCompared(results, len(keys), "API key")
        for scheme in ("header", "bearer"):
            self.assertSamePath(results, ["%s: %s" % (scheme, l) for l in same_length],
                                "%s, keys of the configured length" % scheme)
            self.assertSamePath(results, ["%s: one byte short" % scheme,
                                          "%s: unrelated, one byte short" % scheme],
                                "%s, a prefix of a key vs any key of that length" % scheme)
            self.assertSamePath(results, ["%s: one byte long" % scheme,
                                          "%s: unrelated, one byte long" % scheme],
                                "%s, a key plus a byte vs any key of that length" % scheme)

    def test_the_configured_length_interacts_with_nothing(self):
        # The same keys, of several lengths, against keys of 24 and of 40 characters: the cost of
        # a check may depend on what was presented and on what is configured, but not on how the
        # two compare (a short cut on equal lengths would make the difference jump there).
        rng = random.Random(2)
        short_keys = [random_text(rng, 24) for _ in range(3)]
        long_keys = [random_text(rng, 40) for _ in range(3)]
        presented = {"%d characters" % n: random_text(rng, n) for n in (23, 24, 25, 39, 40, 41)}
        presented["a 24-character key, one byte short"] = short_keys[0][:-1]
        presented["a 40-character key, one byte short"] = long_keys[0][:-1]
        presented["a 24-character key plus a byte"] = short_keys[0] + "0"
        candidates = [(label, {"X-Api-Key": key}) for label, key in presented.items()]
        costs = {}
        for name, keys in (("24", short_keys), ("40", long_keys)):
            svc = self.profiled_service({"TRAILHOOK_API_KEYS": ",".join(keys)})
            results = self.run_candidates(svc, candidates)
            self.assertEveryCredentialCompared(results, len(keys), "API key")
            for label, runs in results.items():
                self.assertEqual([st for st, _ in runs], [401] * self.ROUNDS, label)
                # The usual cost of the candidate (see assertSamePath on run-to-run noise).
                costs[name, label] = collections.Counter(
                    p.compared_ir for _, p in runs).most_common(1)[0][0]
        diffs = {label: costs["40", label] - costs["24", label] for label in presented}
        self.assertEqual(len(set(diffs.values())), 1,
                         "the cost difference between 40- and 24-character configured keys "
                         "depends on the presented key:\n  " +
                         "\n  ".join("%s: %+d Ir" % kv for kv in diffs.items()))

    def basic_credentials(self):
        """Two configured credentials of one base64 shape, and same-shape near misses."""
        for seed in range(100):
            rng = random.Random(seed)
            try:
                cred = "ingest:" + random_text(rng, 23, string.ascii_letters + string.digits)
                colon = cred.index(":")
                every = [i for i in range(len(cred)) if i != colon]
                other = same_shape_variant(cred, every, rng)
                same_length = {
                    "right, first configured": cred,
                    "right, last configured": other,
                    "user, first byte wrong": same_shape_variant(cred, [0], rng),
                    "user, last byte wrong": same_shape_variant(cred, [colon - 1], rng),
                    "password, first byte wrong": same_shape_variant(cred, [colon + 1], rng),
                    "password, last byte wrong": same_shape_variant(cred, [len(cred) - 1], rng),
                    "unrelated": same_shape_variant(cred, every, rng),
                }
                short, long_ = cred[:-1], cred + "x"
                lengths = {
                    "one byte short": short,
                    "unrelated, one byte short": same_shape_variant(short, every[:-1], rng),
                    "one byte long": long_,
                    "unrelated, one byte long": same_shape_variant(long_, every + [len(cred)],
                                                                   rng),
                }
                return [cred, other], same_length, lengths
            except ValueError:
                continue
        self.fail("no base64-shape-preserving credentials found")

    def test_basic_checks_run_the_same_instructions(self):
        creds, same_length, lengths = self.basic_credentials()
        svc = self.profiled_service({"TRAILHOOK_BASIC_AUTH": ",".join(creds)})
        candidates = [(label, {"Authorization": "Basic " + b64(text)})
                      for label, text in list(same_length.items()) + list(lengths.items())]
        results = self.run_candidates(svc, candidates)

        for label, runs in results.items():
            want = 202 if label.endswith("configured") else 401
            self.assertEqual([s for s, _ in runs], [want] * self.ROUNDS, label)
        self.assertEveryCredentialCompared(results, len(creds), "Basic")
        self.assertSamePath(results, list(same_length), "Basic, credentials of one length")
        self.assertSamePath(results, ["one byte short", "unrelated, one byte short"],
                            "Basic, a prefix of a credential vs any of that length")
        self.assertSamePath(results, ["one byte long", "unrelated, one byte long"],
                            "Basic, a credential plus a byte vs any of that length")


# ---- 2. failures look alike ----------------------------------------------------------------------

class AuthFailureTest(ServiceTestCase):
    # Header names and values that differ per request by design.
    PER_REQUEST_HEADERS = {"date", "x-request-id"}
    # Series that move with time or load, not with the request.
    VOLATILE = re.compile(r"^(process_|trailhook_queue_depth)|_seconds(_bucket|_sum|_count)?\{|"
                          r"_seconds(_bucket|_sum|_count)? ")

    def cases(self):
        key = API_KEY
        return [
            ("no credentials", {}),
            ("API key, first byte wrong", {"X-Api-Key": flip_first(key)}),
            ("API key, last byte wrong", {"X-Api-Key": flip_last(key)}),
            ("API key, one byte short", {"X-Api-Key": key[:-1]}),
            ("API key, one byte long", {"X-Api-Key": key + "0"}),
            ("empty API key", {"X-Api-Key": ""}),
            ("wrong Bearer token", {"Authorization": "Bearer " + flip_last(key)}),
            ("Bearer without a token", {"Authorization": "Bearer"}),
            ("wrong user", {"Authorization": basic(flip_first(BASIC_USER), BASIC_PASS)}),
            ("wrong password", {"Authorization": basic(BASIC_USER, flip_last(BASIC_PASS))}),
            ("wrong user and password", {"Authorization": basic("nobody", "nothing")}),
            ("user without password", {"Authorization": "Basic " + b64(BASIC_USER)}),
            ("password without user", {"Authorization": basic("", BASIC_PASS)}),
            ("malformed Basic base64", {"Authorization": "Basic !!!not*base64!!!"}),
            ("Basic base64 with a bad last character",
             {"Authorization": basic(BASIC_USER, BASIC_PASS)[:-1] + "*"}),
            ("right API key as the Basic password", {"Authorization": basic(BASIC_USER, key)}),
            ("right API key in the Basic scheme", {"Authorization": "Basic " + key}),
            ("right API key under another scheme", {"Authorization": "Token " + key}),
            ("right API key bare in Authorization", {"Authorization": key}),
            ("right API key in another header", {"X-Other-Key": key}),
            ("right Basic credential as an API key",
             {"X-Api-Key": "%s:%s" % (BASIC_USER, BASIC_PASS)}),
            ("right Basic credential as a Bearer token",
             {"Authorization": "Bearer " + b64("%s:%s" % (BASIC_USER, BASIC_PASS))}),
        ]

    def observe(self, svc, headers):
        """One failed POST /events: what a client and an operator can see of it."""
        before = scrape(svc)
        mark = len(svc.stderr_lines)
        r = svc.post_events(dumps(matching_event()), headers=headers, auth=False)
        time.sleep(0.1)
        after = scrape(svc)
        rid = r.header("X-Request-Id") or ""
        with svc._cond:
            lines = list(svc.stderr_lines[mark:])
        logs = []
        for line in lines:
            try:
                doc = json.loads(line)
            except ValueError:
                doc = {"text": line}
            doc.pop("time", None)
            logs.append(json.dumps(doc, sort_keys=True).replace(rid, "<request id>")
                        if rid else json.dumps(doc, sort_keys=True))
        body = r.json if r.body else None
        if isinstance(body, dict):
            body = dict(body)
            body.pop("request_id", None)
        headers_seen = sorted((k.lower(), v) for k, v in r.headers
                              if k.lower() not in self.PER_REQUEST_HEADERS)
        moved = {k: after.get(k, 0) - before.get(k, 0) for k in set(before) | set(after)
                 if not self.VOLATILE.search(k + " ") and after.get(k, 0) != before.get(k, 0)}
        return {
            "status": r.status,
            "body": body,
            "raw body": r.body.replace(rid.encode(), b"<request id>") if rid else r.body,
            "headers": headers_seen,
            "WWW-Authenticate": r.header_all("WWW-Authenticate"),
            "log lines": logs,
            "metrics moved": moved,
        }

    def test_every_failure_looks_the_same(self):
        svc = Service(self, env={"TRAILHOOK_LOG_LEVEL": "debug"}).start()
        # A right credential first, so that a failure is not the first request of any kind.
        self.assertAccepted(svc.post_events(dumps(non_matching_event())), 1, 0)
        seen = [(label, self.observe(svc, headers)) for label, headers in self.cases()]
        ref_label, ref = seen[0]
        self.assertEqual(ref["status"], 401)
        self.assertEqual(ref["body"], {"error": "missing or wrong credentials"})
        self.assertTrue(ref["WWW-Authenticate"], "401 without WWW-Authenticate")
        self.assertEqual(metric(ref["metrics moved"], "trailhook_events_rejected_total",
                                reason="unauthorized"), 1, ref["metrics moved"])
        for label, got in seen[1:]:
            for what in ref:
                self.assertEqual(got[what], ref[what],
                                 "%s differs between %r and %r" % (what, ref_label, label))
        # Nothing in the log names a part of a credential either.
        for line in ref["log lines"]:
            self.assertNotRegex(line.lower(), r"password|user|base64|bearer|api.?key|header")


# ---- 3. secrets ----------------------------------------------------------------------------------

class SecretsTest(ServiceTestCase):
    def needles(self, secrets):
        """Each secret and three 12-character slices of it (start, middle, end)."""
        out = {}
        for name, value in secrets.items():
            out[value] = name
            if len(value) >= 24:
                mid = len(value) // 2
                for part, piece in (("start", value[:12]), ("middle", value[mid - 6:mid + 6]),
                                    ("end", value[-12:])):
                    out.setdefault(piece, "%s (%s)" % (name, part))
        return out

    def assertNoSecret(self, outputs, secrets):
        needles = self.needles(secrets)
        found = []
        for where, text in outputs.items():
            if isinstance(text, bytes):
                text = text.decode("utf-8", "replace")
            for needle, name in needles.items():
                whole = secrets.get(name.split(" (")[0], needle)
                if needle in text and (needle == whole or whole not in text):
                    lines = [l for l in text.splitlines() if needle in l][:3]
                    found.append("%s in %s:\n    %s" % (name, where, "\n    ".join(
                        l.replace(needle, "<%s>" % name)[:400] for l in lines)))
        if found:
            self.fail("secrets in trailhook's own output:\n  " + "\n  ".join(found))

    def secret_file(self, directory, name, value):
        path = os.path.join(directory, name)
        with open(path, "w") as f:
            f.write(value + "\n")
        return path

    def wait_log_count(self, svc, needle, count, timeout=15):
        ok = wait_until(lambda: svc.stderr_text().count(needle) >= count, timeout)
        self.assertTrue(ok, "fewer than %d %r in the log:\n%s"
                        % (count, needle, svc.stderr_text()[-4000:]))

    def state_dump(self, state_dir):
        """{file: raw bytes} of the state directory, plus {file + " tables": text} of databases."""
        out = {}
        for root, _, files in os.walk(state_dir):
            for name in files:
                path = os.path.join(root, name)
                with open(path, "rb") as f:
                    data = f.read()
                out["state file " + os.path.relpath(path, state_dir)] = data
                if data.startswith(b"SQLite format 3\x00"):
                    db = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
                    try:
                        rows = []
                        tables = [t for (t,) in db.execute(
                            "SELECT name FROM sqlite_master WHERE type = 'table'")]
                        for t in tables:
                            for row in db.execute('SELECT * FROM "%s"' % t.replace('"', '""')):
                                rows.append("%s: %r" % (t, row))
                        out["tables of " + name] = "\n".join(rows)
                    finally:
                        db.close()
        return out

    def test_no_secret_in_any_output(self):
        tmp = make_temp_dir(self, "trailhook-secrets-")
        s = {
            "api key 1": secret("apikeyone"),
            "api key 2": secret("apikeytwo"),
            "basic password": secret("basicpass"),
            "redis password": secret("redispass"),
            "slack token": secret("slacktoken"),
            "slack token (env)": secret("slackenvtoken"),
            "routing key": secret("routingkey"),
            "routing key (file)": secret("routingfile"),
            "webhook secret": secret("hooksecret"),
            "webhook hmac": secret("hookhmac"),
            "webhook path token": secret("hookpath"),
            "dead-letter secret (file)": secret("deadsecret"),
            "dead-letter hmac (file)": secret("deadhmac"),
            "dead-letter path token": secret("deadpath"),
            "unreachable path token": secret("downpath"),
            "unreachable secret": secret("downsecret"),
            "rotated api key": secret("apikeynew"),
            # Only in bad files and variables that are refused:
            "bad file 1 password": secret("badpassone"),
            "bad file 1 api key": secret("badkeyone"),
            "bad file 2 api key": secret("badkeytwo"),
            "bad file 3 webhook secret": secret("badhookthree"),
            "bad file 4 api key": secret("badkeyfour"),
            "bad variable password": secret("badenvpass"),
            "bad variable slack url": secret("badenvslack"),
            # What clients sent that was wrong:
            "wrong api key": secret("wrongkey"),
            "wrong basic password": secret("wrongpass"),
        }
        user = "ingest"
        s["basic credential, base64"] = b64("%s:%s" % (user, s["basic password"]))
        s["wrong basic credential, base64"] = b64("%s:%s" % (user, s["wrong basic password"]))
        s["redis url"] = "redis://:%s@127.0.0.1:6390/0" % s["redis password"]

        slack = receiver(self, slack_ok(), name="slack")
        flaky = receiver(self, slack_ok(), name="slack-env")
        flaky.script("*", Reply(500, b"rollup_error"))
        pd = receiver(self, pagerduty_ok(), name="pd")
        pd_env = receiver(self, pagerduty_ok(), name="pd-env")
        hook = receiver(self, webhook_ok(), name="hook")
        dead = receiver(self, Reply(400, b"invalid_payload"), name="dead")
        closed = free_port()
        slack_path = "/services/T0SEC/B0SEC/" + s["slack token"]
        flaky_path = "/services/T1SEC/B1SEC/" + s["slack token (env)"]
        s["slack url path"] = slack_path
        s["slack url (env) path"] = flaky_path

        def config(api_keys, extra=None, hook_secret=None):
            doc = {
                "api_keys": api_keys,
                "basic_auth": ["%s:%s" % (user, s["basic password"])],
                "max_body_bytes": 65536,
                "state": {"redis_url": s["redis url"]},
                "destinations": [
                    {"name": "slack", "type": "slack", "url": slack.url(slack_path),
                     "rate_per_minute": 6000, "burst": 100},
                    {"name": "pd", "type": "pagerduty", "url": pd.url("/v2/enqueue"),
                     "secret": s["routing key"], "rate_per_minute": 6000, "burst": 100},
                    {"name": "hook", "type": "webhook",
                     "url": hook.url("/hook/" + s["webhook path token"]),
                     "secret": hook_secret or s["webhook secret"],
                     "secret_header": "X-Hook-Token", "hmac_secret": s["webhook hmac"]},
                    {"name": "dead", "type": "webhook",
                     "url": dead.url("/dead/" + s["dead-letter path token"]),
                     "secret_file": self.secret_file(tmp, "dead_secret",
                                                     s["dead-letter secret (file)"]),
                     "hmac_secret_file": self.secret_file(tmp, "dead_hmac",
                                                          s["dead-letter hmac (file)"])},
                    {"name": "down", "type": "webhook", "connect_timeout_ms": 500,
                     "url": "http://127.0.0.1:%d/down/%s" % (closed, s["unreachable path token"]),
                     "secret": s["unreachable secret"]},
                ],
            }
            doc.update(extra or {})
            return doc

        path = os.path.join(tmp, "trailhook.yml")

        def write(doc_or_text):
            # JSON is YAML (flow style); harness.to_yaml loses the items of a list of scalars.
            with open(path, "w") as f:
                f.write(doc_or_text if isinstance(doc_or_text, str)
                        else json.dumps(doc_or_text, indent=2) + "\n")

        write(config([s["api key 1"], s["api key 2"]]))
        env = {
            "TRAILHOOK_LOG_LEVEL": "debug",
            "TRAILHOOK_SLACK_WEBHOOK_URL": flaky.url(flaky_path),
            "TRAILHOOK_PAGERDUTY_ROUTING_KEY_FILE": self.secret_file(tmp, "routing_key",
                                                                     s["routing key (file)"]),
            "TRAILHOOK_PAGERDUTY_URL": pd_env.url("/v2/enqueue"),
        }
        svc = Service(self, auth=False, config=path, env=env).start()
        outputs = {}
        nresp = [0]

        def call(method, target, body=None, headers=None, expect=None):
            r = svc.request(method, target, body=body, headers=headers, auth=False)
            nresp[0] += 1
            where = "response %d (%s %s -> %d)" % (nresp[0], method, target, r.status)
            outputs[where + " body"] = r.body
            outputs[where + " headers"] = "\n".join("%s: %s" % kv for kv in r.headers)
            if expect is not None:
                self.assertEqual(r.status, expect, "%s: %r" % (where, r))
            return r

        key1 = {"X-Api-Key": s["api key 1"]}
        # Good requests, with each kind of credential; the first one matches.
        r = call("POST", "/events", dumps(matching_event()), dict(JSON, **key1), 202)
        first_alert = r.json["alerts"][0]
        call("POST", "/events", dumps(non_matching_event()),
             dict(JSON, Authorization="Bearer " + s["api key 2"]), 202)
        call("POST", "/events", dumps(non_matching_event()),
             dict(JSON, Authorization=basic(user, s["basic password"])), 202)
        # Bad requests of every kind.
        call("POST", "/events", dumps(matching_event()),
             dict(JSON, **{"X-Api-Key": s["wrong api key"]}), 401)
        call("POST", "/events", dumps(matching_event()),
             dict(JSON, Authorization=basic(user, s["wrong basic password"])), 401)
        call("POST", "/events", dumps(matching_event()),
             dict(JSON, Authorization="Bearer " + s["basic password"]), 401)
        call("GET", "/alerts?limit=5", None, {"Authorization": "Bearer " + s["wrong api key"]},
             401)
        call("POST", "/events", b'{"eventName": @', dict(JSON, **key1), 400)
        call("POST", "/events", dumps(non_matching_event()) + b" " * 70000, dict(JSON, **key1),
             413)
        call("POST", "/events", b"a=b", dict(key1, **{"Content-Type": "text/html"}), 415)
        call("GET", "/events", None, key1, 405)
        call("GET", "/nowhere", None, key1, 404)
        call("GET", "/alerts?limit=nope", None, key1, 400)

        # Deliveries: delivered, retried after a 500, refused with 400 (dead letter), unreachable.
        for rcv in (slack, flaky, pd, pd_env, hook):
            self.assertEqual(len(rcv.wait_delivered(1, timeout=30)), 1, (rcv.name, rcv.all()))
        dead.wait_requests(1, timeout=20)
        rows = wait_until(lambda: [x for x in harness.outbox_cli(svc.state_dir, "list",
                                                                 "--dead")[1]
                                   if x["destination"] == "dead"], 20, 0.2)
        self.assertTrue(rows, "no dead letter for the destination answering 400")
        self.wait_log_count(svc, "down:", 1)
        # The secrets went where they belong (so their absence elsewhere means something).
        self.assertIn(s["slack token"], slack.all()[0].path)
        self.assertIn(s["slack token (env)"], flaky.all()[0].path)
        self.assertEqual(pd.all()[0].json["routing_key"], s["routing key"])
        self.assertEqual(pd_env.all()[0].json["routing_key"], s["routing key (file)"])
        got = hook.all()[0]
        self.assertEqual(got.header("X-Hook-Token"), s["webhook secret"])
        self.assertEqual(got.header("X-Trailhook-Signature"), "sha256=" + hmac.new(
            s["webhook hmac"].encode(), got.body, hashlib.sha256).hexdigest())
        self.assertEqual(dead.all()[0].header("X-Trailhook-Secret"),
                         s["dead-letter secret (file)"])

        # SIGHUP with bad files, each holding secrets the running configuration does not have.
        keys = [s["api key 1"], s["api key 2"]]
        bad_files = [
            config(keys + [s["bad file 1 api key"]],
                   {"basic_auth": ["nocolon" + s["bad file 1 password"]]}),
            'api_keys: ["%s", "%s"\nmax_body_bytes: 1\n' % (s["bad file 2 api key"],
                                                           s["api key 1"]),
            config(keys, hook_secret=[s["bad file 3 webhook secret"], "x"]),
            dict(config(keys), api_key=s["bad file 4 api key"]),
        ]
        for i, bad in enumerate(bad_files, 1):
            write(bad)
            r = run_cli(["config", "--config", path], env=svc.env())
            self.assertNotEqual(r.returncode, 0, "bad file %d was accepted" % i)
            outputs["trailhook config (bad file %d) stdout" % i] = r.stdout
            outputs["trailhook config (bad file %d) stderr" % i] = r.stderr
            svc.proc.send_signal(signal.SIGHUP)
            self.wait_log_count(svc, "keeping the running one", i)
        call("POST", "/events", dumps(non_matching_event()), dict(JSON, **key1), 202)
        # Then a good one that rotates the keys.
        write(config([s["api key 2"], s["rotated api key"]]))
        svc.proc.send_signal(signal.SIGHUP)
        self.wait_log_count(svc, "configuration reloaded", 1)
        new_key = {"X-Api-Key": s["rotated api key"]}
        call("POST", "/events", dumps(non_matching_event()), dict(JSON, **key1), 401)
        r = call("POST", "/events", dumps(matching_event()), dict(JSON, **new_key), 202)
        second_alert = r.json["alerts"][0]
        self.assertGreaterEqual(len(slack.wait_delivered(2, timeout=30)), 2, slack.all())

        # Variables the loader refuses, with secrets in them.
        for name, value in (("TRAILHOOK_BASIC_AUTH", "nocolon" + s["bad variable password"]),
                            ("TRAILHOOK_SLACK_WEBHOOK_URL",
                             "ftp://hooks.example.com/services/T/B/" +
                             s["bad variable slack url"])):
            r = run_cli(["config"], env={name: value})
            self.assertNotEqual(r.returncode, 0, "%s=%s was accepted" % (name, value))
            outputs["trailhook config (bad %s)" % name] = r.stdout + r.stderr

        # What an operator reads.
        call("GET", "/alerts?limit=100", None, new_key, 200)
        metrics = call("GET", "/metrics", None, new_key, 200).body.decode()
        self.assertIn('destination="down"', metrics)
        call("GET", "/healthz", None, None, 200)
        call("GET", "/readyz", None, None, 200)
        for args in (("list",), ("list", "--dead"), ("list", "--pending"),
                     ("list", "--destination", "hook")):
            r = run_cli(["outbox"] + list(args) + ["--state-dir", svc.state_dir,
                                                   "--config", path], env=svc.env())
            self.assertEqual(r.returncode, 0, r.stderr)
            outputs["trailhook outbox %s stdout" % " ".join(args)] = r.stdout
            outputs["trailhook outbox %s stderr" % " ".join(args)] = r.stderr
        self.assertIn(b"invalid_payload", outputs["trailhook outbox list --dead stdout"])
        r = run_cli(["config", "--config", path], env=svc.env())
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"<redacted>", r.stdout)
        outputs["trailhook config stdout"] = r.stdout
        outputs["trailhook config stderr"] = r.stderr

        self.assertEqual(svc.stop(), 0, svc.stderr_text()[-3000:])
        outputs["serve stderr"] = svc.stderr_text()
        outputs["serve stdout"] = "\n".join(svc.stdout_lines)
        state = self.state_dump(svc.state_dir)
        tables = "\n".join(v for k, v in state.items() if k.startswith("tables of "))
        self.assertIn(first_alert, tables)
        self.assertIn(second_alert, tables)
        outputs.update(state)

        self.assertNoSecret(outputs, s)

    def test_credentials_in_a_url_are_not_shown(self):
        # user:password in a URL is as secret as a token in its path (which is hidden).
        hook = receiver(self, webhook_ok(), name="hook")
        pd = receiver(self, pagerduty_ok(), name="pd")
        s = {"webhook URL password": secret("urlpass"),
             "pagerduty_url password": secret("pdurlpass"),
             "routing key": secret("routingkey")}
        hook_url = hook.url("/hook").replace("http://", "http://hookuser:%s@"
                                             % s["webhook URL password"])
        pd_url = pd.url("/v2/enqueue").replace("http://", "http://pduser:%s@"
                                               % s["pagerduty_url password"])
        path = write_config(self, {"destinations": [{"name": "hook", "type": "webhook",
                                                     "url": hook_url}],
                                   "pagerduty_url": pd_url})
        env = {"TRAILHOOK_PAGERDUTY_ROUTING_KEY": s["routing key"]}
        svc = Service(self, config=path, env=env).start()
        self.assertAccepted(svc.post_events(dumps(matching_event())), 1, 1)
        hook.wait_delivered(1, timeout=20)
        pd.wait_delivered(1, timeout=20)
        # libcurl sends the URL's credentials as Basic auth: they are in use.
        self.assertEqual(hook.all()[0].header("Authorization"),
                         basic("hookuser", s["webhook URL password"]))
        outputs = {"/metrics": svc.request("GET", "/metrics").body,
                   "/alerts": svc.request("GET", "/alerts?limit=10").body}
        r = run_cli(["config", "--config", path], env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        outputs["trailhook config"] = r.stdout + r.stderr
        svc.stop()
        outputs["serve stderr"] = svc.stderr_text()
        self.assertNoSecret(outputs, s)


# ---- 4. TLS verification and redirects on outbound calls ----------------------------------------

class OutboundTest(ServiceTestCase):
    def destinations(self, rcv, paths):
        return [
            {"name": "slack", "type": "slack", "url": rcv.url(paths["slack"]),
             "rate_per_minute": 6000, "burst": 100},
            {"name": "pd", "type": "pagerduty", "url": rcv.url(paths["pd"]),
             "secret": secret("routingkey"), "rate_per_minute": 6000, "burst": 100},
            {"name": "hook", "type": "webhook", "url": rcv.url(paths["hook"]),
             "secret": secret("hooksecret"), "hmac_secret": secret("hmac")},
        ]

    def outbox(self, svc):
        r, rows = svc.outbox("list")
        self.assertEqual(r.returncode, 0, r.stderr)
        return {row["destination"]: row for row in rows}

    def test_every_destination_type_refuses_an_untrusted_certificate(self):
        if shutil.which("openssl") is None:
            self.skipTest("no openssl to make a certificate")
        tls = receiver(self, webhook_ok(), name="tls",
                       tls_context=self_signed_context(make_temp_dir(self, "trailhook-tls-")))
        self.assertTrue(tls.url().startswith("https://"))
        names = ("slack", "pd", "hook")
        config = write_config(self, {"destinations": self.destinations(
            tls, {n: "/" + n for n in names})})
        svc = Service(self, config=config).start()
        self.assertAccepted(svc.post_events(dumps(matching_event())), 1, 1)

        def failed():
            m = scrape(svc)
            return all(metric(m, "trailhook_notifications_failed_total", destination=n,
                              reason="network") >= 1 for n in names) and m

        m = wait_until(failed, 20, 0.2)
        self.assertTrue(m, "a TLS failure not counted as reason=network:\n%s"
                        % "\n".join(k for k in scrape(svc) if "failed_total" in k))
        self.assertGreaterEqual(tls.tls_failures, 3, tls.tls_errors)
        self.assertEqual(tls.all(), [], "a request went through an unverified TLS connection")
        rows = self.outbox(svc)
        for n in names:
            self.assertEqual(metric(m, "trailhook_notifications_total", destination=n), 0, n)
            self.assertIn(n, rows, rows)
            self.assertEqual(rows[n]["state"], "pending", rows[n])
            self.assertGreaterEqual(rows[n]["attempts"], 1, rows[n])
            self.assertRegex(rows[n]["last_error"] or "", r"(?i)ssl|certificate|tls", rows[n])

    def test_redirects_are_not_followed(self):
        target = receiver(self, webhook_ok(), name="target")
        redirect = receiver(self, webhook_ok(), name="redirect")
        statuses = {"slack": 302, "pd": 307, "hook": 308}
        for name, status in statuses.items():
            redirect.set_default(Reply(status, b"moved", headers={
                "Location": target.url("/stolen/" + name)}), path="/" + name)
        config = write_config(self, {"destinations": self.destinations(
            redirect, {n: "/" + n for n in statuses})})
        svc = Service(self, config=config).start()
        self.assertAccepted(svc.post_events(dumps(matching_event())), 1, 1)
        got = redirect.wait_for(lambda r: {q.path for q in r.all() if q.answered} >=
                                {"/" + n for n in statuses}, 20)
        self.assertTrue(got, redirect.all())
        time.sleep(3)  # a follow-up would come at once; a retry within a second or two
        self.assertEqual(target.all(), [], "a redirect was followed")
        m = scrape(svc)
        rows = self.outbox(svc)
        for name, status in statuses.items():
            self.assertEqual(metric(m, "trailhook_notifications_total", destination=name), 0,
                             name)
            self.assertNotEqual(rows[name]["state"], "done", rows[name])
            self.assertIn(str(status), rows[name]["last_error"] or "", rows[name])


# ---- 5. listeners --------------------------------------------------------------------------------

def local_address(family):
    """An address of this host that is not loopback, or None."""
    probe = ("198.51.100.1", 9) if family == socket.AF_INET else ("2001:db8::1", 9)
    try:
        s = socket.socket(family, socket.SOCK_DGRAM)
        try:
            s.connect(probe)  # UDP: picks a source address, sends nothing
            addr = s.getsockname()[0]
        finally:
            s.close()
    except OSError:
        addr = None
    if addr is None:
        try:
            infos = socket.getaddrinfo(socket.gethostname(), None, family)
            addr = next((i[4][0] for i in infos), None)
        except OSError:
            return None
    if addr is None or addr.startswith("127.") or addr in ("::1", "0.0.0.0", "::") or \
            addr.lower().startswith("fe80"):
        return None
    return addr


def ipv6_available():
    if not socket.has_ipv6:
        return False
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        try:
            s.bind(("::1", 0))
        finally:
            s.close()
        return True
    except OSError:
        return False


class ListenTest(ServiceTestCase):
    def assertRefuses(self, svc):
        svc.spawn()
        rc = svc.wait_exit(10)
        self.assertIsNotNone(rc, "the service started; it should have refused:\n%s"
                             % svc.stderr_text())
        self.assertEqual(rc, 2, svc.stderr_text())
        self.assertRegex(svc.stderr_text(), r"(?i)credential|api_keys|--insecure-no-auth")

    def start_on(self, host, connect_host, args=(), env=None, auth=False):
        """Starts a service listening on @p host; waits for /healthz on @p connect_host."""
        svc = Service(self, auth=auth, host=host, args=args, env=env).spawn()
        ok = wait_until(lambda: svc.proc.poll() is not None or
                        self._healthy(connect_host, svc.port), 15, 0.05)
        self.assertTrue(ok and svc.proc.poll() is None,
                        "did not start on %s:\n%s" % (host, svc.stderr_text()))
        return svc

    @staticmethod
    def _healthy(host, port):
        try:
            return http_get(host, port, "/healthz", timeout=2)[0] == 200
        except OSError:
            return False

    def test_refuses_the_ipv6_wildcard_without_credentials(self):
        self.assertRefuses(Service(self, auth=False, host="[::]"))

    def test_ipv6_wildcard_with_insecure_no_auth(self):
        if not ipv6_available():
            self.skipTest("no IPv6 on this host")
        svc = self.start_on("[::]", "::1", args=["--insecure-no-auth"])
        status, body = http_post("::1", svc.port, "/events", dumps(non_matching_event()))
        self.assertEqual(status, 202, body)

    def test_ipv6_loopback_needs_no_credentials(self):
        if not ipv6_available():
            self.skipTest("no IPv6 on this host")
        svc = self.start_on("[::1]", "::1")
        status, body = http_post("::1", svc.port, "/events", dumps(non_matching_event()))
        self.assertEqual(status, 202, body)

    def test_refuses_a_non_loopback_address_without_credentials(self):
        # The check comes before the bind: any address that is not loopback is refused.
        v4 = local_address(socket.AF_INET) or "192.0.2.1"
        self.assertRefuses(Service(self, auth=False, host=v4))
        v6 = local_address(socket.AF_INET6) if ipv6_available() else None
        self.assertRefuses(Service(self, auth=False, host="[%s]" % (v6 or "2001:db8::1")))
        # Nor does a name that is not "localhost" pass for loopback.
        self.assertRefuses(Service(self, auth=False, host="localhost.example"))

    def test_non_loopback_address_with_insecure_no_auth(self):
        v4 = local_address(socket.AF_INET)
        if v4 is None:
            self.skipTest("this host has no IPv4 address besides loopback")
        svc = self.start_on(v4, v4, args=["--insecure-no-auth"])
        status, body = http_post(v4, svc.port, "/events", dumps(non_matching_event()))
        self.assertEqual(status, 202, body)
        # With credentials it starts too, and wants them.
        svc = self.start_on(v4, v4, auth=True)
        status, body = http_post(v4, svc.port, "/events", dumps(non_matching_event()))
        self.assertEqual(status, 401, body)

    def test_refuses_a_public_admin_listener_without_credentials(self):
        # The admin listener serves /alerts (actors, accounts, addresses) and POST /-/reload;
        # on every interface without credentials it is as open as `listen` would be.
        admin = free_port()
        svc = Service(self, auth=False, env={"TRAILHOOK_ADMIN_LISTEN": "0.0.0.0:%d" % admin})
        svc.spawn()
        wait_until(lambda: svc.proc.poll() is not None or self._healthy("127.0.0.1", admin), 15,
                   0.05)
        if svc.proc.poll() is None:
            status, body = http_get("127.0.0.1", admin, "/alerts?limit=1")
            self.fail("listen on loopback, admin_listen 0.0.0.0:%d and no credentials: the "
                      "service started, and GET /alerts on the admin listener answered %d "
                      "without credentials (%r)" % (admin, status, body[:200]))
        rc = svc.wait_exit(5)
        self.assertEqual(rc, 2, svc.stderr_text())
        self.assertRegex(svc.stderr_text(), r"(?i)credential|api_keys|--insecure-no-auth")

    def test_a_reload_cannot_drop_every_credential(self):
        tmp = make_temp_dir(self)
        path = os.path.join(tmp, "trailhook.yml")
        key = secret("reloadkey")
        with open(path, "w") as f:
            f.write("api_keys: [%s]\n" % key)
        svc = Service(self, auth=False, host="0.0.0.0", config=path).start()
        with open(path, "w") as f:
            f.write("max_events: 1000\n")
        svc.proc.send_signal(signal.SIGHUP)
        ok = wait_until(lambda: "keeping the running one" in svc.stderr_text() or
                        "configuration reloaded" in svc.stderr_text(), 10)
        self.assertTrue(ok, svc.stderr_text())
        self.assertIn("no credentials", svc.stderr_text())
        self.assertJsonResponse(svc.post_events(dumps(non_matching_event()), auth=False), 401)
        self.assertAccepted(svc.post_events(dumps(non_matching_event()), auth=False,
                                            headers={"X-Api-Key": key}), 1, 0)


if __name__ == "__main__":
    unittest.main()
