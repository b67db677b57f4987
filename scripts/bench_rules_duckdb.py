#!/usr/bin/env python3
"""The DuckDB side of `bench_rules`: the sleeping win-back audience of rules/sleeping-winback.toml
straight from the CSV files (DATA.md semantics), timed after loading.

  bench_rules_duckdb.py DATA_DIR AS_OF   -> prints 'load_s=.. audience_s=.. audience=N'

The audience: stage sleeping (181 <= days since the last order <= 270, an order's date being
the UTC date of its earliest line, orders after AS_OF ignored), at least one order, and
consent for email (opted in, with an address) or SMS (opted in, with a number)."""
import sys, time
import duckdb

data, as_of = sys.argv[1], sys.argv[2]
con = duckdb.connect()
t = time.perf_counter()
con.execute(f"CREATE TABLE orders AS SELECT * FROM read_csv('{data}/orders.csv', header=true, auto_detect=true)")
con.execute(f"CREATE TABLE members AS SELECT * FROM read_csv('{data}/members.csv', header=true, all_varchar=true)")
load = time.perf_counter() - t

QUERY = f"""
WITH ords AS (
  SELECT member_id, order_id, min(CAST(timezone('UTC', CAST(ts AS TIMESTAMPTZ)) AS DATE)) AS d
  FROM orders GROUP BY member_id, order_id),
last AS (SELECT member_id, max(d) AS last_d FROM ords WHERE d <= DATE '{as_of}' GROUP BY member_id)
SELECT count(*) FROM last JOIN members USING (member_id)
WHERE DATE '{as_of}' - last_d BETWEEN 181 AND 270
  AND ((lower(opted_in_email) IN ('true', '1') AND coalesce(email, '') <> '')
    OR (lower(opted_in_sms) IN ('true', '1') AND coalesce(phone, '') <> ''))
"""
t = time.perf_counter()
n = con.execute(QUERY).fetchone()[0]
audience = time.perf_counter() - t
print(f"load_s={load:.3f} audience_s={audience:.3f} audience={n}")
