//! GET /metrics on the listener: pg_oauth's counters (pg/shmem/stats.rs) in Prometheus' text
//! exposition format, to the addresses in `pg_oauth.http_metrics_allow` only (off when it is
//! empty). Names are `pg_oauth_<family>` (`_total` for counters), with a `database` label.

use std::collections::HashMap;
use std::fmt::Write;

use crate::authn::source;
use crate::config::gucs;
use crate::http::message::{Reply, Request, Transport, NO_STORE};
use crate::pg::backend;
use crate::pg::shmem::stats::{self, Family};

/// The answer to GET /metrics.
pub fn endpoint(req: &Request) -> Reply {
    let allowed = gucs::string(&gucs::HTTP_METRICS_ALLOW);
    let (Transport::Listener, Some(allowed)) = (req.transport, allowed) else {
        return Reply::error(404, "not_found", "no such endpoint", None);
    };
    let permitted = req
        .source
        .as_deref()
        .and_then(|s| s.parse::<std::net::IpAddr>().ok())
        .is_some_and(|peer| source::is_trusted(peer, &allowed));
    if !permitted {
        return Reply::error(
            403,
            "access_denied",
            "this address may not read /metrics (pg_oauth.http_metrics_allow)",
            None,
        );
    }
    let mut reply = Reply::new(200, &NO_STORE, serde_json::Value::Null);
    reply.text = Some(exposition());
    reply
}

/// The name a family is exposed under, and its type.
fn exposed(family: &Family) -> (String, &'static str) {
    match family.name {
        "http_request_duration_seconds_bucket" => {
            ("pg_oauth_http_request_duration_seconds".into(), "histogram")
        }
        name => (format!("pg_oauth_{name}_total"), "counter"),
    }
}

/// A label value, escaped as the format requires.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Every counter, grouped by family; the latency histogram with its `_sum` (in seconds) and
/// `_count`.
pub fn exposition() -> String {
    let rows = stats::read();
    let mut names: HashMap<u32, String> = HashMap::new();
    let mut out = String::new();
    for family in stats::FAMILIES {
        if family.name == "http_request_duration_microseconds_sum" {
            continue;
        }
        let (name, kind) = exposed(family);
        let _ = writeln!(out, "# HELP {name} {}", family.help.replace('\n', " "));
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (database, _, labels, value) in rows.iter().filter(|r| r.1.name == family.name) {
            let db = names
                .entry(*database)
                .or_insert_with(|| backend::database_name(*database).unwrap_or_default());
            let mut text = format!("database=\"{}\"", escape(db));
            for (k, v) in labels {
                let _ = write!(text, ",{k}=\"{}\"", escape(v));
            }
            let series = if kind == "histogram" {
                format!("{name}_bucket")
            } else {
                name.clone()
            };
            let _ = writeln!(out, "{series}{{{text}}} {value}");
            if kind == "histogram" && labels.iter().any(|(k, v)| *k == "le" && *v == "+Inf") {
                let path = labels
                    .iter()
                    .find(|(k, _)| *k == "path")
                    .map_or("", |l| l.1);
                let sum = rows
                    .iter()
                    .find(|r| {
                        r.0 == *database
                            && r.1.name == "http_request_duration_microseconds_sum"
                            && r.2.iter().any(|(k, v)| *k == "path" && *v == path)
                    })
                    .map_or(0, |r| r.3);
                let base = text.replace(",le=\"+Inf\"", "");
                let _ = writeln!(out, "{name}_sum{{{base}}} {}", sum as f64 / 1e6);
                let _ = writeln!(out, "{name}_count{{{base}}} {value}");
            }
        }
    }
    out
}
