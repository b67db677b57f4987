//! Dispatch: takes due messages from the outbox, sends them through the channel plugins
//! under a rate limit and a concurrency limit per channel, and records each outcome.
//!
//! A retryable error backs off exponentially (with jitter) up to a maximum; after
//! `max_attempts` the message becomes a dead letter. A permanent error moves on to the
//! rule's next channel for the member; with none left the message has failed. Outcomes
//! are written and flushed in groups before new messages are taken, so a crash repeats
//! at most the sends that were in flight.

use crate::feedback::FeedbackConfig;
use crate::metrics::Metrics;
use crate::plan::stable_hash;
use crate::plugin::{ChannelHost, OutboundMessage, Recipient};
use crate::store::outbox::{MessageId, MessageState, OutboxMessage};
use crate::store::{Store, StoreError};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch, Semaphore};

/// `[dispatch]` in config.toml.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DispatchConfig {
    /// Messages per second per channel (0: no limit).
    pub rate_per_second: f64,
    /// Sends in flight per channel.
    pub concurrency: u32,
    /// Attempts on one channel before a retryable failure becomes a dead letter.
    pub max_attempts: u32,
    /// First retry after this long; doubling each time, up to `backoff_max_seconds`.
    pub backoff_base_seconds: f64,
    pub backoff_max_seconds: f64,
    /// How long SIGTERM waits for sends in flight.
    pub shutdown_grace_seconds: f64,
    /// Per-channel overrides of `rate_per_second` and `concurrency`.
    pub channels: BTreeMap<String, ChannelLimits>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelLimits {
    pub rate_per_second: Option<f64>,
    pub concurrency: Option<u32>,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig {
            rate_per_second: 0.0,
            concurrency: 16,
            max_attempts: 5,
            backoff_base_seconds: 30.0,
            backoff_max_seconds: 3600.0,
            shutdown_grace_seconds: 10.0,
            channels: BTreeMap::new(),
        }
    }
}

impl DispatchConfig {
    pub fn check(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.concurrency == 0 || self.channels.values().any(|c| c.concurrency == Some(0)) {
            out.push("dispatch: concurrency must be at least 1".into());
        }
        if self.rate_per_second < 0.0 || self.channels.values().any(|c| c.rate_per_second.is_some_and(|r| r < 0.0)) {
            out.push("dispatch: rate_per_second must be 0 (no limit) or positive".into());
        }
        if self.max_attempts == 0 {
            out.push("dispatch.max_attempts: must be at least 1".into());
        }
        if !(self.backoff_base_seconds > 0.0 && self.backoff_base_seconds <= self.backoff_max_seconds) {
            out.push("dispatch: need 0 < backoff_base_seconds <= backoff_max_seconds".into());
        }
        out
    }

    fn limits(&self, channel: &str) -> (f64, u32) {
        let c = self.channels.get(channel);
        (c.and_then(|c| c.rate_per_second).unwrap_or(self.rate_per_second), c.and_then(|c| c.concurrency).unwrap_or(self.concurrency))
    }

    /// Delay before retry number `attempt` (1-based) of message `id`: exponential,
    /// capped, with a deterministic jitter of up to +-20%.
    pub fn backoff(&self, id: MessageId, attempt: u32) -> Duration {
        let base = (self.backoff_base_seconds * 2f64.powi(attempt.saturating_sub(1).min(30) as i32)).min(self.backoff_max_seconds);
        let h = stable_hash(&[&id.run.to_be_bytes(), &id.seq.to_be_bytes(), &attempt.to_be_bytes()]);
        let jitter = 0.8 + 0.4 * (h % 10_000) as f64 / 10_000.0;
        Duration::from_secs_f64(base * jitter)
    }
}

/// What a dispatch pass did.
/// Why the dispatcher stopped before it was told to.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Store work on a blocking thread panicked (a bug) or was cancelled.
    #[error("dispatch: a store task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DispatchStats {
    pub sent: u64,
    pub retried: u64,
    pub fell_back: u64,
    pub failed: u64,
    pub dead: u64,
    pub sent_by_channel: BTreeMap<String, u64>,
}

/// Per-channel pacing: a token bucket of one token per 1/rate seconds.
struct Pace {
    permits: Arc<Semaphore>,
    interval: Option<Duration>,
    next: Instant,
}

