//! The `inlet` binary: thin wiring over the library.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use inlet_destinations::{ReplayFrom, ReplayRequest};
use inlet_gateway::config::{CONFIG_PATH_ENV, LogFormat};
use inlet_gateway::{
    AppState, Config, DEV_SOURCE, SystemClock, api_host, ensure_dev_source, serve, serve_admin, tls_server_config,
};
use inlet_wal::WalReader;

#[derive(Parser)]
#[command(name = "inlet", version, about = "Self-hosted, Segment-compatible event collection")]
struct Cli {
    /// TOML configuration file (also `INLET_CONFIG`); without one, the embedded defaults run.
    #[arg(long, global = true, env = CONFIG_PATH_ENV)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default).
    Serve,
    /// Validate the configuration and print it as the gateway would use it (write keys hidden).
    CheckConfig,
    /// Inspect the write-ahead log.
    Wal {
        #[command(subcommand)]
        command: WalCommand,
    },
    /// Send a time range of events to a destination again, from the lake files (default) or
    /// from its dead letters. Prints a JSON report.
    Replay {
        /// The destination's name in the configuration.
        #[arg(long)]
        destination: String,
        /// Start of the range (event `timestamp`): RFC 3339 or YYYY-MM-DD (UTC midnight).
        #[arg(long, value_parser = parse_instant)]
        from: chrono::DateTime<chrono::Utc>,
        /// End of the range, exclusive.
        #[arg(long, value_parser = parse_instant)]
        to: chrono::DateTime<chrono::Utc>,
        /// Only these sources (default: every source of the destination).
        #[arg(long = "source")]
        sources: Vec<String>,
        /// Re-send the destination's dead letters in the range instead of the lake's events.
        #[arg(long)]
        dead_letters: bool,
    },
    /// The lake as an external table.
    Lake {
        #[command(subcommand)]
        command: LakeCommand,
    },
    /// Regulations: suppress or delete a user's data, lift a suppression, follow deletions.
    Privacy {
        #[command(subcommand)]
        command: PrivacyCommand,
    },
    /// Tracking plans: draft one from the lake, check a plan file.
    Plan {
        #[command(subcommand)]
        command: PlanCommand,
    },
    /// Destinations of the running gateway.
    Destinations {
        #[command(subcommand)]
        command: DestinationsCommand,
    },
}

#[derive(Subcommand)]
enum DestinationsCommand {
    /// Print each destination's delivery status as JSON, from the running gateway's admin
    /// listener: cursor, backlog, lag, events in flight, recent errors, dead letters by reason.
    Status {
        /// The admin listener's URL (default: `http://` + admin.listen, loopback for 0.0.0.0).
        #[arg(long)]
        admin_url: Option<String>,
    },
}

#[derive(Subcommand)]
enum PlanCommand {
    /// Print a draft plan (YAML) from a source's events in the lake: every event name seen, the
    /// properties and traits seen with their JSON types, `required` for those every call had.
    Infer {
        #[arg(long)]
        source: String,
        /// Start of the range (event `timestamp`): RFC 3339 or YYYY-MM-DD (UTC midnight).
        #[arg(long, value_parser = parse_instant)]
        from: chrono::DateTime<chrono::Utc>,
        /// End of the range, exclusive.
        #[arg(long, value_parser = parse_instant)]
        to: chrono::DateTime<chrono::Utc>,
    },
    /// Compile a plan file as the gateway would at start; print its planned events, or why it is
    /// broken (file, event, reason).
    Check { file: PathBuf },
}

#[derive(Subcommand)]
enum PrivacyCommand {
    /// Stop storing and forwarding these ids' events (they are still answered 200).
    Suppress(RegulationArgs),
    /// Suppress these ids and erase every stored copy of their events: lake, dead letters,
    /// warehouse (next `inlet-batch run`), vendors.
    Delete(RegulationArgs),
    /// Lift the suppression of these ids (erased data stays erased).
    Unsuppress(RegulationArgs),
    /// Print regulations and the status of each step, as JSON.
    Status {
        /// One regulation (default: all).
        id: Option<String>,
    },
    /// Carry out the deletions that are due now, as a gateway's privacy worker does, and print
    /// the steps recorded.
    Run {
        /// Stop the process abruptly after rewriting this many lake files (crash tests).
        #[arg(long, hide = true)]
        abort_after_rewrites: Option<usize>,
    },
}

