//! The consent in force on a member's card: per channel, the member's opt-in, its
//! unsubscribe (`U`, also "*" for every channel) and its stopped address (`W`), read
//! together so that `member show` and the daemon's member answer say the same thing, and
//! what the planner acts on.

use super::model::Member;
use super::{Store, StoreError};
use crate::domain::{day_of, Consent, ConsentNeeds, DayFmt, Timestamp};
use std::fmt;

/// Whether a member may be messaged on one channel, and every reason not.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChannelConsent {
    pub channel: String,
    /// members.csv's `opted_in_email` / `opted_in_sms`; channels without a consent column
    /// are opted in.
    pub opted_in: bool,
    /// The channel says which consent it needs (`[channels.NAME] consent`, its name or its
    /// plugin's kind); one that does not messages nobody.
    pub declared: bool,
    /// The member has an address there (an email, a phone number; the member id for others).
    pub has_address: bool,
    /// When the member unsubscribed from this channel (or from all).
    pub unsubscribed_at: Option<Timestamp>,
    /// When the address was stopped (bounce, complaint, opt-out, failures), and why.
    pub stopped_at: Option<Timestamp>,
    pub stopped_reason: Option<String>,
    /// Messages may go out on this channel.
    pub in_force: bool,
}

impl Member {
    /// The member's address on a channel that needs `consent`: the email address for
    /// email consent, the phone number for SMS consent, the member id (the shop's customer
    /// id) for any other channel.
    pub fn address_on<'a>(&'a self, id: &'a str, consent: Option<Consent>) -> &'a str {
        address_among(&self.email, &self.phone, id, consent)
    }
}

impl super::model::ContactFields {
    /// [`Member::address_on`], from the contact fields alone.
    pub fn address_on<'a>(&'a self, id: &'a str, consent: Option<Consent>) -> &'a str {
        address_among(&self.email, &self.phone, id, consent)
    }
}

fn address_among<'a>(email: &'a str, phone: &'a str, id: &'a str, consent: Option<Consent>) -> &'a str {
    match consent {
        Some(Consent::Email) => email,
        Some(Consent::Sms) => phone,
        _ => id,
    }
}

impl Store {
    /// The consent of member `id` on email, sms, each of `channels` and every other
    /// channel it unsubscribed from, in that order; `needs` says which consent each
    /// channel asks for (a channel that does not say messages nobody).
    pub fn consent(&self, id: &str, member: &Member, channels: &[&str], needs: &ConsentNeeds) -> Result<Vec<ChannelConsent>, StoreError> {
        let unsubscribed = self.suppressions(id)?;
        let mut names: Vec<&str> = vec!["email", "sms"];
        for c in channels.iter().copied().chain(unsubscribed.iter().map(|(c, _)| c.as_str())) {
            if c != "*" && !names.contains(&c) {
                names.push(c);
            }
        }
        let all = unsubscribed.iter().find(|(c, _)| c == "*").map(|(_, at)| *at);
        names
            .into_iter()
            .map(|channel| {
                let consent = needs.of(channel);
                let opted_in = match consent {
                    Some(Consent::Email) => member.opted_in_email,
                    Some(Consent::Sms) => member.opted_in_sms,
                    Some(Consent::None) => true,
                    None => false,
                };
                let address = member.address_on(id, consent);
                let unsubscribed_at = unsubscribed.iter().find(|(c, _)| c == channel).map(|(_, at)| *at).or(all);
                let stopped = if address.is_empty() { None } else { self.address_health(channel, address)?.filter(|h| h.stopped) };
                let has_address = !address.is_empty();
                Ok(ChannelConsent {
                    channel: channel.to_string(),
                    declared: consent.is_some(),
                    opted_in,
                    has_address,
                    unsubscribed_at,
                    in_force: opted_in && has_address && unsubscribed_at.is_none() && stopped.is_none(),
                    stopped_at: stopped.as_ref().map(|h| h.at),
                    stopped_reason: stopped.map(|h| h.reason),
                })
            })
            .collect()
    }
}

