//! What comes back after a send: each message's delivery status, the index that finds a
//! message by the provider's id, and the addresses that must not be used any more (hard
//! bounces, complaints, repeated SMS failures, STOP replies).
//!
//! | key | value |
//! |---|---|
//! | `S` run (u64 BE) seq (u32 BE) | [`DeliveryStatus`]: the latest report on the message |
//! | `I` channel `\0` provider id | the message id (run, seq), written when the send succeeds |
//! | `W` channel `\0` address | [`AddressHealth`]: failures in a row, and whether it is stopped |
//! | `J` channel `\0` provider id | [`ParkedReport`]s that arrived before the send was recorded |
//!
//! An address, not a member, is stopped: a member who gives a new email address gets
//! email again. Like the unsubscribe list (`U`), none of this is touched by imports.

use super::outbox::{MessageId, MessageState, OutboxMessage};
use super::{decode, encode, Store, StoreError};
use crate::domain::Timestamp;
use serde::{Deserialize, Serialize};

pub(crate) const STATUS: u8 = b'S';
pub(crate) const PROVIDER_ID: u8 = b'I';
pub(crate) const ADDRESS: u8 = b'W';
pub(crate) const PARKED: u8 = b'J';

/// A provider's report that came before the dispatcher recorded the send it is about
/// (fast gateways report within milliseconds); applied when the send is recorded,
/// dropped after a day if it never is (then it was not about a message of ours).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParkedReport {
    pub state: DeliveryState,
    pub recipient: Option<String>,
    pub reason: String,
    pub at: Timestamp,
}

/// What a provider last said about a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryState {
    Accepted,
    Delivered,
    Failed,
    Complained,
    OptedOut,
}

impl DeliveryState {
    pub fn name(self) -> &'static str {
        match self {
            DeliveryState::Accepted => "accepted",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
            DeliveryState::Complained => "complained",
            DeliveryState::OptedOut => "opted_out",
        }
    }

    /// Reports arrive out of order (Kannel's "SMSC ack" can follow "delivered"); a later
    /// report replaces an earlier one only when it says more.
    fn rank(self) -> u8 {
        match self {
            DeliveryState::Accepted => 0,
            DeliveryState::Delivered | DeliveryState::Failed => 1,
            DeliveryState::Complained | DeliveryState::OptedOut => 2,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryStatus {
    pub state: DeliveryState,
    pub at: Timestamp,
    pub reason: String,
}

/// One address's delivery record on one channel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressHealth {
    /// Failed deliveries since the last successful one.
    pub failures: u32,
    /// No more messages go to this address on this channel.
    pub stopped: bool,
    pub at: Timestamp,
    pub reason: String,
}

fn channel_key(prefix: u8, channel: &str, rest: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + channel.len() + rest.len());
    k.push(prefix);
    k.extend_from_slice(channel.as_bytes());
    k.push(0);
    k.extend_from_slice(rest.as_bytes());
    k
}

fn status_key(id: MessageId) -> Vec<u8> {
    let mut k = vec![STATUS];
    k.extend_from_slice(&id.run.to_be_bytes());
    k.extend_from_slice(&id.seq.to_be_bytes());
    k
}

impl Store {
    /// Adds "provider id -> message" entries (sends that just succeeded) to a batch.
    pub(crate) fn index_provider_id(batch: &mut sled::Batch, channel: &str, provider_id: &str, id: MessageId) {
        if !provider_id.is_empty() {
            let mut v = id.run.to_be_bytes().to_vec();
            v.extend_from_slice(&id.seq.to_be_bytes());
            batch.insert(channel_key(PROVIDER_ID, channel, provider_id), v);
        }
    }

    /// The message a provider id belongs to.
    pub fn message_by_provider_id(&self, channel: &str, provider_id: &str) -> Result<Option<MessageId>, StoreError> {
        Ok(self.db.get(channel_key(PROVIDER_ID, channel, provider_id))?.and_then(|v| {
            Some(MessageId { run: u64::from_be_bytes(v.get(..8)?.try_into().ok()?), seq: u32::from_be_bytes(v.get(8..12)?.try_into().ok()?) })
        }))
    }

    pub fn delivery_status(&self, id: MessageId) -> Result<Option<DeliveryStatus>, StoreError> {
        let k = status_key(id);
        self.db.get(&k)?.map(|v| decode(&k, &v)).transpose()
    }

    /// Records a report on a message unless the stored one says as much or more (a
    /// provider's retried callback is not news). Returns whether it was recorded.
    pub fn record_delivery_status(&self, id: MessageId, status: &DeliveryStatus) -> Result<bool, StoreError> {
        // atomic: a provider's reports on one message can arrive on parallel callbacks
        let mut recorded = false;
        self.db.fetch_and_update(status_key(id), |bytes| {
            let old: Option<DeliveryStatus> = bytes.and_then(|v| postcard::from_bytes(v).ok());
            recorded = old.is_none_or(|old| old.state != status.state && old.state.rank() <= status.state.rank());
            if recorded { Some(encode(status)) } else { bytes.map(<[u8]>::to_vec) }
        })?;
        Ok(recorded)
    }

