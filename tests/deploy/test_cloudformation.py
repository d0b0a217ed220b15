"""Checks of deploy/cloudformation/eventbridge.yaml: a valid template whose rule sends trailhook
every event it needs and nothing else.

Python 3 with PyYAML; no AWS account, cfn-lint or boto3 needed. ctest runs it from tests/deploy
with:
  TRAILHOOK_BIN   the built trailhook binary  (default TH_SOURCE_DIR/build/trailhook; the
                  `trailhook eval` cross-check is skipped when it is missing)
  TH_SOURCE_DIR   the source tree             (default: two levels above this file)
  TH_FIXTURES     the fixtures                (default TH_SOURCE_DIR/tests/fixtures)
  TH_CFN_TEMPLATE another template to check   (default deploy/cloudformation/eventbridge.yaml)
By hand:
  cd tests/deploy && TRAILHOOK_BIN=../../build/trailhook TH_SOURCE_DIR=../.. \
      TH_FIXTURES=../fixtures python3 -m unittest -v test_cloudformation

What is checked:
  * the template: CloudFormation's structure, every Ref / GetAtt / Sub naming something declared,
    property names against the resource types' documented properties, parameter defaults
    within their own constraints, and the wiring (API-key connection, POST destination on
    ServiceUrl, target with role, retry policy and dead-letter queue, least-privilege IAM role
    and queue policy);
  * the event pattern, with the small EventBridge matcher below, over every event in
    tests/fixtures/events/*.json and every record of tests/fixtures/corpus (all its shapes:
    envelopes, {"Records": [...]}, arrays, JSON lines, gzip, vendor test-case wrappers). A bare
    CloudTrail record is wrapped as EventBridge would deliver it. The pattern must select
    (a) every event the rule matches, per VERDICTS.json and per `trailhook eval` (the latter
        also with every shared-to account made "new"), and every ec2 ModifyImageAttribute or
        ResetImageAttribute whatever its verdict, since the verdict depends on state EventBridge
        cannot see;
    (b) every CreateAccountResult;
    (c) nothing else: each selected event is one of those.

The matcher (pattern_matches) implements the EventBridge pattern language as documented in the
EventBridge user guide ("Event patterns", "Content filtering"): nested objects; arrays of exact
values (strings, numbers, booleans, null); prefix, suffix and equals-ignore-case (also inside
prefix/suffix); anything-but (a value, a list, or prefix/suffix/equals-ignore-case/wildcard);
exists; numeric ranges; cidr; wildcard; $or at any level. Event arrays match when any element
matches. Its limits: numbers compare by value (EventBridge compares 300 and 3.0e2 by their text
and calls them different); an array of objects matches when one element matches the whole
sub-pattern; wildcard supports `*` only, not the `\\*` escape; pattern size limits and other
validation EventBridge does on PutRule are not checked; any other operator raises PatternError,
so the test fails loudly rather than guess.
"""

import collections
import functools
import gzip
import ipaddress
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import unittest

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("TH_SOURCE_DIR") or os.path.normpath(os.path.join(HERE, "..", ".."))
FIXTURES = os.environ.get("TH_FIXTURES") or os.path.join(SOURCE_DIR, "tests", "fixtures")
BIN = os.environ.get("TRAILHOOK_BIN") or os.path.join(SOURCE_DIR, "build", "trailhook")
TEMPLATE = os.environ.get("TH_CFN_TEMPLATE") or os.path.join(
    SOURCE_DIR, "deploy", "cloudformation", "eventbridge.yaml")
CONFIG_FILE = os.path.join(SOURCE_DIR, "config", "trailhook.yml")
EVENTS_DIR = os.path.join(FIXTURES, "events")
CORPUS_DIR = os.path.join(FIXTURES, "corpus")
VERDICTS_FILE = os.path.join(CORPUS_DIR, "VERDICTS.json")

# What trailhook must receive: (eventSource, eventName).
WANTED = {
    ("ec2.amazonaws.com", "ModifyImageAttribute"),
    ("ec2.amazonaws.com", "ResetImageAttribute"),
    ("organizations.amazonaws.com", "CreateAccountResult"),
}
AMI_EVENTS = {name for source, name in WANTED if source == "ec2.amazonaws.com"}

# EventBridge's detail-type for a CloudTrail record, by eventType; records without one (old
# eventVersions) are API calls.
DETAIL_TYPES = {
    "AwsApiCall": "AWS API Call via CloudTrail",
    "AwsServiceEvent": "AWS Service Event via CloudTrail",
    "AwsConsoleSignIn": "AWS Console Sign In via CloudTrail",
    "AwsConsoleAction": "AWS Console Action via CloudTrail",
    "AwsCloudTrailInsight": "AWS Insight via CloudTrail",
}
DEFAULT_DETAIL_TYPE = "AWS API Call via CloudTrail"

PSEUDO_PARAMETERS = {
    "AWS::AccountId", "AWS::NotificationARNs", "AWS::NoValue", "AWS::Partition", "AWS::Region",
    "AWS::StackId", "AWS::StackName", "AWS::URLSuffix",
}
TOP_LEVEL_KEYS = {
    "AWSTemplateFormatVersion", "Description", "Metadata", "Parameters", "Rules", "Mappings",
    "Conditions", "Transform", "Resources", "Outputs",
}
PARAMETER_KEYS = {
    "Type", "Default", "Description", "NoEcho", "AllowedValues", "AllowedPattern", "MinLength",
    "MaxLength", "MinValue", "MaxValue", "ConstraintDescription",
}
PARAMETER_TYPES = {"String", "Number", "List<Number>", "CommaDelimitedList"}
RESOURCE_KEYS = {
    "Type", "Properties", "DependsOn", "Condition", "DeletionPolicy", "UpdateReplacePolicy",
    "Metadata", "CreationPolicy", "UpdatePolicy",
}
OUTPUT_KEYS = {"Description", "Value", "Export", "Condition"}
DESCRIPTION_MAX_BYTES = 1024
INTRINSICS = {
    "Ref", "Condition", "Fn::GetAtt", "Fn::Sub", "Fn::Join", "Fn::If", "Fn::Equals", "Fn::Not",
    "Fn::And", "Fn::Or", "Fn::Select", "Fn::Split", "Fn::FindInMap", "Fn::ImportValue",
    "Fn::Base64", "Fn::GetAZs", "Fn::Cidr", "Fn::Length", "Fn::ToJsonString",
}

