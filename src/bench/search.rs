//! Search at scale: one store per size, each filled with records across
//! 100 wallets through the write path issuance uses (indexes kept in the
//! same transactions), then queries of each kind timed in-process, a first
//! page with its total, the stores taking turns query by query, so that
//! growth shows as a ratio measured in one stretch of time; three passes,
//! each figure the median of the passes'.

use std::path::Path;
use std::time::Instant;

use serde::Serialize;
use serde_json::json;

use crate::error::Result;
use crate::search::{self, Cond, Filter, Kind, Op, Query, SortKey, Value};
use crate::store::{CredentialRecord, Store};

const WALLETS: usize = 100;
/// Records per transaction: sled's transactions slow down with large
/// write sets, and a flow writes a few records at a time anyway.
const BATCH: usize = 100;
/// sled's cache for the store (`storage.cache_mib`): sized so a million
/// records' index and hot records stay in memory. At sled's default (1 GiB)
/// a million records' queries read from disk and their p99 triples.
const CACHE_MIB: u64 = 6_144;
/// Queries of each kind per size in one pass; each on a wallet picked in
/// turn.
const RUNS: usize = 400;
/// Passes over every query; a figure is the median of the passes' (one
/// pass's p99 is its fourth-slowest query, and one stall moves it).
const PASSES: usize = 3;
const STATES: [&str; 6] = [
    "OfferSent",
    "RequestReceived",
    "CredentialSent",
    "CredentialSent",
    "CredentialSent",
    "Abandoned",
];
const NAMES: [&str; 3] = ["Alice Example", "Bob Example", "Carol Example"];
const TYPES: [&str; 5] = ["Badge", "Membership", "Degree", "License", "Ticket"];

