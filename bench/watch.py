#!/usr/bin/env python3
"""`drydock watch` on the sample product: save-to-result time against bare
pytest through `docker exec` in the same warm container, and drydock's memory
while watching.

    cargo build --release -p drydock-cli
    python3 bench/watch.py                 # 7 saves, 7 bare runs, interleaved
    python3 bench/watch.py --saves 11 --binary target/debug/drydock

Copies pipelines/flask-api.yml and images/flask-api into a throw-away git
repository, starts `drydock watch pipelines/flask-api.yml --tier pre-build
--step unit`, waits for the initial run, then alternates: rewrite a unit test
file (same content plus a comment line, so every run passes) and time until
the result line appears on drydock's stdout; run the step's command with
`docker exec` in the warm container and time it. Medians and the ratio are
printed; VmHWM/VmRSS of the drydock process are read from /proc at the end,
then SIGINT and a check that the engine holds nothing of the run.
Standard library only.
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def proc_status(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--saves", type=int, default=7)
    parser.add_argument("--binary", default=str(ROOT / "target/release/drydock"))
    parser.add_argument("--json-out", help="also write the result JSON to this file (bench/run.py uses it)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="drydock-watch-bench."))
    try:
        for rel in ["pipelines/flask-api.yml", "images/flask-api"]:
            src, dst = ROOT / rel, work / rel
            if src.is_dir():
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns(
                    "__pycache__", ".pytest_cache", ".drydock-trust", ".venv"))
            else:
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(src, dst)
        git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@invalid"]
        subprocess.run(["git", "init", "-q", "-b", "main"], cwd=work, check=True)
        subprocess.run(git + ["add", "-A"], cwd=work, check=True)
        subprocess.run(git + ["commit", "-qm", "bench"], cwd=work, check=True)

        run_id = f"bench-watch-{os.getpid()}"
        proc = subprocess.Popen(
            [args.binary, "watch", "pipelines/flask-api.yml", "--tier", "pre-build",
             "--step", "unit", "--run-id", run_id],
            cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        stderr_lines = []
        threading.Thread(target=lambda: stderr_lines.extend(proc.stderr), daemon=True).start()

        def next_result():
            for line in proc.stdout:
                if line.startswith(("✔", "✘")):
                    return time.monotonic(), line.rstrip("\n")
            sys.exit("drydock watch ended:\n" + "".join(stderr_lines))

        _, first = next_result()
        print("initial:", first)
        container = subprocess.run(
            ["docker", "ps", "-q", "--filter", f"label=drydock.run={run_id}",
             "--filter", "label=drydock.role=step"],
            capture_output=True, text=True, check=True).stdout.split()[0]
        bare_cmd = ["docker", "exec", container, "pytest", "-p", "no:cacheprovider",
                    "tests/unit", "--junitxml=/results/junit.xml"]
        target = work / "images/flask-api/tests/unit" / sorted(
            p.name for p in (work / "images/flask-api/tests/unit").glob("test_*.py"))[0]
        original = target.read_text()

        watch_times, bare_times, lines = [], [], []
        for i in range(args.saves):
            time.sleep(0.5)
            t0 = time.monotonic()
            target.write_text(original + f"\n# save {i}\n")
            t1, line = next_result()
            watch_times.append(t1 - t0)
            lines.append(line)
            time.sleep(0.5)
            b0 = time.monotonic()
            bare = subprocess.run(bare_cmd, capture_output=True, text=True)
            bare_times.append(time.monotonic() - b0)
            if bare.returncode != 0:
                sys.exit("bare pytest failed:\n" + bare.stdout + bare.stderr)

        status = proc_status(proc.pid)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
        left = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label=drydock.run={run_id}"],
            capture_output=True, text=True).stdout.split()
        nets = subprocess.run(
            ["docker", "network", "ls", "-q", "--filter", f"label=drydock.run={run_id}"],
            capture_output=True, text=True).stdout.split()
        med_w, med_b = statistics.median(watch_times), statistics.median(bare_times)
        result = {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "binary": args.binary,
            "saves": args.saves,
            "save_to_result_s": [round(t, 3) for t in watch_times],
            "bare_exec_pytest_s": [round(t, 3) for t in bare_times],
            "median_save_to_result_s": round(med_w, 3),
            "median_bare_exec_pytest_s": round(med_b, 3),
            "ratio": round(med_w / med_b, 2),
            "VmHWM": status.get("VmHWM"),
            "VmRSS": status.get("VmRSS"),
            "exit_code": code,
            "left_containers": left,
            "left_networks": nets,
            "last_line": lines[-1],
        }
        print(json.dumps(result, indent=2))
        if args.json_out:
            with open(args.json_out, "w") as f:
                json.dump(result, f, indent=1)
        print(f"\n| measure | value | target |\n|---|---|---|\n"
              f"| save → result (median of {args.saves}) | {med_w:.3f} s | ≤ 1.5 × bare |\n"
              f"| bare `docker exec … pytest` (median) | {med_b:.3f} s | |\n"
              f"| ratio | {med_w / med_b:.2f}× | ≤ 1.5× |\n"
              f"| drydock VmHWM while watching | {status.get('VmHWM')} | ≤ 32 MiB |")
        return 0 if not left and not nets else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
