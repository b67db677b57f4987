//! Upgrades stores written by older rekindle versions in place, one format step at a time,
//! so an operator never has to re-import.
//!
//! 1 -> 2: the order digest gained the skus of every order (for the "bought" rule
//! conditions); every member's digest is rebuilt from its order history.
//! 2 -> 3: the member generation (`\0member-gen`) that keeps the member snapshot file
//! honest; nothing to convert, but no rekindle without it may write members any more.
//! 3 -> 4: the store's identity (`\0store-id`, a random id; see `identity.rs`), which
//! the files beside the store carry and the identity file in its folder checks.

use super::model::{Digest, Gender, Member, OrderHistory};
use super::{decode, encode, key, Store, StoreError, HISTORY, MEMBER};
use crate::domain::{Cents, Day, Text, Timestamp};
use serde::Deserialize;

const MEMBERS_PER_BATCH: usize = 1000;

/// Brings the store from format `found` to the current one.
pub(super) fn upgrade(store: &Store, found: u32) -> Result<(), StoreError> {
    store.bump_member_generation()?;
    if found < 2 {
        tracing::info!(path = %store.path().display(), "upgrading the store from format 1 to 2: rebuilding order digests");
        digest_skus(store)?;
    }
    if store.db.get(super::identity::STORE_ID)?.is_none() {
        tracing::info!(path = %store.path().display(), "upgrading the store to format 4: giving it an identity");
        store.create_id()?;
    }
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
}
