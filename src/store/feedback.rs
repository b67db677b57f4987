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
//! | `K` `callback:` channel | [`CallbackSecret`]: the secret of the channel's callback URL |
//! | `A` channel `\0` address `\0` member | nothing: rekindle sent the member a message at that address |
//!
//! An address, not a member, is stopped: a member who gives a new email address gets
//! email again. Like the unsubscribe list (`U`), none of this is touched by imports.

use super::outbox::{MessageId, MessageState, OutboxMessage};
use super::{decode, encode, Store, StoreError};
use crate::domain::{DeliveryState, Timestamp};
use serde::{Deserialize, Serialize};

pub(crate) const STATUS: u8 = b'S';
pub(crate) const PROVIDER_ID: u8 = b'I';
pub(crate) const ADDRESS: u8 = b'W';
pub(crate) const PARKED: u8 = b'J';
pub(crate) const SENT_TO: u8 = b'A';

/// A provider's report that came before the dispatcher recorded the send it is about
/// (fast gateways report within milliseconds); applied when the send is recorded,
/// dropped after `[feedback] parked_expire_minutes` if it never is (then it was not
/// about a message of ours).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParkedReport {
    pub state: DeliveryState,
    pub recipient: Option<String>,
    pub reason: String,
    pub at: Timestamp,
}

/// The secret in a channel's callback URL (`/callbacks/CHANNEL/SECRET`), random, made
/// on first use; after a rotation the one it replaced is still accepted until `until`
/// (reports of messages sent before the rotation still name it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackSecret {
    pub current: [u8; 32],
    pub previous: Option<([u8; 32], Timestamp)>,
}

/// How much may be parked: reports per channel, bytes per channel (keys and values),
/// reports per provider id. Past them a report is refused (the callback answers 429).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParkLimits {
    pub per_channel: u64,
    pub bytes_per_channel: u64,
    pub per_provider_id: usize,
}

/// What became of a report naming a provider id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parking {
    /// The send is recorded: this message.
    Found(MessageId),
    /// Kept until the send is recorded.
    Parked,
    /// Refused: the channel (or the provider id) has as much parked as it may.
    Full,
}

/// Reports and bytes parked per channel, kept beside the `J` keys under the parked lock.
#[derive(Debug, Default)]
pub struct ParkedCounts {
    by_channel: std::collections::HashMap<String, (u64, u64)>,
}

impl ParkedCounts {
    fn of(&self, channel: &str) -> (u64, u64) {
        self.by_channel.get(channel).copied().unwrap_or_default()
    }

    fn add(&mut self, channel: &str, reports: u64, bytes: u64) {
        let e = self.by_channel.entry(channel.to_string()).or_default();
        e.0 += reports;
        e.1 += bytes;
    }

