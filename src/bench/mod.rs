//! `agentd bench`: complete issue-credential flows per second between an
//! issuer and a holder agent (default config: sled with its normal
//! durability, HTTP on loopback, authcrypt), at several concurrencies,
//! against the crypto ceiling measured in the same run, and again with many
//! records already stored; then revocations and verifications per second,
//! and bulk offers stored per second; last, searches over up to a million
//! stored records.
//! Figures are printed and returned as JSON.

mod bulk;
mod ceiling;
mod flows;
mod proc;
mod revocation;
mod search;
mod seed;

pub use bulk::Bulk;
pub use revocation::Revocation;
pub use search::Search;

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::Outbox;
use crate::harness::{self, Clients, HarnessError, ProcessAgent};
use crate::store::Role;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Harness(#[from] HarnessError),
    #[error(transparent)]
    Agent(#[from] crate::error::Error),
}

pub type Result<T> = std::result::Result<T, BenchError>;

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// (concurrency, flows) per level.
    pub levels: Vec<(usize, usize)>,
    /// Records stored before the growth runs, and the flows each runs.
    pub growth: Vec<usize>,
    pub growth_flows: usize,
    pub growth_concurrency: usize,
    pub ceiling_flows: u64,
    /// Credentials revoked, and verifications on each side, after the levels.
    pub revocations: usize,
    pub verifications: usize,
    /// `CreateOffers` calls of 1,000, last on the pair.
    pub bulk_batches: usize,
    /// Records stored (across 100 wallets) at which searches are timed.
    pub search: Vec<usize>,
}

impl Options {
    /// The full run BENCH.md reports.
    pub fn full() -> Options {
        Options {
            levels: vec![(1, 200), (10, 1_000), (100, 4_000)],
            growth: vec![10_000, 200_000],
            growth_flows: 2_000,
            growth_concurrency: 100,
            ceiling_flows: 2_000,
            revocations: 2_000,
            verifications: 2_000,
            bulk_batches: 10,
            search: vec![100_000, 300_000, 1_000_000],
        }
    }