# Documented properties of the resource types used (CloudFormation template reference):
# name -> (required, {property: nested spec or None}). A nested spec is another such pair, for a
# property holding an object, or ("list", spec) for a list of objects.
P = None  # a property whose value is not checked further here
TARGET_SPEC = ({"Arn", "Id"}, {
    "AppSyncParameters": P, "Arn": P, "BatchParameters": P,
    "DeadLetterConfig": (set(), {"Arn": P}), "EcsParameters": P,
    "HttpParameters": (set(), {"HeaderParameters": P, "PathParameterValues": P,
                               "QueryStringParameters": P}),
    "Id": P, "Input": P, "InputPath": P, "InputTransformer": P, "KinesisParameters": P,
    "RedshiftDataParameters": P,
    "RetryPolicy": (set(), {"MaximumEventAgeInSeconds": P, "MaximumRetryAttempts": P}),
    "RoleArn": P, "RunCommandParameters": P, "SageMakerPipelineParameters": P,
    "SqsParameters": P,
})
POLICY_SPEC = ({"PolicyDocument", "PolicyName"}, {"PolicyDocument": P, "PolicyName": P})
RESOURCE_SPECS = {
    "AWS::Events::Connection": (set(), {
        "AuthorizationType": P,
        "AuthParameters": (set(), {
            "ApiKeyAuthParameters": ({"ApiKeyName", "ApiKeyValue"},
                                     {"ApiKeyName": P, "ApiKeyValue": P}),
            "BasicAuthParameters": P, "ConnectivityParameters": P,
            "InvocationHttpParameters": P, "OAuthParameters": P,
        }),
        "Description": P, "InvocationConnectivityParameters": P, "KmsKeyIdentifier": P,
        "Name": P,
    }),
    "AWS::Events::ApiDestination": ({"ConnectionArn", "HttpMethod", "InvocationEndpoint"}, {
        "ConnectionArn": P, "Description": P, "HttpMethod": P, "InvocationEndpoint": P,
        "InvocationRateLimitPerSecond": P, "Name": P,
    }),
    "AWS::Events::Rule": (set(), {
        "Description": P, "EventBusName": P, "EventPattern": P, "Name": P, "RoleArn": P,
        "ScheduleExpression": P, "State": P, "Targets": ("list", TARGET_SPEC),
    }),
    "AWS::SQS::Queue": (set(), {
        "ContentBasedDeduplication": P, "DeduplicationScope": P, "DelaySeconds": P,
        "FifoQueue": P, "FifoThroughputLimit": P, "KmsDataKeyReusePeriodSeconds": P,
        "KmsMasterKeyId": P, "MaximumMessageSize": P, "MessageRetentionPeriod": P,
        "QueueName": P, "ReceiveMessageWaitTimeSeconds": P, "RedriveAllowPolicy": P,
        "RedrivePolicy": P, "SqsManagedSseEnabled": P, "Tags": P, "VisibilityTimeout": P,
    }),
    "AWS::SQS::QueuePolicy": ({"PolicyDocument", "Queues"}, {"PolicyDocument": P, "Queues": P}),
    "AWS::IAM::Role": ({"AssumeRolePolicyDocument"}, {
        "AssumeRolePolicyDocument": P, "Description": P, "ManagedPolicyArns": P,
        "MaxSessionDuration": P, "Path": P, "PermissionsBoundary": P,
        "Policies": ("list", POLICY_SPEC), "RoleName": P, "Tags": P,
    }),
}
# Fn::GetAtt attributes of those types.
ATTRIBUTES = {
    "AWS::Events::Connection": {"Arn", "ArnForPolicy", "SecretArn"},
    "AWS::Events::ApiDestination": {"Arn", "ArnForPolicy"},
    "AWS::Events::Rule": {"Arn"},
    "AWS::SQS::Queue": {"Arn", "QueueName", "QueueUrl"},
    "AWS::SQS::QueuePolicy": {"Id"},
    "AWS::IAM::Role": {"Arn", "RoleId"},
}
HTTP_METHODS = {"DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"}
RULE_STATES = {"ENABLED", "DISABLED", "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS"}
SQS_MAX_RETENTION = 14 * 24 * 3600


# ---- loading the template ---------------------------------------------------------------------

class CfnLoader(yaml.SafeLoader):
    """SafeLoader that reads CloudFormation's short-form tags as their long forms and rejects
    duplicate keys (CloudFormation does; PyYAML would keep the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, "duplicate key %r" % (key,), key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _short_form(name):
    def construct(loader, node):
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        if name in ("Ref", "Condition"):
            return {name: value}
        if name == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
        return {"Fn::" + name: value}
    return construct


for _tag in ("Ref", "Condition", "GetAtt", "Sub", "Join", "If", "Equals", "Not", "And", "Or",
             "Select", "Split", "FindInMap", "ImportValue", "Base64", "GetAZs", "Cidr", "Length",
             "ToJsonString"):
    CfnLoader.add_constructor("!" + _tag, _short_form(_tag))


def load_template(path):
    with open(path) as f:
        return yaml.load(f, Loader=CfnLoader)


def walk(node, path=()):
    """(path, node) for node and everything under it."""
    yield path, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from walk(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, path + (i,))


def where(path):
    return "/".join(str(p) for p in path) or "<template>"


def intrinsic(node):
    """(function name, argument) when node is an intrinsic function call, else None."""
    if isinstance(node, dict) and len(node) == 1:
        (k, v), = node.items()
        if k in INTRINSICS:
            return k, v
    return None


def is_ref(node, name):
    return node == {"Ref": name}


def is_getatt(node, resource, attributes=("Arn",)):
    call = intrinsic(node)
    return (call is not None and call[0] == "Fn::GetAtt" and isinstance(call[1], list)
            and len(call[1]) == 2 and call[1][0] == resource and call[1][1] in attributes)


def as_list(value):
    return value if isinstance(value, list) else [value]


def sub_names(text):
    """Variable names of an Fn::Sub string: ${Name} and ${Resource.Attr}, not ${!Literal}."""
    return [m for m in re.findall(r"\$\{([^}]*)\}", text) if not m.startswith("!")]


# ---- the EventBridge pattern matcher ----------------------------------------------------------

class PatternError(ValueError):
    """The pattern is not valid EventBridge syntax, or uses something this matcher lacks."""


_MISSING = object()


def pattern_matches(pattern, event):
    """Does the EventBridge event pattern select the event (a dict)? See the module docstring."""
    if not isinstance(pattern, dict) or not pattern:
        raise PatternError("a pattern is a non-empty JSON object")
    return _match_object(pattern, event)


def _match_object(pattern, obj):
    for key, sub in pattern.items():
        if key == "$or":
            if not isinstance(sub, list) or len(sub) < 2:
                raise PatternError("$or takes a list of at least two patterns")
            for alt in sub:
                if not isinstance(alt, dict) or not alt:
                    raise PatternError("each $or alternative is a non-empty object")
            if not any(_match_object(alt, obj) for alt in sub):
                return False
            continue
        value = obj.get(key, _MISSING) if isinstance(obj, dict) else _MISSING
        if isinstance(sub, dict):
            if not sub:
                raise PatternError("empty object at %r" % key)
            if isinstance(value, dict):
                ok = _match_object(sub, value)
            elif isinstance(value, list):
                ok = any(isinstance(v, dict) and _match_object(sub, v) for v in value)
            else:  # absent, or a leaf where the pattern expects an object: all of it is absent
                ok = _match_object(sub, {})
            if not ok:
                return False
        elif isinstance(sub, list):
            if not _match_leaf(sub, value):
                return False
        else:
            raise PatternError("the value for %r must be an array or an object" % key)
    return True


def _elements(value):
    if value is _MISSING:
        return []
    if isinstance(value, list):
        out = []
        for v in value:
            out.extend(_elements(v) if isinstance(v, list) else [v])
        return out
    return [value]


def _match_leaf(matchers, value):
    if not matchers:
        raise PatternError("empty array in pattern")
    for m in matchers:
        if isinstance(m, dict) and "exists" in m:
            if len(m) != 1 or not isinstance(m["exists"], bool):
                raise PatternError("exists takes true or false alone")
            present = value is not _MISSING and not isinstance(value, dict)  # leaves only
            if present == m["exists"]:
                return True
            continue
        if any(_match_value(m, v) for v in _elements(value)):
            return True
    return False


def _same(a, b):
    """EventBridge exact match of JSON values (numbers by value, see the limits above)."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _string_test(op, arg, v):
    """prefix / suffix / equals-ignore-case / wildcard of string v; arg may be
    {"equals-ignore-case": s} for prefix and suffix."""
    if not isinstance(v, str):
        return False
    fold = False
    if isinstance(arg, dict) and op in ("prefix", "suffix"):
        if set(arg) != {"equals-ignore-case"}:
            raise PatternError("%s takes a string or {equals-ignore-case: string}" % op)
        arg, fold = arg["equals-ignore-case"], True
    if not isinstance(arg, str):
        raise PatternError("%s takes a string" % op)
    if op == "equals-ignore-case":
        return v.casefold() == arg.casefold()
    if op == "wildcard":
        return re.fullmatch(".*".join(re.escape(p) for p in arg.split("*")), v, re.S) is not None
    if fold:
        v, arg = v.casefold(), arg.casefold()
    return v.startswith(arg) if op == "prefix" else v.endswith(arg)


