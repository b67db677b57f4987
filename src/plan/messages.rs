//! Rendering a run's planned messages: every channel of every message, under the
//! template budget of [`crate::rules::render`]. A message whose template fails on any
//! of its channels is not sent: its member's fate becomes
//! [`super::Fate::TemplateFailed`] (a skip reason in the funnel, the run record and the
//! report) and the run goes on. A rule whose failed renders have taken [`FAILURE_TIME`]
//! in one run is not rendered further in that run: its remaining messages fail the same
//! way without costing a render each, so a hostile template costs a run at most that
//! (and one deadline) per rule, while a template that fails fast for a few members
//! costs nothing to the others.

use super::report::MessageContext;
use super::{MemberBase, PlanSettings, Profiles, RulePlan};
use crate::rules::render::{Job, Problem, Rendered, Renderer};
use crate::rules::Rule;
use crate::store::model::ContactFields;
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The time a rule's failed renders may take in one run before the rule is not
/// rendered further in it (ten renders at the deadline).
pub const FAILURE_TIME: Duration = Duration::from_secs(2);

/// Failures logged one by one per rule (the rest are counted).
const LOGGED: usize = 5;

/// Renders every planned message on each of its channels. Returns, per plan, each
/// message it keeps: its member's contact fields (read once per message) and the renders
/// (one per channel, in the message's channel order); the messages that failed leave
/// their plans, and their members' fates say why.
pub fn render_run(base: &MemberBase, profiles: &Profiles, rules: &[&Rule], plans: &mut [RulePlan], settings: &PlanSettings, renderer: &Renderer) -> Vec<Vec<(ContactFields, Vec<Rendered>)>> {
    // per plan, per message: each channel's render, or why the message failed
    let mut renders: Vec<Vec<Vec<Option<Rendered>>>> = plans.iter().map(|rp| rp.messages.iter().map(|m| vec![None; m.channels.len()]).collect()).collect();
    let mut errors: Vec<Vec<Option<String>>> = plans.iter().map(|rp| vec![None; rp.messages.len()]).collect();
    let failing = RefCell::new(vec![Duration::ZERO; plans.len()]);
    // set when a rule's failures used up FAILURE_TIME: its renders still in flight are skipped
    let stopped: Vec<Arc<AtomicBool>> = plans.iter().map(|_| Arc::default()).collect();
    // which (plan, message, channel) the n-th job rendered
    let order = RefCell::new(Vec::new());
    // contact fields of the messages being rendered, by (plan, message)
    let contacts = RefCell::new(vec![Vec::new(); plans.len()]);
    let columns = base.columns.columns();
    // messages whose member could not be read (the store changed under the base): not sent
    let unread = RefCell::new(Vec::new());
    // every message's contact fields up front, read in member order; by (plan, message)
    let members: Vec<u32> = plans.iter().flat_map(|rp| rp.messages.iter().map(|m| m.member)).collect();
    let mut fetched: Vec<Option<Result<ContactFields, _>>> = base.contacts_in_member_order(&members).into_iter().map(Some).collect();
    let first: Vec<usize> = plans.iter().scan(0, |n, rp| Some(std::mem::replace(n, *n + rp.messages.len()))).collect();
    let jobs = plans.iter().enumerate().flat_map(|(p, rp)| rp.messages.iter().enumerate().map(move |(m, msg)| (p, m, msg)));
    let jobs = jobs.filter(|(p, ..)| failing.borrow()[*p] < FAILURE_TIME).flat_map(|(p, m, msg)| {
        let rule = rules[plans[p].rule];
        let context = match fetched[first[p] + m].take().expect("each message is taken once") {
            Ok(contact) => MessageContext::new(base, &columns, profiles, msg, contact, settings),
            Err(e) => {
                unread.borrow_mut().push((p, m, e.to_string()));
                return Vec::new();
            }
        };
        let jobs: Vec<Job> = msg
            .channels
            .iter()
            .enumerate()
            .map(|(c, ch)| {
                order.borrow_mut().push((p, m, c));
                Job { rule: rule.id.clone(), channel: ch.clone(), vars: context.vars(rule, ch, settings), skip: Some(stopped[p].clone()) }
            })
            .collect();
        contacts.borrow_mut()[p].push((m, context.contact));
        jobs
    });
    renderer.render_all(jobs, |n, result, took| {
        let (p, m, c) = order.borrow()[n];
        match result {
            Ok(r) => renders[p][m][c] = Some(r),
            Err(e) if e.problem == Problem::Skipped => {}
            Err(e) => {
                let mut failing = failing.borrow_mut();
                failing[p] += took;
                if failing[p] >= FAILURE_TIME {
                    stopped[p].store(true, Ordering::Relaxed);
                }
                let channel = &plans[p].messages[m].channels[c];
                errors[p][m].get_or_insert_with(|| format!("{channel}: {e}"));
            }
        }
    });
    for (p, m, e) in unread.into_inner() {
        errors[p][m].get_or_insert(e);
    }
    let failing = failing.into_inner();
    let mut contacts = contacts.into_inner();
    let mut out = Vec::with_capacity(plans.len());
    for (p, rp) in plans.iter_mut().enumerate() {
        let rule = &rules[rp.rule].id;
        let mut kept = Vec::new();
        let mut failed = 0usize;
        // in message order, as they were read
        let mut read = std::mem::take(&mut contacts[p]).into_iter().peekable();
        for (m, channels) in std::mem::take(&mut renders[p]).into_iter().enumerate() {
            let contact = read.next_if(|(n, _)| *n == m).map(|(_, c)| c);
            let error = &mut errors[p][m];
            match (channels.into_iter().collect::<Option<Vec<Rendered>>>(), contact) {
                (Some(rendered), Some(contact)) if error.is_none() => kept.push((contact, rendered)),
                _ => {
                    let error = error.get_or_insert_with(|| format!("not rendered: the rule's failed renders took over {} s in this run", FAILURE_TIME.as_secs()));
                    failed += 1;
                    if failed <= LOGGED {
                        let member = base.id(rp.messages[m].member as usize);
                        tracing::warn!(rule = %rule, member = %member, "message not sent: {error}");
                    }
                }
            }
        }
        if failed > 0 {
            tracing::warn!(rule = %rule, failed, stopped = failing[p] >= FAILURE_TIME, "messages not sent: their template failed");
        }
        rp.fail_messages(std::mem::take(&mut errors[p]));
        out.push(kept);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::{PlannedMessage, RulePlan};
    use super::super::Fate;

    #[test]
    fn failed_messages_leave_the_plan_and_the_rest_keep_their_fates() {
        let msg = |member: u32| PlannedMessage { member, channels: vec!["email".into()], send_after: 0, offer: Default::default(), pool_code: None };
        let mut rp = RulePlan {
            rule: 0,
            matched: 5,
            fates: vec![(1, Fate::Send { message: 0 }), (2, Fate::HeldOut), (3, Fate::Send { message: 1 }), (4, Fate::Send { message: 2 }), (5, Fate::NoConsent)],
            messages: vec![msg(1), msg(3), msg(4)],
            codes_left: None,
        };
        rp.fail_messages(vec![None, Some("email: text: boom".into()), None]);
        assert_eq!(rp.messages.iter().map(|m| m.member).collect::<Vec<_>>(), [1, 4]);
        assert_eq!(rp.fate_of(1), Some(&Fate::Send { message: 0 }));
        assert_eq!(rp.fate_of(3), Some(&Fate::TemplateFailed { error: "email: text: boom".into() }));
        assert_eq!(rp.fate_of(4), Some(&Fate::Send { message: 1 }));
        assert_eq!(rp.fate_of(2), Some(&Fate::HeldOut));
        assert!(rp.funnel().contains(&("template failed", 1)) && rp.funnel().contains(&("to send", 2)));
    }
}
