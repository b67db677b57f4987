//! Rendering messages under a budget, so a template can never hang a run, a preview or
//! the daemon. Each part (subject, text, html) runs with minijinja fuel ([`FUEL`]: the
//! engine charges every instruction and the data the template builds, which bounds work
//! and memory) and may write at most [`MAX_PART_BYTES`]. Fuel undercounts some operations
//! (a string comparison or `is lower` on a long string costs one instruction, so a few
//! thousand of them on a string the template built run for seconds): a supervisor gives
//! each message [`DEADLINE`] of CPU time on a worker thread (or [`WALL_LIMIT`] of wall
//! time, for a machine too busy to run it) and, past it, fails the message and carries
//! on with a fresh worker. The abandoned worker stops when its fuel runs out. CPU time,
//! not wall time, so that a render waiting for a busy machine's CPU does not fail.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The fuel of one part: about this many template instructions, or 64 bytes of data built
/// per unit. The shipped templates use 10-40 for a sample member.
pub const FUEL: u64 = 10_000;
/// The largest rendered part (subject, text or html).
pub const MAX_PART_BYTES: usize = 256 * 1024;
/// The CPU time one message (all its parts on one channel) may take to render (its wall
/// time where the worker's CPU time cannot be read, off Linux).
pub const DEADLINE: Duration = Duration::from_millis(200);
/// The wall time one message may take, whatever the reason.
pub const WALL_LIMIT: Duration = Duration::from_secs(2);

/// Jobs handed to a worker before their results come back; they go over in batches of
/// at least half of it.
const WINDOW: usize = 64;

/// Why a message was not rendered.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}{problem}", part.map(|p| format!("{p}: ")).unwrap_or_default())]
pub struct RenderError {
    /// subject, text or html; None when the message as a whole failed (its deadline).
    pub part: Option<&'static str>,
    pub problem: Problem,
    /// Where in the template source, when the engine knows.
    pub range: Option<Range<usize>>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Problem {
    #[error("the template ran out of fuel (a render may run about {FUEL} template steps and build about {} KiB of data)", FUEL * 64 / 1024)]
    OutOfFuel,
    #[error("the rendered text is larger than {} KiB", MAX_PART_BYTES / 1024)]
    TooLarge,
    #[error("rendering took over {} ms of CPU time (or {} s)", DEADLINE.as_millis(), WALL_LIMIT.as_secs())]
    TooSlow,
    #[error("{0}")]
    Template(String),
    #[error("the template engine failed: {0}")]
    Engine(String),
    #[error("not rendered")]
    Skipped,
}

impl RenderError {
    fn new(part: Option<&'static str>, problem: Problem) -> RenderError {
        RenderError { part, problem, range: None }
    }

    /// Whether the template went over its budget (fuel, size, time): the failures that
    /// cost a render's whole budget, unlike a mistake that stops it early.
    pub fn over_budget(&self) -> bool {
        matches!(self.problem, Problem::OutOfFuel | Problem::TooLarge | Problem::TooSlow)
    }
}

/// A rendered message.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Rendered {
    pub subject: Option<String>,
    pub text: String,
    pub html: Option<String>,
}

/// One message to render: the templates of `rule` on `channel` with these variables.
#[derive(Clone)]
pub struct Job {
    pub rule: String,
    pub channel: String,
    pub vars: minijinja::Value,
    /// Once set, the job (already handed to the worker or not) is not rendered: its
    /// result is [`Problem::Skipped`].
    pub skip: Option<Arc<AtomicBool>>,
}

/// The environment every template is compiled and rendered in: strict about undefined
/// variables, with the fuel budget.
pub(super) fn environment() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env
}

/// Compiled templates of every rule, rendered many times per run.
pub struct Renderer {
    env: Arc<minijinja::Environment<'static>>,
}

impl Renderer {
    pub fn new(rules: &[super::Rule]) -> Result<Renderer, minijinja::Error> {
        let mut env = environment();
        for rule in rules {
            for (channel, t) in &rule.message.templates {
                let base = format!("{}/{channel}", rule.id);
                env.add_template_owned(format!("{base}/text"), t.text.clone())?;
                if let Some(s) = &t.subject {
                    env.add_template_owned(format!("{base}/subject"), s.clone())?;
                }
                if let Some(h) = &t.html {
                    env.add_template_owned(format!("{base}/html"), h.clone())?;
                }
            }
        }
        Ok(Renderer { env: Arc::new(env) })
    }