#[derive(clap::Args)]
struct RegulationArgs {
    #[arg(long = "user-id")]
    user_ids: Vec<String>,
    #[arg(long = "anonymous-id")]
    anonymous_ids: Vec<String>,
    /// A file of ids, one per line: `user_id:ID` or `anonymous_id:ID` (`#` starts a comment).
    #[arg(long)]
    file: Option<PathBuf>,
    /// Who asked (a ticket, an operator), kept with the regulation.
    #[arg(long)]
    requested_by: Option<String>,
}

#[derive(Subcommand)]
enum LakeCommand {
    /// Print `CREATE EXTERNAL TABLE` for the lake and, with `--from`, the `ALTER TABLE … ADD
    /// PARTITION` statements for every source and hour from `--from` to `--to`.
    Ddl {
        #[arg(long, value_enum, default_value = "spectrum")]
        dialect: DdlDialect,
        /// External schema (Spectrum) or database (Athena). Not `inlet`: that is the metrics
        /// tables' schema, and Redshift cannot have a local and an external schema of one name.
        #[arg(long, default_value = "inlet_lake")]
        schema: String,
        #[arg(long, default_value = "events")]
        table: String,
        /// First day (UTC, YYYY-MM-DD) to add partitions for.
        #[arg(long)]
        from: Option<chrono::NaiveDate>,
        /// Day after the last one (default: the day after --from).
        #[arg(long)]
        to: Option<chrono::NaiveDate>,
        /// Sources to add partitions for (default: the configured ones).
        #[arg(long = "source")]
        sources: Vec<String>,
        /// Spectrum: also print `CREATE EXTERNAL SCHEMA` with this IAM role.
        #[arg(long)]
        iam_role: Option<String>,
        /// Spectrum: the Glue database behind the external schema (default: the schema's name).
        #[arg(long)]
        glue_database: Option<String>,
        /// Only the partition statements (for a daily job adding the new day's partitions).
        #[arg(long, requires = "from")]
        partitions_only: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum DdlDialect {
    Spectrum,
    Athena,
}

#[derive(Subcommand)]
enum WalCommand {
    /// Print records as JSON lines: `{"lsn":N,"source":…,"event":{…}}`.
    Dump {
        /// First LSN to print (default: the oldest retained).
        #[arg(long)]
        from: Option<u64>,
    },
}

/// jemalloc instead of glibc's malloc. Under glibc every thread of the request path shared an
/// arena lock with the lake encoder, which runs at a lower priority: preempted while holding
/// it, the encoder stalled every request while a range was encoded. jemalloc's per-thread
/// caches take no shared lock for most allocations and frees, which lowered the p99 at half the
/// maximum rate and the CPU per request (the runs: `docs/bench-log/2026-11-to-12.md`).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read once at its start from this symbol (`_rjem_` is the prefix
/// tikv-jemalloc-sys gives jemalloc's names; `_RJEM_MALLOC_CONF` in the environment still
/// overrides them). One arena per CPU instead of four: the lake starts its builder threads
/// afresh for every range, and under the default each new thread could land on an arena other
/// than the one holding the memory the last range freed, so during a catch-up the gateway's
/// resident memory grew with ranges its arenas had not yet returned (measured in
/// `docs/bench-log/2026-11-to-12.md`: a lower peak RSS, the same throughput).
/// Linux only: per-CPU arenas need `sched_getcpu`.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
#[unsafe(export_name = "_rjem_malloc_conf")]
static JEMALLOC_OPTIONS: JemallocOptions = JemallocOptions(c"percpu_arena:percpu".as_ptr());

/// A C string pointer, as jemalloc declares `malloc_conf` (`const char *`).
#[cfg(target_os = "linux")]
#[repr(transparent)]
struct JemallocOptions(*const std::ffi::c_char);

// SAFETY: the pointer is to a string literal, immutable for the whole run.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
unsafe impl Sync for JemallocOptions {}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "inlet: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let mut config = Config::load(cli.config.as_deref(), &env)?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            init_logging(&config);
            let dev_key = ensure_dev_source(&mut config)?;
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(run_gateway(config, dev_key))
        }
        Command::CheckConfig => {
            // `Debug` of the configuration redacts every secret (write keys, vendor keys, the
            // operator token).
            let mut out = std::io::stdout();
            writeln!(out, "{config:#?}")?;
            Ok(())
        }
        Command::Wal { command: WalCommand::Dump { from } } => dump_wal(&config, from),
        Command::Privacy { command } => {
            init_logging(&config);
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let printed = runtime.block_on(privacy(config, command))?;
            writeln!(std::io::stdout(), "{}", serde_json::to_string_pretty(&printed)?)?;
            Ok(())
        }
        Command::Replay { destination, from, to, sources, dead_letters } => {
            init_logging(&config);
            let origin = if dead_letters { ReplayFrom::DeadLetters } else { ReplayFrom::Lake };
            let request = ReplayRequest { from, to, sources, origin };
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let report = runtime.block_on(replay(&config, &destination, &request))?;
            writeln!(std::io::stdout(), "{}", serde_json::to_string(&report)?)?;
            Ok(())
        }
        Command::Destinations { command: DestinationsCommand::Status { admin_url } } => {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let report = runtime.block_on(destinations_status(&config, admin_url))?;
            writeln!(std::io::stdout(), "{}", serde_json::to_string_pretty(&report)?)?;
            Ok(())
        }
        Command::Plan { command: PlanCommand::Check { file } } => {
            let plan = inlet_plans::TrackingPlan::load(&file)?;
            let mut events: Vec<&str> = plan.event_names().collect();
            events.sort_unstable();
            writeln!(std::io::stdout(), "{}: {} planned events: {}", file.display(), events.len(), events.join(", "))?;
            Ok(())
        }
        Command::Plan { command: PlanCommand::Infer { source, from, to } } => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let yaml = runtime.block_on(infer_plan(&config, &source, from, to))?;
            write!(std::io::stdout(), "{yaml}")?;
            Ok(())
        }
        Command::Lake {
            command:
                LakeCommand::Ddl { dialect, schema, table, from, to, sources, iam_role, glue_database, partitions_only },
        } => {
            let location = inlet_lake::LakeLocation::parse(&config.lake_url())?;
            let dialect = match dialect {
                DdlDialect::Spectrum => inlet_lake::ddl::Dialect::Spectrum,
                DdlDialect::Athena => inlet_lake::ddl::Dialect::Athena,
            };
            let mut out = std::io::stdout();
            if let Some(role) = iam_role.filter(|_| !partitions_only) {
                anyhow::ensure!(dialect == inlet_lake::ddl::Dialect::Spectrum, "--iam-role is for --dialect spectrum");
                let database = glue_database.as_deref().unwrap_or(&schema);
                writeln!(out, "{}", inlet_lake::ddl::create_external_schema(&schema, database, &role))?;
            }
            if !partitions_only {
                write!(out, "{}", inlet_lake::ddl::create_table(&location, &schema, &table, dialect))?;
            }
            if let Some(from) = from {
                let to = to.unwrap_or(from + chrono::Duration::days(1));
                let sources =
                    if sources.is_empty() { config.sources.iter().map(|s| s.name.clone()).collect() } else { sources };
                let midnight = |d: chrono::NaiveDate| d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc();
                write!(
                    out,
                    "{}",
                    inlet_lake::ddl::add_partitions(&location, &schema, &table, &sources, midnight(from), midnight(to))
                )?;
            }
            Ok(())
        }
    }
}

