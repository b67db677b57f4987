//! Import: malformed files report every bad row with its line and reason and keep every
//! good row; re-imports change nothing; NDJSON and CSV give the same store.

use crate::support::{import, open_store};
use rekindle::profile::ProfileConfig;
use rekindle::domain::parse_date;
use rekindle::ingest::{import_file, ImportOptions, IngestError};
use rekindle::population::{ExportFormat, Population};
use rekindle::store::Store;
use std::path::Path;

fn export(store: &Store) -> String {
    let pop = Population::compute(store, parse_date("2026-11-01").unwrap(), &ProfileConfig::default()).unwrap();
    let mut out = Vec::new();
    pop.export(&mut out, ExportFormat::Csv).unwrap();
    String::from_utf8(out).unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn malformed_orders_report_each_bad_row_and_keep_the_good_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let mut csv = b"order_id,member_id,ts,sku,category,brand,unit_price,qty,discount_pct,utm_source\n".to_vec();
    csv.extend_from_slice(b"o1,m1,2026-01-02T10:00:00Z,s1,shoes,acme,19.99,2,10,x\n"); // line 2 good
    csv.extend_from_slice(b"o2,m1,2026-13-02T10:00:00Z,s1,shoes,acme,19.99,1,,x\n"); // 3 bad timestamp
    csv.extend_from_slice(b"o3,m2,2026-01-03T10:00:00Z,s2,shoes,acme,-5.00,1,,x\n"); // 4 negative price
    csv.extend_from_slice(b"o4,m2,2026-01-03T10:00:00Z,\"s3,shoes,acme,5.00,1,,x\n"); // 5 broken quote
    csv.extend_from_slice(b"o5,m3,2026-01-04T10:00:00Z,s4,bags,acme,7.50,1,0,x\n"); // 6 good
    csv.extend_from_slice(b"o6,m3,2026-01-04T10:00:00Z,s5,bag\xff\xfes,acme,7.50,1,0,x\n"); // 7 invalid utf-8
    csv.extend_from_slice(b"o7,m4,2026-01-05T10:00:00Z,s6,bags,acme,7.50,1\n"); // 8 too few fields
    csv.extend_from_slice(b"o8,m4,2026-01-05T10:00:00Z,s6,\"multi\nline\",acme,7.50,1,5,x\n"); // 9-10 good, quoted newline
    csv.extend_from_slice(b"o9,m5,2026-01-06T10:00:00Z,s7,bags,acme,1.234,1,0,x\n"); // 11 three decimals
    csv.extend_from_slice(b"o10,m5,2026-01-06T10:00:00Z,s7,bags,acme,3.00,0,0,x\n"); // 12 qty 0
    csv.extend_from_slice(b"o11,m5,2026-01-06T10:00:00Z,s8,bags,acme,3.00,1,100,x\n"); // 13 discount 100
    csv.extend_from_slice(b"o12,m6,2026-01-07T10:00:00Z,s9,bags,acme,3.00,1,0,x\n"); // 14 good
    let path = write(dir.path(), "orders.csv", &csv);
    let (s, bad) = import(&store, &path);
    let got: Vec<(u64, String)> = bad.iter().map(|b| (b.line, b.reason.clone())).collect();
    let expect_prefix = [
        (3, "ts: bad timestamp"),
        (4, "unit_price: \"-5.00\" is negative"),
        (5, "expected 10 fields"),
        (7, "category: invalid UTF-8"),
        (8, "expected 10 fields, found 8"),
        (11, "unit_price: \"1.234\" has more than 2 decimal places"),
        (12, "qty: \"0\" is not an integer >= 1"),
        (13, "discount_pct: \"100\" is not below 100"),
    ];
    assert_eq!(got.len(), expect_prefix.len(), "{got:#?}");
    for ((line, reason), (want_line, want)) in got.iter().zip(expect_prefix) {
        assert_eq!(*line, want_line, "{reason}");
        assert!(reason.starts_with(want), "line {line}: {reason:?} should start with {want:?}");
    }
    assert!(bad.iter().all(|b| b.file.ends_with("orders.csv")));
    assert_eq!((s.rows, s.imported, s.bad), (12, 4, 8));
    assert_eq!(s.unknown_columns, vec!["utm_source".to_string()]);
    // every good row arrived, as a bare member with its order
    for (m, monetary) in [("m1", 3598), ("m3", 750), ("m4", 713), ("m6", 300)] {
        let member = store.member(m).unwrap().unwrap_or_else(|| panic!("{m} missing"));
        assert!(!member.known, "bare member");
        assert_eq!(member.digest.orders.iter().map(|o| o.amount).sum::<i64>(), monetary, "{m}");
    }
    assert!(store.member("m2").unwrap().is_none());
    assert_eq!(store.history("m4").unwrap().unwrap().lines[0].category, "multi\nline");
}

