//! Upgrades stores written by older rekindle versions in place, one format step at a time,
//! so an operator never has to re-import.
//!
//! 1 -> 2: the order digest gained the skus of every order (for the "bought" rule
//! conditions); every member's digest is rebuilt from its order history.
//! 2 -> 3: the member generation (`\0member-gen`) that keeps the member snapshot file
//! honest; nothing to convert, but no rekindle without it may write members any more.
//! 3 -> 4: the store's identity (`\0store-id`, a random id; see `identity.rs`), which
//! the files beside the store carry and the identity file in its folder checks.
//! 4 -> 5: run records (`R`) and the rules' last runs (`L`) move into the runs tree
//! ([`Store::runs`](super::Store)); copied first, removed from the main tree after, so an
//! upgrade cut short is done again from the start.

use super::model::{Digest, Gender, Member, OrderHistory};
use super::{decode, encode, key, Store, StoreError, HISTORY, MEMBER};
use crate::domain::{Cents, Day, Text, Timestamp};
use serde::Deserialize;

const MEMBERS_PER_BATCH: usize = 1000;

/// Brings the store from format `found` to the current one.
pub(super) fn upgrade(store: &Store, found: u32) -> Result<(), StoreError> {
    // files beside a store older than format 4 may not match its members (their writers did
    // not bump the generation, or carry no store id); later upgrades leave members and
    // those files alone
    if found < 4 {
        store.bump_member_generation()?;
    }
    if found < 2 {
        tracing::info!(path = %store.path().display(), "upgrading the store from format 1 to 2: rebuilding order digests");
        digest_skus(store)?;
    }
    if found < 5 {
        move_runs(store)?;
    }
    if store.db.get(super::identity::STORE_ID)?.is_none() {
        tracing::info!(path = %store.path().display(), "upgrading the store to format 4: giving it an identity");
        store.create_id()?;
    }
    Ok(())
}

fn move_runs(store: &Store) -> Result<(), StoreError> {
    use super::outbox::{LAST_RUN, RUN};
    let mut moved = 0usize;
    for prefix in [RUN, LAST_RUN] {
        for item in store.db.scan_prefix([prefix]) {
            let (k, v) = item?;
            store.runs.insert(k, v)?;
            moved += 1;
        }
    }
    store.db.flush()?;
    for prefix in [RUN, LAST_RUN] {
        for item in store.db.scan_prefix([prefix]) {
            store.db.remove(item?.0)?;
        }
    }
    store.db.flush()?;
    tracing::info!(path = %store.path().display(), records = moved, "upgraded the store to format 5: run records moved to their own tree");
    Ok(())
}

/// Format 1 member values, read once by the upgrade.
#[derive(Deserialize)]
struct MemberV1 {
    name: Text,
    email: String,
    phone: String,
    gender: Gender,
    birth_year: Option<i32>,
    city: Text,
    signup_ts: Option<Timestamp>,
    opted_in_email: bool,
    opted_in_sms: bool,
    tz: Text,
    known: bool,
    #[allow(dead_code)] // read to consume the bytes; rebuilt from the history
    digest: DigestV1,
}

/// Format 1's order digest, field by field (orders, categories, brands, and their names).
type DigestV1 = (Vec<(Day, Cents, bool, u16, u16)>, Vec<(u32, Cents)>, Vec<(u32, Cents)>, Vec<Text>, Vec<Text>);

