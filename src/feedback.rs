//! Learn: what providers and members report after a send. Delivery reports, bounces,
//! complaints and STOP replies (parsed by the channel's plugin from the provider's
//! callback, or a relay's synchronous 5.1.x refusal) update the message's status and the
//! address: a hard bounce or a complaint stops email to that address at once, SMS
//! failures stop the number after `[feedback] sms_failure_limit` in a row, a complaint or
//! an opt-out also unsubscribes the member from the channel.

use crate::domain::{hex, DeliveryState, Timestamp};
use crate::plugin::StatusUpdate;
use crate::store::feedback::{DeliveryStatus, ParkLimits, ParkedReport, Parking};
use crate::store::outbox::MessageId;
use crate::store::{Store, StoreError};
use serde::{Deserialize, Serialize};

/// `[feedback]` in config.toml.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct FeedbackConfig {
    /// Failed deliveries in a row after which a number (or any non-email address) gets
    /// no more messages on that channel. Email stops at the first hard bounce.
    pub sms_failure_limit: u32,
    /// Reports naming a provider id not recorded yet are kept this long for the send
    /// they are about, then dropped.
    pub parked_expire_minutes: u32,
    /// At most this many such reports per channel; past it a callback answers 429.
    pub parked_max_per_channel: u64,
    /// At most this many bytes of them per channel.
    pub parked_max_bytes_per_channel: u64,
    /// At most this many reports about one provider id.
    pub parked_max_per_provider_id: u32,
}

impl Default for FeedbackConfig {
    fn default() -> Self {
        FeedbackConfig {
            sms_failure_limit: 3,
            parked_expire_minutes: 1440,
            parked_max_per_channel: 20_000,
            parked_max_bytes_per_channel: 8 << 20,
            parked_max_per_provider_id: 8,
        }
    }
}

impl FeedbackConfig {
    pub fn check(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.sms_failure_limit == 0 {
            out.push("feedback.sms_failure_limit: must be at least 1".into());
        }
        for (key, value) in [
            ("parked_expire_minutes", u64::from(self.parked_expire_minutes)),
            ("parked_max_per_channel", self.parked_max_per_channel),
            ("parked_max_bytes_per_channel", self.parked_max_bytes_per_channel),
            ("parked_max_per_provider_id", u64::from(self.parked_max_per_provider_id)),
        ] {
            if value == 0 {
                out.push(format!("feedback.{key}: must be at least 1"));
            }
        }
        out
    }

    fn park_limits(&self) -> ParkLimits {
        ParkLimits {
            per_channel: self.parked_max_per_channel,
            bytes_per_channel: self.parked_max_bytes_per_channel,
            per_provider_id: self.parked_max_per_provider_id as usize,
        }
    }
}

/// Longest provider id, recipient and reason kept from a report: ours are far shorter
/// (the id is an idempotency key, a Message-ID or a provider's message sid).
const MAX_ID_BYTES: usize = 512;
const MAX_REASON_BYTES: usize = 512;

/// `text` cut to at most `max` bytes on a character boundary.
fn capped(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default().to_string()
}

/// The secrets that authenticate provider callbacks: each channel's callback URL is
/// `{public_url}/callbacks/{channel}/{secret}`, the secret 256 random bits (hex) the
/// store keeps per channel. Knowing a message or provider id proves nothing; knowing
/// the URL is what lets a request reach the channel's plugin.
#[derive(Debug, Clone, Default)]
pub struct CallbackKeys {
    base: String,
    channels: std::collections::BTreeMap<String, crate::store::feedback::CallbackSecret>,
}

