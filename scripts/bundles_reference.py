#!/usr/bin/env python3
"""Independent association-rule miner for rekindle's bundle tests and benchmark.

Reads transactions (one per line, items separated by tabs), mines rules with pyfim
(Borgelt's C code) or mlxtend (fpgrowth + association_rules), and writes one JSON object
per rule: antecedent (sorted list), consequent, count, antecedent_count,
consequent_count, support, confidence, lift. The figures written are the ones the
library computed; the thresholds of DATA.md (support >= S, confidence >= C,
lift >= L, all inclusive) are applied here from exact counts, the library being run with
slightly lower thresholds so that its own rounding at the boundary cannot drop a rule.

Prints one JSON summary line on stdout: engine, transactions, rules, load_s (reading
and encoding the baskets), mine_s (rule induction alone, best of --repeat runs) and
peak_rss_mib (peak resident memory of the induction, after a reset of the high-water
mark where the kernel allows it).

  bundles_reference.py --engine pyfim|mlxtend --input FILE --output FILE
      --min-support S --min-confidence C [--min-lift L] [--max-antecedent 1|2] [--repeat K]
      [--mlxtend-dense]
"""
import argparse
import json
import resource
import time


def peak_rss_mib():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def min_count(min_support, n):
    """Smallest count c >= 1 with c / n >= min_support."""
    c = 1
    while c <= n and c / n < min_support:
        c += 1
    return c


def keep(count, ante_count, cons_count, n, a):
    support = count / n
    confidence = count / ante_count
    lift = confidence / (cons_count / n)
    return support >= a.min_support and confidence >= a.min_confidence and (a.min_lift is None or lift >= a.min_lift)


def mine_pyfim(tracts, a):
    import fim

    n = len(tracts)
    mc = min_count(a.min_support, n)
    best, raw = None, None
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        raw = fim.arules(tracts, supp=-mc, conf=100.0 * a.min_confidence * (1 - 1e-9), zmin=2,
                         zmax=a.max_antecedent + 1, report="abhcl", mode="o")
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    rules = []
    for head, body, count, body_count, head_count, conf, lift in raw:
        if keep(count, body_count, head_count, n, a):
            rules.append({"antecedent": sorted(body), "consequent": head, "count": count,
                          "antecedent_count": body_count, "consequent_count": head_count,
                          "support": count / n, "confidence": conf, "lift": lift})
    return rules, best, 0.0


def mine_mlxtend(tracts, a):
    import pandas as pd
    from mlxtend.frequent_patterns import association_rules, fpgrowth
    from mlxtend.preprocessing import TransactionEncoder

    n = len(tracts)
    t0 = time.perf_counter()
    te = TransactionEncoder()
    if a.mlxtend_dense:
        df = pd.DataFrame(te.fit(tracts).transform(tracts), columns=te.columns_)
    else:
        matrix = te.fit(tracts).transform(tracts, sparse=True)
        df = pd.DataFrame.sparse.from_spmatrix(matrix, columns=te.columns_)
    encode_s = time.perf_counter() - t0
    best, out = None, None
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        freq = fpgrowth(df, min_support=max(a.min_support * (1 - 1e-9), 0.5 / n), use_colnames=True,
                        max_len=a.max_antecedent + 1)
        out = association_rules(freq, num_itemsets=n, metric="confidence",
                                min_threshold=a.min_confidence * (1 - 1e-9)) if len(freq) else None
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    rules = []
    if out is None:
        return rules, best, encode_s
    for r in out.itertuples(index=False):
        ante, cons = sorted(r.antecedents), sorted(r.consequents)
        if len(cons) != 1 or len(ante) > a.max_antecedent:
            continue
        count = round(r.support * n)
        ante_count = round(r[out.columns.get_loc("antecedent support")] * n)
        cons_count = round(r[out.columns.get_loc("consequent support")] * n)
        if keep(count, ante_count, cons_count, n, a):
            rules.append({"antecedent": ante, "consequent": cons[0], "count": count,
                          "antecedent_count": ante_count, "consequent_count": cons_count,
                          "support": float(r.support), "confidence": float(r.confidence),
                          "lift": float(r.lift)})
    return rules, best, encode_s


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", choices=["pyfim", "mlxtend"], required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--min-support", type=float, required=True)
    ap.add_argument("--min-confidence", type=float, required=True)
    ap.add_argument("--min-lift", type=float)
    ap.add_argument("--max-antecedent", type=int, choices=[1, 2], default=1)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--mlxtend-dense", action="store_true",
                    help="one-hot encode into a dense DataFrame (measured slower and 5x the memory "
                         "on 455k baskets); default sparse")
    a = ap.parse_args()

    t0 = time.perf_counter()
    with open(a.input, encoding="utf-8") as f:
        tracts = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    load_s = time.perf_counter() - t0
    reset_peak_rss()
    miner = mine_pyfim if a.engine == "pyfim" else mine_mlxtend
    rules, mine_s, encode_s = miner(tracts, a)
    load_s += encode_s
    peak = peak_rss_mib()
    with open(a.output, "w", encoding="utf-8") as f:
        for r in rules:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(json.dumps({"engine": a.engine, "transactions": len(tracts), "rules": len(rules),
                      "load_s": load_s, "mine_s": mine_s, "peak_rss_mib": peak}))


if __name__ == "__main__":
    main()