/// Binds with the configured backlog: tokio's `bind` fixes it at 1,024, which a burst of new
/// connections (clients reconnecting after a stall, a load balancer's pool refilling)
/// overflows, and each dropped SYN costs its client a one-second retry.
fn bind(listen: std::net::SocketAddr, backlog: u32) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if listen.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(listen)?;
    socket.listen(backlog)
}

async fn run_gateway(config: Config, dev_key: Option<String>) -> anyhow::Result<()> {
    let tls = config.server.tls.as_ref().map(tls_server_config).transpose()?;
    let listen = config.server.listen;
    let listener = bind(listen, config.server.listen_backlog).with_context(|| format!("binding {listen}"))?;
    let state = Arc::new(tokio::task::block_in_place(|| AppState::open(config, Arc::new(SystemClock)))?);
    let local = listener.local_addr()?;
    tracing::info!(listen = %local, public_url = %state.public_url, tls = tls.is_some(), "inlet gateway listening");
    if let Some(key) = dev_key {
        announce_dev_source(&key, &state.public_url);
    }
    let admin = match state.config.admin.enabled {
        true => {
            let listen = state.config.admin.listen;
            Some(bind(listen, 128).with_context(|| format!("binding the admin listener {listen}"))?)
        }
        false => None,
    };
    // First, so the lake writer and the destinations start with the regulations read.
    let privacy = inlet_gateway::start_privacy(&state).await?;
    let lake = inlet_gateway::start_lake(&state).await?;
    let destinations = inlet_gateway::start_destinations(&state).await?;
    let (stopping, stop) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut stop = stop.clone();
        async move {
            let _ = stop.wait_for(|stopping| *stopping).await;
        }
    };
    let admin = admin.map(|listener| {
        tracing::info!(listen = %state.config.admin.listen, "admin listener (metrics, probes, operator API)");
        tokio::spawn(serve_admin(Arc::clone(&state), listener, stopped()))
    });
    let public = serve(Arc::clone(&state), tls, listener, stopped());
    let signal = async {
        shutdown_signal().await;
        let _ = stopping.send(true);
    };
    let (served, ()) = tokio::join!(public, signal);
    served?;
    if let Some(admin) = admin {
        let _ = admin.await;
    }
    privacy.stop().await;
    tracing::info!("connections drained; stopping destinations");
    destinations.stop().await;
    tracing::info!("flushing the lake");
    // `stop` logs what, if anything, stays in the WAL and why.
    let _ = lake.stop().await;
    tracing::info!("syncing the write-ahead log");
    tokio::task::block_in_place(|| state.wal.shutdown())?;
    tracing::info!(durable_lsn = state.wal.durable_lsn(), "stopped");
    Ok(())
}

