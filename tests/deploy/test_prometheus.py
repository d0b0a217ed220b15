"""Checks deploy/prometheus against the metrics the service really exports.

Starts the real binary (loopback port, temporary state dir, a console destination and a webhook
destination pointing at a closed port, so delivery failures happen), posts a matching event,
scrapes /metrics, and then checks that every metric and label named by the alerting rules
(trailhook-rules.yml), the PrometheusRule (prometheusrule.yaml, whose groups must equal the plain
file's) and the Grafana dashboard (grafana-dashboard.json) exists. Expressions are read with a
small PromQL tokenizer (below); it knows PromQL's functions, so a misspelt function fails too.
Runs `promtool check rules` when promtool is installed.

Python 3 standard library plus PyYAML. Environment (ctest sets it):
  TRAILHOOK_BIN   the trailhook binary   (default /work/main/build/trailhook)
  TH_SOURCE_DIR   the source tree        (default /work/main)
  TH_FIXTURES     tests/fixtures         (default $TH_SOURCE_DIR/tests/fixtures)
"""

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest
import uuid

import yaml

from deploy_common import free_port, http_request

BIN = os.environ.get("TRAILHOOK_BIN", "/work/main/build/trailhook")
SOURCE_DIR = os.environ.get("TH_SOURCE_DIR", "/work/main")
FIXTURES = os.environ.get("TH_FIXTURES", os.path.join(SOURCE_DIR, "tests", "fixtures"))
PROM_DIR = os.path.join(SOURCE_DIR, "deploy", "prometheus")
RULES_FILE = os.path.join(PROM_DIR, "trailhook-rules.yml")
PROMRULE_FILE = os.path.join(PROM_DIR, "prometheusrule.yaml")
DASHBOARD_FILE = os.path.join(PROM_DIR, "grafana-dashboard.json")
MATCHING_EVENT = os.path.join(FIXTURES, "events", "record_ami_made_public.json")

API_KEY = "prom-test-key-0123456789abcdef"
START_TIMEOUT = 15.0

# Labels Prometheus attaches to every scraped series: job and instance always, the rest from
# Kubernetes service discovery (the Prometheus Operator's ServiceMonitor relabelling).
TARGET_LABELS = {"job", "instance", "namespace", "pod", "service", "endpoint", "container"}
# Series Prometheus makes itself: `up` per target, ALERTS / ALERTS_FOR_STATE per alert.
PROMETHEUS_SERIES = {"up": TARGET_LABELS}
ANY_LABELS = {"ALERTS", "ALERTS_FOR_STATE"}  # their labels are the alerts' own: not checked
# Labels whose values the service registers in full at start (or on the first request of the
# test), so a matcher on an unknown value is a typo, not a series that has not happened yet.
CLOSED_LABELS = {"reason", "result", "format", "type", "handler"}
SEVERITIES = {"critical", "warning", "info"}
DURATION_RE = re.compile(r"^(?:\d+(?:ms|[smhdwy]))+$")

# ---- a small PromQL tokenizer -----------------------------------------------------------------

AGGREGATIONS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk",
    "topk", "quantile", "limitk", "limit_ratio",
}
FUNCTIONS = {
    "abs", "absent", "absent_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh",
    "avg_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min", "cos", "cosh",
    "count_over_time", "day_of_month", "day_of_week", "day_of_year", "days_in_month", "deg",
    "delta", "deriv", "double_exponential_smoothing", "exp", "floor", "histogram_avg",
    "histogram_count", "histogram_fraction", "histogram_quantile", "histogram_stddev",
    "histogram_stdvar", "histogram_sum", "holt_winters", "hour", "idelta", "increase", "info",
    "irate", "label_join", "label_replace", "last_over_time", "ln", "log10", "log2",
    "mad_over_time", "max_over_time", "min_over_time", "minute", "month", "pi",
    "predict_linear", "present_over_time", "quantile_over_time", "rad", "rate", "resets",
    "round", "scalar", "sgn", "sin", "sinh", "sort", "sort_by_label", "sort_by_label_desc",
    "sort_desc", "sqrt", "stddev_over_time", "stdvar_over_time", "sum_over_time", "tan",
    "tanh", "time", "timestamp", "vector", "year",
    # the @ modifier's start() and end()
    "start", "end",
}
BINARY_KEYWORDS = {"and", "or", "unless", "atan2", "bool"}
MATCHING_KEYWORDS = {"on", "ignoring", "group_left", "group_right"}
GROUPING_KEYWORDS = {"by", "without"}

_TOKEN_RE = re.compile(r"""
    (?P<ws>\s+)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<var>\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*)
  | (?P<duration>(?:\d+(?:ms|[smhdwy]))+(?![A-Za-z0-9_.]))
  | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>==|!=|>=|<=|=~|!~|[-+*/%^<>=@])
  | (?P<punct>[(){}\[\],])
""", re.VERBOSE)


class PromQLError(ValueError):
    pass


