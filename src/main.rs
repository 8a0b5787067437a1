//! The `agentd` binary: `agentd run --config agent.toml`, `agentd demo`, and
//! `agentd <group> <action>` against a running daemon.

mod cli;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use agentd::Agent;
use agentd::config::Config;

// glibc's malloc took ~15% of an agent's CPU under load (sled and the
// HTTP/JSON paths allocate and free many short-lived buffers across
// threads); mimalloc cut CPU per flow by a fifth in `agentd bench`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "agentd",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("AGENTD_GIT_COMMIT"), ")"),
    about = "A DIDComm v2 peer agent daemon"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon until SIGINT or SIGTERM.
    Run {
        #[arg(long, short, default_value = "agent.toml")]
        config: PathBuf,
    },
    /// Restore a backup (`agentd backup`) into the config's data directory,
    /// which must be missing or empty. Refuses a corrupt or truncated file,
    /// and a master key that does not open the backup's keys.
    Restore {
        #[arg(long)]
        from: PathBuf,
        #[arg(long, short, default_value = "agent.toml")]
        config: PathBuf,
    },
    /// Seal every key under a new master key, in one step, with the daemon
    /// stopped: the key file is replaced by a new one, or, with
    /// AGENTD_MASTER_KEY set, the new key comes from AGENTD_NEW_MASTER_KEY.
    /// Run it again after a crash to finish.
    RotateMasterKey {
        #[arg(long, short, default_value = "agent.toml")]
        config: PathBuf,
    },
    /// Run scenario files: start agents, run their steps, check the states.
    #[command(subcommand)]
    Harness(cli::harness::Harness),
    /// Start an issuer and a holder on loopback, issue one credential, show
    /// every state change and the verified credential, and clean up.
    Demo,
    /// Measure complete issuance flows per second between two agents
    /// against the crypto ceiling (see BENCH.md).
    Bench {
        /// Small counts: every part runs in well under a minute.
        #[arg(long)]
        quick: bool,
        /// Where to write the figures as JSON.
        #[arg(long, default_value = "bench.json")]
        json: PathBuf,
        /// Run the agents from another agentd build (to compare builds
        /// under the same driver); default: this binary.
        #[arg(long)]
        agents: Option<PathBuf>,
        /// Only these levels, `CONCURRENCY:FLOWS` (repeatable), and no
        /// growth runs: for A/B comparisons of one level.
        #[arg(long = "level", value_parser = parse_level)]
        levels: Vec<(usize, usize)>,
        /// Only the search part (stores of 100k and 1M records; with
        /// --quick, 2k and 20k).
        #[arg(long, conflicts_with_all = ["levels", "agents"])]
        search_only: bool,
    },
    #[command(flatten)]
    Client(Box<cli::Client>),
}

fn init_logging_with(level: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(level))
        .with_writer(std::io::stderr)
        .init();
}

/// Logs to stderr at `RUST_LOG`'s level; with `traces`, agentd's spans are
/// exported too, whatever that level (the two layers filter separately).
fn init_logging(json: bool, traces: Option<&agentd::telemetry::Traces>) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::{Layer as _, fmt};
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let stderr = fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let stderr = if json {
        stderr.json().boxed()
    } else {
        stderr.boxed()
    };
    let logs = tracing_subscriber::registry().with(stderr.with_filter(filter));
    match traces {
        Some(t) => logs.with(t.layer()).init(),
        None => logs.init(),
    }
}

