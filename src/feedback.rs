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
        let state = DeliveryState::from(u.state);
        let reason = u.reason.clone().unwrap_or_default();
        let id = match &u.provider_id {
            Some(pid) => {
                let report = ParkedReport { state, recipient: u.recipient.clone(), reason: reason.clone(), at: now };
                match store.message_or_park(channel, pid, &report)? {
                    Some(id) => Some(id),
                    None => {
                        applied.parked += 1;
                        continue;
                    }
                }
            }
            None => None,
        };
        let message = id.map(|id| store.message(id)).transpose()?.flatten();
        let address = u.recipient.clone().or_else(|| address_on(message.as_ref(), channel));
        let member = message.as_ref().map(|m| m.member.to_string());
        // without a provider id only the address (if named) can be acted on
        match id {
            Some(_) => applied.matched += 1,
            None => applied.unmatched += 1,
        }
        note(store, id, member.as_deref(), channel, kind, address.as_deref(), state, &reason, settings, now, &mut applied)?;
    }
    store.flush()?;
    Ok(applied)
}

/// Applies the reports that were parked for a send just recorded as message `id`.
pub fn apply_parked(store: &Store, channel: &str, kind: &str, id: MessageId, parked: Vec<ParkedReport>, settings: &FeedbackConfig) -> Result<Applied, StoreError> {
    let mut applied = Applied::default();
    let message = store.message(id)?;
    let member = message.as_ref().map(|m| m.member.to_string());
    for r in parked {
        let address = r.recipient.clone().or_else(|| address_on(message.as_ref(), channel));
        applied.matched += 1;
        note(store, Some(id), member.as_deref(), channel, kind, address.as_deref(), r.state, &r.reason, settings, r.at, &mut applied)?;
    }
    Ok(applied)
}

/// The address a message went to on `channel`.
fn address_on(message: Option<&crate::store::outbox::OutboxMessage>, channel: &str) -> Option<String> {
    message?.channels.iter().find(|c| c.channel == channel).map(|c| c.address.clone())
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

    /// Message `i` of the run: an SMS to one number.
    fn sms(i: u32) -> OutboxMessage {
        OutboxMessage {
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
        }
    }

    /// Message `i` sent, with provider id k`i`, as the dispatcher records it.
    fn sent(i: u32) -> (MessageId, Timestamp, OutboxMessage) {
        let mut m = sms(i);
        m.state = MessageState::Sent;
        m.provider_id = format!("k{i}");
        (MessageId { run: 1, seq: i }, 0, m)
    }

    /// A store with one committed run of `n` SMS to one number, none sent yet.
    fn store_with_sms(dir: &std::path::Path, n: u32) -> Store {
        let store = Store::open(&dir.join("s"), 16).unwrap();
        let run = RunRecord { id: 1, at: 0, as_of: 0, catch_up: false, committed: true, rules: Vec::new() };
        store.write_run(&run, &(0..n).map(sms).collect::<Vec<_>>(), &[], 30).unwrap();
        store
    }

    /// The same, all sent: provider ids k0..kn.
    fn store_with_sent_sms(dir: &std::path::Path, n: u32) -> Store {
        let store = store_with_sms(dir, n);
        store.update_messages(&(0..n).map(sent).collect::<Vec<_>>()).unwrap();
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
        apply(report("k8", P::Failed));
        assert_eq!(store.drop_parked_before(1_000).unwrap(), 2, "parked reports that never match are dropped later");
        assert!(store.record_sends(&[sent(8)]).unwrap().is_empty());
    }

    #[test]
    fn a_report_parked_before_the_send_was_recorded_applies_when_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_sms(dir.path(), 2);
        let early = apply(&store, "sms", "sms", &[report("k0", P::Delivered)], &FeedbackConfig::default(), 50).unwrap();
        assert_eq!(early.parked, 1);
        let id = MessageId { run: 1, seq: 0 };
        assert!(store.delivery_status(id).unwrap().is_none());
        let taken = store.record_sends(&[sent(0), sent(1)]).unwrap();
        assert_eq!(taken.len(), 1, "only message 0 had a report waiting");
        let (taken_id, channel, reports) = taken.into_iter().next().unwrap();
        assert_eq!((taken_id, channel.as_str(), reports.len()), (id, "sms", 1));
        let later = apply_parked(&store, "sms", "sms", id, reports, &FeedbackConfig::default()).unwrap();
        assert_eq!(later.matched, 1);
        assert_eq!(store.delivery_status(id).unwrap().unwrap().state, DeliveryState::Delivered);
        assert!(store.record_sends(&[sent(0)]).unwrap().is_empty(), "handed over once");
        assert_eq!(store.drop_parked_before(i64::MAX).unwrap(), 0, "nothing left parked");
    }

    #[test]
    fn a_report_racing_the_record_of_its_send_is_never_lost() {
        // a fast gateway's callback and the dispatcher's record of the same send, in parallel
        let dir = tempfile::tempdir().unwrap();
        let n = 400;
        let store = store_with_sms(dir.path(), n);
        let settings = FeedbackConfig { sms_failure_limit: 1_000 };
        std::thread::scope(|s| {
            let dispatcher = s.spawn(|| {
                for i in 0..n {
                    for (id, channel, reports) in store.record_sends(&[sent(i)]).unwrap() {
                        apply_parked(&store, &channel, "sms", id, reports, &settings).unwrap();
                    }
                }
            });
            for i in 0..n {
                apply(&store, "sms", "sms", &[report(&format!("k{i}"), P::Delivered)], &settings, 10).unwrap();
            }
            dispatcher.join().unwrap();
        });
        let delivered = (0..n).filter(|&seq| store.delivery_status(MessageId { run: 1, seq }).unwrap().is_some_and(|s| s.state == DeliveryState::Delivered)).count();
        assert_eq!(delivered, n as usize);
        assert_eq!(store.drop_parked_before(i64::MAX).unwrap(), 0, "nothing left parked");
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
