//! Domain values shared by every stage: UTC days, money in cents, identifiers, and the
//! strict parsers that turn input text into them.
//!
//! Everything inside rekindle is UTC; money is integer minor units (cents, fen). These
//! parsers are on the import hot path, so they are hand-written and allocation-free.

use std::fmt;

/// A UTC calendar date as days since 1970-01-01.
pub type Day = i32;
/// A UTC instant as seconds since 1970-01-01T00:00:00Z.
pub type Timestamp = i64;
/// Money in minor units (cents, fen).
pub type Cents = i64;

/// A short string kept inline (no allocation up to 24 bytes): ids, skus, categories.
pub type Text = compact_str::CompactString;

/// Longest accepted member id (DATA.md: 1..64 characters).
pub const MAX_ID_CHARS: usize = 64;

/// The consent a channel needs, and so the member's address it uses: `email` (the
/// email column, `opted_in_email`), `sms` (the phone, `opted_in_sms`) or `none` (the
/// member id, with no consent asked: only for channels such as the shop's own inbox).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Consent {
    Email,
    Sms,
    None,
}

impl Consent {
    /// The consent a channel or plugin kind of this name needs, if the name says it.
    pub fn named(name: &str) -> Option<Consent> {
        match name {
            "email" => Some(Consent::Email),
            "sms" => Some(Consent::Sms),
            _ => None,
        }
    }
}

/// The consent every channel needs, as `[channels.NAME] consent` (or the plugin's kind) says. A
/// channel missing here needs the consent its name says (email, sms); any other
/// channel messages nobody.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsentNeeds {
    pub by_channel: std::collections::BTreeMap<String, Consent>,
}

impl ConsentNeeds {
    pub fn of(&self, channel: &str) -> Option<Consent> {
        self.by_channel.get(channel).copied().or_else(|| Consent::named(channel))
    }
}

/// What a provider said about a message: what a channel plugin reports, and what the
/// store keeps (stored by variant index: append new states at the end).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DeliveryState {
    Accepted,
    Delivered,
    Failed,
    Complained,
    OptedOut,
}

impl DeliveryState {
    pub fn name(self) -> &'static str {
        match self {
            DeliveryState::Accepted => "accepted",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
            DeliveryState::Complained => "complained",
            DeliveryState::OptedOut => "opted_out",
        }
    }

    /// Reports arrive out of order (Kannel's "SMSC ack" can follow "delivered"); a later
    /// report replaces an earlier one only when it says more.
    pub fn rank(self) -> u8 {
        match self {
            DeliveryState::Accepted => 0,
            DeliveryState::Delivered | DeliveryState::Failed => 1,
            DeliveryState::Complained | DeliveryState::OptedOut => 2,
        }
    }
}

/// The UTC day of a timestamp.
pub fn day_of(ts: Timestamp) -> Day {
    ts.div_euclid(86_400) as Day
}

/// Days since the epoch of a civil date (proleptic Gregorian; Howard Hinnant's algorithm).
pub const fn days_from_civil(y: i32, m: u32, d: u32) -> Day {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i32 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i32 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date (year, month, day) of a day number.
pub fn civil_from_days(z: Day) -> (i32, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i32::from(m <= 2);
    (y, m, d)
}

/// A day formatted as `YYYY-MM-DD`.
pub struct DayFmt(pub Day);

impl fmt::Display for DayFmt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = civil_from_days(self.0);
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

/// A timestamp formatted as `YYYY-MM-DDTHH:MM:SSZ`.
pub struct TsFmt(pub Timestamp);

impl fmt::Display for TsFmt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.rem_euclid(86_400);
        write!(f, "{}T{:02}:{:02}:{:02}Z", DayFmt(day_of(self.0)), secs / 3600, secs / 60 % 60, secs % 60)
    }
}

/// Cents formatted as a decimal with two places (`-12.05`).
pub struct CentsFmt(pub Cents);

impl fmt::Display for CentsFmt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let a = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", a / 100, a % 100)
    }
}

fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() || b.len() > 9 {
        return None;
    }
    let mut n = 0u32;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u32::from(c - b'0');
    }
    Some(n)
}