impl CallbackKeys {
    /// The secrets of `channels` (made on first use), under `public_url`.
    pub fn load<'a>(store: &Store, channels: impl IntoIterator<Item = &'a str>, public_url: &str) -> Result<CallbackKeys, StoreError> {
        let channels = channels.into_iter().map(|c| Ok((c.to_string(), store.callback_secret(c)?))).collect::<Result<_, StoreError>>()?;
        Ok(CallbackKeys { base: public_url.trim_end_matches('/').to_string(), channels })
    }

    /// The secret callback URL of `channel`, which its plugin hands to providers.
    pub fn url(&self, channel: &str) -> Option<String> {
        self.channels.get(channel).map(|s| format!("{}/callbacks/{channel}/{}", self.base, hex(&s.current)))
    }

    /// The same with the secret left out, for logs above debug level.
    pub fn redacted_url(&self, channel: &str) -> String {
        format!("{}/callbacks/{channel}/<secret>", self.base)
    }

    /// Every channel's URL, as the plugin host hands them over.
    pub fn urls(&self) -> std::collections::BTreeMap<String, String> {
        self.channels.keys().filter_map(|c| Some((c.clone(), self.url(c)?))).collect()
    }

    /// Whether `given` is `channel`'s secret (or, until it expires, the one a rotation
    /// replaced), compared in constant time.
    pub fn accepts(&self, channel: &str, given: &str, now: Timestamp) -> bool {
        use subtle::ConstantTimeEq;
        let Some(secret) = self.channels.get(channel) else { return false };
        let current = hex(&secret.current).as_bytes().ct_eq(given.as_bytes());
        let previous = match secret.previous {
            Some((old, until)) if now < until => hex(&old).as_bytes().ct_eq(given.as_bytes()),
            _ => subtle::Choice::from(0),
        };
        bool::from(current | previous)
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
    /// Updates of that kind refused because the channel has as much parked as it may
    /// (the callback answers 429; the provider retries later).
    pub refused: u32,
    /// Addresses stopped by these updates.
    pub stopped: u32,
    /// Members unsubscribed by these updates.
    pub unsubscribed: u32,
}