def _unquote(s):
    if s[0] == "`":
        return s[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)),
                  s[1:-1])


def tokenize(expr):
    """[(kind, text)] without blanks and comments; kinds: string var duration number ident op
    punct. Grafana variables ($job, ${datasource}, $__rate_interval) are tokens of their own."""
    out = []
    pos = 0
    while pos < len(expr):
        m = _TOKEN_RE.match(expr, pos)
        if m is None:
            raise PromQLError("unexpected character %r at %d in %r" % (expr[pos], pos, expr))
        kind = m.lastgroup
        if kind not in ("ws", "comment"):
            out.append((kind, m.group()))
        pos = m.end()
    return out


class Analysis:
    """What one expression names: metrics, the selectors' matchers, and the label names that
    grouping, vector matching or label_* functions use (with the metrics in their scope)."""

    def __init__(self):
        self.metrics = set()
        self.selectors = []      # (metric or None, [(label, op, value)])
        self.label_uses = []     # (label, frozenset of metrics in scope, what)
        self.introduced = set()  # labels made by label_replace / label_join / count_values
        self.functions = set()


def analyze(expr):
    """Reads a PromQL expression. @raise PromQLError on an unknown function, unbalanced
    brackets or a malformed matcher."""
    toks = tokenize(expr)
    a = Analysis()
    frames = []      # open parentheses: dict(kind, name, metrics, grouping, arg, strings)
    matching = []    # label lists of on/ignoring/group_left/group_right (scope: whole expr)
    i = 0

    def peek(k):
        return toks[k] if k < len(toks) else (None, None)

    def label_list(k, what):
        """Reads "( a, b, ... )" at k; @return (labels, index after it)."""
        if peek(k) != ("punct", "("):
            raise PromQLError("%s must be followed by a label list in %r" % (what, expr))
        labels = []
        k += 1
        while peek(k) != ("punct", ")"):
            kind, text = peek(k)
            if kind == "ident" and ":" not in text:
                labels.append(text)
            elif kind == "string":  # quoted label names (UTF-8 names, Prometheus 3)
                labels.append(_unquote(text))
            elif (kind, text) != ("punct", ","):
                raise PromQLError("unexpected %r in the label list of %s in %r"
                                  % (text, what, expr))
            k += 1
        return labels, k + 1

    def matchers(k, metric):
        """Reads "{ label op "value", ... }" at k; @return index after it."""
        k += 1
        found = []
        name = metric
        while peek(k) != ("punct", "}"):
            kind, text = peek(k)
            if (kind, text) == ("punct", ","):
                k += 1
                continue
            if kind == "string" and peek(k + 1)[0] != "op":
                name = _unquote(text)  # {"metric.name"} (Prometheus 3)
                k += 1
                continue
            if kind not in ("ident", "string"):
                raise PromQLError("expected a label name, got %r in %r" % (text, expr))
            label = text if kind == "ident" else _unquote(text)
            op = peek(k + 1)
            val = peek(k + 2)
            if op[0] != "op" or op[1] not in ("=", "!=", "=~", "!~") or val[0] != "string":
                raise PromQLError("malformed matcher after %r in %r" % (label, expr))
            if label == "__name__" and op[1] == "=":
                name = _unquote(val[1])
            else:
                found.append((label, op[1], _unquote(val[1])))
            k += 3
        if name is not None:
            a.metrics.add(name)
            for f in frames:
                f["metrics"].add(name)
        a.selectors.append((name, found))
        return k + 1

    def add_metric(name):
        a.metrics.add(name)
        for f in frames:
            f["metrics"].add(name)

    while i < len(toks):
        kind, text = toks[i]
        nxt = peek(i + 1)
        if kind == "ident":
            low = text.lower()
            if low in ("inf", "nan"):
                i += 1
            elif low in BINARY_KEYWORDS:
                i += 1
            elif low == "offset":
                k = i + 1
                if peek(k) == ("op", "-"):
                    k += 1
                if peek(k)[0] not in ("duration", "number", "var"):
                    raise PromQLError("offset without a duration in %r" % expr)
                i = k + 1
            elif low in MATCHING_KEYWORDS:
                if nxt == ("punct", "("):
                    labels, i = label_list(i + 1, text)
                    matching.extend(labels)
                elif low in ("on", "ignoring"):
                    raise PromQLError("%s needs a label list in %r" % (text, expr))
                else:
                    i += 1
            elif text in AGGREGATIONS and (nxt == ("punct", "(") or
                                           (nxt[0] == "ident" and nxt[1] in GROUPING_KEYWORDS)):
                a.functions.add(text)
                k = i + 1
                grouping = []
                if nxt[0] == "ident":
                    grouping, k = label_list(i + 2, nxt[1])
                if peek(k) != ("punct", "("):
                    raise PromQLError("%s without its argument in %r" % (text, expr))
                frames.append(dict(kind="agg", name=text, metrics=set(), grouping=grouping,
                                   arg=0, strings=[]))
                i = k + 1
            elif low in GROUPING_KEYWORDS:
                raise PromQLError("%s outside an aggregation in %r" % (text, expr))
            elif nxt == ("punct", "("):
                if text not in FUNCTIONS:
                    raise PromQLError("unknown function %s() in %r" % (text, expr))
                a.functions.add(text)
                frames.append(dict(kind="func", name=text, metrics=set(), grouping=[], arg=0,
                                   strings=[]))
                i += 2
            else:
                if nxt == ("punct", "{"):
                    i = matchers(i + 1, text)
                else:
                    add_metric(text)
                    a.selectors.append((text, []))
                    i += 1
        elif (kind, text) == ("punct", "{"):
            i = matchers(i, None)
        elif (kind, text) == ("punct", "["):
            depth = 0
            while True:
                if i >= len(toks):
                    raise PromQLError("unclosed [ in %r" % expr)
                if toks[i] == ("punct", "["):
                    depth += 1
                elif toks[i] == ("punct", "]"):
                    depth -= 1
                    if depth == 0:
                        break
                elif toks[i][0] not in ("duration", "number", "var", "ident", "op"):
                    raise PromQLError("unexpected %r in a range in %r" % (toks[i][1], expr))
                i += 1
            i += 1
        elif (kind, text) == ("punct", "("):
            frames.append(dict(kind="paren", name=None, metrics=set(), grouping=[], arg=0,
                               strings=[]))
            i += 1
        elif (kind, text) == ("punct", ")"):
            if not frames:
                raise PromQLError("unbalanced ) in %r" % expr)
            f = frames.pop()
            i += 1
            if f["kind"] == "agg" and peek(i)[0] == "ident" and peek(i)[1] in GROUPING_KEYWORDS:
                labels, i = label_list(i + 1, peek(i)[1])
                f["grouping"] = f["grouping"] + labels
            for label in f["grouping"]:
                a.label_uses.append((label, frozenset(f["metrics"]), f["name"] + " by/without"))
            _label_functions(a, f)
        elif (kind, text) == ("punct", ","):
            if not frames:
                raise PromQLError("a comma outside any call in %r" % expr)
            frames[-1]["arg"] += 1
            i += 1
        elif kind == "string":
            if frames:
                frames[-1]["strings"].append((frames[-1]["arg"], _unquote(text)))
            i += 1
        elif (kind, text) in (("punct", "}"), ("punct", "]")):
            raise PromQLError("unbalanced %s in %r" % (text, expr))
        else:  # numbers, durations, operators, Grafana variables
            i += 1
    if frames:
        raise PromQLError("unclosed ( in %r" % expr)
    for label in matching:
        a.label_uses.append((label, frozenset(a.metrics), "vector matching"))
    return a


