"""Runs docs/quickstart.md as a reader would: every ```sh block, in order, in one bash session,
in a fresh home directory; the ```text block right after a sh block is its expected output,
line by line, where `…` matches anything. The ```bash blocks (building, starting PostgreSQL,
Docker) are what this script provides instead: the binaries on PATH and $PG.

Usage: python3 run_quickstart.py QUICKSTART_MD BIN_DIR   (needs $PG_TEST_URL, curl and psql)
"""
import os
import re
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

page, bin_dir = Path(sys.argv[1]), sys.argv[2]
MARK = "@@quickstart block {}@@"


def blocks(markdown):
    """(language, text) of each fenced block, in order."""
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^```(\w*)\n(.*?)^```$", markdown, re.M | re.S)]


def matches(expected, actual):
    """Line by line, runs of spaces counted as one (table alignment differs with the values);
    `…` in an expected line matches any text."""
    squeeze = lambda line: re.sub(r" +", " ", line.strip())
    want, got = expected.rstrip().split("\n"), actual.rstrip().split("\n")
    if len(want) != len(got):
        return False
    return all(re.fullmatch(".*".join(map(re.escape, squeeze(w).split("…"))), squeeze(g)) for w, g in zip(want, got))


for port in (8080, 8081):
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            sys.exit(f"quickstart: port {port} is in use; the quickstart's gateway needs it")

found = blocks(page.read_text())
steps = []  # (sh text, expected text or None)
for i, (language, text) in enumerate(found):
    if language == "sh":
        follows = found[i + 1] if i + 1 < len(found) else None
        steps.append((text, follows[1] if follows and follows[0] == "text" else None))
if not steps:
    sys.exit("quickstart: no sh blocks found")

# The gateway must not outlive a failed run.
script = ["set -euo pipefail", "trap 'kill -9 \"${INLET_PID:-}\" 2> /dev/null || true' EXIT"]
for n, (text, _) in enumerate(steps):
    script += [f"echo '{MARK.format(n)}'", text]

with tempfile.TemporaryDirectory() as home:
    env = {**os.environ, "HOME": home, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PG": os.environ["PG_TEST_URL"]}
    env.pop("INLET_CONFIG", None)
    run = subprocess.run(["bash", "-c", "\n".join(script) + "\n"], cwd=home, env=env, capture_output=True, text=True, timeout=300)
    log = Path(home, "inlet-trial", "inlet.log")
    gateway_log = log.read_text() if log.exists() else ""

outputs = re.split(r"^@@quickstart block (\d+)@@\n", run.stdout, flags=re.M)
by_block = {int(outputs[i]): outputs[i + 1] for i in range(1, len(outputs) - 1, 2)}
problems = []
if run.returncode != 0:
    problems.append(f"the commands failed (exit {run.returncode}) in block {max(by_block, default=0)}:\n{run.stderr[-3000:]}")
for n, (text, expected) in enumerate(steps):
    if expected is not None and n in by_block and not matches(expected, by_block[n]):
        problems.append(f"block {n}:\n{text}\nexpected:\n{expected}\ngot:\n{by_block[n]}")
if problems:
    sys.exit("quickstart: " + "\n\n".join(problems) + (f"\n\ngateway log:\n{gateway_log[-3000:]}" if gateway_log else ""))
checked = sum(1 for _, expected in steps if expected is not None)
print(f"quickstart: {len(steps)} command blocks of docs/quickstart.md ran as written; {checked} outputs as shown")
