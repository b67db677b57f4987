//! The daemon's counters and histograms, rendered in the Prometheus text format at
//! `/metrics`: sends by channel and outcome with their latency, delivery feedback, rule
//! run durations and ingested lines. Gauges read from the store (outbox depth) are added
//! by the API at scrape time.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Send latency buckets, seconds (a plugin call including the provider's answer).
const SEND_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Rule run buckets, seconds (planning and writing a run to the outbox).
const RUN_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];

#[derive(Debug, Clone, Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, bounds: &[f64], v: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; bounds.len()];
        }
        if let Some(i) = bounds.iter().position(|b| v <= *b) {
            self.counts[i] += 1;
        }
        self.sum += v;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str, bounds: &[f64]) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, b) in bounds.iter().enumerate() {
            cumulative += self.counts.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", self.count);
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

#[derive(Default)]
struct Inner {
    /// (channel, outcome) -> count
    sends: BTreeMap<(String, &'static str), u64>,
    send_seconds: BTreeMap<String, Histogram>,
    /// (channel, state) -> count
    feedback: BTreeMap<(String, &'static str), u64>,
    run_seconds: Histogram,
    /// (kind, result) -> lines
    ingested: BTreeMap<(String, &'static str), u64>,
    /// Co-purchase rules or the value model being refreshed in the background.
    models_refreshing: bool,
}

/// Shared by the dispatcher, the scheduler loop and the API.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// One plugin send: its outcome (sent, retry, fallback, failed, dead) and how long it took.
    pub fn observe_send(&self, channel: &str, outcome: &'static str, seconds: f64) {
        self.with(|m| {
            *m.sends.entry((channel.to_string(), outcome)).or_default() += 1;
            m.send_seconds.entry(channel.to_string()).or_default().observe(SEND_BUCKETS, seconds);
        })
    }

    /// A message that never reached a plugin (unsubscribed, stopped address).
    pub fn observe_skip(&self, channel: &str, outcome: &'static str) {
        self.with(|m| *m.sends.entry((channel.to_string(), outcome)).or_default() += 1)
    }

    pub fn observe_feedback(&self, channel: &str, state: &'static str) {
        self.with(|m| *m.feedback.entry((channel.to_string(), state)).or_default() += 1)
    }

    pub fn observe_run(&self, seconds: f64) {
        self.with(|m| m.run_seconds.observe(RUN_BUCKETS, seconds))
    }

    pub fn observe_ingest(&self, kind: &str, imported: u64, bad: u64) {
        self.with(|m| {
            *m.ingested.entry((kind.to_string(), "imported")).or_default() += imported;
            *m.ingested.entry((kind.to_string(), "bad")).or_default() += bad;
        })
    }

    pub fn set_models_refreshing(&self, on: bool) {
        self.with(|m| m.models_refreshing = on)
    }

    /// Appends every metric in the Prometheus text format (version 0.0.4).
    pub fn render(&self, out: &mut String) {
        self.with(|m| {
            out.push_str("# HELP rekindle_sends_total Messages handed to a channel, by outcome.\n# TYPE rekindle_sends_total counter\n");
            for ((channel, outcome), n) in &m.sends {
                let _ = writeln!(out, "rekindle_sends_total{{channel=\"{}\",outcome=\"{outcome}\"}} {n}", escape(channel));
            }
            out.push_str("# HELP rekindle_send_seconds Time of one send through the channel's plugin, provider included.\n# TYPE rekindle_send_seconds histogram\n");
            for (channel, h) in &m.send_seconds {
                h.render(out, "rekindle_send_seconds", &format!("channel=\"{}\"", escape(channel)), SEND_BUCKETS);
            }
            out.push_str("# HELP rekindle_feedback_total Delivery reports, bounces, complaints and opt-outs from providers.\n# TYPE rekindle_feedback_total counter\n");
            for ((channel, state), n) in &m.feedback {
                let _ = writeln!(out, "rekindle_feedback_total{{channel=\"{}\",state=\"{state}\"}} {n}", escape(channel));
            }
            out.push_str("# HELP rekindle_run_seconds Time to plan a run and write it to the outbox.\n# TYPE rekindle_run_seconds histogram\n");
            m.run_seconds.render(out, "rekindle_run_seconds", "", RUN_BUCKETS);
            out.push_str("# HELP rekindle_ingested_lines_total Lines received by the ingest API.\n# TYPE rekindle_ingested_lines_total counter\n");
            for ((kind, result), n) in &m.ingested {
                let _ = writeln!(out, "rekindle_ingested_lines_total{{kind=\"{}\",result=\"{result}\"}} {n}", escape(kind));
            }
            out.push_str("# HELP rekindle_models_refreshing 1 while co-purchase rules or the value model are refreshed in the background (the previous ones are in force).\n# TYPE rekindle_models_refreshing gauge\n");
            let _ = writeln!(out, "rekindle_models_refreshing {}", u8::from(m.models_refreshing));
        })
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The build and the process, under the names Prometheus' own clients use: version,
/// CPU seconds, resident and virtual memory, open and allowed file descriptors, start
/// time. Read from /proc (Linux); elsewhere only the build line.
pub fn render_process(out: &mut String) {
    let _ = writeln!(
        out,
        "# HELP rekindle_build_info The running build.\n# TYPE rekindle_build_info gauge\nrekindle_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    let Some(p) = Process::read() else { return };
    let mut gauge = |name: &str, kind: &str, help: &str, value: f64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    };
    gauge("process_cpu_seconds_total", "counter", "User and system CPU time, seconds.", p.cpu_seconds);
    gauge("process_resident_memory_bytes", "gauge", "Resident memory, bytes.", p.resident_bytes as f64);
    gauge("process_virtual_memory_bytes", "gauge", "Virtual memory, bytes.", p.virtual_bytes as f64);
    gauge("process_start_time_seconds", "gauge", "Start time since the Unix epoch, seconds.", p.start_time_seconds);
    if let Some(n) = p.open_fds {
        gauge("process_open_fds", "gauge", "Open file descriptors.", n as f64);
    }
    if let Some(n) = p.max_fds {
        gauge("process_max_fds", "gauge", "Soft limit of open file descriptors.", n as f64);
    }
}

/// This process' user and system CPU time, seconds (Linux).
pub fn process_cpu_seconds() -> Option<f64> {
    Process::read().map(|p| p.cpu_seconds)
}

struct Process {
    cpu_seconds: f64,
    resident_bytes: u64,
    virtual_bytes: u64,
    start_time_seconds: f64,
    open_fds: Option<usize>,
    max_fds: Option<u64>,
}

impl Process {
    /// Clock ticks per second of /proc's times (USER_HZ: 100 on every Linux this runs on).
    const TICKS: f64 = 100.0;

    fn read() -> Option<Process> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // after the command name in parentheses (which may hold spaces): field 3 (state) on
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let field = |n: usize| -> Option<f64> { fields.get(n - 3)?.parse().ok() };
        let (utime, stime, started) = (field(14)?, field(15)?, field(22)?);
        let boot: f64 = std::fs::read_to_string("/proc/stat").ok()?.lines().find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let kib = |key: &str| -> Option<u64> { status.lines().find_map(|l| l.strip_prefix(key)?.trim().strip_suffix(" kB")?.trim().parse().ok()) };
        let limits = std::fs::read_to_string("/proc/self/limits").ok();
        Some(Process {
            cpu_seconds: (utime + stime) / Self::TICKS,
            resident_bytes: kib("VmRSS:")? * 1024,
            virtual_bytes: kib("VmSize:")? * 1024,
            start_time_seconds: boot + started / Self::TICKS,
            // the listing's own descriptor is not counted
            open_fds: std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count().saturating_sub(1)),
            max_fds: limits.as_deref().and_then(|l| l.lines().find_map(|l| l.strip_prefix("Max open files")?.split_whitespace().next()?.parse().ok())),
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_os = "linux")]
    fn process_metrics_are_read_from_proc() {
        let before = super::Process::read().expect("/proc is readable");
        let mut v = vec![0u8; 64 << 20];
        for i in (0..v.len()).step_by(4096) {
            v[i] = 1;
        }
        std::hint::black_box(&mut v);
        let after = super::Process::read().unwrap();
        // other tests run beside this one: leave them 32 MiB of slack
        assert!(after.resident_bytes >= before.resident_bytes + (32 << 20), "{} then {}", before.resident_bytes, after.resident_bytes);
        assert!(after.virtual_bytes >= after.resident_bytes);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        assert!((now - 3600.0..=now + 1.0).contains(&before.start_time_seconds), "started {} now {now}", before.start_time_seconds);
        assert!(after.open_fds.is_some_and(|n| n >= 3) && after.max_fds.is_some_and(|n| n >= 64), "{:?} of {:?}", after.open_fds, after.max_fds);
        assert!(after.cpu_seconds >= before.cpu_seconds);
        drop(v);
        let mut out = String::new();
        super::render_process(&mut out);
        assert!(out.contains(&format!("rekindle_build_info{{version=\"{}\"}} 1\n", env!("CARGO_PKG_VERSION"))), "{out}");
        assert!(out.contains("\nprocess_resident_memory_bytes "), "{out}");
    }
}