    /// Under a minute: every part runs, with small counts.
    pub fn quick() -> Options {
        Options {
            levels: vec![(1, 20), (10, 100), (100, 300)],
            growth: vec![1_000, 5_000],
            growth_flows: 200,
            growth_concurrency: 100,
            // About a second: fewer flows made the ceiling swing by ±20%.
            ceiling_flows: 1_000,
            revocations: 200,
            verifications: 200,
            bulk_batches: 2,
            search: vec![2_000, 20_000],
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Level {
    pub concurrency: usize,
    pub flows: usize,
    pub seconds: f64,
    pub flows_per_sec: f64,
    /// DIDComm messages delivered per second (four per flow).
    pub messages_per_sec: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    /// CPU time of both agent processes per flow (not the driver's).
    pub cpu_ms_per_flow: Option<f64>,
    /// The larger agent's peak resident memory so far.
    pub peak_rss_mib: Option<f64>,
    /// The crypto ceiling measured just before this level, agents idle.
    pub ceiling_flows_per_sec: f64,
    /// flows_per_sec ÷ that ceiling.
    pub ratio_to_ceiling: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Growth {
    /// Flows stored on each side before the run.
    pub stored: usize,
    /// Seeding both stores, starting both agents and connecting them.
    pub seconds_to_seed: f64,
    pub run: Level,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub cores: usize,
    /// The median of the ceilings measured before each level.
    pub ceiling_flows_per_sec: f64,
    pub ceiling_min: f64,
    pub ceiling_max: f64,
    pub levels: Vec<Level>,
    pub growth: Vec<Growth>,
    /// Flows/s with the most records stored ÷ with the fewest.
    pub growth_ratio: Option<f64>,
    pub revocation: Revocation,
    pub bulk: Bulk,
    pub search: Search,
}

impl Report {
    /// The concurrency level with the highest flows/s.
    pub fn best(&self) -> Option<&Level> {
        self.levels
            .iter()
            .max_by(|a, b| a.flows_per_sec.total_cmp(&b.flows_per_sec))
    }
}

const MESSAGES_PER_FLOW: f64 = 4.0;

/// Runs the benchmark with agents started from `binary` (an `agentd`),
/// calling `progress` with a line for each finished part.
pub async fn run(binary: &Path, opts: &Options, mut progress: impl FnMut(&str)) -> Result<Report> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // On a shared machine the ceiling drifts by ±20% within minutes, so each
    // level is divided by a ceiling measured just before it, not one taken
    // at the start.
    let mut ceilings = Vec::new();
    let mut ceiling = async |progress: &mut dyn FnMut(&str)| -> Result<f64> {
        let flows = opts.ceiling_flows;
        let c = tokio::task::spawn_blocking(move || ceiling::measure(flows, cores))
            .await
            .expect("ceiling panicked")?;
        progress(&format!(
            "crypto ceiling: {c:.0} flows/s on {cores} cores (4 authcrypt pack+unpack + 1 VC-JWT sign+verify per flow)"
        ));
        ceilings.push(c);
        Ok(c)
    };

    let pair = Pair::start(binary, None).await?;
    pair.warm_up().await?;
    let mut levels = Vec::new();
    for &(concurrency, n) in &opts.levels {
        let c = ceiling(&mut progress).await?;
        let level = pair.measure(n, concurrency, c).await?;
        progress(&describe(&level));
        levels.push(level);
    }
    let revoking =
        revocation::measure(&pair.ic, &pair.hc, opts.revocations, opts.verifications).await?;
    progress(&format!(
        "revocation: {} one by one from 10 callers = {:.0}/s, {} in calls of 100 = {:.0}/s; verification: {:.0}/s against the issuer's own list, {:.0}/s at the holder (list fetched, cached)",
        revoking.revoked_one_by_one,
        revoking.revocations_per_sec,
        revoking.revoked_in_bulk,
        revoking.bulk_revocations_per_sec,
        revoking.verifications_per_sec_own_list,
        revoking.verifications_per_sec_fetched_list,
    ));
    // Last on this pair: the holder is left with thousands of offers.
    let bulk = bulk::measure(&pair.ic, &pair.connection, opts.bulk_batches).await?;
    progress(&format!(
        "bulk offers: {} in calls of {} stored in {:.2} s = {:.0} offers/s",
        bulk.offers, bulk.batch, bulk.seconds, bulk.offers_per_sec
    ));
    pair.stop().await?;

    let mut growth = Vec::new();
    for &stored in &opts.growth {
        let started = Instant::now();
        let pair = Pair::start(binary, Some(stored)).await?;
        let seconds_to_seed = started.elapsed().as_secs_f64();
        pair.warm_up().await?;
        let c = ceiling(&mut progress).await?;
        let run = pair
            .measure(opts.growth_flows, opts.growth_concurrency, c)
            .await?;
        progress(&format!("with {stored} flows stored: {}", describe(&run)));
        growth.push(Growth {
            stored,
            seconds_to_seed,
            run,
        });
        pair.stop().await?;
    }
    let growth_ratio = match (growth.first(), growth.last()) {
        (Some(a), Some(b)) if growth.len() > 1 => Some(b.run.flows_per_sec / a.run.flows_per_sec),
        _ => None,
    };
    let search = search_only(opts, &mut progress).await?;
    ceilings.sort_by(f64::total_cmp);
    Ok(Report {
        cores,
        ceiling_flows_per_sec: ceilings.get(ceilings.len() / 2).copied().unwrap_or(0.0),
        ceiling_min: ceilings.first().copied().unwrap_or(0.0),
        ceiling_max: ceilings.last().copied().unwrap_or(0.0),
        levels,
        growth,
        growth_ratio,
        revocation: revoking,
        bulk,
        search,
    })
}

/// The search part alone: stores of each of `opts.search` sizes filled and
/// queried in this process.
pub async fn search_only(opts: &Options, progress: &mut impl FnMut(&str)) -> Result<Search> {
    if opts.search.is_empty() {
        return Ok(Search::default());
    }
    let sizes = opts.search.clone();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let work = tokio::task::spawn_blocking(move || {
        search::measure(&sizes, |line| {
            let _ = tx.send(line.to_string());
        })
    });
    while let Some(line) = rx.recv().await {
        progress(&line);
    }
    let s = work.await.expect("search bench panicked")?;
    if let Some((largest, smaller)) = s.sizes.split_last() {
        for from in smaller.iter().map(|z| z.records) {
            let ratios: Vec<String> = s
                .growth
                .iter()
                .filter(|g| g.from_records == from)
                .map(|g| format!("{} {:.2}", g.query, g.p99_ratio))
                .collect();
            progress(&format!(
                "search p99 growth, {from} → {} records: {}",
                largest.records,
                ratios.join("; ")
            ));
        }
    }
    Ok(s)
}

/// One line for a level.
fn describe(l: &Level) -> String {
    format!(
        "concurrency {:>3}: {:>5} flows in {:>6.2} s = {:>7.1} flows/s ({:.0} msgs/s), p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, CPU {} per flow, peak RSS {}, {:.2} of ceiling",
        l.concurrency,
        l.flows,
        l.seconds,
        l.flows_per_sec,
        l.messages_per_sec,
        l.p50_ms,
        l.p95_ms,
        l.p99_ms,
        l.cpu_ms_per_flow
            .map_or_else(|| "n/a".to_string(), |c| format!("{c:.2} ms")),
        l.peak_rss_mib
            .map_or_else(|| "n/a".to_string(), |m| format!("{m:.0} MiB")),
        l.ratio_to_ceiling
    )
}

/// An issuer and a holder agent, each an `agentd run` child process with
/// the default settings (only ports and paths are generated), connected.
struct Pair {
    issuer: ProcessAgent,
    holder: ProcessAgent,
    ic: Clients,
    hc: Clients,
    connection: String,
    /// Seeded stores live here until the pair stops.
    _seeded: Option<tempfile::TempDir>,
}

impl Pair {
    /// Starts both agents from `binary`, each with `seeded` finished flows
    /// already stored.
    async fn start(binary: &Path, seeded: Option<usize>) -> Result<Pair> {
        let dir = match seeded {
            Some(n) => {
                let dir = tempfile::tempdir().map_err(HarnessError::from)?;
                let (i, h) = (dir.path().join("issuer"), dir.path().join("holder"));
                tokio::task::spawn_blocking(move || {
                    seed::seed(&i, Role::Issuer, n)?;
                    seed::seed(&h, Role::Holder, n)
                })
                .await
                .expect("seeding panicked")?;
                Some(dir)
            }
            None => None,
        };
        let start = |name: &'static str| {
            let store = dir
                .as_ref()
                .map(|d| d.path().join(name).display().to_string());
            async move {
                // The harness's test settings give way to the defaults.
                let mut env = vec![
                    ("RUST_LOG", "warn".to_string()),
                    (
                        "AGENTD_OUTBOX_BASE_BACKOFF_MS",
                        Outbox::default().base_backoff_ms.to_string(),
                    ),
                ];
                env.extend(store.map(|s| ("AGENTD_STORAGE_PATH", s)));
                let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
                ProcessAgent::start(binary, name, &env).await
            }
        };
        let issuer = start("issuer").await?;
        let holder = start("holder").await?;
        let (mut ic, mut hc) = (issuer.clients().await?, holder.clients().await?);
        let (conn, _) = harness::connect(&mut ic, "", &mut hc, "", Duration::from_secs(10)).await?;
        Ok(Pair {
            issuer,
            holder,
            ic,
            hc,
            connection: conn.id,
            _seeded: dir,
        })
    }

    fn pids(&self) -> Vec<u32> {
        [self.issuer.pid(), self.holder.pid()]
            .into_iter()
            .flatten()
            .collect()
    }

    /// CPU seconds both agents have used so far.
    fn cpu_secs(&self) -> Option<f64> {
        self.pids().into_iter().map(proc::cpu_secs).sum()
    }

    /// The larger of the two agents' peak resident memory.
    fn peak_rss_mib(&self) -> Option<f64> {
        self.pids()
            .into_iter()
            .filter_map(proc::peak_rss_mib)
            .reduce(f64::max)
    }

    async fn warm_up(&self) -> Result<()> {
        flows::run(
            &self.ic,
            &self.hc,
            &self.connection,
            20,
            4,
            Duration::from_secs(60),
        )
        .await?;
        Ok(())
    }

    async fn measure(&self, n: usize, concurrency: usize, ceiling: f64) -> Result<Level> {
        let cpu_before = self.cpu_secs();
        let within = Duration::from_secs(60 + n as u64 / 10);
        let run = flows::run(&self.ic, &self.hc, &self.connection, n, concurrency, within).await?;
        let cpu = cpu_before.zip(self.cpu_secs()).map(|(a, b)| b - a);
        let seconds = run.wall.as_secs_f64();
        let flows_per_sec = run.flows as f64 / seconds;
        let pct = |p: f64| run.latencies[rank(run.latencies.len(), p)].as_secs_f64() * 1000.0;
        Ok(Level {
            concurrency,
            flows: run.flows,
            seconds,
            flows_per_sec,
            messages_per_sec: flows_per_sec * MESSAGES_PER_FLOW,
            p50_ms: pct(0.50),
            p95_ms: pct(0.95),
            p99_ms: pct(0.99),
            cpu_ms_per_flow: cpu.map(|c| c * 1000.0 / run.flows as f64),
            peak_rss_mib: self.peak_rss_mib(),
            ceiling_flows_per_sec: ceiling,
            ratio_to_ceiling: flows_per_sec / ceiling,
        })
    }

    async fn stop(mut self) -> Result<()> {
        self.issuer.stop().await?;
        Ok(self.holder.stop().await?)
    }
}

/// Where the `p` quantile is in a sorted list of `len` (at least one):
/// the nearest rank, as an index.
fn rank(len: usize, p: f64) -> usize {
    ((len as f64 * p).ceil() as usize).clamp(1, len) - 1
}