def _label_functions(a, f):
    """label_replace(v, dst, repl, src, re), label_join(v, dst, sep, src...), count_values(dst,
    v): dst is a new label, src must exist."""
    args = dict()
    for argi, s in f["strings"]:
        args.setdefault(argi, s)
    if f["name"] == "label_replace":
        a.introduced.add(args.get(1, ""))
        if args.get(3):
            a.label_uses.append((args[3], frozenset(f["metrics"]), "label_replace source"))
    elif f["name"] == "label_join":
        a.introduced.add(args.get(1, ""))
        for argi, s in f["strings"]:
            if argi >= 3:
                a.label_uses.append((s, frozenset(f["metrics"]), "label_join source"))
    elif f["name"] == "count_values":
        a.introduced.add(args.get(0, ""))


def grafana_variable_query(q):
    """A Grafana Prometheus variable query as (PromQL selector or expression or None, label or
    None): label_values(SEL, LABEL), label_values(LABEL), query_result(EXPR); others (metrics(),
    label_names()) name no metric."""
    q = q.strip()
    m = re.match(r"^label_values\((.*)\)$", q, re.S)
    if m:
        inner = m.group(1)
        depth = 0
        cut = -1
        for idx, ch in enumerate(inner):  # the last top-level comma (selectors may hold commas)
            if ch in "({[":
                depth += 1
            elif ch in ")}]":
                depth -= 1
            elif ch == "," and depth == 0:
                cut = idx
        if cut < 0:
            return None, inner.strip()
        return inner[:cut].strip(), inner[cut + 1:].strip()
    m = re.match(r"^query_result\((.*)\)$", q, re.S)
    if m:
        return m.group(1), None
    return None, None


# ---- the exported metrics ---------------------------------------------------------------------

_SAMPLE_RE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL_RE = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


