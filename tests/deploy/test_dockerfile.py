"""Checks of the Dockerfile and deploy/compose.yaml against the build, without Docker.

Python 3 with PyYAML (Debian's python3-yaml). ctest runs it from tests/deploy with:
  TRAILHOOK_BIN   the built trailhook binary   (default TH_SOURCE_DIR/build/trailhook)
  TH_SOURCE_DIR   the source tree              (default: two levels above this file)
By hand:
  cd tests/deploy && TRAILHOOK_BIN=../../build/trailhook TH_SOURCE_DIR=../.. \
      python3 -m unittest -v test_dockerfile

No Docker engine is needed: the Dockerfile is parsed here and checked against what the image
build would need and produce:
  - static: both stages on the same Debian 12 slim base; the build stage installs exactly
    `.ci/deps build`'s packages; the runtime stage installs no -dev package and no compiler;
    COPY sources exist (and .dockerignore keeps them); COPY --from paths are produced by the build
    stage; USER, HEALTHCHECK, STOPSIGNAL, EXPOSE, VOLUME and ENTRYPOINT fit the service;
  - libraries: every shared library `ldd $TRAILHOOK_BIN` resolves comes from a Debian package the
    runtime stage installs, one those depend on, or one of the base image (dpkg's database of
    this machine, which must be Debian 12 like the image; skipped elsewhere);
  - behaviour: the real binary runs with the image's ENV plus compose.yaml's environment (paths
    remapped to temp dirs, ports to free ones, secrets to temp files), answers the image's
    HEALTHCHECK command, takes an event with the API key from the secret file, drains and exits 0
    on the STOPSIGNAL; and with the image's ENV alone (no credential) it refuses to start. When
    compose.yaml selects the Redis state backend, its URL is remapped to a private redis-server
    (tests/integration/redis_server.py) and the event's alert must land there; without
    redis-server on this machine, to an unreachable port: the service must still start and pass
    the HEALTHCHECK, and answer the event 503 with Retry-After.
"""

import functools
import glob
import http.client
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import uuid

import yaml

from deploy_common import free_port

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from redis_server import RedisServer, redis_server_path  # noqa: E402 (stdlib only)

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.abspath(os.environ.get("TH_SOURCE_DIR") or os.path.join(HERE, "..", ".."))
BIN = os.path.abspath(os.environ.get("TRAILHOOK_BIN")
                      or os.path.join(SOURCE_DIR, "build", "trailhook"))
DOCKERFILE = os.path.join(SOURCE_DIR, "Dockerfile")
DOCKERIGNORE = os.path.join(SOURCE_DIR, ".dockerignore")
COMPOSE_FILE = os.path.join(SOURCE_DIR, "deploy", "compose.yaml")
CI_DEPS = os.path.join(SOURCE_DIR, ".ci", "deps")
CMAKELISTS = os.path.join(SOURCE_DIR, "CMakeLists.txt")

BASE_IMAGES = ("debian:12-slim", "debian:bookworm-slim")  # with or without docker.io/library/
DEBIAN_VERSION_ID = "12"
IMAGE_BINARY_NAMES = ("trailhook", "/usr/local/bin/trailhook")
SECRETS_DIR = "/run/secrets/"
DEFAULT_DRAIN_GRACE = 10  # the service's default when neither the config nor the env says
DRAIN_MARGIN_SECONDS = 5  # requests in flight and closing the store, on top of the drain grace
START_TIMEOUT = 15.0
REFUSE_TIMEOUT = 10.0
# Libraries a sanitizer build links that the Release image never has, and the loader's own.
SKIPPED_LIBS = ("linux-vdso", "linux-gate", "ld-linux", "libasan", "libubsan", "liblsan",
                "libtsan", "libhwasan")
COMPILER_PACKAGES = {"build-essential", "gcc", "g++", "cpp", "cc", "clang", "llvm", "make",
                     "cmake", "pkg-config", "pkgconf", "binutils", "libc-dev-bin", "autoconf",
                     "automake", "libtool", "ninja-build", "meson"}
COMPILER_PREFIXES = ("gcc-", "g++-", "cpp-", "clang-", "llvm-", "binutils-")
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "WARNING: ThreadSanitizer")
UNKNOWN_VAR_MESSAGE = "unknown environment variable"
REDIS_URL_RE = re.compile(r"rediss?://(?:[^@/]*@)?(\[[^\]]+\]|[^:/]+)(?::(\d+))?(?:/(\d+))?/?$")
MATCHING_EVENT = os.path.join(SOURCE_DIR, "tests", "fixtures", "events",
                              "record_ami_made_public.json")


# ---- Dockerfile parsing ----------------------------------------------------------------------

class DockerfileError(Exception):
    pass


class Instruction:
    """One instruction: cmd upper case, flags {--name: value}, args (raw text after the flags),
    exec_form (the JSON array, or None for the shell form), line (1-based, first line)."""

    def __init__(self, cmd, flags, args, line):
        self.cmd = cmd
        self.flags = flags
        self.args = args
        self.line = line
        self.exec_form = None
        if args.startswith("["):
            try:
                value = json.loads(args)
            except ValueError:
                value = None
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                self.exec_form = value

    def words(self):
        """The arguments as a list: the JSON array, or the shell-form text split like a shell."""
        return list(self.exec_form) if self.exec_form is not None else shlex.split(self.args)

    def __repr__(self):
        return "line %d: %s %s" % (self.line, self.cmd, self.args)


class Stage:
    def __init__(self, index, base, name, line):
        self.index = index
        self.base = base
        self.name = name
        self.line = line
        self.instructions = []
        self.args = {}  # ARG defaults seen in this stage
        self.env = {}  # ENV as set by the end of the stage (inherited from a stage base)
        self.labels = {}

    def all(self, cmd):
        return [i for i in self.instructions if i.cmd == cmd]

    def last(self, cmd):
        found = self.all(cmd)
        return found[-1] if found else None

    def label(self):
        return "stage %d (%s, line %d)" % (self.index, self.name or "unnamed", self.line)


_VAR_RE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::([-+])([^}]*))?\}"
                     r"|([A-Za-z_][A-Za-z0-9_]*))")


def substitute(text, variables):
    """Docker's variable substitution ($VAR, ${VAR}, ${VAR:-default}, ${VAR:+alt}); \\$ escapes."""

    def repl(m):
        name = m.group(1) or m.group(4)
        value = variables.get(name)
        if m.group(2) == "-":
            return value if value else m.group(3)
        if m.group(2) == "+":
            return m.group(3) if value else ""
        return value if value is not None else ""

    parts = text.split("\\$")
    return "$".join(_VAR_RE.sub(repl, p) for p in parts)


def logical_lines(text):
    """(line number, text) of each instruction: continuations joined, comments dropped."""
    out = []
    current = None
    start = 0
    directives_done = False
    for n, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not directives_done and current is None:
            m = re.match(r"#\s*([a-zA-Z]+)\s*=\s*(\S+)\s*$", stripped)
            if m:
                if m.group(1).lower() == "escape" and m.group(2) != "\\":
                    raise DockerfileError("line %d: only the default escape character \\ is "
                                          "supported by this test" % n)
                continue
            directives_done = True
        if stripped.startswith("#"):
            continue  # also inside a continuation, as Docker does
        if current is None:
            if not stripped:
                continue
            current, start = "", n
        if stripped.endswith("\\"):
            current += raw.rstrip()[:-1] + " "
            continue
        current += raw
        out.append((start, current.strip()))
        current = None
    if current is not None and current.strip():
        out.append((start, current.strip()))
    return out


def parse_dockerfile(text):
    """@return (global ARG defaults, [Stage])."""
    global_args = {}
    stages = []
    for line, content in logical_lines(text):
        m = re.match(r"(\S+)\s*(.*)$", content, re.S)
        cmd, rest = m.group(1).upper(), m.group(2).strip()
        if re.search(r"<<-?[\"']?[A-Za-z_]", rest) and cmd in ("RUN", "COPY", "ADD"):
            raise DockerfileError("line %d: heredocs are not supported by this test" % line)
        flags = {}
        while rest.startswith("--"):
            fm = re.match(r"--([A-Za-z-]+)(?:=(\S*))?\s*", rest)
            if not fm:
                break
            flags[fm.group(1)] = fm.group(2) if fm.group(2) is not None else "true"
            rest = rest[fm.end():]
        if cmd == "ARG" and not stages:
            for word in shlex.split(rest):
                name, _, default = word.partition("=")
                global_args[name] = default
            continue
        if cmd == "FROM":
            words = substitute(rest, global_args).split()
            if not words:
                raise DockerfileError("line %d: FROM without an image" % line)
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stage = Stage(len(stages), words[0], name, line)
            parent = find_stage(stages, words[0])
            if parent is not None:
                stage.env = dict(parent.env)
                stage.labels = dict(parent.labels)
            stages.append(stage)
            continue
        if not stages:
            raise DockerfileError("line %d: %s before the first FROM" % (line, cmd))
        stage = stages[-1]
        variables = dict(global_args)
        variables.update(stage.args)
        variables.update(stage.env)
        if cmd in ("ENV", "LABEL", "COPY", "ADD", "WORKDIR", "USER", "EXPOSE", "VOLUME",
                   "STOPSIGNAL"):
            rest = substitute(rest, variables)
        inst = Instruction(cmd, flags, rest, line)
        stage.instructions.append(inst)
        if cmd == "ARG":
            for word in shlex.split(rest):
                name, _, default = word.partition("=")
                stage.args[name] = default if "=" in word else global_args.get(name, "")
        elif cmd in ("ENV", "LABEL"):
            target = stage.env if cmd == "ENV" else stage.labels
            words = shlex.split(rest)
            if words and "=" not in words[0] and cmd == "ENV":  # legacy `ENV key value`
                key, _, value = rest.partition(" ")
                target[key] = value.strip()
            else:
                for word in words:
                    key, sep, value = word.partition("=")
                    if not sep:
                        raise DockerfileError("line %d: %s %r is not key=value" % (line, cmd, word))
                    target[key] = value
    return global_args, stages