_NUMERIC_OPS = {
    "=": lambda a, b: a == b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
}


def _match_value(m, v):
    if not isinstance(m, dict):
        if isinstance(m, list):
            raise PatternError("nested arrays are not allowed in patterns")
        return _same(m, v)
    if len(m) != 1:
        raise PatternError("an operator object has exactly one key: %r" % (m,))
    (op, arg), = m.items()
    if op in ("prefix", "suffix", "equals-ignore-case", "wildcard"):
        return _string_test(op, arg, v)
    if op == "anything-but":
        if isinstance(arg, dict):
            if len(arg) != 1:
                raise PatternError("anything-but takes one operator")
            (inner, inner_arg), = arg.items()
            if inner not in ("prefix", "suffix", "equals-ignore-case", "wildcard"):
                raise PatternError("anything-but does not take %r" % inner)
            if not isinstance(v, str):
                return False
            return not any(_string_test(inner, a, v) for a in as_list(inner_arg))
        return not any(_same(a, v) for a in as_list(arg))
    if op == "numeric":
        if not isinstance(arg, list) or not arg or len(arg) % 2:
            raise PatternError("numeric takes [op, number, ...]")
        if not _is_number(v):
            return False
        for i in range(0, len(arg), 2):
            cmp, bound = arg[i], arg[i + 1]
            if cmp not in _NUMERIC_OPS or not _is_number(bound):
                raise PatternError("bad numeric comparison %r %r" % (cmp, bound))
            if not _NUMERIC_OPS[cmp](v, bound):
                return False
        return True
    if op == "cidr":
        if not isinstance(v, str):
            return False
        try:
            return ipaddress.ip_address(v) in ipaddress.ip_network(arg, strict=False)
        except ValueError:
            return False
    raise PatternError("operator %r is not supported by this matcher" % op)


# ---- events as EventBridge would deliver them -------------------------------------------------

def event_source(record):
    """EventBridge's `source` for a CloudTrail record: "aws." + the service of eventSource
    (exact for ec2 and organizations, the two this rule names; some services differ, such as
    monitoring -> aws.cloudwatch, which can only make such events less selected here)."""
    src = record.get("eventSource")
    m = re.fullmatch(r"([a-z0-9-]+)\.amazonaws\.com", src) if isinstance(src, str) else None
    return "aws." + m.group(1) if m else None


def detail_type(record):
    return DETAIL_TYPES.get(record.get("eventType"), DEFAULT_DETAIL_TYPE)


def envelope_for(record):
    """The envelope EventBridge makes of a CloudTrail record."""
    env = {
        "version": "0",
        "id": "00000000-0000-4000-8000-000000000000",
        "detail-type": detail_type(record),
        "account": record.get("recipientAccountId"),
        "time": record.get("eventTime"),
        "region": record.get("awsRegion"),
        "resources": [],
        "detail": record,
    }
    source = event_source(record)
    if source is not None:
        env["source"] = source
    return env


def is_envelope(node):
    return isinstance(node.get("detail-type"), str) and "source" in node and "detail" in node


def is_cloudtrail(node):
    return isinstance(node, dict) and isinstance(node.get("eventName"), str)


def walk_events(node, envelope=None):
    """(record or None, envelope or None) for each CloudTrail record and each envelope in a
    parsed file, in document order; wrappers of any shape are searched (Records, test cases).
    A record is a dict with a string eventName; an envelope whose detail is not one (an "EC2 AMI
    State Change") comes as (None, envelope)."""
    if isinstance(node, list):
        for v in node:
            yield from walk_events(v, envelope)
    elif isinstance(node, dict):
        if is_cloudtrail(node):
            yield node, envelope
        elif is_envelope(node):
            detail = node.get("detail")
            if is_cloudtrail(detail):
                yield detail, node
            else:
                yield None, node
        else:
            for v in node.values():
                yield from walk_events(v, envelope)


def parse_file(path):
    """The JSON documents of a file (one JSON value, or JSON lines; gzip allowed), or None when
    it is not JSON."""
    with open(path, "rb") as f:
        data = f.read()
    if path.endswith(".gz"):
        data = gzip.decompress(data)
    text = data.decode("utf-8-sig", errors="replace")
    if not text.strip():
        return []
    try:
        return [json.loads(text)]
    except ValueError:
        pass
    docs = []
    for line in text.splitlines():
        if line.strip():
            try:
                docs.append(json.loads(line))
            except ValueError:
                return None
    return docs


Item = collections.namedtuple("Item", "pos file index record given")  # index: within its file


