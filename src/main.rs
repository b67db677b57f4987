//! The `rekindle` command line: parses arguments, loads the config, calls the library and
//! prints. `anyhow` lives here and nowhere else.

use anyhow::{bail, Context, Result};
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use rekindle::config::Config;
use rekindle::domain::{parse_date, Day, DayFmt, TsFmt};
use rekindle::ingest::{self, rows::Kind, ImportOptions};
use rekindle::population::{ExportFormat, Population, Stats};
use rekindle::basket::Scope;
use rekindle::plan::report::PreviewFormat;
use rekindle::store::Store;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

mod remote;

#[derive(Parser)]
#[command(name = "rekindle", version, about = "Win old customers back: member profiles, campaign rules and channel plugins, self-hosted.")]
struct Cli {
    /// The configuration file (a missing config.toml means the documented defaults).
    #[arg(long, global = true, default_value = "config.toml", env = "REKINDLE_CONFIG")]
    config: PathBuf,
    /// The sled store to use, overriding `store.path` of the config.
    #[arg(long, global = true, env = "REKINDLE_DB")]
    db: Option<PathBuf>,
    /// Log lines as text (colours only on a terminal) or as JSON objects, one a line.
    /// Which lines: REKINDLE_LOG (tracing's filter syntax; default `warn`, and
    /// `warn,rekindle=info` for `run`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "REKINDLE_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Import members, orders, events or products from CSV or NDJSON files.
    ///
    /// The kind of each file is told from its header (or the first NDJSON object); bad rows
    /// are reported with file, line and reason and skipped, and the good rows are kept.
    /// Re-importing the same file changes nothing.
    Import {
        /// Files to import (members before orders is usual, but any order works).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Treat every file as this kind instead of telling it from the header.
        #[arg(long, value_enum)]
        kind: Option<Kind>,
        /// Also write every bad row (file,line,reason) to this CSV file.
        #[arg(long)]
        rejects: Option<PathBuf>,
        /// How many bad rows to print per file (all go to --rejects).
        #[arg(long, default_value_t = 20)]
        show_bad: usize,
        /// Exit with an error when any row was bad (the good rows are imported all the
        /// same; without it only a file whose every row was bad fails the command).
        #[arg(long)]
        strict: bool,
    },
    /// Member profiles for the whole base.
    Profiles {
        #[command(subcommand)]
        command: ProfilesCommand,
    },
    /// Member cards.
    Member {
        #[command(subcommand)]
        command: MemberCommand,
    },
    /// Channel plugins: scaffold a new one, check a .wasm, send a real test message.
    #[command(subcommand)]
    Plugin(rekindle::plugin::cli::PluginCommand),
    /// Predicted member value: fit BG/NBD and Gamma-Gamma on the store's purchase history.
    Predict {
        #[command(subcommand)]
        command: PredictCommand,
    },
    /// Co-purchase rules ("of those who bought A, 30% also bought B") and who will buy X.
    Bundles {
        #[command(subcommand)]
        command: BundlesCommand,
    },
    /// The daemon: runs every enabled rule on its schedule and dispatches the messages
    /// through the channel plugins until SIGTERM. `--once` runs the rules now, sends
    /// what is due and exits.
    Run {
        /// Run the rules now, send what is due, and exit (instead of staying up).
        #[arg(long)]
        once: bool,
        /// With --once: only these rules (default: every enabled rule).
        #[arg(long)]
        rule: Vec<String>,
        /// With --once: plan as if at this moment (UTC, like 2026-11-24T12:00:00Z), for
        /// demos and backfills; quiet hours and caps are judged at that moment.
        #[arg(long, value_parser = rekindle::domain::parse_timestamp)]
        at: Option<i64>,
    },
    /// Sends, conversions, revenue and lift over the holdout group, per rule, for one run
    /// (a number) or every run of a rule (its id).
    Report {
        /// A run number (from `outbox status` or the daemon's log), or a rule id.
        run_or_rule: String,
        /// table for people, json for programs.
        #[arg(long, value_enum, default_value_t = SummaryFormat::Table)]
        format: SummaryFormat,
    },
    /// The outbox: counts, dead letters, retrying them.
    Outbox {
        #[command(subcommand)]
        command: OutboxCommand,
    },
    /// Campaign rules: check the files, list them, preview an audience.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Why a member is or is not in a rule's audience: every condition with the member's
    /// value, then consent, cooldown, frequency cap, holdout and the planner's verdict.
    Explain {
        /// The member id.
        member: String,
        /// Only this rule (default: every rule).
        #[arg(long)]
        rule: Option<String>,
        /// The day the audience is judged on (UTC, YYYY-MM-DD; default today).
        #[arg(long, value_parser = parse_date)]
        as_of: Option<Day>,
        /// Text (table), or one JSON document: per rule the conditions with the member's
        /// values, consent, last message, cap, holdout, fate and verdict.
        #[arg(long, value_enum, default_value_t = SummaryFormat::Table)]
        format: SummaryFormat,
    },
    /// Counts and shares by stage, price tier and value tier, and the spend distribution.
    Stats {
        /// The day the metrics are computed for (UTC, YYYY-MM-DD; default today).
        #[arg(long, value_parser = parse_date)]
        as_of: Option<Day>,
        /// table for people, json for programs (money in minor units).
        #[arg(long, value_enum, default_value_t = SummaryFormat::Table)]
        format: SummaryFormat,
    },
    /// Write deterministic sample data (members, orders, events, products) into a folder.
    Generate {
        /// The folder to write into.
        dir: PathBuf,
        /// How many members.
        #[arg(long, default_value_t = 10_000)]
        members: usize,
        /// How many order lines to aim for (default about 11 per member).
        #[arg(long)]
        lines: Option<usize>,
        /// The random seed: the same seed and counts give the same files.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Shell completions on standard output, for bash, zsh, fish, elvish or powershell
    /// (bash: `rekindle completions bash > /etc/bash_completion.d/rekindle`).
    Completions {
        /// The shell to complete in.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Manual pages in roff: `rekindle.1` on standard output (`rekindle man | man -l -`), or
    /// with --dir one page per command (rekindle.1, rekindle-import.1, ...) written there.
    Man {
        /// Write every command's page into this folder (created if missing).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// The JSON Schema of config.toml, generated from the types it is read with, for
    /// editors that complete and check TOML keys (Even Better TOML, taplo): put
    /// `#:schema ./config.schema.json` on the file's first line.
    Schema {
        /// Which file's schema.
        #[arg(value_enum)]
        of: SchemaOf,
    },
    /// The demo: generate sample data, import it into the store, and print stats.
    Demo {
        /// Where the sample data goes.
        #[arg(long, default_value = "demo")]
        dir: PathBuf,
        /// How many members to generate.
        #[arg(long, default_value_t = 10_000)]
        members: usize,
    },
}

#[derive(Subcommand)]
enum ProfilesCommand {
    /// One row per member with every metric of DATA.md.
    Export {
        /// The day the metrics are computed for (UTC, YYYY-MM-DD; default today).
        #[arg(long, value_parser = parse_date)]
        as_of: Option<Day>,
        /// csv (one header row), ndjson (one JSON object a line) or json (one array of them).
        #[arg(long, value_enum, default_value_t = ExportFormat::Csv)]
        format: ExportFormat,
        /// Write here instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum SchemaOf {
    /// config.toml
    Config,
}

// One `--format` vocabulary: table (for people), csv, json, ndjson; each command takes
// the ones that make sense for what it prints.

/// A summary: one table, or one JSON document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum SummaryFormat {
    Table,
    Json,
}

/// A list of rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ListFormat {
    Table,
    Csv,
    Json,
    Ndjson,
}

#[derive(Subcommand)]
enum OutboxCommand {
    /// Queued, due and dead messages, and the last runs.
    Status {
        /// table for people, json for programs (with every run).
        #[arg(long, value_enum, default_value_t = SummaryFormat::Table)]
        format: SummaryFormat,
    },
    /// Messages whose retries ran out, with their last error.
    DeadLetters {
        /// table for people; csv, json or ndjson for programs.
        #[arg(long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
    },
    /// Put dead letters back in the queue (one by id like 12-345, or --all).
    Retry {
        /// The dead letter's id, as `outbox dead-letters` prints it (like 12-345).
        id: Option<String>,
        /// Every dead letter.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Check rule files: every error at once with file, line, column, snippet and hint.
    /// Exits non-zero on errors, so it can run in a shop's own CI.
    Check {
        /// A rule file or a folder of them (default `campaigns.rules_dir`).
        path: Option<PathBuf>,
    },
    /// The valid rules with their schedule, next run and priority.
    List {
        /// A rule file or a folder of them (default `campaigns.rules_dir`).
        path: Option<PathBuf>,
        /// table for people; csv, json or ndjson for programs.
        #[arg(long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
    },
    /// A rule's audience as of a day: the funnel (matched, no consent, capped, held out,
    /// to send), breakdowns by stage and tier, and sample messages. Nothing is sent or
    /// recorded. `--format csv|ndjson` prints one row per matched member instead.
    Preview {
        /// The rule's id.
        rule: String,
        /// The day the audience is judged on (UTC, YYYY-MM-DD; default today).
        #[arg(long, value_parser = parse_date)]
        as_of: Option<Day>,
        /// table (funnel, breakdowns, samples), or csv / ndjson (one row per matched member).
        #[arg(long, value_enum, default_value_t = PreviewFormat::Table)]
        format: PreviewFormat,
        /// Rendered sample messages per channel.
        #[arg(long, default_value_t = 3)]
        sample: usize,
    },
}

#[derive(Subcommand)]
enum PredictCommand {
    /// Fit both models as of a date, store them, and check them on the orders after it.
    ///
    /// Afterwards `profiles export` and `member show` carry p_alive, expected purchases
    /// over `predict.horizon_days`, expected spend per purchase, predicted value and churn
    /// risk for every member with an order.
    Fit {
        /// Fit on the orders up to this day (UTC, YYYY-MM-DD; default today); later orders check the fit.
        #[arg(long, value_parser = parse_date)]
        as_of: Option<Day>,
        /// The time unit of the fit (default `predict.unit` of the config).
        #[arg(long)]
        unit: Option<String>,
    },
}

#[derive(Subcommand)]
enum BundlesCommand {
    /// Mine association rules A -> B and store them with the date they were mined.
    ///
    /// support = count(A and B) / N, confidence = count(A and B) / count(A), lift =
    /// confidence / (count(B) / N); N is the number of orders (basket scope) or members
    /// who bought something (member scope). Sorted by lift, then confidence.
    Mine {
        /// basket: items bought in one order; member: items bought by one member, ever.
        #[arg(long, value_enum, default_value_t = Scope::Basket)]
        scope: Scope,
        /// Keep rules whose A and B together are in at least this share of baskets.
        #[arg(long, default_value_t = 0.001)]
        min_support: f64,
        /// Keep rules where at least this share of baskets with A also hold B.
        #[arg(long, default_value_t = 0.1)]
        min_confidence: f64,
        /// Keep rules with at least this lift (1.0: B no likelier with A than without).
        #[arg(long)]
        min_lift: Option<f64>,
        /// Also mine rules with two items on the left, {A,B} -> C.
        #[arg(long)]
        two_item_antecedents: bool,
        /// Only orders of the last N days before --as-of count.
        #[arg(long)]
        lookback_days: Option<u32>,
        /// Mine the orders up to this day (UTC, YYYY-MM-DD; default today).
        #[arg(long, value_parser = parse_date)]
        as_of: Option<Day>,
        /// table for people, csv for spreadsheets.
        #[arg(long, value_enum, default_value_t = TableFormat::Table)]
        format: TableFormat,
        /// Print at most this many rules (all are stored).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Members who have not bought SKU, scored by the strongest stored rule leading to it.
    Audience {
        /// The product the audience has not bought yet.
        #[arg(long)]
        sku: String,
        /// How many members to print, best score first.
        #[arg(long, default_value_t = 20)]
        top: usize,
        /// Which stored rules to use (mined by `bundles mine --scope ...`).
        #[arg(long, value_enum, default_value_t = Scope::Basket)]
        scope: Scope,
        /// Leave out members scoring below this (the rule's confidence).
        #[arg(long, default_value_t = 0.0)]
        min_score: f64,
        /// Judge purchases up to this day (UTC, YYYY-MM-DD; default today).
        #[arg(long, value_parser = parse_date)]
        as_of: Option<Day>,
        /// table for people, csv for spreadsheets.
        #[arg(long, value_enum, default_value_t = TableFormat::Table)]
        format: TableFormat,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum TableFormat {
    Table,
    Csv,
}

#[derive(Subcommand)]
enum MemberCommand {
    /// A readable card: metrics, scores, last orders, consent.
    Show {
        /// The member id.
        id: String,
        /// The day the metrics are computed for (UTC, YYYY-MM-DD; default today).
        #[arg(long, value_parser = parse_date)]
        as_of: Option<Day>,
        /// The card (table), or one JSON document: fields, profile, consent, unsubscribes,
        /// stopped addresses, recent contacts and the card (the API's, from the daemon too).
        #[arg(long, value_enum, default_value_t = SummaryFormat::Table)]
        format: SummaryFormat,
    },
}

/// `println!` and `print!` that return the write's error instead of panicking: a reader
/// that goes away (`| head`) ends the command quietly (see `main`).
macro_rules! println {
    ($($arg:tt)*) => { writeln!(std::io::stdout().lock(), $($arg)*)? };
}
macro_rules! print {
    ($($arg:tt)*) => { write!(std::io::stdout().lock(), $($arg)*)? };
}

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = Cli::parse();
    // the daemon says what it listens on and what it loaded; other commands print their
    // own results and log only what went wrong; other crates' chatter stays below warn
    let default_filter = if matches!(cli.command, Command::Run { .. }) { "warn,rekindle=info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("REKINDLE_LOG").unwrap_or_else(|_| default_filter.into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().with_ansi(false).init(),
    }
    if let Err(e) = run(cli) {
        if e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)) {
            return; // the reader went away (`| head`): not an error
        }
        eprintln!("error: {}", causes(&e));
        std::process::exit(1);
    }
}

/// An error and its causes, each said once: many errors already name their cause in their
/// own message ("cannot read rules from ./rules: No such file or directory"), and
/// repeating the chain after it said it twice.
fn causes(e: &anyhow::Error) -> String {
    let mut shown = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !shown.contains(&text) {
            if !shown.is_empty() {
                shown.push_str(": ");
            }
            shown.push_str(&text);
        }
    }
    shown
}

fn today() -> Day {
    rekindle::domain::day_of(chrono::Utc::now().timestamp())
}

fn open_store(cli: &Cli, config: &Config) -> Result<Store> {
    let path = cli.db.clone().unwrap_or_else(|| config.store.path.clone());
    // a command that only reads never creates a store: in the wrong folder, it says so
    let reads_only = matches!(cli.command, Command::Stats { .. } | Command::Profiles { .. } | Command::Member { .. } | Command::Explain { .. } | Command::Report { .. } | Command::Outbox { .. });
    if reads_only && !path.exists() {
        bail!("no store at {}: import data first (rekindle import FILE...), or point --db or [store] path at the store", path.display());
    }
    Ok(Store::open(&path, config.store.cache_mb)?)
}

fn run(cli: Cli) -> Result<()> {
    // generated from the definitions above: no config or store involved
    match &cli.command {
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "rekindle", &mut script);
            std::io::stdout().lock().write_all(&script)?;
            return Ok(());
        }
        Command::Schema { of: SchemaOf::Config } => {
            println!("{}", serde_json::to_string_pretty(&schemars::schema_for!(Config))?);
            return Ok(());
        }
        Command::Man { dir: Some(dir) } => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(Cli::command(), dir).with_context(|| format!("writing manual pages into {}", dir.display()))?;
            return Ok(());
        }
        Command::Man { dir: None } => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut page)?;
            std::io::stdout().lock().write_all(&page)?;
            return Ok(());
        }
        _ => {}
    }
    let explicit = std::env::args().any(|a| a == "--config" || a.starts_with("--config=")) || std::env::var_os("REKINDLE_CONFIG").is_some();
    let config = Config::load(&cli.config, explicit)?;
    match &cli.command {
        Command::Import { files, kind, rejects, show_bad, strict } => {
            let outcome = match store_or_daemon(&cli, &config)? {
                Ok(store) => import(&store, files, *kind, config.checked.phone_region, rejects.as_deref(), *show_bad)?,
                Err(remote) => {
                    if rejects.is_some() {
                        bail!("--rejects needs the store; the daemon holds it (its API reports bad rows on the terminal)");
                    }
                    remote.import(files, *kind, *show_bad)?
                }
            };
            if outcome.bad > 0 {
                eprintln!("{} bad rows skipped; every good row was imported", outcome.bad);
            }
            if !outcome.all_bad.is_empty() {
                bail!("nothing imported from {}: every row was bad (a different file or kind than meant?)", outcome.all_bad.join(", "));
            }
            if *strict && outcome.bad > 0 {
                bail!("{} bad rows (--strict)", outcome.bad);
            }
        }
        Command::Profiles { command: ProfilesCommand::Export { as_of, format, output } } => {
            let store = open_store(&cli, &config)?;
            let pop = profiles(&store, &config, as_of.unwrap_or_else(today))?;
            match output {
                Some(p) => {
                    let mut f = std::io::BufWriter::new(std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?);
                    pop.export(&mut f, *format)?;
                }
                None => pop.export(&mut std::io::stdout().lock(), *format)?,
            }
        }
        Command::Member { command: MemberCommand::Show { id, as_of, format } } => match store_or_daemon(&cli, &config)? {
            Ok(store) => show_member(&store, &config, id, as_of.unwrap_or_else(today), *format)?,
            Err(remote) => {
                if as_of.is_some_and(|d| d != today()) {
                    bail!("the daemon holds the store and shows members as of today only");
                }
                let shown: serde_json::Value = serde_json::from_str(&remote.get(&format!("/api/members/{}", url_segment(id)))?)?;
                match format {
                    SummaryFormat::Json => println!("{}", serde_json::to_string_pretty(&shown)?),
                    SummaryFormat::Table => print!("{}", shown["card"].as_str().unwrap_or_default()),
                }
            }
        },
        Command::Plugin(cmd) => {
            use rekindle::plugin::cli::PluginCommand;
            let callback_urls = match cmd {
                PluginCommand::CallbackUrl { channel, rotate, keep_old_hours } => match store_or_daemon(&cli, &config)? {
                    Ok(store) => {
                        if !config.channels.contains_key(channel) {
                            bail!("no channel named `{channel}` is configured");
                        }
                        if *rotate {
                            let until = chrono::Utc::now().timestamp() + i64::from(*keep_old_hours) * 3600;
                            store.rotate_callback_secret(channel, until)?;
                            eprintln!("rotated: the old URL of {channel} works for {keep_old_hours} more hours; give providers the new one");
                        }
                        rekindle::feedback::CallbackKeys::load(&store, config.channels.keys().map(String::as_str), &config.campaigns.public_url)?.urls()
                    }
                    Err(_) if *rotate => bail!("the daemon holds the store: stop it to rotate a callback secret"),
                    Err(remote) => serde_json::from_str(&remote.get("/api/callbacks")?)?,
                },
                // a test send asks for delivery reports when the store is free to say where
                PluginCommand::Send { .. } => match open_store(&cli, &config) {
                    Ok(store) => rekindle::feedback::CallbackKeys::load(&store, config.channels.keys().map(String::as_str), &config.campaigns.public_url)?.urls(),
                    Err(_) => Default::default(),
                },
                _ => Default::default(),
            };
            let options = rekindle::plugin::HostOptions { callback_urls, ..host_options(&config) };
            rekindle::plugin::cli::run(cmd.clone(), &config.channels, &options, &mut std::io::stdout())?;
        }
        Command::Predict { command: PredictCommand::Fit { as_of, unit } } => {
            let store = open_store(&cli, &config)?;
            predict_fit(&store, &config, as_of.unwrap_or_else(today), unit.as_deref())?;
        }
        Command::Bundles { command } => {
            let store = open_store(&cli, &config)?;
            bundles(&store, command)?;
        }
        Command::Run { once, rule, at } => {
            let store = match store_or_daemon(&cli, &config)? {
                Ok(store) => store,
                Err(remote) if *once && at.is_none() => {
                    // the daemon runs them now and dispatches them itself
                    let targets = if rule.is_empty() { vec!["enabled".to_string()] } else { rule.clone() };
                    for r in targets {
                        let summary: serde_json::Value = serde_json::from_str(&remote.post(&format!("/api/rules/{}/run", url_segment(&r)), Vec::new())?)?;
                        println!("run {} by the daemon: {} messages planned ({:.2}s)", summary["run"], summary["messages"], summary["seconds"].as_f64().unwrap_or(0.0));
                    }
                    return Ok(());
                }
                Err(_) => bail!("the daemon holds the store: a second daemon cannot start (run --once without --at asks it to run rules now)"),
            };
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            if at.is_some() && !once {
                bail!("--at only goes with --once");
            }
            let options = rekindle::daemon::RunOptions { once: *once, only: rule.clone(), at: *at, config_path: Some(cli.config.clone()) };
            let results = runtime.block_on(rekindle::daemon::run(config.clone(), store.clone(), options))?;
            print_runs(&store, &results)?;
        }
        Command::Report { run_or_rule, format } => {
            let store = match open_store(&cli, &config) {
                Ok(s) => Ok(s),
                Err(e) if daemon_running(&e) => Err(remote::Remote::new(&config)?),
                Err(e) => return Err(e),
            };
            let window = config.campaigns.attribution_days;
            let reports: Vec<rekindle::report::RuleReport> = match store {
                Ok(store) => rekindle::report::report_for(&store, run_or_rule, window)?,
                // the daemon's figures, printed as the store's would be
                Err(remote) => serde_json::from_str(&remote.get(&format!("/api/report/{}", url_segment(run_or_rule)))?)?,
            };
            if reports.is_empty() {
                bail!("no run or rule {run_or_rule:?}");
            }
            match format {
                SummaryFormat::Table => rekindle::report::write_table(&mut std::io::stdout().lock(), &reports, window)?,
                SummaryFormat::Json => println!("{}", serde_json::to_string_pretty(&reports)?),
            }
        }
        Command::Outbox { command } => {
            let store = match open_store(&cli, &config) {
                Ok(s) => s,
                Err(e) if daemon_running(&e) => {
                    let remote = remote::Remote::new(&config)?;
                    match command {
                        OutboxCommand::Status { format } => {
                            let counts: serde_json::Value = serde_json::from_str(&remote.get("/api/outbox")?)?;
                            let runs: serde_json::Value = serde_json::from_str(&remote.get("/api/runs")?)?;
                            let count = |k: &str| counts[k].as_u64().unwrap_or(0);
                            let runs: Vec<RunLine> = runs
                                .as_array()
                                .into_iter()
                                .flatten()
                                .map(|r| RunLine {
                                    id: r["id"].as_u64().unwrap_or(0),
                                    at: r["at"].as_i64().unwrap_or(0),
                                    catch_up: r["catch_up"].as_bool().unwrap_or(false),
                                    rules: r["rules"].as_array().into_iter().flatten().map(|x| (x["rule"].as_str().unwrap_or("").to_string(), x["messages"].as_u64().unwrap_or(0), x["held_out"].as_u64().unwrap_or(0))).collect(),
                                })
                                .collect();
                            print_outbox_status((count("queued"), count("due"), count("dead_letters")), counts["next_due"].as_i64(), &runs, *format)?;
                        }
                        OutboxCommand::DeadLetters { format } => {
                            let list: serde_json::Value = serde_json::from_str(&remote.get("/api/outbox/dead-letters")?)?;
                            let rows = list.as_array().into_iter().flatten().map(|m| {
                                let last = m["errors"].as_array().and_then(|e| e.last()).cloned().unwrap_or_default();
                                vec![m["id"].clone(), m["rule"].clone(), m["member"].clone(), m["channel"].clone(), last]
                            });
                            write_rows(*format, &DEAD_LETTER_COLUMNS, rows.collect())?;
                        }
                        OutboxCommand::Retry { id, all } => {
                            let body = match (id, all) {
                                (Some(id), false) => serde_json::json!({ "ids": [id] }),
                                (None, true) => serde_json::json!({ "all": true }),
                                _ => bail!("give a message id or --all"),
                            };
                            let answer: serde_json::Value = serde_json::from_str(&remote.post("/api/outbox/retry", body.to_string().into_bytes())?)?;
                            println!("{} messages queued again", answer["queued"]);
                        }
                    }
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            let now = chrono::Utc::now().timestamp();
            match command {
                OutboxCommand::Status { format } => {
                    let runs: Vec<RunLine> = store
                        .runs()
                        .map(|r| r.map(|r| RunLine { id: r.id, at: r.at, catch_up: r.catch_up, rules: r.rules.iter().map(|x| (x.rule.to_string(), u64::from(x.messages), x.held_out.len() as u64)).collect() }))
                        .collect::<Result<_, _>>()?;
                    print_outbox_status(store.outbox_counts(now)?, store.next_due()?, &runs, *format)?;
                }
                OutboxCommand::DeadLetters { format } => {
                    let rows = store.dead_letters().map(|item| {
                        item.map(|(id, m)| vec![id.to_string().into(), m.rule.as_str().into(), m.member.as_str().into(), m.channels[m.current as usize].channel.as_str().into(), m.errors.last().map(String::as_str).into()])
                    });
                    write_rows(*format, &DEAD_LETTER_COLUMNS, rows.collect::<Result<_, _>>()?)?;
                }
                OutboxCommand::Retry { id, all } => {
                    let ids: Option<Vec<rekindle::store::outbox::MessageId>> = match (id, all) {
                        (Some(id), false) => Some(vec![id.parse().map_err(|e: String| anyhow::anyhow!(e))?]),
                        (None, true) => None,
                        _ => bail!("give a message id or --all"),
                    };
                    let n = store.retry_dead_letters(ids.as_deref(), now)?;
                    println!("{n} messages queued again");
                }
            }
        }
        Command::Rules { command: RulesCommand::Check { path } } => {
            let set = load_rules(&config, path.as_deref())?;
            let errors = set.errors();
            let warnings = set.diagnostics.len() - errors;
            let channels = rekindle::rules::ChannelNames { configured: config.channels.keys().cloned().collect() };
            let idle = set.unconfigured_channels(&channels);
            if !idle.is_empty() {
                eprintln!("note: no [channels.*] in the config serves {}; their messages wait in the outbox", idle.join(", "));
            }
            if config.campaigns.public_url.starts_with("http://") {
                eprintln!("warning: {}", rekindle::config::HTTP_PUBLIC_URL_WARNING);
            }
            // a channel that cannot say which consent it needs is a configuration error
            rekindle::plugin::consents(&config.channels, &host_options(&config))?;
            println!("{} rules valid, {errors} errors, {warnings} warnings", set.rules.len());
            if errors > 0 {
                bail!("{errors} errors in {} rule files", set.failed.len());
            }
        }
        Command::Rules { command: RulesCommand::List { path, format } } => {
            let set = load_rules(&config, path.as_deref())?;
            let default_tz = config.checked.default_tz;
            let rows = set.rules.iter().map(|r| {
                let tz = r.timezone.unwrap_or(default_tz);
                // the next run in the rule's own time zone; none for a rule run on demand
                let next = r.schedule.as_ref().and_then(|s| s.next_after(chrono::Utc::now(), tz)).map(|t| t.with_timezone(&tz).to_rfc3339());
                let cron = r.schedule.as_ref().map(|s| s.cron.clone());
                vec![r.id.as_str().into(), r.enabled.into(), r.priority.into(), cron.into(), tz.name().into(), next.into()]
            });
            write_rows(*format, &["rule", "enabled", "priority", "schedule", "timezone", "next_run"], rows.collect())?;
        }
        Command::Rules { command: RulesCommand::Preview { rule, as_of, format, sample } } => {
            let set = load_rules(&config, None)?;
            let Some(r) = set.get(rule) else {
                bail!("no valid rule {rule:?} in {} (valid: {})", config.campaigns.rules_dir.display(), set.rules.iter().map(|r| r.id.as_str()).collect::<Vec<_>>().join(", "));
            };
            let store = match store_or_daemon(&cli, &config)? {
                Ok(store) => store,
                Err(remote) if *format == PreviewFormat::Table && as_of.is_none_or(|d| d == today()) => {
                    print!("{}", remote.get(&format!("/api/rules/{}/preview?sample={sample}", url_segment(rule)))?);
                    return Ok(());
                }
                Err(_) => bail!("the daemon holds the store; over its API, preview shows a table as of today"),
            };
            let as_of = as_of.unwrap_or_else(today);
            let (base, profiles, settings, now) = plan_inputs(&store, &config, &[r], as_of)?;
            let plans = rekindle::plan::plan(&base, &profiles, &[r], now, &settings);
            let out = &mut std::io::stdout().lock();
            match format {
                PreviewFormat::Table => {
                    let renderer = rekindle::rules::render::Renderer::new(std::slice::from_ref(r))?;
                    rekindle::plan::report::preview_table(out, &base, &profiles, r, &plans[0], &settings, &renderer, *sample)?;
                }
                f => {
                    for (step, n) in plans[0].funnel() {
                        eprintln!("{step:<24} {n:>10}");
                    }
                    rekindle::plan::report::preview_rows(out, &base, &profiles, &plans[0], *f)?;
                }
            }
        }
        Command::Explain { member, rule, as_of, format } => {
            let json = *format == SummaryFormat::Json;
            let set = load_rules(&config, None)?;
            let rules: Vec<&rekindle::rules::Rule> = match rule {
                Some(id) => vec![set.get(id).with_context(|| format!("no valid rule {id:?}"))?],
                None => set.rules.iter().filter(|r| r.enabled).collect(),
            };
            let store = match store_or_daemon(&cli, &config)? {
                Ok(store) => store,
                Err(remote) if as_of.is_none_or(|d| d == today()) => {
                    let rule = rule.as_ref().map(|r| format!("&rule={}", url_segment(r))).unwrap_or_default();
                    let format = if json { "json" } else { "text" };
                    print!("{}", remote.get(&format!("/api/members/{}/explain?format={format}{rule}", url_segment(member)))?);
                    return Ok(());
                }
                Err(_) => bail!("the daemon holds the store; over its API, explain works as of today"),
            };
            let as_of = as_of.unwrap_or_else(today);
            let (base, profiles, settings, now) = plan_inputs(&store, &config, &rules, as_of)?;
            let Some(i) = base.index_of(member) else { bail!("no member {member:?} in the store") };
            let plans = rekindle::plan::plan(&base, &profiles, &rules, now, &settings);
            rekindle::plan::report::explain_member(&mut std::io::stdout().lock(), json, &base, &profiles, i as u32, &rules, &plans, &settings, now)?;
        }
        Command::Stats { as_of, format } => {
            let store = open_store(&cli, &config)?;
            let stats = Stats::of(&profiles(&store, &config, as_of.unwrap_or_else(today))?);
            match format {
                SummaryFormat::Table => stats.write_table(&mut std::io::stdout().lock())?,
                SummaryFormat::Json => println!("{}", serde_json::to_string_pretty(&stats)?),
            }
        }
        Command::Generate { dir, members, lines, seed } => {
            let opts = rekindle::generate::GenerateOptions { members: *members, lines: *lines, seed: *seed, ..Default::default() };
            let s = rekindle::generate::generate(dir, &opts).with_context(|| format!("writing into {}", dir.display()))?;
            println!("{} members, {} orders, {} order lines, {} events, {} products -> {}", s.members, s.orders, s.lines, s.events, s.products, dir.display());
        }
        Command::Completions { .. } | Command::Man { .. } | Command::Schema { .. } => {} // written before the config is read
        Command::Demo { dir, members } => {
            let opts = rekindle::generate::GenerateOptions { members: *members, ..Default::default() };
            let s = rekindle::generate::generate(dir, &opts)?;
            println!("generated {} members, {} order lines, {} events into {}", s.members, s.lines, s.events, dir.display());
            let store = open_store(&cli, &config)?;
            let files: Vec<PathBuf> = ["members.csv", "products.csv", "orders.csv", "events.csv"].iter().map(|f| dir.join(f)).collect();
            import(&store, &files, None, config.checked.phone_region, None, 20)?;
            let as_of = rekindle::domain::day_of(opts.end);
            println!();
            let pop = Population::compute(&store, as_of, &config.profile)?;
            Stats::of(&pop).write_table(&mut std::io::stdout().lock())?;
            let missing: Vec<String> =
                config.channels.values().map(|c| config.base_dir.join(&c.plugin)).filter(|p| !p.exists()).map(|p| p.display().to_string()).collect();
            if !missing.is_empty() {
                println!("\nnot running the rules: {} not built (scripts/build-plugins.sh, or scripts/demo.sh)", missing.join(", "));
                return Ok(());
            }
            let rule_files = std::fs::read_dir(&config.campaigns.rules_dir).map(|d| d.filter_map(|e| e.ok()).filter(|e| e.path().extension().is_some_and(|x| x == "toml")).count()).unwrap_or(0);
            if config.channels.is_empty() || rule_files == 0 {
                println!("\nnot running the rules: the config has no [channels.*] or {} holds no rule files", config.campaigns.rules_dir.display());
                return Ok(());
            }
            // co-purchase rules and the value model, which the cross-sell, chosen-product and
            // savable rules need
            let tx = rekindle::basket::transactions(&store, Scope::Basket, as_of, Some(365))?;
            let params = rekindle::bundles::MineParams { min_support: 0.0002, min_confidence: 0.1, ..Default::default() };
            let mined = rekindle::bundles::mine(&tx, &params)?;
            println!("\nmined {} co-purchase rules from {} baskets of the last 365 days", mined.len(), tx.len());
            let record = rekindle::basket::MinedRules { scope: Scope::Basket, as_of, lookback_days: Some(365), params, transactions: tx.len(), rules: mined };
            store.put_record(rekindle::store::RecordKind::BundleRules, Scope::Basket.name(), &record)?;
            println!();
            predict_fit(&store, &config, as_of, None)?;
            // the sample rules once, at noon UTC of the data's last day, through the channels of config.toml
            println!("\nrunning the rules in {} once, as of {} 12:00 UTC", config.campaigns.rules_dir.display(), DayFmt(as_of));
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let options = rekindle::daemon::RunOptions { once: true, only: Vec::new(), at: Some(i64::from(as_of) * 86_400 + 12 * 3600), config_path: None };
            let results = runtime.block_on(rekindle::daemon::run(config.clone(), store.clone(), options))?;
            print_runs(&store, &results)?;
            for (name, c) in &config.channels {
                if let Some(dir) = &c.grants.files {
                    println!("{name}: messages written to {}", config.base_dir.join(dir).display());
                }
            }
        }
    }
    Ok(())
}

/// Whether opening the store failed because another process (the daemon) holds it.
fn daemon_running(e: &anyhow::Error) -> bool {
    matches!(e.downcast_ref::<rekindle::store::StoreError>(), Some(rekindle::store::StoreError::Locked { .. }))
}

/// The store, or (when the daemon holds it) the way to the daemon's API.
fn store_or_daemon(cli: &Cli, config: &Config) -> Result<Result<Store, remote::Remote>> {
    match open_store(cli, config) {
        Ok(store) => Ok(Ok(store)),
        Err(e) if daemon_running(&e) => Ok(Err(remote::Remote::new(config).with_context(|| e.to_string())?)),
        Err(e) => Err(e),
    }
}

/// A member or rule id as one URL path segment.
fn url_segment(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

/// What `run --once` (and the demo) did: each rule's funnel, the sends, the outbox.
fn print_runs(store: &Store, results: &[(rekindle::api::RunSummary, rekindle::dispatch::DispatchStats)]) -> Result<()> {
    for (summary, stats) in results {
        println!("run {}: {} messages planned", summary.run, summary.messages);
        for (rule, funnel) in &summary.rules {
            let steps: Vec<String> = funnel.iter().filter(|(k, n)| *n > 0 || *k == "matched").map(|(k, n)| format!("{k} {n}")).collect();
            println!("  {rule:<26} {}", steps.join(", "));
        }
        let by_channel: Vec<String> = stats.sent_by_channel.iter().map(|(c, n)| format!("{c} {n}")).collect();
        println!("sent {} ({}), retrying {}, fell back {}, failed {}, dead letters {}", stats.sent, by_channel.join(", "), stats.retried, stats.fell_back, stats.failed, stats.dead);
        let (queued, due, dead) = store.outbox_counts(chrono::Utc::now().timestamp())?;
        println!("outbox: {queued} queued ({due} due now, the rest deferred by quiet hours, caps or retries), {dead} dead letters");
    }
    Ok(())
}

/// Where the plugin host finds plugins and keeps their compiled code (as the daemon).
fn host_options(config: &Config) -> rekindle::plugin::HostOptions {
    rekindle::plugin::HostOptions { base_dir: config.base_dir.clone(), cache_dir: Some(config.store.path.with_extension("plugin-cache")), callback_urls: Default::default() }
}

/// Reads the rules folder (or one file), printing every diagnostic to stderr.
fn load_rules(config: &Config, path: Option<&Path>) -> Result<rekindle::rules::RuleSet> {
    let path = path.unwrap_or(&config.campaigns.rules_dir);
    let channels = rekindle::rules::ChannelNames { configured: config.channels.keys().cloned().collect() };
    let set = rekindle::rules::load(path, &channels)?;
    for d in &set.diagnostics {
        eprintln!("{}", set.sources.render(d));
    }
    Ok(set)
}

/// The member base, profiles and settings a plan needs; the run moment is noon UTC of
/// the as-of day (or now, for today).
fn plan_inputs(
    store: &Store,
    config: &Config,
    rules: &[&rekindle::rules::Rule],
    as_of: Day,
) -> Result<(rekindle::plan::MemberBase, rekindle::plan::Profiles, rekindle::plan::PlanSettings, i64)> {
    let with_events = rules.iter().any(|r| r.audience.uses_events());
    let bar = if std::io::stderr().is_terminal() { indicatif::ProgressBar::new_spinner() } else { indicatif::ProgressBar::hidden() };
    bar.set_message("loading members");
    let consent = rekindle::plugin::consents(&config.channels, &host_options(config))?;
    let base = rekindle::plan::MemberBase::load(store, consent, with_events, &|n| bar.set_position(n))?;
    bar.finish_and_clear();
    let key = rekindle::daemon::unsubscribe_key(store, config)?;
    let settings = config.plan_settings(key);
    let profiles = rekindle::plan::Profiles::compute(&base, as_of, &settings, rekindle::plan::Extras::of(rules));
    let now = if as_of == today() { chrono::Utc::now().timestamp() } else { i64::from(as_of) * 86_400 + 12 * 3600 };
    Ok((base, profiles, settings, now))
}

/// Profiles as of a day, with predictions when a model is stored.
fn profiles(store: &Store, config: &Config, as_of: Day) -> Result<Population> {
    use rekindle::predict::FittedModel;
    let model: Option<FittedModel> = store.get_record(rekindle::store::RecordKind::FittedModel, "value")?;
    let opts = config.predict.predict_options();
    Ok(Population::compute_with(store, as_of, &config.profile, model.as_ref().map(|m| (m, &opts)))?)
}

fn predict_fit(store: &Store, config: &Config, as_of: Day, unit: Option<&str>) -> Result<()> {
    use rekindle::predict::{calibration_and_holdout, fit, PurchaseHistory, TimeUnit};
    let unit: TimeUnit = match unit {
        Some(u) => u.parse().map_err(|e| anyhow::anyhow!("{e}"))?,
        None => config.predict.unit,
    };
    let orders = rekindle::population::all_order_days(store)?;
    let histories: Vec<PurchaseHistory> = orders.iter().filter_map(|o| PurchaseHistory::from_order_days(o, as_of, unit)).collect();
    let model = fit(&histories, as_of, unit, &config.predict.fit_options())
        .with_context(|| format!("fitting on {} members with an order by {}", histories.len(), DayFmt(as_of)))?;
    let (bg, gg) = (&model.purchases, &model.spend);
    println!("fitted as of {} in {}s on {} members", DayFmt(as_of), unit.as_str(), histories.len());
    println!("BG/NBD      r = {:.6}  alpha = {:.6}  a = {:.6}  b = {:.6}  log-likelihood {:.3}", bg.params.r, bg.params.alpha, bg.params.a, bg.params.b, bg.log_likelihood);
    println!("Gamma-Gamma p = {:.6}  q = {:.6}  v = {:.6}  log-likelihood {:.3}", gg.params.p, gg.params.q, gg.params.v, gg.log_likelihood);
    let last = orders.iter().flat_map(|o| o.iter().map(|d| d.day)).max().unwrap_or(as_of);
    if last > as_of {
        let pairs: Vec<_> = orders.iter().filter_map(|o| calibration_and_holdout(o, as_of, last, unit)).collect();
        let check = model.holdout_check(&pairs, (last - as_of) as u32);
        println!("holdout {} .. {}: expected {:.1} repeat purchases, actual {}", DayFmt(as_of + 1), DayFmt(last), check.expected_total, check.actual_total);
    }
    store.put_record(rekindle::store::RecordKind::FittedModel, "value", &model)?;
    println!("stored; profiles now carry p_alive, expected purchases, expected spend, predicted value and churn risk");
    Ok(())
}

fn bundles(store: &Store, command: &BundlesCommand) -> Result<()> {
    use rekindle::basket::{member_transactions, transactions, MinedRules};
    use rekindle::bundles::{audience, audience_csv, audience_table, mine, rules_csv, rules_table, AudienceParams, MineParams, OfferIndex};
    use rekindle::store::RecordKind;
    match command {
        BundlesCommand::Mine { scope, min_support, min_confidence, min_lift, two_item_antecedents, lookback_days, as_of, format, limit } => {
            let as_of = as_of.unwrap_or_else(today);
            let tx = transactions(store, *scope, as_of, *lookback_days)?;
            let params = MineParams { min_support: *min_support, min_confidence: *min_confidence, min_lift: *min_lift, two_item_antecedents: *two_item_antecedents };
            let rules = mine(&tx, &params)?;
            let shown = &rules[..limit.unwrap_or(rules.len()).min(rules.len())];
            match format {
                TableFormat::Table => print!("{}", rules_table(shown)),
                TableFormat::Csv => print!("{}", rules_csv(shown)),
            }
            eprintln!("{} rules from {} {} transactions as of {}; stored", rules.len(), tx.len(), scope.name(), DayFmt(as_of));
            let mined = MinedRules { scope: *scope, as_of, lookback_days: *lookback_days, params, transactions: tx.len(), rules };
            store.put_record(RecordKind::BundleRules, scope.name(), &mined)?;
        }
        BundlesCommand::Audience { sku, top, scope, min_score, as_of, format } => {
            let Some(mined) = store.get_record::<MinedRules>(RecordKind::BundleRules, scope.name())? else {
                bail!("no {} rules are stored yet: run `rekindle bundles mine --scope {}` first", scope.name(), scope.name());
            };
            let as_of = as_of.unwrap_or(mined.as_of);
            let index = OfferIndex::new(mined.rules);
            let members = member_transactions(store, as_of)?;
            let found = audience(&members, &index, sku, &AudienceParams { top: Some(*top), min_score: *min_score });
            match format {
                TableFormat::Table => print!("{}", audience_table(&found, &index)),
                TableFormat::Csv => print!("{}", audience_csv(&found, &index)),
            }
            eprintln!("{} members likely to buy {sku} (rules mined as of {})", found.len(), DayFmt(mined.as_of));
        }
    }
    Ok(())
}

/// What an import of several files came to: the bad rows, and the files whose every
/// row was bad.
#[derive(Default)]
struct ImportOutcome {
    bad: u64,
    all_bad: Vec<String>,
}

impl ImportOutcome {
    fn add(&mut self, file: &str, rows: u64, bad: u64) {
        self.bad += bad;
        if rows > 0 && bad == rows {
            self.all_bad.push(file.to_string());
        }
    }
}

/// Imports files and prints a summary line per file.
fn import(store: &Store, files: &[PathBuf], kind: Option<Kind>, phone_region: Option<rekindle::domain::PhoneRegion>, rejects: Option<&Path>, show_bad: usize) -> Result<ImportOutcome> {
    let mut rejects_out = match rejects {
        Some(p) => {
            let mut w = csv::Writer::from_path(p).with_context(|| format!("creating {}", p.display()))?;
            w.write_record(["file", "line", "reason"])?;
            Some(w)
        }
        None => None,
    };
    let opts = ImportOptions { kind, phone_region, progress: std::io::stderr().is_terminal(), ..Default::default() };
    let mut outcome = ImportOutcome::default();
    let mut failed = Vec::new();
    for file in files {
        let mut shown = 0;
        let mut on_bad = |b: &ingest::BadRow| {
            if shown < show_bad {
                eprintln!("bad row {b}");
            }
            shown += 1;
            if let Some(w) = rejects_out.as_mut() {
                let _ = w.write_record([b.file.as_str(), &b.line.to_string(), &b.reason]);
            }
        };
        match ingest::import_file(store, file, &opts, &mut on_bad) {
            Ok(s) => {
                if s.bad as usize > show_bad {
                    eprintln!("... and {} more bad rows in {}", s.bad as usize - show_bad, s.file);
                }
                if !s.unknown_columns.is_empty() {
                    eprintln!("warning: {}: ignored unknown columns {:?}", s.file, s.unknown_columns);
                }
                let secs = s.elapsed.as_secs_f64();
                println!(
                    "{}: {} file: {} rows, {} imported, {} bad in {:.2}s ({:.0} rows/s){}",
                    s.file,
                    s.kind.name(),
                    s.rows,
                    s.imported,
                    s.bad,
                    secs,
                    s.rows as f64 / secs.max(1e-9),
                    if s.moved_orders > 0 { format!(", {} orders moved to another member", s.moved_orders) } else { String::new() }
                );
                outcome.add(&s.file, s.rows, s.bad);
            }
            Err(e) => {
                eprintln!("error: {e}");
                failed.push(file.display().to_string());
            }
        }
    }
    if let Some(mut w) = rejects_out {
        w.flush()?;
    }
    if !failed.is_empty() {
        bail!("{} of {} files could not be imported: {}", failed.len(), files.len(), failed.join(", "));
    }
    Ok(outcome)
}

fn show_member(store: &Store, config: &Config, id: &str, as_of: Day, format: SummaryFormat) -> Result<()> {
    let Some(member) = store.member(id)? else { bail!("no member {id:?} in {}", store.path().display()) };
    let pop = profiles(store, config, as_of)?;
    let idx = pop.ids.binary_search_by(|m| m.as_str().cmp(id)).map_err(|_| anyhow::anyhow!("member {id:?} vanished"))?;
    let channels: Vec<&str> = config.channels.keys().map(String::as_str).collect();
    let needs = rekindle::plugin::consents(&config.channels, &host_options(config))?;
    let (history, events) = (store.history(id)?, store.events(id)?);
    let card = rekindle::population::MemberCard {
        id,
        member: &member,
        profile: &pop.profiles[idx],
        consent: &store.consent(id, &member, &channels, &needs)?,
        history: history.as_ref(),
        events: events.as_ref(),
        as_of,
        default_timezone: &config.members.default_timezone,
    };
    match format {
        SummaryFormat::Json => println!("{}", serde_json::to_string_pretty(&card.json(&store.suppressed(id)?, &store.contacts(id)?)?)?),
        SummaryFormat::Table => card.write(&mut std::io::stdout().lock())?,
    }
    Ok(())
}

/// One run as `outbox status` lists it: its rules with (messages, held out).
struct RunLine {
    id: u64,
    at: rekindle::domain::Timestamp,
    catch_up: bool,
    rules: Vec<(String, u64, u64)>,
}

/// `outbox status`, from the store or from the daemon's API alike.
fn print_outbox_status((queued, due, dead): (u64, u64, u64), next_due: Option<rekindle::domain::Timestamp>, runs: &[RunLine], format: SummaryFormat) -> Result<()> {
    let out = &mut std::io::stdout().lock();
    if format == SummaryFormat::Json {
        let time = |t: i64| TsFmt(t).to_string();
        let runs: Vec<serde_json::Value> = runs
            .iter()
            .map(|r| {
                let rules: Vec<serde_json::Value> = r.rules.iter().map(|(rule, messages, held_out)| serde_json::json!({ "rule": rule, "messages": messages, "held_out": held_out })).collect();
                serde_json::json!({ "run": r.id, "at": time(r.at), "catch_up": r.catch_up, "rules": rules })
            })
            .collect();
        let status = serde_json::json!({ "queued": queued, "due": due, "dead_letters": dead, "next_due": next_due.map(time), "runs": runs });
        writeln!(out, "{}", serde_json::to_string_pretty(&status)?)?;
        return Ok(());
    }
    writeln!(out, "queued {queued}, due now {due}, dead letters {dead}")?;
    if let Some(t) = next_due {
        writeln!(out, "next due {}", TsFmt(t))?;
    }
    for r in runs.iter().rev().take(10) {
        let rules: Vec<String> = r.rules.iter().map(|(rule, messages, held_out)| format!("{rule} ({messages} messages, {held_out} held out)")).collect();
        writeln!(out, "run {} at {}{}: {}", r.id, TsFmt(r.at), if r.catch_up { " (catch-up)" } else { "" }, rules.join(", "))?;
    }
    Ok(())
}

const DEAD_LETTER_COLUMNS: [&str; 5] = ["id", "rule", "member", "channel", "last_error"];

/// Rows under `columns`: an aligned table, CSV with a header, a JSON array of objects,
/// or one object a line (keys in column order; numbers and booleans as themselves).
fn write_rows(format: ListFormat, columns: &[&str], rows: Vec<Vec<serde_json::Value>>) -> Result<()> {
    let out = &mut std::io::stdout().lock();
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        v => v.to_string(),
    };
    let object = |row: &Vec<serde_json::Value>| -> String {
        let fields: Vec<String> = columns.iter().zip(row).map(|(c, v)| format!("{}:{v}", serde_json::Value::from(*c))).collect();
        format!("{{{}}}", fields.join(","))
    };
    match format {
        ListFormat::Table => {
            let cells: Vec<Vec<String>> = rows.iter().map(|r| r.iter().map(|v| Some(text(v)).filter(|t| !t.is_empty()).unwrap_or_else(|| "-".into())).collect()).collect();
            let widths: Vec<usize> = (0..columns.len()).map(|i| cells.iter().map(|r| r[i].chars().count()).chain([columns[i].len()]).max().unwrap_or(0)).collect();
            let line = |row: &mut dyn Iterator<Item = &str>| -> String {
                let padded: Vec<String> = row.zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
                padded.join("  ").trim_end().to_string()
            };
            writeln!(out, "{}", line(&mut columns.iter().copied()))?;
            for r in &cells {
                writeln!(out, "{}", line(&mut r.iter().map(String::as_str)))?;
            }
        }
        ListFormat::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record(columns)?;
            for r in &rows {
                w.write_record(r.iter().map(text))?;
            }
            w.flush()?;
        }
        ListFormat::Json => {
            let objects: Vec<String> = rows.iter().map(|r| format!("  {}", object(r))).collect();
            if objects.is_empty() {
                writeln!(out, "[]")?;
            } else {
                writeln!(out, "[\n{}\n]", objects.join(",\n"))?;
            }
        }
        ListFormat::Ndjson => {
            for r in &rows {
                writeln!(out, "{}", object(r))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--help`, the man pages and the completions show every command's and every
    /// argument's help: none may be blank.
    #[test]
    fn every_command_and_argument_has_help() {
        fn walk(command: &clap::Command, path: &str, blank: &mut Vec<String>) {
            for arg in command.get_arguments().filter(|a| !a.is_hide_set()) {
                if arg.get_help().is_none() && !["help", "version"].contains(&arg.get_id().as_str()) {
                    blank.push(format!("{path} {}", arg.get_long().map(|l| format!("--{l}")).unwrap_or_else(|| arg.get_id().to_string().to_uppercase())));
                }
            }
            for sub in command.get_subcommands().filter(|c| c.get_name() != "help") {
                let sub_path = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() {
                    blank.push(sub_path.clone());
                }
                walk(sub, &sub_path, blank);
            }
        }
        let mut command = Cli::command();
        command.build();
        command.clone().debug_assert();
        let mut blank = Vec::new();
        walk(&command, "rekindle", &mut blank);
        assert!(blank.is_empty(), "without help text:\n{}", blank.join("\n"));
    }
}