#[test]
fn a_missing_required_column_names_the_file_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let path = write(dir.path(), "orders.csv", b"order_id,member_id,ts,sku,qty\no1,m1,2026-01-01,s,1\n");
    let err = import_file(&store, &path, &ImportOptions { progress: false, ..Default::default() }, &mut |_| {}).unwrap_err();
    assert!(matches!(err, IngestError::MissingColumn { column: "unit_price", .. }), "{err}");
    assert!(err.to_string().contains("orders.csv") && err.to_string().contains("unit_price"), "{err}");
    let path = write(dir.path(), "mystery.csv", b"a,b\n1,2\n");
    let err = import_file(&store, &path, &ImportOptions { progress: false, ..Default::default() }, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("--kind"), "{err}");
}

#[test]
fn malformed_members_and_ndjson_rows() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let members = write(
        dir.path(),
        "members.csv",
        "member_id,name,gender,birth_year,opted_in_email,tz\nm1,王伟,m,1980,true,Asia/Shanghai\nm2,李芳,x,1990,true,\nm3,张三,f,19x0,true,\nm4,赵四,f,1991,maybe,\nm5,周五,,,1,Europe/Nowhere\nm6,,f,,,\n"
            .as_bytes(),
    );
    let (s, bad) = import(&store, &members);
    assert_eq!(bad.iter().map(|b| b.line).collect::<Vec<_>>(), vec![3, 4, 5, 6]);
    assert_eq!((s.imported, s.bad), (2, 4));
    assert!(store.member("m1").unwrap().unwrap().opted_in_email);

    let events = write(
        dir.path(),
        "events.ndjson",
        b"{\"member_id\":\"m1\",\"ts\":\"2026-01-01T00:00:00Z\",\"kind\":\"view\",\"sku\":\"s1\"}\n\
          {\"member_id\":\"m1\",\"ts\":\"2026-01-01T00:00:00Z\",\"kind\":\"like\",\"sku\":\"s1\"}\n\
          not json at all\n\
          \n\
          {\"member_id\":\"m1\",\"ts\":\"2026-01-02T00:00:00Z\",\"kind\":\"cart\"}\n\
          [1,2]\n\
          {\"member_id\":\"m1\",\"ts\":\"2026-01-02T00:00:00Z\",\"kind\":\"favorite\",\"sku\":\"s2\",\"channel\":\"app\"}\n",
    );
    let (s, bad) = import(&store, &events);
    let lines: Vec<u64> = bad.iter().map(|b| b.line).collect();
    assert_eq!(lines, vec![2, 3, 5, 6], "{bad:#?}");
    assert!(bad[0].reason.contains("kind"), "{:?}", bad[0]);
    assert!(bad[1].reason.contains("invalid JSON"), "{:?}", bad[1]);
    assert!(bad[2].reason.contains("sku"), "{:?}", bad[2]);
    assert_eq!((s.imported, s.bad), (2, 4));
    assert_eq!(store.events("m1").unwrap().unwrap().events.len(), 2);
}

