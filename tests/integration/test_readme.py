"""The README works verbatim: every curl example runs against a live service and answers what
the README shows, and its configuration and metrics references match the binary.

Curl examples are the commands of the README's ```sh blocks that run curl (continued with a
trailing backslash or pipe); the comment line right after each one ("# {...}") is the answer
it documents. JSON answers compare structurally, with "…" standing for any value (as a key:
any further keys). A line "VAR=value ... make run" starts one more service with those variables,
found by the port of its TRAILHOOK_LISTEN; plain `make run` is the default service on 8080.
The examples run in README order against fresh services, as a newcomer would run them.
"""

import json
import os
import re
import shlex
import subprocess
import unittest
import urllib.request

from harness import BIN, SOURCE_DIR, Service, base_env, make_temp_dir, write_config

README = os.path.join(SOURCE_DIR, "README.md")
ANY = "…"
DEFAULT_PORT = 8080


def readme_text():
    with open(README, encoding="utf-8") as f:
        return f.read()


def code_blocks(text, lang):
    """[(first line number, [lines])] of the ```lang fenced blocks."""
    blocks, current, start = [], None, 0
    for no, line in enumerate(text.splitlines(), 1):
        if current is None and line.strip() == "```" + lang:
            current, start = [], no + 1
        elif current is not None and line.strip() == "```":
            blocks.append((start, current))
            current = None
        elif current is not None:
            current.append(line)
    return blocks


def commands(lines, first_no):
    """[(line number, command, documented answer or None)] of one sh block."""
    out = []
    i = 0
    while i < len(lines):
        no, cmd = first_no + i, lines[i]
        while cmd.rstrip().endswith(("\\", "|")) and i + 1 < len(lines):
            i += 1
            cmd = cmd.rstrip() + "\n" + lines[i]  # backslash-newline is still sh
        i += 1
        if not cmd.strip() or cmd.lstrip().startswith("#"):
            continue
        answer = None
        if i < len(lines) and lines[i].startswith("# "):
            answer = lines[i][2:]
            i += 1
        out.append((no, cmd, answer))
    return out


def table(text, heading):
    """The rows (lists of cells) of the first Markdown table after @p heading."""
    start = text.index(heading)
    rows = []
    for line in text[start:].splitlines()[1:]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not set("".join(cells)) <= set("-: "):
                rows.append(cells)
        elif rows:
            break
    return rows[1:]  # without the header row


def code(cell):
    """The text of the first `code span` of a table cell, or None."""
    m = re.search(r"`([^`]*)`", cell)
    return m.group(1) if m else None


def matches(expected, actual):
    """Whether @p actual has the shape and values of @p expected, "…" matching anything."""
    if expected == ANY:
        return True
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return False
        keys = set(expected) - {ANY}
        if ANY not in expected and set(actual) != keys:
            return False
        return all(k in actual and matches(expected[k], actual[k]) for k in keys)
    if isinstance(expected, list):
        return (isinstance(actual, list) and len(expected) == len(actual)
                and all(matches(e, a) for e, a in zip(expected, actual)))
    return expected == actual and type(expected) is type(actual)


