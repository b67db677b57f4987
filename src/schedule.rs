//! When each rule fires. One engine computes every firing: croner, through
//! [`Schedule::next_after`], the computation `rules list`, the API and the daemon's
//! catch-up show. tokio-cron-scheduler only keeps the time: each enabled rule has one
//! one-shot job at its next firing; when it fires, the rule id goes to the daemon and the
//! following firing is computed again by croner, in the rule's time zone, from the one
//! that fired. So a daylight-saving change is followed without a restart, and
//! day-of-month and weekday combine as `rules list` says (OR).
//!
//! tokio-cron-scheduler's own cron jobs are deliberately not used: they read day-of-month
//! and weekday with AND, and they fix the UTC offset of the time zone when the job is
//! created.
//!
//! *Invariants*: a rule has at most one pending job; a firing is never early on the
//! scheduler's [`Clock`]; replacing the rules (a reload) cancels every pending job, and a
//! job of replaced rules that fires anyway does nothing.

use crate::rules::{Rule, Schedule};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};

/// What a firing calls: the rule id and the instant the firing was due (by croner).
pub type Fire = Arc<dyn Fn(&str, DateTime<Utc>) + Send + Sync>;

#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct SchedulerError(#[from] JobSchedulerError);

/// The time the scheduler reads: the system clock, shifted by whole seconds in tests (so
/// a test can start a few seconds before a daylight-saving change).
#[derive(Debug, Clone, Copy, Default)]
pub struct Clock {
    offset_seconds: i64,
}

impl Clock {
    pub fn system() -> Clock {
        Clock::default()
    }

    /// A clock that reads `start` (plus under a second) now and runs at the system
    /// clock's pace.
    pub fn starting_at(start: DateTime<Utc>) -> Clock {
        Clock { offset_seconds: start.timestamp() - Utc::now().timestamp() }
    }

    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::TimeDelta::seconds(self.offset_seconds)
    }

    /// The system time at which this clock reads `t`.
    fn system_time(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        t - chrono::TimeDelta::seconds(self.offset_seconds)
    }
}

/// A firing this much behind its time (a suspended machine, a clock set forward) is the
/// last one of the gap: the next is computed from now, not from it.
const LATE: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// The one-shot jobs of the enabled rules.
pub struct Scheduler {
    shared: Arc<Shared>,
    current: Arc<Generation>,
}

struct Shared {
    jobs: JobScheduler,
    clock: Clock,
    fire: Fire,
}

/// The jobs of one set of rules; a reload cancels it and starts the next.
#[derive(Default)]
struct Generation {
    cancelled: AtomicBool,
    pending: Mutex<Pending>,
}

/// Each rule's pending job and the instant it fires at.
type Pending = HashMap<Arc<str>, (Job, DateTime<Utc>)>;

