//! Association rule mining: A -> B for every frequent pair (both directions), and
//! {A,B} -> C behind an option, with the measures of DATA.md.
//!
//! How it stays fast and small:
//! 1. Items below the support threshold cannot be in a kept rule (support is
//!    anti-monotone), so they are dropped first and the rest renumbered densely;
//!    transactions left with fewer than two items are dropped.
//! 2. With few frequent items (<= 2048) each thread maps its share of the transactions
//!    to dense ids on the fly and counts their pairs in its own triangular F x F
//!    matrix, small enough for the cache; the matrices are summed. With more, pairs are counted item by item ("vertical"): for
//!    item `a`, every transaction that holds `a` adds one to `row[b]` for each item
//!    `b > a` after it; the row stays in cache, there is no pair matrix, and rows are
//!    independent, so rayon spreads them over the cores.
//! 3. {A,B} -> C reuses that shape: for item `a`, only its frequent partners can appear
//!    in a kept triple, so each transaction suffix is reduced to partner indices and
//!    the partner pairs are counted in a small triangle.

use super::transactions::Transactions;
use rayon::prelude::*;
use rustc_hash::FxHashMap;
use std::cmp::Ordering;

/// Thresholds and options of one mining run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MineParams {
    /// Keep a rule when count(antecedent + consequent) / N >= this (0..=1).
    pub min_support: f64,
    /// Keep a rule when count(antecedent + consequent) / count(antecedent) >= this (0..=1).
    pub min_confidence: f64,
    /// Keep a rule when its lift >= this, where given (>= 0).
    pub min_lift: Option<f64>,
    /// Also mine rules with two items on the left, {A,B} -> C.
    pub two_item_antecedents: bool,
}

impl Default for MineParams {
    fn default() -> Self {
        Self {
            min_support: 0.001,
            min_confidence: 0.1,
            min_lift: None,
            two_item_antecedents: false,
        }
    }
}

/// A mined rule. `antecedent` holds one or two item names, ascending. Serializable so
/// the store can keep a mining result as it is.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AssocRule {
    pub antecedent: Vec<String>,
    pub consequent: String,
    /// count(antecedent + consequent) / N
    pub support: f64,
    /// count(antecedent + consequent) / count(antecedent)
    pub confidence: f64,
    /// confidence / (count(consequent) / N)
    pub lift: f64,
    /// count(antecedent + consequent): transactions holding every item of the rule.
    pub count: u32,
    /// count(antecedent)
    pub antecedent_count: u32,
    /// count(consequent)
    pub consequent_count: u32,
}

impl AssocRule {
    /// Compares confidences exactly, as fractions of counts (no rounding ties).
    pub(crate) fn cmp_confidence(&self, other: &Self) -> Ordering {
        (self.count as u64 * other.antecedent_count as u64)
            .cmp(&(other.count as u64 * self.antecedent_count as u64))
    }

    /// Compares lifts exactly; valid between rules mined from the same transactions
    /// (N cancels out).
    pub(crate) fn cmp_lift(&self, other: &Self) -> Ordering {
        let side = |r: &Self, o: &Self| {
            r.count as u128 * o.antecedent_count as u128 * o.consequent_count as u128
        };
        side(self, other).cmp(&side(other, self))
    }
}

/// The order of a mining result: lift, then confidence (both descending), then
/// antecedent and consequent names (ascending).
pub(crate) fn mined_order(x: &AssocRule, y: &AssocRule) -> Ordering {
    y.cmp_lift(x)
        .then_with(|| y.cmp_confidence(x))
        .then_with(|| x.antecedent.cmp(&y.antecedent))
        .then_with(|| x.consequent.cmp(&y.consequent))
}

/// The order of offers: confidence, then lift (both descending), then antecedent and
/// consequent names (ascending).
pub(crate) fn offer_order(x: &AssocRule, y: &AssocRule) -> Ordering {
    y.cmp_confidence(x)
        .then_with(|| y.cmp_lift(x))
        .then_with(|| x.antecedent.cmp(&y.antecedent))
        .then_with(|| x.consequent.cmp(&y.consequent))
}

/// Thresholds that cannot be mined with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MineError {
    #[error("min_support must be a number in 0..=1, got {0}")]
    MinSupport(f64),
    #[error("min_confidence must be a number in 0..=1, got {0}")]
    MinConfidence(f64),
    #[error("min_lift must be a number >= 0, got {0}")]
    MinLift(f64),
}