fn days_in_month(y: i32, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Parses `YYYY-MM-DD` into a day.
pub fn parse_date(s: &str) -> Result<Day, String> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return Err(format!("bad date {s:?}: expected YYYY-MM-DD"));
    }
    date_of(b).ok_or_else(|| format!("bad date {s:?}: no such calendar date"))
}

/// The day of the 10 bytes `YYYY-MM-DD`. Bytes, not text: the input may hold a
/// multi-byte character anywhere, and no slice of it may split one.
fn date_of(b: &[u8]) -> Option<Day> {
    let [y0, y1, y2, y3, b'-', m0, m1, b'-', d0, d1] = *b else { return None };
    match (digits(&[y0, y1, y2, y3]), digits(&[m0, m1]), digits(&[d0, d1])) {
        (Some(y), Some(m), Some(d)) if (1..=12).contains(&m) && d >= 1 && d <= days_in_month(y as i32, m) => Some(days_from_civil(y as i32, m, d)),
        _ => None,
    }
}

/// Parses an ISO-8601 timestamp: `YYYY-MM-DD`, then optionally `T` or a space,
/// `HH:MM[:SS[.fraction]]`, then `Z`, `+HH:MM`, `+HHMM`, `+HH` or nothing (nothing means
/// UTC). Fractions of a second are dropped.
pub fn parse_timestamp(s: &str) -> Result<Timestamp, String> {
    let bad = |why: &str| format!("bad timestamp {s:?}: {why}");
    let b = s.as_bytes();
    if b.len() < 10 {
        return Err(bad("expected YYYY-MM-DDTHH:MM:SSZ"));
    }
    let day = date_of(&b[..10]).ok_or_else(|| bad("bad date part"))?;
    if b.len() == 10 {
        return Ok(i64::from(day) * 86_400);
    }
    if b[10] != b'T' && b[10] != b't' && b[10] != b' ' {
        return Err(bad("expected 'T' after the date"));
    }
    let rest = &b[11..];
    if rest.len() < 5 || rest[2] != b':' {
        return Err(bad("expected HH:MM after the date"));
    }
    let hh = digits(&rest[0..2]).ok_or_else(|| bad("bad hour"))?;
    let mm = digits(&rest[3..5]).ok_or_else(|| bad("bad minute"))?;
    let mut i = 5;
    let mut ss = 0;
    if rest.len() >= 8 && rest[5] == b':' {
        ss = digits(&rest[6..8]).ok_or_else(|| bad("bad second"))?;
        i = 8;
        if i < rest.len() && (rest[i] == b'.' || rest[i] == b',') {
            i += 1;
            let start = i;
            while i < rest.len() && rest[i].is_ascii_digit() {
                i += 1;
            }
            if i == start {
                return Err(bad("empty fraction of a second"));
            }
        }
    }
    if hh > 23 || mm > 59 || ss > 60 {
        return Err(bad("time out of range"));
    }
    let offset = match &rest[i..] {
        [] | [b'Z'] | [b'z'] => 0,
        [sign @ (b'+' | b'-'), tail @ ..] => {
            let (oh, om) = match tail {
                [h1, h2] => (digits(&[*h1, *h2]), Some(0)),
                [h1, h2, b':', m1, m2] | [h1, h2, m1, m2] => (digits(&[*h1, *h2]), digits(&[*m1, *m2])),
                _ => (None, None),
            };
            match (oh, om) {
                (Some(h), Some(m)) if h <= 23 && m <= 59 => {
                    let o = i64::from(h * 3600 + m * 60);
                    if *sign == b'+' { o } else { -o }
                }
                _ => return Err(bad("bad UTC offset")),
            }
        }
        _ => return Err(bad("unexpected text after the time")),
    };
    let ts = i64::from(day) * 86_400 + i64::from(hh * 3600 + mm * 60 + ss.min(59)) - offset;
    // An offset can carry a time at the edge of the calendar out of it (9999-12-31T23:59-01:00
    // is in year 10000 in UTC); such a time could not be written back, so it is refused.
    const FIRST: Timestamp = days_from_civil(0, 1, 1) as Timestamp * 86_400;
    const LAST: Timestamp = days_from_civil(9999, 12, 31) as Timestamp * 86_400 + 86_399;
    if !(FIRST..=LAST).contains(&ts) {
        return Err(bad("outside the years 0000-9999 in UTC"));
    }
    Ok(ts)
}