class Fixtures:
    """Every event of tests/fixtures/events/*.json and tests/fixtures/corpus, read once."""

    def __init__(self):
        self.items = []  # Item for each CloudTrail record
        self.other_envelopes = []  # (file, envelope) whose detail is not a CloudTrail record
        self.unparseable = []
        self.records_by_file = collections.defaultdict(list)  # file -> [Item]
        files = []
        if os.path.isdir(EVENTS_DIR):
            files += [("events/" + n, os.path.join(EVENTS_DIR, n))
                      for n in sorted(os.listdir(EVENTS_DIR)) if n.endswith(".json")]
        for root, dirs, names in os.walk(CORPUS_DIR):
            dirs.sort()
            for n in sorted(names):
                full = os.path.join(root, n)
                rel = os.path.relpath(full, CORPUS_DIR).replace(os.sep, "/")
                if rel == "VERDICTS.json" or n.endswith(".md"):
                    continue
                files.append(("corpus/" + rel, full))
        self.files = files
        for name, path in files:
            docs = parse_file(path)
            if docs is None:
                self.unparseable.append(name)
                continue
            for doc in docs:
                for record, given in walk_events(doc):
                    if record is None:
                        self.other_envelopes.append((name, given))
                        continue
                    item = Item(len(self.items), name, len(self.records_by_file[name]), record,
                                given)
                    self.items.append(item)
                    self.records_by_file[name].append(item)


@functools.lru_cache(maxsize=None)
def fixtures():
    """Built once, on first use, and shared by every test."""
    return Fixtures()


def ami_share_user_ids(record):
    """userIds a ModifyImageAttribute adds launch permission for."""
    params = record.get("requestParameters")
    items = None
    try:
        items = params["launchPermission"]["add"]["items"]
    except (KeyError, TypeError):
        pass
    if not isinstance(items, list):
        return []
    return [i["userId"] for i in items if isinstance(i, dict) and isinstance(i.get("userId"), str)]


def trailhook_eval(records, new_accounts=False):
    """`trailhook eval` over the records, as JSON lines: the set of indexes it matches. With
    new_accounts, each ModifyImageAttribute is preceded by a CreateAccountResult for every account
    it shares with, so shares to "new" accounts alert too."""
    lines, owner = [], []
    for i, rec in enumerate(records):
        if new_accounts and rec.get("eventName") == "ModifyImageAttribute":
            for n, uid in enumerate(ami_share_user_ids(rec)):
                synthetic = {
                    "eventVersion": "1.08", "eventSource": "organizations.amazonaws.com",
                    "eventName": "CreateAccountResult", "eventType": "AwsServiceEvent",
                    "eventID": "synthetic-%d-%d" % (i, n),
                    "serviceEventDetails": {"createAccountStatus": {
                        "state": "SUCCEEDED", "accountId": uid}},
                }
                if isinstance(rec.get("eventTime"), str):
                    synthetic["eventTime"] = rec["eventTime"]
                lines.append(json.dumps(synthetic))
                owner.append(None)
        lines.append(json.dumps(rec))
        owner.append(i)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "records.jsonl")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        # No configuration and an empty state dir, so eval starts from an empty new-account
        # set; trailhook refuses unknown TRAILHOOK_* variables, and TRAILHOOK_BIN is one.
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRAILHOOK_")}
        env["TRAILHOOK_STATE_DIR"] = os.path.join(tmp, "state")
        proc = subprocess.run([BIN, "eval", path], cwd=tmp, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True, timeout=120)
    if proc.returncode not in (0, 1):  # 0 no match, 1 some match, 2 bad input or config
        raise AssertionError("trailhook eval exited %d: %s"
                             % (proc.returncode, proc.stderr[-2000:]))
    results = [json.loads(l) for l in proc.stdout.splitlines() if l.strip()]
    if len(results) != len(lines):
        raise AssertionError("trailhook eval gave %d results for %d records"
                             % (len(results), len(lines)))
    matched = set()
    for res in results:
        i = owner[res["index"]]
        if i is not None and res.get("match") is True:
            eid = records[i].get("eventID")
            if res.get("eventID") != eid:
                raise AssertionError("trailhook eval result %d is for eventID %r, not %r"
                                     % (res["index"], res.get("eventID"), eid))
            matched.add(i)
    return matched


# ---- the tests --------------------------------------------------------------------------------