def find_stage(stages, ref):
    """The earlier stage @p ref names (its AS name or index), or None for an external image."""
    for s in stages:
        if s.name is not None and s.name.lower() == ref.lower():
            return s
    if ref.isdigit() and int(ref) < len(stages):
        return stages[int(ref)]
    return None


# ---- shell commands of RUN -------------------------------------------------------------------

SHELLS = ("sh", "/bin/sh", "bash", "/bin/bash")
SHELL_OPERATORS = {"&&", "||", ";", "|", "&", "(", ")", ";;"}


def shell_commands(text):
    """The simple commands of a shell-form RUN, each as argv (leading VAR=value assignments and
    `env`/`sudo` dropped)."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|()")
    lexer.whitespace_split = True
    commands, current = [], []
    for token in lexer:
        if token in SHELL_OPERATORS or set(token) <= set(";&|()"):
            if current:
                commands.append(current)
            current = []
        else:
            current.append(token)
    if current:
        commands.append(current)
    out = []
    for argv in commands:
        while argv and (re.match(r"[A-Za-z_][A-Za-z0-9_]*=", argv[0])
                        or argv[0] in ("env", "sudo")):
            argv = argv[1:]
        if argv:
            out.append(argv)
    return out


def run_commands(stage):
    """Every simple command of every RUN of @p stage, as (Instruction, argv)."""
    out = []
    for inst in stage.all("RUN"):
        if inst.exec_form is not None:
            argv = inst.exec_form
            if len(argv) >= 3 and argv[0] in SHELLS and argv[1] == "-c":
                out.extend((inst, a) for a in shell_commands(argv[2]))
            else:
                out.append((inst, argv))
        else:
            out.extend((inst, a) for a in shell_commands(inst.args))
    return out


APT_OPTIONS_WITH_VALUE = {"-o", "-t", "-c", "--target-release", "--option", "--config-file"}


def apt_installs(stage):
    """[(Instruction, argv, [packages])] of the apt-get/apt install commands of @p stage."""
    out = []
    for inst, argv in run_commands(stage):
        if os.path.basename(argv[0]) not in ("apt-get", "apt") or "install" not in argv:
            continue
        packages, skip = [], False
        for word in argv[argv.index("install") + 1:]:
            if skip:
                skip = False
                continue
            if word in APT_OPTIONS_WITH_VALUE:
                skip = True
                continue
            if word.startswith("-"):
                continue
            if "$" in word:
                raise DockerfileError("%r: package %r comes from a variable this test cannot "
                                      "resolve; name the packages" % (inst, word))
            packages.append(re.split(r"[=/:]", word, 1)[0])
        out.append((inst, argv, packages))
    return out


def runs_ci_deps_build(stage):
    """The RUN instructions of @p stage that run `.ci/deps build`."""
    found = []
    for inst, argv in run_commands(stage):
        if argv[0] in SHELLS and len(argv) > 1:
            argv = argv[1:]
        if argv[0].endswith(".ci/deps") and argv[1:] == ["build"]:
            found.append((inst, argv[0]))
    return found


# ---- .ci/deps --------------------------------------------------------------------------------

def ci_deps_build_packages():
    """The packages `.ci/deps build` installs on a fresh image, found by running the script as it
    runs in the build stage (as root, nothing installed) with dpkg-query, id and apt-get faked."""
    tmp = tempfile.mkdtemp(prefix="th-cideps-")
    try:
        log = os.path.join(tmp, "apt-get.log")
        fakes = {
            "id": "#!/bin/sh\necho 0\n",
            "dpkg-query": "#!/bin/sh\nexit 1\n",
            "apt-get": "#!/bin/sh\nprintf '%%s\\n' \"$*\" >> '%s'\n" % log,
        }
        for name, body in fakes.items():
            path = os.path.join(tmp, name)
            with open(path, "w") as f:
                f.write(body)
            os.chmod(path, 0o755)
        env = {"PATH": tmp + os.pathsep + "/usr/bin:/bin", "HOME": tmp}
        r = subprocess.run(["sh", CI_DEPS, "build"], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=30)
        if r.returncode != 0:
            raise AssertionError(".ci/deps build failed with fakes (exit %d): %s"
                                 % (r.returncode, r.stderr.decode(errors="replace")))
        with open(log) as f:
            calls = [line.split() for line in f if line.strip()]
        installs = [c for c in calls if "install" in c]
        if len(installs) != 1:
            raise AssertionError(".ci/deps build ran apt-get %r; expected one install" % calls)
        argv = installs[0]
        return [w for w in argv[argv.index("install") + 1:] if not w.startswith("-")]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---- .dockerignore ---------------------------------------------------------------------------

def dockerignore_rules():
    rules = []
    if not os.path.exists(DOCKERIGNORE):
        return rules
    with open(DOCKERIGNORE) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            pattern = os.path.normpath(line[1:] if negate else line).lstrip("/")
            rules.append((negate, pattern, re.compile(glob_to_regex(pattern))))
    return rules


def glob_to_regex(pattern):
    """Docker's .dockerignore pattern (Go filepath.Match plus **, anchored at the context root)."""
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
            continue
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            j = pattern.find("]", i)
            if j < 0:
                out += re.escape(c)
            else:
                out += "[" + pattern[i + 1:j].replace("\\", "\\\\") + "]"
                i = j
        else:
            out += re.escape(c)
        i += 1
    return "^" + out + "$"


def dockerignored(rules, relpath):
    """True when @p relpath (relative to the context) is left out of the build context."""
    relpath = os.path.normpath(relpath).lstrip("/")
    if relpath in (".", ""):
        return False
    parts = relpath.split("/")
    candidates = ["/".join(parts[:k]) for k in range(1, len(parts) + 1)]
    excluded = False
    for negate, _, regex in rules:
        if any(regex.match(c) for c in candidates):
            excluded = not negate
    return excluded


# ---- dpkg ------------------------------------------------------------------------------------

def host_is_image_release():
    try:
        with open("/etc/os-release") as f:
            fields = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
    except OSError:
        return False, "no /etc/os-release"
    distro = fields.get("ID", "").strip('"')
    version = fields.get("VERSION_ID", "").strip('"')
    if distro != "debian" or version != DEBIAN_VERSION_ID:
        return False, "this machine is %s %s, not Debian %s" % (distro, version, DEBIAN_VERSION_ID)
    if shutil.which("dpkg") is None or shutil.which("dpkg-query") is None:
        return False, "no dpkg"
    return True, ""


def installed_packages():
    """{name: {essential, priority, depends: [[alternative names]], provides: [names]}} of the
    packages installed on this machine (every architecture merged)."""
    fmt = "${Package}\\t${db:Status-Abbrev}\\t${Essential}\\t${Priority}\\t${Depends}\\t" \
          "${Pre-Depends}\\t${Provides}\\n"
    r = subprocess.run(["dpkg-query", "-W", "-f=" + fmt.replace("\\t", "\t").replace("\\n", "\n")],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=60)
    pkgs = {}
    for line in r.stdout.decode(errors="replace").splitlines():
        fields = line.split("\t")
        if len(fields) < 7 or not fields[1].startswith("ii"):
            continue
        name = fields[0]
        p = pkgs.setdefault(name, {"essential": False, "priority": "", "depends": [],
                                   "provides": []})
        p["essential"] = p["essential"] or fields[2] == "yes"
        p["priority"] = p["priority"] or fields[3]
        p["depends"] += parse_depends(fields[4]) + parse_depends(fields[5])
        p["provides"] += [alt[0] for alt in parse_depends(fields[6])]
    return pkgs


def parse_depends(text):
    """'a (>= 1) | b, c:any' -> [['a', 'b'], ['c']]."""
    out = []
    for clause in text.split(","):
        alts = []
        for alt in clause.split("|"):
            name = re.sub(r"\(.*?\)|\[.*?\]|<.*?>", "", alt).strip().split(":")[0]
            if name:
                alts.append(name)
        if alts:
            out.append(alts)
    return out