const NONE: u32 = u32::MAX;
/// Ends each transaction in the filtered item array, so a suffix needs no end offset.
const END: u32 = u32::MAX;
/// Up to this many frequent items, pairs are counted in a per-thread triangle of
/// F x F / 2 counters (8 MiB at 2048, so two threads stay in a 32 MiB L3; measured
/// 7x faster than rows at F = 1262, 3x slower at F = 5000).
const HORIZONTAL_MAX: usize = 2048;
/// Above this many frequent items a row is cleared through a list of touched counters
/// instead of a full scan.
const SCAN_ROW_MAX: usize = 1 << 16;
/// Above this many partner pairs an item's triple counts go to a hash map.
const DENSE_TRIANGLE_MAX: usize = 1 << 23;

/// A rule in dense item ids, before names and measures are attached.
#[derive(Debug, Clone, Copy)]
struct RawRule {
    antecedent: [u32; 2],
    consequent: u32,
    count: u32,
}

/// How pairs are counted; all give the same counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PairCounting {
    /// Per-thread triangular F x F matrix, one pass over the transactions.
    Matrix,
    /// Row per item over the vertical view, cleared by a full scan.
    ScannedRows,
    /// Row per item, cleared through the list of touched counters.
    TrackedRows,
}

impl PairCounting {
    fn for_items(f: usize) -> Self {
        if f <= HORIZONTAL_MAX {
            Self::Matrix
        } else if f <= SCAN_ROW_MAX {
            Self::ScannedRows
        } else {
            Self::TrackedRows
        }
    }
}

/// Mines every rule that meets the thresholds, sorted by lift, then confidence
/// (descending), then antecedent and consequent names (ascending).
pub fn mine(tx: &Transactions, params: &MineParams) -> Result<Vec<AssocRule>, MineError> {
    mine_with(tx, params, None)
}

/// [`mine`] with the pair counting forced (tests compare the strategies).
pub(crate) fn mine_with(
    tx: &Transactions,
    params: &MineParams,
    strategy: Option<PairCounting>,
) -> Result<Vec<AssocRule>, MineError> {
    check_params(params)?;
    let n = tx.len();
    if n == 0 {
        return Ok(Vec::new());
    }
    let min_count = min_count_for(params.min_support, n);
    let frequent = FrequentItems::new(tx, min_count);
    if frequent.len() < 2 {
        return Ok(Vec::new());
    }
    let strategy = strategy.unwrap_or(PairCounting::for_items(frequent.len()));
    // The reduced copy of the transactions is built only for the passes that need it.
    let mut filtered: Option<Filtered> = None;
    let partners = match strategy {
        PairCounting::Matrix => count_pairs_in_matrix(tx, &frequent, min_count),
        PairCounting::ScannedRows | PairCounting::TrackedRows => {
            let f = filtered.get_or_insert_with(|| Filtered::new(tx, &frequent));
            count_pairs_in_rows(f, frequent.len(), min_count, strategy)
        }
    };

    let mut raw: Vec<RawRule> = Vec::new();
    for (a, list) in partners.iter().enumerate() {
        for &(b, count) in list {
            raw.push(RawRule {
                antecedent: [a as u32, NONE],
                consequent: b,
                count,
            });
            raw.push(RawRule {
                antecedent: [b, NONE],
                consequent: a as u32,
                count,
            });
        }
    }
    if params.two_item_antecedents {
        let f = filtered.get_or_insert_with(|| Filtered::new(tx, &frequent));
        raw.extend(count_triples(f, &partners, min_count));
    }
    Ok(finish(tx, &frequent, &partners, raw, n, params))
}

fn check_params(p: &MineParams) -> Result<(), MineError> {
    if !(0.0..=1.0).contains(&p.min_support) {
        return Err(MineError::MinSupport(p.min_support));
    }
    if !(0.0..=1.0).contains(&p.min_confidence) {
        return Err(MineError::MinConfidence(p.min_confidence));
    }
    match p.min_lift {
        Some(l) if !(l >= 0.0 && l.is_finite()) => Err(MineError::MinLift(l)),
        _ => Ok(()),
    }
}

