#!/usr/bin/env python3
"""Independent evaluation of the audience rules in tests/it/fixtures/audience-rules, straight
from the CSV files, compared by tests/it/audience.rs with `rekindle rules preview`.

  audience.py DATA_DIR AS_OF [OUT_JSON]

Each rule is written here again directly in Python (no TOML is read, so a reader bug
cannot hide in both places); the metrics follow DATA.md with exact arithmetic,
as profiles.py does. Prints each rule's matched member count, and writes
{rule id: [sorted member ids]} to OUT_JSON when given (to stdout otherwise).
Standard library only.
"""
import csv, json, os, sys
from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal, ROUND_HALF_UP
from fractions import Fraction

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from profiles import STAGES, cents, nearest_rank, utc_date  # noqa: E402


def truthy(s):
    return (s or "false").strip().lower() in ("true", "1")


def ascii_lower(s):
    """Case folding of ASCII letters only (city names are compared that way)."""
    return "".join(c.lower() if c.isascii() else c for c in s)


class Member:
    """One member as of the day: attributes, metrics, dated orders and events."""

    def __init__(self, mid, row):
        self.id = mid
        self.row = row
        self.orders = []  # dicts with date, skus, cats, brands (only orders up to as-of)
        self.events = []  # (day, kind, sku), every event (filtered by the conditions)


def load(data_dir, as_of):
    members = {}

    def member(mid):
        if mid not in members:  # an order or event for an unknown member makes a bare member
            members[mid] = Member(mid, {"member_id": mid})
        return members[mid]

    with open(f"{data_dir}/members.csv", encoding="utf-8", newline="") as f:
        for r in csv.DictReader(f):
            members[r["member_id"]] = Member(r["member_id"], r)
    catalog = {}
    with open(f"{data_dir}/products.csv", encoding="utf-8", newline="") as f:
        for r in csv.DictReader(f):
            catalog[r["sku"]] = r
    lines, owner = {}, {}
    with open(f"{data_dir}/orders.csv", encoding="utf-8", newline="") as f:
        for r in csv.DictReader(f):
            lines[(r["order_id"], r["sku"])] = r  # a re-imported line replaces
            owner[r["order_id"]] = r["member_id"]
    by_order = defaultdict(list)
    for (oid, _), r in lines.items():
        by_order[oid].append(r)
    for oid, ls in by_order.items():
        m = member(owner[oid])
        day = min(utc_date(l["ts"]) for l in ls)
        if day > as_of:
            continue
        amounts = [(l, cents(Decimal(l["unit_price"]) * int(l["qty"]) * (1 - Decimal(l["discount_pct"] or "0") / 100))) for l in ls]
        m.orders.append({
            "date": day,
            "amount": sum(a for _, a in amounts),
            "discounted": any(Decimal(l["discount_pct"] or "0") > 0 for l in ls),
            "amounts": amounts,
            "skus": {l["sku"] for l in ls},
            "cats": {l["category"] for l in ls if l["category"]},
            "brands": {l["brand"] for l in ls if l["brand"]},
        })
    with open(f"{data_dir}/events.csv", encoding="utf-8", newline="") as f:
        seen = {}
        for r in csv.DictReader(f):
            seen[(r["member_id"], r["ts"], r["kind"], r["sku"])] = r
        for (mid, ts, kind, sku) in seen:
            member(mid).events.append((utc_date(ts), kind, sku))
    for m in members.values():
        metrics(m, as_of)
    score(members.values())
    return members, catalog


