//! Learn: what providers and members report after a send. Delivery reports, bounces,
//! complaints and STOP replies (parsed by the channel's plugin from the provider's
//! callback, or a relay's synchronous 5.1.x refusal) update the message's status and the
//! address: a hard bounce or a complaint stops email to that address at once, SMS
//! failures stop the number after `[feedback] sms_failure_limit` in a row, a complaint or
//! an opt-out also unsubscribes the member from the channel.

use crate::domain::Timestamp;
use crate::plugin::StatusUpdate;
use crate::store::feedback::{DeliveryState, DeliveryStatus, ParkedReport};
use crate::store::outbox::MessageId;
use crate::store::{Store, StoreError};
use serde::{Deserialize, Serialize};

/// `[feedback]` in config.toml.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeedbackConfig {
    /// Failed deliveries in a row after which a number (or any non-email address) gets
    /// no more messages on that channel. Email stops at the first hard bounce.
    pub sms_failure_limit: u32,
}

impl Default for FeedbackConfig {
    fn default() -> Self {
        FeedbackConfig { sms_failure_limit: 3 }
    }
}

/// What one callback changed.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Applied {
    /// Updates that found their message.
    pub matched: u32,
    /// Updates naming nothing rekindle can match (an opt-out by address alone counts here).
    pub unmatched: u32,
    /// Updates naming a provider id not recorded yet: kept until the send is recorded.
    pub parked: u32,
    /// Addresses stopped by these updates.
    pub stopped: u32,
    /// Members unsubscribed by these updates.
    pub unsubscribed: u32,
}

impl From<crate::plugin::DeliveryState> for DeliveryState {
    fn from(s: crate::plugin::DeliveryState) -> Self {
        use crate::plugin::DeliveryState as P;
        match s {
            P::Accepted => DeliveryState::Accepted,
            P::Delivered => DeliveryState::Delivered,
            P::Failed => DeliveryState::Failed,
            P::Complained => DeliveryState::Complained,
            P::OptedOut => DeliveryState::OptedOut,
        }
    }
}

/// Applies a plugin's status updates for `channel` (whose plugin is of `kind`: email,
/// sms, ...) and makes them durable.
pub fn apply(store: &Store, channel: &str, kind: &str, updates: &[StatusUpdate], settings: &FeedbackConfig, now: Timestamp) -> Result<Applied, StoreError> {
    let mut applied = Applied::default();
    for u in updates {
        let id = match &u.provider_id {
            Some(pid) => store.message_by_provider_id(channel, pid)?,
            None => None,
        };
        if let (Some(pid), None) = (&u.provider_id, id) {
            let report = ParkedReport { state: DeliveryState::from(u.state), recipient: u.recipient.clone(), reason: u.reason.clone().unwrap_or_default(), at: now };
            store.park_report(channel, pid, report)?;
            applied.parked += 1;
            continue;
        }
        let message = id.map(|id| store.message(id)).transpose()?.flatten();
        let address = u.recipient.clone().or_else(|| message.as_ref().and_then(|m| m.channels.iter().find(|c| c.channel == channel).map(|c| c.address.clone())));
        let member = message.as_ref().map(|m| m.member.to_string());
        if id.is_some() {
            applied.matched += 1;
        } else if u.recipient.is_none() {
            applied.unmatched += 1;
            continue;
        } else {
            applied.unmatched += 1;
        }
        let state = DeliveryState::from(u.state);
        let reason = u.reason.clone().unwrap_or_default();
        note(store, id, member.as_deref(), channel, kind, address.as_deref(), state, &reason, settings, now, &mut applied)?;
    }
    store.flush()?;
    Ok(applied)
}

/// Applies the reports parked for a send that has just been recorded as message `id`.
pub fn apply_parked(store: &Store, channel: &str, kind: &str, provider_id: &str, id: MessageId, settings: &FeedbackConfig) -> Result<Applied, StoreError> {
    let mut applied = Applied::default();
    let parked = store.take_parked(channel, provider_id)?;
    if parked.is_empty() {
        return Ok(applied);
    }
    let message = store.message(id)?;
    let member = message.as_ref().map(|m| m.member.to_string());
    for r in parked {
        let address = r.recipient.clone().or_else(|| message.as_ref().and_then(|m| m.channels.iter().find(|c| c.channel == channel).map(|c| c.address.clone())));
        applied.matched += 1;
        note(store, Some(id), member.as_deref(), channel, kind, address.as_deref(), r.state, &r.reason, settings, r.at, &mut applied)?;
    }
    Ok(applied)
}

