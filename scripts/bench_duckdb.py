#!/usr/bin/env python3
"""The DuckDB side of scripts/bench-import.sh: the same CSV files, the same metrics.

  bench_duckdb.py DATA_DIR AS_OF     -> prints 'load_s=.. metrics_s=.. audience_s=.. members=..'

load: orders.csv into an in-memory table; metrics: every member's orders, monetary, aov,
first/last order date, recency, stage, RFM scores from nearest-rank cut points, price tier,
price sensitivity and top category; audience: the sleeping win-back audience (stage
sleeping, price tier, email consent)."""
import sys, time
import duckdb

data, as_of = sys.argv[1], sys.argv[2]
con = duckdb.connect()
t = time.perf_counter()
con.execute(f"CREATE TABLE orders AS SELECT * FROM read_csv('{data}/orders.csv', header=true, auto_detect=true)")
con.execute(f"CREATE TABLE members AS SELECT * FROM read_csv('{data}/members.csv', header=true, auto_detect=true)")
load = time.perf_counter() - t

METRICS = f"""
WITH lines AS (
  SELECT member_id, order_id, CAST(ts AS DATE) AS d, category,
         round(unit_price * qty * (1 - coalesce(discount_pct, 0) / 100.0), 2) AS amount,
         coalesce(discount_pct, 0) > 0 AS disc
  FROM orders WHERE CAST(ts AS DATE) <= DATE '{as_of}'),
ords AS (SELECT member_id, order_id, min(d) AS d, sum(amount) AS amount, bool_or(disc) AS disc FROM lines GROUP BY ALL),
m AS (SELECT member_id, count(*) AS orders, sum(amount) AS monetary, sum(amount) / count(*) AS aov,
             min(d) AS first_d, max(d) AS last_d, DATE '{as_of}' - max(d) AS recency,
             avg(CAST(disc AS INT)) AS sensitivity FROM ords GROUP BY member_id),
cat AS (SELECT member_id, arg_max(category, s) AS top_category FROM
        (SELECT member_id, category, sum(amount) AS s FROM lines GROUP BY ALL) GROUP BY member_id),
cuts AS (SELECT quantile_disc(recency, [0.2, 0.4, 0.6, 0.8]) AS rc, quantile_disc(orders, [0.2, 0.4, 0.6, 0.8]) AS fc,
                quantile_disc(monetary, [0.2, 0.4, 0.6, 0.8]) AS mc, quantile_disc(aov, 0.3) AS p30, quantile_disc(aov, 0.8) AS p80 FROM m)
SELECT m.*, c.top_category,
  CASE WHEN recency <= 90 THEN 'active' WHEN recency <= 180 THEN 'silent' WHEN recency <= 270 THEN 'sleeping'
       WHEN recency <= 359 THEN 'dormant' ELSE 'lost' END AS stage,
  5 - len(list_filter(cuts.rc, lambda x: x < recency)) AS r, 1 + len(list_filter(cuts.fc, lambda x: x < orders)) AS f,
  1 + len(list_filter(cuts.mc, lambda x: x < monetary)) AS mscore,
  CASE WHEN aov <= p30 THEN 'low' WHEN aov > p80 THEN 'high' ELSE 'mid' END AS price_tier
FROM m JOIN cat c USING (member_id), cuts
"""
t = time.perf_counter()
n = con.execute(f"SELECT count(*) FROM ({METRICS})").fetchone()[0]
metrics = time.perf_counter() - t
t = time.perf_counter()
aud = con.execute(f"""SELECT count(*) FROM ({METRICS}) p JOIN members USING (member_id)
                     WHERE stage = 'sleeping' AND price_tier IN ('mid', 'high') AND opted_in_email""").fetchone()[0]
audience = time.perf_counter() - t
print(f"load_s={load:.3f} metrics_s={metrics:.3f} audience_s={audience:.3f} members={n} audience={aud}")