class TemplateTest(unittest.TestCase):
    """The template on its own: structure, references, property names, wiring."""

    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.t = load_template(TEMPLATE)
        cls.params = cls.t.get("Parameters") or {}
        cls.resources = cls.t.get("Resources") or {}

    def one_of_type(self, rtype):
        found = [n for n, r in self.resources.items() if r.get("Type") == rtype]
        self.assertEqual(len(found), 1, "want exactly one %s, have %s" % (rtype, found))
        return found[0], self.resources[found[0]].get("Properties") or {}

    def test_structure(self):
        t = self.t
        self.assertIsInstance(t, dict)
        self.assertLessEqual(set(t), TOP_LEVEL_KEYS, "unknown top-level keys")
        self.assertEqual(t.get("AWSTemplateFormatVersion"), "2010-09-09")
        desc = t.get("Description")
        self.assertIsInstance(desc, str)
        self.assertLessEqual(len(desc.encode()), DESCRIPTION_MAX_BYTES,
                             "the template Description is over CloudFormation's 1024 bytes")
        self.assertIn("us-east-1", desc, "say where CreateAccountResult arrives")
        self.assertTrue(self.resources)
        for name, res in self.resources.items():
            self.assertRegex(name, r"^[A-Za-z0-9]+$", "logical IDs are alphanumeric")
            self.assertLessEqual(set(res), RESOURCE_KEYS, "%s: unknown keys" % name)
            self.assertIn(res.get("Type"), RESOURCE_SPECS, "%s: unexpected type" % name)
        for name, out in (t.get("Outputs") or {}).items():
            self.assertLessEqual(set(out), OUTPUT_KEYS, "output %s: unknown keys" % name)
            self.assertIn("Value", out, "output %s has no Value" % name)
        groups = (t.get("Metadata") or {}).get("AWS::CloudFormation::Interface", {})
        for group in groups.get("ParameterGroups", []):
            for p in group.get("Parameters", []):
                self.assertIn(p, self.params, "parameter group names unknown %s" % p)

    def test_references_resolve(self):
        declared = set(self.params) | set(self.resources) | PSEUDO_PARAMETERS
        conditions = set(self.t.get("Conditions") or {})
        problems = []
        for path, node in walk(self.t):
            call = intrinsic(node)
            if call is None:
                continue
            fn, arg = call
            if fn == "Ref":
                if arg not in declared:
                    problems.append("%s: Ref %r names nothing declared" % (where(path), arg))
            elif fn == "Fn::GetAtt":
                if not (isinstance(arg, list) and len(arg) == 2):
                    problems.append("%s: GetAtt needs [resource, attribute]" % where(path))
                    continue
                res = self.resources.get(arg[0])
                if res is None:
                    problems.append("%s: GetAtt of %r, not a resource" % (where(path), arg[0]))
                elif arg[1] not in ATTRIBUTES.get(res.get("Type"), set()):
                    problems.append("%s: %s has no attribute %r" % (where(path), arg[0], arg[1]))
            elif fn == "Fn::Sub":
                text, local = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
                for name in sub_names(text):
                    head, _, attr = name.partition(".")
                    if name in local or name in PSEUDO_PARAMETERS:
                        continue
                    if attr:
                        res = self.resources.get(head)
                        if res is None or attr not in ATTRIBUTES.get(res.get("Type"), set()):
                            problems.append("%s: Sub ${%s} resolves to nothing"
                                            % (where(path), name))
                    elif name not in declared:
                        problems.append("%s: Sub ${%s} names nothing declared"
                                        % (where(path), name))
            elif fn == "Fn::If" and (not isinstance(arg, list) or arg[0] not in conditions):
                problems.append("%s: Fn::If on an undeclared condition" % where(path))
        for name, res in self.resources.items():
            for dep in as_list(res.get("DependsOn", [])):
                if dep not in self.resources:
                    problems.append("%s: DependsOn unknown %r" % (name, dep))
            if "Condition" in res and res["Condition"] not in conditions:
                problems.append("%s: unknown condition %r" % (name, res["Condition"]))
        self.assertEqual(problems, [])

    def _check_properties(self, spec, props, path, problems):
        required, allowed = spec
        if intrinsic(props) is not None:
            return
        if not isinstance(props, dict):
            problems.append("%s: want an object" % path)
            return
        for k in sorted(required - set(props)):
            problems.append("%s: required property %s is missing" % (path, k))
        for k, v in props.items():
            if k not in allowed:
                problems.append("%s: %s is not a property here" % (path, k))
                continue
            sub = allowed[k]
            if sub is None:
                continue
            if sub[0] == "list":
                if not isinstance(v, list):
                    problems.append("%s/%s: want a list" % (path, k))
                    continue
                for i, elem in enumerate(v):
                    self._check_properties(sub[1], elem, "%s/%s/%d" % (path, k, i), problems)
            else:
                self._check_properties(sub, v, "%s/%s" % (path, k), problems)

    def test_property_names(self):
        problems = []
        for name, res in self.resources.items():
            spec = RESOURCE_SPECS.get(res.get("Type"))
            if spec is not None:
                self._check_properties(spec, res.get("Properties") or {}, name, problems)
        self.assertEqual(problems, [])

    def test_parameters(self):
        for name, p in self.params.items():
            self.assertLessEqual(set(p), PARAMETER_KEYS, "parameter %s: unknown keys" % name)
            self.assertIn(p.get("Type"), PARAMETER_TYPES, "parameter %s: type" % name)
            self.assertLessEqual(len(p.get("Description", "")), 4000)
            if "Default" not in p:
                continue
            d = p["Default"]
            if p["Type"] == "Number":
                self.assertTrue(_is_number(d), "parameter %s: default not a number" % name)
                if "MinValue" in p:
                    self.assertGreaterEqual(d, p["MinValue"], name)
                if "MaxValue" in p:
                    self.assertLessEqual(d, p["MaxValue"], name)
            else:
                d = str(d)
                if "AllowedPattern" in p:
                    self.assertRegex(d, "^(?:%s)$" % p["AllowedPattern"], name)
                self.assertGreaterEqual(len(d), p.get("MinLength", 0), name)
                self.assertLessEqual(len(d), p.get("MaxLength", 4096), name)
            if "AllowedValues" in p:
                self.assertIn(d, p["AllowedValues"], name)

        def param(name):
            self.assertIn(name, self.params, "parameter %s is missing" % name)
            return self.params[name]

        url = param("ServiceUrl")
        self.assertEqual(url["Type"], "String")
        self.assertNotIn("Default", url)
        pattern = url.get("AllowedPattern")
        self.assertTrue(pattern, "ServiceUrl must be constrained to https")
        self.assertRegex("https://trailhook.example.com/events", "^(?:%s)$" % pattern)
        self.assertNotRegex("http://trailhook.example.com/events", "^(?:%s)$" % pattern)
        key = param("ApiKey")
        self.assertIs(key.get("NoEcho"), True, "ApiKey must be NoEcho")
        self.assertNotIn("Default", key)
        header = param("ApiKeyHeader")
        self.assertEqual(header.get("Default"), "X-Api-Key")
        # ... and it is trailhook's own default header.
        with open(CONFIG_FILE) as f:
            cfg = yaml.safe_load(f) or {}
        self.assertEqual(cfg.get("api_key_header", "X-Api-Key"), header["Default"])
        rate = param("InvocationRateLimitPerSecond")
        self.assertEqual((rate["Type"], rate.get("Default"), rate.get("MinValue")),
                         ("Number", 300, 1))
        retries = param("MaximumRetryAttempts")
        self.assertEqual((retries["Type"], retries.get("Default")), ("Number", 185))
        self.assertGreaterEqual(retries.get("MinValue", -1), 0)
        self.assertLessEqual(retries.get("MaxValue", 10 ** 9), 185)
        age = param("MaximumEventAgeInSeconds")
        self.assertEqual((age["Type"], age.get("Default")), ("Number", 86400))
        self.assertGreaterEqual(age.get("MinValue", -1), 60)
        self.assertLessEqual(age.get("MaxValue", 10 ** 9), 86400)
        # The key must not leak through an output.
        for path, node in walk(self.t.get("Outputs") or {}):
            self.assertFalse(is_ref(node, "ApiKey"), "output %s exposes ApiKey" % where(path))

    def test_connection_and_destination(self):
        conn, cprops = self.one_of_type("AWS::Events::Connection")
        self.assertEqual(cprops.get("AuthorizationType"), "API_KEY")
        api_key = (cprops.get("AuthParameters") or {}).get("ApiKeyAuthParameters") or {}
        self.assertTrue(is_ref(api_key.get("ApiKeyName"), "ApiKeyHeader"))
        self.assertTrue(is_ref(api_key.get("ApiKeyValue"), "ApiKey"))
        dest, dprops = self.one_of_type("AWS::Events::ApiDestination")
        self.assertEqual(dprops.get("HttpMethod"), "POST")
        self.assertIn(dprops.get("HttpMethod"), HTTP_METHODS)
        self.assertTrue(is_getatt(dprops.get("ConnectionArn"), conn))
        self.assertTrue(is_ref(dprops.get("InvocationEndpoint"), "ServiceUrl"))
        self.assertTrue(is_ref(dprops.get("InvocationRateLimitPerSecond"),
                               "InvocationRateLimitPerSecond"))

    def test_rule_target(self):
        _, rule = self.one_of_type("AWS::Events::Rule")
        dest, _ = self.one_of_type("AWS::Events::ApiDestination")
        role, _ = self.one_of_type("AWS::IAM::Role")
        queue, _ = self.one_of_type("AWS::SQS::Queue")
        self.assertIn(rule.get("State", "ENABLED"), RULE_STATES)
        self.assertNotEqual(rule.get("State", "ENABLED"), "DISABLED")
        self.assertIsInstance(rule.get("EventPattern"), dict)
        self.assertNotIn("ScheduleExpression", rule)
        if "EventBusName" in rule:
            self.assertTrue(is_ref(rule["EventBusName"], "EventBusName")
                            or rule["EventBusName"] == "default")
        targets = rule.get("Targets")
        self.assertIsInstance(targets, list)
        self.assertEqual(len(targets), 1, "one target: the API destination")
        target = targets[0]
        self.assertRegex(str(target.get("Id")), r"^[\.\-_A-Za-z0-9]{1,64}$")
        self.assertTrue(is_getatt(target.get("Arn"), dest))
        self.assertTrue(is_getatt(target.get("RoleArn"), role))
        retry = target.get("RetryPolicy") or {}
        self.assertTrue(is_ref(retry.get("MaximumRetryAttempts"), "MaximumRetryAttempts"))
        self.assertTrue(is_ref(retry.get("MaximumEventAgeInSeconds"), "MaximumEventAgeInSeconds"))
        self.assertTrue(is_getatt((target.get("DeadLetterConfig") or {}).get("Arn"), queue))
        # trailhook takes the whole envelope; a transformer's values are not even JSON-escaped.
        for k in ("Input", "InputPath", "InputTransformer"):
            self.assertNotIn(k, target)

    def test_dead_letter_queue(self):
        queue, q = self.one_of_type("AWS::SQS::Queue")
        rule, _ = self.one_of_type("AWS::Events::Rule")
        self.assertIs(q.get("SqsManagedSseEnabled"), True)
        self.assertEqual(q.get("MessageRetentionPeriod"), SQS_MAX_RETENTION)
        self.assertFalse(q.get("FifoQueue", False), "EventBridge dead-letter queues are standard")
        self.assertNotIn("KmsMasterKeyId", q, "SSE-SQS, not a KMS key EventBridge cannot use")
        _, qp = self.one_of_type("AWS::SQS::QueuePolicy")
        self.assertEqual(qp.get("Queues"), [{"Ref": queue}])
        statements = as_list((qp.get("PolicyDocument") or {}).get("Statement"))
        self.assertTrue(statements)
        for s in statements:
            self.assertEqual(s.get("Effect"), "Allow")
            self.assertEqual(s.get("Principal"), {"Service": "events.amazonaws.com"})
            self.assertEqual(as_list(s.get("Action")), ["sqs:SendMessage"])
            self.assertTrue(all(is_getatt(r, queue) for r in as_list(s.get("Resource"))))
            cond = s.get("Condition") or {}
            source_arns = [v.get("aws:SourceArn") for op, v in cond.items()
                           if op in ("ArnEquals", "ArnLike", "StringEquals")]
            self.assertTrue(source_arns and all(is_getatt(a, rule) for a in source_arns),
                            "the queue takes messages from this rule only (aws:SourceArn)")

    def test_invoke_role(self):
        role, r = self.one_of_type("AWS::IAM::Role")
        dest, _ = self.one_of_type("AWS::Events::ApiDestination")
        trust = as_list((r.get("AssumeRolePolicyDocument") or {}).get("Statement"))
        self.assertTrue(trust)
        for s in trust:
            self.assertEqual(s.get("Effect"), "Allow")
            self.assertEqual(s.get("Principal"), {"Service": "events.amazonaws.com"})
            self.assertEqual(as_list(s.get("Action")), ["sts:AssumeRole"])
        self.assertNotIn("ManagedPolicyArns", r)
        statements = [s for p in r.get("Policies") or []
                      for s in as_list((p.get("PolicyDocument") or {}).get("Statement"))]
        self.assertTrue(statements)
        for s in statements:
            self.assertEqual(s.get("Effect"), "Allow")
            self.assertEqual(as_list(s.get("Action")), ["events:InvokeApiDestination"])
            resources = as_list(s.get("Resource"))
            self.assertTrue(resources)
            for res in resources:
                self.assertTrue(is_getatt(res, dest, ("Arn", "ArnForPolicy")),
                                "the role may invoke this API destination only, not %r" % res)

    def test_outputs(self):
        outputs = self.t.get("Outputs") or {}
        dest, _ = self.one_of_type("AWS::Events::ApiDestination")
        rule, _ = self.one_of_type("AWS::Events::Rule")
        queue, _ = self.one_of_type("AWS::SQS::Queue")
        self.assertTrue(is_getatt(outputs.get("ApiDestinationArn", {}).get("Value"), dest))
        self.assertTrue(is_getatt(outputs.get("RuleArn", {}).get("Value"), rule))
        url = outputs.get("DeadLetterQueueUrl", {}).get("Value")
        self.assertTrue(is_ref(url, queue) or is_getatt(url, queue, ("QueueUrl",)))