/// One report about one message (when known) to one address (when known).
#[allow(clippy::too_many_arguments)]
pub fn note(
    store: &Store,
    id: Option<MessageId>,
    member: Option<&str>,
    channel: &str,
    kind: &str,
    address: Option<&str>,
    state: DeliveryState,
    reason: &str,
    settings: &FeedbackConfig,
    now: Timestamp,
    applied: &mut Applied,
) -> Result<(), StoreError> {
    if let Some(id) = id {
        // a repeated report (providers retry their callbacks) changes nothing twice
        if !store.record_delivery_status(id, &DeliveryStatus { state, at: now, reason: reason.to_string() })? {
            return Ok(());
        }
    }
    let Some(address) = address.filter(|a| !a.is_empty()) else { return Ok(()) };
    let stop_now = match state {
        DeliveryState::Accepted => return Ok(()),
        DeliveryState::Delivered => {
            store.update_address(channel, address, |h| h.failures = 0)?;
            return Ok(());
        }
        DeliveryState::Failed => kind == "email",
        DeliveryState::Complained | DeliveryState::OptedOut => true,
    };
    let limit = settings.sms_failure_limit.max(1);
    let was_stopped = store.address_stopped(channel, address)?;
    let health = store.update_address(channel, address, |h| {
        if state == DeliveryState::Failed {
            h.failures += 1;
        }
        if !h.stopped && (stop_now || h.failures >= limit) {
            h.stopped = true;
            h.at = now;
            h.reason = format!("{}: {reason}", state.name());
        }
    })?;
    if health.stopped && !was_stopped {
        applied.stopped += 1;
        tracing::info!(channel, state = state.name(), failures = health.failures, "address stopped");
        tracing::debug!(channel, address, "stopped address");
    }
    if matches!(state, DeliveryState::Complained | DeliveryState::OptedOut) {
        if let Some(member) = member {
            if !store.suppressed(member)?.iter().any(|c| c == channel || c == "*") {
                store.suppress(member, channel, now)?;
                applied.unsubscribed += 1;
            }
        }
    }
    Ok(())
}