/// The smallest count c >= 1 with c / n >= min_support, exactly as the float test the
/// definition uses, so pruning by count never disagrees with the final check.
fn min_count_for(min_support: f64, n: usize) -> u32 {
    let meets = |c: u64| c as f64 / n as f64 >= min_support;
    let mut c = ((min_support * n as f64).ceil() as u64).clamp(1, n as u64 + 1);
    while c > 1 && meets(c - 1) {
        c -= 1;
    }
    while c <= n as u64 && !meets(c) {
        c += 1;
    }
    c.min(u32::MAX as u64) as u32
}

/// Items that meet the support threshold, renumbered 0.. in the order of their original
/// ids (so a transaction stays sorted when mapped).
struct FrequentItems {
    /// Dense id of each original item id, or NONE.
    dense_of: Vec<u32>,
    /// Original item id of each dense id.
    original: Vec<u32>,
    /// Transaction count of each dense id.
    count: Vec<u32>,
}

impl FrequentItems {
    fn new(tx: &Transactions, min_count: u32) -> Self {
        let mut counts = vec![0u32; tx.item_names().len()];
        for &i in tx.flat_items() {
            counts[i as usize] += 1;
        }
        let original: Vec<u32> = (0..counts.len() as u32)
            .filter(|&i| counts[i as usize] >= min_count)
            .collect();
        let mut dense_of = vec![NONE; counts.len()];
        for (d, &o) in original.iter().enumerate() {
            dense_of[o as usize] = d as u32;
        }
        let count = original.iter().map(|&o| counts[o as usize]).collect();
        Self {
            dense_of,
            original,
            count,
        }
    }

    fn len(&self) -> usize {
        self.original.len()
    }
}

/// Transactions reduced to frequent items (dense ids, ascending), each followed by END;
/// those left with fewer than two items are dropped. The row-by-row pair count and the
/// triple count walk it through [`Occurrences`].
struct Filtered {
    items: Vec<u32>,
}

impl Filtered {
    fn new(tx: &Transactions, frequent: &FrequentItems) -> Self {
        let n = tx.len();
        let chunk_count = (rayon::current_num_threads() * 8).clamp(1, n.max(1));
        let chunks: Vec<Vec<u32>> = (0..chunk_count)
            .into_par_iter()
            .map(|c| {
                let mut out = Vec::new();
                for t in c * n / chunk_count..(c + 1) * n / chunk_count {
                    let start = out.len();
                    out.extend(
                        tx.items(t)
                            .iter()
                            .map(|&i| frequent.dense_of[i as usize])
                            .filter(|&d| d != NONE),
                    );
                    if out.len() - start >= 2 {
                        out.push(END);
                    } else {
                        out.truncate(start);
                    }
                }
                out
            })
            .collect();
        Self {
            items: chunks.concat(),
        }
    }

    /// The items after position `p` in its transaction.
    fn suffix(&self, p: u32) -> impl Iterator<Item = u32> + '_ {
        self.items[p as usize + 1..]
            .iter()
            .copied()
            .take_while(|&b| b != END)
    }
}

/// Per item, the positions in `Filtered::items` where it occurs with at least one item
/// after it: the vertical view of the transactions.
struct Occurrences {
    start: Vec<u32>,
    positions: Vec<u32>,
}

impl Occurrences {
    fn new(filtered: &Filtered, f: usize) -> Self {
        let items = &filtered.items;
        let mut start = vec![0u32; f + 1];
        for w in items.windows(2) {
            if w[0] != END && w[1] != END {
                start[w[0] as usize + 1] += 1;
            }
        }
        for d in 0..f {
            start[d + 1] += start[d];
        }
        let mut cursor = start.clone();
        let mut positions = vec![0u32; start[f] as usize];
        for (p, w) in items.windows(2).enumerate() {
            if w[0] != END && w[1] != END {
                let slot = &mut cursor[w[0] as usize];
                positions[*slot as usize] = p as u32;
                *slot += 1;
            }
        }
        Self { start, positions }
    }

    fn of(&self, a: usize) -> &[u32] {
        &self.positions[self.start[a] as usize..self.start[a + 1] as usize]
    }
}

