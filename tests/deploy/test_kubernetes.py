"""Checks of deploy/kubernetes/: the manifests agree with each other and with the binary.

Two renderings are checked the same way: deploy/kubernetes (the base, one replica on sqlite) and
deploy/kubernetes/redis (the overlay for the Redis state backend, two replicas). The overlay's
patches are applied here in Python, exactly: JSON 6902 patches (add, remove, replace, test, on
RFC 6901 paths) and `$patch: delete` of a whole resource; any other kind of patch fails the check
(write it as JSON 6902). When kubectl is on PATH, `kubectl kustomize` renders both too, and its
overlay must agree with the Python rendering.

Python 3 with PyYAML; no cluster, kubectl or kustomize needed (a `kubectl kustomize` render is
checked too when kubectl is on PATH). ctest runs it from tests/deploy with:
  TRAILHOOK_BIN   the built trailhook binary   (default TH_SOURCE_DIR/build/trailhook)
  TH_SOURCE_DIR   the source tree              (default: two levels above this file)
By hand:
  cd tests/deploy && TRAILHOOK_BIN=../../build/trailhook TH_SOURCE_DIR=../.. \
      python3 -m unittest -v test_kubernetes

The static checks read the kustomization's resources as written, following directories (a
base) and applying patches (kustomize also adds the namespace, metadata labels and the image tag,
none of which the checks depend on). The last check starts the real binary with the
Deployment's environment, remapped to this machine: listen ports to free loopback ports, *_FILE
secrets to temp files filled from secret.example.yaml, the state dir to a temp dir, the image's
TRAILHOOK_CONFIG to config/trailhook.yml, and the Redis URL (redis backend) to a private
redis-server (tests/integration/redis_server.py) -- or, without redis-server on this machine, the
backend to sqlite.
"""

import base64
import copy
import json
import math
import os
import posixpath
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

import yaml

from deploy_common import free_port, http_request, terminate

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from redis_server import RedisServer, redis_server_path  # noqa: E402 (stdlib only)

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("TH_SOURCE_DIR") or os.path.normpath(os.path.join(HERE, "..", ".."))
BIN = os.environ.get("TRAILHOOK_BIN") or os.path.join(SOURCE_DIR, "build", "trailhook")
K8S_DIR = os.path.join(SOURCE_DIR, "deploy", "kubernetes")
REDIS_OVERLAY_DIR = os.path.join(K8S_DIR, "redis")
CONFIG_FILE = os.path.join(SOURCE_DIR, "config", "trailhook.yml")
EXAMPLE_SECRET = "secret.example.yaml"

# What the container image sets (Dockerfile ENV); the Deployment's env overrides it. The image
# ships config/trailhook.yml as /etc/trailhook/trailhook.yml.
IMAGE_CONFIG_PATH = "/etc/trailhook/trailhook.yml"
IMAGE_ENV = {
    "TRAILHOOK_CONFIG": IMAGE_CONFIG_PATH,
    "TRAILHOOK_LISTEN": "0.0.0.0:8080",
    "TRAILHOOK_STATE_DIR": "/var/lib/trailhook",
}
IMAGE_UID = 10001
IMAGE_GID = 10001
DEFAULT_DRAIN_GRACE = 10  # used only when config/trailhook.yml does not say
DRAIN_MARGIN_SECONDS = 5  # requests in flight and closing the store, on top of the drain grace
HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "WARNING: ThreadSanitizer")


# ---- loading ---------------------------------------------------------------------------------

def load_yaml_docs(path):
    """Every non-empty document of a (multi-document) YAML file."""
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


class PatchError(Exception):
    pass


def _pointer(path):
    """The reference tokens of an RFC 6901 JSON pointer."""
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError("path %r does not start with /" % path)
    return [t.replace("~1", "/").replace("~0", "~") for t in path[1:].split("/")]


def _index(container, token, path, for_add=False):
    if token == "-" and for_add:
        return len(container)
    if not re.fullmatch(r"0|[1-9][0-9]*", token):
        raise PatchError("%s: %r is not a list index" % (path, token))
    i = int(token)
    if i > len(container) or (i == len(container) and not for_add):
        raise PatchError("%s: index %d is past the list's end (%d entries)"
                         % (path, i, len(container)))
    return i


def json_patch(doc, ops):
    """@return a copy of @p doc with the RFC 6902 operations @p ops applied (add, remove,
    replace, test; move and copy too). Raises PatchError as kustomize would fail the build."""
    doc = copy.deepcopy(doc)
    if not isinstance(ops, list):
        raise PatchError("a JSON 6902 patch is a list of operations")
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError("not an operation: %r" % (op,))
        kind, path = op["op"], op["path"]
        if kind in ("add", "replace", "test") and "value" not in op:
            raise PatchError("%s %s without a value" % (kind, path))
        if kind in ("move", "copy"):
            value = copy.deepcopy(_get(doc, op["from"]))
            if kind == "move":
                doc = _remove(doc, op["from"])
            doc = _add(doc, path, value)
        elif kind == "add":
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif kind == "remove":
            doc = _remove(doc, path)
        elif kind == "replace":
            _get(doc, path)  # must exist
            doc = _remove(doc, path)
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif kind == "test":
            if _get(doc, path) != op["value"]:
                raise PatchError("test %s: %r is not %r" % (path, _get(doc, path), op["value"]))
        else:
            raise PatchError("unknown operation %r" % kind)
    return doc


def _get(doc, path):
    cur = doc
    for tok in _pointer(path):
        if isinstance(cur, dict):
            if tok not in cur:
                raise PatchError("%s: no member %r" % (path, tok))
            cur = cur[tok]
        elif isinstance(cur, list):
            cur = cur[_index(cur, tok, path)]
        else:
            raise PatchError("%s: %r is neither a mapping nor a list" % (path, tok))
    return cur


def _add(doc, path, value):
    toks = _pointer(path)
    if not toks:
        return value
    parent = _get(doc, "".join("/" + t.replace("~", "~0").replace("/", "~1")
                               for t in toks[:-1]))
    last = toks[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, path, for_add=True), value)
    else:
        raise PatchError("%s: the parent is neither a mapping nor a list" % path)
    return doc