def dependency_closure(pkgs, roots):
    """@p roots and every installed package they (Pre-)Depend on, recursively; of alternatives,
    the installed ones (a virtual package through the installed packages providing it)."""
    providers = {}
    for name, p in pkgs.items():
        for v in p["provides"]:
            providers.setdefault(v, set()).add(name)
    seen, todo = set(), [r for r in roots if r in pkgs]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for alts in pkgs[name]["depends"]:
            for alt in alts:
                for real in ({alt} if alt in pkgs else set()) | providers.get(alt, set()):
                    if real not in seen:
                        todo.append(real)
    return seen


def merged_usr_variants(path):
    out = [path]
    for a, b in (("/usr/lib/", "/lib/"), ("/lib/", "/usr/lib/"), ("/usr/lib64/", "/lib64/"),
                 ("/lib64/", "/usr/lib64/")):
        if path.startswith(a):
            out.append(b + path[len(a):])
    return out


def dpkg_owners(path):
    """The packages owning @p path, trying /lib <-> /usr/lib (merged /usr) and the real file."""
    candidates = []
    for p in [path, os.path.realpath(path)]:
        for v in merged_usr_variants(p):
            if v not in candidates:
                candidates.append(v)
    for c in candidates:
        r = subprocess.run(["dpkg", "-S", c], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           timeout=30)
        if r.returncode != 0:
            continue
        for line in r.stdout.decode(errors="replace").splitlines():
            if line.startswith("diversion by"):
                continue
            owners, _, owned = line.rpartition(": ")
            if owned.strip() == c:
                return [o.strip().split(":")[0] for o in owners.split(",") if o.strip()], c
    return [], candidates


def ldd_libraries(binary):
    """[(soname, resolved path or None)] of `ldd BINARY`."""
    r = subprocess.run(["ldd", binary], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=30)
    libs = []
    for line in r.stdout.decode(errors="replace").splitlines():
        line = line.strip()
        m = re.match(r"(\S+)\s+=>\s+(not found|\S+)", line)
        if m:
            libs.append((m.group(1), None if m.group(2) == "not found" else m.group(2)))
            continue
        m = re.match(r"(/\S+)\s+\(0x", line)
        if m:
            libs.append((os.path.basename(m.group(1)), m.group(1)))
        elif re.match(r"(\S+)\s+\(0x", line):
            libs.append((line.split()[0], None))
    return r.returncode, libs


def apt_knows(package):
    r = subprocess.run(["apt-cache", "show", "--no-all-versions", package],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    return r.returncode == 0


# ---- compose ---------------------------------------------------------------------------------

def load_compose():
    with open(COMPOSE_FILE) as f:
        doc = yaml.safe_load(f)
    if not isinstance(doc, dict):
        raise AssertionError("%s is not a YAML mapping" % COMPOSE_FILE)
    return doc


def compose_service(doc):
    """(name, service) of the service that builds the image, or (None, None)."""
    for name, svc in (doc.get("services") or {}).items():
        if isinstance(svc, dict) and svc.get("build") is not None:
            return name, svc
    return None, None


def compose_interpolate(value):
    """${VAR:-default} / ${VAR-default} -> default, ${VAR} -> '' (the shell's env is not used)."""
    if not isinstance(value, str):
        return value
    value = re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*:?[-?]([^}]*)\}", r"\1", value)
    value = re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}", "", value)
    return value.replace("$$", "$")


def compose_service_env(service):
    env = service.get("environment") or {}
    out = {}
    if isinstance(env, list):
        for item in env:
            key, sep, value = str(item).partition("=")
            if sep:
                out[key] = compose_interpolate(value)
    else:
        for key, value in env.items():
            if value is not None:
                out[str(key)] = compose_interpolate(
                    str(value).lower() if isinstance(value, bool) else str(value))
    return out


def parse_duration(value):
    """Compose/Go durations (30s, 1m30s, 1h, 500ms) in seconds; a bare number is seconds."""
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    units = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    total, pos = 0.0, 0
    for m in re.finditer(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)", text):
        if m.start() != pos:
            raise ValueError("bad duration %r" % value)
        total += float(m.group(1)) * units[m.group(2)]
        pos = m.end()
    if pos != len(text) or pos == 0:
        raise ValueError("bad duration %r" % value)
    return total


def split_host_port(addr):
    m = re.fullmatch(r"\[([^\]]+)\]:(\d+)|([^:]*):(\d+)", addr)
    if not m:
        raise ValueError("not host:port: %r" % addr)
    return (m.group(1), int(m.group(2))) if m.group(1) else (m.group(3), int(m.group(4)))


def join_host_port(host, port):
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


# ---- processes -------------------------------------------------------------------------------


def base_env():
    """This process's environment without any TRAILHOOK_* variable."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TRAILHOOK_")}


def read_text(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


# ---- the parsed files, shared by the tests ---------------------------------------------------

class Context:
    """The Dockerfile's stages and the facts the checks share; parsed once."""

    def __init__(self):
        if not os.path.isfile(DOCKERFILE):
            raise AssertionError("no Dockerfile at %s" % DOCKERFILE)
        with open(DOCKERFILE) as f:
            self.text = f.read()
        self.global_args, self.stages = parse_dockerfile(self.text)
        if len(self.stages) < 2:
            raise AssertionError("the Dockerfile has %d stage(s); expected a build stage and a "
                                 "runtime stage" % len(self.stages))
        self.runtime = self.stages[-1]
        # The build stage: the one the runtime stage copies the binary from.
        self.build = None
        for inst in self.runtime.all("COPY"):
            ref = inst.flags.get("from")
            if ref is not None and find_stage(self.stages, ref) is not None:
                self.build = find_stage(self.stages, ref)
        if self.build is None:
            raise AssertionError("the runtime stage copies nothing --from an earlier stage; "
                                 "expected COPY --from=<build stage> of the binary")
        self.env = dict(self.runtime.env)

    def runtime_copy_map(self):
        """{image path: repo path} of the runtime stage's COPYs from the build context (files
        only; a directory maps its files)."""
        out = {}
        workdir = "/"
        for inst in self.runtime.instructions:
            if inst.cmd == "WORKDIR":
                workdir = os.path.join(workdir, inst.args.strip())
            if inst.cmd not in ("COPY", "ADD") or "from" in inst.flags:
                continue
            words = inst.words()
            srcs, dest = words[:-1], words[-1]
            if not dest.startswith("/"):
                dest = os.path.join(workdir, dest)
            for src in srcs:
                local = os.path.join(SOURCE_DIR, src)
                if os.path.isfile(local):
                    target = os.path.join(dest, os.path.basename(src)) \
                        if dest.endswith("/") or len(srcs) > 1 else dest
                    out[os.path.normpath(target)] = local
                elif os.path.isdir(local):
                    for root, _, files in os.walk(local):
                        for name in files:
                            rel = os.path.relpath(os.path.join(root, name), local)
                            target = os.path.normpath(os.path.join(dest, rel))
                            out[target] = os.path.join(root, name)
        return out

    def runtime_packages(self):
        return [p for _, _, pkgs in apt_installs(self.runtime) for p in pkgs]

    def volume_paths(self):
        out = []
        for inst in self.runtime.all("VOLUME"):
            out += [os.path.normpath(v) for v in inst.words()]
        return out

    def exposed_ports(self):
        out = set()
        for inst in self.runtime.all("EXPOSE"):
            for word in inst.words():
                out.add(int(word.split("/")[0]))
        return out

    def entrypoint_argv(self):
        """ENTRYPOINT + CMD as the container runs them (exec form; shell form via /bin/sh -c)."""
        ep = self.runtime.last("ENTRYPOINT")
        cmd = self.runtime.last("CMD")
        ep_argv = (ep.exec_form if ep.exec_form is not None
                   else ["/bin/sh", "-c", ep.args]) if ep is not None else []
        if ep is not None and ep.exec_form is None:
            return ep_argv  # a shell-form ENTRYPOINT ignores CMD
        cmd_argv = (cmd.exec_form if cmd.exec_form is not None
                    else ["/bin/sh", "-c", cmd.args]) if cmd is not None else []
        return ep_argv + cmd_argv

    def healthcheck(self):
        """(flags, argv) of the runtime stage's HEALTHCHECK, argv None for NONE/absent."""
        inst = self.runtime.last("HEALTHCHECK")
        if inst is None:
            return {}, None
        m = re.match(r"(CMD|NONE)\b\s*(.*)$", inst.args, re.S | re.I)
        if not m or m.group(1).upper() == "NONE":
            return inst.flags, None
        rest = m.group(2).strip()
        try:
            value = json.loads(rest) if rest.startswith("[") else None
        except ValueError:
            value = None
        argv = value if isinstance(value, list) else ["/bin/sh", "-c", rest]
        return inst.flags, argv