class ReadmeCurlExamples(unittest.TestCase):
    def start_service(self, env):
        """A service for one `make run` line: its variables, its own state dir and port."""
        env = dict(env)
        env.pop("TRAILHOOK_LISTEN", None)
        env.pop("TRAILHOOK_STATE_DIR", None)  # a temp dir, not the source tree
        svc = Service(self, env=env, auth=False)
        return svc.start()

    def services(self, text):
        """{documented port: Service} for the default service and every `VARS make run` line."""
        found = {DEFAULT_PORT: {}}
        for start, lines in code_blocks(text, "sh"):
            for _, cmd, _ in commands(lines, start):
                words = shlex.split(cmd.split("#")[0])
                if "make" not in words or words[words.index("make") + 1:][:1] != ["run"]:
                    continue
                assigns = dict(w.split("=", 1) for w in words[:words.index("make")])
                self.assertTrue(all(k.startswith("TRAILHOOK_") for k in assigns), cmd)
                port = int(assigns.get("TRAILHOOK_LISTEN", "x:%d" % DEFAULT_PORT).rsplit(":")[1])
                found[port] = assigns
        return {port: self.start_service(env) for port, env in found.items()}

    def test_every_curl_example_gives_its_documented_answer(self):
        text = readme_text()
        services = self.services(text)
        examples = [(no, cmd, answer) for start, lines in code_blocks(text, "sh")
                    for no, cmd, answer in commands(lines, start) if re.search(r"\bcurl\b", cmd)]
        self.assertGreaterEqual(len(examples), 12, "the README lost its curl examples")
        shapes = set()
        for no, cmd, answer in examples:
            shapes.add(re.sub(r"\s+", " ", cmd))
            with self.subTest(line=no):
                self.assertIsNotNone(answer, "README line %d: a curl example without its "
                                             "answer on the next line" % no)
                ports = [int(p) for p in re.findall(r"(?:localhost|127\.0\.0\.1):(\d+)", cmd)]
                self.assertTrue(ports and all(p in services for p in ports),
                                "README line %d: no documented service for %r" % (no, ports))
                live = re.sub(r"(localhost|127\.0\.0\.1):(\d+)",
                              lambda m: "127.0.0.1:%d" % services[int(m.group(2))].port, cmd)
                r = subprocess.run(["sh", "-c", "set -e; " + live], cwd=SOURCE_DIR,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60,
                                   env=base_env())
                self.assertEqual(r.returncode, 0, "README line %d failed: %s" % (no, r.stderr))
                got = r.stdout.decode().strip()
                self.assert_answer(no, answer, got)
        # The forms the issue names: one record, an envelope, a log file, gzip.
        joined = " ".join(shapes)
        for needle in ("record_ami_made_public.json", "eventbridge_ami_made_public.json",
                       "cloudtrail_log_file.json", "Content-Encoding: gzip"):
            self.assertIn(needle, joined)

    def assert_answer(self, no, answer, got):
        try:
            expected = json.loads(answer)
        except ValueError:
            self.assertEqual(got, answer, "README line %d" % no)
            return
        try:
            actual = json.loads(got)
        except ValueError:
            self.fail("README line %d: documented JSON, got %r" % (no, got))
        self.assertTrue(matches(expected, actual),
                        "README line %d documents\n  %s\nbut the service answered\n  %s"
                        % (no, answer, got))


def config_output(env=None, args=()):
    """`trailhook config` as {key: (value, env var)} plus the destinations' lines."""
    cwd = make_temp_dir(ConfigurationReference, "trailhook-readme-")
    r = subprocess.run([BIN, "config"] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=base_env(dict({"TRAILHOOK_LOG_LEVEL": None},
                                                                 **(env or {}))), cwd=cwd)
    if r.returncode != 0:
        raise AssertionError("trailhook config failed: %s" % r.stderr.decode())
    settings, dest_keys = {}, []
    in_dest = False
    for line in r.stdout.decode().splitlines():
        if line.startswith("#"):
            continue
        if line == "destinations:":
            in_dest = True
            continue
        if in_dest:
            dest_keys.append(line.strip().lstrip("- ").split(":")[0])
            continue
        m = re.match(r"^(\S+): (.*)  # (TRAILHOOK_\w+)$", line)
        if not m:
            raise AssertionError("unexpected `trailhook config` line %r" % line)
        value = m.group(2)
        if value.startswith('"'):
            value = json.loads(value)
        settings[m.group(1)] = ("" if value == "~" else value, m.group(3))
    return settings, dest_keys, r.stdout.decode()