impl Generation {
    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        // the map stays consistent whatever panicked while holding it
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A rule as the scheduler needs it.
struct Timed {
    id: Arc<str>,
    schedule: Schedule,
    tz: chrono_tz::Tz,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl Scheduler {
    /// Starts the scheduler with a job for each enabled, scheduled rule (in the rule's
    /// time zone, else `default_tz`).
    pub async fn start(rules: &[Rule], default_tz: chrono_tz::Tz, clock: Clock, fire: Fire) -> Result<Scheduler, SchedulerError> {
        let jobs = JobScheduler::new().await?;
        jobs.start().await?;
        let mut scheduler = Scheduler { shared: Arc::new(Shared { jobs, clock, fire }), current: Arc::new(Generation::default()) };
        scheduler.arm_all(rules, default_tz).await?;
        Ok(scheduler)
    }

    /// Cancels every pending job and schedules `rules` instead (after a reload).
    pub async fn replace(&mut self, rules: &[Rule], default_tz: chrono_tz::Tz) -> Result<(), SchedulerError> {
        let old = std::mem::take(&mut self.current);
        self.cancel(&old).await;
        self.arm_all(rules, default_tz).await
    }

    pub async fn shutdown(&mut self) {
        let old = std::mem::take(&mut self.current);
        self.cancel(&old).await;
        if let Err(e) = self.shared.jobs.clone().shutdown().await {
            tracing::warn!("scheduler shutdown: {e}");
        }
    }

    /// The pending firings, by rule id.
    #[cfg(test)]
    fn pending(&self) -> std::collections::BTreeMap<String, DateTime<Utc>> {
        self.current.pending().iter().map(|(id, (_, at))| (id.to_string(), *at)).collect()
    }

    async fn cancel(&self, generation: &Generation) {
        generation.cancelled.store(true, Ordering::SeqCst);
        let jobs: Vec<Job> = generation.pending().drain().map(|(_, (job, _))| job).collect();
        for job in jobs {
            // a job left behind does nothing when it fires (its generation is cancelled)
            if let Err(e) = self.shared.jobs.remove(&job.guid()).await {
                tracing::warn!("removing a replaced rule's job: {e}");
            }
        }
    }

    async fn arm_all(&mut self, rules: &[Rule], default_tz: chrono_tz::Tz) -> Result<(), SchedulerError> {
        let now = self.shared.clock.now();
        for r in rules.iter().filter(|r| r.enabled) {
            let Some(schedule) = &r.schedule else { continue };
            let rule = Arc::new(Timed { id: Arc::from(r.id.as_str()), schedule: schedule.clone(), tz: r.timezone.unwrap_or(default_tz) });
            arm(self.shared.clone(), self.current.clone(), rule, now).await?;
        }
        Ok(())
    }
}

/// Adds the job of `rule`'s first firing strictly after `after` (croner's).
fn arm(shared: Arc<Shared>, generation: Arc<Generation>, rule: Arc<Timed>, after: DateTime<Utc>) -> BoxFuture<Result<(), SchedulerError>> {
    Box::pin(async move {
        let Some(at) = rule.schedule.next_after(after, rule.tz) else {
            tracing::warn!(rule = %rule.id, schedule = %rule.schedule.cron, "the schedule fires no more");
            return Ok(());
        };
        let (s, g, r) = (shared.clone(), generation.clone(), rule.clone());
        let mut job = Job::new_one_shot_async(std::time::Duration::ZERO, move |_, _| {
            let (shared, generation, rule) = (s.clone(), g.clone(), r.clone());
            Box::pin(async move {
                if generation.cancelled.load(Ordering::SeqCst) {
                    return;
                }
                (shared.fire)(&rule.id, at);
                // the following firing counts from this one, not from when the job ran
                let now = shared.clock.now();
                let from = if now - at > LATE {
                    tracing::warn!(rule = %rule.id, due = %at, "a firing ran late; the firings due since are skipped");
                    now
                } else {
                    at
                };
                if let Err(e) = arm(shared, generation, rule.clone(), from).await {
                    tracing::error!(rule = %rule.id, "scheduling the next firing: {e}");
                }
            })
        })?;
        // the job fires on the scheduler's first tick (every 500 ms) at or past its
        // `next_tick`, whole UTC seconds of the system clock (0 would mean "delete it")
        let mut data = job.job_data()?;
        data.next_tick = u64::try_from(shared.clock.system_time(at).timestamp()).unwrap_or(0).max(1);
        job.set_job_data(data)?;
        shared.jobs.add(job.clone()).await?;
        generation.pending().insert(rule.id.clone(), (job, at));
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Schedule;
    use std::time::Duration;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn rule(id: &str, schedule: &str, tz: &str) -> Rule {
        let text = format!("id = \"{id}\"\nschedule = \"{schedule}\"\ntimezone = \"{tz}\"\n[audience]\n[message]\nchannels = [\"email\"]\n[message.email]\nsubject = \"s\"\ntext = \"t\"\n");
        let mut set = crate::rules::RuleSet { rules: vec![], diagnostics: vec![], sources: Default::default(), failed: vec![] };
        crate::rules::add_file(&mut set, std::path::Path::new("r.toml"), text, &crate::rules::ChannelNames { configured: vec!["email".into()] });
        assert_eq!(set.errors(), 0, "{:?}", set.diagnostics);
        set.rules.pop().unwrap()
    }

    /// What fired: the rule, the instant it was due, and the clock when it fired.
    type Fired = Arc<Mutex<Vec<(String, DateTime<Utc>, DateTime<Utc>)>>>;

    async fn scheduler(rules: &[Rule], start: DateTime<Utc>) -> (Scheduler, Fired, Clock) {
        let clock = Clock::starting_at(start);
        let fired: Fired = Arc::default();
        let f = fired.clone();
        let fire: Fire = Arc::new(move |id: &str, at| f.lock().unwrap().push((id.to_string(), at, clock.now())));
        (Scheduler::start(rules, chrono_tz::UTC, clock, fire).await.unwrap(), fired, clock)
    }

    /// Waits until the clock reads `until` (plus a tick of the scheduler), and on a busy
    /// machine up to 5 s more for `count` firings.
    async fn wait_until(clock: Clock, until: DateTime<Utc>, fired: &Fired, count: usize) {
        let left = (until - clock.now()).to_std().unwrap_or_default();
        tokio::time::sleep(left + Duration::from_millis(1200)).await;
        for _ in 0..50 {
            if fired.lock().unwrap().len() >= count {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every firing was due at croner's instant and fired at or after it (never early;
    /// a tick of the scheduler is 500 ms, a busy machine adds to it).
    fn due_instants(fired: &Fired) -> Vec<DateTime<Utc>> {
        let fired = fired.lock().unwrap();
        for (id, due, at) in fired.iter() {
            assert!(*at >= *due && *at - *due < chrono::TimeDelta::seconds(5), "{id} due at {due} fired at {at}");
        }
        fired.iter().map(|(_, due, _)| *due).collect()
    }

    /// Croner's firings of `schedule` in `tz` after `start`, up to `end`.
    fn croner(schedule: &str, tz: chrono_tz::Tz, start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let s = Schedule::parse(schedule).unwrap();
        std::iter::successors(s.next_after(start, tz), |t| s.next_after(*t, tz)).take_while(|t| *t <= end).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn firings_follow_berlin_into_summer_time() {
        // 2026-03-29 02:00 CET becomes 03:00 CEST (01:00 UTC): every two seconds in the
        // local hours 1 and 3 runs from 01:59:58 CET straight on at 03:00:00 CEST; an
        // offset fixed at +01:00 would wait an hour
        let schedule = "*/2 * 1,3 * * *";
        let (start, end) = (utc("2026-03-29T00:59:53Z"), utc("2026-03-29T01:00:04Z"));
        let (mut s, fired, clock) = scheduler(&[rule("spring", schedule, "Europe/Berlin")], start).await;
        wait_until(clock, end, &fired, 6).await;
        s.shutdown().await;
        let expected: Vec<_> = ["00:59:54", "00:59:56", "00:59:58", "01:00:00", "01:00:02", "01:00:04"].iter().map(|t| utc(&format!("2026-03-29T{t}Z"))).collect();
        assert_eq!(croner(schedule, chrono_tz::Europe::Berlin, start, end), expected);
        assert_eq!(due_instants(&fired), expected);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn firings_follow_berlin_out_of_summer_time() {
        // 2026-10-25 03:00 CEST becomes 02:00 CET (01:00 UTC): the local hour 2 comes
        // again, and its wall times fire once (at their first occurrence), so after
        // 02:59:58 CEST the next firing is 03:00:00 CET (02:00 UTC); an offset fixed at
        // +02:00 would fire at 01:00 UTC, reading it as 03:00
        let schedule = "*/2 * 2,3 * * *";
        let (start, end) = (utc("2026-10-25T00:59:53Z"), utc("2026-10-25T01:00:05Z"));
        let (mut s, fired, clock) = scheduler(&[rule("autumn", schedule, "Europe/Berlin")], start).await;
        // a fourth firing (the hour again, or +02:00 kept) gets 5 s more to show up
        wait_until(clock, end, &fired, 4).await;
        let pending = s.pending();
        s.shutdown().await;
        let expected: Vec<_> = ["00:59:54", "00:59:56", "00:59:58"].iter().map(|t| utc(&format!("2026-10-25T{t}Z"))).collect();
        assert_eq!(croner(schedule, chrono_tz::Europe::Berlin, start, end), expected);
        assert_eq!(due_instants(&fired), expected);
        assert_eq!(pending.get("autumn"), Some(&utc("2026-10-25T02:00:00Z")), "{pending:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn day_of_month_or_weekday_fires_on_the_day_rules_list_shows() {
        // issue 16: "0 10 1-7 * MON" is the 1st to the 7th and every Monday; from
        // Tuesday 2026-12-01 after 10:00 the next is Wednesday 12-02 10:00 CET, not
        // Monday 12-07 (day and weekday read with AND)
        let tz = chrono_tz::Europe::Berlin;
        let listed = Schedule::parse("0 10 1-7 * MON").unwrap().next_after(utc("2026-12-01T12:00:00Z"), tz);
        assert_eq!(listed, Some(utc("2026-12-02T09:00:00Z")));
        let start = utc("2026-12-02T08:59:57Z");
        let (mut s, fired, clock) = scheduler(&[rule("first-week", "0 10 1-7 * MON", "Europe/Berlin")], start).await;
        wait_until(clock, utc("2026-12-02T09:00:00Z"), &fired, 1).await;
        let pending = s.pending();
        s.shutdown().await;
        assert_eq!(due_instants(&fired), vec![utc("2026-12-02T09:00:00Z")]);
        assert_eq!(pending.get("first-week"), Some(&utc("2026-12-03T09:00:00Z")));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reload_replaces_the_jobs() {
        let start = utc("2026-06-01T00:00:00Z");
        let (mut s, fired, clock) = scheduler(&[rule("old", "* * * * * *", "UTC")], start).await;
        wait_until(clock, utc("2026-06-01T00:00:01Z"), &fired, 1).await;
        s.replace(&[rule("new", "* * * * * *", "UTC")], chrono_tz::UTC).await.unwrap();
        let replaced = clock.now();
        assert_eq!(s.pending().keys().collect::<Vec<_>>(), ["new"]);
        wait_until(clock, replaced + chrono::TimeDelta::seconds(2), &fired, 0).await;
        s.shutdown().await;
        let fired = fired.lock().unwrap();
        assert!(fired.iter().any(|(id, ..)| id == "old") && fired.iter().any(|(id, ..)| id == "new"), "{fired:?}");
        assert!(fired.iter().all(|(id, _, at)| id == "new" || *at <= replaced), "an old job fired after the reload: {fired:?}");
        // each second once, in order
        let new: Vec<_> = fired.iter().filter(|(id, ..)| id == "new").map(|(_, due, _)| *due).collect();
        assert!(new.windows(2).all(|w| w[1] - w[0] == chrono::TimeDelta::seconds(1)), "{new:?}");
    }
}