class MatcherTest(unittest.TestCase):
    """The matcher itself, on the documentation's examples."""

    def test_exact_nested_and_arrays(self):
        p = {"source": ["aws.ec2"], "detail": {"state": ["running", "stopped"]}}
        self.assertTrue(pattern_matches(p, {"source": "aws.ec2", "detail": {"state": "running"}}))
        self.assertFalse(pattern_matches(p, {"source": "aws.ec2", "detail": {"state": "pending"}}))
        self.assertFalse(pattern_matches(p, {"source": "aws.ec2"}))
        self.assertFalse(pattern_matches(p, {"source": "aws.s3", "detail": {"state": "running"}}))
        # An event array matches when an element does; case matters.
        self.assertTrue(pattern_matches({"resources": ["arn:b"]},
                                        {"resources": ["arn:a", "arn:b"]}))
        self.assertFalse(pattern_matches({"source": ["aws.ec2"]}, {"source": "AWS.EC2"}))
        self.assertTrue(pattern_matches({"x": [None]}, {"x": None}))
        self.assertFalse(pattern_matches({"x": [None]}, {}))
        self.assertTrue(pattern_matches({"x": [5]}, {"x": 5.0}))
        self.assertFalse(pattern_matches({"x": ["5"]}, {"x": 5}))
        self.assertFalse(pattern_matches({"x": [True]}, {"x": 1}))

    def test_operators(self):
        self.assertTrue(pattern_matches({"t": [{"prefix": "2017-10-02"}]},
                                        {"t": "2017-10-02T18:43:48Z"}))
        self.assertFalse(pattern_matches({"t": [{"prefix": "2017-10-02"}]}, {"t": "2017-10-03"}))
        self.assertTrue(pattern_matches({"s": [{"prefix": {"equals-ignore-case": "EventB"}}]},
                                        {"s": "eventbridge"}))
        self.assertTrue(pattern_matches({"f": [{"suffix": ".png"}]}, {"f": "a.png"}))
        self.assertTrue(pattern_matches({"s": [{"equals-ignore-case": "Run"}]}, {"s": "RUN"}))
        self.assertTrue(pattern_matches({"s": [{"anything-but": ["a", "b"]}]}, {"s": "c"}))
        self.assertFalse(pattern_matches({"s": [{"anything-but": ["a", "b"]}]}, {"s": "a"}))
        self.assertFalse(pattern_matches({"s": [{"anything-but": "a"}]}, {}))
        self.assertFalse(pattern_matches({"s": [{"anything-but": {"prefix": "in"}}]},
                                         {"s": "init"}))
        self.assertTrue(pattern_matches({"n": [{"numeric": [">", 0, "<=", 5]}]}, {"n": 5}))
        self.assertFalse(pattern_matches({"n": [{"numeric": [">", 0, "<=", 5]}]}, {"n": 6}))
        self.assertFalse(pattern_matches({"n": [{"numeric": [">", 0]}]}, {"n": "1"}))
        self.assertTrue(pattern_matches({"ip": [{"cidr": "10.0.0.0/24"}]}, {"ip": "10.0.0.7"}))
        self.assertFalse(pattern_matches({"ip": [{"cidr": "10.0.0.0/24"}]}, {"ip": "10.0.1.7"}))
        self.assertTrue(pattern_matches({"p": [{"wildcard": "dir/*.png"}]}, {"p": "dir/a.png"}))
        self.assertFalse(pattern_matches({"p": [{"wildcard": "dir/*.png"}]}, {"p": "dir/a.jpg"}))

    def test_exists(self):
        absent = {"detail": {"c-count": [{"exists": False}]}}
        self.assertTrue(pattern_matches(absent, {"detail": {"state": "x"}}))
        self.assertTrue(pattern_matches(absent, {}))
        self.assertTrue(pattern_matches(absent, {"detail": {"c-count": {"c1": 100}}}))  # not a leaf
        self.assertFalse(pattern_matches(absent, {"detail": {"c-count": 3}}))
        self.assertTrue(pattern_matches({"e": [{"exists": True}]}, {"e": None}))
        self.assertFalse(pattern_matches({"e": [{"exists": True}]}, {}))

    def test_or(self):
        p = {"source": ["aws.ec2"], "$or": [{"a": ["1"]}, {"b": ["2"]}]}
        self.assertTrue(pattern_matches(p, {"source": "aws.ec2", "b": "2"}))
        self.assertFalse(pattern_matches(p, {"source": "aws.ec2", "c": "3"}))
        self.assertFalse(pattern_matches(p, {"source": "aws.s3", "a": "1"}))
        top = {"$or": [{"source": ["aws.ec2"]}, {"detail-type": ["X"]}]}
        self.assertTrue(pattern_matches(top, {"detail-type": "X"}))

    def test_invalid_patterns_raise(self):
        for bad in ({"source": "aws.ec2"}, {"source": []}, {"$or": [{"a": ["1"]}]},
                    {"x": [{"regex": "a.*"}]}, {"x": [{"prefix": "a", "suffix": "b"}]}, {}):
            with self.assertRaises(PatternError, msg=repr(bad)):
                pattern_matches(bad, {"source": "aws.ec2", "x": "a"})


