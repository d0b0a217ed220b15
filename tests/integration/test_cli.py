"""The command line (DESIGN.md §3): `test`, `eval`, `--version`, `--help`, usage errors."""

import gzip
import json
import os
import re
import unittest

import harness
from harness import RULE_ID, RULE_SPEC, dumps, load_fixture, make_temp_dir, run_cli

TEST_NAMES = ["AMI Made Public", "AMI Not Made Public", "AMI Launch Permissions Not Modified",
              "AMI Added to User", "Error Making AMI Public", "Access Granted To Unknown User"]


def lines_of(data):
    return [l for l in data.decode().splitlines() if l.strip()]


class RuleTestCommandTest(unittest.TestCase):
    def setUp(self):
        self.tmp = make_temp_dir(self)
        with open(RULE_SPEC) as f:
            self.spec_text = f.read()

    def spec_copy(self, text, name="rule.yml"):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_the_rule_spec_passes(self):
        r = run_cli(["test", RULE_SPEC])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        out = lines_of(r.stdout)
        self.assertEqual(len(out), 7, out)
        self.assertEqual(out[-1], "6 passed, 0 failed")
        for name, line in zip(TEST_NAMES, out):
            self.assertIn(name, line)

    def test_a_flipped_expectation_fails(self):
        # The first test, "AMI Made Public", now expects no match.
        text = self.spec_text.replace("ExpectedResult: true", "ExpectedResult: false", 1)
        self.assertNotEqual(text, self.spec_text)
        r = run_cli(["test", self.spec_copy(text)])
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        out = lines_of(r.stdout)
        self.assertEqual(out[-1], "5 passed, 1 failed")
        # The line of "AMI Made Public" reads differently from the passing run's.
        passing = lines_of(run_cli(["test", RULE_SPEC]).stdout)
        changed = [(a, b) for a, b in zip(passing[:-1], out[:-1]) if a != b]
        self.assertEqual(len(changed), 1, out)
        self.assertIn("AMI Made Public", changed[0][1])

    def test_an_unknown_mock_fails_that_test(self):
        text = self.spec_text.replace("objectName: check_account_age",
                                      "objectName: no_such_helper", 1)
        self.assertNotEqual(text, self.spec_text)
        r = run_cli(["test", self.spec_copy(text)])
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        out = lines_of(r.stdout)
        self.assertEqual(out[-1], "5 passed, 1 failed")
        both = (r.stdout + r.stderr).decode()
        self.assertIn("no_such_helper", both)
        mock_lines = [l for l in both.splitlines() if "no_such_helper" in l]
        # The first mock belongs to "AMI Not Made Public".
        self.assertTrue(any("AMI Not Made Public" in l for l in mock_lines) or
                        any("AMI Not Made Public" in l for l in out if "no_such_helper" in l),
                        both)

    def test_a_bad_severity_stops_with_file_and_line(self):
        text = self.spec_text.replace("Severity: Medium", "Severity: Severe", 1)
        self.assertNotEqual(text, self.spec_text)
        path = self.spec_copy(text)
        line_no = text.splitlines().index("Severity: Severe") + 1
        r = run_cli(["test", path])
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        err = r.stderr.decode()
        self.assertIn(path, err)
        self.assertTrue(re.search(r"(:%d\b|line %d\b)" % (line_no, line_no), err),
                        "no line %d in: %s" % (line_no, err))
        self.assertIn("Severity", err)

    def test_missing_spec_file(self):
        path = os.path.join(self.tmp, "absent.yml")
        r = run_cli(["test", path])
        self.assertEqual(r.returncode, 2)
        self.assertIn(path, r.stderr.decode())