@functools.lru_cache(maxsize=None)
def context():
    """Built once, on first use, and shared by every test."""
    return Context()


def local_argv(argv):
    """An image command line with the image's trailhook replaced by TRAILHOOK_BIN."""
    if not argv or argv[0] not in IMAGE_BINARY_NAMES:
        raise AssertionError("%r does not run trailhook (%s)"
                             % (argv, " or ".join(IMAGE_BINARY_NAMES)))
    return [BIN] + list(argv[1:])


# ---- static checks of the Dockerfile ---------------------------------------------------------

class DockerfileStages(unittest.TestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.ctx = context()

    def test_stages_share_one_debian12_slim_base(self):
        ctx = self.ctx
        bases = {}
        for stage in (ctx.build, ctx.runtime):
            base = stage.base.split("@")[0]
            base = re.sub(r"^(docker\.io/)?(library/)?", "", base)
            self.assertIn(base, BASE_IMAGES, "%s is FROM %s; expected one of %s (the Debian 12 "
                          "release the libraries are checked against)"
                          % (stage.label(), stage.base, ", ".join(BASE_IMAGES)))
            bases[stage.label()] = stage.base
        self.assertEqual(len(set(bases.values())), 1,
                         "the build and runtime stages name different bases %r: use one, so the "
                         "binary runs on the release whose libraries it was linked with" % bases)

    def test_build_stage_installs_the_ci_deps_build_packages(self):
        ctx = self.ctx
        expected = ci_deps_build_packages()
        self.assertTrue(expected, ".ci/deps build installs nothing?")
        installed = [p for _, _, pkgs in apt_installs(ctx.build) for p in pkgs]
        runs = runs_ci_deps_build(ctx.build)
        if runs:
            installed += expected
            inst, script = runs[0]
            self.assertIn(os.path.normpath(script), ci_deps_image_paths(ctx.build, inst),
                          "%r runs %s, but no COPY before it puts .ci/deps there" % (inst, script))
        self.assertEqual(sorted(set(installed)), sorted(set(expected)),
                         "the build stage installs %s; .ci/deps build installs %s (missing: %s; "
                         "extra: %s). Run .ci/deps build in the Dockerfile, or keep the lists equal"
                         % (sorted(set(installed)), sorted(expected),
                            sorted(set(expected) - set(installed)),
                            sorted(set(installed) - set(expected))))

    def test_build_stage_builds_release_without_tests_and_strips(self):
        ctx = self.ctx
        with open(CMAKELISTS) as f:
            cmakelists = f.read()
        m = re.search(r"option\(\s*(\w+)\s+\"[^\"]*[Tt]ests?[^\"]*\"", cmakelists)
        self.assertIsNotNone(m, "CMakeLists.txt has no option(... \"...tests...\") to turn the "
                             "tests off; the image build would need cmocka")
        tests_option = m.group(1)
        configure = [argv for _, argv in run_commands(ctx.build)
                     if os.path.basename(argv[0]) == "cmake" and "--build" not in argv
                     and "--install" not in argv]
        self.assertTrue(configure, "the build stage never configures with cmake")
        words = " ".join(configure[0])
        self.assertRegex(words, r"-DCMAKE_BUILD_TYPE(:STRING)?=Release\b",
                         "the build stage does not configure -DCMAKE_BUILD_TYPE=Release")
        self.assertRegex(words, r"-D%s(:BOOL)?=(OFF|0|FALSE|NO)\b" % tests_option,
                         "the build stage does not pass -D%s=OFF (CMakeLists.txt's option that "
                         "builds the tests, which need cmocka)" % tests_option)
        self.assertTrue(any(os.path.basename(argv[0]) == "cmake" and "--build" in argv
                            for _, argv in run_commands(ctx.build)),
                        "the build stage never runs cmake --build")
        stripped = any((os.path.basename(argv[0]) == "install" and
                        any(w in ("-s", "--strip") or re.fullmatch(r"-[A-Za-z]*s[A-Za-z]*", w)
                            for w in argv[1:]))
                       or os.path.basename(argv[0]) in ("strip", "llvm-strip")
                       for _, argv in run_commands(ctx.build))
        self.assertTrue(stripped, "the build stage does not strip the binary (install -s or strip)")

    def test_copy_sources_exist_and_are_in_the_build_context(self):
        rules = dockerignore_rules()
        problems = []
        for stage in self.ctx.stages:
            for inst in stage.all("COPY") + stage.all("ADD"):
                if "from" in inst.flags:
                    continue
                for src in inst.words()[:-1]:
                    if re.match(r"[a-z]+://", src):
                        continue
                    matches = glob.glob(os.path.join(SOURCE_DIR, src))
                    if not matches:
                        problems.append("%r: %s does not exist in %s" % (inst, src, SOURCE_DIR))
                        continue
                    for path in matches:
                        rel = os.path.relpath(path, SOURCE_DIR)
                        if dockerignored(rules, rel):
                            problems.append("%r: .dockerignore leaves %s out of the build context"
                                            % (inst, rel))
                            continue
                        if os.path.isdir(path):
                            for root, dirs, files in os.walk(path):
                                dirs[:] = [d for d in dirs if d != "__pycache__"]
                                for name in files:
                                    frel = os.path.relpath(os.path.join(root, name), SOURCE_DIR)
                                    if dockerignored(rules, frel) \
                                            and not name.endswith((".pyc", ".tmp")):
                                        problems.append("%r: .dockerignore leaves %s out"
                                                        % (inst, frel))
        if problems:
            self.fail("\n".join(problems))

    def test_dockerignore_keeps_build_trees_state_and_secrets_out(self):
        self.assertTrue(os.path.isfile(DOCKERIGNORE), "no .dockerignore beside the Dockerfile")
        rules = dockerignore_rules()
        for rel in (".git", "build", "build-asan", "build-anything/CMakeCache.txt", "var",
                    "var/trailhook.db", "deploy/secrets/trailhook_api_keys"):
            self.assertTrue(dockerignored(rules, rel), ".dockerignore does not leave %s out of the "
                            "build context" % rel)

    def test_copy_from_build_stage_copies_what_it_produced(self):
        ctx = self.ctx
        problems = []
        for inst in ctx.runtime.all("COPY"):
            ref = inst.flags.get("from")
            stage = find_stage(ctx.stages, ref) if ref is not None else None
            if stage is None:
                continue
            produced = produced_paths(stage, problems)
            for src in inst.words()[:-1]:
                src = os.path.normpath(src)
                if not any(src == p or src.startswith(p.rstrip("/") + "/") for p in produced):
                    problems.append("%r: %s is not produced by %s (it makes %s)"
                                    % (inst, src, stage.label(), sorted(produced)))
        if problems:
            self.fail("\n".join(problems))

    def test_binary_is_copied_to_the_entrypoint(self):
        ctx = self.ctx
        argv = ctx.entrypoint_argv()
        self.assertTrue(argv and argv[0] in IMAGE_BINARY_NAMES,
                        "ENTRYPOINT/CMD %r does not run trailhook" % argv)
        dests = []
        for inst in ctx.runtime.all("COPY"):
            if inst.flags.get("from") and find_stage(ctx.stages, inst.flags["from"]) is ctx.build:
                words = inst.words()
                dest = words[-1]
                dests += [os.path.join(dest, os.path.basename(s)) if dest.endswith("/") else dest
                          for s in words[:-1]]
        self.assertIn("/usr/local/bin/trailhook", [os.path.normpath(d) for d in dests],
                      "the runtime stage does not copy the built binary to "
                      "/usr/local/bin/trailhook (on PATH, where ENTRYPOINT and HEALTHCHECK find it)"
                      )

    def test_runtime_stage_has_no_dev_packages_and_no_compiler(self):
        ctx = self.ctx
        pkgs = ctx.runtime_packages()
        self.assertTrue(pkgs, "the runtime stage installs no packages")
        bad = [p for p in pkgs if p.endswith("-dev") or p in COMPILER_PACKAGES
               or p.startswith(COMPILER_PREFIXES)]
        self.assertEqual(bad, [], "the runtime stage installs build tools: %s" % bad)
        self.assertEqual(runs_ci_deps_build(ctx.runtime), [],
                         "the runtime stage runs .ci/deps build (the toolchain)")
        for inst, argv, _ in apt_installs(ctx.runtime):
            self.assertIn("--no-install-recommends", argv,
                          "%r: apt-get install without --no-install-recommends" % inst)
            self.assertTrue(any(w in ("--yes", "--assume-yes") or re.fullmatch(r"-[a-z]*y[a-z]*", w)
                                for w in argv), "%r: apt-get install without -y" % inst)
            self.assertRegex(inst.args, r"rm -rf /var/lib/apt/lists",
                             "%r: the apt lists are not removed in the same RUN" % inst)

    def test_runtime_stage_installs_ca_certificates(self):
        self.assertIn("ca-certificates", self.ctx.runtime_packages(),
                      "the runtime stage does not install ca-certificates: libcurl could not "
                      "verify Slack's and PagerDuty's certificates")

    def test_runtime_packages_exist_in_debian12(self):
        ok, why = host_is_image_release()
        if not ok:
            self.skipTest(why)
        pkgs = installed_packages()
        unknown = [p for p in self.ctx.runtime_packages() if p not in pkgs and not apt_knows(p)]
        self.assertEqual(unknown, [], "Debian %s has no package(s) %s"
                         % (DEBIAN_VERSION_ID, unknown))

    def test_user_is_numeric_and_not_root(self):
        ctx = self.ctx
        user = ctx.runtime.last("USER")
        self.assertIsNotNone(user, "the runtime stage has no USER: the service would run as root")
        uid, _, gid = user.args.strip().partition(":")
        self.assertRegex(uid, r"^\d+$", "USER %s: give a numeric UID (uid:gid) so Kubernetes' "
                         "runAsNonRoot can verify it without reading /etc/passwd" % user.args)
        self.assertNotEqual(int(uid), 0, "USER %s is root" % user.args)
        if gid:
            self.assertRegex(gid, r"^\d+$", "USER %s: numeric GID expected" % user.args)
            self.assertNotEqual(int(gid), 0, "USER %s: group root" % user.args)
        later = [i for i in ctx.runtime.instructions[ctx.runtime.instructions.index(user):]
                 if i.cmd == "RUN"]
        self.assertEqual(later, [], "RUN after USER: %r" % later)
        # The user exists in the image and owns the state volume.
        runs = " ".join(i.args for i in ctx.runtime.all("RUN"))
        self.assertRegex(runs, r"(useradd|adduser)\b[^&;]*(--uid|-u)\s+%s\b" % uid,
                         "no useradd/adduser creates UID %s in the runtime stage" % uid)
        for vol in ctx.volume_paths():
            owned = any(
                (os.path.basename(argv[0]) == "install" and vol in argv and "-d" in argv
                 and any(argv[k] == "-o" and argv[k + 1] in (uid, "trailhook")
                         for k in range(len(argv) - 1)))
                or (os.path.basename(argv[0]) == "chown" and vol in argv
                    and re.match(r"(%s|trailhook)(:|$)" % uid, [w for w in argv[1:]
                                                                 if not w.startswith("-")][0]))
                for _, argv in run_commands(ctx.runtime))
            self.assertTrue(owned, "VOLUME %s is not created owned by UID %s (install -d -o or "
                            "chown): the service could not write its state" % (vol, uid))

    def test_healthcheck_runs_trailhook_healthcheck(self):
        flags, argv = self.ctx.healthcheck()
        self.assertIsNotNone(argv, "the runtime stage has no HEALTHCHECK CMD")
        self.assertTrue(argv[0] in IMAGE_BINARY_NAMES and argv[1:2] == ["healthcheck"]
                        and len(argv) <= 3,
                        "HEALTHCHECK %r: expected the exec form [\"trailhook\", \"healthcheck\"] "
                        "(slim has no curl, and no shell is needed)" % argv)
        timeout = parse_duration(flags.get("timeout", "30s"))
        interval = parse_duration(flags.get("interval", "30s"))
        self.assertGreaterEqual(timeout, 4, "HEALTHCHECK --timeout=%s is below the 3 s the "
                                "command itself waits for /healthz" % flags.get("timeout"))
        self.assertLess(timeout, interval, "HEALTHCHECK --timeout not below --interval")
        self.assertLessEqual(interval, 120, "HEALTHCHECK --interval above 2 minutes")

    def test_stopsignal_is_sigterm(self):
        inst = self.ctx.runtime.last("STOPSIGNAL")
        self.assertIsNotNone(inst, "no STOPSIGNAL")
        self.assertIn(inst.args.strip().upper(), ("SIGTERM", "TERM", "15"),
                      "STOPSIGNAL %s: trailhook drains on SIGTERM" % inst.args)

    def test_expose_and_volume_match_the_environment(self):
        ctx = self.ctx
        self.assertIn("TRAILHOOK_LISTEN", ctx.env, "the image sets no TRAILHOOK_LISTEN: the "
                      "service would listen on 127.0.0.1, unreachable from outside the container")
        host, port = split_host_port(ctx.env["TRAILHOOK_LISTEN"])
        self.assertIn(host, ("0.0.0.0", "::", ""), "TRAILHOOK_LISTEN=%s is not a wildcard "
                      "address: nothing outside the container reaches it"
                      % ctx.env["TRAILHOOK_LISTEN"])
        self.assertIn(port, ctx.exposed_ports(), "EXPOSE %s lacks TRAILHOOK_LISTEN's port %d"
                      % (sorted(ctx.exposed_ports()), port))
        if "TRAILHOOK_ADMIN_LISTEN" in ctx.env:
            aport = split_host_port(ctx.env["TRAILHOOK_ADMIN_LISTEN"])[1]
            self.assertIn(aport, ctx.exposed_ports(), "EXPOSE lacks TRAILHOOK_ADMIN_LISTEN's port")
        self.assertIn("TRAILHOOK_STATE_DIR", ctx.env, "the image sets no TRAILHOOK_STATE_DIR")
        self.assertEqual(ctx.volume_paths(), [os.path.normpath(ctx.env["TRAILHOOK_STATE_DIR"])],
                         "VOLUME %s is not TRAILHOOK_STATE_DIR %s"
                         % (ctx.volume_paths(), ctx.env["TRAILHOOK_STATE_DIR"]))
        config = ctx.env.get("TRAILHOOK_CONFIG")
        if config is not None:
            self.assertIn(os.path.normpath(config), ctx.runtime_copy_map(),
                          "TRAILHOOK_CONFIG=%s, but no COPY puts a file there" % config)

    def test_version_label_matches_the_binary(self):
        label = self.ctx.runtime.labels.get("org.opencontainers.image.version")
        if label is None:
            self.skipTest("no org.opencontainers.image.version label")
        r = subprocess.run([BIN, "--version"], stdout=subprocess.PIPE, env=base_env(), timeout=30)
        self.assertEqual(r.stdout.decode().split()[-1], label,
                         "LABEL org.opencontainers.image.version=%s but the binary says %s"
                         % (label, r.stdout.decode().strip()))


def produced_paths(stage, problems):
    """Paths @p stage makes: COPY destinations, cmake -B DIR's binary, install/cp/strip -o
    targets (whose sources must have been produced before)."""
    produced = set()
    workdir = "/"

    def absolute(p):
        return os.path.normpath(p if p.startswith("/") else os.path.join(workdir, p))

    def made(p):
        return any(p == q or p.startswith(q.rstrip("/") + "/") for q in produced)

    for inst in stage.instructions:
        if inst.cmd == "WORKDIR":
            workdir = absolute(inst.args.strip())
            produced.add(workdir)
        elif inst.cmd in ("COPY", "ADD"):
            words = inst.words()
            dest = absolute(words[-1])
            for src in words[:-1]:
                produced.add(os.path.join(dest, os.path.basename(src))
                             if words[-1].endswith("/") and not src.endswith("/") else dest)
        elif inst.cmd == "RUN":
            for _, argv in run_commands(_single_run_stage(inst)):
                tool = os.path.basename(argv[0])
                if tool == "cmake":
                    for k, w in enumerate(argv):
                        if w == "-B" and k + 1 < len(argv):
                            produced.add(os.path.join(absolute(argv[k + 1]), "trailhook"))
                        elif w.startswith("-B") and len(w) > 2:
                            produced.add(os.path.join(absolute(w[2:]), "trailhook"))
                elif tool in ("install", "cp", "mv", "ln"):
                    if tool == "install" and "-d" in argv:
                        produced.update(absolute(w) for w in argv[1:] if not w.startswith("-")
                                        and not _is_option_value(argv, w))
                        continue
                    operands = [w for w in argv[1:] if not w.startswith("-")
                                and not _is_option_value(argv, w)]
                    if len(operands) < 2:
                        continue
                    srcs, dest = operands[:-1], absolute(operands[-1])
                    for src in srcs:
                        if not made(absolute(src)):
                            problems.append("%r: %s %s, which %s did not produce"
                                            % (inst, tool, src, stage.label()))
                    produced.add(dest)
                elif tool in ("strip", "llvm-strip") and "-o" in argv:
                    produced.add(absolute(argv[argv.index("-o") + 1]))
    return produced


def ci_deps_image_paths(stage, before):
    """Where the COPYs of @p stage before the instruction @p before put .ci/deps."""
    out, workdir = set(), "/"
    for inst in stage.instructions:
        if inst is before:
            break
        if inst.cmd == "WORKDIR":
            workdir = os.path.normpath(os.path.join(workdir, inst.args.strip()))
        if inst.cmd not in ("COPY", "ADD") or "from" in inst.flags:
            continue
        words = inst.words()
        dest = os.path.join(workdir, words[-1])
        for src in words[:-1]:
            norm = os.path.normpath(src)
            if norm == ".ci/deps":
                out.add(os.path.normpath(os.path.join(dest, "deps") if words[-1].endswith("/")
                                         else dest))
            elif norm == ".ci":
                out.add(os.path.normpath(os.path.join(dest, "deps")))
            elif norm == ".":
                out.add(os.path.normpath(os.path.join(dest, ".ci", "deps")))
    # The script as RUN names it: relative names resolve against the WORKDIR.
    return out | {os.path.relpath(p, workdir) for p in out} | \
        {"./" + os.path.relpath(p, workdir) for p in out}


def _single_run_stage(inst):
    s = Stage(0, "", None, 0)
    s.instructions = [inst]
    return s


def _is_option_value(argv, word):
    k = argv.index(word)
    return k > 0 and argv[k - 1] in ("-m", "-o", "-g", "--mode", "--owner", "--group", "-t")


# ---- libraries -------------------------------------------------------------------------------

class RuntimeLibraries(unittest.TestCase):

    def test_every_linked_library_comes_with_the_runtime_stage(self):
        ok, why = host_is_image_release()
        if not ok:
            self.skipTest(why)
        if not os.access(BIN, os.X_OK):
            self.fail("TRAILHOOK_BIN %s is not an executable" % BIN)
        rc, libs = ldd_libraries(BIN)
        self.assertEqual(rc, 0, "ldd %s failed" % BIN)
        self.assertTrue(libs, "ldd %s lists no libraries (a static binary?)" % BIN)
        pkgs = installed_packages()
        base_roots = {n for n, p in pkgs.items() if p["essential"] or p["priority"] == "required"}
        base = dependency_closure(pkgs, base_roots)
        runtime_pkgs = set(context().runtime_packages())
        provided = dependency_closure(pkgs, runtime_pkgs) | base
        problems, checked = [], []
        for soname, path in libs:
            if soname.startswith(SKIPPED_LIBS):
                continue
            if path is None:
                problems.append("%s: ldd cannot resolve it on this machine" % soname)
                continue
            owners, where = dpkg_owners(path)
            if not owners:
                problems.append("%s (%s): no Debian package owns it (tried %s)"
                                % (soname, path, ", ".join(where)))
                continue
            checked.append(soname)
            if not set(owners) & provided:
                problems.append("%s (%s) is in %s, which the runtime stage neither installs nor "
                                "gets through a dependency of %s or the base image"
                                % (soname, where, " / ".join(owners), sorted(runtime_pkgs)))
        if problems:
            self.fail("\n".join(problems))
        self.assertTrue(checked, "no library checked")


# ---- compose.yaml ----------------------------------------------------------------------------

class ComposeFile(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.ctx = context()
        cls.doc = load_compose()
        cls.name, cls.service = compose_service(cls.doc)
        cls.env = compose_service_env(cls.service or {})

    def setUp(self):
        self.assertIsNotNone(self.service, "no service in %s builds an image" % COMPOSE_FILE)

    def image_env(self):
        env = dict(self.ctx.env)
        env.update(self.env)
        return env

    def test_builds_from_the_repository_dockerfile(self):
        build = self.service["build"]
        if isinstance(build, str):
            build = {"context": build}
        ctxdir = os.path.normpath(os.path.join(os.path.dirname(COMPOSE_FILE),
                                               build.get("context", ".")))
        self.assertEqual(ctxdir, os.path.normpath(SOURCE_DIR),
                         "build.context %s is not the repository root" % build.get("context"))
        dockerfile = os.path.normpath(os.path.join(ctxdir, build.get("dockerfile", "Dockerfile")))
        self.assertEqual(dockerfile, os.path.normpath(DOCKERFILE),
                         "build.dockerfile %s is not the repository's Dockerfile" % dockerfile)
        self.assertNotIn("target", build, "build.target would build a stage other than the last")

    def test_restart_user_and_healthcheck(self):
        svc = self.service
        self.assertEqual(svc.get("restart"), "unless-stopped", "restart is not unless-stopped")
        user = svc.get("user")
        if user is not None:
            self.assertNotIn(str(user).split(":")[0], ("0", "root"), "user: %s is root" % user)
        hc = svc.get("healthcheck")
        if hc is not None:
            self.assertFalse(hc.get("disable"), "healthcheck disabled")
            test = hc.get("test")
            if test is not None:
                words = shlex.split(test) if isinstance(test, str) else list(test)
                if words and words[0] in ("CMD", "CMD-SHELL"):
                    words = words[1:] if words[0] == "CMD" else shlex.split(" ".join(words[1:]))
                self.assertEqual(words[:2] if words and words[0] == "trailhook" else words,
                                 ["trailhook", "healthcheck"][:len(words[:2])],
                                 "the healthcheck does not run trailhook healthcheck: %r" % test)
        stop_signal = svc.get("stop_signal")
        if stop_signal is not None:
            self.assertIn(str(stop_signal).upper(), ("SIGTERM", "TERM", "15"))
        self.assertNotIn("network_mode", svc)
        self.assertIsNot(svc.get("privileged"), True, "privileged: true")

    def test_publishes_the_listen_port_on_loopback_only(self):
        listen_port = split_host_port(self.image_env()["TRAILHOOK_LISTEN"])[1]
        ports = self.service.get("ports") or []
        self.assertTrue(ports, "no ports published")
        targets = []
        for p in ports:
            if isinstance(p, dict):
                host_ip, target = p.get("host_ip"), int(p.get("target"))
            else:
                # "${TH_HOST_PORTS:-8080}" -> "8080"; a host port may be a range ("8080-8081",
                # one port of it per replica with --scale).
                text = compose_interpolate(str(p)).split("/")[0]
                m = re.fullmatch(r"(?:(\[[^\]]+\]|[^:]+):)?(?:(\d*(?:-\d+)?):)?(\d+)", text)
                self.assertIsNotNone(m, "ports entry %r not understood" % p)
                host_ip, target = m.group(1), int(m.group(3))
                if m.group(2) is None and re.fullmatch(r"\d+(-\d+)?", m.group(1) or ""):
                    host_ip = None  # "8080:8080"
            self.assertIn(host_ip, ("127.0.0.1", "[::1]", "::1"),
                          "ports entry %r is published on every address; bind it to 127.0.0.1 "
                          "and put a TLS proxy in front" % p)
            targets.append(target)
        self.assertIn(listen_port, targets, "no published port reaches TRAILHOOK_LISTEN's port %d"
                      % listen_port)

    def test_state_volume_at_the_image_volume(self):
        vol = self.ctx.volume_paths()[0]
        named = self.doc.get("volumes") or {}
        found = None
        for v in self.service.get("volumes") or []:
            if isinstance(v, dict):
                source, target = v.get("source"), v.get("target")
            else:
                parts = str(v).split(":")
                source, target = (parts[0], parts[1]) if len(parts) >= 2 else (None, parts[0])
            if target is not None and os.path.normpath(target) == vol:
                found = source
        self.assertIsNotNone(found, "nothing is mounted at the image's VOLUME %s: the state "
                             "would live in an anonymous volume" % vol)
        self.assertIn(found, named, "the volume %r at %s is not a named volume declared under "
                      "top-level volumes:" % (found, vol))

    def test_stop_grace_period_exceeds_the_drain_grace(self):
        env = self.image_env()
        grace = env.get("TRAILHOOK_DRAIN_GRACE_SECONDS")
        if grace is None:
            image_config = os.path.normpath(env.get("TRAILHOOK_CONFIG", ""))
            config = self.ctx.runtime_copy_map().get(image_config)
            doc = yaml.safe_load(read_text(config)) if config else None
            grace = (doc or {}).get("drain_grace_seconds", DEFAULT_DRAIN_GRACE)
        grace = float(grace)
        period = self.service.get("stop_grace_period")
        self.assertIsNotNone(period, "no stop_grace_period: Docker's default 10 s does not leave "
                             "the %g s drain grace room" % grace)
        self.assertGreaterEqual(parse_duration(period), grace + DRAIN_MARGIN_SECONDS,
                                "stop_grace_period %s is not above drain_grace_seconds %g + %d s"
                                % (period, grace, DRAIN_MARGIN_SECONDS))

    def test_redis_service_backs_the_redis_state_backend(self):
        env = self.image_env()
        if env.get("TRAILHOOK_STATE_BACKEND", "sqlite") != "redis":
            self.skipTest("compose.yaml keeps the sqlite state backend")
        services = self.doc.get("services") or {}
        url = env.get("TRAILHOOK_STATE_REDIS_URL")
        if url is None:
            self.assertIn("TRAILHOOK_STATE_REDIS_URL_FILE", env, "TRAILHOOK_STATE_BACKEND=redis "
                          "without TRAILHOOK_STATE_REDIS_URL or TRAILHOOK_STATE_REDIS_URL_FILE")
            names = [n for n, v in services.items() if isinstance(v, dict)
                     and str(v.get("image", "")).split("/")[-1].startswith("redis:")]
            self.assertEqual(len(names), 1, "no single redis service in compose.yaml")
            name, port = names[0], 6379
        else:
            m = REDIS_URL_RE.fullmatch(url)
            self.assertIsNotNone(m, "TRAILHOOK_STATE_REDIS_URL %r is not redis://host:port/db"
                                 % url)
            name, port = m.group(1), int(m.group(2) or 6379)
            self.assertIn(name, services, "the Redis URL names host %r, which is no service of "
                          "compose.yaml (%s)" % (name, sorted(services)))
        redis = services[name]
        image = str(redis.get("image", ""))
        self.assertRegex(image.split("/")[-1], r"^redis:\d", "service %s runs %r, not a "
                         "versioned redis image" % (name, image))
        command = redis.get("command") or []
        words = shlex.split(command) if isinstance(command, str) else [str(w) for w in command]
        self.assertIn("--appendonly", words, "redis without --appendonly yes: a Redis restart "
                      "would lose every alert and undelivered notification since the last "
                      "snapshot")
        self.assertEqual(words[words.index("--appendonly") + 1], "yes")
        if "--appendfsync" in words:
            self.assertIn(words[words.index("--appendfsync") + 1], ("always", "everysec"))
        listen = int(words[words.index("--port") + 1]) if "--port" in words else 6379
        self.assertEqual(port, listen, "the Redis URL's port %d is not the one redis listens on "
                         "(%d)" % (port, listen))
        if "--maxmemory-policy" in words:
            self.assertEqual(words[words.index("--maxmemory-policy") + 1], "noeviction",
                             "an evicting maxmemory-policy would drop alerts and outbox rows")
        named = self.doc.get("volumes") or {}
        data = None
        for v in redis.get("volumes") or []:
            if isinstance(v, dict):
                source, target = v.get("source"), v.get("target")
            else:
                parts = str(v).split(":")
                source, target = (parts[0], parts[1]) if len(parts) >= 2 else (None, parts[0])
            if target is not None and os.path.normpath(target) == "/data":
                data = source
        self.assertIn(data, named, "redis's /data (the AOF) is not on a named volume declared "
                      "under top-level volumes: (%r)" % data)
        hc = redis.get("healthcheck") or {}
        test = hc.get("test") or []
        test = shlex.split(test) if isinstance(test, str) else [str(w) for w in test]
        self.assertIn("redis-cli", test, "redis has no `redis-cli ping` healthcheck")
        self.assertIn("ping", [w.lower() for w in test])
        for p in redis.get("ports") or []:
            host_ip = p.get("host_ip") if isinstance(p, dict) else \
                (str(p).split(":")[0] if str(p).count(":") >= 2 else None)
            self.assertIn(host_ip, ("127.0.0.1", "[::1]", "::1"), "redis publishes %r on "
                          "every address, without a password" % p)
        deps = self.service.get("depends_on") or {}
        self.assertIsInstance(deps, dict, "depends_on should be the long form, so trailhook "
                              "waits for redis's healthcheck")
        self.assertIn(name, deps, "the trailhook service does not depend on %s" % name)
        self.assertEqual((deps[name] or {}).get("condition"), "service_healthy",
                         "trailhook should start once %s is healthy" % name)
        self.assertEqual(redis.get("restart"), "unless-stopped")

    def test_secrets_match_the_file_variables(self):
        env = self.image_env()
        top = self.doc.get("secrets") or {}
        mounted = {}
        for s in self.service.get("secrets") or []:
            if isinstance(s, dict):
                source = s.get("source")
                target = s.get("target") or source
            else:
                source = target = str(s)
            path = target if target.startswith("/") else SECRETS_DIR + target
            mounted[path] = source
        file_vars = {k: v for k, v in env.items()
                     if k.startswith("TRAILHOOK_") and k.endswith("_FILE")
                     and v.startswith(SECRETS_DIR)}
        self.assertIn("TRAILHOOK_API_KEYS_FILE", file_vars,
                      "no TRAILHOOK_API_KEYS_FILE=/run/secrets/...: the image refuses to start "
                      "on 0.0.0.0 without credentials")
        for var, path in file_vars.items():
            self.assertIn(path, mounted, "%s=%s, but no secret is mounted there (mounted: %s)"
                          % (var, path, sorted(mounted)))
        for path, source in mounted.items():
            self.assertIn(path, file_vars.values(), "secret %s is mounted at %s but no "
                          "TRAILHOOK_*_FILE reads it" % (source, path))
            self.assertIn(source, top, "secret %s is not declared under top-level secrets:"
                          % source)
            spec = top[source] or {}
            self.assertIn("file", spec, "secret %s has no file:" % source)
            local = os.path.normpath(os.path.join(os.path.dirname(COMPOSE_FILE), spec["file"]))
            rel = os.path.relpath(local, SOURCE_DIR)
            self.assertFalse(rel.startswith(".."), "secret file %s is outside the repository"
                             % local)
            self.assertTrue(dockerignored(dockerignore_rules(), rel),
                            "secret file %s would be sent in the build context" % rel)
            if shutil.which("git") and os.path.isdir(os.path.join(SOURCE_DIR, ".git")):
                r = subprocess.run(["git", "-C", SOURCE_DIR, "check-ignore", "-q", rel],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                self.assertEqual(r.returncode, 0, "secret file %s is not git-ignored" % rel)
                r = subprocess.run(["git", "-C", SOURCE_DIR, "ls-files", "--error-unmatch", rel],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                self.assertNotEqual(r.returncode, 0, "secret file %s is committed" % rel)


# ---- the binary against the environment ------------------------------------------------------

class Environment:
    """The image's environment (Dockerfile ENV, then compose.yaml's), remapped to this machine:
    listen ports to free ports (hosts kept), TRAILHOOK_STATE_DIR to a temp dir, files the image
    COPYs to their sources, *_FILE secrets under /run/secrets to temp files, the Redis URL (or
    its file) to @p redis (a started RedisServer; the URL's database kept) or, without one, to a
    loopback port nothing listens on."""

    def __init__(self, testcase, with_compose=True, redis=None):
        ctx = context()
        self.tmp = tempfile.mkdtemp(prefix="th-docker-")
        testcase.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        image_env = dict(ctx.env)
        self.service = (compose_service(load_compose())[1] or {}) if with_compose else {}
        image_env.update(compose_service_env(self.service))
        self.image_env = image_env
        self.api_key = "th-docker-" + uuid.uuid4().hex
        self.ports = {}  # image port -> local port
        self.redis = redis
        self.redis_db = 0
        self._redis_url = None
        copies = ctx.runtime_copy_map()
        env = base_env()
        for key, value in image_env.items():
            if not key.startswith("TRAILHOOK_"):
                env[key] = value
                continue
            if key in ("TRAILHOOK_LISTEN", "TRAILHOOK_ADMIN_LISTEN"):
                host, port = split_host_port(value)
                self.ports.setdefault(port, free_port())
                value = join_host_port(host, self.ports[port])
            elif key == "TRAILHOOK_STATE_DIR":
                value = os.path.join(self.tmp, "state")
                os.makedirs(value, mode=0o750, exist_ok=True)
            elif key == "TRAILHOOK_STATE_REDIS_URL":
                value = self.redis_url(value)
            elif os.path.normpath(value) in copies:
                value = copies[os.path.normpath(value)]
            elif key.endswith("_FILE") and value.startswith(SECRETS_DIR):
                value = self.secret_file(key, value)
            env[key] = value
        self.env = env

    def secret_file(self, key, image_path):
        d = os.path.join(self.tmp, "secrets")
        os.makedirs(d, mode=0o700, exist_ok=True)
        path = os.path.join(d, os.path.basename(image_path))
        if key == "TRAILHOOK_API_KEYS_FILE":
            content = self.api_key
        elif key == "TRAILHOOK_STATE_REDIS_URL_FILE":
            content = self.redis_url(None)
        elif "URL" in key:
            content = "http://127.0.0.1:9/%s" % uuid.uuid4().hex  # discard port: never delivered
        elif key == "TRAILHOOK_BASIC_AUTH_FILE":
            content = "eventbridge:" + uuid.uuid4().hex
        else:
            content = uuid.uuid4().hex
        with open(path, "w") as f:
            f.write(content + "\n")
        os.chmod(path, 0o400)
        return path

    def redis_url(self, image_url):
        """The local stand-in for the image's Redis URL (None: a URL from a secret file)."""
        if self._redis_url is None:
            m = REDIS_URL_RE.fullmatch(image_url or "")
            self.redis_db = int(m.group(3)) if m and m.group(3) else 0
            if self.redis is not None:
                self._redis_url = self.redis.url(self.redis_db)
            else:  # unreachable: nothing listens there
                self._redis_url = "redis://127.0.0.1:%d/%d" % (free_port(), self.redis_db)
        return self._redis_url

    def backend(self):
        return self.image_env.get("TRAILHOOK_STATE_BACKEND", "sqlite")

    def listen_port(self):
        return self.ports[split_host_port(self.image_env["TRAILHOOK_LISTEN"])[1]]


class BinaryAcceptsEnvironment(unittest.TestCase):
    maxDiff = None

    def setUp(self):
        if not os.access(BIN, os.X_OK):
            self.fail("TRAILHOOK_BIN %s is not an executable" % BIN)
        self.cwd = tempfile.mkdtemp(prefix="th-docker-eval-")
        self.addCleanup(shutil.rmtree, self.cwd, ignore_errors=True)

    def load_config(self, env):
        """`trailhook eval -` on one empty event: loads the whole configuration (file, env,
        secret files) like serve, without listening or opening the store. Run in a temp dir, so
        a relative path in a placeholder value lands there. @return CompletedProcess."""
        return subprocess.run([BIN, "eval", "-"], input=b"{}", stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=env, timeout=60, cwd=self.cwd)

    def test_image_and_compose_environment_is_accepted(self):
        for with_compose in (False, True):
            e = Environment(self, with_compose)
            r = self.load_config(e.env)
            where = "the Dockerfile's ENV" + (" + compose.yaml's environment"
                                              if with_compose else "")
            self.assertEqual(r.returncode, 0, "trailhook rejects %s (%s): %s"
                             % (where, {k: v for k, v in e.image_env.items()
                                        if k.startswith("TRAILHOOK_")},
                                r.stderr.decode(errors="replace").strip()))

    def test_every_variable_named_in_the_files_is_known(self):
        """Commented-out examples count too: a typo there would stop whoever uncomments it."""
        bogus = "TRAILHOOK_NO_SUCH_SETTING_" + uuid.uuid4().hex[:8].upper()
        r = self.load_config(dict(base_env(), **{bogus: "1"}))
        self.assertIn(UNKNOWN_VAR_MESSAGE, r.stderr.decode(errors="replace"),
                      "an unknown variable no longer produces %r; update this test"
                      % UNKNOWN_VAR_MESSAGE)
        names = set()
        for path in (DOCKERFILE, COMPOSE_FILE):
            names |= set(re.findall(r"\bTRAILHOOK_[A-Z0-9_]*[A-Z0-9]\b", read_text(path)))
        names.discard("TRAILHOOK_BIN")  # this test's own variable, named in comments
        self.assertTrue(names)
        unknown = []
        for name in sorted(names):
            r = self.load_config(dict(base_env(), **{name: "1"}))
            if UNKNOWN_VAR_MESSAGE in r.stderr.decode(errors="replace"):
                unknown.append(name)
        self.assertEqual(unknown, [], "the Dockerfile or compose.yaml names variables trailhook "
                         "does not know: %s" % unknown)


class ContainerBehaviour(unittest.TestCase):
    """The binary as the container runs it."""

    def setUp(self):
        if not os.access(BIN, os.X_OK):
            self.fail("TRAILHOOK_BIN %s is not an executable" % BIN)
        self.ctx = context()
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)

    def start(self, env, tmp):
        argv = local_argv(self.ctx.entrypoint_argv())
        out = open(os.path.join(tmp, "stdout"), "wb")
        err = open(os.path.join(tmp, "stderr"), "wb")
        self.addCleanup(out.close)
        self.addCleanup(err.close)
        p = subprocess.Popen(argv, env=env, stdout=out, stderr=err, cwd=tmp)
        self.procs.append(p)
        return p

    def healthcheck(self, env):
        flags, argv = self.ctx.healthcheck()
        self.assertIsNotNone(argv, "no HEALTHCHECK CMD")
        timeout = parse_duration(flags.get("timeout", "30s"))
        try:
            return subprocess.run(local_argv(argv), env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, timeout=timeout)
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(argv, -1, b"", b"timed out")

    def post_event(self, port, headers, matching=False):
        """@return (status, body, {lower-case header: value})."""
        if matching:  # the spec's "AMI made public" record: an alert, written to the store
            with open(MATCHING_EVENT) as f:
                doc = json.load(f)
            doc["eventID"] = str(uuid.uuid4())
            doc["requestParameters"]["imageId"] = "ami-" + uuid.uuid4().hex[:17]
        else:
            doc = {"eventVersion": "1.08", "eventID": str(uuid.uuid4()),
                   "eventSource": "ec2.amazonaws.com", "eventName": "DescribeImages",
                   "awsRegion": "us-east-1", "recipientAccountId": "123456789012",
                   "eventTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("POST", "/events", body=json.dumps(doc),
                         headers=dict({"Content-Type": "application/json"}, **headers))
            resp = conn.getresponse()
            return resp.status, resp.read(), {k.lower(): v for k, v in resp.getheaders()}
        finally:
            conn.close()

    def test_runs_healthy_takes_events_and_drains_on_stopsignal(self):
        redis = None
        backend = compose_service_env(compose_service(load_compose())[1] or {}).get(
            "TRAILHOOK_STATE_BACKEND", "sqlite")
        if backend == "redis" and redis_server_path() is not None:
            redis = RedisServer(self).start()
        e = Environment(self, with_compose=True, redis=redis)
        port = e.listen_port()
        host = split_host_port(e.env["TRAILHOOK_LISTEN"])[0]
        self.assertIn(host, ("0.0.0.0", "::"), "the image does not listen on a wildcard address")
        r = self.healthcheck(e.env)
        self.assertNotEqual(r.returncode, 0, "the HEALTHCHECK passes with nothing listening")

        p = self.start(e.env, e.tmp)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if p.poll() is not None:
                self.fail("trailhook exited with %d at start:\n%s"
                          % (p.returncode, read_text(os.path.join(e.tmp, "stderr"))))
            r = self.healthcheck(e.env)
            if r.returncode == 0:
                break
            if time.monotonic() > deadline:
                self.fail("the HEALTHCHECK command still fails after %gs: %s\n%s"
                          % (START_TIMEOUT, r.stderr.decode(errors="replace"),
                             read_text(os.path.join(e.tmp, "stderr"))))
            time.sleep(0.2)

        status, _, _ = self.post_event(port, {})
        self.assertEqual(status, 401, "POST /events without a key: %d, expected 401" % status)
        status, body, headers = self.post_event(port, {"X-Api-Key": e.api_key},
                                                matching=e.backend() == "redis")
        if e.backend() == "redis" and redis is None:
            # No redis-server here: the URL points where nothing listens. The service runs
            # (the HEALTHCHECK passed above) and refuses what it cannot store.
            self.assertEqual(status, 503, "POST /events with Redis unreachable: %d %s, expected "
                             "503" % (status, body))
            self.assertTrue(headers.get("retry-after"), "503 without Retry-After")
        else:
            self.assertIn(status, (200, 202), "POST /events with the key from "
                          "TRAILHOOK_API_KEYS_FILE: %d %s\n%s"
                          % (status, body, read_text(os.path.join(e.tmp, "stderr"))[-3000:]))

        sig = self.ctx.runtime.last("STOPSIGNAL")
        signame = sig.args.strip().upper() if sig is not None else "SIGTERM"
        signum = int(signame) if signame.isdigit() else getattr(
            signal, signame if signame.startswith("SIG") else "SIG" + signame)
        grace = parse_duration(e.service.get("stop_grace_period", "10s"))  # Docker's default
        started = time.monotonic()
        p.send_signal(signum)
        try:
            rc = p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.fail("trailhook did not exit within stop_grace_period (%gs) of %s"
                      % (grace, signame))
        stderr = read_text(os.path.join(e.tmp, "stderr"))
        self.assertEqual(rc, 0, "exit %d after %s:\n%s" % (rc, signame, stderr))
        self.assertLess(time.monotonic() - started, grace)
        for marker in SANITIZER_MARKERS:
            self.assertNotIn(marker, stderr)
        if e.backend() != "redis":
            self.assertTrue(os.listdir(e.env["TRAILHOOK_STATE_DIR"]),
                            "nothing was written under TRAILHOOK_STATE_DIR")
        elif redis is not None:
            self.assertGreater(redis.command("DBSIZE", db=e.redis_db), 0,
                               "the event's alert was not written to Redis (database %d)"
                               % e.redis_db)

    def test_refuses_to_start_without_credentials(self):
        e = Environment(self, with_compose=False)
        for key in list(e.env):
            if key.startswith(("TRAILHOOK_API_KEYS", "TRAILHOOK_BASIC_AUTH")):
                del e.env[key]
        p = self.start(e.env, e.tmp)
        try:
            rc = p.wait(timeout=REFUSE_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.fail("the image's ENV alone (no credential) starts a service on %s with no "
                      "authentication" % e.env["TRAILHOOK_LISTEN"])
        stderr = read_text(os.path.join(e.tmp, "stderr"))
        self.assertNotEqual(rc, 0, "exit 0 without credentials")
        self.assertRegex(stderr, r"(?i)credential|api_keys|auth",
                         "no message on stderr explains the refusal: %r" % stderr)


if __name__ == "__main__":
    unittest.main()
