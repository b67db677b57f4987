//! Scoring with mined rules: the cross-sell offer for one member (the `bundle` offer)
//! and "who will buy X" (the audience for a chosen product).
//!
//! Both rank rules the same way: confidence, then lift (descending, compared exactly as
//! fractions of counts), then names. The [`OfferIndex`] holds the rules in that order
//! with per-item lists, so a member is scored by looking only at rules that start from
//! an item the member bought.

use super::mine::{offer_order, AssocRule};
use super::transactions::Transactions;
use rayon::prelude::*;
use rustc_hash::FxHashMap;

/// Rules in offer order, indexed by antecedent item and by consequent.
#[derive(Debug, Clone)]
pub struct OfferIndex {
    /// The rules, sorted by [`offer_order`]; a rule's rank is its position here.
    rules: Vec<AssocRule>,
    item_ids: FxHashMap<String, u32>,
    item_names: Vec<String>,
    /// Per rule: antecedent item ids (ascending) and consequent id.
    shapes: Vec<(Vec<u32>, u32)>,
    /// Per item: ranks of the rules whose smallest antecedent id is that item, ascending.
    by_antecedent: Vec<Vec<u32>>,
    /// Per item: ranks of the rules leading to that item, ascending.
    by_consequent: Vec<Vec<u32>>,
}

impl OfferIndex {
    pub fn new(mut rules: Vec<AssocRule>) -> Self {
        rules.sort_by(offer_order);
        let mut item_ids: FxHashMap<String, u32> = FxHashMap::default();
        let mut item_names = Vec::new();
        let mut intern = |name: &str| -> u32 {
            if let Some(&id) = item_ids.get(name) {
                return id;
            }
            let id = item_names.len() as u32;
            item_ids.insert(name.to_owned(), id);
            item_names.push(name.to_owned());
            id
        };
        let shapes: Vec<(Vec<u32>, u32)> = rules
            .iter()
            .map(|r| {
                let mut ante: Vec<u32> = r.antecedent.iter().map(|a| intern(a)).collect();
                ante.sort_unstable();
                ante.dedup();
                (ante, intern(&r.consequent))
            })
            .collect();
        let mut by_antecedent = vec![Vec::new(); item_names.len()];
        let mut by_consequent = vec![Vec::new(); item_names.len()];
        for (rank, (ante, cons)) in shapes.iter().enumerate() {
            if let Some(&first) = ante.first() {
                by_antecedent[first as usize].push(rank as u32);
            }
            by_consequent[*cons as usize].push(rank as u32);
        }
        Self {
            rules,
            item_ids,
            item_names,
            shapes,
            by_antecedent,
            by_consequent,
        }
    }

    /// The rules in offer order.
    pub fn rules(&self) -> &[AssocRule] {
        &self.rules
    }

    /// Item ids of the known names among `bought`, ascending and distinct.
    fn ids_of<'a>(&self, bought: impl IntoIterator<Item = &'a str>) -> Vec<u32> {
        let mut ids: Vec<u32> = bought
            .into_iter()
            .filter_map(|n| self.item_ids.get(n).copied())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The best offer for a member who bought `bought`: the highest-ranked rule whose
    /// antecedent the member bought entirely and whose consequent the member did not buy
    /// and `is_excluded` (e.g. out of stock, or bought outside the window) does not reject.
    pub fn best_offer<'a>(
        &self,
        bought: impl IntoIterator<Item = &'a str>,
        is_excluded: impl Fn(&str) -> bool,
    ) -> Option<&AssocRule> {
        let ids = self.ids_of(bought);
        let mut best: Option<u32> = None;
        for &x in &ids {
            for &rank in &self.by_antecedent[x as usize] {
                if best.is_some_and(|b| rank >= b) {
                    break;
                }
                let (ante, cons) = &self.shapes[rank as usize];
                if ante.iter().all(|a| ids.binary_search(a).is_ok())
                    && ids.binary_search(cons).is_err()
                    && !is_excluded(&self.item_names[*cons as usize])
                {
                    best = Some(rank);
                    break;
                }
            }
        }
        best.map(|rank| &self.rules[rank as usize])
    }

    /// How likely a member who bought `bought` is to buy `target`: the highest-ranked rule
    /// leading to `target` whose antecedent the member bought; its confidence is the
    /// score. None when the member already bought `target` or no rule applies.
    pub fn likely_to_buy<'a>(
        &self,
        bought: impl IntoIterator<Item = &'a str>,
        target: &str,
    ) -> Option<&AssocRule> {
        let target = *self.item_ids.get(target)?;
        let ids = self.ids_of(bought);
        self.best_rule_to(target, &ids)
            .map(|rank| &self.rules[rank as usize])
    }

    /// Rank of the best rule to `target` applicable to the sorted item ids `ids`.
    fn best_rule_to(&self, target: u32, ids: &[u32]) -> Option<u32> {
        if ids.binary_search(&target).is_ok() {
            return None;
        }
        self.by_consequent[target as usize]
            .iter()
            .copied()
            .find(|&rank| {
                self.shapes[rank as usize]
                    .0
                    .iter()
                    .all(|a| ids.binary_search(a).is_ok())
            })
    }
}