class EvalCommandTest(unittest.TestCase):
    def setUp(self):
        self.tmp = make_temp_dir(self)
        # eval reads the configured new-account set: an empty state dir of its own.
        self.env = {"TRAILHOOK_STATE_DIR": os.path.join(self.tmp, "state")}

    def write(self, name, data):
        path = os.path.join(self.tmp, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def eval(self, args, stdin=None):
        r = run_cli(["eval"] + list(args), env=self.env, input_bytes=stdin)
        return r, [json.loads(l) for l in lines_of(r.stdout)]

    def assertLineShape(self, line):
        for key in ("index", "eventID", "match", "rule", "dedup"):
            self.assertIn(key, line)

    def test_stdin_match(self):
        ev = load_fixture("record_ami_made_public.json")
        r, out = self.eval([], stdin=dumps(ev))
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertEqual(len(out), 1, out)
        self.assertLineShape(out[0])
        self.assertEqual(out[0]["index"], 0)
        self.assertEqual(out[0]["eventID"], "1111")
        self.assertIs(out[0]["match"], True)
        self.assertEqual(out[0]["rule"], RULE_ID)
        self.assertIsInstance(out[0]["dedup"], str)
        self.assertIn("ami-1111", out[0]["dedup"])
        self.assertNotIn("file", out[0])

    def test_stdin_dash_no_match(self):
        ev = load_fixture("record_ami_not_made_public.json")
        r, out = self.eval(["-"], stdin=dumps(ev))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(out), 1)
        self.assertLineShape(out[0])
        self.assertIs(out[0]["match"], False)

    def test_stdin_ndjson(self):
        evs = [load_fixture("record_ami_not_made_public.json"),
               load_fixture("record_ami_made_public.json"),
               load_fixture("record_ami_made_public_failed.json")]
        r, out = self.eval([], stdin=b"\n".join(dumps(e) for e in evs) + b"\n")
        self.assertEqual(r.returncode, 1)
        self.assertEqual([l["index"] for l in out], [0, 1, 2])
        self.assertEqual([l["match"] for l in out], [False, True, False])

    def test_files(self):
        hit = harness.fixture_path("eventbridge_ami_made_public.json")
        miss = self.write("miss.json", dumps({"Records": [
            load_fixture("record_ami_not_made_public.json"),
            load_fixture("record_ami_made_public_failed.json")]}))
        r, out = self.eval([miss, hit])
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertEqual([(l.get("file"), l["index"], l["match"]) for l in out],
                         [(miss, 0, False), (miss, 1, False), (hit, 0, True)])
        self.assertEqual(out[2]["eventID"], "3bcb33d2-ce17-4e98-a4a5-d71373819c90")
        r, out = self.eval([miss])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(out), 2)

    def test_gzip_file(self):
        path = self.write("log.json.gz", gzip.compress(dumps({"Records": [
            load_fixture("record_ami_made_public.json")]})))
        r, out = self.eval([path])
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertEqual(len(out), 1)
        self.assertIs(out[0]["match"], True)

    def test_unreadable_file_still_evaluates_the_others(self):
        hit = harness.fixture_path("record_ami_made_public.json")
        absent = os.path.join(self.tmp, "absent.json")
        r, out = self.eval([absent, hit])
        self.assertEqual(r.returncode, 2)
        self.assertIn(absent, r.stderr.decode())
        self.assertEqual([(l.get("file"), l["match"]) for l in out], [(hit, True)])

    def test_unparseable_file_still_evaluates_the_others(self):
        bad = self.write("bad.json", b'{"eventName": "ModifyImageAttribute",\n  nope }\n')
        miss = harness.fixture_path("record_ami_not_made_public.json")
        r, out = self.eval([bad, miss])
        self.assertEqual(r.returncode, 2)
        err = r.stderr.decode()
        self.assertIn(bad, err)
        self.assertTrue(re.search(r":2\b|line 2\b", err), err)
        self.assertEqual([(l.get("file"), l["match"]) for l in out], [(miss, False)])

    def log_file(self, n):
        """A log file of n records, the last one making an image public."""
        records = [dict(load_fixture("record_ami_not_made_public.json"), eventID="r%d" % i)
                   for i in range(n - 1)]
        return {"Records": records + [load_fixture("record_ami_made_public.json")]}

    def test_a_large_log_file_is_read_a_record_at_a_time(self):
        """Bigger than eval's read window several times over, plain and gzip: every record,
        in order, and the match at the end."""
        n = 6000
        text = dumps(self.log_file(n))
        self.assertGreater(len(text), 2 << 20)
        for name, data in (("big.json", text), ("big.json.gz", gzip.compress(text, 1))):
            r, out = self.eval([self.write(name, data)])
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertEqual(len(out), n)
            self.assertEqual([l["index"] for l in out], list(range(n)))
            self.assertEqual(out[17]["eventID"], "r17")
            self.assertIs(out[-1]["match"], True)

    def test_bad_json_in_a_log_file_keeps_the_records_before_it(self):
        good = dumps(load_fixture("record_ami_made_public.json"))
        path = self.write("half.json", b'{"Records":[\n' + good + b',\n{"eventName": nope}]}')
        r, out = self.eval([path])
        self.assertEqual(r.returncode, 2)
        self.assertEqual([l["match"] for l in out], [True])
        self.assertRegex(r.stderr.decode(), re.escape(path) + r":3:\d+: malformed JSON")

    def test_a_truncated_gzip_log_file_is_an_error_after_its_records(self):
        data = gzip.compress(dumps(self.log_file(3000)))
        path = self.write("cut.json.gz", data[: len(data) // 2])
        r, out = self.eval([path])
        self.assertEqual(r.returncode, 2)
        self.assertGreater(len(out), 0)
        self.assertLess(len(out), 3000)
        self.assertIn("truncated", r.stderr.decode())

    def test_unparseable_stdin(self):
        r, out = self.eval([], stdin=b"{not json")
        self.assertEqual(r.returncode, 2)
        self.assertEqual(out, [])
        self.assertTrue(r.stderr.strip())

    def test_not_cloudtrail_is_reported_not_fatal(self):
        r, out = self.eval([harness.fixture_path("cloudtrail_digest.json")])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(out), 1)
        self.assertIs(out[0]["match"], False)
        self.assertIs(out[0].get("cloudtrail"), False)

    def test_eval_learns_new_accounts_in_input_order(self):
        car = load_fixture("record_create_account_result.json")  # 111122223333 at 2024-03-01
        share = harness.with_ids(load_fixture("record_ami_shared_with_account.json"),
                                 user_id="111122223333", event_time="2024-03-02T10:00:00Z")
        r, out = self.eval([], stdin=dumps([share, car, share]))
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertEqual([l["match"] for l in out], [False, False, True])

    def test_eval_writes_no_state(self):
        r, _ = self.eval([harness.fixture_path("record_ami_made_public.json")])
        self.assertEqual(r.returncode, 1)
        self.assertFalse(os.path.exists(self.env["TRAILHOOK_STATE_DIR"]),
                         "eval created the state dir")


class HealthcheckCommandTest(unittest.TestCase):
    def test_healthcheck(self):
        svc = harness.Service(self).start()
        url = "http://127.0.0.1:%d/healthz" % svc.port
        r = run_cli(["healthcheck", url])
        self.assertEqual(r.returncode, 0, r.stderr)
        # Without a URL it checks the configured listen address.
        r = run_cli(["healthcheck"], env={"TRAILHOOK_LISTEN": "127.0.0.1:%d" % svc.port})
        self.assertEqual(r.returncode, 0, r.stderr)
        svc.stop()
        r = run_cli(["healthcheck", url])
        self.assertNotEqual(r.returncode, 0)
        self.assertTrue(r.stderr.strip(), "no message when the service is down")


class MiscCommandTest(unittest.TestCase):
    def test_version(self):
        r = run_cli(["--version"])
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout.decode(), r"trailhook \d+\.\d+")

    def test_help(self):
        r = run_cli(["--help"])
        self.assertEqual(r.returncode, 0)
        out = r.stdout.decode()
        for word in ("serve", "test", "eval", "accounts", "healthcheck"):
            self.assertIn(word, out)

    def test_unknown_command(self):
        r = run_cli(["frobnicate"])
        self.assertEqual(r.returncode, 2)
        self.assertIn("frobnicate", r.stderr.decode())

    def test_unknown_option(self):
        r = run_cli(["eval", "--no-such-option"])
        self.assertEqual(r.returncode, 2)
        self.assertTrue(r.stderr.strip())

    def test_operator_commands_refuse_a_state_dir_without_a_store(self):
        # A mistyped --state-dir must not look like an empty outbox, nor create a database.
        missing = os.path.join(make_temp_dir(self), "no-such-dir")
        for args in (["outbox", "list", "--dead"], ["outbox", "retry", "1"],
                     ["accounts", "list"], ["accounts", "remove", "012345678901"]):
            r = run_cli(args + ["--state-dir", missing])
            self.assertEqual(r.returncode, 2, args)
            self.assertIn(b"no trailhook store", r.stderr, args)
            self.assertEqual(r.stdout, b"", args)
        self.assertFalse(os.path.exists(missing))


if __name__ == "__main__":
    unittest.main()
