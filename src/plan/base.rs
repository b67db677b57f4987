//! The member base the planner evaluates: every member's record and order digest, their
//! browsing events, the catalog, the mined co-purchase rules, the fitted value model and
//! the contact log, read from the store once and held in memory; what changes between
//! runs (unsubscribes, stopped addresses, coupon codes given) is re-read before each. The
//! daemon keeps one and evaluates every run against it; `rules preview` and `explain`
//! load one per call.

use crate::bundles::OfferIndex;
use crate::domain::{day_of, ConsentNeeds, Text};
use crate::predict::FittedModel;
use super::issued::IssuedCodes;
use crate::rules::condition::{Bundles, EventFact};
use crate::store::model::{ContactLog, EventHistory, Member, Product};
use crate::store::{decode, RecordKind, Store, StoreError};
use rayon::prelude::*;
use rustc_hash::FxHashMap;

pub struct MemberBase {
    /// Member ids, sorted.
    pub ids: Vec<Text>,
    pub members: Vec<Member>,
    /// Events per member (same index as `members`), in time order; empty when not loaded.
    pub events: Vec<Vec<EventFact>>,
    pub catalog: FxHashMap<Text, Product>,
    pub bundles: Bundles,
    pub model: Option<FittedModel>,
    /// Contact logs by member index.
    pub contacts: FxHashMap<u32, ContactLog>,
    /// Channels each member unsubscribed from ("*": all) or whose address there is
    /// stopped, by member index.
    pub suppressed: FxHashMap<u32, Vec<Text>>,
    /// The consent each channel needs (which also picks the member's address there);
    /// the loader sets it from the channels' configuration.
    pub consent: ConsentNeeds,
    /// The `codes_file` coupon codes given so far.
    pub codes: IssuedCodes,
}

impl MemberBase {
    /// Reads everything from the store; events only when `with_events` (the rules in
    /// use need them). Reports progress through `progress(done)`.
    pub fn load(store: &Store, with_events: bool, progress: &dyn Fn(u64)) -> Result<MemberBase, StoreError> {
        let hint = store.member_count_hint();
        let mut ids = Vec::with_capacity(hint);
        let mut members = Vec::with_capacity(hint);
        store.member_chunks(|chunk| {
            let decoded: Vec<Member> = chunk.par_iter().map(|(k, v)| decode(k, v)).collect::<Result<_, _>>()?;
            ids.extend(chunk.iter().map(|(k, _)| Text::from_utf8_lossy(&k[1..])));
            members.extend(decoded);
            progress(members.len() as u64);
            Ok(())
        })?;
        store.note_member_count(members.len());
        let mut events = vec![Vec::new(); members.len()];
        if with_events {
            crate::store::in_chunks(store.scan_events_raw(), |chunk| {
                let decoded: Vec<(usize, Vec<EventFact>)> = chunk
                    .par_iter()
                    .filter_map(|(k, v)| {
                        let id = std::str::from_utf8(&k[1..]).ok()?;
                        let at = ids.binary_search_by(|x: &Text| x.as_str().cmp(id)).ok()?;
                        Some(decode::<EventHistory>(k, v).map(|h| {
                            (at, h.events.into_iter().map(|e| EventFact { day: day_of(e.ts), kind: e.kind, sku: e.sku }).collect())
                        }))
                    })
                    .collect::<Result<_, _>>()?;
                for (at, evs) in decoded {
                    events[at] = evs;
                }
                Ok(())
            })?;
        }
        let catalog = store.scan_products().map(|r| r.map(|(sku, p)| (Text::from(sku), p))).collect::<Result<_, _>>()?;
        let index = |scope: crate::basket::Scope| -> Result<Option<OfferIndex>, StoreError> {
            let mined: Option<crate::basket::MinedRules> = store.get_record(RecordKind::BundleRules, scope.name())?;
            Ok(mined.map(|m| OfferIndex::new(m.rules)))
        };
        let bundles = Bundles { basket: index(crate::basket::Scope::Basket)?, member: index(crate::basket::Scope::Member)? };
        let model = store.get_record(RecordKind::FittedModel, "value")?;
        let mut contacts = FxHashMap::default();
        for item in store.scan_contacts() {
            let (id, log) = item?;
            if let Ok(at) = ids.binary_search_by(|x: &Text| x.as_str().cmp(&id)) {
                contacts.insert(at as u32, log);
            }
        }
        let mut base = MemberBase {
            ids,
            members,
            events,
            catalog,
            bundles,
            model,
            contacts,
            suppressed: FxHashMap::default(),
            consent: ConsentNeeds::default(),
            codes: IssuedCodes::default(),
        };
        base.refresh(store)?;
        Ok(base)
    }

    /// Re-reads what changes between runs without an import: who must not be messaged
    /// on which channel (the members' unsubscribes, the addresses stopped by bounces,
    /// complaints and opt-outs) and the coupon codes given. Cheap (the lists are short);
    /// the daemon calls it before every run.
    pub fn refresh(&mut self, store: &Store) -> Result<(), StoreError> {
        self.codes = IssuedCodes::load(store, |id| self.index_of(id))?;
        let mut suppressed: FxHashMap<u32, Vec<Text>> = FxHashMap::default();
        for item in store.scan_suppressed() {
            let (id, channels) = item?;
            if let Some(at) = self.index_of(&id) {
                suppressed.insert(at as u32, channels);
            }
        }
        let mut stopped: FxHashMap<String, Vec<String>> = FxHashMap::default();
        for item in store.stopped_addresses() {
            let (channel, address) = item?;
            stopped.entry(channel).or_default().push(address);
        }
        for (channel, addresses) in stopped {
            let addresses: rustc_hash::FxHashSet<&str> = addresses.iter().map(String::as_str).collect();
            for i in 0..self.members.len() {
                if addresses.contains(self.address(i, &channel).as_ref()) {
                    let list = suppressed.entry(i as u32).or_default();
                    if !list.iter().any(|c| c == channel.as_str()) {
                        list.push(Text::from(channel.as_str()));
                    }
                }
            }
        }
        self.suppressed = suppressed;
        Ok(())
    }

    /// A member's address on a channel (`Member::address_on`, by the consent it needs).
    pub fn address(&self, i: usize, channel: &str) -> std::borrow::Cow<'_, str> {
        self.members[i].address_on(&self.ids[i], self.consent.of(channel)).into()
    }

    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.ids.binary_search_by(|x| x.as_str().cmp(id)).ok()
    }
}
