"""Benchmark inputs built from the public CloudTrail corpus: the ingest request mix and the
`{"Records":[…]}` log files for `trailhook eval`. Everything is written under a temporary
directory the caller owns; nothing is written into the repository."""

import gzip
import json
import os
import random
import uuid

# The corpus ships with the repository; a checkout without fixtures can use the shared copy.
CORPUS_CANDIDATES = ("tests/fixtures/corpus", "../shared/corpus")

# Placeholder the wrk script replaces with a fresh 12-character sequence on every request that
# carries it, so each make-public request opens a new alert rather than counting as a retry.
SEQ_PLACEHOLDER = "@SEQ@"

DETAIL_TYPES = {
    "AwsApiCall": "AWS API Call via CloudTrail",
    "AwsConsoleSignIn": "AWS Console Sign In via CloudTrail",
    "AwsConsoleAction": "AWS Console Action via CloudTrail",
    "AwsServiceEvent": "AWS Service Event via CloudTrail",
}


def find_corpus(repo_dir):
    for rel in CORPUS_CANDIDATES:
        path = os.path.normpath(os.path.join(repo_dir, rel))
        if os.path.isdir(os.path.join(path, "events")):
            return path
    raise RuntimeError("no CloudTrail corpus under %s" % " or ".join(CORPUS_CANDIDATES))


# ---- reading the corpus ---------------------------------------------------------------------

def read_documents(path):
    """The JSON documents of one corpus file: one document, or one per line (JSON lines)."""
    with open(path, "rb") as f:
        raw = f.read()
    if path.endswith(".gz"):
        raw = gzip.decompress(raw)
    try:
        return [json.loads(raw)]
    except ValueError:
        pass
    try:
        return [json.loads(line) for line in raw.splitlines() if line.strip()]
    except ValueError:
        return []  # the corpus holds one file that is not JSON at all, on purpose


def is_record(value):
    return (isinstance(value, dict) and isinstance(value.get("eventName"), str)
            and isinstance(value.get("eventSource"), str))


def records_in(value):
    """CloudTrail records anywhere in a document: log files, envelopes, arrays and the vendor
    test-case wrappers all hold them at some depth; a record is never looked into."""
    if is_record(value):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from records_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from records_in(item)


def load_records(corpus_dir):
    """Every distinct record of the corpus, compact-serialised, in a stable order."""
    seen = set()
    records = []
    events_dir = os.path.join(corpus_dir, "events")
    for root, dirs, files in os.walk(events_dir):
        dirs.sort()
        for name in sorted(files):
            for doc in read_documents(os.path.join(root, name)):
                for rec in records_in(doc):
                    text = compact(rec)
                    if text not in seen:
                        seen.add(text)
                        records.append(rec)
    if not records:
        raise RuntimeError("no CloudTrail records found under %s" % events_dir)
    return records


def compact(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# ---- the rule, for choosing inputs ----------------------------------------------------------

def makes_image_public(rec):
    """DESIGN.md section 1 without the new-account branch: a successful ModifyImageAttribute
    adding launch permission group "all"."""
    if rec.get("errorCode") or rec.get("errorMessage"):
        return False
    if rec.get("eventName") != "ModifyImageAttribute":
        return False
    params = rec.get("requestParameters") or {}
    items = (((params.get("launchPermission") or {}).get("add") or {}).get("items")) or []
    return isinstance(items, list) and any(
        isinstance(i, dict) and i.get("group") == "all" for i in items)


# ---- the ingest request mix -----------------------------------------------------------------

def envelope(rec, rng):
    """An EventBridge envelope around one record, as an API destination sends it."""
    identity = rec.get("userIdentity") if isinstance(rec.get("userIdentity"), dict) else {}
    return {
        "version": "0",
        "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "detail-type": DETAIL_TYPES.get(rec.get("eventType"), DETAIL_TYPES["AwsApiCall"]),
        "source": "aws." + rec["eventSource"].split(".")[0],
        "account": rec.get("recipientAccountId") or identity.get("accountId") or "",
        "time": rec.get("eventTime", ""),
        "region": rec.get("awsRegion", ""),
        "resources": [],
        "detail": rec,
    }


def alert_template(rec):
    """A make-public record whose eventID and imageId the load generator fills in per request.
    The sequence is 12 characters: the last group of a UUID, and an AMI ID of 17 hex digits."""
    rec = json.loads(json.dumps(rec))
    rec["eventID"] = "b3ac4f0e-7d1c-4e55-9a0b-" + SEQ_PLACEHOLDER
    rec["requestParameters"]["imageId"] = "ami-00000" + SEQ_PLACEHOLDER
    return rec


def build_mix(records, count, match_share, seed=1):
    """`count` request bodies: distinct real records, `match_share` of them make-public ones
    (templates, fresh IDs per request), spread evenly through the cycle. Returns the bodies and
    how many are templates."""
    rng = random.Random(seed)
    public = [r for r in records if makes_image_public(r)]
    others = [r for r in records if not makes_image_public(r)]
    if not public:
        raise RuntimeError("the corpus holds no make-public ModifyImageAttribute event")
    n_match = max(1, round(count * match_share))
    chosen = rng.sample(others, min(count - n_match, len(others)))
    bodies = [compact(envelope(r, rng)) for r in chosen]
    step = max(1, len(bodies) // n_match)
    for i in range(n_match):
        body = compact(envelope(alert_template(public[i % len(public)]), rng))
        bodies.insert(i * (step + 1), body)
    return bodies, n_match


def write_mix(path, bodies):
    with open(path, "w", encoding="utf-8") as f:
        for body in bodies:
            f.write(body + "\n")


# ---- CloudTrail log files for eval ----------------------------------------------------------

def write_records_file(path, records, min_bytes):
    """A `{"Records":[…]}` file of at least `min_bytes`, the corpus records repeated in order.
    Returns (bytes written, number of records)."""
    texts = [compact(r).encode("utf-8") for r in records]
    written = 0
    count = 0
    with open(path, "wb") as f:
        f.write(b'{"Records":[')
        written += 12
        while written < min_bytes:
            text = texts[count % len(texts)]
            if count:
                f.write(b",")
                written += 1
            f.write(text)
            written += len(text)
            count += 1
        f.write(b"]}\n")
        written += 3
    return written, count


def gzip_file(src, dst):
    with open(src, "rb") as fin, gzip.open(dst, "wb", compresslevel=6) as fout:
        while True:
            chunk = fin.read(1 << 20)
            if not chunk:
                break
            fout.write(chunk)


def body_sizes(bodies):
    sizes = sorted(len(b.encode("utf-8")) for b in bodies)
    return {"median": sizes[len(sizes) // 2], "mean": sum(sizes) // len(sizes),
            "max": sizes[-1]}