/// Applies a plugin's status updates for `channel` (whose plugin is of `kind`: email,
/// sms, ...) and makes them durable.
pub fn apply(store: &Store, channel: &str, kind: &str, updates: &[StatusUpdate], settings: &FeedbackConfig, now: Timestamp) -> Result<Applied, StoreError> {
    let mut applied = Applied::default();
    let limits = settings.park_limits();
    for u in updates {
        let state = u.state;
        let reason = capped(u.reason.as_deref().unwrap_or_default(), MAX_REASON_BYTES);
        let recipient = u.recipient.as_deref().map(|r| capped(r, MAX_ID_BYTES));
        // an id longer than any of ours names no message; its address may still be acted on
        let id = match u.provider_id.as_deref().filter(|pid| pid.len() <= MAX_ID_BYTES) {
            Some(pid) => {
                let report = ParkedReport { state, recipient: recipient.clone(), reason: reason.clone(), at: now };
                match store.message_or_park(channel, pid, &report, &limits)? {
                    Parking::Found(id) => Some(id),
                    Parking::Parked => {
                        applied.parked += 1;
                        continue;
                    }
                    Parking::Full => {
                        applied.refused += 1;
                        continue;
                    }
                }
            }
            None => None,
        };
        let message = id.map(|id| store.message(id)).transpose()?.flatten();
        let address = recipient.or_else(|| address_on(message.as_ref(), channel));
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

/// Most members one opt-out by address alone unsubscribes (members sharing a number).
const MAX_MEMBERS_PER_ADDRESS: usize = 100;

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
        // a report naming only the address (a STOP reply) unsubscribes every member
        // rekindle messaged there on this channel
        let members = match member {
            Some(member) => vec![member.to_string()],
            None => store.members_messaged_at(channel, address, MAX_MEMBERS_PER_ADDRESS)?,
        };
        for member in &members {
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
        let settings = FeedbackConfig { sms_failure_limit: 3, ..Default::default() };
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
        let settings = FeedbackConfig { sms_failure_limit: 1_000, ..Default::default() };
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
    fn parked_reports_are_bounded_per_channel_and_provider_id_and_a_real_one_still_matches() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_sms(dir.path(), 1);
        let settings = FeedbackConfig { parked_max_per_channel: 50, parked_max_per_provider_id: 3, parked_max_bytes_per_channel: 1 << 20, ..Default::default() };
        // the real report arrives before its send is recorded
        assert_eq!(apply(&store, "sms", "sms", &[report("k0", P::Delivered)], &settings, 10).unwrap().parked, 1);
        let one_id: Vec<Applied> = (0..5).map(|_| apply(&store, "sms", "sms", &[report("same", P::Failed)], &settings, 10).unwrap()).collect();
        assert_eq!(one_id.iter().map(|a| (a.parked, a.refused)).collect::<Vec<_>>(), [(1, 0), (1, 0), (1, 0), (0, 1), (0, 1)]);
        let flood: Vec<StatusUpdate> = (0..1_000).map(|i| report(&format!("forged-{i}"), P::Failed)).collect();
        let a = apply(&store, "sms", "sms", &flood, &settings, 20).unwrap();
        assert_eq!((a.parked, a.refused), (46, 954), "50 reports per channel at most");
        assert_eq!(store.parked_on("sms").0, 50);
        // a huge reason and recipient are cut before parking; the byte bound holds too
        let small = FeedbackConfig { parked_max_bytes_per_channel: 4_096, ..settings.clone() };
        let big = StatusUpdate { provider_id: Some("big".into()), recipient: Some("x".repeat(1 << 20)), state: P::Failed, reason: Some("y".repeat(1 << 20)) };
        assert_eq!(apply(&store, "other", "sms", std::slice::from_ref(&big), &small, 20).unwrap().parked, 1);
        assert!(store.parked_on("other").1 < 2_048, "{:?}", store.parked_on("other"));
        let more: Vec<StatusUpdate> = (0..10).map(|i| StatusUpdate { provider_id: Some(format!("big-{i}")), ..big.clone() }).collect();
        assert!(apply(&store, "other", "sms", &more, &small, 20).unwrap().refused > 0);
        assert!(store.parked_on("other").1 <= 4_096);
        // the send is recorded: the real report applies; the forged ones expire
        for (id, channel, reports) in store.record_sends(&[sent(0)]).unwrap() {
            apply_parked(&store, &channel, "sms", id, reports, &settings).unwrap();
        }
        assert_eq!(store.delivery_status(MessageId { run: 1, seq: 0 }).unwrap().unwrap().state, DeliveryState::Delivered);
        assert_eq!(store.parked_on("sms").0, 49);
        store.drop_parked_before(30).unwrap();
        assert_eq!((store.parked_on("sms"), store.parked_on("other")), ((0, 0), (0, 0)), "expired");
        assert_eq!(apply(&store, "sms", "sms", &[report("later", P::Failed)], &settings, 40).unwrap().parked, 1, "room again");
    }

    #[test]
    fn an_opt_out_naming_only_the_number_unsubscribes_the_members_texted_there() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_sent_sms(dir.path(), 3);
        let stop = StatusUpdate { provider_id: None, recipient: Some("+8613800000001".into()), state: P::OptedOut, reason: Some("STOP".into()) };
        let a = apply(&store, "sms", "sms", std::slice::from_ref(&stop), &FeedbackConfig::default(), 9).unwrap();
        assert_eq!((a.unmatched, a.stopped, a.unsubscribed), (1, 1, 3), "m0, m1 and m2 share the number");
        for m in ["m0", "m1", "m2"] {
            assert_eq!(store.suppressions(m).unwrap(), vec![("sms".into(), 9)], "{m}");
        }
        assert_eq!(apply(&store, "sms", "sms", &[stop], &FeedbackConfig::default(), 10).unwrap().unsubscribed, 0, "once");
        let elsewhere = StatusUpdate { provider_id: None, recipient: Some("+8613999999999".into()), state: P::OptedOut, reason: None };
        assert_eq!(apply(&store, "sms", "sms", &[elsewhere], &FeedbackConfig::default(), 11).unwrap().unsubscribed, 0, "no one was texted there");
    }

    #[test]
    fn callback_secrets_are_full_length_checked_whole_and_rotate_with_a_grace_period() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s"), 16).unwrap();
        let keys = CallbackKeys::load(&store, ["sms", "email"], "https://shop.example/").unwrap();
        let url = keys.url("sms").unwrap();
        let secret = url.strip_prefix("https://shop.example/callbacks/sms/").unwrap().to_string();
        assert_eq!(secret.len(), 64);
        assert!(keys.accepts("sms", &secret, 0));
        assert_ne!(keys.url("email").unwrap().rsplit('/').next(), Some(secret.as_str()), "one secret per channel");
        for wrong in [&secret[..63], &secret[..1], "", &format!("{secret}0"), &secret.to_uppercase()] {
            assert!(!keys.accepts("sms", wrong, 0), "{wrong:?}");
        }
        assert!(!keys.accepts("email", &secret, 0) && !keys.accepts("nope", &secret, 0));
        assert_eq!(CallbackKeys::load(&store, ["sms"], "https://shop.example").unwrap().url("sms"), Some(url.clone()), "kept in the store");
        assert!(!keys.redacted_url("sms").contains(&secret));
        store.rotate_callback_secret("sms", 100).unwrap();
        let rotated = CallbackKeys::load(&store, ["sms"], "https://shop.example").unwrap();
        assert_ne!(rotated.url("sms"), Some(url));
        assert!(rotated.accepts("sms", &secret, 99), "the old secret during the grace period");
        assert!(!rotated.accepts("sms", &secret, 100), "and not after it");
        let new = rotated.url("sms").unwrap().rsplit('/').next().unwrap().to_string();
        assert!(rotated.accepts("sms", &new, 1_000));
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
