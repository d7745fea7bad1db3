//! Exporting spans to an OpenTelemetry collector over OTLP/HTTP, protobuf
//! (`[telemetry] otlp_endpoint`): runs' and attempts' spans from the engine,
//! and a span per API request. Spans wait in a bounded queue and go in
//! batches; a collector that is down or slow costs dropped spans (counted
//! in `baton_spans_dropped_total`), never a run's progress.

use std::sync::Arc;
use std::time::Duration;

use baton_engine::{FinishedSpan, SpanKind, SpanSink, SpanValue};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};
use prost::Message;
use tokio::sync::mpsc;

/// Spans waiting to be sent at most; more are dropped.
const QUEUE: usize = 16_384;

/// Spans in one request at most.
const BATCH: usize = 512;

/// How long a batch waits for more spans after its first.
const LINGER: Duration = Duration::from_millis(200);

/// Where spans go: hand it to the engine's configuration as its
/// [`SpanSink`]; the server's requests are exported through it too.
#[derive(Debug)]
pub struct Exporter {
    queue: mpsc::Sender<FinishedSpan>,
}

impl SpanSink for Exporter {
    fn finished(&self, span: FinishedSpan) {
        if self.queue.try_send(span).is_err() {
            metrics::counter!("baton_spans_dropped_total").increment(1);
        }
    }
}

/// Starts exporting to `endpoint` (`http://collector:4318`; spans are sent
/// to its `/v1/traces`) as service `service`. Call it within a Tokio
/// runtime.
pub fn export(endpoint: &str, service: &str) -> Arc<Exporter> {
    let (queue, spans) = mpsc::channel(QUEUE);
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    tokio::spawn(send_batches(spans, url, service.to_owned()));
    metrics::counter!("baton_spans_dropped_total").absolute(0);
    Arc::new(Exporter { queue })
}

async fn send_batches(mut spans: mpsc::Receiver<FinishedSpan>, url: String, service: String) {
    let client = match baton_engine::http_client()
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            tracing::warn!("telemetry: cannot make an HTTP client ({error}); no span is exported");
            return;
        }
    };
    let mut failing = false;
    while let Some(first) = spans.recv().await {
        let mut batch = vec![first];
        let linger = tokio::time::sleep(LINGER);
        tokio::pin!(linger);
        while batch.len() < BATCH {
            tokio::select! {
                more = spans.recv() => match more {
                    Some(span) => batch.push(span),
                    None => break,
                },
                () = &mut linger => break,
            }
        }
        let body = request(&service, &batch).encode_to_vec();
        let sent = client
            .post(&url)
            .header("content-type", "application/x-protobuf")
            .body(body)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status);
        match sent {
            Ok(_) if failing => {
                failing = false;
                tracing::info!("telemetry: {url} takes spans again");
            }
            Ok(_) => {}
            Err(error) => {
                metrics::counter!("baton_spans_dropped_total").increment(batch.len() as u64);
                if !failing {
                    failing = true;
                    tracing::warn!(
                        "telemetry: spans cannot be sent to {url} ({error}); they are dropped until it answers"
                    );
                }
            }
        }
    }
}

/// The OTLP request for `spans` of `service`.
pub fn request(service: &str, spans: &[FinishedSpan]) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![text("service.name", service)],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "baton".to_owned(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    ..InstrumentationScope::default()
                }),
                spans: spans.iter().map(encoded).collect(),
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn encoded(finished: &FinishedSpan) -> Span {
    let nanos = |at: baton_core::run::Millis| at.0.saturating_mul(1_000_000);
    Span {
        trace_id: finished.trace_id.to_vec(),
        span_id: finished.span_id.to_vec(),
        parent_span_id: finished
            .parent
            .map(|parent| parent.to_vec())
            .unwrap_or_default(),
        name: finished.name.clone(),
        kind: match finished.kind {
            SpanKind::Internal => span::SpanKind::Internal,
            SpanKind::Server => span::SpanKind::Server,
        } as i32,
        start_time_unix_nano: nanos(finished.start),
        end_time_unix_nano: nanos(finished.end),
        attributes: finished
            .attributes
            .iter()
            .map(|(key, value)| match value {
                SpanValue::Text(value) => text(key, value),
                SpanValue::Number(value) => KeyValue {
                    key: (*key).to_owned(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::IntValue(*value)),
                    }),
                    ..KeyValue::default()
                },
            })
            .collect(),
        status: Some(match &finished.error {
            None => Status {
                code: status::StatusCode::Ok as i32,
                message: String::new(),
            },
            Some(message) => Status {
                code: status::StatusCode::Error as i32,
                message: message.clone(),
            },
        }),
        ..Span::default()
    }
}

fn text(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..KeyValue::default()
    }
}