    /// Renders one template source once (`rules check` with a sample member).
    pub(super) fn render_source(source: &str, vars: minijinja::Value) -> Result<String, RenderError> {
        let mut env = environment();
        env.add_template_owned("check/check/text", source.to_string()).map_err(|e| template_error(None, &e))?;
        let renderer = Renderer { env: Arc::new(env) };
        let job = Job { rule: "check".into(), channel: "check".into(), vars, skip: None };
        renderer.render_job(job).map(|r| r.text).map_err(|e| RenderError { part: None, ..e })
    }

    /// Renders a rule's message for one channel.
    pub fn render(&self, rule: &str, channel: &str, vars: minijinja::Value) -> Result<Rendered, RenderError> {
        self.render_job(Job { rule: rule.into(), channel: channel.into(), vars, skip: None })
    }

    fn render_job(&self, job: Job) -> Result<Rendered, RenderError> {
        let mut out = None;
        self.render_all(std::iter::once(job), |_, r, _| out = Some(r));
        out.unwrap_or_else(|| Err(RenderError::new(None, Problem::Engine("no result".into()))))
    }

    /// Renders every job on a worker thread, in order, calling `done(n, result, took)`
    /// for the n-th job (from 0) as it finishes. A job past [`DEADLINE`] fails with
    /// [`Problem::TooSlow`] and the rest go to a fresh worker. Jobs are pulled (their
    /// variables built) while the worker renders, at most [`WINDOW`] ahead, and handed
    /// over in batches, so the two threads wake each other once per batch, not per job.
    pub fn render_all(&self, jobs: impl Iterator<Item = Job>, mut done: impl FnMut(usize, Result<Rendered, RenderError>, Duration)) {
        let mut jobs = jobs.enumerate().fuse();
        let mut pending: VecDeque<(usize, Job)> = VecDeque::new();
        let mut worker: Option<Worker> = None;
        // the worker's CPU time when the supervisor first saw it on a job
        let mut seen: Option<(usize, Option<Duration>)> = None;
        loop {
            if pending.len() <= WINDOW / 2 {
                let batch: Vec<(usize, Job)> = jobs.by_ref().take(WINDOW - pending.len()).collect();
                pending.extend(batch.iter().cloned());
                if let Some(w) = &worker {
                    w.send(batch);
                }
            }
            let Some(&(front, _)) = pending.front() else { return };
            if worker.is_none() {
                match Worker::start(self.env.clone(), &pending) {
                    Ok(w) => worker = Some(w),
                    Err(e) => {
                        // no thread to render on: every job fails, nothing hangs
                        let problem = Problem::Engine(format!("cannot start a render thread: {e}"));
                        for (n, _) in pending.drain(..).chain(jobs.by_ref()) {
                            done(n, Err(RenderError::new(None, problem.clone())), Duration::ZERO);
                        }
                        return;
                    }
                }
            }
            let Some(w) = &worker else { return };
            // what is ready, without waiting; wait only when there is nothing to build
            let ready = match w.results.try_recv() {
                Err(mpsc::TryRecvError::Empty) if pending.len() <= WINDOW / 2 && jobs.size_hint().1 != Some(0) => continue,
                Err(mpsc::TryRecvError::Empty) => w.results.recv_timeout(DEADLINE / 4),
                Ok(result) => Ok(result),
                Err(mpsc::TryRecvError::Disconnected) => Err(mpsc::RecvTimeoutError::Disconnected),
            };
            match ready {
                Ok((n, result, took)) => {
                    debug_assert_eq!(n, front);
                    pending.pop_front();
                    done(n, result, took);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let Some(wall) = w.running_for(front) else { continue };
                    let cpu = w.cpu();
                    if seen.is_none_or(|(n, _)| n != front) {
                        seen = Some((front, cpu));
                    }
                    let used = cpu.zip(seen.and_then(|(_, start)| start)).map(|(now, start)| now.saturating_sub(start));
                    let over = match used {
                        Some(used) => used >= DEADLINE || wall >= WALL_LIMIT,
                        None => wall >= DEADLINE,
                    };
                    if over {
                        pending.pop_front();
                        worker = None;
                        done(front, Err(RenderError::new(None, Problem::TooSlow)), wall);
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    pending.pop_front();
                    worker = None;
                    done(front, Err(RenderError::new(None, Problem::Engine("the render thread stopped".into()))), Duration::ZERO);
                }
            }
        }
    }
}

/// A thread rendering jobs in the order it gets them.
struct Worker {
    jobs: mpsc::Sender<Vec<(usize, Job)>>,
    results: mpsc::Receiver<(usize, Result<Rendered, RenderError>, Duration)>,
    /// The job being rendered and since when.
    current: Arc<Mutex<Option<(usize, Instant)>>>,
    /// Set when the supervisor gave up on the worker: it stops after the render at hand.
    abandoned: Arc<AtomicBool>,
    /// The worker's thread id (0 until it says), to read its CPU time.
    tid: Arc<AtomicU32>,
}

impl Worker {
    /// Starts a worker and hands it `pending`.
    fn start(env: Arc<minijinja::Environment<'static>>, pending: &VecDeque<(usize, Job)>) -> std::io::Result<Worker> {
        let (jobs, inbox) = mpsc::channel::<Vec<(usize, Job)>>();
        let (outbox, results) = mpsc::channel();
        let current: Arc<Mutex<Option<(usize, Instant)>>> = Arc::default();
        let abandoned: Arc<AtomicBool> = Arc::default();
        let tid: Arc<AtomicU32> = Arc::default();
        let (now, stop, my_tid) = (current.clone(), abandoned.clone(), tid.clone());
        std::thread::Builder::new()
            .name("render".into())
            // minijinja allows 500 nested calls; room for them
            .stack_size(16 << 20)
            .spawn(move || {
                my_tid.store(own_thread_id().unwrap_or(0), Ordering::Relaxed);
                for (n, job) in inbox.into_iter().flatten() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let started = Instant::now();
                    *now.lock().unwrap_or_else(|p| p.into_inner()) = Some((n, started));
                    let result = if job.skip.as_ref().is_some_and(|s| s.load(Ordering::Relaxed)) {
                        Err(RenderError::new(None, Problem::Skipped))
                    } else {
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| render_parts(&env, &job)))
                            .unwrap_or_else(|_| Err(RenderError::new(None, Problem::Engine("the template engine panicked".into()))))
                    };
                    if outbox.send((n, result, started.elapsed())).is_err() {
                        break;
                    }
                }
            })?;
        let worker = Worker { jobs, results, current, abandoned, tid };
        worker.send(pending.iter().cloned().collect());
        Ok(worker)
    }

    fn send(&self, batch: Vec<(usize, Job)>) {
        // a worker that stopped shows as a disconnected result channel
        if !batch.is_empty() {
            let _ = self.jobs.send(batch);
        }
    }

    /// The CPU time the worker thread used so far (None where it cannot be read).
    fn cpu(&self) -> Option<Duration> {
        match self.tid.load(Ordering::Relaxed) {
            0 => None,
            tid => thread_cpu(tid),
        }
    }

    /// How long the worker has been rendering job `n` (None: not started yet).
    fn running_for(&self, n: usize) -> Option<Duration> {
        match *self.current.lock().unwrap_or_else(|p| p.into_inner()) {
            Some((at, since)) if at == n => Some(since.elapsed()),
            _ => None,
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.abandoned.store(true, Ordering::Relaxed);
    }
}