class Exposition:
    """A parsed /metrics answer: series name -> label name -> set of values."""

    def __init__(self, text):
        self.types = {}
        self.series = {}
        self.values = {}
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, typ = line.split(None, 3)
                self.types[name] = typ
                names = [name]
                if typ == "histogram":
                    names = [name + "_bucket", name + "_sum", name + "_count"]
                elif typ == "summary":
                    names = [name, name + "_sum", name + "_count"]
                for n in names:
                    self.series.setdefault(n, {})
                continue
            if not line or line.startswith("#"):
                continue
            m = _SAMPLE_RE.match(line)
            if m is None:
                raise AssertionError("unparsable /metrics line: %r" % line)
            name = m.group(1)
            labels = self.series.setdefault(name, {})
            for lname, lval in _LABEL_RE.findall(m.group(2) or ""):
                labels.setdefault(lname, set()).add(lval)
            self.values[(name, tuple(sorted(_LABEL_RE.findall(m.group(2) or ""))))] = \
                float(m.group(3))

    def value(self, name, **labels):
        return self.values.get((name, tuple(sorted(labels.items()))))


class Checker:
    """Checks expressions against an Exposition and the recording rules known so far."""

    def __init__(self, expo):
        self.expo = expo
        self.records = {}

    def labels_of(self, metric):
        """Label names a series may carry in Prometheus, or None when anything goes."""
        if metric in ANY_LABELS:
            return None
        if metric in PROMETHEUS_SERIES:
            return set(PROMETHEUS_SERIES[metric])
        if metric in self.records:
            return set(self.records[metric])
        if metric in self.expo.series:
            return set(self.expo.series[metric]) | TARGET_LABELS
        return set()

    def known(self, metric):
        return (metric in self.expo.series or metric in self.records
                or metric in PROMETHEUS_SERIES or metric in ANY_LABELS)

    def check(self, expr, where):
        """@return a list of problems (strings) with @p expr."""
        try:
            a = analyze(expr)
        except PromQLError as e:
            return ["%s: %s" % (where, e)]
        problems = []
        for metric in sorted(a.metrics):
            if not self.known(metric):
                problems.append("%s: metric %s is not exported by trailhook (nor made by "
                                "Prometheus or a recording rule here)" % (where, metric))
        for metric, found in a.selectors:
            if metric is None or not self.known(metric):
                continue
            allowed = self.labels_of(metric)
            for label, op, value in found:
                if allowed is not None and label not in allowed:
                    problems.append("%s: %s has no label %r (it has %s)"
                                    % (where, metric, label, sorted(allowed)))
                    continue
                problems.extend(self._check_value(where, metric, label, op, value))
        for label, scope, what in a.label_uses:
            if label in a.introduced or label in TARGET_LABELS:
                continue
            sets = [self.labels_of(m) for m in scope if self.known(m)]
            if any(s is None for s in sets):
                continue
            if not any(label in s for s in sets):
                problems.append("%s: %s uses label %r, which none of %s has"
                                % (where, what, label, sorted(scope) or "its operands"))
        return problems

    def _check_value(self, where, metric, label, op, value):
        if label not in CLOSED_LABELS or metric not in self.expo.series or "$" in value:
            return []
        seen = self.expo.series[metric].get(label, set())
        if op in ("=", "!="):
            wanted = [value]
        elif re.fullmatch(r"[\w/.-]+(?:\|[\w/.-]+)*", value):
            wanted = value.split("|")
        else:
            return []
        return ["%s: %s{%s=%r} matches no series (values: %s)"
                % (where, metric, label, v, sorted(seen)) for v in wanted if v not in seen]

    def add_record(self, name, expr, static_labels):
        """A recording rule's series: labels = those of what it reads, plus its own."""
        labels = set(TARGET_LABELS) | set(static_labels or {})
        try:
            a = analyze(expr)
        except PromQLError:
            a = Analysis()
        for m in a.metrics:
            s = self.labels_of(m)
            if s is not None:
                labels |= s
        labels |= a.introduced
        self.records[name] = labels


# ---- running the service ----------------------------------------------------------------------



