//! Findings as OTLP log records, counters as OTLP metrics (the layout
//! docs/otlp.md documents).

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde_json::Value;

use crate::metrics::Snapshot;
use crate::record::{RaceLine, Record};

/// The instrumentation scope of everything sent.
const SCOPE: &str = "ipcwatch";

/// A string attribute.
pub fn kv(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

/// An integer attribute.
fn kv_int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..Default::default()
    }
}

/// The resource of every request: who sends.
pub fn resource(host_name: &str) -> Resource {
    Resource {
        attributes: vec![
            kv("service.name", "ipcwatch"),
            kv("service.version", env!("CARGO_PKG_VERSION")),
            kv("host.name", host_name),
        ],
        ..Default::default()
    }
}

fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: SCOPE.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    })
}

/// A JSON value as an OTLP value, losing nothing: objects become
/// key-value lists, integers that fit an int64 integers, larger ones
/// (above 2^63 - 1) their decimal text, null an empty value.
pub fn any_value(v: &Value) -> AnyValue {
    use any_value::Value as V;
    let value = match v {
        Value::Null => None,
        Value::Bool(b) => Some(V::BoolValue(*b)),
        Value::Number(n) => Some(match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => V::IntValue(i),
            (None, Some(u), _) => V::StringValue(u.to_string()),
            (_, _, f) => V::DoubleValue(f.unwrap_or(f64::NAN)),
        }),
        Value::String(s) => Some(V::StringValue(s.clone())),
        Value::Array(a) => Some(V::ArrayValue(ArrayValue {
            values: a.iter().map(any_value).collect(),
        })),
        Value::Object(o) => Some(V::KvlistValue(KeyValueList {
            values: o
                .iter()
                .map(|(k, v)| KeyValue {
                    key: k.clone(),
                    value: Some(any_value(v)),
                    ..Default::default()
                })
                .collect(),
        })),
    };
    AnyValue { value }
}

/// One finding as a log record: the NDJSON race line, whole, as the body
/// (a key-value list), and its searchable parts as attributes, with
/// OpenTelemetry's names where they exist; each access's under
/// `ipcwatch.access.N.`. `unix_offset_ns` turns the trace's monotonic
/// clock into Unix time; `observed_ns` is when the exporter took it.
pub fn log_record(race: &RaceLine, unix_offset_ns: i128, observed_ns: u64) -> LogRecord {
    let line = Record::Race(race.clone());
    // Serializing a record cannot fail (a test writes every kind).
    let json = serde_json::to_value(&line).unwrap_or(Value::Null);
    let mut attributes = vec![
        kv("ipcwatch.finding.kind", race.kind.as_str()),
        kv("ipcwatch.finding.evidence", race.evidence.as_str()),
    ];
    if let Some(r) = &race.region {
        attributes.push(kv("ipcwatch.region", r.as_str()));
    }
    if let Some(c) = &race.channel {
        attributes.push(kv("ipcwatch.channel", c.as_str()));
    }
    attributes.push(kv_int("ipcwatch.access.count", race.accesses.len() as i64));
    for (i, a) in race.accesses.iter().enumerate() {
        let key = |name: &str| format!("ipcwatch.access.{i}.{name}");
        attributes.push(kv_int(&key("process.pid"), i64::from(a.pid)));
        attributes.push(kv_int(&key("thread.id"), i64::from(a.tid)));
        attributes.push(kv(&key("process.executable.name"), a.comm.as_str()));
        if let Some(f) = &a.function {
            attributes.push(kv(&key("code.function.name"), f.as_str()));
        }
        if let Some(f) = &a.file {
            attributes.push(kv(&key("code.file.path"), f.as_str()));
        }
        if let Some(l) = a.line {
            attributes.push(kv_int(&key("code.line.number"), i64::from(l)));
        }
        if let Some(c) = &a.origin.container {
            attributes.push(kv(&key("container.id"), c.id.as_str()));
            attributes.push(kv(&key("container.runtime.name"), c.runtime.as_str()));
            if let Some(n) = &c.name {
                attributes.push(kv(&key("container.name"), n.as_str()));
            }
            if let Some(n) = &c.image {
                attributes.push(kv(&key("container.image.name"), n.as_str()));
            }
            if let Some(n) = &c.pod {
                attributes.push(kv(&key("k8s.pod.name"), n.as_str()));
            }
            if let Some(n) = &c.namespace {
                attributes.push(kv(&key("k8s.namespace.name"), n.as_str()));
            }
        }
        if let Some(u) = &a.origin.unit {
            attributes.push(kv(&key("systemd.unit"), u.as_str()));
        }
    }
    let time = i128::from(race.ts_ns) + unix_offset_ns;
    LogRecord {
        time_unix_nano: u64::try_from(time).unwrap_or(0),
        observed_time_unix_nano: observed_ns,
        severity_number: SeverityNumber::Warn as i32,
        severity_text: "WARN".into(),
        body: Some(any_value(&json)),
        attributes,
        event_name: "ipcwatch.race".into(),
        ..Default::default()
    }
}