#[derive(Debug, Clone, Serialize)]
pub struct QueryFigures {
    pub name: String,
    /// What the query is, in the CLI's text form.
    pub filter: String,
    /// Matches in one wallet, on average (the first page's total).
    pub mean_total: f64,
    /// The median of the passes' p50 and p99.
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Each pass's p99, to show the spread.
    pub p99_passes_ms: Vec<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SizeFigures {
    pub records: usize,
    pub seconds_to_fill: f64,
    pub records_per_sec_filling: f64,
    pub disk_bytes_per_record: f64,
    /// What this process's resident memory grew by while the store was
    /// filled (its share of sled's cache, mostly).
    pub rss_growth_mib: Option<f64>,
    pub queries: Vec<QueryFigures>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Search {
    pub sizes: Vec<SizeFigures>,
    /// p99 at the largest size ÷ at each smaller one, per indexed query.
    pub growth: Vec<Growth>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Growth {
    pub query: String,
    pub from_records: usize,
    pub to_records: usize,
    pub p99_ratio: f64,
}

fn cond(f: &str, op: Op, v: Value) -> Filter {
    Filter::Cond(Cond::new(Kind::Records, f, op, v).expect("a valid condition"))
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

/// The queries measured: (name, text form, query, served by indexes only);
/// `half` is a time half of the records were updated after.
fn queries(half: i64) -> Vec<(&'static str, &'static str, Query, bool)> {
    let q = |f| Query {
        filter: Some(f),
        sort: vec![],
    };
    vec![
        (
            "indexed, one condition",
            "state=CredentialSent",
            q(cond("state", Op::Eq, text("CredentialSent"))),
            true,
        ),
        (
            "indexed, three conditions",
            "state=CredentialSent and types~Degree and connection_id=conn-3 (1 in 70)",
            q(Filter::And(vec![
                cond("state", Op::Eq, text("CredentialSent")),
                cond("types", Op::Contains, text("Degree")),
                cond("connection_id", Op::Eq, text("conn-3")),
            ])),
            true,
        ),
        (
            "not/or of indexed",
            "(state=OfferSent or state=RequestReceived or types~Ticket) and not issuer=did:key:issuer-1",
            q(Filter::And(vec![
                Filter::Or(vec![
                    cond("state", Op::Eq, text("OfferSent")),
                    cond("state", Op::Eq, text("RequestReceived")),
                    cond("types", Op::Contains, text("Ticket")),
                ]),
                Filter::Not(Box::new(cond("issuer", Op::Eq, text("did:key:issuer-1")))),
            ])),
            true,
        ),
        (
            "time range, newest first",
            "updated_at >= (when half were) --sort -created_at",
            Query {
                filter: Some(cond("updated_at", Op::Gte, Value::Time(half))),
                sort: vec![SortKey::new(Kind::Records, "created_at", true).expect("a key")],
            },
            true,
        ),
        (
            "claim (no index: every record of the wallet read)",
            "claims.name like 'Al%' and state=CredentialSent",
            q(Filter::And(vec![
                cond("claims.name", Op::Like, text("Al%")),
                cond("state", Op::Eq, text("CredentialSent")),
            ])),
            false,
        ),
    ]
}

/// Record `i` of `of`: wallets in turn; created in order over the two
/// hours before `now`.
fn record(i: usize, of: usize, now: i64) -> CredentialRecord {
    let w = i % WALLETS;
    let n = i / WALLETS;
    let created = created_at(i, of, now);
    serde_json::from_value(json!({
        "id": format!("{:08x}-{:04x}-bench", i, w),
        "wallet_id": format!("wallet-{w:03}"),
        "role": if n.is_multiple_of(10) { "Holder" } else { "Issuer" },
        "state": STATES[n % STATES.len()],
        "version": 3,
        "thid": format!("thread-{i}"),
        "connection_id": format!("conn-{}", n % 7),
        "our_did": "did:peer:2.ours",
        "their_did": "did:peer:2.theirs",
        "claims": {
            "name": NAMES[n % NAMES.len()],
            "level": n % 5,
            "degree": {"name": "BSc", "year": 2000 + n % 25},
        },
        "types": [TYPES[n % TYPES.len()]],
        "schema_id": null,
        "validity_period_secs": 0,
        "automatic_issuance": true,
        "idempotency_key": null,
        "issuer_did": format!("did:key:issuer-{}", n % 3),
        "subject_did": format!("did:key:z6Mksubject{}", n % 1000),
        "challenge": "",
        "credential_id": format!("urn:uuid:{i:032x}"),
        "ack_received": true,
        "problem": null,
        "comment": null,
        "expires_at_ms": null,
        "deadline_ms": null,
        "meta_retries": 0,
        "meta_next_retry_ms": null,
        "meta_last_failure": null,
        "created_at_ms": created,
        "updated_at_ms": created + 1_000,
        "issued_at_ms": now,
        "created_by": "tok-1",
    }))
    .expect("a record")
}

fn created_at(i: usize, of: usize, now: i64) -> i64 {
    now - 7_200_000 + (i as i64 * 7_200_000 / of.max(1) as i64)
}

fn dir_bytes(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// A filled store of one size.
struct Filled {
    store: Store,
    path: std::path::PathBuf,
    records: usize,
    seconds: f64,
    rss_growth_mib: Option<f64>,
}

/// Fills a store with `size` records, in transactions of [`BATCH`].
fn fill(dir: &Path, size: usize, now: i64) -> Result<Filled> {
    let path = dir.join(format!("db-{size}"));
    let rss_before = super::proc::rss_mib(std::process::id());
    let store = Store::open_with_cache(&path, CACHE_MIB)?;
    let started = Instant::now();
    let mut filled = 0;
    while filled < size {
        let end = size.min(filled + BATCH);
        let batch: Vec<CredentialRecord> = (filled..end).map(|i| record(i, size, now)).collect();
        store.transact(|tx| batch.iter().try_for_each(|r| tx.put_record(None, r)))?;
        filled = end;
    }
    store.flush()?;
    let rss_after = super::proc::rss_mib(std::process::id());
    Ok(Filled {
        store,
        path,
        records: size,
        seconds: started.elapsed().as_secs_f64(),
        rss_growth_mib: rss_before.zip(rss_after).map(|(b, a)| a - b),
    })
}

/// Fills one store for each of `sizes`, then times each query on every
/// store in turn: run by run, so a slower stretch of the machine falls on
/// all sizes alike.
pub fn measure(sizes: &[usize], mut progress: impl FnMut(&str)) -> Result<Search> {
    let dir = tempfile::tempdir().map_err(|e| crate::error::Error::Storage(e.to_string()))?;
    let now = crate::now_ms();
    let mut stores = Vec::new();
    for &size in sizes {
        let f = fill(dir.path(), size, now)?;
        progress(&format!(
            "search: {} records filled at {:.0} records/s",
            f.records,
            f.records as f64 / f.seconds
        ));
        stores.push(f);
    }
    // Every store spreads its records over the same two hours, so half of
    // any store's records were updated after the same time.
    let queries = queries(created_at(1, 2, now));
    // times[pass][store][query]: a query's timings in one pass.
    let mut times = vec![vec![vec![Vec::with_capacity(RUNS); queries.len()]; stores.len()]; PASSES];
    let mut totals = vec![vec![0u64; queries.len()]; stores.len()];
    for (pass, times) in times.iter_mut().enumerate() {
        for (qi, (_, _, q, _)) in queries.iter().enumerate() {
            // One untimed round over the wallets first: a first read of
            // each is a cold cache, not the query.
            let warm = if pass == 0 { WALLETS } else { 0 };
            for run in 0..RUNS + warm {
                let wallet = format!("wallet-{:03}", run % WALLETS);
                for (si, f) in stores.iter().enumerate() {
                    let t = Instant::now();
                    let page: search::Found<CredentialRecord> =
                        search::run(&f.store, &wallet, q, 20, "", now)?;
                    if run >= warm {
                        times[si][qi].push(t.elapsed().as_secs_f64() * 1000.0);
                        if pass == 0 {
                            totals[si][qi] += page.total_size;
                        }
                    }
                }
            }
        }
    }
    times
        .iter_mut()
        .flatten()
        .flatten()
        .for_each(|t| t.sort_by(f64::total_cmp));
    let mut out = Search::default();
    for (si, f) in stores.iter().enumerate() {
        let figures = queries
            .iter()
            .enumerate()
            .map(|(qi, (name, filter, _, _))| {
                let passes = || times.iter().map(|pass| pass[si][qi].as_slice());
                let p99_passes_ms: Vec<f64> = passes().map(|t| percentile(t, 0.99)).collect();
                QueryFigures {
                    name: (*name).into(),
                    filter: (*filter).into(),
                    mean_total: totals[si][qi] as f64 / RUNS as f64,
                    p50_ms: median(passes().map(|t| percentile(t, 0.50)).collect()),
                    p99_ms: median(p99_passes_ms.clone()),
                    p99_passes_ms,
                }
            })
            .collect();
        let size_figures = SizeFigures {
            records: f.records,
            seconds_to_fill: f.seconds,
            records_per_sec_filling: f.records as f64 / f.seconds,
            disk_bytes_per_record: dir_bytes(&f.path) as f64 / f.records as f64,
            rss_growth_mib: f.rss_growth_mib,
            queries: figures,
        };
        progress(&describe(&size_figures));
        out.sizes.push(size_figures);
    }
    if let Some((b, smaller)) = out.sizes.split_last() {
        for a in smaller {
            for ((qa, qb), (_, _, _, indexed)) in a.queries.iter().zip(&b.queries).zip(&queries) {
                if *indexed {
                    out.growth.push(Growth {
                        query: qa.name.clone(),
                        from_records: a.records,
                        to_records: b.records,
                        p99_ratio: qb.p99_ms / qa.p99_ms,
                    });
                }
            }
        }
    }
    Ok(out)
}

/// The `p` quantile of sorted `t`, nearest rank.
fn percentile(t: &[f64], p: f64) -> f64 {
    t[super::rank(t.len(), p)]
}

fn median(mut of: Vec<f64>) -> f64 {
    of.sort_by(f64::total_cmp);
    percentile(&of, 0.5)
}

fn describe(s: &SizeFigures) -> String {
    let mut lines = vec![format!(
        "search with {} records in {WALLETS} wallets (cache_mib {CACHE_MIB}): filled at {:.0} records/s, {:.0} bytes/record on disk, resident memory +{} while filling",
        s.records,
        s.records_per_sec_filling,
        s.disk_bytes_per_record,
        s.rss_growth_mib.map_or_else(
            || "n/a".into(),
            |m| format!(
                "{m:.0} MiB ({:.0} bytes/record)",
                m * 1048576.0 / s.records as f64
            )
        ),
    )];
    for q in &s.queries {
        lines.push(format!(
            "  {:<48} p50 {:>7.2} ms, p99 {:>7.2} ms (passes {}), {:>6.0} matching per wallet",
            q.name,
            q.p50_ms,
            q.p99_ms,
            q.p99_passes_ms
                .iter()
                .map(|p| format!("{p:.2}"))
                .collect::<Vec<_>>()
                .join(" "),
            q.mean_total
        ));
    }
    lines.join("\n")
}
