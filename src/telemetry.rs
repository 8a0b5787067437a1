//! OpenTelemetry trace export over OTLP/gRPC (`[traces] otlp_endpoint`):
//! agentd's own spans (`inbound`, `transition`, `outbound`; README,
//! "Traces") go to a collector, whatever `RUST_LOG` shows on stderr.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

use crate::config;

#[derive(Debug, thiserror::Error)]
#[error("OTLP trace exporter for {endpoint}: {source}")]
pub struct TracesError {
    endpoint: String,
    source: opentelemetry_otlp::ExporterBuildError,
}

/// The exporter and its batch processor; [`Traces::shutdown`] sends what is
/// still queued.
pub struct Traces {
    provider: SdkTracerProvider,
}

impl Traces {
    /// The exporter for `config`, or None when no endpoint is set. Call it
    /// inside the Tokio runtime: the gRPC channel's connection lives there
    /// (the batch processor itself runs on a thread of its own).
    pub fn start(config: &config::Traces) -> Result<Option<Traces>, TracesError> {
        let Some(endpoint) = &config.otlp_endpoint else {
            return Ok(None);
        };
        let mut builder = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint);
        if endpoint.starts_with("https:") {
            builder = builder
                .with_tls_config(tonic::transport::ClientTlsConfig::new().with_native_roots());
        }
        let exporter = builder.build().map_err(|source| TracesError {
            endpoint: endpoint.clone(),
            source,
        })?;
        let resource = Resource::builder()
            .with_service_name(config.service_name.clone())
            .with_attribute(opentelemetry::KeyValue::new(
                "service.version",
                env!("CARGO_PKG_VERSION"),
            ))
            .build();
        // The batch processor's queue, delay and batch size follow the
        // standard OTEL_BSP_* variables.
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        Ok(Some(Traces { provider }))
    }

    /// The `tracing` layer that turns agentd's spans into exported ones.
    /// Only spans from this crate pass: not log events, and not the spans
    /// of the libraries, the exporter's own gRPC client among them.
    pub fn layer<S>(&self) -> impl Layer<S> + use<S>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer("agentd"))
            .with_filter(
                tracing_subscriber::filter::filter_fn(|meta| {
                    meta.is_span()
                        && meta.target().starts_with("agentd")
                        && *meta.level() <= tracing::Level::INFO
                })
                // Without a hint every library's debug and trace call sites
                // would be looked at too.
                .with_max_level_hint(tracing::Level::INFO),
            )
    }

    /// Exports the spans still queued, then stops the exporter. It blocks
    /// (up to the processor's timeout) on a thread of its own, so the
    /// runtime keeps driving the gRPC connection meanwhile.
    pub async fn shutdown(self) {
        let provider = self.provider;
        match tokio::task::spawn_blocking(move || provider.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "trace exporter shutdown"),
            Err(e) => tracing::warn!(error = %e, "trace exporter shutdown"),
        }
    }
}