/// One export request of log records.
pub fn logs_request(resource: &Resource, records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource.clone()),
            scope_logs: vec![ScopeLogs {
                scope: scope(),
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// A data point.
fn point(
    attributes: Vec<KeyValue>,
    value: number_data_point::Value,
    start_ns: u64,
    now_ns: u64,
) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        start_time_unix_nano: start_ns,
        time_unix_nano: now_ns,
        value: Some(value),
        ..Default::default()
    }
}

/// The metrics of one snapshot, in one request: cumulative monotonic sums
/// for counters, gauges for the rest (docs/otlp.md lists them).
pub fn metrics_request(
    resource: &Resource,
    s: &Snapshot,
    start_ns: u64,
    now_ns: u64,
) -> ExportMetricsServiceRequest {
    use number_data_point::Value::{AsDouble, AsInt};
    let int = |n: u64| AsInt(i64::try_from(n).unwrap_or(i64::MAX));
    let p = |attrs: Vec<KeyValue>, v| point(attrs, v, start_ns, now_ns);
    let sum = |name: &str, desc: &str, unit: &str, points: Vec<NumberDataPoint>| Metric {
        name: name.into(),
        description: desc.into(),
        unit: unit.into(),
        data: Some(metric::Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        })),
        ..Default::default()
    };
    let gauge = |name: &str, desc: &str, unit: &str, points: Vec<NumberDataPoint>| Metric {
        name: name.into(),
        description: desc.into(),
        unit: unit.into(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: points,
        })),
        ..Default::default()
    };
    let by = |label: &str, rows: &[(&str, u64)]| -> Vec<NumberDataPoint> {
        rows.iter()
            .map(|(k, n)| p(vec![kv(label, *k)], int(*n)))
            .collect()
    };
    let findings: Vec<(&str, u64)> = s.findings.iter().map(|(k, n)| (k.as_str(), *n)).collect();
    let mut metrics = vec![
        sum(
            "ipcwatch.events",
            "Kernel events received and decoded, by kernel event kind",
            "{event}",
            by("kind", &s.events),
        ),
        sum(
            "ipcwatch.events.lost",
            "Kernel events lost: ring_full or undecodable",
            "{event}",
            by(
                "reason",
                &[
                    ("ring_full", s.lost_ring_full),
                    ("undecodable", s.lost_undecodable),
                ],
            ),
        ),
        sum(
            "ipcwatch.events.dropped",
            "Kernel events lost because the ring buffer was full, by kernel event kind",
            "{event}",
            by("kind", &s.dropped_by_kind),
        ),
        gauge(
            "ipcwatch.channels",
            "Channels seen since the start, by kind",
            "{channel}",
            by("kind", &s.channels),
        ),
        gauge(
            "ipcwatch.regions",
            "Shared-memory regions seen since the start",
            "{region}",
            vec![p(vec![], int(s.regions))],
        ),
        gauge(
            "ipcwatch.processes",
            "Processes seen since the start, alive or exited",
            "{process}",
            by(
                "state",
                &[("alive", s.processes.0), ("exited", s.processes.1)],
            ),
        ),
        sum(
            "ipcwatch.findings",
            "Race findings written to the trace, by kind",
            "{finding}",
            by("kind", &findings),
        ),
        sum(
            "ipcwatch.forgotten",
            "agent --forget-after: processes, channels and findings dropped from memory once gone",
            "{item}",
            by(
                "what",
                &[
                    ("processes", s.forgotten[0]),
                    ("channels", s.forgotten[1]),
                    ("findings", s.forgotten[2]),
                ],
            ),
        ),
        sum(
            "ipcwatch.watch.windows",
            "Watchpoint windows the race detector opened",
            "{window}",
            vec![p(vec![], int(s.watch_windows))],
        ),
        sum(
            "ipcwatch.watch.traps",
            "Writes trapped by the race detector's watchpoints",
            "{trap}",
            vec![p(vec![], int(s.watch_traps))],
        ),
        gauge(
            "ipcwatch.collector.lag",
            "The longest wait of an event in the ring buffer over the last second",
            "s",
            vec![p(vec![], AsDouble(s.collector_lag_seconds))],
        ),
        gauge(
            "ipcwatch.recording.finished",
            "1 once the summary is written: every value is then final",
            "1",
            vec![p(vec![], AsInt(i64::from(s.finished)))],
        ),
    ];
    if let Some(o) = &s.otlp {
        metrics.push(sum(
            "ipcwatch.otlp.findings",
            "Findings by outcome of their export",
            "{finding}",
            by(
                "outcome",
                &[
                    ("sent", o.sent),
                    ("dropped", o.dropped_queue_full),
                    ("rejected", o.rejected),
                    ("undelivered", o.undelivered),
                ],
            ),
        ));
        metrics.push(sum(
            "ipcwatch.otlp.failed_requests",
            "Export requests that failed (each failed retry counts)",
            "{request}",
            vec![p(vec![], int(o.failed_requests))],
        ));
    }
    // Families with no series (no findings kind yet...) are left out.
    metrics.retain(|m| match &m.data {
        Some(metric::Data::Sum(s)) => !s.data_points.is_empty(),
        Some(metric::Data::Gauge(g)) => !g.data_points.is_empty(),
        _ => false,
    });
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource.clone()),
            scope_metrics: vec![ScopeMetrics {
                scope: scope(),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Access, Container, Origin};
    use prost::Message;

    fn race() -> RaceLine {
        RaceLine {
            ts_ns: 1_000,
            kind: "shm-write-write".into(),
            region: Some("shm:1".into()),
            channel: None,
            offset: Some(128),
            len: 8,
            accesses: (0..2)
                .map(|i| Access {
                    pid: 10 + i,
                    tid: 10 + i,
                    comm: "w".into(),
                    ip: u64::MAX - 1,
                    function: Some("bump".into()),
                    file: None,
                    line: Some(7),
                    stack: vec!["bump".into(), "main".into()],
                    locks: vec![],
                    ts_ns: 999,
                    origin: Origin {
                        container: Some(Container {
                            id: "ab".repeat(32).as_str().into(),
                            runtime: "podman".into(),
                            name: Some("web".into()),
                            pod: Some("web-5d8".into()),
                            namespace: Some("prod".into()),
                            ..Container::default()
                        }),
                        ..Origin::default()
                    },
                })
                .collect(),
            evidence: "collision".into(),
            confidence: 0.9,
            explanation: "two writes".into(),
        }
    }

    /// The JSON an OTLP value holds.
    fn json(v: &AnyValue) -> Value {
        use any_value::Value as V;
        match &v.value {
            None => Value::Null,
            Some(V::BoolValue(b)) => Value::Bool(*b),
            Some(V::IntValue(i)) => Value::from(*i),
            Some(V::DoubleValue(d)) => Value::from(*d),
            Some(V::StringValue(s)) => Value::from(s.clone()),
            Some(V::ArrayValue(a)) => Value::Array(a.values.iter().map(json).collect()),
            Some(V::KvlistValue(l)) => Value::Object(
                l.values
                    .iter()
                    .map(|kv| {
                        (
                            kv.key.clone(),
                            kv.value.as_ref().map(json).unwrap_or_default(),
                        )
                    })
                    .collect(),
            ),
            Some(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_race_line_is_the_body_whole_and_its_accesses_are_attributes() {
        let r = race();
        let rec = log_record(&r, 5_000, 42);
        assert_eq!(rec.time_unix_nano, 6_000);
        assert_eq!(rec.observed_time_unix_nano, 42);
        let mut want = serde_json::to_value(Record::Race(r.clone())).unwrap();
        // An ip above 2^63 - 1 travels as its decimal text.
        for a in want["accesses"].as_array_mut().unwrap() {
            a["ip"] = Value::from((u64::MAX - 1).to_string());
        }
        assert_eq!(json(rec.body.as_ref().unwrap()), want);
        let attr = |k: &str| {
            rec.attributes
                .iter()
                .find(|a| a.key == k)
                .and_then(|a| a.value.as_ref())
                .map(json)
        };
        assert_eq!(attr("ipcwatch.access.1.process.pid"), Some(Value::from(11)));
        assert_eq!(
            attr("ipcwatch.access.0.container.id"),
            Some(Value::from("ab".repeat(32)))
        );
        assert_eq!(
            attr("ipcwatch.access.0.container.name"),
            Some(Value::from("web"))
        );
        assert_eq!(
            attr("ipcwatch.access.0.k8s.pod.name"),
            Some(Value::from("web-5d8"))
        );
        assert_eq!(
            attr("ipcwatch.access.0.k8s.namespace.name"),
            Some(Value::from("prod"))
        );
        assert_eq!(
            attr("ipcwatch.access.0.process.executable.name"),
            Some(Value::from("w"))
        );
        assert_eq!(
            attr("ipcwatch.finding.kind"),
            Some(Value::from("shm-write-write"))
        );
        // It encodes (and decodes back the same).
        let req = logs_request(&resource("h"), vec![rec]);
        let bytes = req.encode_to_vec();
        assert_eq!(ExportLogsServiceRequest::decode(&bytes[..]).unwrap(), req);
    }

    #[test]
    fn a_snapshot_is_sums_and_gauges() {
        let s = Snapshot {
            events: vec![("io", 7)],
            findings: vec![("shm-write-write".into(), 2)],
            finished: true,
            ..Snapshot::default()
        };
        let req = metrics_request(&resource("h"), &s, 1, 2);
        let metrics = &req.resource_metrics[0].scope_metrics[0].metrics;
        let names: Vec<&str> = metrics.iter().map(|m| m.name.as_str()).collect();
        assert!(names.contains(&"ipcwatch.events"), "{names:?}");
        assert!(!names.contains(&"ipcwatch.channels"), "{names:?}");
        let events = metrics
            .iter()
            .find(|m| m.name == "ipcwatch.events")
            .unwrap();
        let Some(metric::Data::Sum(sum)) = &events.data else {
            panic!("{events:?}")
        };
        assert!(sum.is_monotonic);
        assert_eq!(
            sum.data_points[0].value,
            Some(number_data_point::Value::AsInt(7))
        );
    }
}
