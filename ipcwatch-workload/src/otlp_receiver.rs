//! `otlp-receiver`: what an OpenTelemetry Collector's OTLP/HTTP receiver
//! would get from `ipcwatch --otlp`, decoded with the official generated
//! types and written as JSON lines:
//!
//! - `{"signal":"log","request":N,"path":..,"resource":{..},"scope":..,
//!   "time_unix_nano":..,"observed_time_unix_nano":..,"severity_number":..,
//!   "severity_text":..,"event_name":..,"attributes":{..},"body":..}`
//! - `{"signal":"metric","request":N,"resource":{..},"name":..,"unit":..,
//!   "kind":"sum"|"gauge","monotonic":..,"temporality":..,"attributes":{..},
//!   "value":..,"start_time_unix_nano":..,"time_unix_nano":..}`
//!
//! OTLP values become JSON as they are (a key-value list an object, an
//! array an array, an empty value null). One request is handled at a
//! time; each one's lines are flushed before it is answered, so that a
//! line in OUT means ipcwatch was told 200 after it.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use prost::Message;
use serde_json::{Map, Value, json};

/// The largest body accepted.
const MAX_BODY: usize = 64 << 20;

/// An OTLP value as JSON.
fn value(v: &AnyValue) -> Value {
    use any_value::Value as V;
    match &v.value {
        None => Value::Null,
        Some(V::BoolValue(b)) => Value::Bool(*b),
        Some(V::IntValue(i)) => Value::from(*i),
        Some(V::DoubleValue(d)) => Value::from(*d),
        Some(V::StringValue(s)) => Value::from(s.clone()),
        Some(V::ArrayValue(a)) => Value::Array(a.values.iter().map(value).collect()),
        Some(V::KvlistValue(l)) => attributes(&l.values),
        Some(V::BytesValue(b)) => json!({ "bytes": b }),
        Some(V::StringValueStrindex(i)) => json!({ "strindex": i }),
    }
}

fn attributes(kvs: &[KeyValue]) -> Value {
    Value::Object(
        kvs.iter()
            .map(|kv| {
                (
                    kv.key.clone(),
                    kv.value.as_ref().map(value).unwrap_or_default(),
                )
            })
            .collect::<Map<String, Value>>(),
    )
}

/// The JSON lines of one request.
fn decode(path: &str, body: &[u8], request: u64) -> Result<Vec<Value>> {
    let mut lines = Vec::new();
    match path {
        "/v1/logs" => {
            let req = ExportLogsServiceRequest::decode(body)
                .context("not an ExportLogsServiceRequest")?;
            for rl in &req.resource_logs {
                let resource = attributes(
                    rl.resource
                        .as_ref()
                        .map(|r| &r.attributes[..])
                        .unwrap_or_default(),
                );
                for sl in &rl.scope_logs {
                    let scope = sl
                        .scope
                        .as_ref()
                        .map(|s| s.name.clone())
                        .unwrap_or_default();
                    for r in &sl.log_records {
                        lines.push(json!({
                            "signal": "log",
                            "request": request,
                            "resource": resource,
                            "scope": scope,
                            "time_unix_nano": r.time_unix_nano,
                            "observed_time_unix_nano": r.observed_time_unix_nano,
                            "severity_number": r.severity_number,
                            "severity_text": r.severity_text,
                            "event_name": r.event_name,
                            "attributes": attributes(&r.attributes),
                            "body": r.body.as_ref().map(value).unwrap_or_default(),
                        }));
                    }
                }
            }
        }
        "/v1/metrics" => {
            let req = ExportMetricsServiceRequest::decode(body)
                .context("not an ExportMetricsServiceRequest")?;
            for rm in &req.resource_metrics {
                let resource = attributes(
                    rm.resource
                        .as_ref()
                        .map(|r| &r.attributes[..])
                        .unwrap_or_default(),
                );
                for sm in &rm.scope_metrics {
                    for m in &sm.metrics {
                        let (kind, monotonic, temporality, points) = match &m.data {
                            Some(metric::Data::Sum(s)) => (
                                "sum",
                                s.is_monotonic,
                                s.aggregation_temporality,
                                &s.data_points,
                            ),
                            Some(metric::Data::Gauge(g)) => ("gauge", false, 0, &g.data_points),
                            _ => bail!("metric {} is neither a sum nor a gauge", m.name),
                        };
                        for p in points {
                            let v = match p.value {
                                Some(number_data_point::Value::AsInt(i)) => Value::from(i),
                                Some(number_data_point::Value::AsDouble(d)) => Value::from(d),
                                None => Value::Null,
                            };
                            lines.push(json!({
                                "signal": "metric",
                                "request": request,
                                "resource": resource,
                                "name": m.name,
                                "unit": m.unit,
                                "kind": kind,
                                "monotonic": monotonic,
                                "temporality": temporality,
                                "attributes": attributes(&p.attributes),
                                "value": v,
                                "start_time_unix_nano": p.start_time_unix_nano,
                                "time_unix_nano": p.time_unix_nano,
                            }));
                        }
                    }
                }
            }
        }
        other => bail!("no such path: {other}"),
    }
    Ok(lines)
}

/// Read one request: its path and body.
fn read_request(stream: &TcpStream) -> Result<(String, Vec<u8>)> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or("").to_string(),
    );
    if method != "POST" {
        bail!("not a POST: {line:?}");
    }
    let mut length = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 {
            bail!("the head ended early");
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = Some(v.trim().parse::<usize>()?);
        }
    }
    let length = length.context("no Content-Length")?;
    if length > MAX_BODY {
        bail!("a body of {length} bytes");
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok((path, body))
}

fn answer(mut stream: &TcpStream, status: &str) {
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let _ = stream.flush();
}

pub fn run(listen: &str, out: &str) -> Result<()> {
    let listener =
        TcpListener::bind(listen).with_context(|| format!("cannot listen on {listen}"))?;
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(out)
        .with_context(|| format!("cannot open {out}"))?;
    println!("listening on {}", listener.local_addr()?);
    std::io::stdout().flush()?;
    let mut request = 0u64;
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let decoded = read_request(&stream).and_then(|(path, body)| decode(&path, &body, request));
        match decoded {
            Ok(lines) => {
                let mut text = String::new();
                for l in &lines {
                    text.push_str(&l.to_string());
                    text.push('\n');
                }
                file.write_all(text.as_bytes())?;
                file.flush()?;
                request += 1;
                answer(&stream, "200 OK");
            }
            Err(e) => {
                eprintln!("otlp-receiver: bad request: {e:#}");
                answer(&stream, "400 Bad Request");
            }
        }
    }
    Ok(())
}