/// `email yes`, `email no (unsubscribed 2026-12-01)`, `sms no (not opted in; no
/// address)`, ...: every reason, dates in UTC.
impl fmt::Display for ChannelConsent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.in_force {
            return write!(f, "{} yes", self.channel);
        }
        let mut why = Vec::new();
        if let Some(at) = self.unsubscribed_at {
            why.push(format!("unsubscribed {}", DayFmt(day_of(at))));
        }
        if let Some(at) = self.stopped_at {
            let reason = self.stopped_reason.as_deref().filter(|r| !r.is_empty()).map(|r| format!(": {r}")).unwrap_or_default();
            why.push(format!("address stopped {}{reason}", DayFmt(day_of(at))));
        }
        if !self.declared {
            why.push("the channel declares no consent".into());
        } else if !self.opted_in {
            why.push("not opted in".into());
        }
        if !self.has_address {
            why.push("no address".into());
        }
        write!(f, "{} no ({})", self.channel, why.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member() -> Member {
        Member { email: "li@tea.example".into(), phone: "+8613800000000".into(), opted_in_email: true, opted_in_sms: true, known: true, ..Default::default() }
    }

    fn shown(v: &[ChannelConsent]) -> Vec<String> {
        v.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn consent_shows_unsubscribes_and_stopped_addresses_in_force() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store"), 16).unwrap();
        let needs = ConsentNeeds { by_channel: [("shop".to_string(), Consent::None)].into() };
        let mut m = member();
        assert_eq!(shown(&store.consent("m-1", &m, &["shop"], &needs).unwrap()), ["email yes", "sms yes", "shop yes"]);
        let dec_1 = 1_796_083_200; // 2026-12-01T00:00:00Z
        store.suppress("m-1", "email", dec_1 + 3600).unwrap();
        store.update_address("sms", "+8613800000000", |h| {
            h.stopped = true;
            h.at = dec_1 - 86_400;
            h.reason = "opted out (STOP)".into();
        })
        .unwrap();
        store.suppress("m-1", "wechat", dec_1).unwrap();
        let c = store.consent("m-1", &m, &["shop"], &needs).unwrap();
        assert_eq!(
            shown(&c),
            ["email no (unsubscribed 2026-12-01)", "sms no (address stopped 2026-11-30: opted out (STOP))", "shop yes", "wechat no (unsubscribed 2026-12-01; the channel declares no consent)"]
        );
        assert!(!c[0].in_force && c[0].opted_in, "the opt-in stays what members.csv says");
        m.opted_in_email = false;
        m.phone = String::new();
        assert_eq!(shown(&store.consent("m-1", &m, &[], &needs).unwrap())[..2], ["email no (unsubscribed 2026-12-01; not opted in)", "sms no (no address)"]);
        let undeclared = ConsentNeeds::default();
        assert_eq!(shown(&store.consent("m-2", &member(), &["shop"], &undeclared).unwrap())[2], "shop no (the channel declares no consent)");
        store.suppress("m-1", "*", dec_1).unwrap();
        assert_eq!(shown(&store.consent("m-1", &m, &["shop"], &needs).unwrap())[2], "shop no (unsubscribed 2026-12-01)", "\"*\" is every channel");
    }

    /// The planner re-reads unsubscribes, stopped addresses and given codes only when this
    /// number moved: every write that changes them moves it, a delivery report that
    /// changes nothing of them does not.
    #[test]
    fn the_suppression_generation_moves_with_every_write_that_changes_who_is_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store"), 16).unwrap();
        let mut seen = store.suppression_generation();
        let mut moved = |what: &str, expected: bool| {
            let now = store.suppression_generation();
            assert_eq!(now != seen, expected, "{what}");
            seen = now;
        };
        store.update_address("sms", "+8613800000000", |h| h.failures = 0).unwrap();
        moved("a delivery report", false);
        store.update_address("sms", "+8613800000000", |h| h.stopped = true).unwrap();
        moved("an address stopped", true);
        store.update_address("sms", "+8613800000000", |h| h.failures += 1).unwrap();
        moved("another failure at a stopped address", false);
        store.update_address("sms", "+8613800000000", |h| h.stopped = false).unwrap();
        moved("an address released", true);
        store.suppress("m-1", "email", 0).unwrap();
        moved("an unsubscribe", true);
        store.suppress("m-1", "email", 1).unwrap();
        moved("the same unsubscribe again", false);
        let grant = crate::store::codes::CodeGrant { member: "m-1".into(), rule: "r".into(), run: 1 };
        store.grant_codes(&[("CODE-1".to_string(), grant)]).unwrap();
        moved("a coupon code given", true);
    }
}