/// For each dense item `a`, its frequent partners `b > a` with count({a,b}), ascending
/// b: each thread maps its share of the transactions to dense ids and counts their pairs
/// in its own upper triangle (row `a` holds b in a+1..f), then the triangles are summed.
fn count_pairs_in_matrix(
    tx: &Transactions,
    frequent: &FrequentItems,
    min_count: u32,
) -> Vec<Vec<(u32, u32)>> {
    let f = frequent.len();
    let row_start = |a: usize| a * (2 * f - a - 1) / 2;
    let cells = f * f.saturating_sub(1) / 2;
    let n = tx.len();
    let chunk_count = (rayon::current_num_threads() * 8).clamp(1, n.max(1));
    let matrix = (0..chunk_count)
        .into_par_iter()
        .fold(
            || (vec![0u32; cells], Vec::new()),
            |(mut m, mut dense), c| {
                for t in c * n / chunk_count..(c + 1) * n / chunk_count {
                    dense.clear();
                    dense.extend(
                        tx.items(t)
                            .iter()
                            .map(|&i| frequent.dense_of[i as usize])
                            .filter(|&d| d != NONE),
                    );
                    for (k, &a) in dense.iter().enumerate() {
                        let a = a as usize;
                        let row = &mut m[row_start(a)..row_start(a) + (f - a - 1)];
                        for &b in &dense[k + 1..] {
                            row[b as usize - a - 1] += 1;
                        }
                    }
                }
                (m, dense)
            },
        )
        .map(|(m, _)| m)
        .reduce(
            || vec![0u32; cells],
            |mut x, y| {
                x.iter_mut().zip(&y).for_each(|(s, v)| *s += v);
                x
            },
        );
    (0..f)
        .map(|a| {
            let row = &matrix[row_start(a)..row_start(a) + (f - a - 1)];
            row.iter()
                .enumerate()
                .filter(|&(_, &c)| c >= min_count)
                .map(|(k, &c)| ((a + 1 + k) as u32, c))
                .collect()
        })
        .collect()
}

/// The same as [`count_pairs_in_matrix`], row by row over the vertical view: for item
/// `a`, every transaction holding `a` adds one to `row[b]` for each `b` after it.
fn count_pairs_in_rows(
    filtered: &Filtered,
    f: usize,
    min_count: u32,
    strategy: PairCounting,
) -> Vec<Vec<(u32, u32)>> {
    let occurrences = Occurrences::new(filtered, f);
    let row_pass = |row: &mut Vec<u32>, touched: &mut Vec<u32>, a: usize, track: bool| {
        for &p in occurrences.of(a) {
            for b in filtered.suffix(p) {
                let c = &mut row[b as usize];
                if track && *c == 0 {
                    touched.push(b);
                }
                *c += 1;
            }
        }
        let mut out = Vec::new();
        if track {
            touched.sort_unstable();
            for &b in touched.iter() {
                let count = std::mem::take(&mut row[b as usize]);
                if count >= min_count {
                    out.push((b, count));
                }
            }
            touched.clear();
        } else {
            for (b, c) in row.iter_mut().enumerate().skip(a + 1) {
                let count = std::mem::take(c);
                if count >= min_count {
                    out.push((b as u32, count));
                }
            }
        }
        out
    };
    let track = strategy == PairCounting::TrackedRows;
    (0..f)
        .into_par_iter()
        .map_init(
            || (vec![0u32; f], Vec::new()),
            |(row, touched), a| row_pass(row, touched, a, track),
        )
        .collect()
}

