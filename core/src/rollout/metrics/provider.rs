//! What a metric's provider is asked (its request, placeholders replaced and escaped) and what
//! its answer reads as (a Prometheus instant query's value, a JSON document's value at a path,
//! the newest value of a CloudWatch query).

use std::collections::BTreeMap;

use slipway_crd::analysis::{CloudWatchQuery, Metric, MetricProvider};
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
    /// CloudWatch `GetMetricData` over the `window` that ends now.
    CloudWatch {
        /// The region (None: the configuration chain's).
        region: Option<String>,
        /// How far back.
        window: std::time::Duration,
        /// The queries, dimension values' placeholders replaced.
        queries: Vec<CloudWatchQuery>,
        /// The id whose newest value is `result`.
        returned: String,
    },
}

/// How far back a CloudWatch metric reads by default.
pub const CLOUDWATCH_WINDOW: std::time::Duration = std::time::Duration::from_secs(300);

impl Request {
    /// Where it goes (what the operator's destinations must allow); a CloudWatch request goes
    /// where the home's AWS configuration says (the home checks that address).
    pub fn url(&self) -> Option<&str> {
        match self {
            Request::Prometheus { address, .. } => Some(address),
            Request::Http { url, .. } => Some(url),
            Request::CloudWatch { .. } => None,
        }
    }
}

/// The request a metric makes, its placeholders replaced (None: no provider is set).
pub fn request(m: &Metric, names: &Names) -> Option<Request> {
    asked(&m.provider, names)
}