    fn sub(&mut self, channel: &str, reports: u64, bytes: u64) {
        if let Some(e) = self.by_channel.get_mut(channel) {
            e.0 = e.0.saturating_sub(reports);
            e.1 = e.1.saturating_sub(bytes);
            if e.0 == 0 {
                self.by_channel.remove(channel);
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.by_channel.is_empty()
    }
}

/// The channel of a `J` key.
fn parked_channel(key: &[u8]) -> String {
    let rest = key.get(1..).unwrap_or_default();
    let channel = rest.split(|&b| b == 0).next().unwrap_or_default();
    String::from_utf8_lossy(channel).into_owned()
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

fn random_secret() -> Result<[u8; 32], StoreError> {
    let mut fresh = [0u8; 32];
    getrandom::fill(&mut fresh).map_err(|e| StoreError::Sled(sled::Error::Io(std::io::Error::other(e.to_string()))))?;
    Ok(fresh)
}

impl Store {
    /// The secret of `channel`'s callback URL, made (and flushed) on first use.
    pub fn callback_secret(&self, channel: &str) -> Result<CallbackSecret, StoreError> {
        let k = super::key(super::SECRET, &format!("callback:{channel}"));
        if let Some(v) = self.db.get(&k)? {
            return decode(&k, &v);
        }
        let fresh = CallbackSecret { current: random_secret()?, previous: None };
        // a concurrent first use keeps whichever secret landed first
        let _ = self.db.compare_and_swap(&k, None as Option<&[u8]>, Some(encode(&fresh)))?;
        self.db.flush()?;
        match self.db.get(&k)? {
            Some(v) => decode(&k, &v),
            None => Ok(fresh),
        }
    }

    /// Replaces `channel`'s callback secret with a new random one; the old one is
    /// accepted until `keep_old_until`. Durable when this returns.
    pub fn rotate_callback_secret(&self, channel: &str, keep_old_until: Timestamp) -> Result<CallbackSecret, StoreError> {
        let old = self.callback_secret(channel)?;
        let new = CallbackSecret { current: random_secret()?, previous: Some((old.current, keep_old_until)) };
        self.db.insert(super::key(super::SECRET, &format!("callback:{channel}")), encode(&new))?;
        self.db.flush()?;
        Ok(new)
    }

    /// Adds the indexes of a send that just succeeded to a batch: "provider id ->
    /// message", and "address -> member" (who an opt-out by address alone is about).
    pub(crate) fn index_sent(batch: &mut sled::Batch, channel: &str, provider_id: &str, address: &str, member: &str, id: MessageId) {
        if !provider_id.is_empty() {
            let mut v = id.run.to_be_bytes().to_vec();
            v.extend_from_slice(&id.seq.to_be_bytes());
            batch.insert(channel_key(PROVIDER_ID, channel, provider_id), v);
        }
        // a NUL would make one address's keys a prefix of another's
        if !address.is_empty() && !address.contains('\0') {
            let mut k = channel_key(SENT_TO, channel, address);
            k.push(0);
            k.extend_from_slice(member.as_bytes());
            batch.insert(k, &[][..]);
        }
    }

    /// The members rekindle messaged at `address` on `channel` (at most `limit`).
    pub fn members_messaged_at(&self, channel: &str, address: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        if address.contains('\0') {
            return Ok(Vec::new());
        }
        let mut prefix = channel_key(SENT_TO, channel, address);
        prefix.push(0);
        self.db
            .scan_prefix(&prefix)
            .keys()
            .take(limit)
            .map(|k| Ok(String::from_utf8_lossy(k?.get(prefix.len()..).unwrap_or_default()).into_owned()))
            .collect()
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
        let mut flipped = false;
        self.db.fetch_and_update(&k, |old| {
            let mut h: AddressHealth = old.and_then(|v| postcard::from_bytes(v).ok()).unwrap_or_default();
            let was = h.stopped;
            f(&mut h);
            flipped = was != h.stopped;
            out = h.clone();
            Some(encode(&h))
        })?;
        if flipped {
            self.suppression_changed();
        }
        Ok(out)
    }

    pub(super) fn parked_lock(&self) -> std::sync::MutexGuard<'_, ParkedCounts> {
        self.parked.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts what is parked, per channel (at open).
    pub(super) fn count_parked(&self) -> Result<(), StoreError> {
        let mut counts = self.parked_lock();
        counts.by_channel.clear();
        for item in self.db.scan_prefix([PARKED]) {
            let (k, v) = item?;
            let list: Vec<ParkedReport> = decode(&k, &v)?;
            counts.add(&parked_channel(&k), list.len() as u64, (k.len() + v.len()) as u64);
        }
        Ok(())
    }

    /// The message a provider id belongs to; if no send with that id is recorded yet, the
    /// report is parked for [`Store::record_sends`] to hand over, unless that would take
    /// the channel (or the provider id) past `limits`. Both hold one lock, so a report is
    /// either found here or parked before the send's record looks for it.
    pub fn message_or_park(&self, channel: &str, provider_id: &str, report: &ParkedReport, limits: &ParkLimits) -> Result<Parking, StoreError> {
        let mut counts = self.parked_lock();
        if let Some(id) = self.message_by_provider_id(channel, provider_id)? {
            return Ok(Parking::Found(id));
        }
        let k = channel_key(PARKED, channel, provider_id);
        let old = self.db.get(&k)?;
        let mut list: Vec<ParkedReport> = old.as_ref().map(|v| decode(&k, v)).transpose()?.unwrap_or_default();
        list.push(report.clone());
        let value = encode(&list);
        let (reports, bytes) = counts.of(channel);
        let old_bytes = old.map_or(0, |v| (k.len() + v.len()) as u64);
        let new_bytes = (k.len() + value.len()) as u64;
        if list.len() > limits.per_provider_id || reports >= limits.per_channel || bytes - old_bytes + new_bytes > limits.bytes_per_channel {
            return Ok(Parking::Full);
        }
        self.db.insert(&k, value)?;
        counts.add(channel, 1, new_bytes);
        counts.sub(channel, 0, old_bytes);
        Ok(Parking::Parked)
    }

    /// Records message updates ([`Store::update_messages`]) and takes the reports parked
    /// for the sends among them: (message, channel, reports).
    pub fn record_sends(&self, updates: &[(MessageId, Timestamp, OutboxMessage)]) -> Result<Vec<(MessageId, String, Vec<ParkedReport>)>, StoreError> {
        let mut counts = self.parked_lock();
        self.update_messages(updates)?;
        let mut taken = Vec::new();
        if counts.is_empty() {
            return Ok(taken);
        }
        for (id, _, m) in updates {
            let Some(cm) = m.channels.get(m.current as usize).filter(|_| m.state == MessageState::Sent && !m.provider_id.is_empty()) else { continue };
            let k = channel_key(PARKED, &cm.channel, &m.provider_id);
            if let Some(v) = self.db.remove(&k)? {
                let list: Vec<ParkedReport> = decode(&k, &v)?;
                counts.sub(&cm.channel, list.len() as u64, (k.len() + v.len()) as u64);
                taken.push((*id, cm.channel.to_string(), list));
            }
        }
        Ok(taken)
    }

    /// Drops parked reports that arrived before `at`; returns how many provider ids went.
    pub fn drop_parked_before(&self, at: Timestamp) -> Result<usize, StoreError> {
        let mut counts = self.parked_lock();
        let mut dropped = 0;
        for item in self.db.scan_prefix([PARKED]) {
            let (k, v) = item?;
            let list: Vec<ParkedReport> = decode(&k, &v)?;
            if list.iter().all(|r| r.at < at) {
                self.db.remove(&k)?;
                counts.sub(&parked_channel(&k), list.len() as u64, (k.len() + v.len()) as u64);
                dropped += 1;
            }
        }
        Ok(dropped)
    }

    /// Reports and bytes parked for `channel`.
    pub fn parked_on(&self, channel: &str) -> (u64, u64) {
        self.parked_lock().of(channel)
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
