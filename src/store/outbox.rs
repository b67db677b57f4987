//! The outbox: planned messages, their send queue, dead letters, run records and the last
//! run of every rule, all in the store so a daemon killed at any moment resumes without
//! losing or repeating a message.
//!
//! | key | value |
//! |---|---|
//! | `R` run (u64 BE), in the runs tree | [`RunRecord`]; a run without `committed` is rolled back on start |
//! | `X` run (u64 BE) seq (u32 BE) | [`OutboxMessage`] |
//! | `Q` send_after (i64 BE, biased) run seq | empty: the queue of messages to send, by time |
//! | `D` run seq | empty: messages given up on (dead letters) |
//! | `L` rule id, in the runs tree | the last run of the rule (unix seconds, i64 BE) |
//!
//! A run writes a marker (its record without `committed` and without its members), its
//! messages and contacts in batches, then its record with `committed` and the rules'
//! last runs in one batch, then flushes: the dispatcher only ever sees committed runs. Each send's
//! outcome (state, queue entry) is one batch; the dispatcher flushes completed sends
//! before it takes new ones, so after a crash at most the sends in flight are repeated.

use super::model::Contact;
use super::{decode, encode, Store, StoreError, CONTACTS};
use crate::domain::{Text, Timestamp};
use serde::{Deserialize, Serialize};

pub(crate) const RUN: u8 = b'R';
pub(crate) const MESSAGE: u8 = b'X';
pub(crate) const QUEUE: u8 = b'Q';
pub(crate) const DEAD: u8 = b'D';
pub(crate) const LAST_RUN: u8 = b'L';
/// The run counter (the identity file keeps its high-water mark).
pub(crate) const NEXT_RUN: &[u8] = b"\0next-run";

#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    #[error("no message {0}")]
    NoMessage(MessageId),
    #[error("message {0} is not a dead letter")]
    NotDead(MessageId),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A message's id: the run that planned it and its place in the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MessageId {
    pub run: u64,
    pub seq: u32,
}

impl MessageId {
    fn bytes(self) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[..8].copy_from_slice(&self.run.to_be_bytes());
        b[8..].copy_from_slice(&self.seq.to_be_bytes());
        b
    }
    fn from_bytes(b: &[u8]) -> Option<MessageId> {
        Some(MessageId { run: u64::from_be_bytes(b.get(..8)?.try_into().ok()?), seq: u32::from_be_bytes(b.get(8..12)?.try_into().ok()?) })
    }
}

impl std::fmt::Display for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.run, self.seq)
    }
}

impl std::str::FromStr for MessageId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (r, q) = s.split_once('-').ok_or_else(|| format!("{s:?} is not a message id like 12-345"))?;
        Ok(MessageId { run: r.parse().map_err(|_| format!("bad run in {s:?}"))?, seq: q.parse().map_err(|_| format!("bad seq in {s:?}"))? })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageState {
    /// In the queue.
    Pending,
    Sent,
    /// Every channel failed permanently.
    Failed,
    /// Retries exhausted; in the dead-letter list.
    Dead,
}

/// One rendered message of a channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelMessage {
    pub channel: Text,
    pub address: String,
    pub subject: Option<String>,
    pub text: String,
    pub html: Option<String>,
}

/// A planned message and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxMessage {
    pub rule: Text,
    pub member: Text,
    pub member_name: String,
    /// Rendered for each channel in fallback order.
    pub channels: Vec<ChannelMessage>,
    /// Which of `channels` is being tried.
    pub current: u8,
    /// Attempts on the current channel.
    pub attempts: u32,
    pub send_after: Timestamp,
    pub state: MessageState,
    pub provider_id: String,
    pub sent_at: Option<Timestamp>,
    /// The last error of each attempt that failed, newest last (at most 5 kept).
    pub errors: Vec<String>,
    /// Offer variables (code, value, sku...) as JSON, for reports.
    pub offer: String,
}

/// One run of one or more rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: u64,
    pub at: Timestamp,
    pub as_of: i32,
    pub catch_up: bool,
    pub committed: bool,
    pub rules: Vec<RuleRun>,
}

/// One rule's part of a run: its funnel and who was held out (followed for the report).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleRun {
    pub rule: Text,
    pub funnel: Vec<(String, u64)>,
    pub held_out: Vec<Text>,
    /// Empty since store format 5 (runs before it listed every member left out here,
    /// 25 MB at a million members, read whole by every report): the funnel counts them by
    /// reason, and `explain` says why one member is left out. Kept so older records decode.
    pub skipped: Vec<(Text, String)>,
    pub messages: u32,
}

fn key(prefix: u8, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + rest.len());
    k.push(prefix);
    k.extend_from_slice(rest);
    k
}

fn queue_key(at: Timestamp, id: MessageId) -> Vec<u8> {
    let mut k = Vec::with_capacity(21);
    k.push(QUEUE);
    k.extend_from_slice(&((at as u64) ^ (1 << 63)).to_be_bytes());
    k.extend_from_slice(&id.bytes());
    k
}