/// Whether a relay's permanent refusal is a hard bounce of the address (RFC 3463
/// enhanced status 5.1.x: bad mailbox, bad domain, moved) rather than a refusal of the
/// message or a setup problem, which must not stop anyone's email.
pub fn is_hard_bounce(reason: &str) -> bool {
    reason.split(|c: char| !(c.is_ascii_digit() || c == '.')).any(|w| {
        let mut parts = w.split('.');
        matches!((parts.next(), parts.next(), parts.next(), parts.next()), (Some("5"), Some("1"), Some(d), None) if !d.is_empty() && d.len() <= 3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::{DeliveryState as P, StatusUpdate};
    use crate::store::outbox::{ChannelMessage, MessageState, OutboxMessage, RunRecord};

    /// A store with one committed run of `n` SMS to one number, sent, provider ids k0..kn.
    fn store_with_sent_sms(dir: &std::path::Path, n: u32) -> Store {
        let store = Store::open(&dir.join("s"), 16).unwrap();
        let message = |i: u32| OutboxMessage {
            rule: "r".into(),
            member: format!("m{i}").as_str().into(),
            member_name: String::new(),
            channels: vec![ChannelMessage { channel: "sms".into(), address: "+8613800000001".into(), subject: None, text: "hi".into(), html: None }],
            current: 0,
            attempts: 0,
            send_after: 0,
            state: MessageState::Pending,
            provider_id: String::new(),
            sent_at: None,
            errors: Vec::new(),
            offer: String::new(),
        };
        let messages: Vec<OutboxMessage> = (0..n).map(message).collect();
        let run = RunRecord { id: 1, at: 0, as_of: 0, catch_up: false, committed: true, rules: Vec::new() };
        store.write_run(&run, &messages, &[], 30).unwrap();
        let sent: Vec<_> = (0..n)
            .map(|i| {
                let mut m = message(i);
                m.state = MessageState::Sent;
                m.provider_id = format!("k{i}");
                (MessageId { run: 1, seq: i }, 0, m)
            })
            .collect();
        store.update_messages(&sent).unwrap();
        store
    }

    fn report(pid: &str, state: P) -> StatusUpdate {
        StatusUpdate { provider_id: Some(pid.into()), recipient: None, state, reason: Some("SMSC reject".into()) }
    }

    #[test]
    fn repeated_sms_failures_stop_the_number_and_a_delivery_resets_the_count() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_sent_sms(dir.path(), 6);
        let settings = FeedbackConfig { sms_failure_limit: 3 };
        let clock = std::cell::Cell::new(100);
        let apply = |u: StatusUpdate| {
            clock.set(clock.get() + 1);
            apply(&store, "sms", "sms", &[u], &settings, clock.get()).unwrap()
        };
        apply(report("k0", P::Failed));
        apply(report("k0", P::Failed)); // the provider retried its callback: still one failure
        apply(report("k1", P::Failed));
        assert_eq!(store.address_health("sms", "+8613800000001").unwrap().unwrap().failures, 2);
        apply(report("k2", P::Delivered));
        assert_eq!(store.address_health("sms", "+8613800000001").unwrap().unwrap().failures, 0, "a delivery resets the count");
        apply(report("k3", P::Failed));
        apply(report("k4", P::Failed));
        assert!(!store.address_stopped("sms", "+8613800000001").unwrap());
        let last = apply(report("k5", P::Failed));
        assert_eq!((last.matched, last.stopped), (1, 1));
        assert!(store.address_stopped("sms", "+8613800000001").unwrap(), "three failures in a row stop the number");
        assert_eq!(store.delivery_status(MessageId { run: 1, seq: 2 }).unwrap().unwrap().state, DeliveryState::Delivered);
        // an unknown provider id is parked: nothing changes until a send with that id is recorded
        let early = apply(report("k9", P::Delivered));
        assert_eq!((early.matched, early.parked), (0, 1));
        assert_eq!(store.take_parked("sms", "k9").unwrap().len(), 1);
        apply(report("k8", P::Failed));
        assert_eq!(store.drop_parked_before(1_000).unwrap(), 1, "a parked report that never matches is dropped later");
    }

    #[test]
    fn a_report_parked_before_the_send_was_recorded_applies_when_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_sent_sms(dir.path(), 1);
        let early = apply(&store, "sms", "sms", &[report("late-id", P::Delivered)], &FeedbackConfig::default(), 50).unwrap();
        assert_eq!(early.parked, 1);
        let id = MessageId { run: 1, seq: 0 };
        assert!(store.delivery_status(id).unwrap().is_none());
        let later = apply_parked(&store, "sms", "sms", "late-id", id, &FeedbackConfig::default()).unwrap();
        assert_eq!(later.matched, 1);
        assert_eq!(store.delivery_status(id).unwrap().unwrap().state, DeliveryState::Delivered);
        assert!(store.take_parked("sms", "late-id").unwrap().is_empty(), "applied once");
    }

    #[test]
    fn an_email_bounce_stops_at_once_and_a_complaint_unsubscribes_the_member() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_sent_sms(dir.path(), 2);
        let settings = FeedbackConfig::default();
        let bounce = StatusUpdate { provider_id: None, recipient: Some("gone@example.net".into()), state: P::Failed, reason: None };
        let a = apply(&store, "email", "email", &[bounce], &settings, 5).unwrap();
        assert_eq!(a.stopped, 1);
        assert!(store.address_stopped("email", "gone@example.net").unwrap());
        let complaint = report("k1", P::Complained);
        let a = apply(&store, "sms", "sms", &[complaint], &settings, 7).unwrap();
        assert_eq!((a.stopped, a.unsubscribed), (1, 1));
        assert_eq!(store.suppressions("m1").unwrap(), vec![("sms".into(), 7)]);
    }

    #[test]
    fn only_bad_mailbox_codes_are_hard_bounces() {
        assert!(is_hard_bounce("550 5.1.1 <li@example.com>: Recipient address rejected: User unknown"));
        assert!(is_hard_bounce("relay refused: 5.1.10 null MX"));
        assert!(!is_hard_bounce("554 5.7.1 message refused as spam"));
        assert!(!is_hard_bounce("552 5.3.4 message too big"));
        assert!(!is_hard_bounce("550 sender rejected 15.1.1x"));
        assert!(!is_hard_bounce("the channel has no SMTP grant"));
    }
}