def ct_envelope(event_name, source="ec2.amazonaws.com", event_type="AwsApiCall", **detail):
    record = dict({"eventVersion": "1.08", "eventSource": source, "eventName": event_name,
                   "eventType": event_type, "awsRegion": "us-east-1",
                   "recipientAccountId": "123456789012", "eventTime": "2024-03-01T10:00:00Z"},
                  **detail)
    return envelope_for(record)


class PatternTest(unittest.TestCase):
    """The rule's pattern over hand-made events and every fixture."""

    maxDiff = None

    @classmethod
    def setUpClass(cls):
        t = load_template(TEMPLATE)
        rules = [r for r in (t.get("Resources") or {}).values()
                 if r.get("Type") == "AWS::Events::Rule"]
        if len(rules) != 1:
            raise AssertionError("want exactly one AWS::Events::Rule, have %d" % len(rules))
        cls.pattern = (rules[0].get("Properties") or {}).get("EventPattern")

    def selects(self, envelope):
        return pattern_matches(self.pattern, envelope)

    def test_pattern_is_plain_json(self):
        self.assertIsInstance(self.pattern, dict)
        for path, node in walk(self.pattern):
            self.assertIsNone(intrinsic(node), "intrinsic in the pattern at %s" % where(path))
            self.assertNotIsInstance(node, (set, tuple))
        json.dumps(self.pattern)

    def test_hand_made_events(self):
        wanted = [
            ct_envelope("ModifyImageAttribute"),
            ct_envelope("ResetImageAttribute"),
            # Failed calls go to trailhook too; the rule itself ignores them.
            ct_envelope("ModifyImageAttribute", errorCode="UnauthorizedOperation",
                        errorMessage="You are not authorized"),
            ct_envelope("ModifyImageAttribute", errorCode=""),
            ct_envelope("CreateAccountResult", "organizations.amazonaws.com", "AwsServiceEvent",
                        serviceEventDetails={"createAccountStatus": {
                            "state": "SUCCEEDED", "accountId": "111122223333"}}),
            # serviceEventDetails as a JSON string, as CloudTrail also writes it.
            ct_envelope("CreateAccountResult", "organizations.amazonaws.com", "AwsServiceEvent",
                        serviceEventDetails=json.dumps({"createAccountStatus": {
                            "state": "SUCCEEDED", "accountId": "111122223333"}})),
            ct_envelope("CreateAccountResult", "organizations.amazonaws.com", "AwsServiceEvent",
                        serviceEventDetails={"createAccountStatus": {"state": "FAILED"}}),
        ]
        for env in wanted:
            self.assertTrue(self.selects(env), "not selected: %s" % json.dumps(env)[:300])
        unwanted = [
            ct_envelope("ModifySnapshotAttribute"),
            ct_envelope("ModifyInstanceAttribute"),
            ct_envelope("CreateImage"),
            ct_envelope("DescribeImageAttribute"),
            ct_envelope("ModifyDBSnapshotAttribute", "rds.amazonaws.com"),
            ct_envelope("CreateAccount", "organizations.amazonaws.com"),
            ct_envelope("modifyimageattribute"),
            ct_envelope("ConsoleLogin", "signin.amazonaws.com", "AwsConsoleSignIn"),
            # EventBridge never emits these, but a hand-edited envelope must not slip through.
            dict(ct_envelope("ModifyImageAttribute"), source="aws.sqs"),
            dict(ct_envelope("ModifyImageAttribute"), **{"detail-type": "EC2 AMI State Change"}),
            {"version": "0", "source": "aws.ec2", "detail-type": "EC2 AMI State Change",
             "detail": {"ImageId": "ami-0123456789abcdef0", "State": "available"}},
        ]
        for env in unwanted:
            self.assertFalse(self.selects(env), "selected: %s" % json.dumps(env)[:300])

    def test_fixtures(self):
        started = time.monotonic()
        fx = fixtures()
        with open(VERDICTS_FILE) as f:
            verdicts = json.load(f)["files"]
        self.assertTrue(fx.items, "no events found under %s" % FIXTURES)

        # What EventBridge sends for each record (canonical) and, when the fixture is an
        # envelope, for the envelope as written.
        canonical = [self.selects(envelope_for(it.record)) for it in fx.items]
        as_given = [self.selects(it.given) if it.given is not None else None for it in fx.items]
        others = [self.selects(env) for _, env in fx.other_envelopes]

        def describe(i):
            it = fx.items[i]
            return "%s #%d %s/%s eventID=%s" % (it.file, it.index, it.record.get("eventSource"),
                                                it.record.get("eventName"),
                                                it.record.get("eventID"))

        # The corpus was read whole: at least as many records as VERDICTS.json counts.
        corpus_records = sum(1 for it in fx.items if it.file.startswith("corpus/"))
        verdict_records = sum(v["records"] - v["not_cloudtrail"] for v in verdicts.values())
        self.assertGreaterEqual(corpus_records, verdict_records)
        unparseable = {"corpus/" + n for n, v in verdicts.items() if v.get("unparseable")}
        self.assertEqual({n for n in fx.unparseable if n.startswith("corpus/")}, unparseable,
                         "corpus files that are not JSON")

        # Rule verdicts: VERDICTS.json, and trailhook eval on every record.
        rule_matches = set()
        for name, v in verdicts.items():
            if not v["match"]:
                continue
            items = fx.records_by_file.get("corpus/" + name, [])
            self.assertEqual(len(items), v["records"],
                             "%s: VERDICTS counts %d records, the walk found %d"
                             % (name, v["records"], len(items)))
            for idx in v["match"]:
                rule_matches.add(items[idx].pos)
        verdict_matches = len(rule_matches)
        eval_matches = eval_new_matches = None
        if os.access(BIN, os.X_OK):
            records = [it.record for it in fx.items]
            plain = trailhook_eval(records)
            with_new = trailhook_eval(records, new_accounts=True)
            self.assertLessEqual(plain, with_new)
            # Each VERDICTS match is a trailhook match too (the walk and the verdicts agree).
            self.assertLessEqual(rule_matches, plain | with_new)
            eval_matches, eval_new_matches = len(plain), len(with_new)
            rule_matches |= plain | with_new
        else:
            sys.stderr.write("\n  %s not found: trailhook eval cross-check skipped\n" % BIN)
        self.assertGreaterEqual(len(rule_matches), 3, "the fixtures hold alerts; none were found")

        lost = []
        for i in sorted(rule_matches):
            if not canonical[i] or as_given[i] is False:
                lost.append(describe(i))
        self.assertEqual(lost, [], "(a) alerts the pattern drops")

        ami, ami_lost, inconsistent = 0, [], []
        for i, it in enumerate(fx.items):
            key = (it.record.get("eventSource"), it.record.get("eventName"))
            if key not in WANTED:
                continue
            if not canonical[i]:
                ami_lost.append(describe(i))
            if it.given is not None and not as_given[i]:
                env_key = (it.given.get("source"), it.given.get("detail-type"))
                if env_key == (event_source(it.record), detail_type(it.record)):
                    ami_lost.append(describe(i) + " (as its envelope is written)")
                else:
                    inconsistent.append(describe(i))  # hand-edited: EventBridge never sends it
            ami += key[1] in AMI_EVENTS
        self.assertEqual(ami_lost, [], "(a) AMI events or (b) CreateAccountResult dropped")
        created = [i for i, it in enumerate(fx.items)
                   if it.record.get("eventName") == "CreateAccountResult"]
        self.assertTrue(created, "no CreateAccountResult among the fixtures")
        self.assertTrue(all(canonical[i] for i in created), "(b) CreateAccountResult dropped")

        extra = []
        for i, it in enumerate(fx.items):
            if canonical[i] or as_given[i]:
                key = (it.record.get("eventSource"), it.record.get("eventName"))
                if key not in WANTED:
                    extra.append(describe(i))
        for (name, env), sel in zip(fx.other_envelopes, others):
            if sel:
                extra.append("%s: non-CloudTrail envelope %s" % (name, env.get("detail-type")))
        self.assertEqual(extra, [], "(c) events sent that trailhook does not need")

        selected = collections.Counter(
            it.record.get("eventName") for i, it in enumerate(fx.items) if canonical[i])
        total = collections.Counter(
            it.record.get("eventName") for i, it in enumerate(fx.items)
            if it.record.get("eventName") in selected)
        lines = [
            "",
            "  files read: %d (%d not JSON); CloudTrail records: %d (%d from the corpus, "
            "VERDICTS.json counts %d); other envelopes: %d"
            % (len(fx.files), len(fx.unparseable), len(fx.items), corpus_records,
               verdict_records, len(fx.other_envelopes)),
            "  selected: %d / %d records, 0 / %d other envelopes"
            % (sum(canonical), len(fx.items), len(fx.other_envelopes)),
        ]
        for name in sorted(total):
            lines.append("    %-22s %d / %d" % (name, selected[name], total[name]))
        near_miss = re.compile(r"(Modify|Reset)\w*Attribute$|Image")
        near = collections.Counter(
            it.record["eventName"] for i, it in enumerate(fx.items)
            if not canonical[i] and near_miss.search(it.record["eventName"]))
        lines.append("  near misses left out: " + ", ".join(
            "%s %d" % kv for kv in sorted(near.items())))
        lines.append("  rule matches: %d (VERDICTS.json %d, trailhook eval %s, with every "
                     "shared-to account new %s), all selected"
                     % (len(rule_matches), verdict_matches, eval_matches, eval_new_matches))
        lines.append("  AMI events selected: %d / %d; CreateAccountResult: %d / %d"
                     % (ami, ami, len(created), len(created)))
        if inconsistent:
            lines.append("  envelopes contradicting their detail (hand-edited, judged as "
                         "EventBridge would send the record): %d" % len(inconsistent))
            lines += ["    " + d for d in inconsistent]
        lines.append("  %.1f s" % (time.monotonic() - started))
        sys.stderr.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    unittest.main()
