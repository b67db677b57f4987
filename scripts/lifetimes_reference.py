#!/usr/bin/env python3
"""The independent reference for rekindle's predict module: lifetimes (Python).

Run by the tests and the predict benchmark through $REKINDLE_PYTHON; needs the
packages in scripts/requirements-predict.txt.

  cdnow-transactions          print the CDNOW sample shipped with lifetimes as CSV:
                              customer,date(YYYYMMDD),spend(dollars)
  score < request.json        p_alive and expected purchases from BetaGeoFitter with
                              the given parameters; request:
                              {"params": {"r":..,"alpha":..,"a":..,"b":..}, "t": horizon,
                               "members": [[x, t_x, T], ...]}
  fit-score SUMMARY.csv T     time lifetimes fitting BG/NBD + Gamma-Gamma on a summary
                              (columns frequency,recency,T,monetary_value) and scoring
                              every member over horizon T; prints JSON
"""
import json
import os
import sys
import time
import warnings

warnings.filterwarnings("ignore")


def cdnow_transactions():
    import lifetimes

    path = os.path.join(os.path.dirname(lifetimes.__file__), "datasets", "CDNOW_sample.txt")
    out = ["customer,date,spend"]
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 5:
                _, customer, date, _cds, spend = parts
                out.append(f"{int(customer)},{date},{spend}")
    sys.stdout.write("\n".join(out) + "\n")


def bg_fitter(params):
    import pandas as pd
    from lifetimes import BetaGeoFitter

    bgf = BetaGeoFitter()
    bgf.params_ = pd.Series({k: float(params[k]) for k in ("r", "alpha", "a", "b")})
    return bgf


def score():
    import numpy as np

    request = json.load(sys.stdin)
    bgf = bg_fitter(request["params"])
    m = np.asarray(request["members"], dtype=float).reshape(-1, 3)
    x, tx, big_t = m[:, 0], m[:, 1], m[:, 2]
    p_alive = bgf.conditional_probability_alive(x, tx, big_t)
    expected = bgf.conditional_expected_number_of_purchases_up_to_time(request["t"], x, tx, big_t)
    json.dump({"p_alive": [float(v) for v in p_alive], "expected": [float(v) for v in expected]}, sys.stdout)


def fit_score(path, horizon):
    import pandas as pd
    from lifetimes import BetaGeoFitter, GammaGammaFitter

    summary = pd.read_csv(path)
    started = time.perf_counter()
    bgf = BetaGeoFitter().fit(summary["frequency"], summary["recency"], summary["T"])
    fitted_bg = time.perf_counter()
    repeat = summary[(summary["frequency"] > 0) & (summary["monetary_value"] > 0)]
    ggf = GammaGammaFitter().fit(repeat["frequency"], repeat["monetary_value"])
    fitted_gg = time.perf_counter()
    p_alive = bgf.conditional_probability_alive(summary["frequency"], summary["recency"], summary["T"])
    expected = bgf.conditional_expected_number_of_purchases_up_to_time(
        horizon, summary["frequency"], summary["recency"], summary["T"]
    )
    spend = ggf.conditional_expected_average_profit(summary["frequency"], summary["monetary_value"])
    value = expected * spend
    scored = time.perf_counter()
    json.dump(
        {
            "members": len(summary),
            "fit_bgnbd_s": fitted_bg - started,
            "fit_gamma_gamma_s": fitted_gg - fitted_bg,
            "score_s": scored - fitted_gg,
            "total_s": scored - started,
            "bgnbd": {k: float(bgf.params_[k]) for k in ("r", "alpha", "a", "b")},
            "gamma_gamma": {k: float(ggf.params_[k]) for k in ("p", "q", "v")},
            "checksum": {
                "p_alive": float(p_alive.sum()),
                "expected": float(expected.sum()),
                "value": float(value.sum()),
            },
        },
        sys.stdout,
    )


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "cdnow-transactions":
        cdnow_transactions()
    elif len(sys.argv) >= 2 and sys.argv[1] == "score":
        score()
    elif len(sys.argv) == 4 and sys.argv[1] == "fit-score":
        fit_score(sys.argv[2], float(sys.argv[3]))
    else:
        sys.stderr.write(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main()