fn digest_skus(store: &Store) -> Result<(), StoreError> {
    let mut batch = sled::Batch::default();
    let mut in_batch = 0;
    let mut upgraded = 0u64;
    for item in store.db.scan_prefix([MEMBER]) {
        let (k, v) = item?;
        let old: MemberV1 = decode(&k, &v)?;
        let id = String::from_utf8_lossy(&k[1..]).into_owned();
        let digest = match store.db.get(key(HISTORY, &id))? {
            Some(h) => decode::<OrderHistory>(&key(HISTORY, &id), &h)?.digest(),
            None => Digest::default(),
        };
        let m = Member {
            name: old.name,
            email: old.email,
            phone: old.phone,
            gender: old.gender,
            birth_year: old.birth_year,
            city: old.city,
            signup_ts: old.signup_ts,
            opted_in_email: old.opted_in_email,
            opted_in_sms: old.opted_in_sms,
            tz: old.tz,
            known: old.known,
            digest,
        };
        batch.insert(k, encode(&m));
        in_batch += 1;
        upgraded += 1;
        if in_batch == MEMBERS_PER_BATCH {
            store.apply(std::mem::take(&mut batch))?;
            in_batch = 0;
        }
    }
    store.apply(batch)?;
    tracing::info!(members = upgraded, "order digests rebuilt");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::model::OrderLine;

    #[test]
    fn format_1_members_get_their_digest_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let history = OrderHistory {
            lines: vec![OrderLine {
                order_id: "o1".into(),
                sku: "SKU-1".into(),
                ts: 86_400 * 20_000,
                category: "shoes".into(),
                brand: "acme".into(),
                unit_price: 1999,
                qty: 1,
                discount_ppm: 0,
            }],
        };
        {
            let s = Store::open(&path, 16).unwrap();
            let v1 = (
                Text::from("Ann"),
                "ann@example.com".to_string(),
                String::new(),
                Gender::Female,
                Some(1990),
                Text::from("Hangzhou"),
                None::<Timestamp>,
                true,
                false,
                Text::default(),
                true,
                (vec![(20_000, 1999i64, false, 1u16, 1u16)], vec![(0u32, 1999i64)], vec![(0u32, 1999i64)], vec![Text::from("shoes")], vec![Text::from("acme")]),
            );
            s.db.insert(key(MEMBER, "m1"), postcard::to_stdvec(&v1).unwrap()).unwrap();
            s.db.insert(key(HISTORY, "m1"), encode(&history)).unwrap();
            s.db.insert(super::super::FORMAT_KEY, b"rekindle-store 1".as_slice()).unwrap();
            s.flush().unwrap();
        }
        let s = Store::open(&path, 16).unwrap();
        let m = s.member("m1").unwrap().unwrap();
        assert_eq!(m.name, "Ann");
        assert_eq!(m.city, "Hangzhou");
        assert_eq!(m.digest, history.digest());
        assert_eq!(m.digest.sku_names, vec![Text::from("SKU-1")]);
        drop(s);
        let marker = Store::open(&path, 16).unwrap().db.get(super::super::FORMAT_KEY).unwrap().unwrap();
        assert_eq!(&marker[..], format!("rekindle-store {}", super::super::FORMAT_VERSION).as_bytes());
    }

    #[test]
    fn format_4_run_records_move_to_the_runs_tree() {
        use crate::store::outbox::{RunRecord, LAST_RUN, RUN};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let run = RunRecord { id: 7, at: 1_700_000_000, as_of: 19_675, catch_up: false, committed: true, rules: Vec::new() };
        let generation = {
            let s = Store::open(&path, 16).unwrap();
            // where format 4 kept them
            s.db.insert(key(RUN, "\0\0\0\0\0\0\0\x07"), encode(&run)).unwrap();
            s.db.insert(key(LAST_RUN, "winback"), &1_700_000_000i64.to_be_bytes()[..]).unwrap();
            s.db.insert(super::super::FORMAT_KEY, b"rekindle-store 4".as_slice()).unwrap();
            s.flush().unwrap();
            s.member_generation().unwrap()
        };
        let s = Store::open(&path, 16).unwrap();
        // the members did not change: the columns beside the store stay valid
        assert_eq!(s.member_generation().unwrap(), generation);
        assert_eq!(s.run(7).unwrap(), Some(run));
        assert_eq!(s.last_run("winback").unwrap(), Some(1_700_000_000));
        assert!(s.db.scan_prefix([RUN]).next().is_none() && s.db.scan_prefix([LAST_RUN]).next().is_none());
    }
}
