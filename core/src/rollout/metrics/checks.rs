//! What is wrong with a deployment's metrics and comparisons, by field: names unique, one
//! provider each, conditions that compile, durations that parse, placeholders that exist, URLs,
//! and a test's parameters within their ranges.

use slipway_crd::analysis::MetricProvider;
use slipway_crd::model_deployment::Analysis;

use super::provider::{
    self, PLACEHOLDERS, RESERVED_HEADERS, render, unknown_placeholders, unquoted_placeholder,
};

/// The most metrics and comparisons one analysis may have (each is asked every interval).
pub const MAX_METRICS: usize = 10;
/// The shortest interval between measurements.
pub const MIN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
use super::{Names, compile};

/// A duration that must parse (and, for an interval, not be 0).
fn duration(
    out: &mut Vec<(String, String)>,
    field: String,
    written: Option<&String>,
    nonzero: bool,
) {
    let Some(d) = written else { return };
    match crate::duration::parse(d) {
        Err(e) => out.push((field, e)),
        Ok(d) if nonzero && d < MIN_INTERVAL => out.push((
            field,
            "an interval under 1s measures without pause; give e.g. `30s`".into(),
        )),
        Ok(_) => {}
    }
}

/// A provider: exactly one kind, known placeholders, an http(s) address.
fn provider(out: &mut Vec<(String, String)>, at: &str, p: &MetricProvider) {
    if let Some(c) = &p.cloudwatch {
        if p.prometheus.is_some() || p.http.is_some() {
            out.push((
                at.to_string(),
                "set exactly one of prometheus, http and cloudwatch".to_string(),
            ));
        }
        for (field, why) in provider::cloudwatch_problems(c) {
            out.push((format!("{at}.cloudwatch.{field}"), why));
        }
        return;
    }
    if let Some(pr) = &p.prometheus {
        if pr.address.contains(['?', '#']) {
            out.push((
                format!("{at}.prometheus.address"),
                "an address is where Prometheus answers (`http://host:9090`, a path prefix at \
                 most), without a query or fragment"
                    .into(),
            ));
        }
        if let Some(why) = unquoted_placeholder(&pr.query) {
            out.push((format!("{at}.prometheus.query"), why));
        }
    }
    if let Some(h) = &p.http {
        for k in h.headers.keys() {
            if RESERVED_HEADERS.contains(&k.to_ascii_lowercase().as_str()) {
                out.push((
                    format!("{at}.http.headers.{k}"),
                    format!("{k} is Slipway's to set (where the request goes, how it travels)"),
                ));
            }
        }
    }
    let (field, url, template) = match (&p.prometheus, &p.http) {
        (Some(pr), None) => ("prometheus", &pr.address, &pr.query),
        (None, Some(h)) => ("http", &h.url, &h.url),
        _ => {
            out.push((
                at.to_string(),
                "set exactly one of prometheus, http and cloudwatch".to_string(),
            ));
            return;
        }
    };
    let field = format!("{at}.{field}");
    let unknown = unknown_placeholders(template);
    if !unknown.is_empty() {
        out.push((
            field.clone(),
            format!(
                "unknown placeholder(s) {}; a query or URL can use {}",
                unknown.join(", "),
                PLACEHOLDERS.map(|p| format!("{{{{{p}}}}}")).join(", ")
            ),
        ));
    }
    let names = Names {
        namespace: "n",
        deployment: "d",
        model: "m",
        version: "1",
        stable: Some("0"),
        since: "1s",
    };
    if crate::bounds::origin(&render(url, &names, provider::url_component)).is_err() {
        out.push((
            field,
            format!("`{url}` is not an http(s) URL with a host; write e.g. `http://prometheus.monitoring:9090`"),
        ));
    }
}

/// What is wrong with a deployment's metrics and comparisons (field, message).
pub fn problems(a: &Analysis) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    if a.metrics.len() + a.comparisons.len() > MAX_METRICS {
        out.push((
            "spec.strategy.analysis.metrics".to_string(),
            format!("at most {MAX_METRICS} metrics and comparisons together"),
        ));
    }
    let mut named = |out: &mut Vec<(String, String)>, field: String, name: &str| {
        let label = !name.is_empty()
            && name.len() <= 63
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !name.starts_with('-')
            && !name.ends_with('-');
        if !label {
            out.push((
                field,
                format!("metric name {name:?} is not lower-case letters, digits and hyphens (at most 63)"),
            ));
        } else if !seen.insert(name.to_string()) {
            out.push((field, format!("metric {name} is named twice")));
        }
    };
    for (i, m) in a.metrics.iter().enumerate() {
        let at = |f: &str| format!("spec.strategy.analysis.metrics[{i}].{f}");
        named(&mut out, at("name"), &m.name);
        duration(&mut out, at("interval"), m.interval.as_ref(), true);
        for (field, source) in [
            ("successCondition", Some(&m.success_condition)),
            ("failureCondition", m.failure_condition.as_ref()),
        ] {
            if let Some(src) = source
                && let Err(e) = compile(src)
            {
                out.push((at(field), e));
            }
        }
        provider(&mut out, &at("provider"), &m.provider);
    }
    for (i, c) in a.comparisons.iter().enumerate() {
        let at = |f: &str| format!("spec.strategy.analysis.comparisons[{i}].{f}");
        named(&mut out, at("name"), &c.name);
        duration(&mut out, at("interval"), c.interval.as_ref(), true);
        duration(&mut out, at("labelDelay"), c.label_delay.as_ref(), false);
        if !(c.margin.is_finite() && c.margin >= 0.0) {
            out.push((at("margin"), "a margin of 0 or more, e.g. 0.01".into()));
        }
        if c.alpha.is_some_and(|a| !(a > 0.0 && a < 0.5)) {
            out.push((
                at("alpha"),
                "a false-positive rate above 0 and below 0.5, e.g. 0.05".into(),
            ));
        }
        if c.tau.is_some_and(|t| !(t.is_finite() && t > 0.0)) {
            out.push((at("tau"), "a scale above 0, e.g. 0.02".into()));
        }
        provider(&mut out, &at("successes"), &c.successes);
        provider(&mut out, &at("trials"), &c.trials);
    }
    out
}
