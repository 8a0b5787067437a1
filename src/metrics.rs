//! Prometheus metrics (`prometheus-client`): what the daemon counts as it
//! works, what is read from the store at each scrape, and `GET /metrics`
//! on its own listener (`[metrics] listen`, off unless set).
//!
//! README.md, "Operating", lists every metric with its meaning.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::store::{RecordEvent, RecordState, Role, Store};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RecordLabels {
    role: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    result: String,
    destination: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrpcLabels {
    method: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleLabels {
    role: String,
}

/// The daemon's metrics; a cheap handle, shared by every part.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

struct Inner {
    /// Off (no listener): nothing is counted.
    on: bool,
    registry: Registry,
    records: Family<RecordLabels, Gauge>,
    /// Records by (role, state), counted once at start, then moved by
    /// every committed event; mirrored into `records` at scrape.
    counts: Mutex<HashMap<(Role, RecordState), i64>>,
    /// When each record seen created since start was created, until it
    /// ends: for `flow_seconds`.
    started: Mutex<HashMap<(String, String), i64>>,
    transitions: Family<RecordLabels, Counter>,
    flow_seconds: Family<RoleLabels, Histogram>,
    inbound: Family<OutcomeLabels, Counter>,
    deliveries: Family<DeliveryLabels, Counter>,
    delivery_seconds: Histogram,
    outbox_depth: Gauge,
    outbox_oldest_seconds: Gauge,
    dead_letters: Gauge,
    grpc_calls: Family<GrpcLabels, Counter>,
    grpc_seconds: Family<MethodLabels, Histogram>,
    store_bytes: Gauge,
    flush_seconds: Histogram,
    subscribers: Gauge,
}

fn latency() -> Histogram {
    // 0.5 ms to about 16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Flows timed at once at most: offers never answered must not grow it
/// without bound.
const MAX_TIMED: usize = 100_000;

impl Default for Metrics {
    /// Metrics that count nothing: for a daemon with no metrics listener.
    fn default() -> Self {
        Metrics::build(false)
    }
}

impl Metrics {
    /// Metrics that count.
    pub fn enabled() -> Self {
        Metrics::build(true)
    }

    fn build(on: bool) -> Self {
        let mut registry = Registry::with_prefix("agentd");
        let records = Family::<RecordLabels, Gauge>::default();
        registry.register(
            "records",
            "Issue-credential records by role and state",
            records.clone(),
        );
        let transitions = Family::<RecordLabels, Counter>::default();
        registry.register(
            "transitions",
            "Record state changes committed, by role and the state entered",
            transitions.clone(),
        );
        let flow_seconds =
            Family::<RoleLabels, Histogram>::new_with_constructor(latency as fn() -> Histogram);
        registry.register(
            "flow_seconds",
            "From a record's creation to its credential sent (issuer) or received (holder)",
            flow_seconds.clone(),
        );
        let inbound = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "inbound_messages",
            "POST /didcomm requests by outcome: accepted, or refused and why",
            inbound.clone(),
        );
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        registry.register(
            "delivery_attempts",
            "Outbound delivery attempts by result (delivered, failed, gave_up) and destination class",
            deliveries.clone(),
        );
        let delivery_seconds = latency();
        registry.register(
            "delivery_seconds",
            "Duration of one outbound delivery attempt",
            delivery_seconds.clone(),
        );
        let outbox_depth = Gauge::default();
        registry.register(
            "outbox_depth",
            "Messages waiting in the outbox",
            outbox_depth.clone(),
        );
        let outbox_oldest_seconds = Gauge::default();
        registry.register(
            "outbox_oldest_age_seconds",
            "Age of the oldest message waiting in the outbox (0: none)",
            outbox_oldest_seconds.clone(),
        );
        let dead_letters = Gauge::default();
        registry.register(
            "dead_letters",
            "Messages given up on, kept for inspection",
            dead_letters.clone(),
        );
        let grpc_calls = Family::<GrpcLabels, Counter>::default();
        registry.register(
            "grpc_calls",
            "Control-plane calls by method and status code",
            grpc_calls.clone(),
        );
        let grpc_seconds =
            Family::<MethodLabels, Histogram>::new_with_constructor(latency as fn() -> Histogram);
        registry.register(
            "grpc_seconds",
            "Control-plane call duration by method (until the answer's headers)",
            grpc_seconds.clone(),
        );
        let store_bytes = Gauge::default();
        registry.register(
            "store_disk_bytes",
            "Size of the sled database on disk",
            store_bytes.clone(),
        );
        let flush_seconds = latency();
        registry.register(
            "store_flush_seconds",
            "Duration of one sled flush (group commit)",
            flush_seconds.clone(),
        );
        let subscribers = Gauge::default();
        registry.register(
            "event_subscribers",
            "Open SubscribeEvents streams and waiting calls",
            subscribers.clone(),
        );
        Metrics(Arc::new(Inner {
            on,
            registry,
            records,
            counts: Mutex::default(),
            started: Mutex::default(),
            transitions,
            flow_seconds,
            inbound,
            deliveries,
            delivery_seconds,
            outbox_depth,
            outbox_oldest_seconds,
            dead_letters,
            grpc_calls,
            grpc_seconds,
            store_bytes,
            flush_seconds,
            subscribers,
        }))
    }
}

impl Metrics {
    /// Counts the stored records by role and state (once, at start).
    pub fn count_records(&self, store: &Store) -> crate::error::Result<()> {
        let counts = store.record_states()?;
        *self.0.counts.lock().expect("not poisoned") = counts;
        Ok(())
    }

    /// Committed events: records move between states; flows that began
    /// since start and end well are timed.
    pub fn on_events<'a>(&self, events: impl IntoIterator<Item = &'a RecordEvent>) {
        if !self.0.on {
            return;
        }
        let mut counts = self.0.counts.lock().expect("not poisoned");
        let mut started = self.0.started.lock().expect("not poisoned");
        // An event within one state (the issuer's ack noted) moves nothing.
        for e in events
            .into_iter()
            .filter(|e| e.old_state != Some(e.new_state))
        {
            let key = (e.wallet_id.clone(), e.record_id.clone());
            match e.old_state {
                Some(old) => *counts.entry((e.role, old)).or_default() -= 1,
                None if started.len() < MAX_TIMED => {
                    started.insert(key.clone(), e.at_ms);
                }
                None => {}
            }
            *counts.entry((e.role, e.new_state)).or_default() += 1;
            self.0
                .transitions
                .get_or_create(&RecordLabels {
                    role: e.role.name().into(),
                    state: e.new_state.name().into(),
                })
                .inc();
            if e.new_state.is_final()
                && let Some(at) = started.remove(&key)
                && matches!(
                    e.new_state,
                    RecordState::CredentialSent | RecordState::CredentialReceived
                )
            {
                self.0
                    .flow_seconds
                    .get_or_create(&RoleLabels {
                        role: e.role.name().into(),
                    })
                    .observe((e.at_ms - at).max(0) as f64 / 1000.0);
            }
        }
    }

    /// One `POST /didcomm` answered: `accepted`, or the refusal's code.
    pub fn inbound(&self, outcome: &str) {
        if !self.0.on {
            return;
        }
        self.0
            .inbound
            .get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            })
            .inc();
    }

    /// One delivery attempt to a destination of `class` (see
    /// [`destination_class`]).
    pub fn delivery(&self, result: &str, class: &str, took: Duration) {
        if !self.0.on {
            return;
        }
        self.0
            .deliveries
            .get_or_create(&DeliveryLabels {
                result: result.into(),
                destination: class.into(),
            })
            .inc();
        self.0.delivery_seconds.observe(took.as_secs_f64());
    }

    /// One control-plane call.
    pub fn grpc(&self, method: &str, code: &str, took: Duration) {
        if !self.0.on {
            return;
        }
        self.0
            .grpc_calls
            .get_or_create(&GrpcLabels {
                method: method.into(),
                code: code.into(),
            })
            .inc();
        self.0
            .grpc_seconds
            .get_or_create(&MethodLabels {
                method: method.into(),
            })
            .observe(took.as_secs_f64());
    }

    pub fn flushed(&self, took: Duration) {
        self.0.flush_seconds.observe(took.as_secs_f64());
    }

    /// The text exposition (OpenMetrics), with what is read at scrape
    /// time brought up to date first.
    pub fn render(&self, store: &Store, subscribers: usize) -> String {
        let i = &self.0;
        for ((role, state), n) in i.counts.lock().expect("not poisoned").iter() {
            i.records
                .get_or_create(&RecordLabels {
                    role: role.name().into(),
                    state: state.name().into(),
                })
                .set(*n);
        }
        let (depth, oldest_ms) = store.outbox_depth_and_oldest().unwrap_or((0, None));
        i.outbox_depth.set(depth as i64);
        i.outbox_oldest_seconds
            .set(oldest_ms.map_or(0, |at| (crate::now_ms() - at).max(0) / 1000));
        i.dead_letters.set(store.dead_letter_count() as i64);
        i.store_bytes.set(store.size_on_disk() as i64);
        i.subscribers.set(subscribers as i64);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &i.registry)
            .expect("writing to a String");
        out
    }
}

/// Where a delivery went, coarsely (a label of few values): `loopback`,
/// `private` or `public`; the outbox adds `local` (another wallet of this
/// daemon) and `none` (no endpoint).
pub fn destination_class(url: &str) -> &'static str {
    let host = url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_default();
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) if ip.is_loopback() => "loopback",
        Ok(std::net::IpAddr::V4(ip)) if ip.is_private() || ip.is_link_local() => "private",
        Ok(_) => "public",
        Err(_) if host == "localhost" => "loopback",
        Err(_) => "public",
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown`.
pub async fn serve(
    core: crate::Core,
    listener: tokio::net::TcpListener,
    shutdown: tokio_util::sync::CancellationToken,
) {
    use axum::http::header;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let core = core.clone();
            async move {
                let store = core.store.clone();
                let subscribers = core.events.subscribers();
                let metrics = core.metrics.clone();
                // Reading the outbox and the disk size is blocking work.
                let text = tokio::task::spawn_blocking(move || metrics.render(&store, subscribers))
                    .await
                    .unwrap_or_default();
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    text,
                )
            }
        }),
    );
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "metrics listener failed");
    }
}