def _remove(doc, path):
    toks = _pointer(path)
    if not toks:
        raise PatchError("cannot remove the whole document")
    parent = _get(doc, "".join("/" + t.replace("~", "~0").replace("/", "~1")
                               for t in toks[:-1]))
    last = toks[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError("%s: no member %r to remove" % (path, last))
        del parent[last]
    elif isinstance(parent, list):
        del parent[_index(parent, last, path)]
    else:
        raise PatchError("%s: the parent is neither a mapping nor a list" % path)
    return doc


def _group_version(api_version):
    return tuple(api_version.split("/", 1)) if "/" in api_version else ("", api_version)


def target_matches(target, doc):
    """kustomize's patch target: kind, name, namespace, group and version (each optional)."""
    if not isinstance(doc, dict):
        return False
    meta = doc.get("metadata") or {}
    group, version = _group_version(str(doc.get("apiVersion", "")))
    for key, actual in (("kind", doc.get("kind")), ("name", meta.get("name")),
                        ("namespace", meta.get("namespace")), ("group", group),
                        ("version", version)):
        want = target.get(key)
        if want is not None and (want != actual if key != "name" else
                                 not re.fullmatch(want, actual or "")):
            return False
    for key in ("labelSelector", "annotationSelector"):
        if target.get(key):
            raise PatchError("patch target %s is not supported by this test" % key)
    return True


class Bundle:
    """A kustomization rendered in Python: the manifests its resources name (files, and
    directories holding a kustomization, followed recursively as kustomize does), with its
    patches applied. self.kustomization merges the bases' keys under this one's (namespace and
    images are what the checks use); self.resources lists the files, relative to this
    directory."""

    def __init__(self, k8s_dir):
        self.dir = k8s_dir
        self.errors = []
        self.kustomization = {}
        self.resources = []  # files, relative to k8s_dir
        self.docs = []  # (file, doc)
        self.patched = []  # (target description, number of documents patched)
        kpath = os.path.join(k8s_dir, "kustomization.yaml")
        if not os.path.isfile(kpath):
            self.errors.append("%s does not exist" % kpath)
            return
        try:
            docs = load_yaml_docs(kpath)
        except yaml.YAMLError as e:
            self.errors.append("%s does not parse: %s" % (kpath, e))
            return
        if len(docs) != 1 or not isinstance(docs[0], dict):
            self.errors.append("%s must be one YAML mapping" % kpath)
            return
        own = docs[0]
        merged = {}
        for res in own.get("resources") or []:
            path = os.path.normpath(os.path.join(k8s_dir, res))
            if os.path.isdir(path):
                base = Bundle(path)
                self.errors.extend("%s: %s" % (res, e) for e in base.errors)
                for f, d in base.docs:
                    self.docs.append((os.path.relpath(os.path.join(path, f), k8s_dir), d))
                self.resources.extend(os.path.relpath(os.path.join(path, f), k8s_dir)
                                      for f in base.resources)
                for k, v in base.kustomization.items():
                    if k == "images":
                        merged.setdefault("images", []).extend(v)
                    elif k not in ("resources", "patches", "patchesJson6902"):
                        merged[k] = v
                continue
            if not os.path.isfile(path):
                self.errors.append("%s lists resource %r, but %s is neither a file nor a "
                                   "directory" % (kpath, res, path))
                continue
            self.resources.append(res)
            try:
                for d in load_yaml_docs(path):
                    self.docs.append((res, d))
            except yaml.YAMLError as e:
                self.errors.append("%s does not parse as YAML: %s" % (res, e))
        for k, v in own.items():
            if k == "images":
                merged.setdefault("images", []).extend(v or [])
            else:
                merged[k] = v
        self.kustomization = merged
        self.kustomization["resources"] = list(own.get("resources") or [])
        for key in ("patchesStrategicMerge", "replicas", "components"):
            if own.get(key):
                self.errors.append("%s uses `%s`, which this test does not render; use "
                                   "`patches` with JSON 6902 (or extend the test)" % (kpath, key))
        patches = list(own.get("patches") or []) + list(own.get("patchesJson6902") or [])
        for p in patches:
            try:
                self.apply_patch(p)
            except (PatchError, OSError, yaml.YAMLError) as e:
                self.errors.append("%s: patch %s: %s" % (kpath, p.get("path") or "(inline)", e))

    def apply_patch(self, p):
        if "path" in p:
            path = os.path.normpath(os.path.join(self.dir, p["path"]))
            with open(path) as f:
                text = f.read()
        else:
            text = p.get("patch")
            if text is None:
                raise PatchError("neither path nor patch")
        body = yaml.safe_load(text)
        target = p.get("target")
        if isinstance(body, list):
            if not target:
                raise PatchError("a JSON 6902 patch needs a target")
            hits = 0
            for i, (f, d) in enumerate(self.docs):
                if target_matches(target, d):
                    self.docs[i] = (f, json_patch(d, body))
                    hits += 1
            if hits == 0:
                raise PatchError("target %r matches no resource" % target)
            self.patched.append((target, hits))
            return
        if isinstance(body, dict) and body.get("$patch") == "delete":
            want = {"kind": body.get("kind"), "name": (body.get("metadata") or {}).get("name")}
            keep = [(f, d) for f, d in self.docs
                    if not (d.get("kind") == want["kind"]
                            and (d.get("metadata") or {}).get("name") == want["name"])]
            if len(keep) == len(self.docs):
                raise PatchError("$patch: delete of %s %s matches no resource"
                                 % (want["kind"], want["name"]))
            self.docs = keep
            # A file whose every document was deleted is no longer a resource of this rendering.
            self.resources = [r for r in self.resources if any(f == r for f, _ in keep)]
            self.patched.append((want, "deleted"))
            return
        raise PatchError("only JSON 6902 patches and `$patch: delete` are rendered by this test; "
                         "write this strategic-merge patch as JSON 6902")

    def of_kind(self, kind):
        return [d for _, d in self.docs if isinstance(d, dict) and d.get("kind") == kind]

    def named(self, kind, name):
        for d in self.of_kind(kind):
            if (d.get("metadata") or {}).get("name") == name:
                return d
        return None


_BUNDLES = {}


def bundle(k8s_dir=K8S_DIR):
    if k8s_dir not in _BUNDLES:
        _BUNDLES[k8s_dir] = Bundle(k8s_dir)
    return _BUNDLES[k8s_dir]


def example_secret():
    """The Secret of secret.example.yaml, with its values decoded: (name, {key: value})."""
    path = os.path.join(K8S_DIR, EXAMPLE_SECRET)
    docs = [d for d in load_yaml_docs(path) if isinstance(d, dict) and d.get("kind") == "Secret"]
    if len(docs) != 1:
        raise AssertionError("%s must hold exactly one Secret, found %d" % (path, len(docs)))
    s = docs[0]
    values = {}
    for k, v in (s.get("data") or {}).items():
        values[k] = base64.b64decode(v).decode("utf-8")
    for k, v in (s.get("stringData") or {}).items():
        values[k] = str(v)
    return s["metadata"]["name"], values


def drain_grace_default():
    """drain_grace_seconds of config/trailhook.yml (the file the image ships)."""
    try:
        with open(CONFIG_FILE) as f:
            cfg = yaml.safe_load(f) or {}
        return int(cfg.get("drain_grace_seconds", DEFAULT_DRAIN_GRACE))
    except (OSError, yaml.YAMLError, ValueError, TypeError):
        return DEFAULT_DRAIN_GRACE


# ---- small helpers ---------------------------------------------------------------------------

def labels_match(selector_labels, labels):
    """True when every key/value of @p selector_labels is in @p labels (matchLabels semantics)."""
    labels = labels or {}
    return bool(selector_labels) and all(labels.get(k) == v for k, v in selector_labels.items())


def path_under(path, mount_path):
    path = posixpath.normpath(path)
    mount_path = posixpath.normpath(mount_path)
    return path == mount_path or path.startswith(mount_path.rstrip("/") + "/")


def parse_quantity(q):
    """A Kubernetes quantity ("50m", "1", "64Mi", "1Gi") as a float in base units."""
    q = str(q).strip()
    suffixes = {"Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "k": 1e3, "M": 1e6,
                "G": 1e9, "T": 1e12, "m": 1e-3}
    for suf, mult in sorted(suffixes.items(), key=lambda kv: -len(kv[0])):
        if q.endswith(suf):
            return float(q[:-len(suf)]) * mult
    return float(q)


def split_host_port(addr):
    m = re.fullmatch(r"\[([^\]]+)\]:(\d+)|([^:]+):(\d+)", addr)
    if not m:
        raise ValueError("not host:port: %r" % addr)
    if m.group(1) is not None:
        return m.group(1), int(m.group(2))
    return m.group(3), int(m.group(4))


def service_link_env(services):
    """The variables the kubelet injects for @p services when enableServiceLinks is on."""
    env = {}
    for i, svc in enumerate(services):
        name = svc["metadata"]["name"].upper().replace("-", "_")
        ip = "10.96.0.%d" % (10 + i)
        ports = (svc.get("spec") or {}).get("ports") or []
        if not ports:
            continue
        first = ports[0]
        env[name + "_SERVICE_HOST"] = ip
        env[name + "_SERVICE_PORT"] = str(first["port"])
        env[name + "_PORT"] = "%s://%s:%s" % (first.get("protocol", "TCP").lower(), ip,
                                             first["port"])
        for p in ports:
            proto = p.get("protocol", "TCP")
            if p.get("name"):
                env["%s_SERVICE_PORT_%s" % (name, p["name"].upper().replace("-", "_"))] = \
                    str(p["port"])
            base = "%s_PORT_%s_%s" % (name, p["port"], proto)
            env[base] = "%s://%s:%s" % (proto.lower(), ip, p["port"])
            env[base + "_PROTO"] = proto.lower()
            env[base + "_PORT"] = str(p["port"])
            env[base + "_ADDR"] = ip
    return env




# ---- the static checks -----------------------------------------------------------------------

class ManifestLookups:
    """Lookups into bundle() for a TestCase; each fails the test with a clear message."""

    longMessage = False  # the messages below say what is wrong; no dumps of whole mappings
    BUNDLE_DIR = K8S_DIR  # which kustomization the checks read

    def setUp(self):
        self.b = bundle(self.BUNDLE_DIR)
        if self.b.errors:
            self.fail("%s cannot be loaded:\n  %s" % (os.path.relpath(self.BUNDLE_DIR, SOURCE_DIR),
                                                       "\n  ".join(self.b.errors)))

    def one(self, kind):
        found = self.b.of_kind(kind)
        self.assertEqual(len(found), 1, "expected exactly one %s among the kustomization's "
                         "resources, found %d" % (kind, len(found)))
        return found[0]

    def deployment(self):
        return self.one("Deployment")

    def pod_spec(self):
        return self.deployment()["spec"]["template"]["spec"]

    def container(self):
        containers = self.pod_spec().get("containers") or []
        self.assertEqual(len(containers), 1, "the Deployment should run exactly one container "
                         "(trailhook), found %d" % len(containers))
        return containers[0]

    def env(self):
        """The effective environment: the image's ENV, then envFrom ConfigMaps, then env."""
        out = dict(IMAGE_ENV)
        c = self.container()
        for src in c.get("envFrom") or []:
            ref = src.get("configMapRef")
            self.assertIsNotNone(ref, "envFrom %r: only configMapRef to a ConfigMap in the "
                                 "kustomization can be checked" % src)
            cm = self.b.named("ConfigMap", ref.get("name"))
            self.assertIsNotNone(cm, "envFrom names ConfigMap %r, which is not among the "
                                 "kustomization's resources" % ref.get("name"))
            for k, v in (cm.get("data") or {}).items():
                out[src.get("prefix", "") + k] = str(v)
        for e in c.get("env") or []:
            self.assertIn("value", e, "env %s uses valueFrom; this test can only follow plain "
                          "values (extend it)" % e.get("name"))
            out[e["name"]] = str(e["value"])
        return out

    def backend(self):
        return self.env().get("TRAILHOOK_STATE_BACKEND", "sqlite")

    def container_port(self, ref):
        """The containerPort a probe/Service port (name or number) refers to, or None."""
        for p in self.container().get("ports") or []:
            if ref == p.get("name") or ref == p.get("containerPort") or \
                    str(ref) == str(p.get("containerPort")):
                return p["containerPort"]
        return None

    def service(self):
        return self.one("Service")

    def volumes(self):
        return {v["name"]: v for v in self.pod_spec().get("volumes") or []}

    def mounts(self):
        return self.container().get("volumeMounts") or []

    def secret_mounts(self):
        """(mount, secret volume) for every mounted secret volume."""
        vols = self.volumes()
        return [(m, vols[m["name"]]) for m in self.mounts()
                if m.get("name") in vols and "secret" in vols[m["name"]]]

    def http_probe(self, probe_name):
        probe = self.container().get(probe_name)
        self.assertIsNotNone(probe, "the container has no %s" % probe_name)
        get = probe.get("httpGet")
        self.assertIsNotNone(get, "%s should be an httpGet probe" % probe_name)
        return probe, get

    def admin_container_port(self):
        env = self.env()
        self.assertIn("TRAILHOOK_ADMIN_LISTEN", env, "TRAILHOOK_ADMIN_LISTEN is not set: "
                      "metrics and probes need their own port (admin, 9090)")
        return split_host_port(env["TRAILHOOK_ADMIN_LISTEN"])[1]


class KubernetesManifests(ManifestLookups, unittest.TestCase):
    """The manifests, read as YAML."""

    # -- files and shape --

    def test_resources_exist_and_parse(self):
        self.assertTrue(self.b.resources, "kustomization.yaml lists no resources")
        for res in self.b.resources:
            self.assertTrue(any(f == res for f, _ in self.b.docs),
                            "resource %s holds no YAML document" % res)

    def test_every_manifest_has_api_version_kind_name(self):
        example = [(EXAMPLE_SECRET, d)
                   for d in load_yaml_docs(os.path.join(K8S_DIR, EXAMPLE_SECRET))]
        for f, d in self.b.docs + example:
            self.assertIsInstance(d, dict, "%s: a document is not a mapping" % f)
            for key in ("apiVersion", "kind"):
                self.assertTrue(d.get(key), "%s: a document has no %s" % (f, key))
            self.assertTrue((d.get("metadata") or {}).get("name"),
                            "%s: %s has no metadata.name" % (f, d.get("kind")))

    def test_kustomization_namespace_and_image(self):
        k = self.b.kustomization
        self.assertEqual(k.get("namespace"), "trailhook", "kustomization.yaml should set "
                         "namespace: trailhook")
        for f, d in self.b.docs:
            ns = (d.get("metadata") or {}).get("namespace")
            self.assertIn(ns, (None, k.get("namespace")),
                          "%s: %s %s sets namespace %r, not the kustomization's"
                          % (f, d.get("kind"), d["metadata"]["name"], ns))
        image = self.container().get("image", "")
        name = re.sub(r"(@sha256:[0-9a-f]+|:[\w][\w.-]*)$", "", image)
        names = [i.get("name") for i in k.get("images") or []]
        self.assertIn(name, names, "kustomization.yaml `images` has no entry for the container "
                      "image %r, so users cannot retag it with `kustomize edit set image`" % name)

    def test_example_secret_is_not_applied(self):
        name, values = example_secret()
        self.assertNotIn(EXAMPLE_SECRET, self.b.resources,
                         "%s is in the kustomization's resources: `kubectl apply -k` would "
                         "ship its placeholder credentials" % EXAMPLE_SECRET)
        self.assertIsNone(self.b.named("Secret", name), "a Secret named %r is among the "
                          "kustomization's resources; it should be created by the user" % name)
        for key in ("api_keys", "slack_webhook_url", "pagerduty_routing_key"):
            self.assertIn(key, values, "%s should show the key %r" % (EXAMPLE_SECRET, key))
            self.assertIn("example", values[key].lower(),
                          "%s: %r should be an obvious placeholder (contain EXAMPLE)"
                          % (EXAMPLE_SECRET, key))

    # -- selectors and ports --

    def test_deployment_selector_matches_pod_labels(self):
        dep = self.deployment()
        sel = (dep["spec"].get("selector") or {}).get("matchLabels")
        labels = dep["spec"]["template"]["metadata"].get("labels")
        self.assertTrue(labels_match(sel, labels), "Deployment selector %r does not match its "
                        "pod template labels %r" % (sel, labels))
        self.assertEqual((labels or {}).get("app.kubernetes.io/name"), "trailhook",
                         "pod template should carry app.kubernetes.io/name: trailhook")

    def test_service_selects_pods_and_ports_resolve(self):
        svc = self.service()
        labels = self.deployment()["spec"]["template"]["metadata"].get("labels")
        sel = svc["spec"].get("selector")
        self.assertTrue(labels_match(sel, labels), "Service selector %r does not match the pod "
                        "template labels %r" % (sel, labels))
        self.assertIn(svc["spec"].get("type", "ClusterIP"), ("ClusterIP",),
                      "the Service should be ClusterIP (an ingress/load balancer fronts it)")
        ports = {p.get("name"): p for p in svc["spec"].get("ports") or []}
        for name in ("http", "admin"):
            self.assertIn(name, ports, "the Service has no port named %r" % name)
        for name, p in ports.items():
            target = p.get("targetPort", p.get("port"))
            self.assertIsNotNone(self.container_port(target), "Service port %s targets %r, "
                                 "which is no container port name or number" % (name, target))
        env = self.env()
        self.assertEqual(self.container_port(ports["http"].get("targetPort")),
                         split_host_port(env["TRAILHOOK_LISTEN"])[1],
                         "Service port http does not reach TRAILHOOK_LISTEN's port")
        self.assertEqual(self.container_port(ports["admin"].get("targetPort")),
                         self.admin_container_port(),
                         "Service port admin does not reach TRAILHOOK_ADMIN_LISTEN's port")

    def test_container_ports_match_listeners(self):
        env = self.env()
        declared = {p.get("name"): p.get("containerPort")
                    for p in self.container().get("ports") or []}
        self.assertEqual(declared.get("http"), split_host_port(env["TRAILHOOK_LISTEN"])[1],
                         "container port http should be TRAILHOOK_LISTEN's port")
        self.assertEqual(declared.get("admin"), self.admin_container_port(),
                         "container port admin should be TRAILHOOK_ADMIN_LISTEN's port")
        for var in ("TRAILHOOK_LISTEN", "TRAILHOOK_ADMIN_LISTEN"):
            host = split_host_port(env[var])[0]
            self.assertNotIn(host, ("127.0.0.1", "localhost", "::1"), "%s=%s listens on "
                             "loopback only: neither the kubelet nor the Service can reach it"
                             % (var, env[var]))

    def test_probes(self):
        admin = self.admin_container_port()
        for name, path in (("livenessProbe", HEALTH_PATH), ("readinessProbe", READY_PATH)):
            _, get = self.http_probe(name)
            self.assertEqual(get.get("path"), path, "%s should GET %s, not %r"
                             % (name, path, get.get("path")))
            port = self.container_port(get.get("port"))
            self.assertIsNotNone(port, "%s port %r is no declared container port name or "
                                 "number" % (name, get.get("port")))
            self.assertEqual(port, admin, "%s should use the admin port (%d), not %r"
                             % (name, admin, get.get("port")))
        startup = self.container().get("startupProbe")
        if startup is not None:
            get = startup.get("httpGet") or {}
            self.assertIn(get.get("path"), (HEALTH_PATH,), "startupProbe should GET /healthz "
                          "(/readyz may fail on a busy pod and kill it)")
            self.assertIsNotNone(self.container_port(get.get("port")),
                                 "startupProbe port %r is not declared" % get.get("port"))

    def test_service_monitor_selects_service(self):
        sm = self.one("ServiceMonitor")
        self.assertEqual(sm.get("apiVersion"), "monitoring.coreos.com/v1",
                         "ServiceMonitor apiVersion should be monitoring.coreos.com/v1")
        svc = self.service()
        sel = (sm["spec"].get("selector") or {}).get("matchLabels")
        self.assertTrue(labels_match(sel, svc["metadata"].get("labels")),
                        "ServiceMonitor selector %r does not match the Service's labels %r"
                        % (sel, svc["metadata"].get("labels")))
        endpoints = sm["spec"].get("endpoints") or []
        self.assertTrue(endpoints, "the ServiceMonitor has no endpoints")
        svc_ports = {p.get("name"): p for p in svc["spec"]["ports"]}
        for ep in endpoints:
            self.assertIn(ep.get("port"), svc_ports, "ServiceMonitor endpoint port %r is no "
                          "port name of the Service (%s)" % (ep.get("port"), sorted(svc_ports)))
            self.assertEqual(ep.get("port"), "admin", "the ServiceMonitor should scrape the "
                             "admin port (/metrics is not served on the ingest port)")
            self.assertEqual(ep.get("path", "/metrics"), "/metrics", "the ServiceMonitor "
                             "should scrape /metrics, not %r" % ep.get("path"))
            self.assertEqual(ep.get("interval"), "30s", "the ServiceMonitor should scrape every "
                             "30s, not %r" % ep.get("interval"))

    # -- security --

    def test_security_context(self):
        pod = self.pod_spec().get("securityContext") or {}
        ctr = self.container().get("securityContext") or {}

        def effective(key):
            return ctr.get(key, pod.get(key))

        self.assertIs(effective("runAsNonRoot"), True, "runAsNonRoot should be true")
        self.assertEqual(effective("runAsUser"), IMAGE_UID, "runAsUser should be %d (the "
                         "image's user)" % IMAGE_UID)
        self.assertEqual(effective("runAsGroup"), IMAGE_GID, "runAsGroup should be %d" % IMAGE_GID)
        self.assertEqual(pod.get("fsGroup"), IMAGE_GID, "pod fsGroup should be %d so the state "
                         "volume is writable" % IMAGE_GID)
        self.assertIs(ctr.get("readOnlyRootFilesystem"), True,
                      "container readOnlyRootFilesystem should be true")
        self.assertIs(ctr.get("allowPrivilegeEscalation"), False,
                      "container allowPrivilegeEscalation should be false")
        self.assertNotEqual(ctr.get("privileged"), True, "the container must not be privileged")
        caps = ctr.get("capabilities") or {}
        self.assertIn("ALL", caps.get("drop") or [], "capabilities should drop ALL")
        self.assertFalse(caps.get("add"), "no capability should be added: %r" % caps.get("add"))
        self.assertEqual((effective("seccompProfile") or {}).get("type"), "RuntimeDefault",
                         "seccompProfile should be RuntimeDefault")
        self.assertIs(self.pod_spec().get("automountServiceAccountToken"), False,
                      "automountServiceAccountToken should be false")

    def test_service_links_disabled(self):
        self.assertIs(self.pod_spec().get("enableServiceLinks"), False,
                      "enableServiceLinks should be false: the kubelet would inject "
                      "TRAILHOOK_SERVICE_HOST, TRAILHOOK_PORT, ... for a Service named "
                      "trailhook*, and trailhook refuses to start on unknown TRAILHOOK_* "
                      "variables (%s)" % ", ".join(sorted(service_link_env(
                          self.b.of_kind("Service")))[:3]))

    def test_resources(self):
        res = self.container().get("resources") or {}
        for kind in ("requests", "limits"):
            for what in ("cpu", "memory"):
                self.assertIn(what, res.get(kind) or {}, "resources.%s.%s is not set"
                              % (kind, what))
                self.assertGreater(parse_quantity(res[kind][what]), 0, "resources.%s.%s is "
                                   "not positive" % (kind, what))
        for what in ("cpu", "memory"):
            self.assertLessEqual(parse_quantity(res["requests"][what]),
                                 parse_quantity(res["limits"][what]),
                                 "the %s request is above its limit" % what)

    # -- volumes --

    def test_writable_paths_are_volumes(self):
        env = self.env()
        vols = self.volumes()
        state_dir = env["TRAILHOOK_STATE_DIR"]
        for path in (state_dir, "/tmp"):
            mounts = [m for m in self.mounts() if path_under(path, m["mountPath"])]
            self.assertTrue(mounts, "the root file system is read-only, but %s is on no "
                            "volumeMount" % path)
            best = max(mounts, key=lambda m: len(m["mountPath"]))
            self.assertFalse(best.get("readOnly", False), "%s is on a readOnly mount (%s)"
                             % (path, best["mountPath"]))
            if path == state_dir and self.backend() == "sqlite":
                vol = vols.get(best["name"], {})
                self.assertIn("persistentVolumeClaim", vol, "state_dir %s should be on a "
                              "PersistentVolumeClaim (the SQLite store), not %r"
                              % (state_dir, sorted(vol)))

    def test_volume_mounts_and_sources(self):
        vols = self.volumes()
        for m in self.mounts():
            self.assertIn(m["name"], vols, "volumeMount %s names no declared volume %r"
                          % (m.get("mountPath"), m["name"]))
        secret_name, _ = example_secret()
        pvcs = {(d.get("metadata") or {}).get("name")
                for d in self.b.of_kind("PersistentVolumeClaim")}
        mounted = {m["name"] for m in self.mounts()}
        for name, v in vols.items():
            self.assertIn(name, mounted, "volume %r is declared but never mounted" % name)
            if "persistentVolumeClaim" in v:
                claim = v["persistentVolumeClaim"].get("claimName")
                self.assertIn(claim, pvcs, "volume %r claims PVC %r, which is not among the "
                              "kustomization's resources (%s)" % (name, claim, sorted(pvcs)))
            if "secret" in v:
                sname = v["secret"].get("secretName")
                self.assertTrue(sname == secret_name or self.b.named("Secret", sname),
                                "volume %r uses Secret %r: neither the documented Secret (%s in "
                                "%s) nor one in the kustomization" % (name, sname, secret_name,
                                                                      EXAMPLE_SECRET))

    def test_pvc(self):
        for pvc in self.b.of_kind("PersistentVolumeClaim"):
            modes = pvc["spec"].get("accessModes") or []
            self.assertTrue(set(modes) <= {"ReadWriteOnce", "ReadWriteOncePod"} and modes,
                            "PVC %s should be ReadWriteOnce (SQLite is local to one pod), not %r"
                            % (pvc["metadata"]["name"], modes))
            self.assertIn("storage", (pvc["spec"].get("resources") or {}).get("requests") or {},
                          "PVC %s requests no storage" % pvc["metadata"]["name"])

    def test_secret_files_are_mounted_keys(self):
        env = self.env()
        _, values = example_secret()
        files = {k: v for k, v in env.items() if k.startswith("TRAILHOOK_") and k.endswith("_FILE")}
        self.assertIn("TRAILHOOK_API_KEYS_FILE", files, "no TRAILHOOK_API_KEYS_FILE: the "
                      "service refuses to listen on 0.0.0.0 without credentials")
        for var, path in sorted(files.items()):
            hits = [(m, v) for m, v in self.secret_mounts() if path_under(path, m["mountPath"])]
            self.assertTrue(hits, "%s=%s lies under no mounted Secret volume" % (var, path))
            mount, vol = hits[0]
            self.assertFalse(mount.get("subPath"), "the Secret mount %s uses subPath, which "
                             "never sees Secret updates" % mount["mountPath"])
            rel = posixpath.relpath(path, mount["mountPath"])
            items = vol["secret"].get("items")
            key = rel
            if items:
                key = next((i["key"] for i in items if i.get("path") == rel), None)
                self.assertIsNotNone(key, "%s=%s: the Secret volume's items map no key to %s"
                                     % (var, path, rel))
            self.assertIn(key, values, "%s=%s reads Secret key %r, which %s does not define "
                          "(it has %s)" % (var, path, key, EXAMPLE_SECRET, sorted(values)))

    # -- lifecycle and scale --

    def test_termination_grace_covers_drain(self):
        env = self.env()
        grace = int(env.get("TRAILHOOK_DRAIN_GRACE_SECONDS", drain_grace_default()))
        tgps = self.pod_spec().get("terminationGracePeriodSeconds", 30)
        self.assertGreater(tgps, grace + DRAIN_MARGIN_SECONDS,
                           "terminationGracePeriodSeconds (%s) must exceed the drain grace "
                           "(%d s) plus %d s for requests in flight, or the kubelet kills "
                           "trailhook mid-drain" % (tgps, grace, DRAIN_MARGIN_SECONDS))

    def pdbs_for_pods(self):
        labels = self.deployment()["spec"]["template"]["metadata"].get("labels")
        return [p for p in self.b.of_kind("PodDisruptionBudget")
                if labels_match((p["spec"].get("selector") or {}).get("matchLabels"), labels)]

    @staticmethod
    def resolve(value, replicas):
        if isinstance(value, str) and value.endswith("%"):
            return math.ceil(float(value[:-1]) * replicas / 100.0)
        return int(value)

    def test_replicas_strategy_and_pdb(self):
        spec = self.deployment()["spec"]
        replicas = spec.get("replicas", 1)
        strategy = (spec.get("strategy") or {}).get("type", "RollingUpdate")
        pdbs = self.pdbs_for_pods()
        if self.backend() == "redis":
            self.assertGreaterEqual(replicas, 2, "with the redis backend run at least 2 replicas")
            self.assertTrue(any(self.resolve(p["spec"]["minAvailable"], replicas) >= 1
                                for p in pdbs if "minAvailable" in p["spec"]),
                            "with the redis backend a PodDisruptionBudget should keep "
                            "minAvailable >= 1")
            self.check_scaled_out(spec, replicas, strategy, pdbs)
            return
        self.assertEqual(self.backend(), "sqlite", "unknown TRAILHOOK_STATE_BACKEND")
        self.assertEqual(replicas, 1, "the sqlite backend is local to one pod: replicas must be "
                         "1 (two would each keep their own dedup state and page separately)")
        self.assertEqual(strategy, "Recreate", "with the sqlite backend the strategy must be "
                         "Recreate: a rolling update starts the new pod while the old one still "
                         "holds the ReadWriteOnce volume")
        for p in pdbs:
            self.assertGreater(self.disruptions_allowed(p, replicas), 0, "PodDisruptionBudget %s allows no disruption of the "
                               "single replica: node drains would block forever"
                               % p["metadata"]["name"])


    def disruptions_allowed(self, pdb, replicas):
        """How many of @p replicas the PodDisruptionBudget lets a drain evict at once."""
        spec = pdb["spec"]
        if "minAvailable" in spec:
            return replicas - self.resolve(spec["minAvailable"], replicas)
        return self.resolve(spec.get("maxUnavailable", 1), replicas)

    def check_scaled_out(self, spec, replicas, strategy, pdbs):
        """Several replicas: upgrades and drains keep one serving; no volume only one pod can
        attach; replicas spread over nodes."""
        self.assertEqual(strategy, "RollingUpdate", "with several replicas on shared state the "
                         "strategy should be RollingUpdate (Recreate stops every pod at once)")
        rolling = (spec.get("strategy") or {}).get("rollingUpdate") or {}
        unavailable = self.resolve(rolling.get("maxUnavailable", "25%"), replicas)
        self.assertGreaterEqual(replicas - unavailable, 1, "the rolling update may take every "
                                "replica down at once (maxUnavailable %r)"
                                % rolling.get("maxUnavailable"))
        if unavailable == 0:
            self.assertGreaterEqual(self.resolve(rolling.get("maxSurge", "25%"), replicas), 1,
                                    "maxUnavailable 0 and maxSurge 0: the rollout cannot move")
        for p in pdbs:
            self.assertGreater(self.disruptions_allowed(p, replicas), 0, "PodDisruptionBudget %s allows no disruption of %d "
                               "replicas: node drains would block forever"
                               % (p["metadata"]["name"], replicas))
        vols = self.volumes()
        for m in self.mounts():
            v = vols.get(m["name"], {})
            self.assertNotIn("persistentVolumeClaim", v, "volume %r (%s) is a "
                             "PersistentVolumeClaim: a ReadWriteOnce claim cannot follow %d "
                             "replicas onto several nodes, and with redis the state is not there"
                             % (m["name"], m["mountPath"], replicas))
        self.assertEqual(self.b.of_kind("PersistentVolumeClaim"), [],
                         "the redis rendering still creates a PersistentVolumeClaim nobody uses")
        labels = spec["template"]["metadata"].get("labels")
        affinity = (self.pod_spec().get("affinity") or {}).get("podAntiAffinity") or {}
        terms = [t.get("podAffinityTerm") or {} for t in
                 affinity.get("preferredDuringSchedulingIgnoredDuringExecution") or []]
        terms += affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or []
        spread = [t for t in terms if t.get("topologyKey") == "kubernetes.io/hostname" and
                  labels_match((t.get("labelSelector") or {}).get("matchLabels"), labels)]
        self.assertTrue(spread, "no podAntiAffinity on kubernetes.io/hostname selecting the "
                        "pods: both replicas may land on one node, and its drain or failure "
                        "takes both")


class RedisOverlayManifests(KubernetesManifests):
    """The same checks on deploy/kubernetes/redis, rendered here (JSON 6902 patches applied)."""

    BUNDLE_DIR = REDIS_OVERLAY_DIR

    def test_overlay_selects_redis_from_the_secret(self):
        env = self.env()
        self.assertEqual(env.get("TRAILHOOK_STATE_BACKEND"), "redis")
        self.assertNotIn("TRAILHOOK_STATE_REDIS_URL", env, "the Redis URL (it may carry a "
                         "password) belongs in the Secret: TRAILHOOK_STATE_REDIS_URL_FILE")
        self.assertIn("TRAILHOOK_STATE_REDIS_URL_FILE", env)
        _, values = example_secret()
        self.assertIn("redis_url", values, "%s should show the key redis_url" % EXAMPLE_SECRET)
        self.assertIn("example", values["redis_url"].lower())
        self.assertRegex(values["redis_url"], r"^rediss?://", "redis_url should be a redis:// "
                         "or rediss:// URL")
        # Every patch found its target (a renamed resource would silently patch nothing).
        self.assertTrue(self.b.patched)
        base = bundle(os.path.join(K8S_DIR, "base"))
        self.assertEqual(base.errors, [])
        kinds = sorted(d.get("kind") for _, d in self.b.docs)
        self.assertEqual(kinds, sorted(d.get("kind") for _, d in base.docs
                                       if d.get("kind") != "PersistentVolumeClaim"),
                         "the overlay should change the base's resources, not add or drop any "
                         "but the PersistentVolumeClaim")


@unittest.skipUnless(shutil.which("kubectl"), "kubectl not on PATH")
class KustomizeRender(unittest.TestCase):
    """`kubectl kustomize` (offline) builds the directory and applies the namespace."""

    longMessage = False

    def render(self, k8s_dir):
        r = subprocess.run(["kubectl", "kustomize", k8s_dir], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60)
        self.assertEqual(r.returncode, 0, "kubectl kustomize %s failed:\n%s"
                         % (k8s_dir, r.stderr.decode()))
        return [d for d in yaml.safe_load_all(r.stdout) if d]

    @staticmethod
    def comparable(doc):
        """A resource without what only kustomize adds (namespace, labels, image tag)."""
        doc = copy.deepcopy(doc)
        doc.get("metadata", {}).pop("namespace", None)
        doc.get("metadata", {}).pop("labels", None)
        tmpl = (doc.get("spec") or {}).get("template")
        if isinstance(tmpl, dict):
            tmpl.get("metadata", {}).pop("labels", None)
            for c in (tmpl.get("spec") or {}).get("containers") or []:
                c.pop("image", None)
        return json.loads(json.dumps(doc, sort_keys=True))

    def test_redis_overlay_renders_as_this_test_renders_it(self):
        docs = self.render(REDIS_OVERLAY_DIR)
        kinds = sorted(d["kind"] for d in docs)
        self.assertNotIn("Secret", kinds)
        self.assertNotIn("PersistentVolumeClaim", kinds)
        mine = bundle(REDIS_OVERLAY_DIR)
        self.assertEqual(mine.errors, [])
        self.assertEqual(kinds, sorted(d["kind"] for _, d in mine.docs))
        for d in docs:
            if d["kind"] != "Namespace":
                self.assertEqual(d["metadata"].get("namespace"), "trailhook")
            ours = mine.named(d["kind"], d["metadata"]["name"])
            self.assertEqual(self.comparable(ours), self.comparable(d),
                             "%s %s: kubectl kustomize and this test's rendering differ"
                             % (d["kind"], d["metadata"]["name"]))

    def test_renders(self):
        docs = self.render(K8S_DIR)
        kinds = sorted(d["kind"] for d in docs)
        self.assertIn("Deployment", kinds, "no Deployment in the kustomize output: %s" % kinds)
        self.assertNotIn("Secret", kinds, "the rendered output must not contain a Secret")
        for d in docs:
            if d["kind"] != "Namespace":
                self.assertEqual(d["metadata"].get("namespace"), "trailhook",
                                 "%s %s is not in namespace trailhook after kustomize"
                                 % (d["kind"], d["metadata"]["name"]))


# ---- the binary with the Deployment's environment ---------------------------------------------

class DeploymentEnvServes(ManifestLookups, unittest.TestCase):
    """`trailhook serve` with the Deployment's environment answers the probes, the scrape and
    refuses unauthenticated ingest."""

    def setUp(self):
        super().setUp()
        if not os.access(BIN, os.X_OK):
            self.fail("TRAILHOOK_BIN %s is not an executable" % BIN)
        self.tmp = tempfile.mkdtemp(prefix="trailhook-k8s-")
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        self.proc = None
        self.redis = None

    def tearDown(self):
        if self.proc is not None and self.proc.poll() is None:
            terminate(self.proc, STOP_TIMEOUT)
        for f in getattr(self, "_logs", []):
            f.close()

    def stderr_text(self):
        try:
            with open(os.path.join(self.tmp, "stderr.log"), errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def remap_env(self):
        """The Deployment's environment made runnable here. @return (env, {containerPort: port})."""
        env = self.env()
        _, secret_values = example_secret()
        ports = {}
        out = {}
        for k, v in env.items():
            if k in ("TRAILHOOK_LISTEN", "TRAILHOOK_ADMIN_LISTEN"):
                port = split_host_port(v)[1]
                ports[port] = ports.get(port) or free_port()
                out[k] = "127.0.0.1:%d" % ports[port]
            elif k == "TRAILHOOK_STATE_DIR":
                out[k] = os.path.join(self.tmp, "state")
                os.makedirs(out[k])
            elif k == "TRAILHOOK_CONFIG":
                self.assertEqual(v, IMAGE_CONFIG_PATH, "TRAILHOOK_CONFIG=%s: this test only "
                                 "knows the image's config file (extend it)" % v)
                out[k] = CONFIG_FILE
            elif k.endswith("_FILE") and any(path_under(v, mnt["mountPath"])
                                             for mnt, _ in self.secret_mounts()):
                mnt, vol = next((mn, vo) for mn, vo in self.secret_mounts()
                                if path_under(v, mn["mountPath"]))
                rel = posixpath.relpath(v, mnt["mountPath"])
                key = rel
                for item in vol["secret"].get("items") or []:
                    if item.get("path") == rel:
                        key = item["key"]
                self.assertIn(key, secret_values, "%s reads Secret key %r, which %s does not "
                              "define" % (k, key, EXAMPLE_SECRET))
                path = os.path.join(self.tmp, "secrets", rel)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w") as f:
                    f.write(secret_values[key] + "\n")
                out[k] = path
            else:
                out[k] = v
        if out.get("TRAILHOOK_STATE_BACKEND", "sqlite") == "redis" and \
                redis_server_path() is not None:
            # A private redis-server stands in for the Secret's Redis (same database).
            redis = RedisServer(self).start()
            url = out.pop("TRAILHOOK_STATE_REDIS_URL", None)
            if url is None:
                with open(out["TRAILHOOK_STATE_REDIS_URL_FILE"]) as f:
                    url = f.read().strip()
            m = re.search(r"/(\d+)/?$", url)
            local = redis.url(int(m.group(1)) if m else 0)
            if "TRAILHOOK_STATE_REDIS_URL_FILE" in out:
                with open(out["TRAILHOOK_STATE_REDIS_URL_FILE"], "w") as f:
                    f.write(local + "\n")
            else:
                out["TRAILHOOK_STATE_REDIS_URL"] = local
            self.redis = redis
        elif out.get("TRAILHOOK_STATE_BACKEND", "sqlite") != "sqlite":
            # No Redis here: run the rest of the environment against a local SQLite store.
            out["TRAILHOOK_STATE_BACKEND"] = "sqlite"
            for k in [k for k in out if k.startswith("TRAILHOOK_STATE_REDIS_URL")]:
                del out[k]
        if self.pod_spec().get("enableServiceLinks", True) is not False:
            out.update(service_link_env(self.b.of_kind("Service")))
        return out, ports

    def port_for(self, ref, ports):
        cport = self.container_port(ref)
        self.assertIn(cport, ports, "port %r (container port %r) is served by no listener of "
                      "the Deployment's env" % (ref, cport))
        return ports[cport]

    def test_serves_probes_metrics_and_requires_credentials(self):
        env, ports = self.remap_env()
        base = {k: v for k, v in os.environ.items() if not k.startswith("TRAILHOOK_")}
        base.update(env)
        out = open(os.path.join(self.tmp, "stdout.log"), "wb")
        err = open(os.path.join(self.tmp, "stderr.log"), "wb")
        self._logs = [out, err]
        self.proc = subprocess.Popen([BIN, "serve"], stdout=out, stderr=err, env=base,
                                     cwd=self.tmp)

        _, live = self.http_probe("livenessProbe")
        live_port = self.port_for(live["port"], ports)
        deadline = time.monotonic() + START_TIMEOUT
        last = None
        while True:
            if self.proc.poll() is not None:
                self.fail("trailhook serve exited with %s under the Deployment's environment:\n%s"
                          % (self.proc.returncode, self.stderr_text()))
            try:
                last = http_request("GET", live_port, live["path"], timeout=2)[0]
                if last == 200:
                    break
            except OSError as e:
                last = e
            if time.monotonic() > deadline:
                self.fail("liveness probe GET %s on port %s never answered 200 (last %r):\n%s"
                          % (live["path"], live["port"], last, self.stderr_text()))
            time.sleep(0.05)

        _, ready = self.http_probe("readinessProbe")
        status = None
        for _ in range(50):
            status = http_request("GET", self.port_for(ready["port"], ports), ready["path"])[0]
            if status == 200:
                break
            time.sleep(0.1)
        self.assertEqual(status, 200, "readiness probe GET %s on port %s answered %s"
                         % (ready["path"], ready["port"], status))

        sm = self.one("ServiceMonitor")
        svc_ports = {p["name"]: p for p in self.service()["spec"]["ports"]}
        for ep in sm["spec"].get("endpoints") or []:
            self.assertIn(ep.get("port"), svc_ports, "the ServiceMonitor scrapes port %r, which "
                          "the Service does not have" % ep.get("port"))
            target = svc_ports[ep["port"]].get("targetPort", svc_ports[ep["port"]]["port"])
            status, headers, body = http_request("GET", self.port_for(target, ports),
                                                 ep.get("path", "/metrics"))
            self.assertEqual(status, 200, "the ServiceMonitor's scrape (%s on %s) answered %s"
                             % (ep.get("path"), ep["port"], status))
            self.assertTrue(headers.get("content-type", "").startswith("text/plain"),
                            "metrics Content-Type is %r" % headers.get("content-type"))
            self.assertIn(b"trailhook_build_info", body,
                          "the scrape has no trailhook_build_info")

        self.assertIn("http", svc_ports, "the Service has no port named http")
        http_target = svc_ports["http"].get("targetPort", svc_ports["http"]["port"])
        ingest = self.port_for(http_target, ports)
        event = b'{"eventVersion":"1.08","eventID":"k8s-test","eventName":"DescribeImages"}'
        status = http_request("POST", ingest, "/events", body=event,
                              headers={"Content-Type": "application/json"})[0]
        self.assertEqual(status, 401, "POST /events without credentials answered %s, not 401: "
                         "the Deployment must configure credentials" % status)
        _, values = example_secret()
        key = re.split(r"[,\n]", values["api_keys"].strip())[0].strip()
        status = http_request("POST", ingest, "/events", body=event,
                              headers={"Content-Type": "application/json", "X-Api-Key": key})[0]
        self.assertTrue(200 <= status < 300, "POST /events with the Secret's API key answered "
                        "%s, not 2xx: TRAILHOOK_API_KEYS_FILE is not wired to the Secret" % status)

        tgps = self.pod_spec().get("terminationGracePeriodSeconds", 30)
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(min(tgps, STOP_TIMEOUT))
        except subprocess.TimeoutExpired:
            self.fail("trailhook did not exit within %ss of SIGTERM" % min(tgps, STOP_TIMEOUT))
        self.assertEqual(rc, 0, "SIGTERM should drain and exit 0, got %s:\n%s"
                         % (rc, self.stderr_text()))
        text = self.stderr_text()
        for marker in SANITIZER_MARKERS:
            self.assertNotIn(marker, text, "sanitizer report on stderr:\n" + text)
        self.assertLess(time.monotonic() - t0, tgps, "the drain outlasted "
                        "terminationGracePeriodSeconds (%ss)" % tgps)


class RedisOverlayServes(DeploymentEnvServes):
    """The overlay's environment: probes, scrape and credentials, against a private Redis."""

    BUNDLE_DIR = REDIS_OVERLAY_DIR


if __name__ == "__main__":
    unittest.main()