class Service:
    """`trailhook serve` with a console and an unreachable webhook destination."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="trailhook-prom-")
        self.state_dir = os.path.join(self.dir, "state")
        os.mkdir(self.state_dir)
        self.config = os.path.join(self.dir, "trailhook.yml")
        closed = "http://127.0.0.1:%d/hook" % free_port()
        with open(self.config, "w") as f:
            f.write("destinations:\n"
                    "  - name: console\n"
                    "    type: console\n"
                    "  - name: down\n"
                    "    type: webhook\n"
                    "    url: %s\n"
                    "    connect_timeout_ms: 200\n"
                    "    timeout_ms: 1000\n" % json.dumps(closed))
        self.port = None
        self.proc = None
        self.stderr = []

    def start(self):
        for _ in range(3):
            self.port = free_port()
            env = {k: v for k, v in os.environ.items() if not k.startswith("TRAILHOOK_")}
            env.update(TRAILHOOK_LISTEN="127.0.0.1:%d" % self.port,
                       TRAILHOOK_STATE_DIR=self.state_dir, TRAILHOOK_API_KEYS=API_KEY,
                       TRAILHOOK_LOG_LEVEL="info")
            self.stderr = []
            self.proc = subprocess.Popen([BIN, "serve", "--config", self.config],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                         env=env)
            reader = threading.Thread(target=self._read, args=(self.proc.stderr,), daemon=True)
            reader.start()
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    if http_request("GET", self.port, "/healthz", timeout=2)[0] == 200:
                        return
                except OSError:
                    pass
                time.sleep(0.05)
            if self.proc.poll() is not None and "cannot listen" in "".join(self.stderr):
                continue  # the port was taken in between: try another
            break
        self.stop()
        raise RuntimeError("trailhook serve did not become healthy:\n" + "".join(self.stderr))

    def _read(self, stream):
        for line in iter(stream.readline, b""):
            self.stderr.append(line.decode("utf-8", "replace"))
        stream.close()

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)

    def scrape(self):
        status, _, body = http_request("GET", self.port, "/metrics")
        if status != 200:
            raise AssertionError("GET /metrics answered %d" % status)
        return Exposition(body.decode("utf-8"))


# ---- the files ---------------------------------------------------------------------------------

def load_yaml(path):
    with open(path) as f:
        return yaml.safe_load(f)


def all_rules(groups):
    for g in groups:
        for r in g.get("rules") or []:
            yield g["name"], r


def dashboard_panels(dash):
    """Every panel, rows' nested panels included."""
    out = []
    for p in dash.get("panels", []):
        out.append(p)
        out.extend(p.get("panels") or [])
    return out


def variable_query_text(var):
    q = var.get("query")
    if isinstance(q, dict):
        q = q.get("query")
    return q or var.get("definition") or ""


# ---- the tests ---------------------------------------------------------------------------------

class PromQLTokenizerTest(unittest.TestCase):
    """The tokenizer itself, so that the checks below mean what they say."""

    def test_names_metrics_labels_and_functions(self):
        a = analyze('sum by (destination) (rate(foo_total{a="x{y}", b=~"[a-z]+"}[5m:30s] '
                    'offset -1h)) / on (job) group_left (reason) max without (le) (bar) '
                    '> bool 0.9 and absent(up{job="t"}) or vector(1) unless time() > Inf')
        self.assertEqual(a.metrics, {"foo_total", "bar", "up"})
        self.assertIn(("foo_total", [("a", "=", "x{y}"), ("b", "=~", "[a-z]+")]), a.selectors)
        uses = {(label, what) for label, _, what in a.label_uses}
        self.assertEqual(uses, {("destination", "sum by/without"), ("le", "max by/without"),
                                ("job", "vector matching"), ("reason", "vector matching")})
        scope = {label: s for label, s, _ in a.label_uses}
        self.assertEqual(scope["destination"], {"foo_total"})
        self.assertEqual(scope["le"], {"bar"})

    def test_grafana_variables_and_subqueries(self):
        a = analyze('histogram_quantile(0.99, sum by (le) (rate(x_bucket{job=~"$job"}'
                    '[$__rate_interval]))) * 1e3 + max_over_time(y[1h:${step}])')
        self.assertEqual(a.metrics, {"x_bucket", "y"})

    def test_name_matcher_and_label_replace(self):
        a = analyze('label_replace({__name__="z", k="v"}, "dst", "$1", "src", "(.*)")')
        self.assertEqual(a.metrics, {"z"})
        self.assertIn("dst", a.introduced)
        self.assertIn(("src", frozenset({"z"}), "label_replace source"), a.label_uses)

    def test_rejects_unknown_functions_and_bad_syntax(self):
        for bad in ("rates(x[5m])", "sum(x", "x{a=}", "x{a}", "sum(x))", "x[5m", "on x",
                    "y by (a)", "x ! y"):
            with self.subTest(expr=bad), self.assertRaises(PromQLError):
                analyze(bad)

    def test_grafana_variable_queries(self):
        self.assertEqual(grafana_variable_query('label_values(m{a="1,2"}, job)'),
                         ('m{a="1,2"}', "job"))
        self.assertEqual(grafana_variable_query("label_values(job)"), (None, "job"))
        self.assertEqual(grafana_variable_query("query_result(up == 0)"), ("up == 0", None))


