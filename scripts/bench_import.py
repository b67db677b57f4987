#!/usr/bin/env python3
"""Import and profile benchmark, with DuckDB on the same CSV files in the same run.

  .venv/bin/python scripts/bench_import.py [--members N] [DATA_DIR]

DATA_DIR (default bench-data/N) is filled by `rekindle generate` when it has no
orders.csv; any folder in the data-contract format works (the shared gen_data.py sets
too). Builds the release binary, imports into a fresh store, exports every profile, then
runs scripts/bench_duckdb.py on the same files and prints a Markdown table with ratios.
Needs duckdb in the interpreter (scripts/setup.sh installs it into .venv)."""
import argparse, os, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "rekindle")


def run(*args):
    """Runs a command; returns (seconds, peak RSS in MiB)."""
    start = time.perf_counter()
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    elapsed = time.perf_counter() - start
    if status != 0:
        sys.exit(f"{' '.join(args)} failed:\n{p.stderr.read().decode()}")
    return elapsed, usage.ru_maxrss / 1024


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="?")
    ap.add_argument("--members", type=int, default=1_000_000)
    ap.add_argument("--as-of", default="2026-11-01")
    a = ap.parse_args()
    data = a.data or os.path.join(ROOT, "bench-data", str(a.members))
    subprocess.run(["cargo", "build", "--release", "-q"], cwd=ROOT, check=True)
    if not os.path.exists(os.path.join(data, "orders.csv")):
        subprocess.run([BIN, "generate", data, "--members", str(a.members)], check=True)
    with open(os.path.join(data, "orders.csv"), "rb") as f:
        lines = sum(1 for _ in f) - 1
    with open(os.path.join(data, "members.csv"), "rb") as f:
        members = sum(1 for _ in f) - 1
    tmp = tempfile.mkdtemp()
    db = ["--db", os.path.join(tmp, "store")]
    t_mem, _ = run(BIN, *db, "import", os.path.join(data, "members.csv"))
    t_ord, rss_ord = run(BIN, *db, "import", os.path.join(data, "orders.csv"))
    t_ev, _ = run(BIN, *db, "import", os.path.join(data, "events.csv"))
    t_exp, rss_exp = run(BIN, *db, "profiles", "export", "--as-of", a.as_of, "-o", os.path.join(tmp, "profiles.csv"))
    out = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "bench_duckdb.py"), data, a.as_of],
                         check=True, capture_output=True, text=True).stdout
    duck = dict(kv.split("=") for kv in out.split())
    load, metrics = float(duck["load_s"]), float(duck["metrics_s"])
    print(f"| step | rekindle | DuckDB | DuckDB / rekindle |")
    print(f"|---|---|---|---|")
    print(f"| import orders.csv, {lines:,} lines | {t_ord:.1f} s = {lines / t_ord:,.0f} lines/s, peak {rss_ord:.0f} MiB "
          f"| load into memory {load:.1f} s | {load / t_ord:.2f} |")
    print(f"| import members.csv / events.csv | {t_mem:.1f} s / {t_ev:.1f} s | | |")
    print(f"| profiles export, {members:,} members | {t_exp:.2f} s, peak {rss_exp:.0f} MiB "
          f"| metrics from the loaded table {metrics:.2f} s | {metrics / t_exp:.2f} |")


if __name__ == "__main__":
    main()