/// Parses a non-negative decimal with at most `max_places` fractional digits into an
/// integer scaled by 10^max_places (`"12.5"` with 2 places is 1250).
pub fn parse_scaled(s: &str, max_places: u32) -> Result<i64, String> {
    let t = s.trim();
    let t = t.strip_prefix('+').unwrap_or(t);
    if t.starts_with('-') {
        return Err(format!("{s:?} is negative"));
    }
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if (int.is_empty() && frac.is_empty()) || !int.bytes().all(|c| c.is_ascii_digit()) || !frac.bytes().all(|c| c.is_ascii_digit()) {
        return Err(format!("{s:?} is not a decimal number"));
    }
    if frac.len() as u32 > max_places {
        return Err(format!("{s:?} has more than {max_places} decimal places"));
    }
    let too_large = || format!("{s:?} is too large");
    if int.len() > 15 {
        return Err(too_large());
    }
    let mut n: i64 = if int.is_empty() { 0 } else { int.parse().map_err(|_| format!("{s:?} is not a decimal number"))? };
    // 15 integer digits and 4 places pass the checks above but not an i64
    for i in 0..max_places as usize {
        let digit = frac.as_bytes().get(i).map_or(0, |c| i64::from(c - b'0'));
        n = n.checked_mul(10).and_then(|n| n.checked_add(digit)).ok_or_else(too_large)?;
    }
    Ok(n)
}

/// Parses the boolean spellings of DATA.md: `true`/`false`/`1`/`0` (any case).
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim() {
        "1" => Ok(true),
        "0" => Ok(false),
        t if t.eq_ignore_ascii_case("true") => Ok(true),
        t if t.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(format!("{s:?} is not true/false/1/0")),
    }
}

/// Checks an identifier (member id, order id, sku): 1..=64 characters, no control
/// characters (the store uses NUL as a key separator).
pub fn check_id(what: &str, s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if s.chars().count() > MAX_ID_CHARS {
        return Err(format!("{what} is longer than {MAX_ID_CHARS} characters"));
    }
    if s.chars().any(char::is_control) {
        return Err(format!("{what} contains a control character"));
    }
    Ok(())
}

/// The first 16 bytes of a text, zero-padded, as a big-endian number: comparing these
/// compares the texts' first 16 bytes in byte order, in two machine words.
pub fn prefix_16(s: &str) -> u128 {
    let mut b = [0u8; 16];
    let n = s.len().min(16);
    b[..n].copy_from_slice(&s.as_bytes()[..n]);
    u128::from_be_bytes(b)
}

/// Rounds `num / den` to the nearest integer, half away from zero (`den > 0`).
pub fn div_round_half_away(num: i128, den: i128) -> i128 {
    debug_assert!(den > 0);
    let q = num / den;
    let r = num % den;
    if 2 * r.abs() >= den {
        q + num.signum()
    } else {
        q
    }
}

/// The country whose national numbers members' phones are written in (`[members]
/// phone_region`, an ISO 3166 code such as "CN"): read in it, `138 0013 8000` is
/// `+8613800138000`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhoneRegion(phonenumber::country::Id);

impl std::str::FromStr for PhoneRegion {
    type Err = String;

    fn from_str(code: &str) -> Result<Self, String> {
        code.parse().map(PhoneRegion).map_err(|_| format!("{code:?} is not an ISO 3166 country code (like \"CN\")"))
    }
}

impl PhoneRegion {
    /// `raw` in E.164 (`+8613800138000`). A number already in it (`+` and 8 to 15 digits)
    /// is kept as it is, without a lookup; others are read as written in this region:
    /// spaces, dashes, brackets, full-width digits (`１３８…`) and the `0086`/`86`
    /// prefixes are understood. `None` when it is not a valid number there.
    pub fn e164(self, raw: &str) -> Option<String> {
        if is_e164(raw) {
            return Some(raw.to_string());
        }
        // full-width forms (U+FF01..FF5E) are ASCII shifted; an ideographic space is a space
        let folded: String = raw
            .chars()
            .map(|c| match c {
                '\u{ff01}'..='\u{ff5e}' => char::from_u32(c as u32 - 0xfee0).unwrap_or(c),
                '\u{3000}' => ' ',
                c => c,
            })
            .collect();
        let number = phonenumber::parse(Some(self.0), &folded).ok().filter(phonenumber::is_valid)?;
        Some(number.format().mode(phonenumber::Mode::E164).to_string())
    }
}