class PrometheusArtifactsTest(unittest.TestCase):
    """The rules, the PrometheusRule and the dashboard against a running trailhook."""

    service = None
    expo = None

    @classmethod
    def setUpClass(cls):
        for path in (RULES_FILE, PROMRULE_FILE, DASHBOARD_FILE):
            if not os.path.exists(path):
                raise AssertionError("missing " + path)
        cls.service = Service()
        cls.addClassCleanup(cls.service.stop)
        cls.service.start()
        port = cls.service.port
        with open(MATCHING_EVENT, "rb") as f:
            doc = json.load(f)
        doc["eventID"] = "evt-" + uuid.uuid4().hex
        doc["requestParameters"]["imageId"] = "ami-" + uuid.uuid4().hex[:17]
        status, _, body = http_request("POST", port, "/events", body=json.dumps(doc).encode(),
                                    headers={"Content-Type": "application/json",
                                             "X-Api-Key": API_KEY})
        if status != 202:
            raise AssertionError("POST /events answered %d: %r" % (status, body))
        # a refused request, and the probes a kubelet makes, so their series exist too
        http_request("POST", port, "/events", body=b"{}",
                     headers={"Content-Type": "application/json", "X-Api-Key": "wrong"})
        http_request("GET", port, "/readyz")
        http_request("GET", port, "/healthz")
        deadline = time.monotonic() + 10
        while True:
            expo = cls.service.scrape()
            delivered = expo.value("trailhook_notifications_total", destination="console",
                                   type="alert") or 0
            failed = expo.value("trailhook_notifications_failed_total", destination="down",
                                reason="network") or 0
            if (delivered >= 1 and failed >= 1) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        cls.expo = cls.service.scrape()  # the first scrape is counted in this one
        cls.rules = load_yaml(RULES_FILE)
        cls.promrule = load_yaml(PROMRULE_FILE)
        with open(DASHBOARD_FILE) as f:
            cls.dashboard = json.load(f)

    @classmethod
    def tearDownClass(cls):
        if cls.service is not None:
            cls.service.stop()

    def analyzed(self, expr, where):
        """analyze(), failing (not erroring) the test on a PromQL syntax error."""
        try:
            return analyze(expr)
        except PromQLError as e:
            self.fail("%s: %s" % (where, e))

    def checker(self):
        """A Checker that knows the recording rules of the plain file."""
        c = Checker(self.expo)
        for _ in range(2):  # twice: a record may read one defined after it
            for _, r in all_rules(self.rules["groups"]):
                if "record" in r:
                    c.add_record(r["record"], r["expr"], r.get("labels"))
        return c

    # -- the service --

    def test_scrape_has_the_families_the_files_rely_on(self):
        for name in ("trailhook_notifications_total", "trailhook_notifications_failed_total",
                     "trailhook_notification_retries_total",
                     "trailhook_notification_latency_seconds_bucket", "trailhook_build_info",
                     "trailhook_config_last_reload_successful",
                     "trailhook_config_last_reload_success_timestamp_seconds",
                     "trailhook_http_requests_total",
                     "trailhook_http_request_duration_seconds_bucket",
                     "trailhook_events_received_total", "trailhook_events_rejected_total",
                     "trailhook_rule_evaluations_total", "trailhook_alerts_total",
                     "trailhook_alerts_deduplicated_total", "trailhook_queue_depth",
                     "trailhook_queue_capacity", "trailhook_outbox_pending",
                     "trailhook_outbox_dead_letters", "process_cpu_seconds_total",
                     "process_resident_memory_bytes", "process_open_fds", "process_max_fds",
                     "process_start_time_seconds"):
            self.assertIn(name, self.expo.series)
        self.assertEqual(self.expo.types["trailhook_http_request_duration_seconds"], "histogram")
        # the delivery and ingest series moved as the alerts expect
        self.assertGreaterEqual(self.expo.value("trailhook_notifications_total",
                                                destination="console", type="alert"), 1)
        self.assertGreaterEqual(self.expo.value("trailhook_notifications_failed_total",
                                                destination="down", reason="network"), 1,
                                "".join(self.service.stderr))
        self.assertGreaterEqual(self.expo.value("trailhook_events_rejected_total",
                                                reason="unauthorized"), 1)
        self.assertGreaterEqual(self.expo.value(
            "trailhook_rule_evaluations_total", rule="AWS.CloudTrail.AMIModifiedForPublicAccess",
            result="match"), 1)
        self.assertEqual(set(self.expo.series["trailhook_outbox_pending"]), {"destination"})

    # -- the rules --

    def test_rules_are_well_formed(self):
        groups = self.rules.get("groups")
        self.assertIsInstance(groups, list)
        self.assertEqual(set(self.rules), {"groups"})
        names = [g["name"] for g in groups]
        self.assertEqual(len(names), len(set(names)), "group names must be unique")
        alerts, records = [], []
        for group, r in all_rules(groups):
            where = "%s/%s" % (group, r.get("alert") or r.get("record"))
            self.assertEqual(("alert" in r) + ("record" in r), 1, where)
            self.assertIsInstance(r.get("expr"), str, where)
            if "record" in r:
                records.append(r["record"])
                self.assertRegex(r["record"], r"^[a-zA-Z_][a-zA-Z0-9_]*:[a-zA-Z0-9_:]+$", where)
                self.assertLessEqual(set(r), {"record", "expr", "labels"}, where)
                continue
            alerts.append(r["alert"])
            self.assertLessEqual(set(r), {"alert", "expr", "for", "keep_firing_for", "labels",
                                          "annotations"}, where)
            self.assertRegex(r["alert"], r"^Trailhook[A-Za-z]+$", where)
            self.assertRegex(str(r.get("for", "")), DURATION_RE, where + ": needs a `for:`")
            self.assertIn((r.get("labels") or {}).get("severity"), SEVERITIES, where)
            ann = r.get("annotations") or {}
            for key in ("summary", "description", "runbook"):
                self.assertTrue(isinstance(ann.get(key), str) and ann[key].strip(),
                                "%s: needs a %s annotation" % (where, key))
            self.assertTrue(self.analyzed(r["expr"], where).metrics, where + ": names no metric")
        self.assertEqual(len(alerts), len(set(alerts)), "alert names must be unique")
        self.assertEqual(len(records), len(set(records)), "record names must be unique")
        for required in ("TrailhookDown", "TrailhookNotReady", "TrailhookNotificationsFailing",
                         "TrailhookOutboxBacklog", "TrailhookDeadLetters", "TrailhookRuleErrors",
                         "TrailhookConfigReloadFailed", "TrailhookEventsRejected"):
            self.assertIn(required, alerts)
        down = [r for _, r in all_rules(groups) if r.get("alert") == "TrailhookDown"][0]
        self.assertEqual(down["labels"]["severity"], "critical")
        self.assertIn('absent(up{job="trailhook"})', down["expr"])

    def test_prometheusrule_has_the_same_groups(self):
        pr = self.promrule
        self.assertEqual(pr.get("apiVersion"), "monitoring.coreos.com/v1")
        self.assertEqual(pr.get("kind"), "PrometheusRule")
        self.assertTrue(pr["metadata"].get("name"))
        self.assertIn("release", pr["metadata"].get("labels", {}))
        self.assertEqual(pr["spec"]["groups"], self.rules["groups"],
                         "prometheusrule.yaml spec.groups differs from trailhook-rules.yml")

    def test_rule_expressions_name_exported_metrics_and_labels(self):
        c = self.checker()
        problems = []
        for source, groups in (("trailhook-rules.yml", self.rules["groups"]),
                               ("prometheusrule.yaml", self.promrule["spec"]["groups"])):
            for group, r in all_rules(groups):
                where = "%s %s/%s" % (source, group, r.get("alert") or r.get("record"))
                problems.extend(c.check(r["expr"], where))
        self.assertEqual([], problems)

    def test_rule_templates_name_labels_the_expression_keeps(self):
        """{{ $labels.X }} in an annotation must be a label the alert's series can carry."""
        c = self.checker()
        problems = []
        for group, r in all_rules(self.rules["groups"]):
            if "alert" not in r:
                continue
            a = self.analyzed(r["expr"], r["alert"])
            allowed = set(TARGET_LABELS) | a.introduced
            for m in a.metrics:
                allowed |= c.labels_of(m) or set()
            for text in (r.get("annotations") or {}).values():
                for label in re.findall(r"\$labels\.([A-Za-z_][A-Za-z0-9_]*)", text):
                    if label not in allowed:
                        problems.append("%s: annotation uses $labels.%s" % (r["alert"], label))
        self.assertEqual([], problems)

    @unittest.skipUnless(shutil.which("promtool"), "promtool is not installed")
    def test_promtool_check_rules(self):
        d = tempfile.mkdtemp(prefix="trailhook-promtool-")
        self.addCleanup(shutil.rmtree, d, ignore_errors=True)
        spec = os.path.join(d, "prometheusrule-spec.yml")
        with open(spec, "w") as f:
            yaml.safe_dump({"groups": self.promrule["spec"]["groups"]}, f)
        for path in (RULES_FILE, spec):
            r = subprocess.run(["promtool", "check", "rules", path], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=60)
            self.assertEqual(r.returncode, 0, r.stdout.decode("utf-8", "replace"))

    # -- the dashboard --

    def test_dashboard_is_well_formed(self):
        dash = self.dashboard
        self.assertTrue(dash.get("title"))
        self.assertTrue(dash.get("uid"))
        self.assertGreaterEqual(dash.get("schemaVersion", 0), 36)
        variables = {v["name"]: v for v in dash["templating"]["list"]}
        ds = variables.get("datasource")
        self.assertIsNotNone(ds, "needs a `datasource` variable")
        self.assertEqual((ds["type"], ds["query"]), ("datasource", "prometheus"))
        for name in ("job", "instance"):
            self.assertIn(name, variables)
            self.assertEqual(variables[name]["type"], "query")
            self.assertIn("datasource", json.dumps(variables[name]["datasource"]))
        ids = []
        panels = dashboard_panels(dash)
        self.assertGreater(len(panels), 10)
        for p in panels:
            where = "panel %r" % p.get("title")
            ids.append(p.get("id"))
            self.assertIsInstance(p.get("id"), int, where)
            self.assertTrue(p.get("title"), where)
            grid = p.get("gridPos") or {}
            for key in ("h", "w", "x", "y"):
                self.assertIsInstance(grid.get(key), int, "%s: gridPos.%s" % (where, key))
            self.assertLessEqual(grid["x"] + grid["w"], 24, where)
            self.assertGreater(grid["h"], 0, where)
            if p.get("type") == "row":
                continue
            self.assertIn(p.get("datasource", {}).get("uid"), ("${datasource}", "$datasource"),
                          where + ": datasource must be the variable")
            targets = p.get("targets") or []
            self.assertTrue(targets, where + ": no query")
            refs = [t.get("refId") for t in targets]
            self.assertEqual(len(refs), len(set(refs)), where + ": duplicate refId")
            for t in targets:
                self.assertTrue((t.get("expr") or "").strip(), where + ": empty expr")
                if "datasource" in t:
                    self.assertIn(t["datasource"].get("uid"), ("${datasource}", "$datasource"),
                                  where)
        self.assertEqual(len(ids), len(set(ids)), "panel ids must be unique")
        # panels do not overlap
        cells = set()
        for p in panels:
            g = p["gridPos"]
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    self.assertNotIn((x, y), cells, "panel %r overlaps another" % p["title"])
                    cells.add((x, y))

    def dashboard_expressions(self):
        out = []
        for p in dashboard_panels(self.dashboard):
            for t in p.get("targets") or []:
                out.append(("panel %r %s" % (p.get("title"), t.get("refId")), t.get("expr", "")))
        return out

    def test_dashboard_expressions_name_exported_metrics_and_labels(self):
        c = Checker(self.expo)  # the dashboard must not need the recording rules
        problems = []
        for where, expr in self.dashboard_expressions():
            problems.extend(c.check(expr, where))
        for var in self.dashboard["templating"]["list"]:
            if var.get("type") != "query":
                continue
            where = "variable %s" % var["name"]
            selector, label = grafana_variable_query(variable_query_text(var))
            if selector is None:
                problems.append("%s: not a label_values()/query_result() query" % where)
                continue
            problems.extend(c.check(selector, where))
            if label is not None:
                metrics = self.analyzed(selector, where).metrics
                if not any(label in (c.labels_of(m) or {label}) for m in metrics):
                    problems.append("%s: no label %r on %s" % (where, label, sorted(metrics)))
        self.assertEqual([], problems)

    def test_dashboard_shows_every_family(self):
        """A metric the service exports but no panel shows is a panel missing."""
        shown = set()
        for where, expr in self.dashboard_expressions():
            shown |= self.analyzed(expr, where).metrics
        missing = []
        for family, typ in sorted(self.expo.types.items()):
            names = {family}
            if typ in ("histogram", "summary"):
                names = {family + "_bucket", family + "_sum", family + "_count"}
            if not names & shown:
                missing.append(family)
        self.assertEqual([], missing, "exported but on no dashboard panel")

    def test_dashboard_selectors_filter_by_job_and_instance(self):
        """process_* and up exist for every target: each selector must pick trailhook's."""
        problems = []
        for where, expr in self.dashboard_expressions():
            for metric, found in self.analyzed(expr, where).selectors:
                labels = {label: value for label, _, value in found}
                if labels.get("job") != "$job" or labels.get("instance") != "$instance":
                    problems.append("%s: %s lacks job=~\"$job\", instance=~\"$instance\""
                                    % (where, metric))
        self.assertEqual([], problems)


