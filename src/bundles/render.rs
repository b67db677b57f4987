//! Text output of rules and audiences: an aligned table for people and RFC 4180 CSV for
//! tools. Pure string building; the CLI decides where it goes.
//!
//! Figures carry at least 6 significant digits (DATA.md): the table rounds to 6,
//! the CSV prints the shortest text that reads back as the same f64, padded with zeros
//! to 6 significant digits. An antecedent of two items prints as `A+B`.

use super::mine::AssocRule;
use super::score::{AudienceMember, OfferIndex};
use std::fmt::Write;

const RULE_HEADER: [&str; 6] = [
    "antecedent",
    "consequent",
    "support",
    "confidence",
    "lift",
    "count",
];
const AUDIENCE_HEADER: [&str; 5] = ["member_id", "score", "lift", "antecedent", "consequent"];

fn rule_row(r: &AssocRule, number: fn(f64) -> String) -> Vec<String> {
    vec![
        r.antecedent.join("+"),
        r.consequent.clone(),
        number(r.support),
        number(r.confidence),
        number(r.lift),
        r.count.to_string(),
    ]
}

fn audience_row(m: &AudienceMember, index: &OfferIndex, number: fn(f64) -> String) -> Vec<String> {
    let (ante, cons) = match index.rules().get(m.rule) {
        Some(r) => (r.antecedent.join("+"), r.consequent.clone()),
        None => (String::new(), String::new()),
    };
    vec![
        m.member.clone(),
        number(m.score),
        number(m.lift),
        ante,
        cons,
    ]
}

/// Rules as an aligned text table (numbers right-aligned, 6 significant digits).
pub fn rules_table(rules: &[AssocRule]) -> String {
    table(
        &RULE_HEADER,
        &[false, false, true, true, true, true],
        rules.iter().map(|r| rule_row(r, sig6)),
    )
}

/// Rules as CSV with a header row.
pub fn rules_csv(rules: &[AssocRule]) -> String {
    csv(&RULE_HEADER, rules.iter().map(|r| rule_row(r, exact6)))
}

/// An audience as an aligned text table.
pub fn audience_table(members: &[AudienceMember], index: &OfferIndex) -> String {
    table(
        &AUDIENCE_HEADER,
        &[false, true, true, false, false],
        members.iter().map(|m| audience_row(m, index, sig6)),
    )
}

/// An audience as CSV with a header row.
pub fn audience_csv(members: &[AudienceMember], index: &OfferIndex) -> String {
    csv(
        &AUDIENCE_HEADER,
        members.iter().map(|m| audience_row(m, index, exact6)),
    )
}

/// Numeric columns are right-aligned, text columns left-aligned.
fn table(header: &[&str], numeric: &[bool], rows: impl Iterator<Item = Vec<String>>) -> String {
    let rows: Vec<Vec<String>> = rows.collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header_row: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header_row).chain(&rows) {
        let mut line = String::new();
        for (k, (cell, &w)) in row.iter().zip(&widths).enumerate() {
            if k > 0 {
                line.push_str("  ");
            }
            let pad = " ".repeat(w - cell.chars().count());
            if !numeric.get(k).copied().unwrap_or(false) {
                line.push_str(cell);
                line.push_str(&pad);
            } else {
                line.push_str(&pad);
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn csv(header: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    let mut out = header.join(",");
    out.push('\n');
    for row in rows {
        let cells: Vec<String> = row.iter().map(|c| csv_field(c)).collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

/// RFC 4180: quote a field holding a comma, quote or line break; double inner quotes.
fn csv_field(cell: &str) -> String {
    if cell.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", cell.replace('"', "\"\""))
    } else {
        cell.to_owned()
    }
}

/// Rounded to 6 significant digits, fixed notation.
fn sig6(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x:.5}");
    }
    let magnitude = x.abs().log10().floor() as i32;
    let decimals = (5 - magnitude).max(0) as usize;
    format!("{x:.decimals$}")
}

/// The shortest round-trip text of `x`, padded with zeros to 6 significant digits.
fn exact6(x: f64) -> String {
    let mut s = String::new();
    let _ = write!(s, "{x}");
    if !x.is_finite() {
        return s;
    }
    let digits = s.trim_start_matches('-').replace('.', "");
    let significant = digits.trim_start_matches('0').len().max(1);
    if significant < 6 {
        if !s.contains('.') {
            s.push('.');
        }
        s.extend(std::iter::repeat_n('0', 6 - significant));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(
        ante: &[&str],
        cons: &str,
        count: u32,
        ante_count: u32,
        cons_count: u32,
        n: u32,
    ) -> AssocRule {
        let confidence = count as f64 / ante_count as f64;
        AssocRule {
            antecedent: ante.iter().map(|s| s.to_string()).collect(),
            consequent: cons.to_owned(),
            support: count as f64 / n as f64,
            confidence,
            lift: confidence / (cons_count as f64 / n as f64),
            count,
            antecedent_count: ante_count,
            consequent_count: cons_count,
        }
    }

    #[test]
    fn numbers_keep_six_significant_digits() {
        let cases = [
            (0.1, "0.100000", "0.100000"),
            (2.0, "2.00000", "2.00000"),
            (1.0 / 3.0, "0.333333", "0.3333333333333333"),
            (0.000123456789, "0.000123457", "0.000123456789"),
            (12.5, "12.5000", "12.5000"),
            (1234567.0, "1234567", "1234567"),
            (0.0, "0.00000", "0.00000"),
        ];
        for (x, table_text, csv_text) in cases {
            assert_eq!(
                (sig6(x).as_str(), exact6(x).as_str()),
                (table_text, csv_text),
                "{x}"
            );
            assert_eq!(
                exact6(x).parse::<f64>().ok(),
                Some(x),
                "csv reads back exactly"
            );
        }
    }

    #[test]
    fn csv_has_the_contract_columns_and_quotes_odd_names() {
        let rules = [
            rule(&["a", "b"], "c,1", 3, 4, 5, 10),
            rule(&["say \"hi\""], "d", 1, 3, 2, 10),
        ];
        assert_eq!(
            rules_csv(&rules),
            "antecedent,consequent,support,confidence,lift,count\n\
             a+b,\"c,1\",0.300000,0.750000,1.50000,3\n\
             \"say \"\"hi\"\"\",d,0.100000,0.3333333333333333,1.6666666666666665,1\n"
        );
    }

    #[test]
    fn table_aligns_columns() {
        let rules = [
            rule(&["a"], "long-sku", 3, 4, 5, 10),
            rule(&["sku-b"], "c", 1, 3, 2, 10),
        ];
        assert_eq!(
            rules_table(&rules),
            "antecedent  consequent   support  confidence     lift  count\n\
             a           long-sku    0.300000    0.750000  1.50000      3\n\
             sku-b       c           0.100000    0.333333  1.66667      1\n"
        );
    }

    #[test]
    fn audience_renders_member_score_and_the_rule() {
        let index = OfferIndex::new(vec![rule(&["a"], "x", 3, 5, 4, 8)]);
        let members = [AudienceMember {
            member: "m2".into(),
            score: 0.6,
            lift: 1.2,
            rule: 0,
        }];
        assert_eq!(
            audience_csv(&members, &index),
            "member_id,score,lift,antecedent,consequent\nm2,0.600000,1.20000,a,x\n"
        );
        assert_eq!(
            audience_table(&members, &index),
            "member_id     score     lift  antecedent  consequent\nm2         0.600000  1.20000  a           x\n"
        );
    }
}
