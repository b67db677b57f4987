#!/usr/bin/env python3
"""The member-base benchmark (issue 15): every full-base workload of rekindle on one
imported store, each beside its anchor measured in the same run.

  .venv/bin/python scripts/bench_memberbase.py [--members N] [--as-of DAY] [--rekindle BIN] [DATA_DIR]

DATA_DIR (default bench-data/N) is filled by `rekindle generate` when it has no
orders.csv. The store is imported once into bench-data/N.store and reused while it is
newer than the CSV files (--reimport forces a fresh one). The binary measured is
target/release/rekindle, built first (`nice cargo build --release`), or --rekindle BIN
as it is (another build, e.g. main's, for a before/after on the same store). Workloads:

  ready     `rekindle run` with the shipped rules until /healthz answers (and until its
            background refresh of stale models is done); its RSS at rest (3 s after
            that), then after one preview of every rule through the API
  preview   one-shot `rules preview sleeping-winback`: time and peak RSS
            -- anchor: DuckDB's sleeping audience query from its loaded tables
  export    `profiles export`, second of two runs (warm): time and peak RSS
            -- anchor: DuckDB's all-member metrics from its loaded tables
  stats     `stats`, second of two runs (warm): time and peak RSS
  mine      `bundles mine --scope basket --lookback-days 365` end to end
            -- anchor: pyfim's rule induction alone on the same baskets
  plan      `run --once` of every shipped rule through the file plugin: the time from
            the start to "run written to the outbox" (member base, profiles, audiences,
            consent, caps, offers), and the messages planned

Prints a Markdown table with the ratios, and the load average before and after. Needs duckdb and pyfim in the interpreter
(scripts/setup.sh installs both into .venv). Choose workloads with --only a,b."""
import argparse, csv, io, json, os, re, shutil, signal, socket, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "rekindle")
FILE_PLUGIN = os.path.join(ROOT, "target", "plugins", "file.wasm")
TOKEN = "bench-token"


def timed(*args, env=None):
    """Runs a command to its end: (seconds, stdout, stderr)."""
    start = time.perf_counter()
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out, err = p.communicate()
    elapsed = time.perf_counter() - start
    if p.returncode != 0:
        sys.exit(f"{' '.join(args)} failed ({p.returncode}):\n{err.decode()}")
    return elapsed, out.decode(), err.decode()


def peak(*args, env=None):
    """Runs a command with output discarded: (seconds, peak RSS in MiB)."""
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err, env=env)
        _, status, usage = os.wait4(p.pid, 0)
        elapsed = time.perf_counter() - start
        p.returncode = 0  # reaped by wait4
        if status != 0:
            err.seek(0)
            sys.exit(f"{' '.join(args)} failed:\n{err.read().decode()}")
    return elapsed, usage.ru_maxrss / 1024


