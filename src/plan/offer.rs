//! Filling a rule's offer for one member (coupon code and value, the product for the
//! member's price tier, the best co-purchase bundle), and the pools of `codes_file`
//! coupon codes: each code is handed out once, ever ([`IssuedCodes`] from the store,
//! [`CodePools`] within one plan).

use super::base::MemberBase;
use super::issued::IssuedCodes;
use super::stable_hash;
use crate::bundles::OfferIndex;
use crate::domain::{CentsFmt, DayFmt};
use crate::profile::Tier;
use crate::rules::condition::Facts;
use crate::rules::{CouponCodes, CouponValue, Offer, Rule};
use rustc_hash::{FxHashMap, FxHashSet};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// An offer's template variables (`offer.*`).
pub type OfferValue = Map<String, Value>;

pub struct OfferMaker<'a> {
    rule: &'a Rule,
    base: &'a MemberBase,
    /// The bundle offer's rules, filtered by its thresholds.
    bundle_index: Option<OfferIndex>,
}

impl<'a> OfferMaker<'a> {
    pub fn new(rule: &'a Rule, base: &'a MemberBase) -> OfferMaker<'a> {
        let bundle_index = match &rule.offer {
            Offer::Bundle(b) => base.bundles.index(b.scope).map(|idx| {
                OfferIndex::new(idx.rules().iter().filter(|r| r.confidence >= b.min_confidence && r.lift >= b.min_lift).cloned().collect())
            }),
            _ => None,
        };
        OfferMaker { rule, base, bundle_index }
    }

    /// The offer for a member (without the code of a `codes_file` coupon, which
    /// [`CodePools::draw`] adds once the member is sure to get a message). Err says why
    /// there is none.
    pub fn offer_for(&self, f: &Facts) -> Result<OfferValue, String> {
        let mut o = Map::new();
        o.insert("kind".into(), self.rule.offer.kind().into());
        let tier = f.profile.price_tier.unwrap_or(Tier::Mid);
        match &self.rule.offer {
            Offer::None => {}
            Offer::Coupon(c) => {
                if let CouponCodes::Pattern(p) = &c.codes {
                    o.insert("code".into(), fill_pattern(p, &self.rule.id, f.id).into());
                }
                let (amount, percent) = match &c.value {
                    CouponValue::Amount(a) => (Some(*a), None),
                    CouponValue::Percent(p) => (None, Some(*p)),
                    CouponValue::AmountByTier(t) => (t.get(&tier).copied(), None),
                    CouponValue::PercentByTier(t) => (None, t.get(&tier).copied()),
                };
                if let Some(a) = amount {
                    o.insert("amount".into(), CentsFmt(a).to_string().into());
                    o.insert("value".into(), CentsFmt(a).to_string().into());
                }
                if let Some(p) = percent {
                    o.insert("percent".into(), p.into());
                    o.insert("value".into(), format!("{p}%").into());
                }
                o.insert("min_spend".into(), c.min_spend.map(|m| Value::from(CentsFmt(m).to_string())).unwrap_or(Value::Null));
                o.insert("valid_until".into(), c.valid_days.map(|d| Value::from(DayFmt(f.as_of + d as i32).to_string())).unwrap_or(Value::Null));
            }
            Offer::Product(by_tier) => {
                let bought = f.skus_bought();
                let sku = by_tier
                    .get(&tier)
                    .into_iter()
                    .flatten()
                    .find(|s| bought.binary_search(&s.as_str()).is_err() && self.base.catalog.get(s.as_str()).is_none_or(|p| p.in_stock))
                    .ok_or_else(|| format!("every {} product is bought or out of stock", tier.as_str()))?;
                self.product_vars(&mut o, sku);
            }
            Offer::Bundle(b) => {
                let index = self.bundle_index.as_ref().ok_or_else(|| format!("no {} co-purchase rules mined yet", b.scope.name()))?;
                let bought: Vec<&str> = match b.lookback_days {
                    None => f.skus_bought(),
                    Some(days) => f.skus_bought_within(days),
                };
                let best = index
                    .best_offer(bought.iter().copied(), |sku| self.base.catalog.get(sku).is_some_and(|p| !p.in_stock))
                    .ok_or("no co-purchase rule applies")?;
                self.product_vars(&mut o, &best.consequent);
                let ante = best.antecedent.join(", ");
                o.insert("antecedent".into(), ante.into());
                let names: Vec<String> = best.antecedent.iter().map(|s| self.base.catalog.get(s.as_str()).map_or(s.clone(), |p| p.name.clone())).collect();
                o.insert("antecedent_name".into(), names.join(", ").into());
                let url = best.antecedent.first().and_then(|s| self.base.catalog.get(s.as_str())).map(|p| p.url.clone()).unwrap_or_default();
                o.insert("antecedent_url".into(), url.into());
                o.insert("support".into(), best.support.into());
                o.insert("confidence".into(), best.confidence.into());
                o.insert("lift".into(), best.lift.into());
            }
        }
        Ok(o)
    }

    fn product_vars(&self, o: &mut OfferValue, sku: &str) {
        let p = self.base.catalog.get(sku);
        o.insert("sku".to_string(), sku.into());
        o.insert("name".to_string(), p.map_or(sku.to_string(), |p| p.name.clone()).into());
        o.insert("url".to_string(), p.map(|p| p.url.clone()).unwrap_or_default().into());
        o.insert("price".to_string(), p.and_then(|p| p.price).map(|c| Value::from(CentsFmt(c).to_string())).unwrap_or(Value::Null));
    }
}