class CheckerCatchesMistakesTest(unittest.TestCase):
    """The checks above fail on the mistakes they exist for (no service needed)."""

    EXPO = ("# TYPE trailhook_outbox_pending gauge\n"
            'trailhook_outbox_pending{destination="console"} 0\n'
            "# TYPE trailhook_x_seconds histogram\n"
            'trailhook_x_seconds_bucket{handler="/events",le="+Inf"} 1\n'
            'trailhook_x_seconds_sum{handler="/events"} 1\n'
            'trailhook_x_seconds_count{handler="/events"} 1\n')

    def test_problems(self):
        c = Checker(Exposition(self.EXPO))
        ok = ('histogram_quantile(0.99, sum by (le, job) (rate(trailhook_x_seconds_bucket'
              '{handler="/events"}[5m]))) > 1 or up{job="trailhook"} == 0 or '
              'max by (namespace, destination) (trailhook_outbox_pending) > 0')
        self.assertEqual([], c.check(ok, "ok"))
        for bad, why in (("trailhook_outbox_pendingg > 0", "not exported"),
                         ("trailhook_x_seconds > 0", "not exported"),
                         ('trailhook_outbox_pending{dest="x"} > 0', "has no label"),
                         ("sum by (reason) (trailhook_outbox_pending)", "none of"),
                         ('rate(trailhook_x_seconds_count{handler="/event"}[5m])',
                          "matches no series"),
                         ("rates(trailhook_outbox_pending[5m])", "unknown function")):
            with self.subTest(expr=bad):
                problems = c.check(bad, "bad")
                self.assertEqual(len(problems), 1, problems)
                self.assertIn(why, problems[0])


if __name__ == "__main__":
    unittest.main()
