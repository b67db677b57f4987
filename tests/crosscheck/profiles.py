#!/usr/bin/env python3
"""Independent computation of the member metrics of DATA.md, straight from the CSV
files with exact arithmetic (Decimal, Fraction), compared with `rekindle profiles export`.

  profiles.py DATA_DIR AS_OF EXPORT_CSV

Exits 1 and prints the first differences when any cell differs (integers, dates and
money exactly; price_sensitivity to 1e-6). Standard library only.
"""
import csv, sys
from collections import defaultdict
from datetime import date, datetime, timezone
from decimal import Decimal, ROUND_HALF_UP
from fractions import Fraction
from math import ceil

STAGES = [(90, "active"), (180, "silent"), (270, "sleeping"), (359, "dormant")]


def utc_date(ts):
    t = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.astimezone(timezone.utc).date()


def cents(d):
    return int((d * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def nearest_rank(sorted_vals, k):
    return sorted_vals[max(1, ceil(k * len(sorted_vals) / 100)) - 1]


def main(data_dir, as_of_s, export_path):
    as_of = date.fromisoformat(as_of_s)
    members = {}
    with open(f"{data_dir}/members.csv", encoding="utf-8", newline="") as f:
        for r in csv.DictReader(f):
            members[r["member_id"]] = r
    lines = {}  # (order_id, sku) -> row; a re-imported line replaces
    owner = {}
    with open(f"{data_dir}/orders.csv", encoding="utf-8", newline="") as f:
        for r in csv.DictReader(f):
            lines[(r["order_id"], r["sku"])] = r
            owner[r["order_id"]] = r["member_id"]
    orders = defaultdict(lambda: {"lines": []})
    for (oid, _), r in lines.items():
        orders[oid]["lines"].append(r)
    per_member = defaultdict(list)
    for oid, o in orders.items():
        o["date"] = min(utc_date(l["ts"]) for l in o["lines"])
        if o["date"] > as_of:
            continue
        amounts = []
        for l in o["lines"]:
            disc = Decimal(l["discount_pct"] or "0")
            amt = cents(Decimal(l["unit_price"]) * int(l["qty"]) * (1 - disc / 100))
            amounts.append((l, amt))
        o["amount"] = sum(a for _, a in amounts)
        o["discounted"] = any(Decimal(l["discount_pct"] or "0") > 0 for l in o["lines"])
        o["amounts"] = amounts
        per_member[owner[oid]].append(o)
    for mid in per_member:
        members.setdefault(mid, {"member_id": mid})

    rows = {}
    for mid, mem in members.items():
        os_ = per_member.get(mid, [])
        r = {"member_id": mid, "orders": len(os_)}
        monetary = sum(o["amount"] for o in os_)
        r["monetary"] = monetary
        by = mem.get("birth_year") or ""
        r["age"] = as_of.year - int(by) if by else None
        r["consent_email"] = (mem.get("opted_in_email") or "false").lower() in ("true", "1")
        r["consent_sms"] = (mem.get("opted_in_sms") or "false").lower() in ("true", "1")
        if not os_:
            r.update(aov=None, first_order_date=None, last_order_date=None, recency_days=None, stage="prospect",
                     price_sensitivity=None, interval_median_days=None, repurchase_due=False,
                     top_category=None, top_brand=None)
            rows[mid] = r
            continue
        r["aov_exact"] = Fraction(monetary, len(os_))
        r["aov"] = int((Decimal(monetary) / len(os_)).quantize(Decimal(1), rounding=ROUND_HALF_UP))
        days = sorted({o["date"] for o in os_})
        r["first_order_date"], r["last_order_date"] = days[0], days[-1]
        rec = (as_of - days[-1]).days
        r["recency_days"] = rec
        r["stage"] = next((name for lim, name in STAGES if rec <= lim), "lost")
        r["price_sensitivity"] = sum(o["discounted"] for o in os_) / len(os_)
        gaps = sorted((b - a).days for a, b in zip(days, days[1:]))
        if gaps:
            n = len(gaps)
            med = Fraction(gaps[n // 2]) if n % 2 else Fraction(gaps[n // 2 - 1] + gaps[n // 2], 2)
            r["interval_median_days"] = med
            r["repurchase_due"] = rec >= med
        else:
            r["interval_median_days"] = None
            r["repurchase_due"] = False
        for col, key in (("top_category", "category"), ("top_brand", "brand")):
            spend = defaultdict(int)
            for o in os_:
                for l, a in o["amounts"]:
                    if l[key]:
                        spend[l[key]] += a
            r[col] = min(spend, key=lambda k: (-spend[k], k)) if spend else None
        rows[mid] = r

    buyers = [r for r in rows.values() if r["orders"] > 0]
    cut = lambda vals, ks: [nearest_rank(sorted(vals), k) for k in ks]
    rc = cut([r["recency_days"] for r in buyers], (20, 40, 60, 80))
    fc = cut([r["orders"] for r in buyers], (20, 40, 60, 80))
    mc = cut([r["monetary"] for r in buyers], (20, 40, 60, 80))
    p30, p80 = cut([r["aov_exact"] for r in buyers], (30, 80))
    for r in buyers:
        R = 5 - sum(c < r["recency_days"] for c in rc)
        F = 1 + sum(c < r["orders"] for c in fc)
        M = 1 + sum(c < r["monetary"] for c in mc)
        r["r_score"], r["f_score"], r["m_score"] = R, F, M
        r["value_tier"] = "important" if R >= 4 and F + M >= 8 else "at_risk" if R <= 2 and F + M >= 7 else "general"
        a = r["aov_exact"]
        r["price_tier"] = "low" if a <= p30 else "high" if a > p80 else "mid"
        s = r["price_sensitivity"]
        r["price_sensitivity_tier"] = "high" if s >= 0.5 else "low" if s < 0.2 else "mid"

    def fmt_money(c):
        return None if c is None else f"{'-' if c < 0 else ''}{abs(c) // 100}.{abs(c) % 100:02d}"

    def expected_cell(r, col):
        v = r.get(col)
        if v is None:
            return ""
        if col in ("monetary", "aov"):
            return fmt_money(v)
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, date):
            return v.isoformat()
        if col == "interval_median_days":
            return str(v.numerator // v.denominator) + (".5" if v.denominator == 2 else "")
        return str(v)

    problems, n = [], 0
    with open(export_path, encoding="utf-8", newline="") as f:
        got_rows = list(csv.DictReader(f))
    got_ids = [g["member_id"] for g in got_rows]
    if sorted(got_ids) != sorted(rows):
        missing = set(rows) - set(got_ids)
        extra = set(got_ids) - set(rows)
        problems.append(f"member sets differ: {len(missing)} missing, {len(extra)} extra")
    for g in got_rows:
        r = rows.get(g["member_id"])
        if r is None:
            continue
        n += 1
        for col, val in g.items():
            if col == "price_sensitivity":
                want = r.get(col)
                ok = (val == "" and want is None) or (val != "" and want is not None and abs(float(val) - want) <= 1e-6)
                if not ok:
                    problems.append(f"{g['member_id']} {col}: rekindle {val!r}, expected {want!r}")
                continue
            want = expected_cell(r, col)
            if val != want:
                problems.append(f"{g['member_id']} {col}: rekindle {val!r}, expected {want!r}")
    if problems:
        print(f"{len(problems)} differences, first ones:")
        for p in problems[:30]:
            print("  " + p)
        sys.exit(1)
    print(f"OK: {n} members, every metric equal as of {as_of}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