/// Options of an audience query.
#[derive(Debug, Clone, PartialEq)]
pub struct AudienceParams {
    /// Keep the N best members; None keeps all.
    pub top: Option<usize>,
    /// Keep members whose score (the confidence of their best rule) is at least this.
    pub min_score: f64,
}

/// A member likely to buy the target, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct AudienceMember {
    /// The transaction key: the member id in the `member` scope.
    pub member: String,
    /// Confidence of the best applicable rule.
    pub score: f64,
    /// Lift of that rule.
    pub lift: f64,
    /// That rule's position in [`OfferIndex::rules`].
    pub rule: usize,
}

/// "Who will buy `target`": every transaction (member) that does not contain `target`,
/// scored by the strongest rule leading to `target` from its items (confidence, ties by
/// lift, then by member key), best first. Members with no applicable rule are left out.
pub fn audience(
    members: &Transactions,
    index: &OfferIndex,
    target: &str,
    params: &AudienceParams,
) -> Vec<AudienceMember> {
    let Some(&target_id) = index.item_ids.get(target) else {
        return Vec::new();
    };
    // Item ids of the transaction set, translated to the index's ids once.
    let to_index: Vec<u32> = members
        .item_names()
        .iter()
        .map(|n| index.item_ids.get(n.as_str()).copied().unwrap_or(u32::MAX))
        .collect();
    let mut scored: Vec<(u32, usize)> = (0..members.len())
        .into_par_iter()
        .map_init(Vec::new, |ids: &mut Vec<u32>, t| {
            ids.clear();
            ids.extend(
                members
                    .items(t)
                    .iter()
                    .map(|&i| to_index[i as usize])
                    .filter(|&i| i != u32::MAX),
            );
            ids.sort_unstable();
            index.best_rule_to(target_id, ids).map(|rank| (rank, t))
        })
        .flatten()
        .filter(|&(rank, _)| index.rules[rank as usize].confidence >= params.min_score)
        .collect();
    // Score (confidence), then lift, then member key; rules equal on both are equal here.
    scored.par_sort_unstable_by(|x, y| {
        let (rx, ry) = (&index.rules[x.0 as usize], &index.rules[y.0 as usize]);
        ry.cmp_confidence(rx)
            .then_with(|| ry.cmp_lift(rx))
            .then_with(|| members.key(x.1).cmp(members.key(y.1)))
    });
    if let Some(top) = params.top {
        scored.truncate(top);
    }
    scored
        .into_iter()
        .map(|(rank, t)| {
            let rule = &index.rules[rank as usize];
            AudienceMember {
                member: members.key(t).to_owned(),
                score: rule.confidence,
                lift: rule.lift,
                rule: rank as usize,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundles::{mine, MineParams, TransactionsBuilder};

    fn tx(rows: &[(&str, &str)]) -> Transactions {
        let mut b = TransactionsBuilder::new();
        for (key, items) in rows {
            b.add_all(key, items.split_whitespace())
                .expect("small input fits");
        }
        b.build()
    }

    // Member scope, N = 8. Counts: a=5 b=3 c=3 d=2 x=4 e=1 f=1; ab=3 ac=2 ad=1 ax=3
    // bc=1 bx=1 cd=1 cx=2 dx=2; abx=acx=adx=abc=cdx=1.
    const MEMBERS: &[(&str, &str)] = &[
        ("m1", "a b x"),
        ("m2", "a b"),
        ("m3", "a x c"),
        ("m4", "a x d"),
        ("m5", "c x d"),
        ("m6", "a b c"),
        ("m7", "e"),
        ("m8", "f"),
    ];

    fn index() -> (Transactions, OfferIndex) {
        let t = tx(MEMBERS);
        let p = MineParams {
            min_support: 0.0,
            min_confidence: 0.0,
            min_lift: None,
            two_item_antecedents: true,
        };
        let rules = mine(&t, &p).expect("valid params");
        (t, OfferIndex::new(rules))
    }

    fn rule_text(r: &AssocRule) -> String {
        format!(
            "{}->{} {}/{}",
            r.antecedent.join("+"),
            r.consequent,
            r.count,
            r.antecedent_count
        )
    }

    #[test]
    fn best_offer_is_the_most_confident_rule_to_an_item_not_bought() {
        let (_, idx) = index();
        let offer = |bought: &str, excluded: &[&str]| {
            idx.best_offer(bought.split_whitespace(), |s| excluded.contains(&s))
                .map(rule_text)
        };
        // From d: d->x is 2/2; d->a 1/2 and d->c 1/2 are weaker.
        assert_eq!(offer("d", &[]).as_deref(), Some("d->x 2/2"));
        // Bought d and x: x->a 3/4 beats every rule at 1/2.
        assert_eq!(offer("d x", &[]).as_deref(), Some("x->a 3/4"));
        // Excluding a (out of stock): d->c, x->c and {d,x}->c tie at 1/2 with equal lift
        // (4/3, above the 4/5 of the rules to a); names decide.
        assert_eq!(offer("d x", &["a"]).as_deref(), Some("d->c 1/2"));
        // Bought everything a rule could offer: nothing.
        assert_eq!(offer("a b c d x", &[]), None);
        // Unknown items are ignored.
        assert_eq!(offer("zzz", &[]), None);
    }

    #[test]
    fn likely_to_buy_scores_by_the_strongest_rule_to_the_target() {
        let (_, idx) = index();
        let like = |bought: &str| {
            idx.likely_to_buy(bought.split_whitespace(), "x")
                .map(rule_text)
        };
        assert_eq!(like("d").as_deref(), Some("d->x 2/2"));
        // a->x 3/5, c->x 2/3, {a,c}->x 1/2: c->x wins.
        assert_eq!(like("a c").as_deref(), Some("c->x 2/3"));
        assert_eq!(like("x d"), None, "already bought the target");
        assert_eq!(idx.likely_to_buy(["a"], "nope"), None);
    }

    #[test]
    fn audience_ranks_members_who_did_not_buy_the_target() {
        let (t, idx) = index();
        let all = audience(
            &t,
            &idx,
            "x",
            &AudienceParams {
                top: None,
                min_score: 0.0,
            },
        );
        let got: Vec<String> = all
            .iter()
            .map(|m| {
                format!(
                    "{} {:.4} {}",
                    m.member,
                    m.score,
                    rule_text(&idx.rules()[m.rule])
                )
            })
            .collect();
        // m2 (a b) and m6 (a b c) do not hold x; m7, m8 have no rule to x.
        assert_eq!(got, ["m6 0.6667 c->x 2/3", "m2 0.6000 a->x 3/5"]);
        let top1 = audience(
            &t,
            &idx,
            "x",
            &AudienceParams {
                top: Some(1),
                min_score: 0.0,
            },
        );
        assert_eq!(top1.len(), 1);
        assert_eq!(top1[0].member, "m6");
        let strict = audience(
            &t,
            &idx,
            "x",
            &AudienceParams {
                top: None,
                min_score: 0.65,
            },
        );
        assert_eq!(
            strict.iter().map(|m| m.member.as_str()).collect::<Vec<_>>(),
            ["m6"]
        );
        assert!(audience(
            &t,
            &idx,
            "unknown",
            &AudienceParams {
                top: None,
                min_score: 0.0
            }
        )
        .is_empty());
    }
}
