//! Benchmark of rendering a run's messages: every shipped rule planned together over a
//! generated base, then every planned message rendered on each of its channels, three
//! ways in the same process, alternating: through `plan::messages::render_run` (the
//! budget: fuel, size cap, a supervised worker thread with a deadline), and inline on the
//! calling thread as before the budget, with and without fuel.
//!
//!   cargo run --release --example render_bench -- [--members 100000] [--repeat 3]

use anyhow::Result;
use rekindle::config::Config;
use rekindle::ingest::{import_file, ImportOptions};
use rekindle::plan::messages::render_run;
use rekindle::plan::report::MessageContext;
use rekindle::plan::{plan, MemberBase, Profiles};
use rekindle::rules::{ChannelNames, Rule};
use std::time::Instant;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// CPU seconds of the whole process so far (every thread; /proc/self/stat at 100 Hz),
/// less disturbed than wall time by a busy machine.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() -> Result<()> {
    let (members, repeat) = (arg("--members", 100_000), arg("--repeat", 3));
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let opts = rekindle::generate::GenerateOptions { members, ..Default::default() };
    rekindle::generate::generate(&data, &opts)?;
    let store = rekindle::store::Store::open(&dir.path().join("store"), 256)?;
    for f in ["members.csv", "products.csv", "orders.csv", "events.csv"] {
        import_file(&store, &data.join(f), &ImportOptions { progress: false, ..Default::default() }, &mut |_| {})?;
    }
    let channels = ChannelNames { configured: vec!["email".into(), "sms".into(), "shop".into()] };
    let set = rekindle::rules::load(std::path::Path::new("rules"), &channels)?;
    let rules: Vec<&Rule> = set.rules.iter().collect();
    let mut base = MemberBase::load(&store, Default::default(), true, &|_| {})?;
    base.consent.by_channel.insert("shop".into(), rekindle::rules::condition::Consent::None);
    let settings = Config::default().plan_settings(b"bench".to_vec());
    let as_of = rekindle::domain::day_of(opts.end);
    let profiles = Profiles::compute(&base, as_of, &settings, Default::default());
    let now = i64::from(as_of) * 86_400 + 12 * 3600;
    let plans = plan(&base, &profiles, &rules, now, &settings);
    let messages: usize = plans.iter().map(|p| p.messages.iter().map(|m| m.channels.len()).sum::<usize>()).sum();
    let owned: Vec<Rule> = set.rules.clone();
    let renderer = rekindle::rules::render::Renderer::new(&owned)?;
    // the renderer before the budget: the same templates, rendered on the calling thread
    let inline_env = |fuel: Option<u64>| -> Result<minijinja::Environment<'static>> {
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.set_fuel(fuel);
        for r in &owned {
            for (c, t) in &r.message.templates {
                env.add_template_owned(format!("{}/{c}/text", r.id), t.text.clone())?;
                if let Some(s) = &t.subject {
                    env.add_template_owned(format!("{}/{c}/subject", r.id), s.clone())?;
                }
                if let Some(h) = &t.html {
                    env.add_template_owned(format!("{}/{c}/html", r.id), h.clone())?;
                }
            }
        }
        Ok(env)
    };
    let inline = |env: &minijinja::Environment<'static>| -> usize {
        let mut bytes = 0;
        for rp in &plans {
            let rule = rules[rp.rule];
            for msg in &rp.messages {
                let context = MessageContext::new(&base, &base.columns.columns(), &profiles, msg, base.contact(msg.member as usize).expect("the member's contact fields"), &settings);
                for ch in &msg.channels {
                    let vars = context.vars(rule, ch, &settings);
                    for part in ["subject", "text", "html"] {
                        if let Ok(t) = env.get_template(&format!("{}/{ch}/{part}", rule.id)) {
                            bytes += t.render(vars.clone()).map(|s| s.len()).unwrap_or(0);
                        }
                    }
                }
            }
        }
        bytes
    };
    let (plain, fueled) = (inline_env(None)?, inline_env(Some(rekindle::rules::render::FUEL))?);
    println!("{members} members, {} rules, {messages} messages x channels to render", rules.len());
    // (wall, cpu) seconds of each way, per repetition
    let mut times: [Vec<(f64, f64)>; 3] = Default::default();
    let timed = |f: &mut dyn FnMut()| {
        let (t, c) = (Instant::now(), cpu_seconds());
        f();
        (t.elapsed().as_secs_f64(), cpu_seconds() - c)
    };
    for _ in 0..repeat {
        times[0].push(timed(&mut || {
            let mut p = plans.iter().map(|rp| rekindle::plan::RulePlan { rule: rp.rule, matched: rp.matched, fates: rp.fates.clone(), messages: rp.messages.clone(), codes_left: rp.codes_left.clone() }).collect::<Vec<_>>();
            let rendered = render_run(&base, &profiles, &rules, &mut p, &settings, &renderer);
            let kept: usize = rendered.iter().map(Vec::len).sum();
            assert_eq!(kept, plans.iter().map(|p| p.messages.len()).sum::<usize>(), "no shipped template fails");
        }));
        times[1].push(timed(&mut || {
            std::hint::black_box(inline(&plain));
        }));
        times[2].push(timed(&mut || {
            std::hint::black_box(inline(&fueled));
        }));
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[0])
    };
    for (name, t) in ["render_run (fuel, cap, worker, deadline)", "inline, no fuel (before)", "inline, fuel"].iter().zip(&times) {
        let (wall, best) = median(t.iter().map(|x| x.0).collect());
        let (cpu, cpu_best) = median(t.iter().map(|x| x.1).collect());
        println!("{name:<42} wall median {wall:.3} s (best {best:.3})  cpu median {cpu:.2} s (best {cpu_best:.2})  {:.0} renders/s", messages as f64 / wall);
    }
    Ok(())
}
