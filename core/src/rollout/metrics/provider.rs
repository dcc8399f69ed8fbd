//! What a metric's provider is asked (its request, placeholders replaced and escaped) and what
//! its answer reads as (a Prometheus instant query's value, a JSON document's value at a path).

use std::collections::BTreeMap;

use slipway_crd::analysis::{Metric, MetricProvider};
use slipway_crd::common::SecretRef;

use super::{Names, Reading};

/// The placeholders a query or URL may use.
pub const PLACEHOLDERS: [&str; 6] = [
    "version",
    "stableVersion",
    "deployment",
    "namespace",
    "model",
    "since",
];

/// The most samples a Prometheus answer may have (a condition looks at each).
pub const MAX_SAMPLES: usize = 1000;

/// Headers a metric may not set: where the request goes and how it travels are Slipway's.
pub const RESERVED_HEADERS: [&str; 9] = [
    "host",
    "connection",
    "content-length",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "keep-alive",
    "proxy-authorization",
];

/// Why a query's placeholders could change what it asks for: each one but `{{since}}` (a
/// duration Slipway writes) must be the whole of a double-quoted label value compared with `=`
/// or `!=` (`version="{{version}}"`), where it is escaped; in a single-quoted or raw string, a
/// regular expression or outside a string, a version label could end the matcher or match more.
pub fn unquoted_placeholder(query: &str) -> Option<String> {
    let mut rest = query;
    let mut at = 0;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        let key = after[..end].trim();
        let before = &query[..at + start];
        let next = &after[end + 2..];
        let quoted = before.ends_with('"') && next.starts_with('"');
        let matcher = before.trim_end_matches('"').trim_end();
        let compared =
            matcher.ends_with('=') && !matcher.ends_with("~=") && !matcher.ends_with("=~");
        let regex = matcher.ends_with('~');
        if key != "since" && !(quoted && compared && !regex) {
            return Some(format!(
                "{{{{{key}}}}} must be a whole double-quoted label value compared with = or != \
                 (e.g. version=\"{{{{{key}}}}}\"), where it is escaped"
            ));
        }
        at += start + 2 + end + 2;
        rest = next;
    }
    None
}

/// A request for a metric's provider.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    /// `GET {address}/api/v1/query?query=…`.
    Prometheus {
        /// The server.
        address: String,
        /// The query, placeholders replaced.
        query: String,
    },
    /// `GET url`, the answer read at `json_path`.
    Http {
        /// The URL, placeholders replaced.
        url: String,
        /// Where the value is.
        json_path: Option<String>,
        /// Headers, from secret references.
        headers: BTreeMap<String, SecretRef>,
    },
}

impl Request {
    /// Where it goes (what the operator's destinations must allow).
    pub fn url(&self) -> &str {
        match self {
            Request::Prometheus { address, .. } => address,
            Request::Http { url, .. } => url,
        }
    }
}

/// The request a metric makes, its placeholders replaced (None: no provider is set).
pub fn request(m: &Metric, names: &Names) -> Option<Request> {
    asked(&m.provider, names)
}

/// The request a provider is sent, its placeholders replaced (None: no provider is set).
pub fn asked(provider: &MetricProvider, names: &Names) -> Option<Request> {
    if let Some(p) = &provider.prometheus {
        // An address is where Prometheus is, not a query of its own; a placeholder outside a
        // quoted label value is not asked at all (validation says why).
        if p.address.contains(['?', '#']) || unquoted_placeholder(&p.query).is_some() {
            return None;
        }
        return Some(Request::Prometheus {
            address: p.address.trim_end_matches('/').to_string(),
            query: render(&p.query, names, promql_string),
        });
    }
    let h = provider.http.as_ref()?;
    if h.headers
        .keys()
        .any(|k| RESERVED_HEADERS.contains(&k.to_ascii_lowercase().as_str()))
    {
        return None;
    }
    Some(Request::Http {
        url: render(&h.url, names, url_component),
        json_path: h.json_path.clone(),
        headers: h.headers.clone(),
    })
}

