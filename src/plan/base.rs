//! The member base the planner evaluates: every member's attributes and order digest as
//! the mapped columns of [`crate::store::columns`] (read in place, never decoded into
//! objects), their browsing events, the catalog, the mined co-purchase rules, the fitted
//! value model and the contact log; the contact fields (name, email, phone) stay in the
//! store and are read only for the members a run messages. What changes between runs
//! (unsubscribes, stopped addresses, coupon codes given) is re-read before each. The
//! daemon keeps one and evaluates every run against it; `rules preview` and `explain`
//! load one per call.

use crate::bundles::OfferIndex;
use crate::domain::{day_of, Consent, ConsentNeeds, Text};
use crate::predict::FittedModel;
use super::issued::IssuedCodes;
use crate::rules::condition::{Bundles, MemberEvents};
use crate::store::columns::{address_hash, Columns, MemberColumns};
use crate::store::model::{ContactFields, ContactLog, EventHistory, Product};
use crate::store::{decode, RecordKind, Store, StoreError};
use rayon::prelude::*;
use rustc_hash::{FxHashMap, FxHashSet};

pub struct MemberBase {
    /// Every member's id (sorted: the index of a member everywhere), attributes and order digest.
    pub columns: MemberColumns,
    /// Where the contact fields are read.
    store: Store,
    /// Events per member (by the columns' index), in time order; none when not loaded.
    pub events: MemberEvents,
    pub catalog: FxHashMap<Text, Product>,
    pub bundles: Bundles,
    pub model: Option<FittedModel>,
    /// Contact logs by member index.
    pub contacts: FxHashMap<u32, ContactLog>,
    /// Channels each member unsubscribed from ("*": all) or whose address there is
    /// stopped, by member index.
    pub suppressed: FxHashMap<u32, Vec<Text>>,
    /// The consent each channel needs (which also picks the member's address there),
    /// from the channels' configuration: given to [`MemberBase::load`], which maps the
    /// stopped addresses to members with it.
    pub consent: ConsentNeeds,
    /// The `codes_file` coupon codes given so far.
    pub codes: IssuedCodes,
    /// The store's [`suppression_generation`](Store::suppression_generation) that
    /// `suppressed` and `codes` were read at.
    read_at: Option<u64>,
}

impl MemberBase {
    /// Reads everything from the store; events only when `with_events` (the rules in
    /// use need them). `consent` is what each channel needs ([`MemberBase::consent`]).
    /// Reports progress through `progress(done)`.
    pub fn load(store: &Store, consent: ConsentNeeds, with_events: bool, progress: &dyn Fn(u64)) -> Result<MemberBase, StoreError> {
        let columns = store.member_columns()?;
        let members = columns.len();
        progress(members as u64);
        store.note_member_count(members);
        let mut events = MemberEvents::default();
        if with_events {
            events = MemberEvents::with_members(members);
            // decoded in parallel chunk by chunk; the scan is in key order, which is the columns'
            crate::store::in_chunks(store.scan_events_raw(), |chunk| {
                let decoded: Vec<(usize, EventHistory)> = chunk
                    .par_iter()
                    .filter_map(|(k, v)| {
                        let id = std::str::from_utf8(&k[1..]).ok()?;
                        let at = columns.position(id)?;
                        Some(decode::<EventHistory>(k, v).map(|h| (at, h)))
                    })
                    .collect::<Result<_, _>>()?;
                for (at, h) in decoded {
                    events.push(at, h.events.into_iter().map(|e| (day_of(e.ts), e.kind, e.sku)));
                }
                Ok(())
            })?;
            events = events.finish(members);
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
            if let Some(at) = columns.position(&id) {
                contacts.insert(at as u32, log);
            }
        }
        let mut base = MemberBase {
            columns,
            store: store.clone(),
            events,
            catalog,
            bundles,
            model,
            contacts,
            suppressed: FxHashMap::default(),
            consent,
            codes: IssuedCodes::default(),
            read_at: None,
        };
        base.refresh(store)?;
        Ok(base)
    }

    /// Re-reads what changes between runs without an import: who must not be messaged
    /// on which channel (the members' unsubscribes, the addresses stopped by bounces,
    /// complaints and opt-outs) and the coupon codes given; only when the store says
    /// they changed since the last read (a scan of every address with a delivery report,
    /// hundreds of thousands after a large run). The daemon calls it before every run,
    /// preview and explanation.
    pub fn refresh(&mut self, store: &Store) -> Result<(), StoreError> {
        let generation = store.suppression_generation();
        if self.read_at == Some(generation) {
            return Ok(());
        }
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
        let columns = self.columns.columns();
        for (channel, addresses) in stopped {
            for i in self.members_at(&columns, &channel, &addresses)? {
                let list = suppressed.entry(i as u32).or_default();
                if !list.iter().any(|c| c == channel.as_str()) {
                    list.push(Text::from(channel.as_str()));
                }
            }
        }
        self.suppressed = suppressed;
        self.read_at = Some(generation);
        Ok(())
    }

    /// The members whose address on `channel` is one of `addresses`: found by the
    /// columns' address fingerprints, confirmed against the stored contact fields.
    fn members_at(&self, columns: &Columns, channel: &str, addresses: &[String]) -> Result<Vec<usize>, StoreError> {
        let consent = self.consent.of(channel);
        let phone = match consent {
            Some(Consent::Email) => false,
            Some(Consent::Sms) => true,
            // the address is the member id
            _ => return Ok(addresses.iter().filter_map(|a| self.index_of(a)).collect()),
        };
        let wanted: FxHashSet<u64> = addresses.iter().map(|a| address_hash(a)).filter(|&h| h != 0).collect();
        let maybe: Vec<usize> = columns.address_hashes(phone).par_iter().enumerate().filter(|(_, h)| wanted.contains(h)).map(|(i, _)| i).collect();
        let addresses: FxHashSet<&str> = addresses.iter().map(String::as_str).collect();
        let mut out = Vec::with_capacity(maybe.len());
        for i in maybe {
            if addresses.contains(self.contact(i)?.address_on(self.id(i), consent)) {
                out.push(i);
            }
        }
        Ok(out)
    }

    /// Member `i`'s name, email and phone, read from the store.
    pub fn contact(&self, i: usize) -> Result<ContactFields, StoreError> {
        self.store.contact_fields(self.id(i))?.ok_or_else(|| StoreError::MemberGone(self.id(i).to_string()))
    }

    /// The contact fields of these members (in the same order; a member may repeat),
    /// read from the store in member order: a run's messages name members in their
    /// rules' order, and reading them sorted lets each page of records the store pulls
    /// serve the reads after it instead of being evicted first.
    pub fn contacts_in_member_order(&self, members: &[u32]) -> Vec<Result<ContactFields, StoreError>> {
        let mut order: Vec<usize> = (0..members.len()).collect();
        order.sort_unstable_by_key(|&k| members[k]);
        let mut read: Vec<Option<Result<ContactFields, StoreError>>> = (0..members.len()).map(|_| None).collect();
        for k in order {
            read[k] = Some(self.contact(members[k] as usize));
        }
        read.into_iter().map(|c| c.expect("every position was read")).collect()
    }

    /// A member's address on a channel (by the consent it needs), from its contact fields.
    pub fn address(&self, i: usize, contact: &ContactFields, channel: &str) -> String {
        contact.address_on(self.id(i), self.consent.of(channel)).to_string()
    }

    pub fn len(&self) -> usize {
        self.columns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// Member `i`'s id.
    pub fn id(&self, i: usize) -> &str {
        self.columns.id(i)
    }

    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.columns.position(id)
    }
}