/// Lower-case hex of bytes (ids, signatures, secrets).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `s` is `+` and 8 to 15 digits.
fn is_e164(s: &str) -> bool {
    s.strip_prefix('+').is_some_and(|d| (8..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()))
}

/// The candidate closest to a misspelt word, if it is close enough to be what was meant.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    if word.chars().count() < 3 {
        return None; // one or two letters are too little to guess from
    }
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|&(d, c)| d <= (c.len().max(word.len()) / 3).max(1) + usize::from(c.len() > 6))
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// An IANA time zone by name (`Asia/Shanghai`). The error is a hint: the zone the name
/// is closest to when it looks misspelt (`Asia/Shangai`, `asia/shanghai`, `Shanghai`),
/// else an example.
pub fn parse_timezone(name: &str) -> Result<chrono_tz::Tz, String> {
    name.parse::<chrono_tz::Tz>().map_err(|_| {
        let names = || chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name());
        let city = name.trim().replace(' ', "_");
        let guess = names()
            .find(|n| n.eq_ignore_ascii_case(name.trim()))
            .or_else(|| did_you_mean(name, names()))
            // a city alone: its zone
            .or_else(|| names().find(|n| n.rsplit_once('/').is_some_and(|(_, c)| c.eq_ignore_ascii_case(&city))));
        match guess {
            Some(g) => format!("did you mean {g:?}?"),
            None => "use a name like \"Asia/Shanghai\" or \"Europe/Berlin\"".into(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip() {
        for z in [-800_000, -1, 0, 1, 10_957, 20_000, 2_000_000] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(days_from_civil(2026, 11, 1), 20_758);
        assert_eq!(DayFmt(20_758).to_string(), "2026-11-01");
    }

    #[test]
    fn timestamps() {
        let base = i64::from(days_from_civil(2025, 3, 1)) * 86_400;
        assert_eq!(parse_timestamp("2025-03-01T08:30:00Z"), Ok(base + 8 * 3600 + 1800));
        assert_eq!(parse_timestamp("2025-03-01T08:30:00"), Ok(base + 8 * 3600 + 1800));
        assert_eq!(parse_timestamp("2025-03-01 08:30:00.123456Z"), Ok(base + 8 * 3600 + 1800));
        assert_eq!(parse_timestamp("2025-03-01T08:30:00+08:00"), Ok(base + 1800));
        assert_eq!(parse_timestamp("2025-03-01T08:30+0800"), Ok(base + 1800));
        assert_eq!(parse_timestamp("2025-03-01T00:30:00-01"), Ok(base + 5400));
        assert_eq!(parse_timestamp("2025-03-01"), Ok(base));
        for bad in ["2025-02-29T00:00:00Z", "2025-13-01T00:00:00Z", "yesterday", "2025-03-01T25:00:00Z", "2025-03-01T08:30:00Zjunk", ""] {
            assert!(parse_timestamp(bad).is_err(), "{bad}");
        }
        assert_eq!(TsFmt(base + 3661).to_string(), "2025-03-01T01:01:01Z");
    }

    #[test]
    fn an_offset_cannot_carry_a_timestamp_out_of_the_four_digit_years() {
        assert!(parse_timestamp("9999-12-31T23:59:60-23:59").unwrap_err().contains("outside the years"));
        assert!(parse_timestamp("0000-01-01T00:00+01:00").unwrap_err().contains("outside the years"));
        for edge in ["9999-12-31T23:59:59Z", "0000-01-01T00:00:00Z"] {
            assert_eq!(parse_timestamp(edge).map(|t| TsFmt(t).to_string()), Ok(edge.to_string()));
        }
    }

    #[test]
    fn a_multibyte_character_anywhere_in_a_timestamp_is_an_error_not_a_panic() {
        for valid in ["2025-03-14T09:29:26Z", "2025-03-14 09:29:26.5+08:00", "2025-03-14T09:29", "2025-03-14"] {
            assert!(parse_timestamp(valid).is_ok(), "{valid}");
            for odd in ["é", "退", "😀"] {
                for at in 0..=valid.len() {
                    let inserted = format!("{}{odd}{}", &valid[..at], &valid[at..]);
                    assert!(parse_timestamp(&inserted).is_err(), "{inserted}");
                    if at < valid.len() {
                        let replaced = format!("{}{odd}{}", &valid[..at], &valid[at + 1..]);
                        assert!(parse_timestamp(&replaced).is_err(), "{replaced}");
                    }
                }
            }
        }
        // the report's own example
        assert!(parse_timestamp("2025-03-1é4T09:29:26Z").unwrap_err().contains("bad date part"));
    }

    #[test]
    fn decimals_too_large_for_an_i64_are_errors_not_overflows() {
        for (text, places) in [("999999999999999.9999", 4), ("999999999999999", 4), ("922337203685477.5808", 4)] {
            assert!(parse_scaled(text, places).unwrap_err().contains("too large"), "{text}");
        }
        assert_eq!(parse_scaled("922337203685477.5807", 4), Ok(i64::MAX));
        assert_eq!(parse_scaled("999999999999999.99", 2), Ok(99_999_999_999_999_999));
    }

    #[test]
    fn decimals() {
        assert_eq!(parse_scaled("12.5", 2), Ok(1250));
        assert_eq!(parse_scaled("0.07", 2), Ok(7));
        assert_eq!(parse_scaled("3", 2), Ok(300));
        assert_eq!(parse_scaled(".5", 2), Ok(50));
        assert!(parse_scaled("1.234", 2).is_err());
        assert!(parse_scaled("-1", 2).is_err());
        assert!(parse_scaled("1e3", 2).is_err());
        assert!(parse_scaled("", 2).is_err());
        assert_eq!(CentsFmt(-1205).to_string(), "-12.05");
    }

    #[test]
    fn rounding_half_away_from_zero() {
        assert_eq!(div_round_half_away(5, 10), 1);
        assert_eq!(div_round_half_away(4, 10), 0);
        assert_eq!(div_round_half_away(-5, 10), -1);
        assert_eq!(div_round_half_away(15, 10), 2);
        assert_eq!(div_round_half_away(25, 10), 3);
    }

    #[test]
    fn phones_are_read_in_the_region_and_kept_when_already_e164() {
        let cn: PhoneRegion = "CN".parse().unwrap();
        for (raw, want) in [
            ("13800138000", Some("+8613800138000")),
            ("138 0013 8000", Some("+8613800138000")),
            ("138-0013-8000", Some("+8613800138000")),
            ("+86 138 0013 8000", Some("+8613800138000")),
            ("86 13800138000", Some("+8613800138000")),
            ("0086-13800138000", Some("+8613800138000")),
            ("１３８００１３８０００", Some("+8613800138000")),
            ("＋８６　１３８００１３８０００", Some("+8613800138000")),
            ("(010) 1234 5678", Some("+861012345678")),
            ("+8613800138000", Some("+8613800138000")),
            ("+16502530000", Some("+16502530000")),
            ("12345", None),
            ("not a number", None),
            ("", None),
        ] {
            assert_eq!(cn.e164(raw).as_deref(), want, "{raw}");
        }
        let us: PhoneRegion = "US".parse().unwrap();
        assert_eq!(us.e164("(650) 253-0000").as_deref(), Some("+16502530000"));
        assert!("XX".parse::<PhoneRegion>().is_err());
    }

    #[test]
    fn misspelt_time_zones_get_the_closest_name() {
        assert_eq!(parse_timezone("Europe/Berlin"), Ok(chrono_tz::Europe::Berlin));
        for (name, hint) in [
            ("Asia/Shangai", "did you mean \"Asia/Shanghai\"?"),
            ("asia/shanghai", "did you mean \"Asia/Shanghai\"?"),
            ("Europe/Berln", "did you mean \"Europe/Berlin\"?"),
            ("America/New York", "did you mean \"America/New_York\"?"),
            ("Shanghai", "did you mean \"Asia/Shanghai\"?"),
            ("Mars/Base", "use a name like \"Asia/Shanghai\" or \"Europe/Berlin\""),
        ] {
            assert_eq!(parse_timezone(name), Err(hint.to_string()), "{name}");
        }
    }
}