/// The request a provider is sent, its placeholders replaced (None: no provider is set).
pub fn asked(provider: &MetricProvider, names: &Names) -> Option<Request> {
    if let Some(c) = &provider.cloudwatch {
        // A query that validation refuses is not asked.
        if !cloudwatch_problems(c).is_empty() {
            return None;
        }
        let mut queries = c.queries.clone();
        for q in &mut queries {
            if let Some(stat) = &mut q.metric_stat {
                for v in stat.dimensions.values_mut() {
                    *v = render(v, names, |s| s.to_string());
                }
            }
        }
        let returned = queries
            .iter()
            .find(|q| q.return_data == Some(true))
            .or(queries.last())
            .map(|q| q.id.clone())?;
        let window = c
            .window
            .as_deref()
            .and_then(|w| crate::duration::parse(w).ok())
            .unwrap_or(CLOUDWATCH_WINDOW);
        return Some(Request::CloudWatch {
            region: c.region.clone(),
            window,
            queries,
            returned,
        });
    }
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

/// What is wrong with a CloudWatch metric, by field (relative to the `cloudwatch` object).
pub fn cloudwatch_problems(c: &slipway_crd::analysis::CloudWatchMetric) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if c.queries.is_empty() || c.queries.len() > 10 {
        out.push((
            "queries".to_string(),
            "give 1 to 10 queries (GetMetricData's own limit per metric is far above; a \
             measurement asks every one)"
                .to_string(),
        ));
    }
    let window = c.window.as_deref().map(crate::duration::parse);
    match window {
        Some(Err(e)) => out.push(("window".to_string(), e)),
        Some(Ok(w)) if w < std::time::Duration::from_secs(60) => out.push((
            "window".to_string(),
            "a window under 1m holds no data point of most metrics; give e.g. `5m`".to_string(),
        )),
        _ => {}
    }
    if let Some(r) = &c.region
        && (r.is_empty()
            || r.len() > 32
            || !r
                .chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-'))
    {
        out.push((
            "region".to_string(),
            format!("`{r}` is not a region name (e.g. `eu-west-1`)"),
        ));
    }
    let mut ids = std::collections::BTreeSet::new();
    for (i, q) in c.queries.iter().enumerate() {
        let at = format!("queries[{i}]");
        let id_ok = q.id.len() <= 255
            && q.id.starts_with(|ch: char| ch.is_ascii_lowercase())
            && q.id
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
        if !id_ok {
            out.push((
                format!("{at}.id"),
                format!(
                    "`{}` is not a query id: a lower-case letter, then letters, digits and _",
                    q.id
                ),
            ));
        }
        if !ids.insert(q.id.as_str()) {
            out.push((format!("{at}.id"), format!("id `{}` is used twice", q.id)));
        }
        match (&q.expression, &q.metric_stat) {
            (Some(e), None) => {
                if e.contains("{{") {
                    out.push((
                        format!("{at}.expression"),
                        "an expression takes no placeholders (a version could change what it \
                         computes); put them in a metricStat's dimension values"
                            .to_string(),
                    ));
                }
                let upper = e.to_ascii_uppercase();
                if upper.contains("SEARCH(") || upper.trim_start().starts_with("SELECT") {
                    out.push((
                        format!("{at}.expression"),
                        "SEARCH and Metrics Insights queries read metrics by pattern across the \
                         account; name the metrics with metricStat queries"
                            .to_string(),
                    ));
                }
                if e.trim().is_empty() || e.len() > 2048 {
                    out.push((
                        format!("{at}.expression"),
                        "give an expression of 1 to 2048 characters".to_string(),
                    ));
                }
            }
            (None, Some(s)) => {
                for (field, v) in [
                    ("namespace", &s.namespace),
                    ("metricName", &s.metric_name),
                    ("stat", &s.stat),
                ] {
                    if v.trim().is_empty() || v.contains("{{") {
                        out.push((
                            format!("{at}.metricStat.{field}"),
                            "give it, without placeholders (only dimension values take them)"
                                .to_string(),
                        ));
                    }
                }
                if let Some(p) = s.period
                    && !(matches!(p, 1 | 5 | 10 | 30) || (p >= 60 && p % 60 == 0))
                {
                    out.push((
                        format!("{at}.metricStat.period"),
                        format!("{p} is not a CloudWatch period: 1, 5, 10, 30 or a multiple of 60"),
                    ));
                }
                if s.dimensions.len() > 30 {
                    out.push((
                        format!("{at}.metricStat.dimensions"),
                        "at most 30 dimensions".to_string(),
                    ));
                }
                for v in s.dimensions.values() {
                    let unknown = unknown_placeholders(v);
                    if !unknown.is_empty() {
                        out.push((
                            format!("{at}.metricStat.dimensions"),
                            format!(
                                "unknown placeholder(s) {}; a dimension value can use {}",
                                unknown.join(", "),
                                PLACEHOLDERS.map(|p| format!("{{{{{p}}}}}")).join(", ")
                            ),
                        ));
                    }
                }
            }
            _ => out.push((
                at,
                "set exactly one of expression and metricStat".to_string(),
            )),
        }
    }
    if c.queries
        .iter()
        .filter(|q| q.return_data == Some(true))
        .count()
        > 1
    {
        out.push((
            "queries".to_string(),
            "at most one query may say returnData: true (its value is `result`)".to_string(),
        ));
    }
    out
}

/// What a CloudWatch answer reads as: the newest value of query `returned`. The answer is the
/// home's rendering of `GetMetricData`'s results: `[{"id", "timestamps": [epoch seconds],
/// "values": [numbers]}]`. No data point is no reading.
pub fn cloudwatch_result(answer: &serde_json::Value, returned: &str) -> Reading {
    let result = answer
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["id"] == returned))
        .ok_or_else(|| format!("CloudWatch returned nothing for query {returned}"))?;
    let values = result["values"].as_array().cloned().unwrap_or_default();
    let times = result["timestamps"].as_array().cloned().unwrap_or_default();
    let newest = values
        .iter()
        .zip(times.iter().map(|t| t.as_i64().unwrap_or(i64::MIN)))
        .filter_map(|(v, t)| v.as_f64().map(|v| (t, v)))
        .filter(|(_, v)| v.is_finite())
        .max_by_key(|(t, _)| *t);
    match newest {
        Some((_, v)) => serde_json::Number::from_f64(v)
            .map(serde_json::Value::Number)
            .ok_or_else(|| format!("{v} is not a finite number")),
        None => Err(format!(
            "query {returned} has no data point in the window (no data yet)"
        )),
    }
}