    pub fn address_health(&self, channel: &str, address: &str) -> Result<Option<AddressHealth>, StoreError> {
        let k = channel_key(ADDRESS, channel, address);
        self.db.get(&k)?.map(|v| decode(&k, &v)).transpose()
    }

    /// Whether messages to `address` on `channel` must stop.
    pub fn address_stopped(&self, channel: &str, address: &str) -> Result<bool, StoreError> {
        Ok(self.address_health(channel, address)?.is_some_and(|h| h.stopped))
    }

    /// Changes an address's record in place; returns the new one.
    pub fn update_address(&self, channel: &str, address: &str, f: impl Fn(&mut AddressHealth)) -> Result<AddressHealth, StoreError> {
        let k = channel_key(ADDRESS, channel, address);
        let mut out = AddressHealth::default();
        self.db.fetch_and_update(&k, |old| {
            let mut h: AddressHealth = old.and_then(|v| postcard::from_bytes(v).ok()).unwrap_or_default();
            f(&mut h);
            out = h.clone();
            Some(encode(&h))
        })?;
        Ok(out)
    }

    pub(super) fn parked_lock(&self) -> std::sync::MutexGuard<'_, bool> {
        self.parked.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The message a provider id belongs to; if no send with that id is recorded yet, the
    /// report is parked for [`Store::record_sends`] to hand over. Both hold one lock, so a
    /// report is either found here or parked before the send's record looks for it.
    pub fn message_or_park(&self, channel: &str, provider_id: &str, report: &ParkedReport) -> Result<Option<MessageId>, StoreError> {
        let mut any_parked = self.parked_lock();
        if let Some(id) = self.message_by_provider_id(channel, provider_id)? {
            return Ok(Some(id));
        }
        self.db.fetch_and_update(channel_key(PARKED, channel, provider_id), |old| {
            let mut list: Vec<ParkedReport> = old.and_then(|v| postcard::from_bytes(v).ok()).unwrap_or_default();
            list.push(report.clone());
            Some(encode(&list))
        })?;
        *any_parked = true;
        Ok(None)
    }

    /// Records message updates ([`Store::update_messages`]) and takes the reports parked
    /// for the sends among them: (message, channel, reports).
    pub fn record_sends(&self, updates: &[(MessageId, Timestamp, OutboxMessage)]) -> Result<Vec<(MessageId, String, Vec<ParkedReport>)>, StoreError> {
        let mut any_parked = self.parked_lock();
        self.update_messages(updates)?;
        let mut taken = Vec::new();
        if !*any_parked {
            return Ok(taken);
        }
        for (id, _, m) in updates {
            let Some(cm) = m.channels.get(m.current as usize).filter(|_| m.state == MessageState::Sent && !m.provider_id.is_empty()) else { continue };
            let k = channel_key(PARKED, &cm.channel, &m.provider_id);
            if let Some(v) = self.db.remove(&k)? {
                taken.push((*id, cm.channel.to_string(), decode(&k, &v)?));
            }
        }
        *any_parked = self.db.scan_prefix([PARKED]).next().is_some();
        Ok(taken)
    }

    /// Drops parked reports that arrived before `at`; returns how many provider ids went.
    pub fn drop_parked_before(&self, at: Timestamp) -> Result<usize, StoreError> {
        let mut any_parked = self.parked_lock();
        let mut dropped = 0;
        for item in self.db.scan_prefix([PARKED]) {
            let (k, v) = item?;
            let list: Vec<ParkedReport> = decode(&k, &v)?;
            if list.iter().all(|r| r.at < at) {
                self.db.remove(&k)?;
                dropped += 1;
            }
        }
        *any_parked = self.db.scan_prefix([PARKED]).next().is_some();
        Ok(dropped)
    }

    /// Every stopped address: (channel, address).
    pub fn stopped_addresses(&self) -> impl Iterator<Item = Result<(String, String), StoreError>> + '_ {
        self.db.scan_prefix([ADDRESS]).filter_map(|r| {
            let (k, v) = match r {
                Ok(kv) => kv,
                Err(e) => return Some(Err(e.into())),
            };
            let h: AddressHealth = match decode(&k, &v) {
                Ok(h) => h,
                Err(e) => return Some(Err(e)),
            };
            let rest = String::from_utf8_lossy(&k[1..]).into_owned();
            let (channel, address) = rest.split_once('\0')?;
            h.stopped.then(|| Ok((channel.to_string(), address.to_string())))
        })
    }
}
