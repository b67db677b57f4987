//! Coupon codes handed out from `codes_file` pools, so a code goes to one member only:
//! `G` code -> [`CodeGrant`] (who got it, from which rule, in which run). A code is
//! granted before the run that sends it is written; a grant whose run never committed
//! (a crash, a roll-back) keeps the code bound to its member, who gets it back when
//! planned again, and nobody else ever does.

use super::{decode, encode, key, Store, StoreError};
use crate::domain::Text;
use serde::{Deserialize, Serialize};

pub(crate) const CODE: u8 = b'G';

/// Who a code was handed to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CodeGrant {
    pub member: Text,
    pub rule: Text,
    pub run: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A broken invariant of the planner: refused, so no code reaches two members.
    #[error("coupon code {code:?} was already given to member {holder}, not to {member}")]
    Taken { code: String, holder: Text, member: Text },
}

impl Store {
    /// Records codes as given, in one batch. A code already given to another member is
    /// refused (and nothing is written); given again to its own member, it is re-bound to
    /// the new run.
    pub fn grant_codes(&self, grants: &[(String, CodeGrant)]) -> Result<(), CodeError> {
        let mut batch = sled::Batch::default();
        for (code, grant) in grants {
            let k = key(CODE, code);
            if let Some(v) = self.db.get(&k).map_err(StoreError::from)? {
                let held: CodeGrant = decode(&k, &v)?;
                if held.member != grant.member {
                    return Err(CodeError::Taken { code: code.clone(), holder: held.member, member: grant.member.clone() });
                }
            }
            batch.insert(k, encode(grant));
        }
        self.apply(batch)?;
        if !grants.is_empty() {
            self.suppression_changed();
        }
        Ok(())
    }

    /// Every code given, with its grant.
    pub fn code_grants(&self) -> impl Iterator<Item = Result<(String, CodeGrant), StoreError>> + '_ {
        self.db.scan_prefix([CODE]).map(|r| {
            let (k, v) = r?;
            Ok((String::from_utf8_lossy(&k[1..]).into_owned(), decode(&k, &v)?))
        })
    }
}