#[test]
fn reimporting_changes_nothing_and_ndjson_equals_csv() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    rekindle::generate::generate(&data, &rekindle::generate::GenerateOptions { members: 500, ..Default::default() }).unwrap();
    let csv_store = open_store(&dir.path().join("a"));
    for f in ["members.csv", "orders.csv", "events.csv"] {
        import(&csv_store, &data.join(f));
    }
    let first = export(&csv_store);
    for f in ["orders.csv", "members.csv", "events.csv"] {
        import(&csv_store, &data.join(f));
    }
    assert_eq!(export(&csv_store), first, "re-import changed the profiles");
    let ev = csv_store.events("m0000001").unwrap();

    // the same records as NDJSON, with numbers and booleans as JSON values
    let json_store = open_store(&dir.path().join("b"));
    for f in ["members", "orders", "events"] {
        let mut rdr = csv::Reader::from_path(data.join(format!("{f}.csv"))).unwrap();
        let headers = rdr.headers().unwrap().clone();
        let mut out = String::new();
        for rec in rdr.records() {
            let rec = rec.unwrap();
            let mut obj = serde_json::Map::new();
            for (h, v) in headers.iter().zip(rec.iter()) {
                let val = match h {
                    "qty" | "birth_year" if !v.is_empty() => serde_json::Value::from(v.parse::<i64>().unwrap()),
                    "opted_in_email" | "opted_in_sms" => serde_json::Value::from(v == "true"),
                    _ => serde_json::Value::from(v),
                };
                obj.insert(h.to_string(), val);
            }
            out.push_str(&serde_json::Value::Object(obj).to_string());
            out.push('\n');
        }
        let p = write(dir.path(), &format!("{f}.ndjson"), out.as_bytes());
        let (_, bad) = import(&json_store, &p);
        assert!(bad.is_empty(), "{bad:?}");
    }
    assert_eq!(export(&json_store), first);
    assert_eq!(json_store.events("m0000001").unwrap(), ev);
}

#[test]
fn an_order_named_by_another_member_moves_with_all_its_lines() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let hdr = "order_id,member_id,ts,sku,unit_price,qty\n";
    let a = write(dir.path(), "a.csv", format!("{hdr}o1,m1,2026-01-01T00:00:00Z,s1,10.00,1\no1,m1,2026-01-01T00:00:00Z,s2,5.00,1\n").as_bytes());
    import(&store, &a);
    let b = write(dir.path(), "b.csv", format!("{hdr}o1,m2,2026-01-01T00:00:00Z,s2,6.00,1\n").as_bytes());
    let (s, _) = import(&store, &b);
    assert_eq!(s.moved_orders, 1);
    assert!(store.member("m1").unwrap().unwrap().digest.orders.is_empty());
    let m2 = store.member("m2").unwrap().unwrap();
    assert_eq!(m2.digest.orders.len(), 1);
    assert_eq!(m2.digest.orders[0].amount, 1600, "s1 moved along and s2 was replaced");
}

#[test]
fn member_columns_absent_from_a_file_keep_their_values() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    import(&store, &write(dir.path(), "m1.csv", "member_id,name,city,opted_in_sms\nm1,王伟,上海,true\n".as_bytes()));
    import(&store, &write(dir.path(), "m2.csv", "member_id,city\nm1,北京\n".as_bytes()));
    let m = store.member("m1").unwrap().unwrap();
    assert_eq!((m.name.as_str(), m.city.as_str(), m.opted_in_sms), ("王伟", "北京", true));
}

fn import_with_chunk(store: &Store, path: &Path, chunk_rows: usize) -> rekindle::ingest::FileSummary {
    let opts = ImportOptions { progress: false, chunk_rows, ..Default::default() };
    import_file(store, path, &opts, &mut |b| panic!("unexpected bad row {b}")).unwrap()
}

#[test]
fn spilled_sorted_runs_give_the_same_store_as_one_pass() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    rekindle::generate::generate(&data, &rekindle::generate::GenerateOptions { members: 400, ..Default::default() }).unwrap();
    let one = open_store(&dir.path().join("one"));
    let many = open_store(&dir.path().join("many"));
    for f in ["members.csv", "orders.csv", "events.csv"] {
        import_with_chunk(&one, &data.join(f), 1_000_000);
        // 30-row chunks, a run every 300 rows: more than ten runs per file
        import_with_chunk(&many, &data.join(f), 30);
    }
    assert_eq!(export(&many), export(&one));
    assert_eq!(many.events("m0000007").unwrap(), one.events("m0000007").unwrap());
    assert_eq!(many.history("m0000007").unwrap(), one.history("m0000007").unwrap());
}