class ConfigurationReference(unittest.TestCase):
    def setUp(self):
        self.rows = table(readme_text(), "## Configuration reference")
        self.documented = {code(r[0]): r for r in self.rows}

    def test_every_setting_is_documented_with_its_variable_and_default(self):
        settings, _, _ = config_output()
        self.assertEqual(sorted(self.documented), sorted(settings),
                         "the README's configuration table and `trailhook config` list "
                         "different keys")
        for key, (value, env) in settings.items():
            row = self.documented[key]
            with self.subTest(key=key):
                self.assertEqual(code(row[1]), env)
                default = code(row[2])
                if default is not None:
                    self.assertEqual(default, value, "README default of %s" % key)
                elif key == "workers":  # depends on the machine: documented in words
                    self.assertGreaterEqual(int(value), 2)
                else:
                    self.assertEqual(row[2], "unset", "README default of %s" % key)
                    self.assertEqual(value, "", "%s is set by default" % key)

    def test_secrets_are_marked_and_redacted(self):
        marked = [k for k, r in self.documented.items() if "🔒" in r[0]]
        self.assertGreaterEqual(len(marked), 5)
        # Each value carries "readme", which must then appear nowhere in the output.
        values = {"api_keys": "readme-key-1", "basic_auth": "user:readme-pass",
                  "slack_webhook_url": "https://hooks.slack.com/services/T1/B2/readmesecret",
                  "pagerduty_routing_key": "readme-routing-key",
                  "state.redis_url": "redis://:readmepass@127.0.0.1:6379/0"}
        self.assertEqual(sorted(marked), sorted(values))
        env = {code(self.documented[k][1]): v for k, v in values.items()}
        settings, _, text = config_output(env)
        for key, value in values.items():
            self.assertEqual(settings[key][0], "<redacted>", key)
        self.assertNotIn("readme", text)

    def test_every_key_is_in_the_documented_defaults_file(self):
        with open(os.path.join(SOURCE_DIR, "config", "trailhook.yml")) as f:
            yml = f.read()
        for key in self.documented:
            leaf = key.split(".")[-1]
            self.assertRegex(yml, r"(?m)^\s*#?\s*%s:" % re.escape(leaf),
                             "config/trailhook.yml does not document %s" % key)

    def test_destination_keys_match_the_loader(self):
        rows = table(readme_text(), "Each entry of `destinations`")
        names = [n.strip(" `") for r in rows for n in r[0].split("/")]
        base = [n for n in names if not n.endswith("_file")]
        path = write_config(self, {"destinations": [
            {"name": "hook", "type": "webhook", "url": "https://example.com/h",
             "secret": "s", "hmac_secret": "h"}]})
        _, printed, _ = config_output(args=["--config", path])
        self.assertEqual(sorted(base), sorted(set(printed)))
        # each _file variant is a key the loader accepts
        secret = os.path.join(make_temp_dir(self), "secret")
        with open(secret, "w") as f:
            f.write("https://example.com/from-file\n")
        entry = {"name": "hook", "type": "webhook"}
        entry.update({n: secret for n in names if n.endswith("_file")})
        config_output(args=["--config", write_config(self, {"destinations": [entry]})])


class MetricsReference(unittest.TestCase):
    def test_metrics_table_matches_the_scrape(self):
        rows = table(readme_text(), "## Metrics reference")
        documented = {code(r[0]): (r[1], {l.strip("` ") for l in r[2].split(",") if l.strip()})
                      for r in rows}
        config = write_config(self, {"destinations": [
            {"name": "console", "type": "console"},
            {"name": "hook", "type": "webhook", "url": "http://127.0.0.1:9/closed"}]})
        svc = Service(self, config=config, auth=False).start()
        with open(os.path.join(SOURCE_DIR, "tests", "fixtures", "events",
                               "record_ami_made_public.json"), "rb") as f:
            self.assertEqual(svc.post_events(f.read(), auth=False).status, 202)
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % svc.port, timeout=10) as r:
            scrape = r.read().decode()
        types, labels = {}, {}
        for line in scrape.splitlines():
            m = re.match(r"^# TYPE (\S+) (\S+)$", line)
            if m:
                types[m.group(1)] = m.group(2)
                continue
            m = re.match(r"^([a-z_]+?)(_bucket|_sum|_count)?(?:\{(.*)\})? \S+$", line)
            if m:
                name = m.group(1) if m.group(1) in types else m.group(1) + (m.group(2) or "")
                found = set(re.findall(r'(\w+)="', m.group(3) or "")) - {"le"}
                labels.setdefault(name, set()).update(found)
        self.assertEqual(sorted(documented), sorted(types),
                         "the README's metrics table and /metrics list different families")
        for name, (kind, names) in documented.items():
            with self.subTest(metric=name):
                self.assertEqual(kind, types[name])
                self.assertIn(name, labels, "no series of %s after an alert" % name)
                self.assertEqual(names, labels[name])


if __name__ == "__main__":
    unittest.main()
