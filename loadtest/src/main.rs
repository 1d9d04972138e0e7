//! `inlet-loadtest`: load against an Inlet gateway (or the baseline server), and the
//! zero-loss check of what it acknowledged. See loadtest/README.md.

mod baseline;
mod driver;
mod http1;
mod payload;
mod procstat;
mod record;
mod verify;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::json;

use crate::driver::{Mode, Settings};
use crate::payload::{Generator, Mix};

/// The 100 ms windows with a slow answer listed in a run's report: the worst this many.
const MAX_STALLS_REPORTED: usize = 50;

#[derive(Debug, Parser)]
#[command(name = "inlet-loadtest", version, about = "Load, baseline and zero-loss verification for Inlet")]
#[command(args_override_self = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Sends load and prints a JSON report (one line) on stdout.
    Run {
        /// The target's base URL, e.g. http://127.0.0.1:8080.
        #[arg(long)]
        target: String,
        #[arg(long, default_value = "loadtest-write-key")]
        write_key: String,
        /// Closed loop with this many workers (the default mode: 64).
        #[arg(long, conflicts_with = "rate")]
        concurrency: Option<usize>,
        /// Open loop at this many requests per second.
        #[arg(long)]
        rate: Option<f64>,
        /// Open loop: most requests outstanding at once.
        #[arg(long, default_value_t = 2048)]
        max_in_flight: usize,
        /// Keep-alive connections opened before the clock starts.
        #[arg(long, default_value_t = 256)]
        warm_connections: usize,
        /// Seconds of load.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Weighted request kinds: track, page, identify (single events) and batch.
        #[arg(long, default_value = "track=6,page=3,identify=1")]
        mix: String,
        #[arg(long, default_value_t = 100)]
        batch_size: u64,
        /// Gzip the batches.
        #[arg(long)]
        gzip: bool,
        /// Distinct users the events are spread over.
        #[arg(long, default_value_t = 100_000)]
        users: u64,
        /// Record every acknowledged message id here (for `verify`).
        #[arg(long)]
        acks: Option<PathBuf>,
        /// Run id (the message-id prefix); default: from the clock. Reuse it across runs that
        /// one `verify` checks together.
        #[arg(long)]
        run_id: Option<String>,
        /// First message number (continue a run across restarts of the generator).
        #[arg(long, default_value_t = 0)]
        first_id: u64,
        /// The target's process id: report its CPU use and peak memory.
        #[arg(long)]
        pid: Option<u32>,
        /// A label copied into the report.
        #[arg(long, default_value = "")]
        label: String,
    },
    /// The baseline target: answers 200 to everything without parsing.
    Baseline {
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: std::net::SocketAddr,
    },
    /// The local Amplitude and GA4 receivers (which enforce the vendors' contracts), counting
    /// what they take (`GET /counts`) and answering after a fixed latency, as a vendor's round
    /// trip: the targets of the delivery benchmark (`delivery.sh`).
    Receivers {
        #[arg(long, default_value = "127.0.0.1:8095")]
        listen: String,
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
        #[arg(long, default_value = "bench-amplitude-key")]
        amplitude_api_key: String,
        #[arg(long, default_value = "G-BENCH")]
        ga4_measurement_id: String,
        #[arg(long, default_value = "bench-ga4-secret")]
        ga4_api_secret: String,
    },
    /// Checks the lake holds every acknowledged event; exits 1 if any is missing.
    Verify {
        /// The lake: a directory or s3://bucket/prefix.
        #[arg(long)]
        lake: String,
        #[arg(long)]
        s3_endpoint: Option<String>,
        #[arg(long)]
        s3_force_path_style: bool,
        /// One or more acks files of the same run.
        #[arg(long = "acks", required = true, num_args = 1..)]
        acks: Vec<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("inlet-loadtest: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[allow(clippy::print_stdout)]
async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.command {
        Command::Baseline { listen } => baseline::serve(listen).await?,
        Command::Receivers { listen, latency_ms, amplitude_api_key, ga4_measurement_id, ga4_api_secret } => {
            let receivers =
                inlet_receivers::Receivers::start_on(&listen, &amplitude_api_key, &ga4_measurement_id, &ga4_api_secret)
                    .await?;
            receivers.set_latency(Duration::from_millis(latency_ms));
            receivers.count_only();
            eprintln!("receivers at {} answering after {latency_ms} ms", receivers.url);
            tokio::signal::ctrl_c().await?;
        }
        Command::Verify { lake, s3_endpoint, s3_force_path_style, acks } => {
            let s3 = inlet_lake::S3Settings {
                endpoint: s3_endpoint,
                force_path_style: s3_force_path_style,
                ..inlet_lake::S3Settings::default()
            };
            let paths: Vec<&std::path::Path> = acks.iter().map(PathBuf::as_path).collect();
            let report = verify::reconcile(&lake, &s3, &paths).await?;
            println!("{}", serde_json::to_string(&report)?);
            if report.missing > 0 {
                return Ok(std::process::ExitCode::FAILURE);
            }
        }
        Command::Run {
            target,
            write_key,
            concurrency,
            rate,
            max_in_flight,
            warm_connections,
            duration,
            mix,
            batch_size,
            gzip,
            users,
            acks,
            run_id,
            first_id,
            pid,
            label,
        } => {
            let mode = match rate {
                Some(rate) => Mode::Open { rate, max_in_flight },
                None => Mode::Closed { concurrency: concurrency.unwrap_or(64) },
            };
            let run = run_id.unwrap_or_else(|| format!("lt{}", chrono::Utc::now().format("%Y%m%d%H%M%S")));
            let generator = Arc::new(Generator::new(run, write_key, users, batch_size, gzip, first_id));
            let settings = Settings {
                target: target.trim_end_matches('/').to_owned(),
                mode,
                duration: Duration::from_secs_f64(duration),
                mix: Mix::parse(&mix)?,
                acks,
                warm_connections,
            };
            let before = pid.and_then(procstat::sample);
            let (generator_before, machine_before) = (procstat::sample(std::process::id()), procstat::machine());
            let totals = driver::run(settings, Arc::clone(&generator)).await?;
            let after = pid.and_then(procstat::sample);
            let (generator_after, machine_after) = (procstat::sample(std::process::id()), procstat::machine());
            let seconds = totals.elapsed.as_secs_f64();
            let latency = totals.latency.as_ref().map(|h| {
                json!({
                    "p50_ms": h.value_at_quantile(0.50) as f64 / 1000.0,
                    "p90_ms": h.value_at_quantile(0.90) as f64 / 1000.0,
                    "p99_ms": h.value_at_quantile(0.99) as f64 / 1000.0,
                    "p999_ms": h.value_at_quantile(0.999) as f64 / 1000.0,
                    "max_ms": h.max() as f64 / 1000.0,
                })
            });
            let target_usage = match (before, after) {
                (Some(b), Some(a)) => json!({
                    "cpu_percent": b.cpu_percent_until(&a, seconds),
                    "peak_rss_mib": a.peak_rss_bytes as f64 / 1048576.0,
                    "rss_mib_at_end": a.rss_bytes as f64 / 1048576.0,
                }),
                _ => serde_json::Value::Null,
            };
            let generator_usage = match (generator_before, generator_after) {
                (Some(b), Some(a)) => json!({"cpu_percent": b.cpu_percent_until(&a, seconds)}),
                _ => serde_json::Value::Null,
            };
            let machine_usage = match machine_before.zip(machine_after).and_then(|(b, a)| b.shares_until(&a)) {
                Some(shares) => json!({
                    "cpus": std::thread::available_parallelism().map_or(0, usize::from),
                    "busy_percent": shares.busy,
                    "idle_percent": shares.idle,
                    "iowait_percent": shares.iowait,
                    "steal_percent": shares.steal,
                }),
                None => serde_json::Value::Null,
            };
            let report = json!({
                "label": label,
                "run": generator.run,
                "mode": match mode { Mode::Closed { concurrency } => json!({"closed": concurrency}), Mode::Open { rate, .. } => json!({"open_rate": rate}) },
                "mix": mix,
                "gzip": gzip,
                "seconds": seconds,
                "requests": totals.requests,
                "requests_per_second": totals.requests as f64 / seconds,
                "acknowledged_events": totals.acknowledged_events,
                "events_per_second": totals.acknowledged_events as f64 / seconds,
                "latency": latency,
                "statuses": totals.statuses,
                "transport_errors": totals.transport_errors,
                "skipped": totals.skipped,
                "next_id": generator.issued(),
                "target": target_usage,
                "generator": generator_usage,
                "machine": machine_usage,
                "started_at": totals.started_at.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
                "stalls": totals.stalls(MAX_STALLS_REPORTED).iter().map(|(at, w)| json!({
                    "at_s": at.as_secs_f64(),
                    "answers": w.answers,
                    "slow": w.slow,
                    "max_ms": w.max_latency_micros as f64 / 1000.0,
                })).collect::<Vec<_>>(),
            });
            println!("{report}");
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}
