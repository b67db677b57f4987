//! Turning one input row into a typed record: the columns of each kind (DATA.md),
//! the required ones, and the per-field checks that make a row good or bad.
//!
//! A row arrives as [`Fields`]: the values of the kind's columns in column order, whatever
//! the file's own column order or format (CSV or NDJSON) was.

use crate::domain::{check_id, parse_bool, parse_scaled, parse_timestamp, Cents, Timestamp};
use crate::store::model::{Event, EventKind, Gender, Member, OrderLine, Product};
pub use crate::store::rows::{EventRow, MemberRow, OrderRow};

/// The four kinds of input file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Members,
    Orders,
    Events,
    Products,
}

impl Kind {
    /// Every column this kind reads, in a fixed order; `Fields` is indexed by it.
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            Kind::Members => &[
                "member_id", "name", "email", "phone", "gender", "birth_year", "city", "signup_ts", "opted_in_email",
                "opted_in_sms", "tz",
            ],
            Kind::Orders => &["order_id", "member_id", "ts", "sku", "category", "brand", "unit_price", "qty", "discount_pct"],
            Kind::Events => &["member_id", "ts", "kind", "sku", "channel"],
            Kind::Products => &["sku", "name", "category", "brand", "price", "url", "in_stock"],
        }
    }

    pub fn required(self) -> &'static [&'static str] {
        match self {
            Kind::Members => &["member_id"],
            Kind::Orders => &["order_id", "member_id", "ts", "sku", "unit_price", "qty"],
            Kind::Events => &["member_id", "ts", "kind", "sku"],
            Kind::Products => &["sku", "name"],
        }
    }

    /// Tells the kind of a file from its column names.
    pub fn detect<'a>(names: impl IntoIterator<Item = &'a str> + Clone) -> Option<Kind> {
        let has = |c: &str| names.clone().into_iter().any(|n| n == c);
        if has("order_id") {
            Some(Kind::Orders)
        } else if has("member_id") && has("kind") && has("sku") {
            Some(Kind::Events)
        } else if has("member_id") {
            Some(Kind::Members)
        } else if has("sku") && has("name") {
            Some(Kind::Products)
        } else {
            None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Members => "members",
            Kind::Orders => "orders",
            Kind::Events => "events",
            Kind::Products => "products",
        }
    }
}

/// The values of one row in the kind's column order; `None` for a column the file lacks.
pub struct Fields<'a> {
    pub values: [Option<&'a str>; 11],
    pub kind: Kind,
}

impl<'a> Fields<'a> {
    /// The trimmed value of column `i`, `None` when absent or empty.
    fn get(&self, i: usize) -> Option<&'a str> {
        self.values[i].map(str::trim).filter(|s| !s.is_empty())
    }

    fn required(&self, i: usize) -> Result<&'a str, String> {
        self.get(i).ok_or_else(|| format!("{} is missing or empty", self.kind.columns()[i]))
    }

    fn id(&self, i: usize) -> Result<&'a str, String> {
        let v = self.required(i)?;
        check_id(self.kind.columns()[i], v)?;
        Ok(v)
    }

    fn with_column<T>(&self, i: usize, r: Result<T, String>) -> Result<T, String> {
        r.map_err(|e| format!("{}: {e}", self.kind.columns()[i]))
    }
}

pub fn parse_member(f: &Fields) -> Result<MemberRow, String> {
    let id = f.id(0)?.to_string();
    let gender = match f.get(4) {
        None => Gender::Unknown,
        Some("f" | "F") => Gender::Female,
        Some("m" | "M") => Gender::Male,
        Some(other) => return Err(format!("gender: {other:?} is not f, m or empty")),
    };
    let birth_year = match f.get(5) {
        None => None,
        Some(s) => match s.parse::<i32>() {
            Ok(y) if (1850..=2200).contains(&y) => Some(y),
            _ => return Err(format!("birth_year: {s:?} is not a plausible year")),
        },
    };
    let signup_ts = f.get(7).map(parse_timestamp).transpose().map_err(|e| format!("signup_ts: {e}"))?;
    let opt = |i: usize| f.with_column(i, f.get(i).map(parse_bool).transpose()).map(|b| b.unwrap_or(false));
    let tz = f.get(10).unwrap_or("");
    if !tz.is_empty() && tz.parse::<chrono_tz::Tz>().is_err() {
        return Err(format!("tz: {tz:?} is not an IANA time zone"));
    }
    let attrs = Member {
        name: f.get(1).unwrap_or("").into(),
        email: f.get(2).unwrap_or("").into(),
        phone: f.get(3).unwrap_or("").into(),
        gender,
        birth_year,
        city: f.get(6).unwrap_or("").into(),
        signup_ts,
        opted_in_email: opt(8)?,
        opted_in_sms: opt(9)?,
        tz: tz.into(),
        known: true,
        digest: Default::default(),
    };
    let mut present = [false; 11];
    for (i, p) in present.iter_mut().enumerate() {
        *p = f.values[i].is_some();
    }
    Ok(MemberRow { id, attrs, present })
}