/// Counts every frequent triple {a<b<c} and returns its three rules with two items on
/// the left. A triple can only be frequent when all its pairs are (anti-monotonicity),
/// so for each `a` only its partners are counted.
fn count_triples(
    filtered: &Filtered,
    partners: &[Vec<(u32, u32)>],
    min_count: u32,
) -> Vec<RawRule> {
    let f = partners.len();
    let occurrences = Occurrences::new(filtered, f);
    let per_item: Vec<Vec<RawRule>> = (0..f)
        .into_par_iter()
        .map_init(
            || (vec![NONE; f], Vec::<u32>::new(), Vec::<u32>::new()),
            |(slot, triangle, reduced), a| {
                let mine = &partners[a];
                let p = mine.len();
                if p < 2 {
                    return Vec::new();
                }
                for (k, &(b, _)) in mine.iter().enumerate() {
                    slot[b as usize] = k as u32;
                }
                let pairs = p * (p - 1) / 2;
                let dense = pairs <= DENSE_TRIANGLE_MAX;
                let mut sparse: FxHashMap<u64, u32> = FxHashMap::default();
                if dense {
                    triangle.clear();
                    triangle.resize(pairs, 0);
                }
                // Index of (i, j), i < j, in a row-major upper triangle of a p x p matrix.
                let tri = |i: usize, j: usize| i * (2 * p - i - 1) / 2 + (j - i - 1);
                for &pos in occurrences.of(a) {
                    reduced.clear();
                    reduced.extend(
                        filtered
                            .suffix(pos)
                            .map(|x| slot[x as usize])
                            .filter(|&k| k != NONE),
                    );
                    for (x, &i) in reduced.iter().enumerate() {
                        for &j in &reduced[x + 1..] {
                            if dense {
                                triangle[tri(i as usize, j as usize)] += 1;
                            } else {
                                *sparse.entry(((i as u64) << 32) | j as u64).or_insert(0) += 1;
                            }
                        }
                    }
                }
                let mut found: Vec<(usize, usize, u32)> = if dense {
                    let mut v = Vec::new();
                    for i in 0..p {
                        for j in i + 1..p {
                            let c = triangle[tri(i, j)];
                            if c >= min_count {
                                v.push((i, j, c));
                            }
                        }
                    }
                    v
                } else {
                    sparse
                        .into_iter()
                        .filter(|&(_, c)| c >= min_count)
                        .map(|(k, c)| ((k >> 32) as usize, (k & 0xffff_ffff) as usize, c))
                        .collect()
                };
                found.sort_unstable();
                for &(b, _) in mine {
                    slot[b as usize] = NONE;
                }
                let a = a as u32;
                let mut out = Vec::with_capacity(found.len() * 3);
                for (i, j, count) in found {
                    let (b, c) = (mine[i].0, mine[j].0);
                    out.push(RawRule {
                        antecedent: [a, b],
                        consequent: c,
                        count,
                    });
                    out.push(RawRule {
                        antecedent: [a, c],
                        consequent: b,
                        count,
                    });
                    out.push(RawRule {
                        antecedent: [b, c],
                        consequent: a,
                        count,
                    });
                }
                out
            },
        )
        .collect();
    per_item.into_iter().flatten().collect()
}

/// count(antecedent) of a raw rule: an item count, or a pair count from `partners`.
fn antecedent_count(r: &RawRule, frequent: &FrequentItems, partners: &[Vec<(u32, u32)>]) -> u32 {
    let [x, y] = r.antecedent;
    if y == NONE {
        return frequent.count[x as usize];
    }
    let (lo, hi) = (x.min(y), x.max(y));
    let list = &partners[lo as usize];
    match list.binary_search_by_key(&hi, |&(b, _)| b) {
        Ok(k) => list[k].1,
        // A frequent triple has frequent sub-pairs; unreachable by construction.
        Err(_) => unreachable!("pair of a frequent triple is not frequent"),
    }
}