async fn replay(
    config: &Config,
    name: &str,
    request: &ReplayRequest,
) -> anyhow::Result<inlet_destinations::ReplayReport> {
    let destination = config
        .destinations
        .iter()
        .find(|d| d.name == name)
        .with_context(|| format!("no destination named {name:?} in the configuration"))?;
    let lake = inlet_gateway::lake_settings(config)?;
    let store = inlet_lake::LakeStore::open(lake.location.clone(), &lake.s3)?;
    let destination = inlet_destinations::Destination::new(destination.clone());
    Ok(inlet_destinations::replay(&destination, store, &format!("{}-replay", lake.instance_id), request).await?)
}

/// `GET /admin/destinations` of the running gateway, with the operator token.
async fn destinations_status(config: &Config, admin_url: Option<String>) -> anyhow::Result<serde_json::Value> {
    let token = inlet_gateway::operator_token(config)?
        .context("the operator API needs admin.token (or admin.token_file) in the configuration")?;
    let url = admin_url.unwrap_or_else(|| {
        let mut listen = config.admin.listen;
        if listen.ip().is_unspecified() {
            listen.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        format!("http://{listen}")
    });
    let response = inlet_destinations::outbox::http_client(std::time::Duration::from_secs(10), 1)
        .get(format!("{}/admin/destinations", url.trim_end_matches('/')))
        .bearer_auth(token)
        .send()
        .await
        .with_context(|| format!("reaching the gateway's admin listener at {url}"))?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.context("reading the admin listener's answer")?;
    anyhow::ensure!(status.is_success(), "the admin listener answered {status}: {body}");
    Ok(body)
}

async fn privacy(config: Config, command: PrivacyCommand) -> anyhow::Result<serde_json::Value> {
    let worker = inlet_gateway::DeletionWorker::new(&config)?;
    let privacy = worker.privacy.clone();
    let (kind, args) = match command {
        PrivacyCommand::Suppress(args) => (inlet_privacy::RegulationKind::Suppress, args),
        PrivacyCommand::Delete(args) => (inlet_privacy::RegulationKind::Delete, args),
        PrivacyCommand::Unsuppress(args) => (inlet_privacy::RegulationKind::Unsuppress, args),
        PrivacyCommand::Status { id } => {
            let listed = inlet_gateway::regulations_with_status(&privacy, id.as_deref()).await?;
            if let Some(id) = id.filter(|_| listed.is_empty()) {
                anyhow::bail!("no regulation {id:?}");
            }
            return Ok(serde_json::Value::Array(listed));
        }
        PrivacyCommand::Run { abort_after_rewrites } => {
            let rewrites = std::sync::atomic::AtomicUsize::new(0);
            let after_rewrite = |_: &str| {
                let done = rewrites.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                if abort_after_rewrites.is_some_and(|limit| done >= limit) {
                    std::process::abort();
                }
            };
            return Ok(serde_json::to_value(worker.run(&after_rewrite).await?)?);
        }
    };
    let mut targets = inlet_privacy::Targets {
        user_ids: args.user_ids.into_iter().collect(),
        anonymous_ids: args.anonymous_ids.into_iter().collect(),
    };
    if let Some(path) = &args.file {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        for (number, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            match line.split_once(':') {
                _ if line.is_empty() => {}
                Some(("user_id", id)) => drop(targets.user_ids.insert(id.trim().to_owned())),
                Some(("anonymous_id", id)) => drop(targets.anonymous_ids.insert(id.trim().to_owned())),
                _ => anyhow::bail!("{}:{}: expected user_id:ID or anonymous_id:ID", path.display(), number + 1),
            }
        }
    }
    let regulation = privacy.submit(kind, targets, args.requested_by).await?;
    Ok(serde_json::to_value(regulation)?)
}

/// The draft plan of `source`'s events in `[from, to)`, as YAML with a header saying what it
/// was drafted from. Files are read one at a time.
async fn infer_plan(
    config: &Config,
    source: &str,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<String> {
    use inlet_plans::Call;
    let store = inlet_gateway::lake_store(config)?;
    let files = inlet_lake::read::hour_files(&store, inlet_lake::layout::LakeTable::Events, source, from, to).await?;
    let mut drafter = inlet_plans::Drafter::default();
    for key in &files {
        let Some(bytes) = store.get(key).await? else { continue };
        let events = inlet_lake::read::read_events(bytes).with_context(|| format!("reading {key}"))?;
        for stored in events {
            let event = &stored.event;
            let in_range = event
                .get("timestamp")
                .and_then(|t| t.as_str())
                .and_then(inlet_segment::parse_timestamp)
                .is_some_and(|t| t >= from && t < to);
            if !in_range {
                continue;
            }
            let name = event.get("event").and_then(|e| e.as_str()).unwrap_or("");
            let Some(call) = Call::of(event.get("type").and_then(|t| t.as_str()).unwrap_or(""), name) else {
                continue;
            };
            drafter.observe(call, event.get(if call.checks_traits() { "traits" } else { "properties" }));
        }
    }
    let inferred = drafter.finish();
    let calls: Vec<String> = inferred.calls.iter().map(|(kind, n)| format!("{n} {kind}")).collect();
    let calls = if calls.is_empty() { "no calls".to_owned() } else { calls.join(", ") };
    Ok(format!(
        "# Drafted by `inlet plan infer` from {calls} of source {source:?} in [{from}, {to}), {} lake files.\n\
         # Review it: a property every call so far had is marked required, and additionalProperties is left open.\n{}",
        files.len(),
        inferred.plan.to_yaml()
    ))
}

fn parse_instant(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    if let Ok(day) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(day.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc());
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|_| format!("{text:?} is neither RFC 3339 nor YYYY-MM-DD"))
}

fn announce_dev_source(key: &str, public_url: &str) {
    let (api_host, _) = api_host(public_url);
    let mut out = std::io::stdout();
    let _ = writeln!(
        out,
        "\nNo sources configured: using the development source {:?}.\n  write key: {key}\n  try:       curl -u '{key}:' {public_url}/v1/track -d '{{\"userId\":\"u1\",\"event\":\"Hello\"}}'\n  SDKs:      apiHost {api_host}, settings {public_url}/v1/projects/{key}/settings\n",
        DEV_SOURCE
    );
}

async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!("SIGINT received; shutting down"),
        () = terminate => tracing::info!("SIGTERM received; shutting down"),
    }
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn dump_wal(config: &Config, from: Option<u64>) -> anyhow::Result<()> {
    let dir = config.wal_dir();
    anyhow::ensure!(dir.is_dir(), "no write-ahead log in {}", dir.display());
    let max_record_bytes = config.limits.max_event_bytes + 64 * 1024;
    let oldest = WalReader::open(&dir, 0, u64::MAX, max_record_bytes).map(|_| 0).or_else(|e| match e {
        inlet_wal::WalError::Truncated { oldest, .. } => Ok(oldest),
        other => Err(other),
    })?;
    let reader = WalReader::open(&dir, from.unwrap_or(oldest), u64::MAX, max_record_bytes)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for record in reader {
        let record = record?;
        // Records are JSON objects (`{"source":…}`): splice the LSN in front of their fields.
        match record.payload.strip_prefix(b"{") {
            Some(rest) => {
                write!(out, "{{\"lsn\":{},", record.lsn)?;
                out.write_all(rest)?;
                writeln!(out)?;
            }
            None => anyhow::bail!("record {} is not a JSON object", record.lsn),
        }
    }
    out.flush()?;
    Ok(())
}
