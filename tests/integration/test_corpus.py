"""`trailhook eval` over the real-event corpus agrees with corpus/VERDICTS.json.

VERDICTS.json gives, per file, the record count, the indices that match, the indices that are rule
errors and how many records are not CloudTrail, under DESIGN.md §1 with an empty new-account set
at the start of each file. Files are evaluated in batches (one process per batch): eval carries
the accounts it learns from one file to the next, which is harmless only while no corpus file
teaches one -- test_no_file_teaches_a_new_account checks that.
"""

import gzip
import json
import os
import shutil
import tempfile
import threading
import unittest

import harness
from harness import CORPUS_DIR, run_cli

BATCH = 300
MAX_SHOWN = 15


def load_verdicts():
    with open(os.path.join(CORPUS_DIR, "VERDICTS.json")) as f:
        return json.load(f)["files"]


def read_plain(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return data


class CorpusTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.verdicts = load_verdicts()
        cls.paths = {key: os.path.join(CORPUS_DIR, key) for key in cls.verdicts}
        cls.state_dir = tempfile.mkdtemp(prefix="trailhook-corpus-")
        cls.addClassCleanup(shutil.rmtree, cls.state_dir, ignore_errors=True)
        cls.env = {"TRAILHOOK_STATE_DIR": os.path.join(cls.state_dir, "empty")}
        good = sorted(k for k, v in cls.verdicts.items() if not v.get("unparseable"))
        cls.batches = [good[i:i + BATCH] for i in range(0, len(good), BATCH)]
        cls.results = [None] * len(cls.batches)  # (returncode, stdout lines, stderr)
        cls.by_file = {}
        cls.stray = []

        def work(worker, nworkers):
            for i in range(worker, len(cls.batches), nworkers):
                files = [cls.paths[k] for k in cls.batches[i]]
                r = run_cli(["eval"] + files, env=cls.env, timeout=300)
                cls.results[i] = (r.returncode, r.stdout.decode().splitlines(),
                                  r.stderr.decode())

        nworkers = max(1, min(4, os.cpu_count() or 1))
        threads = [threading.Thread(target=work, args=(w, nworkers)) for w in range(nworkers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

        key_of = {p: k for k, p in cls.paths.items()}
        for i, res in enumerate(cls.results):
            if res is None:
                continue
            single = cls.batches[i][0] if len(cls.batches[i]) == 1 else None
            for text in res[1]:
                if not text.strip():
                    continue
                line = json.loads(text)
                key = key_of.get(line.get("file")) if single is None else single
                if key is None:
                    cls.stray.append(text)
                    continue
                cls.by_file.setdefault(key, []).append(line)

    def report(self, problems, what):
        if problems:
            shown = "\n".join(str(p) for p in problems[:MAX_SHOWN])
            self.fail("%d files with wrong %s, e.g.:\n%s" % (len(problems), what, shown))

    def test_every_listed_file_exists(self):
        missing = [k for k, p in self.paths.items() if not os.path.isfile(p)]
        self.assertEqual(missing, [])
        self.assertGreater(len(self.paths), 3900)

    def test_no_file_teaches_a_new_account(self):
        teaching = [k for k, p in self.paths.items() if b"CreateAccountResult" in read_plain(p)]
        self.assertEqual(teaching, [], "batching is only safe while no corpus file teaches an "
                                       "account; evaluate these files one by one")

    def test_batches_ran(self):
        for i, res in enumerate(self.results):
            self.assertIsNotNone(res, "batch %d did not run" % i)
            code, _, err = res
            expect = 1 if any(self.verdicts[k]["match"] for k in self.batches[i]) else 0
            self.assertEqual(code, expect, "batch %d exit status; stderr:\n%s" % (i, err[:2000]))
            self.assertEqual(err.strip(), "", "batch %d wrote to stderr" % i)
        self.assertEqual(self.stray, [], "output lines naming no corpus file")

    def test_record_counts(self):
        problems = []
        for key, v in self.verdicts.items():
            if v.get("unparseable"):
                continue
            got = len(self.by_file.get(key, []))
            if got != v["records"]:
                problems.append((key, "records", v["records"], "lines", got))
        self.report(problems, "record counts")

    def test_line_shape_and_indices(self):
        problems = []
        for key, lines in self.by_file.items():
            if [l.get("index") for l in lines] != list(range(len(lines))):
                problems.append((key, "indices", [l.get("index") for l in lines][:10]))
            for l in lines:
                missing = [k for k in ("index", "eventID", "match", "rule", "dedup") if k not in l]
                if missing:
                    problems.append((key, "missing keys", missing))
                    break
                if l["match"] and (l["rule"] != harness.RULE_ID or not l["dedup"]):
                    problems.append((key, "match without rule/dedup", l))
                    break
        self.report(problems, "line shape")

    def indices(self, key, pred):
        return sorted(l["index"] for l in self.by_file.get(key, []) if pred(l))

    def test_matches(self):
        problems = []
        for key, v in self.verdicts.items():
            if v.get("unparseable"):
                continue
            got = self.indices(key, lambda l: l.get("match") is True)
            if got != sorted(v["match"]):
                problems.append((key, "expected", v["match"], "got", got))
        self.report(problems, "matches")
        # The corpus has real matches: this test can fail both ways.
        self.assertTrue(any(v["match"] for v in self.verdicts.values()))

    def test_rule_errors(self):
        problems = []
        for key, v in self.verdicts.items():
            if v.get("unparseable"):
                continue
            got = self.indices(key, lambda l: "rule_error" in l)
            if got != sorted(v["rule_error"]):
                problems.append((key, "expected", v["rule_error"], "got", got))
        self.report(problems, "rule errors")

    def test_not_cloudtrail(self):
        problems = []
        for key, v in self.verdicts.items():
            if v.get("unparseable"):
                continue
            got = len(self.indices(key, lambda l: l.get("cloudtrail") is False))
            if got != v["not_cloudtrail"]:
                problems.append((key, "expected", v["not_cloudtrail"], "got", got))
        self.report(problems, "not-CloudTrail counts")

    def test_matching_files_alone(self):
        tmp = tempfile.mkdtemp(prefix="trailhook-corpus-")
        self.addCleanup(shutil.rmtree, tmp, ignore_errors=True)
        env = {"TRAILHOOK_STATE_DIR": os.path.join(tmp, "empty")}
        for key, v in sorted(self.verdicts.items()):
            if not v["match"]:
                continue
            with self.subTest(file=key):
                r = run_cli(["eval", self.paths[key]], env=env)
                self.assertEqual(r.returncode, 1, r.stderr)
                lines = [json.loads(l) for l in r.stdout.decode().splitlines() if l.strip()]
                self.assertEqual(len(lines), v["records"])
                self.assertTrue(all("file" not in l for l in lines))
                self.assertEqual([l["index"] for l in lines if l["match"]], sorted(v["match"]))

    def test_http_agrees_with_the_verdicts(self):
        """Every corpus file posted as is to POST /events: 202 with the verdict's counts, or 400
        for a file holding a record that is not CloudTrail or text that is not JSON."""
        svc = harness.Service(self).start()
        keys = sorted(self.verdicts)
        problems = []
        lock = threading.Lock()

        def post(key):
            v = self.verdicts[key]
            with open(self.paths[key], "rb") as f:
                data = f.read()
            headers = {"Content-Encoding": "gzip"} if data[:2] == b"\x1f\x8b" else {}
            r = svc.post_events(data, headers=headers)
            try:
                body = r.json
            except ValueError:
                body = {}
            if v.get("unparseable"):
                ok = r.status == 400 and "line" in body
            elif v["not_cloudtrail"]:
                ok = (r.status == 400 and isinstance(body.get("index"), int) and
                      0 <= body["index"] < v["records"])
            else:
                nalerts = len(body.get("alerts", []))
                ok = (r.status == 202 and body.get("accepted") == v["records"] and
                      body.get("matched") == len(v["match"]) and
                      (1 <= nalerts <= len(v["match"]) if v["match"] else nalerts == 0))
            ok = ok and isinstance(body.get("request_id"), str)
            if not ok:
                with lock:
                    problems.append((key, v, r))

        def work(worker, nworkers):
            for i in range(worker, len(keys), nworkers):
                post(keys[i])

        threads = [threading.Thread(target=work, args=(w, 2)) for w in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        self.report(sorted(problems, key=lambda p: p[0]), "HTTP answers")
        self.assertEqual(svc.request("GET", "/healthz", auth=False).status, 200)

    def test_unparseable_files(self):
        bad = [k for k, v in self.verdicts.items() if v.get("unparseable")]
        self.assertTrue(bad, "the corpus lists no unparseable file")
        good_key = sorted(k for k, v in self.verdicts.items()
                          if not v.get("unparseable") and v["records"] and not v["match"])[0]
        for key in bad:
            with self.subTest(file=key):
                path = self.paths[key]
                r = run_cli(["eval", path, self.paths[good_key]], env=self.env)
                self.assertEqual(r.returncode, 2, r.stderr)
                err = r.stderr.decode()
                self.assertIn(path, err)
                lines = [json.loads(l) for l in r.stdout.decode().splitlines() if l.strip()]
                self.assertEqual([l for l in lines if l.get("file") == path], [])
                self.assertEqual(len([l for l in lines if l.get("file") == self.paths[good_key]]),
                                 self.verdicts[good_key]["records"])
                alone = run_cli(["eval", path], env=self.env)
                self.assertEqual(alone.returncode, 2)
                self.assertIn(path, alone.stderr.decode())
                self.assertEqual(alone.stdout.strip(), b"")


if __name__ == "__main__":
    unittest.main()