/// `template` with each `{{placeholder}}` replaced by its value, escaped by `escape`; an unknown
/// one is left as written (validation refuses it).
pub fn render(template: &str, names: &Names, escape: fn(&str) -> String) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                let key = after[..end].trim();
                match names.get(key) {
                    Some(v) => out.push_str(&escape(v)),
                    None => out.push_str(&rest[start..start + 2 + end + 2]),
                }
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// The placeholders `template` uses that are not known.
pub fn unknown_placeholders(template: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        let key = after[..end].trim();
        if !PLACEHOLDERS.contains(&key) {
            out.push(key.to_string());
        }
        rest = &after[end + 2..];
    }
    out
}

/// A value inside a PromQL string literal (`"…"`): backslashes and quotes escaped.
fn promql_string(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A value inside a URL: everything but unreserved characters percent-encoded.
pub fn url_component(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// What a Prometheus instant query's answer reads as: the number of a scalar or a one-sample
/// vector, a list of numbers for several; no data (an empty vector, `NaN`) is no reading.
pub fn prometheus_result(answer: &serde_json::Value) -> Reading {
    if answer["status"] != "success" {
        let why = answer["error"].as_str().unwrap_or("no status");
        return Err(format!(
            "Prometheus answered an error: {}",
            super::short(why)
        ));
    }
    let data = &answer["data"];
    let sample = |v: &serde_json::Value| -> Result<f64, String> {
        let text = v[1].as_str().ok_or("a sample without a value")?;
        let n: f64 = text
            .parse()
            .map_err(|_| format!("sample value {:?} is not a number", super::short(text)))?;
        // JSON has no infinity: +Inf (a latency beyond the largest bucket) is read as the
        // largest number, so it fails a `result < x` as it should, never disappears.
        let n = if n.is_infinite() {
            n.signum() * f64::MAX
        } else {
            n
        };
        if n.is_nan() {
            Err("the query's value is NaN (no data yet)".into())
        } else {
            Ok(n)
        }
    };
    let number = |n: f64| serde_json::Number::from_f64(n).map(serde_json::Value::Number);
    match data["resultType"].as_str() {
        Some("scalar") => {
            let n = sample(&data["result"])?;
            number(n).ok_or_else(|| format!("{n} is not a finite number"))
        }
        Some("vector") => {
            let samples = data["result"].as_array().cloned().unwrap_or_default();
            let values: Vec<f64> = samples
                .iter()
                .map(|s| sample(&s["value"]))
                .collect::<Result<_, _>>()?;
            match values.as_slice() {
                [] => Err("the query returned no samples (no data yet)".into()),
                many if many.len() > MAX_SAMPLES => Err(format!(
                    "the query returned {} samples; aggregate it (at most {MAX_SAMPLES})",
                    many.len()
                )),
                [one] => number(*one).ok_or_else(|| format!("{one} is not a finite number")),
                many => Ok(serde_json::Value::Array(
                    many.iter().filter_map(|n| number(*n)).collect(),
                )),
            }
        }
        other => Err(format!(
            "the query returned a {}, not a scalar or an instant vector",
            other.unwrap_or("result of no type")
        )),
    }
}

/// The value at `path` (`a.b.0.c`) in `doc` (None: the whole document).
pub fn json_path(doc: &serde_json::Value, path: Option<&str>) -> Reading {
    let Some(path) = path.map(str::trim).filter(|p| !p.is_empty()) else {
        return Ok(doc.clone());
    };
    let mut at = doc;
    for key in path.trim_start_matches("$.").split('.') {
        let next = match at {
            serde_json::Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
            serde_json::Value::Object(map) => map.get(key),
            _ => None,
        };
        at = next.ok_or_else(|| format!("the answer has nothing at {path} (no {key:?})"))?;
    }
    if at.is_null() {
        return Err(format!("the answer's {path} is null (no data yet)"));
    }
    Ok(at.clone())
}