const PER_BATCH: usize = 1000;

impl Store {
    /// A fresh run id (monotonic, durable across restarts).
    pub fn next_run_id(&self) -> Result<u64, StoreError> {
        let next = self.db.update_and_fetch(NEXT_RUN, |old| {
            let n = old.and_then(|b| b.try_into().ok()).map(u64::from_be_bytes).unwrap_or(0) + 1;
            Some(n.to_be_bytes().to_vec())
        })?;
        Ok(next.and_then(|b| b.as_ref().try_into().ok()).map(u64::from_be_bytes).unwrap_or(1))
    }

    /// Writes a run: messages (queued at their send time) and contacts in batches, then
    /// the committed run record and each rule's last run, then flushes.
    pub fn write_run(&self, run: &RunRecord, messages: &[OutboxMessage], contacts: &[(String, Contact)], keep_contact_days: u32) -> Result<(), StoreError> {
        // what rolling back needs: the run's id
        let pending = RunRecord { committed: false, rules: Vec::new(), ..*run };
        self.runs.insert(key(RUN, &run.id.to_be_bytes()), encode(&pending))?;
        for (chunk_no, chunk) in messages.chunks(PER_BATCH).enumerate() {
            let mut batch = sled::Batch::default();
            for (i, m) in chunk.iter().enumerate() {
                let id = MessageId { run: run.id, seq: (chunk_no * PER_BATCH + i) as u32 };
                batch.insert(key(MESSAGE, &id.bytes()), encode(m));
                batch.insert(queue_key(m.send_after, id), &[][..]);
            }
            self.apply(batch)?;
        }
        for chunk in contacts.chunks(PER_BATCH) {
            self.add_contacts(chunk, keep_contact_days)?;
        }
        let mut batch = sled::Batch::default();
        batch.insert(key(RUN, &run.id.to_be_bytes()), encode(run));
        for r in &run.rules {
            batch.insert(key(LAST_RUN, r.rule.as_bytes()), &run.at.to_be_bytes()[..]);
        }
        self.runs.apply_batch(batch)?;
        self.flush()
    }

    /// Removes what uncommitted runs (a crash mid-write) left: their messages, queue
    /// entries and contacts. Returns the runs rolled back.
    pub fn roll_back_unfinished_runs(&self) -> Result<Vec<u64>, StoreError> {
        let mut rolled = Vec::new();
        for item in self.runs.scan_prefix([RUN]) {
            let (k, v) = item?;
            let run: RunRecord = decode(&k, &v)?;
            if run.committed {
                continue;
            }
            let mut batch = sled::Batch::default();
            for item in self.db.scan_prefix(key(MESSAGE, &run.id.to_be_bytes())) {
                let (mk, mv) = item?;
                let m: OutboxMessage = decode(&mk, &mv)?;
                if let Some(id) = MessageId::from_bytes(&mk[1..]) {
                    batch.remove(queue_key(m.send_after, id));
                }
                batch.remove(mk);
            }
            self.apply(batch)?;
            rolled.push(run.id);
        }
        if !rolled.is_empty() {
            // contacts carry their run; drop those of the rolled-back runs
            for item in self.db.scan_prefix([CONTACTS]) {
                let (k, v) = item?;
                let mut log: super::model::ContactLog = decode(&k, &v)?;
                let before = log.contacts.len();
                log.contacts.retain(|c| !rolled.contains(&c.run));
                if log.contacts.len() != before {
                    self.db.insert(k, encode(&log))?;
                }
            }
            self.flush()?;
            // the markers last: a crash before this rolls the same runs back again
            for id in &rolled {
                self.runs.remove(key(RUN, &id.to_be_bytes()))?;
            }
            self.flush()?;
        }
        Ok(rolled)
    }

    /// Overwrites a run record (tests simulate a crash mid-run with it).
    #[doc(hidden)]
    pub fn put_run_record_for_tests(&self, run: &RunRecord) -> Result<(), StoreError> {
        self.runs.insert(key(RUN, &run.id.to_be_bytes()), encode(run))?;
        Ok(())
    }

    pub fn run(&self, id: u64) -> Result<Option<RunRecord>, StoreError> {
        let k = key(RUN, &id.to_be_bytes());
        self.runs.get(&k)?.map(|v| decode(&k, &v)).transpose()
    }