def rss_mib(pid):
    """(VmRSS, RssAnon, RssFile) in MiB: the file part is the mapped member columns and
    other files, clean pages the kernel can drop at any time."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                fields[key] = int(rest.split()[0]) / 1024
    return tuple(fields.get(k, float("nan")) for k in ("VmRSS", "RssAnon", "RssFile"))


def rss_text(t):
    return f"{t[0]:,.0f} MiB (anon {t[1]:,.0f}, file {t[2]:,.0f})"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def write_config(work, port):
    """A config with the shipped rules, every channel on the file plugin into `work`."""
    channels = ""
    for name, consent in [("email", "email"), ("sms", "sms"), ("shop", "none")]:
        os.makedirs(os.path.join(work, "out", name), exist_ok=True)
        channels += (f'[channels.{name}]\nplugin = "{FILE_PLUGIN}"\nconsent = "{consent}"\n'
                     f'grants = {{ files = "{os.path.join(work, "out", name)}" }}\n')
    path = os.path.join(work, "config.toml")
    with open(path, "w") as f:
        f.write(f'[campaigns]\nrules_dir = "{os.path.join(ROOT, "rules")}"\ncatch_up = false\n'
                f'public_url = "https://shop.example"\n'
                f'[api]\nlisten = "127.0.0.1:{port}"\ntoken = "{TOKEN}"\n'
                f'[dispatch]\nrate_per_second = 0\n{channels}')
    return path


def rule_ids():
    ids = []
    for name in sorted(os.listdir(os.path.join(ROOT, "rules"))):
        if name.endswith(".toml"):
            ids.append(name[:-5])
    return ids


def get(port, path):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return r.status, r.read()


def ready(store, work):
    port = free_port()
    env = dict(os.environ, REKINDLE_CONFIG=write_config(work, port), REKINDLE_LOG="warn")
    start = time.perf_counter()
    p = subprocess.Popen([BIN, "--db", store, "run"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        while True:
            try:
                if get(port, "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            if p.poll() is not None:
                sys.exit("the daemon exited before it served /healthz")
            time.sleep(0.02)
        ready_s = time.perf_counter() - start
        # stale co-purchase rules and value model are refreshed in the background: at
        # rest means after that (a build without the gauge refreshed before serving)
        refreshed_s = None
        while True:
            metrics = get(port, "/metrics")[1].decode()
            if "rekindle_models_refreshing" not in metrics:
                break
            if "\nrekindle_models_refreshing 0\n" in metrics:
                refreshed_s = time.perf_counter() - start
                break
            time.sleep(0.1)
        time.sleep(3)
        at_rest = rss_mib(p.pid)
        start = time.perf_counter()
        for rule in rule_ids():
            get(port, f"/api/rules/{rule}/preview?sample=0")
        previews_s = time.perf_counter() - start
        after = rss_mib(p.pid)
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=60)
    return {"ready_s": ready_s, "refreshed_s": refreshed_s, "rss_rest_mib": at_rest, "rss_after_mib": after, "previews_s": previews_s}


def duck(script, data, as_of):
    out = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", script), data, as_of],
                         check=True, capture_output=True, text=True).stdout
    return {k: float(v) for k, v in (kv.split("=") for kv in out.split())}


def baskets(data, as_of, lookback_days, path):
    """The basket transactions `bundles mine --scope basket` mines: each order's distinct
    skus, orders dated from as_of - lookback_days to as_of (an order's date is the UTC
    date of its earliest line). Single-item baskets too: they count in N, the denominator
    of support, so leaving them out would mine other rules."""
    import csv, datetime
    end = datetime.date.fromisoformat(as_of)
    start = end - datetime.timedelta(days=lookback_days)
    orders = {}
    with open(os.path.join(data, "orders.csv"), newline="") as f:
        for row in csv.DictReader(f):
            day = datetime.datetime.fromisoformat(row["ts"].replace("Z", "+00:00")).astimezone(datetime.timezone.utc).date()
            o = orders.setdefault(row["order_id"], [day, set()])
            o[0] = min(o[0], day)
            o[1].add(row["sku"])
    n = 0
    with open(path, "w") as f:
        for day, skus in orders.values():
            if start <= day <= end:
                f.write("\t".join(sorted(skus)) + "\n")
                n += 1
    return n


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="?")
    ap.add_argument("--members", type=int, default=1_000_000)
    ap.add_argument("--as-of", default="2026-11-01")
    ap.add_argument("--reimport", action="store_true")
    ap.add_argument("--rekindle", help="the binary to measure, as it is (default: build target/release/rekindle)")
    ap.add_argument("--only", default="ready,preview,export,stats,mine,plan")
    a = ap.parse_args()
    only = set(a.only.split(","))
    data = a.data or os.path.join(ROOT, "bench-data", str(a.members))
    global BIN
    if a.rekindle:
        BIN = os.path.abspath(a.rekindle)
    else:
        subprocess.run(["nice", "cargo", "build", "--release", "-q", "--bin", "rekindle"], cwd=ROOT, check=True)
    if not os.path.exists(FILE_PLUGIN):
        subprocess.run([os.path.join(ROOT, "scripts", "build-plugins.sh"), "file"], cwd=ROOT, check=True, capture_output=True)
    load_before = os.getloadavg()
    if not os.path.exists(os.path.join(data, "orders.csv")):
        subprocess.run([BIN, "generate", data, "--members", str(a.members)], check=True)
    store = data.rstrip("/") + ".store"
    newest_csv = max(os.path.getmtime(os.path.join(data, f)) for f in ("members.csv", "orders.csv", "events.csv"))
    work = tempfile.mkdtemp(prefix="rekindle-bench-memberbase.")
    env = dict(os.environ, REKINDLE_CONFIG=write_config(work, free_port()))
    if a.reimport or not os.path.exists(store) or os.path.getmtime(store) < newest_csv:
        shutil.rmtree(store, ignore_errors=True)
        for f in ("members.csv", "products.csv", "orders.csv", "events.csv"):
            if os.path.exists(os.path.join(data, f)):
                timed(BIN, "--db", store, "import", os.path.join(data, f), env=env)
        timed(BIN, "--db", store, "predict", "fit", "--as-of", a.as_of, env=env)
    rows = []
    try:
        if "ready" in only:
            r = ready(store, work)
            refreshed = f" (models refreshed in the background by {r['refreshed_s']:.1f} s)" if r["refreshed_s"] is not None else ""
            rows.append(("daemon ready (/healthz), shipped rules", f"{r['ready_s']:.2f} s{refreshed}", "", ""))
            rows.append(("daemon RSS at rest, then after a preview of every rule",
                         f"{rss_text(r['rss_rest_mib'])} then {rss_text(r['rss_after_mib'])} ({r['previews_s']:.1f} s of previews)", "", ""))
        if "preview" in only:
            t, rss = peak(BIN, "--db", store, "rules", "preview", "sleeping-winback", "--as-of", a.as_of, env=env)
            d = duck("bench_rules_duckdb.py", data, a.as_of)
            rows.append(("one-shot `rules preview sleeping-winback`", f"{t:.2f} s, peak {rss:,.0f} MiB",
                         f"DuckDB audience query {d['audience_s']:.2f} s (after a {d['load_s']:.1f} s load)", f"{d['audience_s'] / t:.2f}"))
        if "export" in only:
            out = os.path.join(work, "profiles.csv")
            peak(BIN, "--db", store, "profiles", "export", "--as-of", a.as_of, "-o", out, env=env)
            t, rss = peak(BIN, "--db", store, "profiles", "export", "--as-of", a.as_of, "-o", out, env=env)
            d = duck("bench_duckdb.py", data, a.as_of)
            rows.append(("`profiles export`, warm", f"{t:.2f} s, peak {rss:,.0f} MiB",
                         f"DuckDB all-member metrics {d['metrics_s']:.2f} s", f"{d['metrics_s'] / t:.2f}"))
        if "stats" in only:
            peak(BIN, "--db", store, "stats", "--as-of", a.as_of, env=env)
            t, rss = peak(BIN, "--db", store, "stats", "--as-of", a.as_of, env=env)
            rows.append(("`stats`, warm", f"{t:.2f} s, peak {rss:,.0f} MiB", "", ""))
        if "mine" in only:
            t, rss = peak(BIN, "--db", store, "bundles", "mine", "--scope", "basket", "--min-support", "0.001",
                          "--min-confidence", "0.1", "--lookback-days", "365", "--as-of", a.as_of, env=env)
            tx = os.path.join(work, "baskets.tsv")
            n = baskets(data, a.as_of, 365, tx)
            ref = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "bundles_reference.py"), "--engine", "pyfim",
                                  "--input", tx, "--output", os.path.join(work, "pyfim.ndjson"), "--min-support", "0.001",
                                  "--min-confidence", "0.1"], check=True, capture_output=True, text=True).stdout
            p = json.loads(ref.strip().splitlines()[-1])
            # the same rules, or the comparison means nothing (untimed run, CSV out)
            out = subprocess.run([BIN, "--db", store, "bundles", "mine", "--scope", "basket", "--min-support", "0.001",
                                  "--min-confidence", "0.1", "--lookback-days", "365", "--as-of", a.as_of, "--format", "csv"],
                                 check=True, capture_output=True, text=True, env=env).stdout
            ours = {(r["antecedent"], r["consequent"], int(r["count"])) for r in csv.DictReader(io.StringIO(out))}
            with open(os.path.join(work, "pyfim.ndjson")) as f:
                theirs = {("+".join(r["antecedent"]), r["consequent"], r["count"]) for r in map(json.loads, f)}
            if ours != theirs:
                sys.exit(f"bundles mine and pyfim found different rules: {len(ours - theirs)} only rekindle's, {len(theirs - ours)} only pyfim's")
            rows.append(("`bundles mine --scope basket` end to end", f"{t:.2f} s, peak {rss:,.0f} MiB",
                         f"pyfim's rule induction alone {p['mine_s']:.2f} s ({n:,} baskets, the same {p['rules']} rules)", f"{p['mine_s'] / t:.2f}"))
        if "plan" in only:
            # timed to the log line that ends planning; the dispatch after it is not
            # measured, so the daemon is stopped there (SIGTERM: it shuts down cleanly)
            run_env = dict(env, REKINDLE_LOG="rekindle=info", NO_COLOR="1")
            start = time.perf_counter()
            p = subprocess.Popen([BIN, "--db", store, "run", "--once", "--at", f"{a.as_of}T12:00:00Z"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=run_env, text=True)
            line = ""
            for l in p.stderr:
                if "run written to the outbox" in l:
                    line = l
                    planned_s = time.perf_counter() - start
                    p.send_signal(signal.SIGTERM)
                    break
            p.stderr.close()
            p.wait(timeout=120)
            if not line:
                sys.exit("run --once ended without writing its run")
            messages = re.search(r"messages=(\d+)", line)
            phases = {k: float(v) for k, v in re.findall(r"(planned_s|rendered_s|seconds)=([0-9.]+)", line)}
            split = (f" (of its {phases['seconds']:.1f} s run: fates {phases['planned_s']:.1f} s, templates {phases['rendered_s']:.1f} s)"
                     if "planned_s" in phases else "")
            rows.append(("planning before the dispatch (`run --once`, every shipped rule)",
                         f"{planned_s:.2f} s for {int(messages.group(1)) if messages else 0:,} messages{split}", "", ""))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load = os.getloadavg()
    print(f"{BIN}\nmembers: {a.members:,}  as of {a.as_of}  load average (1, 5, 15 min) before {load_before[0]:.1f} {load_before[1]:.1f} {load_before[2]:.1f}, "
          f"after {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}\n")
    print("| workload | rekindle | anchor in the same run | anchor / rekindle |")
    print("|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
