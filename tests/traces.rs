//! OpenTelemetry export from real daemons into an in-process OTLP/gRPC
//! collector: one issuance leaves `inbound`, `transition` and `outbound`
//! spans on both agents, carrying the thread id that links them; the spans
//! still queued at SIGTERM are sent before the daemon exits.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use common::{connect, eventually, issue_one, start};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};

/// One received span, flattened: its service, name, ids and string attributes.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    name: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
    attributes: Vec<(String, String)>,
}

impl Span {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find_map(|(k, v)| (k == key).then_some(v.as_str()))
    }
}

#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<Span>>>);

fn strings(attributes: &[KeyValue]) -> Vec<(String, String)> {
    attributes
        .iter()
        .filter_map(|kv| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some((kv.key.clone(), s.clone())),
            _ => None,
        })
        .collect()
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.0.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            let resource = strings(&rs.resource.map(|r| r.attributes).unwrap_or_default());
            let service = resource
                .into_iter()
                .find_map(|(k, v)| (k == "service.name").then_some(v))
                .unwrap_or_default();
            for s in rs.scope_spans.into_iter().flat_map(|ss| ss.spans) {
                spans.push(Span {
                    service: service.clone(),
                    name: s.name,
                    trace_id: s.trace_id,
                    span_id: s.span_id,
                    parent_span_id: s.parent_span_id,
                    attributes: strings(&s.attributes),
                });
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Collector {
    /// The spans `service` sent so far for thread `thid`.
    fn of(&self, service: &str, thid: &str) -> Vec<Span> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.service == service && s.attr("thid") == Some(thid))
            .cloned()
            .collect()
    }

    fn count(&self, service: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.service == service)
            .count()
    }

    /// Serves the OTLP trace service on a loopback port the OS picks.
    async fn serve(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = TraceServiceServer::new(self.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        format!("http://{addr}")
    }
}

fn names(spans: &[Span]) -> BTreeSet<&str> {
    spans.iter().map(|s| s.name.as_str()).collect()
}

/// The states `spans` say the record entered.
fn entered<'a>(spans: &'a [Span], role: &str) -> BTreeSet<&'a str> {
    spans
        .iter()
        .filter(|s| s.name == "transition" && s.attr("role") == Some(role))
        .filter_map(|s| s.attr("to"))
        .collect()
}

/// One side's spans of a thread: all three kinds, the record entering
/// each of `states`, and some transition inside the inbound span of the
/// message that caused it.
fn assert_side(spans: &[Span], role: &str, states: &[&str]) {
    assert_eq!(
        names(spans),
        BTreeSet::from(["inbound", "outbound", "transition"]),
        "{spans:#?}"
    );
    for state in states {
        assert!(entered(spans, role).contains(state), "{state}: {spans:#?}");
    }
    let nested = spans.iter().filter(|s| s.name == "transition").any(|t| {
        spans.iter().any(|i| {
            i.name == "inbound" && i.span_id == t.parent_span_id && i.trace_id == t.trace_id
        })
    });
    assert!(nested, "no transition inside an inbound span: {spans:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_issuance_is_traced_on_both_agents_by_its_thread_id() {
    let collector = Collector::default();
    let endpoint = collector.serve().await;
    // The issuer sends a batch every 100 ms; the holder would wait ten
    // minutes, so its spans arrive only because SIGTERM flushes them.
    let issuer = start(
        "issuer",
        &[
            ("AGENTD_TRACES_OTLP_ENDPOINT", &endpoint),
            ("AGENTD_TRACES_SERVICE_NAME", "issuer"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    )
    .await;
    let mut holder = start(
        "holder",
        &[
            ("AGENTD_TRACES_OTLP_ENDPOINT", &endpoint),
            ("AGENTD_TRACES_SERVICE_NAME", "holder"),
            ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
        ],
    )
    .await;
    let (ic, hc, ci) = connect(&issuer, &holder).await;
    let thid = issue_one(&ic, &hc, ci).await;
    let thid = thid.as_str();

    // The issuer's side, in its periodic batches: the offer and credential
    // out, the request in, each state it went through.
    let issued = eventually(20, "the issuer's spans of the thread", async || {
        let spans = collector.of("issuer", thid);
        let delivered = spans
            .iter()
            .filter(|s| s.name == "outbound" && s.attr("result") == Some("delivered"))
            .count();
        (delivered >= 2 && entered(&spans, "issuer").contains("CredentialSent")).then_some(spans)
    })
    .await;
    // Not OfferSent or RequestSent: a peer's answer may overtake the
    // delivery's outcome, and the state is skipped.
    assert_side(&issued, "issuer", &["RequestReceived", "CredentialSent"]);
    let outbound = issued.iter().find(|s| s.name == "outbound").unwrap();
    for key in ["wallet", "id", "to", "type"] {
        assert!(outbound.attr(key).is_some(), "{key}: {outbound:#?}");
    }
    let transition = issued.iter().find(|s| s.name == "transition").unwrap();
    for key in ["wallet", "record", "role", "to"] {
        assert!(transition.attr(key).is_some(), "{key}: {transition:#?}");
    }
    assert_eq!(
        collector.count("holder"),
        0,
        "the holder's batch came early"
    );

    // The holder's spans of the same thread, sent on its way out.
    holder.stop().await.unwrap();
    let held = collector.of("holder", thid);
    assert_side(&held, "holder", &["OfferReceived", "CredentialReceived"]);
    // Linked by the thread id only: no trace context crosses DIDComm.
    let traces = |spans: &[Span]| -> BTreeSet<Vec<u8>> {
        spans.iter().map(|s| s.trace_id.clone()).collect()
    };
    assert!(traces(&issued).is_disjoint(&traces(&held)));
}