    pub fn runs(&self) -> impl Iterator<Item = Result<RunRecord, StoreError>> + '_ {
        self.runs.scan_prefix([RUN]).map(|r| {
            let (k, v) = r?;
            decode(&k, &v)
        })
    }

    /// When each rule last ran.
    pub fn last_run(&self, rule: &str) -> Result<Option<Timestamp>, StoreError> {
        Ok(self.runs.get(key(LAST_RUN, rule.as_bytes()))?.and_then(|v| v.as_ref().try_into().ok().map(i64::from_be_bytes)))
    }

    pub fn message(&self, id: MessageId) -> Result<Option<OutboxMessage>, StoreError> {
        let k = key(MESSAGE, &id.bytes());
        self.db.get(&k)?.map(|v| decode(&k, &v)).transpose()
    }

    /// Queued messages due at `now`, oldest first, at most `limit`, skipping `exclude`.
    pub fn due(&self, now: Timestamp, limit: usize, exclude: &impl Fn(MessageId) -> bool) -> Result<Vec<(MessageId, OutboxMessage)>, StoreError> {
        let end = queue_key(now, MessageId { run: u64::MAX, seq: u32::MAX });
        let mut out = Vec::new();
        for item in self.db.range(vec![QUEUE]..end) {
            let (k, _) = item?;
            let Some(id) = MessageId::from_bytes(&k[9..]) else { continue };
            if exclude(id) {
                continue;
            }
            if let Some(m) = self.message(id)? {
                out.push((id, m));
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// The next time a queued message falls due.
    pub fn next_due(&self) -> Result<Option<Timestamp>, StoreError> {
        Ok(self.db.scan_prefix([QUEUE]).next().transpose()?.map(|(k, _)| (u64::from_be_bytes(k[1..9].try_into().unwrap_or([0; 8])) ^ (1 << 63)) as i64))
    }

    /// Records a message's new state: its queue entry moves (or goes) with it, it
    /// enters or leaves the dead letters, a sent one becomes findable by its provider
    /// id, all in one batch.
    pub fn update_messages(&self, updates: &[(MessageId, Timestamp, OutboxMessage)]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (id, old_send_after, m) in updates {
            batch.remove(queue_key(*old_send_after, *id));
            if m.state == MessageState::Pending {
                batch.insert(queue_key(m.send_after, *id), &[][..]);
            }
            if m.state == MessageState::Dead {
                batch.insert(key(DEAD, &id.bytes()), &[][..]);
            } else {
                batch.remove(key(DEAD, &id.bytes()));
            }
            if m.state == MessageState::Sent {
                if let Some(cm) = m.channels.get(m.current as usize) {
                    Store::index_sent(&mut batch, &cm.channel, &m.provider_id, &cm.address, &m.member, *id);
                }
            }
            batch.insert(key(MESSAGE, &id.bytes()), encode(m));
        }
        self.apply(batch)
    }

    /// Queues dead letters again, due at `now` with fresh attempts: the given ones, or all
    /// (`None`). Returns how many.
    pub fn retry_dead_letters(&self, ids: Option<&[MessageId]>, now: Timestamp) -> Result<usize, RetryError> {
        let ids: Vec<MessageId> = match ids {
            Some(ids) => ids.to_vec(),
            None => self.dead_letters().map(|r| r.map(|(id, _)| id)).collect::<Result<_, _>>()?,
        };
        let mut updates = Vec::new();
        for id in ids {
            let Some(mut m) = self.message(id)? else { return Err(RetryError::NoMessage(id)) };
            if m.state != MessageState::Dead {
                return Err(RetryError::NotDead(id));
            }
            let old = m.send_after;
            m.state = MessageState::Pending;
            m.attempts = 0;
            m.send_after = now;
            updates.push((id, old, m));
        }
        self.update_messages(&updates)?;
        self.flush()?;
        Ok(updates.len())
    }

    pub fn dead_letters(&self) -> impl Iterator<Item = Result<(MessageId, OutboxMessage), StoreError>> + '_ {
        self.db.scan_prefix([DEAD]).filter_map(move |r| match r {
            Err(e) => Some(Err(e.into())),
            Ok((k, _)) => {
                let id = MessageId::from_bytes(&k[1..])?;
                self.message(id).transpose().map(|m| m.map(|m| (id, m)))
            }
        })
    }

    /// Counts of queued, due and dead messages.
    pub fn outbox_counts(&self, now: Timestamp) -> Result<(u64, u64, u64), StoreError> {
        let end = queue_key(now, MessageId { run: u64::MAX, seq: u32::MAX });
        let due = self.db.range(vec![QUEUE]..end).count() as u64;
        let queued = self.db.scan_prefix([QUEUE]).count() as u64;
        let dead = self.db.scan_prefix([DEAD]).count() as u64;
        Ok((queued, due, dead))
    }

    /// Every message of a run.
    pub fn run_messages(&self, run: u64) -> impl Iterator<Item = Result<(MessageId, OutboxMessage), StoreError>> + '_ {
        self.db.scan_prefix(key(MESSAGE, &run.to_be_bytes())).map(|r| {
            let (k, v) = r?;
            Ok((MessageId::from_bytes(&k[1..]).unwrap_or(MessageId { run: 0, seq: 0 }), decode(&k, &v)?))
        })
    }
}