/// The idempotency key of a message on a channel: stable across retries and restarts.
pub fn idempotency_key(m: &OutboxMessage, id: MessageId, channel: &str) -> String {
    format!("{}:{}:{}:{channel}", m.rule, id.run, m.member)
}

/// What the dispatcher reports to besides the store: the daemon's metrics, and the
/// feedback settings a synchronous hard bounce is judged by; and the signed
/// unsubscribe links it hands each message in its channel data.
#[derive(Clone, Default)]
pub struct Observers {
    pub metrics: Arc<Metrics>,
    pub feedback: FeedbackConfig,
    /// None: messages carry no `unsubscribe_url` (tests, tools).
    pub links: Option<crate::plan::links::Links>,
}

/// Sends due messages until `stop` turns true, or (with `until_idle`) until nothing is
/// due and nothing is in flight.
pub async fn dispatch(store: Store, host: Arc<ChannelHost>, config: DispatchConfig, observers: Observers, mut stop: watch::Receiver<bool>, until_idle: bool) -> Result<DispatchStats, DispatchError> {
    // shared by every send task: one reference count each, not a copy of the maps and keys
    let (config, observers) = (Arc::new(config), Arc::new(observers));
    let mut stats = DispatchStats::default();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(MessageId, i64, OutboxMessage, Outcome)>();
    let mut in_flight: HashSet<MessageId> = HashSet::new();
    let mut paces: HashMap<String, Pace> = HashMap::new();
    let capacity: usize = host.channel_names().map(|c| config.limits(c).1 as usize).sum::<usize>().max(1);
    let mut stopping = false;
    let mut grace_end: Option<Instant> = None;
    let committed: Arc<std::sync::Mutex<HashSet<u64>>> = Default::default();
    loop {
        // 1. record finished sends, durably, before taking more
        let mut updates = Vec::new();
        while let Ok((id, old, m, outcome)) = done_rx.try_recv() {
            in_flight.remove(&id);
            match outcome {
                Outcome::Sent(channel) => {
                    stats.sent += 1;
                    *stats.sent_by_channel.entry(channel).or_default() += 1;
                }
                Outcome::Retry => stats.retried += 1,
                Outcome::Fallback => stats.fell_back += 1,
                Outcome::Failed => stats.failed += 1,
                Outcome::Dead => stats.dead += 1,
            }
            updates.push((id, old, m));
        }
        if !updates.is_empty() {
            let (store, host, settings) = (store.clone(), host.clone(), observers.feedback.clone());
            tokio::task::spawn_blocking(move || {
                // any provider report that arrived before its send was recorded is waiting
                for (id, channel, reports) in store.record_sends(&updates)? {
                    crate::feedback::apply_parked(&store, &channel, host.kind(&channel).unwrap_or_default(), id, reports, &settings)?;
                }
                store.flush()
            })
                .await
                ??;
        }
        if *stop.borrow() && !stopping {
            stopping = true;
            grace_end = Some(Instant::now() + Duration::from_secs_f64(config.shutdown_grace_seconds));
            tracing::info!(in_flight = in_flight.len(), "dispatch stopping: no new sends");
        }
        if stopping {
            if in_flight.is_empty() || grace_end.is_some_and(|g| Instant::now() >= g) {
                if !in_flight.is_empty() {
                    tracing::warn!(in_flight = in_flight.len(), "grace period over; unfinished sends stay in the outbox");
                }
                return Ok(stats);
            }
            tokio::select! {
                Some(x) = done_rx.recv() => { let _ = done_tx.send(x); }
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
            continue;
        }
        // 2. take due messages up to the free capacity
        let now = chrono::Utc::now().timestamp();
        let free = capacity.saturating_sub(in_flight.len());
        let due = if free > 0 {
            let store = store.clone();
            let exclude = in_flight.clone();
            let committed = committed.clone();
            tokio::task::spawn_blocking(move || {
                // a run being written (or left unfinished by a crash) is not sent from:
                // its record is written, committed, last
                let not_yet = std::cell::RefCell::new(HashSet::new());
                let is_committed = |run: u64| -> bool {
                    let mut known = committed.lock().unwrap_or_else(|p| p.into_inner());
                    if known.contains(&run) {
                        return true;
                    }
                    if not_yet.borrow().contains(&run) {
                        return false;
                    }
                    let yes = store.run(run).ok().flatten().is_some_and(|r| r.committed);
                    if yes {
                        known.insert(run);
                    } else {
                        not_yet.borrow_mut().insert(run);
                    }
                    yes
                };
                store.due(now, free, &|id| exclude.contains(&id) || !is_committed(id.run))
            })
            .await??
        } else {
            Vec::new()
        };
        for (id, mut m) in due {
            let Some(cm) = m.channels.get(m.current as usize) else { continue };
            let channel = cm.channel.to_string();
            // an unsubscribe, a bounce or a complaint takes effect before the next send,
            // even of a queued message; the next channel of the rule may still serve
            let unsubscribed = store.suppressed(&m.member)?.iter().any(|c| c == channel.as_str() || c == "*");
            if unsubscribed || store.address_stopped(&channel, &cm.address)? {
                let old = m.send_after;
                let why = if unsubscribed { "the member unsubscribed" } else { "the address is stopped (bounce, complaint or opt-out)" };
                note_error(&mut m, format!("{channel}: {why}"));
                observers.metrics.observe_skip(&channel, if unsubscribed { "unsubscribed" } else { "stopped" });
                let outcome = if (m.current as usize) + 1 < m.channels.len() {
                    m.current += 1;
                    m.attempts = 0;
                    m.send_after = now;
                    Outcome::Fallback
                } else {
                    m.state = MessageState::Failed;
                    Outcome::Failed
                };
                in_flight.insert(id);
                let _ = done_tx.send((id, old, m, outcome));
                continue;
            }
            if !host.channel_names().any(|c| c == channel) {
                // no plugin serves it: wait, as a retryable failure that never burns attempts
                let mut waiting = m.clone();
                let old = waiting.send_after;
                waiting.send_after = now + 60;
                note_error(&mut waiting, format!("no plugin serves channel {channel}; configure [channels.{channel}]"));
                in_flight.insert(id);
                let _ = done_tx.send((id, old, waiting, Outcome::Retry));
                continue;
            }
            let (rate, conc) = config.limits(&channel);
            let pace = paces.entry(channel.clone()).or_insert_with(|| Pace {
                permits: Arc::new(Semaphore::new(conc as usize)),
                interval: (rate > 0.0).then(|| Duration::from_secs_f64(1.0 / rate)),
                next: Instant::now(),
            });
            let start_at = match pace.interval {
                Some(iv) => {
                    let at = pace.next.max(Instant::now());
                    pace.next = at + iv;
                    Some(at)
                }
                None => None,
            };
            let permits = pace.permits.clone();
            in_flight.insert(id);
            let (host, done_tx, config, observers, store) = (host.clone(), done_tx.clone(), Arc::clone(&config), Arc::clone(&observers), store.clone());
            tokio::spawn(async move {
                let _permit = permits.acquire_owned().await;
                if let Some(at) = start_at {
                    tokio::time::sleep_until(at.into()).await;
                }
                let old = m.send_after;
                let started = Instant::now();
                let (m, outcome) = send_one(&host, &config, observers.links.as_ref(), id, m).await;
                observers.metrics.observe_send(&channel, outcome.name(), started.elapsed().as_secs_f64());
                if let Outcome::Fallback | Outcome::Failed = outcome {
                    hard_bounce(&store, &host, &observers, id, &m, &channel).await;
                }
                let _ = done_tx.send((id, old, m, outcome));
            });
        }
        // 3. idle: wait for a completion, the next due time or a stop
        if in_flight.is_empty() {
            let next = {
                let store = store.clone();
                tokio::task::spawn_blocking(move || store.next_due()).await??
            };
            let now = chrono::Utc::now().timestamp();
            if until_idle && next.is_none_or(|t| t > now) {
                return Ok(stats);
            }
            let wait = next.map(|t| (t - now).clamp(0, 1)).unwrap_or(1);
            tokio::select! {
                _ = stop.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(if wait == 0 { 5 } else { 1000 })) => {}
            }
        } else {
            tokio::select! {
                Some(x) = done_rx.recv() => { let _ = done_tx.send(x); }
                _ = stop.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }
}

enum Outcome {
    Sent(String),
    Retry,
    Fallback,
    Failed,
    Dead,
}

impl Outcome {
    fn name(&self) -> &'static str {
        match self {
            Outcome::Sent(_) => "sent",
            Outcome::Retry => "retry",
            Outcome::Fallback => "fallback",
            Outcome::Failed => "failed",
            Outcome::Dead => "dead",
        }
    }
}

/// A relay that refuses an email address permanently (5.1.x) is a hard bounce: the
/// address is stopped like a bounce report would stop it.
async fn hard_bounce(store: &Store, host: &ChannelHost, observers: &Observers, id: MessageId, m: &OutboxMessage, channel: &str) {
    let kind = host.kind(channel).unwrap_or_default().to_string();
    let Some(reason) = m.errors.last().filter(|e| kind == "email" && crate::feedback::is_hard_bounce(e)).cloned() else { return };
    let Some(address) = m.channels.iter().find(|c| c.channel == channel).map(|c| c.address.clone()) else { return };
    let (store, settings, member) = (store.clone(), observers.feedback.clone(), m.member.to_string());
    let channel_name = channel.to_string();
    let noted = tokio::task::spawn_blocking(move || {
        let mut applied = crate::feedback::Applied::default();
        let now = chrono::Utc::now().timestamp();
        crate::feedback::note(&store, Some(id), Some(&member), &channel_name, &kind, Some(&address), crate::domain::DeliveryState::Failed, &reason, &settings, now, &mut applied)
    })
    .await;
    match noted {
        Ok(Ok(())) => observers.metrics.observe_feedback(channel, "failed"),
        Ok(Err(e)) => tracing::error!(message = %id, "recording a hard bounce: {e}"),
        Err(e) => tracing::error!(message = %id, "recording a hard bounce: {e}"),
    }
}

fn note_error(m: &mut OutboxMessage, e: String) {
    m.errors.push(e);
    if m.errors.len() > 5 {
        m.errors.remove(0);
    }
}

async fn send_one(host: &ChannelHost, config: &DispatchConfig, links: Option<&crate::plan::links::Links>, id: MessageId, mut m: OutboxMessage) -> (OutboxMessage, Outcome) {
    let Some(cm) = m.channels.get(m.current as usize).cloned() else {
        m.state = MessageState::Failed;
        let why = format!("no channel number {} in the message", m.current);
        note_error(&mut m, why);
        return (m, Outcome::Failed);
    };
    // every message carries its signed unsubscribe link (the email plugin's one-click
    // List-Unsubscribe, RFC 8058)
    let channel_data = links.map(|l| vec![("unsubscribe_url".to_string(), l.unsubscribe_url(&m.member, &cm.channel))]).unwrap_or_default();
    let message = OutboundMessage {
        recipient: Recipient { address: cm.address.clone(), name: (!m.member_name.is_empty()).then(|| m.member_name.clone()), member_id: m.member.to_string() },
        subject: cm.subject.clone(),
        text: cm.text.clone(),
        html: cm.html.clone(),
        idempotency_key: idempotency_key(&m, id, &cm.channel),
        channel_data,
        metadata: vec![("rule".into(), m.rule.to_string()), ("message".into(), id.to_string())],
    };
    let now = chrono::Utc::now().timestamp();
    match host.send(&cm.channel, message).await {
        Ok(d) => {
            m.state = MessageState::Sent;
            m.provider_id = d.provider_id;
            m.sent_at = Some(now);
            (m, Outcome::Sent(cm.channel.to_string()))
        }
        Err(e) if e.is_retryable() => {
            m.attempts += 1;
            note_error(&mut m, format!("{}: {}", cm.channel, e.reason));
            if m.attempts >= config.max_attempts {
                m.state = MessageState::Dead;
                tracing::warn!(message = %id, channel = %cm.channel, attempts = m.attempts, "dead letter: {}", e.reason);
                (m, Outcome::Dead)
            } else {
                m.send_after = now + config.backoff(id, m.attempts).as_secs().max(1) as i64;
                (m, Outcome::Retry)
            }
        }
        Err(e) => {
            note_error(&mut m, format!("{}: {}", cm.channel, e.reason));
            if (m.current as usize) + 1 < m.channels.len() {
                m.current += 1;
                m.attempts = 0;
                m.send_after = now;
                (m, Outcome::Fallback)
            } else {
                m.state = MessageState::Failed;
                (m, Outcome::Failed)
            }
        }
    }
}