fn main() -> std::process::ExitCode {
    // Envelopes are decrypted on the blocking pool, a bounded number at a
    // time; a small pool whose threads live on keeps that from costing
    // thread churn (new stacks and allocator heaps) under load.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(32)
        .thread_keep_alive(std::time::Duration::from_secs(300))
        .build();
    match runtime {
        Ok(runtime) => runtime.block_on(run_cli()),
        Err(e) => {
            eprintln!("agentd: cannot start the async runtime: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run_cli() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config } => run(config).await,
        Command::Restore { from, config } => cli::admin::restore(&config, &from),
        Command::RotateMasterKey { config } => cli::admin::rotate(&config),
        Command::Harness(h) => h.run().await,
        Command::Demo => {
            // Quiet logs: the demo prints what happens itself.
            if std::env::var_os("RUST_LOG").is_none() {
                init_logging_with("warn");
            } else {
                init_logging(false, None);
            }
            cli::demo::run().await
        }
        Command::Bench {
            quick,
            json,
            agents,
            levels,
            search_only,
        } => {
            init_logging_with("warn");
            bench(quick, json, agents, levels, search_only).await
        }
        Command::Client(c) => c.run().await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One readable line (with causes), not a backtrace.
            eprintln!("agentd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(path: PathBuf) -> anyhow::Result<()> {
    let config = Config::load(&path)?;
    let traces = agentd::telemetry::Traces::start(&config.traces)?;
    init_logging(config.log.format == "json", traces.as_ref());
    let result = serve(config).await;
    // After the agent stopped, so that its last spans are in the batch sent.
    if let Some(traces) = traces {
        traces.shutdown().await;
    }
    result
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let master = std::env::var("AGENTD_MASTER_KEY").ok();
    // Before the ready line: a supervisor may send SIGTERM as soon as it
    // reads it, and an uninstalled handler would let the signal kill us
    // without a shutdown.
    use tokio::signal::unix::{SignalKind, signal};
    let (mut term, mut int) = (
        signal(SignalKind::terminate())?,
        signal(SignalKind::interrupt())?,
    );
    let mut agent = Agent::start(config, master.as_deref())
        .await
        .context("agentd could not start")?;
    // One machine-readable line on stdout: scripts and tests read the ports here.
    println!(
        "agentd ready didcomm={} grpc={} endpoint={}",
        agent.didcomm_addr, agent.grpc_addr, agent.endpoint
    );
    tokio::select! {
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = agent.until_stopped() => tracing::error!("a server stopped unexpectedly"),
    }
    agent.shutdown().await?;
    Ok(())
}

fn parse_level(s: &str) -> Result<(usize, usize), String> {
    let (c, n) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?}: expected CONCURRENCY:FLOWS, e.g. 100:4000"))?;
    let number = |x: &str| {
        x.parse::<usize>()
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(|| format!("{x:?} is not a positive number"))
    };
    Ok((number(c)?, number(n)?))
}

async fn bench(
    quick: bool,
    json: PathBuf,
    agents: Option<PathBuf>,
    levels: Vec<(usize, usize)>,
    search_only: bool,
) -> anyhow::Result<()> {
    let mut opts = if quick {
        agentd::bench::Options::quick()
    } else {
        agentd::bench::Options::full()
    };
    if search_only {
        let s = agentd::bench::search_only(&opts, &mut |line: &str| println!("{line}")).await?;
        std::fs::write(&json, serde_json::to_string_pretty(&s)?)
            .with_context(|| format!("writing {}", json.display()))?;
        println!("figures written to {}", json.display());
        return Ok(());
    }
    if !levels.is_empty() {
        opts.levels = levels;
        opts.growth.clear();
        opts.search.clear();
    }
    let binary = match agents {
        Some(b) => b,
        None => std::env::current_exe().context("finding the agentd binary")?,
    };
    let report = agentd::bench::run(&binary, &opts, |line| println!("{line}")).await?;
    if let Some(best) = report.best() {
        println!(
            "best: {:.1} flows/s = {:.2} of the crypto ceiling measured before it ({:.0} flows/s; median of the run {:.0}, range {:.0}-{:.0}); growth ratio {}",
            best.flows_per_sec,
            best.ratio_to_ceiling,
            best.ceiling_flows_per_sec,
            report.ceiling_flows_per_sec,
            report.ceiling_min,
            report.ceiling_max,
            report
                .growth_ratio
                .map_or_else(|| "n/a".into(), |r| format!("{r:.2}")),
        );
    }
    std::fs::write(&json, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", json.display()))?;
    println!("figures written to {}", json.display());
    Ok(())
}