#[test]
fn owner_changes_across_runs_and_against_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let hdr = "order_id,member_id,ts,sku,unit_price,qty\n";
    let a = write(dir.path(), "a.csv", format!("{hdr}s1,m1,2026-01-01T00:00:00Z,x,1.00,1\ns1,m1,2026-01-01T00:00:00Z,y,2.00,1\n").as_bytes());
    import(&store, &a);
    // s1 moves m1 -> m3 (stored lines come along); t1 is first m2's, then m4's within the file
    let mut rows = String::from(hdr);
    rows.push_str("t1,m2,2026-02-01T00:00:00Z,a,10.00,1\n");
    for i in 0..40 {
        rows.push_str(&format!("f{i},m9,2026-02-02T00:00:00Z,z,1.00,1\n"));
    }
    rows.push_str("s1,m3,2026-01-01T00:00:00Z,y,5.00,1\n");
    rows.push_str("t1,m4,2026-02-01T00:00:00Z,b,20.00,1\n");
    let b = write(dir.path(), "b.csv", rows.as_bytes());
    let s = import_with_chunk(&store, &b, 4);
    assert_eq!(s.moved_orders, 1, "only s1 moved against the store");
    let spend = |m: &str| store.member(m).unwrap().map(|m| m.digest.orders.iter().map(|o| o.amount).sum::<i64>());
    assert_eq!(spend("m1"), Some(0), "m1 lost s1");
    assert_eq!(spend("m3"), Some(600), "s1 with x moved along and y replaced");
    assert_eq!(spend("m2"), None, "t1 ended with m4, so m2 never became a member");
    assert_eq!(spend("m4"), Some(3000), "both lines of t1");
    assert_eq!(store.order_owner("t1").unwrap().as_deref(), Some("m4"));
    assert_eq!(store.order_owner("s1").unwrap().as_deref(), Some("m3"));
    assert_eq!(spend("m9"), Some(4000));
}

#[test]
fn long_member_ids_that_share_their_first_16_bytes_stay_apart_across_runs() {
    // the spill and the merge order members by a 16-byte prefix first
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let members = ["customer-0000001", "customer-0000001a", "customer-0000001b", "customer-0000001ab", "customer-000000", "customer-0000002"];
    let mut rows = String::from("order_id,member_id,ts,sku,unit_price,qty\n");
    for round in 0..12 {
        for (i, m) in members.iter().enumerate().rev() {
            rows.push_str(&format!("o{round}-{i},{m},2026-01-{:02}T00:00:00Z,{m}-sku{round},1.00,1\n", round + 1));
        }
    }
    let path = write(dir.path(), "orders.csv", rows.as_bytes());
    // 5-row chunks: a run every 50 rows, each member in every run
    import_with_chunk(&store, &path, 5);
    for m in members {
        let history = store.history(m).unwrap().unwrap_or_else(|| panic!("{m} has a history"));
        assert_eq!(history.lines.len(), 12, "{m}");
        assert!(history.lines.iter().all(|l| l.sku.starts_with(&format!("{m}-sku"))), "{m} holds only its own lines: {history:?}");
    }
}

/// Issue 14 item 7: `2025-03-1é4T09:29:26Z` panicked at a byte slice inside a character,
/// and the whole file's good rows were lost. In every importer it is now one bad row.
#[test]
fn a_multibyte_character_in_a_timestamp_is_one_bad_row_in_every_importer() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let files: [(&str, String); 4] = [
        ("orders.csv", "order_id,member_id,ts,sku,unit_price,qty\no1,m1,2025-03-14T09:29:26Z,s1,1.00,1\no2,m1,2025-03-1é4T09:29:26Z,s1,1.00,1\no3,m2,2025-03-14T09:29:26Z,s1,1.00,1\n".into()),
        ("members.csv", "member_id,signup_ts\nm1,2025-03-14T09:29:26Z\nm2,2025-03-1é4T09:29:26Z\nm3,2025-03-14\n".into()),
        ("events.csv", "member_id,ts,kind,sku\nm1,2025-03-14T09:29:26Z,view,s1\nm1,2025-03-1é4T09:29:26Z,view,s2\nm1,2025-03-15T09:29:26Z,cart,s1\n".into()),
        (
            "orders.ndjson",
            [r#"{"order_id":"o4","member_id":"m4","ts":"2025-03-14T09:29:26Z","sku":"s1","unit_price":1,"qty":1}"#, r#"{"order_id":"o5","member_id":"m4","ts":"2025-03-1é4T09:29:26Z","sku":"s1","unit_price":1,"qty":1}"#, r#"{"order_id":"o6","member_id":"m5","ts":"2025-03-14","sku":"s1","unit_price":1,"qty":1}"#].join("\n"),
        ),
    ];
    for (name, text) in files {
        let (s, bad) = import(&store, &write(dir.path(), name, text.as_bytes()));
        assert_eq!((s.imported, s.bad), (2, 1), "{name}: {bad:?}");
        assert_eq!(bad[0].line, if name.ends_with(".csv") { 3 } else { 2 }, "{name}");
        assert!(bad[0].reason.contains("bad timestamp") && bad[0].reason.contains("1é4"), "{name}: {}", bad[0].reason);
    }
    assert_eq!(store.history("m1").unwrap().unwrap().lines.len(), 1);
    assert!(store.member("m2").unwrap().is_some_and(|m| !m.known), "m2's members row was bad, its order good");
    assert_eq!(store.events("m1").unwrap().unwrap().events.len(), 2);
    assert!(store.history("m4").unwrap().is_some() && store.history("m5").unwrap().is_some());
}

