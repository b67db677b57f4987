//! The coupon codes the store's `G` records say were given, read once with the member
//! base: which codes are taken for good and which a member may get back (its run never
//! committed). `offer::CodePools` draws new codes around them. A leaf of `plan`, so the
//! base that holds them and the offers that read them do not import each other.

use crate::domain::Text;
use crate::store::{Store, StoreError};
use rustc_hash::FxHashMap;

/// The coupon codes given so far (the store's `G` records), as the planner needs them.
#[derive(Debug, Default)]
pub struct IssuedCodes {
    /// Every code given; with the member (index) when that member may get it back: the run
    /// that gave it never committed (a crash, a roll-back), so it never went out.
    pub given: FxHashMap<Text, Option<u32>>,
    /// The codes each member may get back.
    pub held: FxHashMap<u32, Vec<Text>>,
}

impl IssuedCodes {
    /// Reads every grant; `index_of` finds a member in the base.
    pub fn load(store: &Store, index_of: impl Fn(&str) -> Option<usize>) -> Result<IssuedCodes, StoreError> {
        let mut out = IssuedCodes::default();
        let mut committed: FxHashMap<u64, bool> = FxHashMap::default();
        for item in store.code_grants() {
            let (code, grant) = item?;
            let done = match committed.get(&grant.run) {
                Some(&c) => c,
                None => *committed.entry(grant.run).or_insert(store.run(grant.run)?.is_some_and(|r| r.committed)),
            };
            let holder = (!done).then(|| index_of(&grant.member)).flatten().map(|i| i as u32);
            if let Some(m) = holder {
                out.held.entry(m).or_default().push(Text::from(code.as_str()));
            }
            out.given.insert(Text::from(code), holder);
        }
        Ok(out)
    }
}