/// The largest line amount (unit_price x qty) an order line may have, in cents: one
/// hundred billion in the shop's currency. Any sum of a member's lines stays far inside
/// an i64 (a line beyond it would wrap the amount, in a release build silently).
pub const MAX_LINE_CENTS: Cents = 10_000_000_000_000;

pub fn parse_order(f: &Fields) -> Result<OrderRow, String> {
    let order_id = f.id(0)?.into();
    let member_id = f.id(1)?.into();
    let ts = f.with_column(2, parse_timestamp(f.required(2)?))?;
    let sku = f.id(3)?.into();
    let unit_price = f.with_column(6, parse_scaled(f.required(6)?, 2))?;
    let qty_s = f.required(7)?;
    let qty = match qty_s.parse::<u32>() {
        Ok(q) if q >= 1 => q,
        _ => return Err(format!("qty: {qty_s:?} is not an integer >= 1")),
    };
    if i128::from(unit_price) * i128::from(qty) > i128::from(MAX_LINE_CENTS) {
        return Err(format!("unit_price x qty is over {}: not an order line this store can add up", crate::domain::CentsFmt(MAX_LINE_CENTS)));
    }
    let discount_ppm = match f.get(8) {
        None => 0,
        Some(s) => {
            let v = f.with_column(8, parse_scaled(s, 4))?;
            if v >= 1_000_000 {
                return Err(format!("discount_pct: {s:?} is not below 100"));
            }
            v as u32
        }
    };
    Ok(OrderRow {
        member_id,
        line: OrderLine {
            order_id,
            sku,
            ts,
            category: f.get(4).unwrap_or("").into(),
            brand: f.get(5).unwrap_or("").into(),
            unit_price,
            qty,
            discount_ppm,
        },
    })
}

pub fn parse_event(f: &Fields) -> Result<EventRow, String> {
    let member_id = f.id(0)?.into();
    let ts: Timestamp = f.with_column(1, parse_timestamp(f.required(1)?))?;
    let kind_s = f.required(2)?;
    let kind = EventKind::parse(kind_s).ok_or_else(|| format!("kind: {kind_s:?} is not view, favorite or cart"))?;
    let sku = f.id(3)?.into();
    Ok(EventRow { member_id, event: Event { ts, kind, sku, channel: f.get(4).unwrap_or("").into() } })
}

#[derive(Debug, Clone)]
pub struct ProductRow {
    pub sku: String,
    pub product: Product,
}

