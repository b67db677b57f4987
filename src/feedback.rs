//! Learn: what providers and members report after a send. Delivery reports, bounces,
//! complaints and STOP replies (parsed by the channel's plugin from the provider's
//! callback, or a relay's synchronous 5.1.x refusal) update the message's status and the
//! address: a hard bounce or a complaint stops email to that address at once, SMS
//! failures stop the number after `[feedback] sms_failure_limit` in a row, a complaint or
//! an opt-out also unsubscribes the member from the channel.

use crate::domain::Timestamp;
use crate::plugin::StatusUpdate;
use crate::store::feedback::{DeliveryState, DeliveryStatus};
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
    /// Updates naming a provider id rekindle never sent (or nothing to match).
    pub unmatched: u32,
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
        store.record_delivery_status(id, &DeliveryStatus { state, at: now, reason: reason.to_string() })?;
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
