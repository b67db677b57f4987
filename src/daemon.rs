//! `rekindle run`: the daemon. Fires every enabled rule on its cron schedule in its time
//! zone (`schedule`: croner computes, tokio-cron-scheduler fires), plans the rules firing
//! together, writes the run to the outbox (messages, contacts, the run record with every skip and the held-out members)
//! and dispatches through the channel plugins. Catches up missed runs once at start,
//! reloads rule files when they change (a broken edit keeps the last valid version of
//! that rule), reloads on SIGHUP, and stops on SIGTERM/SIGINT after a grace period.

use crate::api::{DaemonRequest, RequestError, RunSummary};
use crate::config::Config;
use crate::dispatch::{dispatch, DispatchStats, Observers};
use crate::metrics::Metrics;
use crate::domain::{day_of, ConsentNeeds, Text, Timestamp};
use crate::plan::{plan, Extras, Fate, MemberBase, PlanSettings, Profiles};
use crate::plugin::{ChannelHost, HostOptions};
use crate::rules::render::Renderer;
use crate::rules::{ChannelNames, Rule};
use crate::store::codes::CodeGrant;
use crate::store::model::Contact;
use crate::store::outbox::{ChannelMessage, MessageState, OutboxMessage, RuleRun, RunRecord};
use crate::store::{Store, StoreError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Dispatch(#[from] crate::dispatch::DispatchError),
    #[error(transparent)]
    Plugin(#[from] crate::plugin::PluginError),
    #[error(transparent)]
    Rules(#[from] crate::rules::RulesError),
    #[error("templates: {0}")]
    Template(#[from] minijinja::Error),
    #[error(transparent)]
    Codes(#[from] crate::store::codes::CodeError),
    #[error("scheduler: {0}")]
    Scheduler(String),
    #[error(transparent)]
    Basket(#[from] crate::basket::BasketError),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    /// Work on a blocking thread or a spawned task panicked (a bug) or was cancelled.
    #[error("{0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("no rule to run (none enabled, or --rule names no valid rule)")]
    NoRule,
}

pub struct RunOptions {
    /// Run these rules now (all enabled ones when empty), dispatch until nothing is due,
    /// and exit.
    pub once: bool,
    pub only: Vec<String>,
    /// With `once`: plan as if at this moment (demos, backfills); default now.
    pub at: Option<Timestamp>,
    /// The config file SIGHUP re-reads (None: SIGHUP reloads the rules only).
    pub config_path: Option<PathBuf>,
}

/// The rules in force: the last valid version of each file.
struct LiveRules {
    by_path: BTreeMap<PathBuf, Rule>,
    signature: Vec<(PathBuf, u64, std::time::SystemTime)>,
}

impl LiveRules {
    /// Re-reads the folder; a file that fails keeps its last valid rule. Returns whether
    /// anything changed.
    fn reload(&mut self, dir: &Path, channels: &ChannelNames) -> Result<bool, DaemonError> {
        let sig = signature(dir);
        if sig == self.signature {
            return Ok(false);
        }
        self.signature = sig;
        let set = crate::rules::load(dir, channels)?;
        for d in &set.diagnostics {
            tracing::warn!("{}", set.sources.one_line(d));
        }
        let present: Vec<PathBuf> = self.signature.iter().map(|(p, _, _)| p.clone()).collect();
        self.by_path.retain(|p, _| present.contains(p));
        for r in set.rules {
            self.by_path.insert(r.path.clone(), r);
        }
        for p in &set.failed {
            if self.by_path.contains_key(p) {
                tracing::warn!(file = %p.display(), "the edit is invalid; the last valid version of the rule stays active");
            }
        }
        Ok(true)
    }

    fn rules(&self) -> Vec<Rule> {
        self.by_path.values().cloned().collect()
    }
}

fn signature(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "toml"))
        .filter_map(|e| {
            let md = e.metadata().ok()?;
            Some((e.path(), md.len(), md.modified().ok()?))
        })
        .collect();
    out.sort();
    out
}


/// Plans `rules` at `now` and writes the run to the outbox.
#[allow(clippy::too_many_arguments)]
pub fn execute_run(store: &Store, base: &mut MemberBase, profiles: &mut Profiles, rules: &[&Rule], now: Timestamp, catch_up: bool, settings: &PlanSettings, keep_contact_days: u32) -> Result<RunSummary, DaemonError> {
    let started = std::time::Instant::now();
    let as_of = day_of(now);
    base.refresh(store)?;
    profiles.extras = Extras::of(rules);
    profiles.recompute(base, as_of, settings);
    let mut plans = plan(base, profiles, rules, now, settings);
    let planned_s = started.elapsed().as_secs_f64();
    let owned: Vec<Rule> = rules.iter().map(|r| (*r).clone()).collect();
    let renderer = Renderer::new(&owned)?;
    // a message whose template fails is skipped (its fate says why); the run goes on
    let rendered = crate::plan::messages::render_run(base, profiles, rules, &mut plans, settings, &renderer);
    let rendered_s = started.elapsed().as_secs_f64() - planned_s;
    let run_id = store.next_run_id()?;
    let mut messages = Vec::new();
    let mut contacts = Vec::new();
    let mut record = RunRecord { id: run_id, at: now, as_of, catch_up, committed: true, rules: Vec::new() };
    let mut summary = RunSummary { run: run_id, catch_up, rules: Vec::new(), messages: 0, seconds: 0.0 };
    for (rp, rendered) in plans.iter().zip(rendered) {
        let rule = rules[rp.rule];
        // the held-out members, whom the report follows; the others left out are counted in the funnel
        let held_out = rp.fates.iter().filter(|(_, f)| matches!(f, Fate::HeldOut)).map(|(m, _)| Text::from(base.id(*m as usize))).collect();
        let mut rr = RuleRun { rule: Text::from(rule.id.as_str()), funnel: Vec::new(), held_out, skipped: Vec::new(), messages: 0 };
        for (msg, (member, rendered)) in rp.messages.iter().zip(rendered) {
            let i = msg.member as usize;
            let mut channels = Vec::new();
            for (ch, rendered) in msg.channels.iter().zip(rendered) {
                let address = base.address(i, &member, ch);
                channels.push(ChannelMessage { channel: Text::from(ch.as_str()), address, subject: rendered.subject, text: rendered.text, html: rendered.html });
            }
            contacts.push((base.id(i).to_string(), Contact { ts: msg.send_after, rule: Text::from(rule.id.as_str()), channel: Text::from(msg.channels[0].as_str()), run: run_id }));
            messages.push(OutboxMessage {
                rule: Text::from(rule.id.as_str()),
                member: Text::from(base.id(i)),
                member_name: member.name.to_string(),
                channels,
                current: 0,
                attempts: 0,
                send_after: msg.send_after,
                state: MessageState::Pending,
                provider_id: String::new(),
                sent_at: None,
                errors: Vec::new(),
                offer: serde_json::Value::Object(msg.offer.clone()).to_string(),
            });
        }
        rr.messages = rp.messages.len() as u32;
        rr.funnel = rp.funnel().into_iter().map(|(k, v)| (k.to_string(), v as u64)).collect();
        summary.rules.push((rule.id.clone(), rp.funnel()));
        record.rules.push(rr);
    }
    summary.messages = messages.len();
    // the codes_file codes the run hands out, recorded first: a crash before the run is
    // written leaves them bound to their members (who get them back), never free
    let grants: Vec<(String, CodeGrant)> = plans
        .iter()
        .flat_map(|rp| rp.messages.iter().map(move |m| (rp, m)))
        .filter_map(|(rp, m)| Some((m.pool_code.clone()?, CodeGrant { member: Text::from(base.id(m.member as usize)), rule: Text::from(rules[rp.rule].id.as_str()), run: run_id })))
        .collect();
    store.grant_codes(&grants)?;
    for rp in &plans {
        if let Some(c) = rp.codes_left.as_ref().filter(|c| c.few()) {
            tracing::warn!(rule = %rules[rp.rule].id, file = %c.path.display(), left = c.left, of = c.total, warn_below = c.warn_below, "few coupon codes left");
        }
    }
    store.write_run(&record, &messages, &contacts, keep_contact_days)?;
    // the base's contact logs follow, so the next run counts these messages
    for (member, c) in contacts {
        if let Some(i) = base.index_of(&member) {
            base.contacts.entry(i as u32).or_default().contacts.push(c);
        }
    }
    base.columns.release();
    summary.seconds = started.elapsed().as_secs_f64();
    // where the time went: profiles and audiences through the fates, the templates, the rest (contact fields, the outbox write)
    tracing::info!(run = run_id, catch_up, rules = rules.len(), messages = summary.messages, seconds = summary.seconds, planned_s, rendered_s, "run written to the outbox");
    Ok(summary)
}

/// Co-purchase rules and a value model newer than those the member base holds.
#[derive(Default)]
pub struct FreshModels {
    pub basket: Option<crate::bundles::OfferIndex>,
    pub member: Option<crate::bundles::OfferIndex>,
    pub model: Option<crate::predict::FittedModel>,
}

impl FreshModels {
    /// Puts them in force (what was not refreshed stays as it was).
    pub fn apply(self, base: &mut MemberBase) {
        if self.basket.is_some() {
            base.bundles.basket = self.basket;
        }
        if self.member.is_some() {
            base.bundles.member = self.member;
        }
        if self.model.is_some() {
            base.model = self.model;
        }
    }
}

/// Re-mines co-purchase rules and refits the value model when the stored ones are due
/// (`[bundles] refresh_every_days`, `[predict] refit_every_days`), stores them and
/// returns them. Reads only the store, so the daemon runs it off its event loop while the
/// previous ones stay in force. A fit the data cannot support is logged, not fatal.
pub fn refresh_models(store: &Store, b: &crate::config::BundlesConfig, p: &crate::predict::PredictSettings, today: i32) -> Result<FreshModels, DaemonError> {
    use crate::basket::{transactions, MinedRules};
    use crate::store::RecordKind;
    let mut fresh = FreshModels::default();
    for &scope in &b.scopes {
        let stored: Option<MinedRules> = store.get_record(RecordKind::BundleRules, scope.name())?;
        let due = b.refresh_every_days > 0 && stored.as_ref().is_none_or(|m| today - m.as_of >= b.refresh_every_days as i32);
        if !due {
            continue;
        }
        tracing::info!(scope = scope.name(), "mining co-purchase rules (the stored ones, if any, stay in force until done)");
        let t = std::time::Instant::now();
        let tx = transactions(store, scope, today, b.lookback_days)?;
        let params = crate::bundles::MineParams { min_support: b.min_support, min_confidence: b.min_confidence, min_lift: b.min_lift, two_item_antecedents: false };
        match crate::bundles::mine(&tx, &params) {
            Ok(rules) => {
                tracing::info!(scope = scope.name(), rules = rules.len(), transactions = tx.len(), seconds = t.elapsed().as_secs_f64(), "co-purchase rules mined");
                let index = crate::bundles::OfferIndex::new(rules.clone());
                store.put_record(RecordKind::BundleRules, scope.name(), &MinedRules { scope, as_of: today, lookback_days: b.lookback_days, params, transactions: tx.len(), rules })?;
                match scope {
                    crate::basket::Scope::Basket => fresh.basket = Some(index),
                    crate::basket::Scope::Member => fresh.member = Some(index),
                }
            }
            Err(e) => tracing::warn!(scope = scope.name(), "mining failed: {e}"),
        }
    }
    let stored: Option<crate::predict::FittedModel> = store.get_record(RecordKind::FittedModel, "value")?;
    if p.refit_due(stored.as_ref(), today) {
        tracing::info!("refitting the value model (the stored one, if any, stays in force until done)");
        let t = std::time::Instant::now();
        let histories: Vec<crate::predict::PurchaseHistory> = crate::population::all_order_days(store)?
            .iter()
            .filter_map(|o| crate::predict::PurchaseHistory::from_order_days(o, today, p.unit))
            .collect();
        match crate::predict::fit(&histories, today, p.unit, &p.fit_options()) {
            Ok(model) => {
                tracing::info!(members = histories.len(), seconds = t.elapsed().as_secs_f64(), "value model refitted");
                store.put_record(RecordKind::FittedModel, "value", &model)?;
                fresh.model = Some(model);
            }
            Err(e) => tracing::warn!("the value model was not refitted: {e}"),
        }
    }
    store.flush()?;
    Ok(fresh)
}

/// Starts [`refresh_models`] on its own thread unless one is running; the result comes
/// back on `done`. A plain thread, not the runtime's blocking pool: shutting down does not
/// wait for a mining in progress (it is redone at the next start).
fn spawn_refresh(store: &Store, config: &Config, metrics: &Metrics, running: &mut bool, done: &mpsc::UnboundedSender<Result<FreshModels, DaemonError>>) {
    if std::mem::replace(running, true) {
        return;
    }
    metrics.set_models_refreshing(true);
    let (store, bundles, predict, done) = (store.clone(), config.bundles.clone(), config.predict.clone(), done.clone());
    let spawned = std::thread::Builder::new().name("models".into()).spawn(move || {
        let _ = done.send(refresh_models(&store, &bundles, &predict, day_of(chrono::Utc::now().timestamp())));
    });
    if let Err(e) = spawned {
        *running = false;
        metrics.set_models_refreshing(false);
        tracing::error!("cannot start refreshing co-purchase rules and the value model: {e}");
    }
}

/// Whether a scheduled rule missed a firing between its last run and `now`.
pub fn missed(rule: &Rule, last: Option<Timestamp>, now: Timestamp, default_tz: chrono_tz::Tz) -> bool {
    let (Some(s), Some(last)) = (&rule.schedule, last) else { return false };
    let tz = rule.timezone.unwrap_or(default_tz);
    let Some(last) = chrono::DateTime::from_timestamp(last, 0) else { return false };
    s.next_after(last, tz).is_some_and(|next| next.timestamp() <= now)
}

/// The key of unsubscribe-link signatures: environment, then config, then the store's own.
pub fn unsubscribe_key(store: &Store, config: &Config) -> Result<Vec<u8>, StoreError> {
    match std::env::var("REKINDLE_UNSUBSCRIBE_SECRET") {
        Ok(k) if !k.is_empty() => Ok(k.into_bytes()),
        _ if !config.campaigns.unsubscribe_secret.is_empty() => Ok(config.campaigns.unsubscribe_secret.clone().into_bytes()),
        _ => store.secret("unsubscribe"),
    }
}

/// Runs the daemon (or, with `once`, one run and its dispatch) until stopped.
pub async fn run(mut config: Config, store: Store, options: RunOptions) -> Result<Vec<(RunSummary, DispatchStats)>, DaemonError> {
    let rolled = store.roll_back_unfinished_runs()?;
    if !rolled.is_empty() {
        tracing::warn!(runs = ?rolled, "rolled back runs a crash left unfinished; they will run again when due");
    }
    // the folders granted to file-writing plugins exist before the first send
    for c in config.channels.values() {
        if let Some(dir) = &c.grants.files {
            std::fs::create_dir_all(config.base_dir.join(dir)).map_err(|source| DaemonError::Io { what: format!("creating {}", dir.display()), source })?;
        }
    }
    // each channel's secret callback URL, handed to its plugin for the providers
    let callbacks = crate::feedback::CallbackKeys::load(&store, config.channels.keys().map(String::as_str), &config.campaigns.public_url)?;
    for name in config.channels.keys() {
        tracing::info!(channel = %name, url = %callbacks.redacted_url(name), "provider callbacks (the URL with its secret: rekindle plugin callback-url)");
        tracing::debug!(channel = %name, url = %callbacks.url(name).unwrap_or_default(), "callback URL");
    }
    if config.campaigns.public_url.starts_with("http://") {
        tracing::warn!(public_url = %config.campaigns.public_url, "{}", crate::config::HTTP_PUBLIC_URL_WARNING);
    }
    let host_options = HostOptions { base_dir: config.base_dir.clone(), cache_dir: Some(config.store.path.with_extension("plugin-cache")), callback_urls: callbacks.urls() };
    let channels_cfg = config.channels.clone();
    let host = Arc::new(tokio::task::spawn_blocking(move || ChannelHost::load(&channels_cfg, &host_options)).await??);
    let channel_names = ChannelNames { configured: config.channels.keys().cloned().collect() };
    let mut live = LiveRules { by_path: BTreeMap::new(), signature: Vec::new() };
    live.reload(&config.campaigns.rules_dir, &channel_names)?;
    let mut settings = config.plan_settings(unsubscribe_key(&store, &config)?);
    let mut keep_days = config.campaigns.frequency_cap.days.max(400);
    let observers = Observers { metrics: Arc::new(Metrics::default()), feedback: config.feedback.clone(), links: Some(settings.links.clone()) };

    let t = std::time::Instant::now();
    let with_events = live.by_path.values().any(|r| r.audience.uses_events());
    // a channel that cannot say which consent it needs is refused before anything runs
    let consent = host.consents()?;
    // the member base loads on its own thread; the daemon serves meanwhile (below)
    let loading = tokio::spawn({
        let store = store.clone();
        async move { load_base(&store, consent, with_events).await }
    });
    let loaded = |base: &MemberBase| tracing::info!(members = base.len(), seconds = t.elapsed().as_secs_f64(), "member base loaded");
    let mut profiles = Profiles { as_of: 0, profiles: Vec::new(), cuts: None, extras: Extras::default() };

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut results = Vec::new();
    if options.once {
        let mut base = loading.await??;
        loaded(&base);
        let rules = live.rules();
        let chosen: Vec<&Rule> = rules.iter().filter(|r| if options.only.is_empty() { r.enabled } else { options.only.contains(&r.id) }).collect();
        if chosen.is_empty() {
            return Err(DaemonError::NoRule);
        }
        let now = options.at.unwrap_or_else(|| chrono::Utc::now().timestamp());
        let summary = execute_run(&store, &mut base, &mut profiles, &chosen, now, false, &settings, keep_days)?;
        let stats = dispatch(store.clone(), host.clone(), config.dispatch.clone(), observers, stop_rx, true).await?;
        results.push((summary, stats));
        return Ok(results);
    }

    // stale co-purchase rules and value model are refreshed off the loop: the daemon
    // serves at once, with the stored ones in force meanwhile
    let (models_tx, mut models_rx) = mpsc::unbounded_channel::<Result<FreshModels, DaemonError>>();
    let mut refreshing = false;
    spawn_refresh(&store, &config, &observers.metrics, &mut refreshing, &models_tx);
    // the HTTP API: public unsubscribe links and provider callbacks, the admin endpoints
    let (request_tx, mut request_rx) = mpsc::channel::<DaemonRequest>(64);
    let listener = tokio::net::TcpListener::bind(&config.api.listen).await.map_err(|source| DaemonError::Io { what: format!("cannot listen on {}", config.api.listen), source })?;
    let app = crate::api::router(crate::api::Api::new(store.clone(), settings.links.clone(), &config.api_settings(), host.clone(), observers.clone(), Some(request_tx)).with_callbacks(callbacks));
    let mut api_stop = stop_rx.clone();
    // requests in flight get the daemon's shutdown grace, like sends
    let grace = Duration::try_from_secs_f64(config.dispatch.shutdown_grace_seconds).unwrap_or(Duration::from_secs(10));
    let api_server = tokio::spawn(crate::api::serve(listener, app, config.api.clone(), async move { let _ = api_stop.wait_for(|s| *s).await; }, grace));
    tracing::info!(listen = %config.api.listen, admin = config.api.token().is_some(), "API listening");
    // dispatch runs beside the scheduler for the daemon's whole life
    let mut dispatcher = tokio::spawn(dispatch(store.clone(), host.clone(), config.dispatch.clone(), observers.clone(), stop_rx.clone(), false));
    let mut stop_tx = stop_tx;
    // until the member base is in, unsubscribe links, provider callbacks and the sends
    // already queued are served; requests that need the base (previews, explanations,
    // member cards, runs) wait in the request queue
    let mut base = match loading.await.map_err(DaemonError::from).and_then(|r| r) {
        Ok(base) => base,
        Err(e) => {
            let _ = stop_tx.send(true);
            let _ = tokio::join!(api_server, dispatcher);
            return Err(e);
        }
    };
    loaded(&base);
    let mut base_stale = false;

    // catch-up: a firing missed while the daemon was down runs once now
    let now = chrono::Utc::now().timestamp();
    if config.campaigns.catch_up {
        let rules = live.rules();
        let mut due = Vec::new();
        for r in rules.iter().filter(|r| r.enabled) {
            if missed(r, store.last_run(&r.id)?, now, settings.default_tz) {
                due.push(r);
            }
        }
        if !due.is_empty() {
            let s = execute_run(&store, &mut base, &mut profiles, &due, now, true, &settings, keep_days)?;
            observers.metrics.observe_run(s.seconds);
            tracing::info!(run = s.run, rules = ?due.iter().map(|r| &r.id).collect::<Vec<_>>(), "catch-up run");
        }
    }

    let (fire_tx, mut fire_rx) = mpsc::unbounded_channel::<String>();
    // each firing sends the rule id; croner computes when (crate::schedule)
    let fire: crate::schedule::Fire = {
        let fire_tx = fire_tx.clone();
        Arc::new(move |id: &str, _| {
            let _ = fire_tx.send(id.to_string());
        })
    };
    let scheduler_err = |e: crate::schedule::SchedulerError| DaemonError::Scheduler(e.to_string());
    let mut scheduler = crate::schedule::Scheduler::start(&live.rules(), settings.default_tz, crate::schedule::Clock::system(), fire).await.map_err(scheduler_err)?;
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).map_err(|source| DaemonError::Io { what: "installing a signal handler".into(), source })?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(|source| DaemonError::Io { what: "installing a signal handler".into(), source })?;
    let mut poll = tokio::time::interval(Duration::from_secs(2));
    let mut hourly = tokio::time::interval(Duration::from_secs(3600));
    hourly.tick().await;
    let mut minutely = tokio::time::interval(Duration::from_secs(60));
    tracing::info!(rules = live.by_path.len(), "daemon running");
    loop {
        tokio::select! {
            Some(first) = fire_rx.recv() => {
                // rules firing together are planned together
                tokio::time::sleep(Duration::from_millis(300)).await;
                let mut ids = vec![first];
                while let Ok(id) = fire_rx.try_recv() { ids.push(id); }
                let rules = live.rules();
                let due: Vec<&Rule> = rules.iter().filter(|r| r.enabled && ids.contains(&r.id)).collect();
                if !due.is_empty() {
                    if std::mem::take(&mut base_stale) {
                        base = reload_base(&store, &live, base).await?;
                        profiles.as_of = 0;
                    }
                    let now = chrono::Utc::now().timestamp();
                    match execute_run(&store, &mut base, &mut profiles, &due, now, false, &settings, keep_days) {
                        Ok(s) => {
                            observers.metrics.observe_run(s.seconds);
                            tracing::info!(run = s.run, messages = s.messages, "scheduled run");
                        }
                        Err(e) => tracing::error!("run failed: {e}"),
                    }
                }
            }
            Some(request) = request_rx.recv() => {
                if matches!(request, DaemonRequest::StoreChanged) {
                    base_stale = true;
                    continue;
                }
                if std::mem::take(&mut base_stale) {
                    base = reload_base(&store, &live, base).await?;
                        profiles.as_of = 0;
                }
                answer(request, &store, &mut base, &mut profiles, &live, &settings, keep_days, &observers, &channel_names);
                base.columns.release();
            }
            _ = poll.tick() => {
                if live.reload(&config.campaigns.rules_dir, &channel_names)? {
                    tracing::info!(rules = live.by_path.len(), "rules reloaded");
                    scheduler.replace(&live.rules(), settings.default_tz).await.map_err(scheduler_err)?;
                }
            }
            _ = hourly.tick() => spawn_refresh(&store, &config, &observers.metrics, &mut refreshing, &models_tx),
            Some(fresh) = models_rx.recv() => {
                refreshing = false;
                observers.metrics.set_models_refreshing(false);
                match fresh {
                    Ok(fresh) => fresh.apply(&mut base),
                    Err(e) => tracing::error!("refreshing co-purchase rules and the value model: {e}"),
                }
            }
            _ = minutely.tick() => {
                // provider reports parked this long never matched a send of ours
                let expired = chrono::Utc::now().timestamp() - i64::from(config.feedback.parked_expire_minutes) * 60;
                match store.drop_parked_before(expired) {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(provider_ids = n, "dropped provider reports that matched no message"),
                    Err(e) => tracing::error!("dropping old parked reports: {e}"),
                }
            }
            _ = hup_signal(&mut hup) => {
                live.signature.clear();
                let Some(path) = &options.config_path else {
                    tracing::info!("SIGHUP: reloading rules");
                    continue;
                };
                match Config::load(path, true) {
                    Err(e) => tracing::error!("SIGHUP: {e}; keeping the running configuration"),
                    Ok(new) => {
                        if new.channels.keys().ne(config.channels.keys()) || new.store.path != config.store.path || new.api != config.api {
                            tracing::warn!("SIGHUP: channel plugins, the store path and [api] change only with a restart");
                        }
                        // safe to change while running: limits, quiet hours, rules folder, dispatch
                        settings = new.plan_settings(unsubscribe_key(&store, &new)?);
                        keep_days = new.campaigns.frequency_cap.days.max(400);
                        if new.dispatch != config.dispatch {
                            let _ = stop_tx.send(true);
                            dispatcher.await??;
                            let (tx, rx) = watch::channel(false);
                            stop_tx = tx;
                            dispatcher = tokio::spawn(dispatch(store.clone(), host.clone(), new.dispatch.clone(), observers.clone(), rx, false));
                        }
                        let (channels, api) = (config.channels.clone(), config.api.clone());
                        config = new;
                        config.channels = channels;
                        config.api = api;
                        tracing::info!("SIGHUP: configuration reloaded");
                    }
                }
            }
            _ = term_signal(&mut term) => {
                tracing::info!("stopping: no new runs; sends in flight get the grace period");
                break;
            }
            _ = tokio::signal::ctrl_c() => {
                tracing::info!("interrupted: stopping");
                break;
            }
        }
    }
    scheduler.shutdown().await;
    let _ = stop_tx.send(true);
    let _ = api_server.await;
    let stats = dispatcher.await??;
    tracing::info!(sent = stats.sent, "daemon stopped");
    Ok(results)
}

async fn load_base(store: &Store, consent: ConsentNeeds, with_events: bool) -> Result<MemberBase, DaemonError> {
    let store = store.clone();
    Ok(tokio::task::spawn_blocking(move || MemberBase::load(&store, consent, with_events, &|_| {})).await??)
}

/// A fresh base after ingests (the models and bundles stay those of the old one).
async fn reload_base(store: &Store, live: &LiveRules, old: MemberBase) -> Result<MemberBase, DaemonError> {
    let t = std::time::Instant::now();
    let mut base = load_base(store, old.consent, live.by_path.values().any(|r| r.audience.uses_events())).await?;
    base.bundles = old.bundles;
    base.model = old.model.or(base.model);
    tracing::info!(members = base.len(), seconds = t.elapsed().as_secs_f64(), "member base reloaded after ingest");
    Ok(base)
}

/// Answers one API request from the daemon's state (on the loop: a request waits for a
/// run in progress, and a run for a request).
#[allow(clippy::too_many_arguments)]
fn answer(request: DaemonRequest, store: &Store, base: &mut MemberBase, profiles: &mut Profiles, live: &LiveRules, settings: &PlanSettings, keep_days: u32, observers: &Observers, channel_names: &ChannelNames) {
    let rules = live.rules();
    let find = |id: &str| rules.iter().find(|r| r.id == id).ok_or_else(|| RequestError::NotFound(format!("no valid rule {id:?} (valid: {})", rules.iter().map(|r| r.id.as_str()).collect::<Vec<_>>().join(", "))));
    let today = day_of(chrono::Utc::now().timestamp());
    match request {
        DaemonRequest::StoreChanged => {}
        DaemonRequest::RunNow { rules: ids, reply } => {
            let chosen: Result<Vec<&Rule>, RequestError> = if ids.is_empty() { Ok(rules.iter().filter(|r| r.enabled).collect()) } else { ids.iter().map(|id| find(id)).collect() };
            let result = chosen.and_then(|chosen| {
                if chosen.is_empty() {
                    return Err(RequestError::Invalid("no rule is enabled".to_string()));
                }
                let now = chrono::Utc::now().timestamp();
                execute_run(store, base, profiles, &chosen, now, false, settings, keep_days).map_err(RequestError::internal)
            });
            if let Ok(s) = &result {
                observers.metrics.observe_run(s.seconds);
                tracing::info!(run = s.run, messages = s.messages, "run requested through the API");
            }
            let _ = reply.send(result);
        }
        DaemonRequest::Rules { reply } => {
            let now = chrono::Utc::now();
            let list: Vec<serde_json::Value> = rules
                .iter()
                .map(|r| {
                    let tz = r.timezone.unwrap_or(settings.default_tz);
                    serde_json::json!({
                        "id": r.id, "file": r.path.display().to_string(), "enabled": r.enabled, "priority": r.priority,
                        "schedule": r.schedule.as_ref().map(|s| s.cron.clone()), "timezone": tz.name(),
                        "next_run": r.schedule.as_ref().and_then(|s| s.next_after(now, tz)).map(|t| t.to_rfc3339()),
                        "last_run": store.last_run(&r.id).ok().flatten().and_then(|t| chrono::DateTime::from_timestamp(t, 0)).map(|t| t.to_rfc3339()),
                        "channels": r.message.channels,
                    })
                })
                .collect();
            let _ = reply.send(serde_json::Value::Array(list));
        }
        DaemonRequest::Preview { rule, sample, reply } => {
            let result = find(&rule).and_then(|r| {
                // unsubscribes and stopped addresses since the last run count
                base.refresh(store).map_err(RequestError::internal)?;
                ready_profiles(base, profiles, &[r], today, settings);
                let plans = plan(base, profiles, &[r], chrono::Utc::now().timestamp(), settings);
                let renderer = Renderer::new(std::slice::from_ref(r)).map_err(RequestError::internal)?;
                let mut out = Vec::new();
                crate::plan::report::preview_table(&mut out, base, profiles, r, &plans[0], settings, &renderer, sample).map_err(RequestError::internal)?;
                Ok(String::from_utf8_lossy(&out).into_owned())
            });
            let _ = reply.send(result);
        }
        DaemonRequest::Explain { member, rule, json, reply } => {
            let result = (|| {
                let chosen: Vec<&Rule> = match &rule {
                    Some(id) => vec![find(id)?],
                    None => rules.iter().filter(|r| r.enabled).collect(),
                };
                let i = base.index_of(&member).ok_or_else(|| RequestError::NotFound(format!("no member {member:?}")))?;
                // unsubscribes and stopped addresses since the last run count
                base.refresh(store).map_err(RequestError::internal)?;
                ready_profiles(base, profiles, &chosen, today, settings);
                let now = chrono::Utc::now().timestamp();
                let plans = plan(base, profiles, &chosen, now, settings);
                let mut out = Vec::new();
                crate::plan::report::explain_member(&mut out, json, base, profiles, i as u32, &chosen, &plans, settings, now).map_err(RequestError::internal)?;
                Ok(String::from_utf8_lossy(&out).into_owned())
            })();
            let _ = reply.send(result);
        }
        DaemonRequest::Member { id, reply } => {
            let result = (|| {
                let i = base.index_of(&id).ok_or_else(|| RequestError::NotFound(format!("no member {id:?}")))?;
                ready_profiles(base, profiles, &[], today, settings);
                let m = store.member(&id).map_err(RequestError::internal)?.ok_or_else(|| RequestError::NotFound(format!("no member {id:?}")))?;
                let m = &m;
                let full = profiles.complete(&base.columns.columns(), base.model.as_ref(), i, settings);
                let channels: Vec<&str> = channel_names.configured.iter().map(String::as_str).collect();
                let consent_in_force = store.consent(&id, m, &channels, &base.consent).map_err(RequestError::internal)?;
                let contacts = base.contacts.get(&(i as u32)).map(|l| l.contacts.as_slice()).unwrap_or_default();
                let (history, events) = (store.history(&id).map_err(RequestError::internal)?, store.events(&id).map_err(RequestError::internal)?);
                // what `member show` prints, so the CLI shows the same through the daemon
                let card = crate::population::MemberCard {
                    id: &id,
                    member: m,
                    profile: &full,
                    consent: &consent_in_force,
                    history: history.as_ref(),
                    events: events.as_ref(),
                    as_of: today,
                    default_timezone: settings.default_tz.name(),
                };
                card.json(&store.suppressed(&id).map_err(RequestError::internal)?, contacts).map_err(RequestError::internal)
            })();
            let _ = reply.send(result);
        }
    }
}

/// Profiles as of `today` with what `rules` read, computed only when stale.
fn ready_profiles(base: &MemberBase, profiles: &mut Profiles, rules: &[&Rule], today: i32, settings: &PlanSettings) {
    let needed = Extras::of(rules);
    if profiles.as_of != today || profiles.profiles.len() != base.len() || !profiles.extras.cover(needed) {
        profiles.extras = needed;
        profiles.recompute(base, today, settings);
    }
}

async fn hup_signal(s: &mut tokio::signal::unix::Signal) {
    s.recv().await;
}

async fn term_signal(s: &mut tokio::signal::unix::Signal) {
    s.recv().await;
}