/// Attaches measures and names, applies the thresholds, sorts.
fn finish(
    tx: &Transactions,
    frequent: &FrequentItems,
    partners: &[Vec<(u32, u32)>],
    raw: Vec<RawRule>,
    n: usize,
    params: &MineParams,
) -> Vec<AssocRule> {
    let name = |d: u32| tx.item_names()[frequent.original[d as usize] as usize].as_str();
    let n_f = n as f64;
    let mut rules: Vec<AssocRule> = raw
        .into_par_iter()
        .filter_map(|r| {
            let antecedent_count = antecedent_count(&r, frequent, partners);
            let consequent_count = frequent.count[r.consequent as usize];
            let support = r.count as f64 / n_f;
            let confidence = r.count as f64 / antecedent_count as f64;
            let lift = confidence / (consequent_count as f64 / n_f);
            let keep = support >= params.min_support
                && confidence >= params.min_confidence
                && params.min_lift.is_none_or(|l| lift >= l);
            if !keep {
                return None;
            }
            let mut antecedent: Vec<String> = r
                .antecedent
                .iter()
                .filter(|&&d| d != NONE)
                .map(|&d| name(d).to_owned())
                .collect();
            antecedent.sort_unstable();
            Some(AssocRule {
                antecedent,
                consequent: name(r.consequent).to_owned(),
                support,
                confidence,
                lift,
                count: r.count,
                antecedent_count,
                consequent_count,
            })
        })
        .collect();
    rules.par_sort_unstable_by(mined_order);
    rules
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundles::TransactionsBuilder;

    fn tx(baskets: &[&str]) -> Transactions {
        let mut b = TransactionsBuilder::new();
        for (k, basket) in baskets.iter().enumerate() {
            b.add_all(&format!("t{k}"), basket.split_whitespace())
                .expect("small input fits");
        }
        b.build()
    }

    fn params(min_support: f64, min_confidence: f64) -> MineParams {
        MineParams {
            min_support,
            min_confidence,
            min_lift: None,
            two_item_antecedents: false,
        }
    }

    /// One line per rule: "A+B->C count support confidence lift".
    fn show(rules: &[AssocRule]) -> Vec<String> {
        rules
            .iter()
            .map(|r| {
                format!(
                    "{}->{} {} {:.4} {:.4} {:.4}",
                    r.antecedent.join("+"),
                    r.consequent,
                    r.count,
                    r.support,
                    r.confidence,
                    r.lift
                )
            })
            .collect()
    }

    // N = 5. Counts: a=4 b=3 c=3 d=1; ab=3 ac=2 bc=1 ad=1 cd=1; abc=1 acd=1.
    const SMALL: &[&str] = &["a b", "a b c", "a b", "a c d", "c"];

    #[test]
    fn pairs_in_both_directions_with_hand_checked_measures_and_ties() {
        let rules = mine(&tx(SMALL), &params(0.0, 0.0)).expect("valid params");
        // Equal lifts (5/3, 5/4, 5/6, 5/9) are exact ties: confidence decides, then names.
        assert_eq!(
            show(&rules),
            [
                "d->c 1 0.2000 1.0000 1.6667",
                "c->d 1 0.2000 0.3333 1.6667",
                "b->a 3 0.6000 1.0000 1.2500",
                "d->a 1 0.2000 1.0000 1.2500",
                "a->b 3 0.6000 0.7500 1.2500",
                "a->d 1 0.2000 0.2500 1.2500",
                "c->a 2 0.4000 0.6667 0.8333",
                "a->c 2 0.4000 0.5000 0.8333",
                "b->c 1 0.2000 0.3333 0.5556",
                "c->b 1 0.2000 0.3333 0.5556",
            ]
        );
        let ab = rules
            .iter()
            .find(|r| r.antecedent == ["a"] && r.consequent == "b")
            .expect("a->b mined");
        assert_eq!(
            (ab.count, ab.antecedent_count, ab.consequent_count),
            (3, 4, 3)
        );
        assert_eq!(ab.support, 3.0 / 5.0);
        assert_eq!(ab.confidence, 3.0 / 4.0);
        assert_eq!(ab.lift, (3.0 / 4.0) / (3.0 / 5.0));
    }

    #[test]
    fn items_below_support_never_appear() {
        // min count 2 (0.3 x 5 = 1.5): d (count 1) and the pairs bc, ad, cd drop out.
        let rules = mine(&tx(SMALL), &params(0.3, 0.0)).expect("valid params");
        assert_eq!(
            show(&rules),
            [
                "b->a 3 0.6000 1.0000 1.2500",
                "a->b 3 0.6000 0.7500 1.2500",
                "c->a 2 0.4000 0.6667 0.8333",
                "a->c 2 0.4000 0.5000 0.8333",
            ]
        );
    }

    #[test]
    fn support_threshold_is_inclusive() {
        // 0.4 x 5 = 2 exactly: the pair ac (count 2) stays, 0.41 drops it.
        let at = mine(&tx(SMALL), &params(0.4, 0.0)).expect("valid params");
        assert!(at
            .iter()
            .any(|r| r.antecedent == ["a"] && r.consequent == "c"));
        let above = mine(&tx(SMALL), &params(0.41, 0.0)).expect("valid params");
        assert!(above.iter().all(|r| r.count >= 3));
        assert_eq!(above.len(), 2);
    }

    #[test]
    fn confidence_and_lift_thresholds() {
        let rules = mine(&tx(SMALL), &params(0.0, 0.75)).expect("valid params");
        assert_eq!(
            show(&rules),
            [
                "d->c 1 0.2000 1.0000 1.6667",
                "b->a 3 0.6000 1.0000 1.2500",
                "d->a 1 0.2000 1.0000 1.2500",
                "a->b 3 0.6000 0.7500 1.2500",
            ]
        );
        let lifted = mine(
            &tx(SMALL),
            &MineParams {
                min_lift: Some(1.3),
                ..params(0.0, 0.0)
            },
        )
        .expect("valid params");
        assert_eq!(
            show(&lifted),
            ["d->c 1 0.2000 1.0000 1.6667", "c->d 1 0.2000 0.3333 1.6667"]
        );
    }

    #[test]
    fn two_item_antecedents_behind_the_option() {
        let p = MineParams {
            two_item_antecedents: true,
            ..params(0.0, 0.9)
        };
        let rules = mine(&tx(SMALL), &p).expect("valid params");
        // {a,d}->c: acd=1 / ad=1, lift 1/(3/5). {b,c}->a: abc=1 / bc=1, lift 1/(4/5).
        assert_eq!(
            show(&rules),
            [
                "a+d->c 1 0.2000 1.0000 1.6667",
                "d->c 1 0.2000 1.0000 1.6667",
                "b->a 3 0.6000 1.0000 1.2500",
                "b+c->a 1 0.2000 1.0000 1.2500",
                "c+d->a 1 0.2000 1.0000 1.2500",
                "d->a 1 0.2000 1.0000 1.2500",
            ]
        );
        let all = mine(
            &tx(SMALL),
            &MineParams {
                two_item_antecedents: true,
                ..params(0.0, 0.0)
            },
        )
        .expect("valid params");
        let abc = all
            .iter()
            .find(|r| r.antecedent == ["a", "b"] && r.consequent == "c")
            .expect("mined");
        assert_eq!(
            (abc.count, abc.antecedent_count, abc.consequent_count),
            (1, 3, 3)
        );
        assert_eq!(all.iter().filter(|r| r.antecedent.len() == 2).count(), 6);
        // At min count 2 no triple is frequent.
        let none = mine(
            &tx(SMALL),
            &MineParams {
                two_item_antecedents: true,
                ..params(0.4, 0.0)
            },
        )
        .expect("valid params");
        assert!(none.iter().all(|r| r.antecedent.len() == 1));
    }

    #[test]
    fn rules_survive_a_postcard_round_trip() {
        let rules = mine(
            &tx(SMALL),
            &MineParams {
                two_item_antecedents: true,
                ..params(0.0, 0.0)
            },
        )
        .expect("valid");
        let bytes = postcard::to_allocvec(&rules).expect("serializable");
        let back: Vec<AssocRule> = postcard::from_bytes(&bytes).expect("deserializable");
        assert_eq!(back, rules);
    }

    #[test]
    fn bad_thresholds_are_refused() {
        let t = tx(SMALL);
        assert_eq!(mine(&t, &params(1.5, 0.1)), Err(MineError::MinSupport(1.5)));
        assert!(matches!(
            mine(&t, &params(f64::NAN, 0.1)),
            Err(MineError::MinSupport(_))
        ));
        assert_eq!(
            mine(&t, &params(0.1, -0.1)),
            Err(MineError::MinConfidence(-0.1))
        );
        let p = MineParams {
            min_lift: Some(-1.0),
            ..params(0.1, 0.1)
        };
        assert_eq!(mine(&t, &p), Err(MineError::MinLift(-1.0)));
    }

    #[test]
    fn empty_and_single_item_inputs_give_no_rules() {
        assert!(mine(&tx(&[]), &params(0.0, 0.0)).expect("valid").is_empty());
        assert!(mine(&tx(&["a", "a", "b"]), &params(0.0, 0.0))
            .expect("valid")
            .is_empty());
    }

    #[test]
    fn min_count_matches_the_float_definition() {
        for n in [1usize, 3, 7, 10, 455_123, 4_500_017] {
            for s in [0.0, 1e-9, 0.001, 0.1, 0.3, 1.0 / 3.0, 0.5, 1.0] {
                let c = min_count_for(s, n) as u64;
                assert!(c >= 1);
                if c <= n as u64 {
                    assert!(c as f64 / n as f64 >= s, "n={n} s={s} c={c}");
                }
                if c > 1 {
                    assert!(((c - 1) as f64 / n as f64) < s, "n={n} s={s} c={c}");
                }
            }
        }
    }
}