def metrics(m, as_of):
    """The per-member metrics of DATA.md (the same definitions as profiles.py)."""
    os_ = m.orders
    m.n_orders = len(os_)
    m.monetary = sum(o["amount"] for o in os_)
    by = m.row.get("birth_year") or ""
    m.age = as_of.year - int(by) if by.strip() else None
    m.r = m.f = m.m = m.value_tier = m.price_tier = m.sensitivity_tier = None
    if not os_:
        m.aov = m.aov_exact = m.recency = m.sensitivity = m.interval = None
        m.stage, m.repurchase_due, m.top_category, m.top_brand = "prospect", False, None, None
        return
    m.aov_exact = Fraction(m.monetary, len(os_))
    m.aov = int((Decimal(m.monetary) / len(os_)).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    days = sorted({o["date"] for o in os_})
    m.recency = (as_of - days[-1]).days
    m.stage = next((name for lim, name in STAGES if m.recency <= lim), "lost")
    m.sensitivity = sum(o["discounted"] for o in os_) / len(os_)
    gaps = sorted((b - a).days for a, b in zip(days, days[1:]))
    n = len(gaps)
    m.interval = None if not gaps else Fraction(gaps[n // 2]) if n % 2 else Fraction(gaps[n // 2 - 1] + gaps[n // 2], 2)
    m.repurchase_due = m.interval is not None and m.recency >= m.interval
    for attr, key in (("top_category", "category"), ("top_brand", "brand")):
        spend = defaultdict(int)
        for o in os_:
            for l, a in o["amounts"]:
                if l[key]:
                    spend[l[key]] += a
        setattr(m, attr, min(spend, key=lambda k: (-spend[k], k)) if spend else None)


def score(members):
    buyers = [m for m in members if m.n_orders > 0]
    if not buyers:
        return
    cut = lambda vals, ks: [nearest_rank(sorted(vals), k) for k in ks]
    rc = cut([m.recency for m in buyers], (20, 40, 60, 80))
    fc = cut([m.n_orders for m in buyers], (20, 40, 60, 80))
    mc = cut([m.monetary for m in buyers], (20, 40, 60, 80))
    p30, p80 = cut([m.aov_exact for m in buyers], (30, 80))
    for m in buyers:
        m.r = 5 - sum(c < m.recency for c in rc)
        m.f = 1 + sum(c < m.n_orders for c in fc)
        m.m = 1 + sum(c < m.monetary for c in mc)
        fm = m.f + m.m
        m.value_tier = "important" if m.r >= 4 and fm >= 8 else "at_risk" if m.r <= 2 and fm >= 7 else "general"
        m.price_tier = "low" if m.aov_exact <= p30 else "high" if m.aov_exact > p80 else "mid"
        s = m.sensitivity
        m.sensitivity_tier = "high" if s >= 0.5 else "low" if s < 0.2 else "mid"


# ---- conditions: each returns a predicate over (member, world) ----

class World:
    def __init__(self, as_of, catalog):
        self.as_of, self.catalog = as_of, catalog


def all_of(*cs):
    return lambda m, w: all(c(m, w) for c in cs)


def any_of(*cs):
    return lambda m, w: any(c(m, w) for c in cs)


def not_(c):
    return lambda m, w: not c(m, w)


METRIC = {
    "recency_days": lambda m: m.recency,
    "orders": lambda m: m.n_orders,
    "monetary": lambda m: m.monetary if m.n_orders else None,  # cents
    "aov": lambda m: m.aov,  # cents, rounded half away from zero
    "age": lambda m: m.age,
    "r_score": lambda m: m.r,
    "f_score": lambda m: m.f,
    "m_score": lambda m: m.m,
    "price_sensitivity": lambda m: m.sensitivity,
    "interval_median_days": lambda m: m.interval,
}


def between(metric, lo=None, hi=None):
    """Inclusive; money bounds in cents. An undefined value never passes."""
    def test(m, w):
        v = METRIC[metric](m)
        return v is not None and (lo is None or v >= lo) and (hi is None or v <= hi)
    return test


def field_in(attr, *values):
    return lambda m, w: getattr(m, attr) in values


def gender(*gs):
    return lambda m, w: ((m.row.get("gender") or "").strip().lower() or "unknown") in gs


def city(*names):
    return lambda m, w: ascii_lower(m.row.get("city") or "") in {ascii_lower(n) for n in names}


def consent(*channels):
    def has(m, ch):
        if ch == "email":
            return truthy(m.row.get("opted_in_email")) and bool(m.row.get("email"))
        if ch == "sms":
            return truthy(m.row.get("opted_in_sms")) and bool(m.row.get("phone"))
        return True
    return lambda m, w: any(has(m, ch) for ch in channels)


def order_has(o, kind, names):
    return True if kind is None else bool({"sku": o["skus"], "category": o["cats"], "brand": o["brands"]}[kind] & set(names))


def bought(kind=None, names=(), within=None):
    """An order up to as-of (within the last `within` days when given) with a matching line."""
    def test(m, w):
        start = w.as_of - timedelta(days=within) if within is not None else date.min
        return any(start <= o["date"] <= w.as_of and order_has(o, kind, names) for o in m.orders)
    return test


def not_bought(kind=None, names=(), within=None):
    return not_(bought(kind, names, within))


def event(kind, within, item=None, names=(), without_buying=False):
    """An event of `kind` dated within the last `within` days up to as-of, on a matching
    item (category and brand from the catalog); with `without_buying`, only one whose sku
    the member did not buy on or after the event's day (up to as-of)."""
    def test(m, w):
        start = w.as_of - timedelta(days=within)
        for day, k, sku in m.events:
            if k != kind or not start <= day <= w.as_of:
                continue
            if item == "sku" and sku not in names:
                continue
            if item in ("category", "brand"):
                p = w.catalog.get(sku)
                if p is None or p[item] not in names:
                    continue
            if without_buying and any(day <= o["date"] <= w.as_of and sku in o["skus"] for o in m.orders):
                continue
            return True
        return False
    return test


YUAN = 100

# The rules of tests/it/fixtures/audience-rules, one entry per file, written again here.
RULES = {
    "stage-recency-consent": all_of(
        field_in("stage", "silent", "sleeping"),
        between("recency_days", 100, 250),
        consent("email"),
    ),
    "spend-ranges": all_of(
        between("orders", 3),
        between("monetary", 300 * YUAN, 3000 * YUAN),
        between("aov", Decimal("79.90") * YUAN),
        between("age", 25, 45),
        gender("f"),
    ),
    "rfm-tiers": all_of(
        any_of(
            all_of(between("r_score", 4), between("f_score", 3)),
            all_of(between("m_score", None, 2), field_in("value_tier", "at_risk")),
        ),
        field_in("value_tier", "important", "at_risk"),
        not_(field_in("price_tier", "low")),
    ),
    "price-habits": all_of(
        any_of(
            field_in("price_tier", "high"),
            field_in("sensitivity_tier", "high"),
            between("price_sensitivity", 0.3, 0.45),
        ),
        not_(field_in("sensitivity_tier", "low")),
        consent("email", "sms"),
    ),
    "repurchase-cycle": all_of(
        field_in("repurchase_due", True),
        between("interval_median_days", 20.5, 120),
        field_in("stage", "active", "silent"),
    ),
    "taste-and-place": all_of(
        any_of(
            field_in("top_category", "cat09", "cat37"),
            field_in("top_brand", "brand061"),
        ),
        city("北京", "上海", "HangZhou"),
        gender("f", "m"),
        consent("email"),
    ),
    "bought-history": all_of(
        any_of(
            bought("sku", ["sku01644", "sku00604"], within=120),
            bought("brand", ["brand145", "brand043"]),
        ),
        not_bought("category", ["cat37"], within=365),
        not_bought("sku", ["sku02507"]),
        bought(within=400),
    ),
    "browsed-not-bought": any_of(
        event("view", 30, "category", ["cat09", "cat30"], without_buying=True),
        event("cart", 14),
        event("view", 7, "brand", ["brand059"]),
    ),
    "favorited-carted": all_of(
        any_of(
            event("favorite", 60, without_buying=True),
            event("cart", 90, "sku", ["sku01644", "sku02507", "sku00604"]),
            event("favorite", 45, "brand", ["brand061", "brand145"], without_buying=True),
        ),
        not_(bought(within=14)),
    ),
    "nested-prospects": any_of(
        all_of(field_in("stage", "prospect"), consent("sms")),
        all_of(
            not_(between("r_score", 2)),
            not_(any_of(field_in("price_tier", "high"), between("orders", 5))),
        ),
        all_of(city("hangzhou"), not_(consent("email"))),
    ),
}


def main(data_dir, as_of_s, out_path=None):
    as_of = date.fromisoformat(as_of_s)
    members, catalog = load(data_dir, as_of)
    w = World(as_of, catalog)
    result = {}
    for rule_id, cond in RULES.items():
        result[rule_id] = sorted(m.id for m in members.values() if cond(m, w))
        print(f"{rule_id:<24} {len(result[rule_id]):>6} of {len(members)}", file=sys.stderr)
    text = json.dumps(result, ensure_ascii=False)
    if out_path:
        with open(out_path, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        print(text)


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    main(*sys.argv[1:])