pub fn parse_product(f: &Fields) -> Result<ProductRow, String> {
    let sku = f.id(0)?.to_string();
    let name = f.required(1)?.to_string();
    let price = f.get(4).map(|s| parse_scaled(s, 2)).transpose().map_err(|e| format!("price: {e}"))?;
    let in_stock = f.with_column(6, f.get(6).map(parse_bool).transpose())?.unwrap_or(true);
    Ok(ProductRow {
        sku,
        product: Product {
            name,
            category: f.get(2).unwrap_or("").into(),
            brand: f.get(3).unwrap_or("").into(),
            price,
            url: f.get(5).unwrap_or("").into(),
            in_stock,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(kind: Kind, vals: &[&'static str]) -> Fields<'static> {
        let mut values = [None; 11];
        for (i, v) in vals.iter().enumerate() {
            values[i] = Some(*v);
        }
        Fields { values, kind }
    }

    #[test]
    fn order_rows() {
        let ok = parse_order(&fields(Kind::Orders, &["o1", "m1", "2025-01-02T03:04:05Z", "s", "c", "b", "19.99", "3", "12.5"])).unwrap();
        assert_eq!((ok.line.unit_price, ok.line.qty, ok.line.discount_ppm), (1999, 3, 125_000));
        for (vals, why) in [
            (["o1", "m1", "2025-01-02T03:04:05Z", "s", "", "", "-1", "1", ""], "unit_price"),
            (["o1", "m1", "2025-01-02T03:04:05Z", "s", "", "", "1.999", "1", ""], "unit_price"),
            (["o1", "m1", "2025-01-02T03:04:05Z", "s", "", "", "1", "0", ""], "qty"),
            (["o1", "m1", "2025-01-02T03:04:05Z", "s", "", "", "1", "1", "100"], "discount_pct"),
            (["o1", "m1", "02/01/2025", "s", "", "", "1", "1", ""], "ts"),
            (["o1", "", "2025-01-02T03:04:05Z", "s", "", "", "1", "1", ""], "member_id"),
        ] {
            let err = parse_order(&fields(Kind::Orders, &vals)).unwrap_err();
            assert!(err.starts_with(why), "{err}");
        }
    }

    #[test]
    fn fields_that_would_panic_or_overflow_are_bad_rows() {
        for (vals, why) in [
            (["o1", "m1", "2025-03-1é4T09:29:26Z", "s", "", "", "1", "1", ""], "ts: bad timestamp"),
            (["o1", "m1", "2025-01-02T03:04:05Z", "s", "", "", "1", "1", "999999999999999.9999"], "discount_pct: \"999999999999999.9999\" is too large"),
            (["o1", "m1", "2025-01-02T03:04:05Z", "s", "", "", "999999999999999.99", "4294967295", ""], "unit_price x qty is over"),
            (["o1", "m1", "2025-01-02T03:04:05Z", "s", "", "", "100000000000.01", "1", ""], "unit_price x qty is over"),
        ] {
            let err = parse_order(&fields(Kind::Orders, &vals)).unwrap_err();
            assert!(err.starts_with(why), "{err}");
        }
        let largest = parse_order(&fields(Kind::Orders, &["o1", "m1", "2025-01-02T03:04:05Z", "s", "c", "b", "50000000000.00", "2", "0.0001"])).unwrap();
        assert_eq!(largest.line.unit_price * i64::from(largest.line.qty), MAX_LINE_CENTS);
        assert!(largest.line.amount() > 0);
        let signup = parse_member(&fields(Kind::Members, &["m1", "", "", "", "", "", "", "2025-03-1é4T09:29:26Z"])).unwrap_err();
        assert!(signup.starts_with("signup_ts: bad timestamp"), "{signup}");
        let event = parse_event(&fields(Kind::Events, &["m1", "2025-03-1é4T09:29:26Z", "view", "s"])).unwrap_err();
        assert!(event.starts_with("ts: bad timestamp"), "{event}");
    }

    #[test]
    fn member_rows() {
        let m = parse_member(&fields(Kind::Members, &["m1", "王伟", "", "", "f", "1990", "上海", "", "1", "false", "Asia/Shanghai"])).unwrap();
        assert!(m.attrs.opted_in_email && !m.attrs.opted_in_sms);
        assert_eq!(m.attrs.gender, Gender::Female);
        assert!(parse_member(&fields(Kind::Members, &["m1", "", "", "", "x"])).unwrap_err().starts_with("gender"));
        assert!(parse_member(&fields(Kind::Members, &["m1", "", "", "", "", "", "", "", "", "", "Mars/Base"])).is_err());
    }

    #[test]
    fn kind_detection() {
        assert_eq!(Kind::detect(["order_id", "member_id"]), Some(Kind::Orders));
        assert_eq!(Kind::detect(["member_id", "ts", "kind", "sku"]), Some(Kind::Events));
        assert_eq!(Kind::detect(["member_id", "name"]), Some(Kind::Members));
        assert_eq!(Kind::detect(["sku", "name", "price"]), Some(Kind::Products));
        assert_eq!(Kind::detect(["foo"]), None);
    }
}