/// The `codes_file` pools of the rules planned together: which code each member gets,
/// so that no code goes to two members, in this plan or ever.
pub struct CodePools<'a> {
    issued: &'a IssuedCodes,
    /// Per file: the next code to look at.
    next: FxHashMap<&'a Path, usize>,
    /// Per file, when some member may get a code back: the file's codes.
    members: FxHashMap<&'a Path, FxHashSet<&'a str>>,
    /// Codes drawn in this plan (two files may share codes).
    drawn: FxHashSet<&'a str>,
}

impl<'a> CodePools<'a> {
    pub fn new(issued: &'a IssuedCodes) -> CodePools<'a> {
        CodePools { issued, next: FxHashMap::default(), members: FxHashMap::default(), drawn: FxHashSet::default() }
    }

    /// A code of `codes` (the file at `path`) for member `m`: one the member holds from a
    /// run that never went out, else the first code nobody was given. None: the pool is
    /// used up.
    pub fn draw(&mut self, path: &'a Path, codes: &'a [String], m: u32) -> Option<&'a str> {
        if let Some(held) = self.issued.held.get(&m) {
            let in_file = self.members.entry(path).or_insert_with(|| codes.iter().map(String::as_str).collect());
            if let Some(code) = held.iter().filter_map(|h| in_file.get(h.as_str()).copied()).find(|c| !self.drawn.contains(c)) {
                self.drawn.insert(code);
                return Some(code);
            }
        }
        let next = self.next.entry(path).or_insert(0);
        while let Some(code) = codes.get(*next) {
            *next += 1;
            if !self.issued.given.contains_key(code.as_str()) && self.drawn.insert(code) {
                return Some(code);
            }
        }
        None
    }

    /// The codes of the file nobody was given or drew in this plan.
    pub fn left(&self, path: &Path, codes: &[String]) -> usize {
        let next = self.next.get(path).copied().unwrap_or(0);
        codes.iter().skip(next).filter(|c| !self.issued.given.contains_key(c.as_str()) && !self.drawn.contains(c.as_str())).count()
    }
}

/// How many codes a rule's `codes_file` has left after a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct CodesLeft {
    pub path: PathBuf,
    pub left: usize,
    pub total: usize,
    /// `codes_warn_below`: fewer left than this is worth a warning.
    pub warn_below: usize,
}

impl CodesLeft {
    pub fn few(&self) -> bool {
        self.left < self.warn_below
    }
}

/// Fills `{code:N}` with N characters of Crockford base32 from a hash of rule and member.
pub fn fill_pattern(pattern: &str, rule: &str, member: &str) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let Some(start) = pattern.find("{code:") else { return pattern.to_string() };
    let Some(len) = pattern[start..].find('}') else { return pattern.to_string() };
    let n: usize = pattern[start + 6..start + len].parse().unwrap_or(8);
    let mut code = String::with_capacity(n);
    let mut round = 0u8;
    while code.len() < n {
        let mut h = stable_hash(&[b"coupon", rule.as_bytes(), member.as_bytes(), &[round]]);
        for _ in 0..12 {
            if code.len() == n {
                break;
            }
            code.push(ALPHABET[(h & 31) as usize] as char);
            h >>= 5;
        }
        round += 1;
    }
    format!("{}{code}{}", &pattern[..start], &pattern[start + len + 1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coupon_codes_are_stable_and_differ_by_member() {
        let a = fill_pattern("WB-{code:8}", "winback", "m1");
        assert_eq!(a, fill_pattern("WB-{code:8}", "winback", "m1"));
        assert_ne!(a, fill_pattern("WB-{code:8}", "winback", "m2"));
        assert!(a.starts_with("WB-") && a.len() == 11, "{a}");
        assert_eq!(fill_pattern("{code:20}", "r", "m").len(), 20);
        assert_eq!(fill_pattern("SPRING", "r", "m"), "SPRING");
    }
}