/// The calling thread's id (Linux: /proc/thread-self).
fn own_thread_id() -> Option<u32> {
    std::fs::read_link("/proc/thread-self").ok()?.file_name()?.to_str()?.parse().ok()
}

/// A thread's user and system CPU time (Linux: /proc/self/task/TID/stat, in 1/100 s).
fn thread_cpu(tid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    let (_, fields) = stat.rsplit_once(')')?;
    let mut fields = fields.split_whitespace().skip(11);
    let ticks = fields.next()?.parse::<u64>().ok()? + fields.next()?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// A writer that refuses to grow past [`MAX_PART_BYTES`].
struct Capped {
    buf: Vec<u8>,
    over: bool,
}

impl std::io::Write for Capped {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + bytes.len() > MAX_PART_BYTES {
            self.over = true;
            return Err(std::io::Error::other("the rendered text is too large"));
        }
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Subject, text and html of one job, each with its own fuel.
fn render_parts(env: &minijinja::Environment<'static>, job: &Job) -> Result<Rendered, RenderError> {
    let part = |name: &'static str| -> Result<Option<String>, RenderError> {
        let tpl = match env.get_template(&format!("{}/{}/{name}", job.rule, job.channel)) {
            Ok(t) => t,
            Err(e) if e.kind() == minijinja::ErrorKind::TemplateNotFound => return Ok(None),
            Err(e) => return Err(template_error(Some(name), &e)),
        };
        let mut out = Capped { buf: Vec::new(), over: false };
        match tpl.render_captured_to(job.vars.clone(), &mut out) {
            Ok(_) => String::from_utf8(out.buf).map(Some).map_err(|e| RenderError::new(Some(name), Problem::Engine(e.to_string()))),
            Err(_) if out.over => Err(RenderError::new(Some(name), Problem::TooLarge)),
            Err(e) => Err(template_error(Some(name), &e)),
        }
    };
    Ok(Rendered { subject: part("subject")?, text: part("text")?.unwrap_or_default(), html: part("html")? })
}

fn template_error(part: Option<&'static str>, e: &minijinja::Error) -> RenderError {
    let problem = match e.kind() {
        minijinja::ErrorKind::OutOfFuel => Problem::OutOfFuel,
        _ => Problem::Template(e.detail().map_or_else(|| e.kind().to_string(), |d| format!("{}: {d}", e.kind()))),
    };
    RenderError { part, problem, range: e.range() }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A renderer over templates `r/c/text` (one per rule id), with `stall(ms)` and
    /// `explode()` functions to make a render slow or panic on demand.
    fn renderer(texts: &[(&str, &str)]) -> Renderer {
        let mut env = environment();
        env.add_function("stall", |ms: u64| std::thread::sleep(Duration::from_millis(ms)));
        env.add_function("spin", |ms: u64| {
            let until = Instant::now() + Duration::from_millis(ms);
            let mut x = 0u64;
            while Instant::now() < until {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        });
        env.add_function("explode", || -> String { panic!("a bug in a filter") });
        for (rule, text) in texts {
            env.add_template_owned(format!("{rule}/c/text"), text.to_string()).unwrap();
        }
        Renderer { env: Arc::new(env) }
    }

    fn job(rule: &str) -> Job {
        Job { rule: rule.into(), channel: "c".into(), vars: minijinja::Value::from(()), skip: None }
    }

    #[test]
    fn a_render_past_its_deadline_fails_alone_and_the_next_ones_render() {
        // a render burning CPU is stopped at the deadline, one waiting (here: sleeping)
        // at the wall-time limit
        let r = renderer(&[("ok", "fine"), ("slow", "{{ spin(5000) }}"), ("asleep", "{{ stall(5000) }}"), ("boom", "{{ explode() }}")]);
        let names = ["ok", "slow", "ok", "boom", "ok", "asleep", "ok", "slow", "ok"];
        let started = Instant::now();
        let mut results = Vec::new();
        r.render_all(names.iter().map(|n| job(n)), |n, result, took| results.push((n, result, took)));
        // three stalls of 5 s each cost 0.2 + 2 + 0.2 s, not 15 s
        assert!(started.elapsed() < Duration::from_millis(4500), "{:?}", started.elapsed());
        let took = |i: usize| results[i].2;
        assert!(took(1) < Duration::from_secs(1) && took(7) < Duration::from_secs(1), "{:?} {:?}", took(1), took(7));
        assert!(took(5) >= WALL_LIMIT, "{:?}", took(5));
        let results: Vec<_> = results.into_iter().map(|(n, r, _)| (n, r)).collect();
        assert_eq!(results.iter().map(|(n, _)| *n).collect::<Vec<_>>(), (0..names.len()).collect::<Vec<_>>(), "results come in job order");
        for ((_, result), name) in results.iter().zip(names) {
            match name {
                "ok" => assert_eq!(result.as_ref().map(|r| r.text.as_str()), Ok("fine")),
                "slow" | "asleep" => assert_eq!(result.as_ref().map_err(|e| &e.problem), Err(&Problem::TooSlow)),
                // (printing the panic's backtrace can itself outlast the deadline)
                _ => {
                    let problem = result.as_ref().map(|_| ()).map_err(|e| e.problem.clone());
                    assert!(problem == Err(Problem::TooSlow) || problem == Err(Problem::Engine("the template engine panicked".into())), "{result:?}");
                }
            }
        }
    }

    #[test]
    fn fuel_and_the_size_cap_stop_a_render_with_their_own_reason() {
        // (template, problem, over budget)
        let cases: &[(&str, Problem, bool)] = &[
            ("{% for i in range(100000) %}{{ i }}{% endfor %}", Problem::OutOfFuel, true),
            ("{{ 'x' * 10**9 }}", Problem::OutOfFuel, true),
            ("{% for i in range(30) %}{{ 'y' * 10000 }}{% endfor %}", Problem::TooLarge, true),
            ("{{ 1 / 0 }}", Problem::Template("invalid operation: unable to calculate 1 / 0".into()), false),
        ];
        for (text, problem, over) in cases {
            let e = renderer(&[("r", text)]).render("r", "c", minijinja::Value::from(())).unwrap_err();
            assert_eq!((&e.problem, e.over_budget(), e.part), (problem, *over, Some("text")), "{text}");
        }
    }
}