/// The same line through the daemon's `/api/ingest`: a 500 that dropped the request's
/// good lines, now a 200 reporting one bad line.
#[test]
fn an_ingest_request_with_a_multibyte_timestamp_keeps_its_good_lines() {
    let daemon = crate::public::Daemon::start("");
    let body = [
        r#"{"order_id":"o1","member_id":"m1","ts":"2025-03-14T09:29:26Z","sku":"s1","unit_price":"2.00","qty":1}"#,
        r#"{"order_id":"o2","member_id":"m1","ts":"2025-03-1é4T09:29:26Z","sku":"s1","unit_price":"2.00","qty":1}"#,
        r#"{"order_id":"o3","member_id":"m2","ts":"2025-03-15T09:29:26Z","sku":"s1","unit_price":"2.00","qty":1}"#,
    ]
    .join("\n");
    let (status, answer) = crate::api::http(daemon.port, "POST", "/api/ingest", &[("Authorization", "Bearer t0ken")], &body);
    assert_eq!(status, 200, "{answer}\n{}", daemon.log());
    let summary: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!((summary["imported"].as_u64(), summary["bad"].as_u64(), summary["bad_lines"][0]["line"].as_u64()), (Some(2), Some(1), Some(2)), "{summary}");
}

/// An NDJSON file has no header: its first line is a row, and a damaged one is a bad row.
/// It used to fail the whole file (not JSON) or decide its kind (a damaged `order_id` key
/// read every order line as a member row).
#[test]
fn a_damaged_first_ndjson_line_is_a_bad_row_and_does_not_decide_the_kind() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let good = |i: u32| format!(r#"{{"order_id":"o{i}","member_id":"m{i}","ts":"2026-01-02T00:00:00Z","sku":"s1","unit_price":"1.00","qty":1}}"#);
    for (name, first) in [("not-json.ndjson", r#"{"order_id":"o0","member_id":"#.to_string()), ("renamed-key.ndjson", good(0).replace("order_id", "ordxr_id"))] {
        let text = std::iter::once(first).chain((1..=5).map(good)).collect::<Vec<_>>().join("\n");
        let (s, bad) = import(&store, &write(dir.path(), name, text.as_bytes()));
        assert_eq!((s.kind.name(), s.imported, s.bad), ("orders", 5, 1), "{name}: {bad:?}");
        assert_eq!(bad[0].line, 1, "{name}");
    }
    assert!(store.member("m0").unwrap().is_none(), "the damaged line made no member");
    assert!((1..=5).all(|i| store.member(&format!("m{i}")).unwrap().is_some_and(|m| !m.known && m.digest.orders.len() == 1)));
    // a field that no line has still fails the file at once, naming it
    let no_qty = (1..=3).map(|i| good(i).replace(r#","qty":1"#, "")).collect::<Vec<_>>().join("\n");
    let err = import_file(&store, &write(dir.path(), "no-qty.ndjson", no_qty.as_bytes()), &ImportOptions { progress: false, ..Default::default() }, &mut |_| {}).unwrap_err();
    assert!(matches!(err, IngestError::MissingColumn { column: "qty", .. }), "{err}");
}

/// Thousands of orders leaving one member (and some coming back to it) in one import:
/// each order's lines arrive whole at their new owner. Reading the former owner's history
/// once per moved order made 20,000 moves take 77 s.
#[test]
fn thousands_of_orders_moving_between_members_arrive_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let hdr = "order_id,member_id,ts,sku,unit_price,qty\n";
    let mut before = String::from(hdr);
    for i in 0..3000 {
        before.push_str(&format!("o{i},m1,2026-01-01T00:00:00Z,a,1.00,1\no{i},m1,2026-01-01T00:00:00Z,b,2.00,1\n"));
    }
    for i in 0..50 {
        before.push_str(&format!("p{i},m2,2026-01-02T00:00:00Z,a,5.00,1\n"));
    }
    import(&store, &write(dir.path(), "before.csv", before.as_bytes()));
    // every o-order goes to one of seven members by one of its lines; m2's p-orders go to m1
    let mut after = String::from(hdr);
    for i in 0..3000 {
        after.push_str(&format!("o{i},n{},2026-01-01T00:00:00Z,b,2.00,1\n", i % 7));
    }
    for i in 0..50 {
        after.push_str(&format!("p{i},m1,2026-01-02T00:00:00Z,a,5.00,1\n"));
    }
    let s = import_with_chunk(&store, &write(dir.path(), "after.csv", after.as_bytes()), 500);
    assert_eq!(s.moved_orders, 3050);
    let m1 = store.history("m1").unwrap().unwrap();
    assert_eq!(m1.lines.len(), 50);
    assert!(m1.lines.iter().all(|l| l.order_id.starts_with('p')));
    assert!(store.history("m2").unwrap().unwrap().lines.is_empty());
    for n in 0..7 {
        let h = store.history(&format!("n{n}")).unwrap().unwrap();
        let orders = (0..3000).filter(|i| i % 7 == n).count();
        assert_eq!(h.lines.len(), 2 * orders, "n{n}: both lines of each order, the stored one moved along");
        assert_eq!(store.member(&format!("n{n}")).unwrap().unwrap().digest.orders.iter().map(|o| o.amount).sum::<i64>(), 300 * orders as i64);
    }
}

/// Chinese shops export mobile numbers without `+86` (and with spaces, dashes, `0086`,
/// full-width digits): read in `[members] phone_region` they are stored in E.164, the
/// form SMS gateways take; a number that is not valid there is kept as given, and "" turns
/// the reading off.
#[test]
fn phones_without_a_country_code_are_stored_in_e164_for_the_configured_region() {
    let dir = tempfile::tempdir().unwrap();
    let csv = "member_id,name,phone\nm1,李雷,13800138000\nm2,韩梅梅,138-0013-8001\nm3,王芳,0086 138 0013 8002\nm4,张伟,１３８００１３８００３\nm5,Ann,+16502530000\nm6,坏号码,12345\nm7,空,\n";
    let ndjson = "{\"member_id\":\"m8\",\"phone\":\"86 13800138004\"}\n{\"member_id\":\"m9\",\"phone\":13800138005}\n";
    let files = [write(dir.path(), "members.csv", csv.as_bytes()), write(dir.path(), "more.ndjson", ndjson.as_bytes())];
    let run = |config: &str, store: &str| {
        std::fs::write(dir.path().join("config.toml"), config).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rekindle"))
            .arg("--db")
            .arg(dir.path().join(store))
            .arg("import")
            .args(&files)
            .env("REKINDLE_CONFIG", dir.path().join("config.toml"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let store = Store::open(&dir.path().join(store), 64).unwrap();
        (1..=9).map(|i| store.member(&format!("m{i}")).unwrap().expect("imported").phone).collect::<Vec<_>>()
    };
    let phones = run("", "default");
    let want = ["+8613800138000", "+8613800138001", "+8613800138002", "+8613800138003", "+16502530000", "12345", "", "+8613800138004", "+8613800138005"];
    assert_eq!(phones, want, "the default region is CN");
    let us = run("[members]\nphone_region = \"US\"\n", "us");
    assert_eq!((us[0].as_str(), us[4].as_str()), ("13800138000", "+16502530000"), "not a valid US number: kept as given");
    let kept = run("[members]\nphone_region = \"\"\n", "off");
    assert_eq!(kept[..4], ["13800138000", "138-0013-8001", "0086 138 0013 8002", "１３８００１３８００３"], "no region: as given");
}
