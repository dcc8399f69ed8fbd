//! Comparison reports of finished evaluations: Markdown and a standalone HTML page (inline CSS
//! and SVG, no JavaScript). A model may name its own templates (`spec.report`); they get the
//! same data and the built-in panels, and one that fails to render gives the default report
//! with its error on top. Pure rendering (minijinja); reading templates and writing the files
//! is the homes' business.

mod panels;
mod subject;

use minijinja::{Environment, Value};
use serde_json::json;
use slipway_crd::RegisteredModel;
use slipway_crd::common::RelativeTo;

pub use subject::{Point, Subject, by_label};

/// A report's format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Markdown.
    Markdown,
    /// A standalone HTML page.
    Html,
}

impl Format {
    /// The template name (its extension decides escaping).
    fn name(self) -> &'static str {
        match self {
            Format::Markdown => "report.md",
            Format::Html => "report.html",
        }
    }

    fn default_template(self) -> &'static str {
        match self {
            Format::Markdown => include_str!("report.md.j2"),
            Format::Html => include_str!("report.html.j2"),
        }
    }

    fn panels(self) -> (&'static str, &'static str) {
        match self {
            Format::Markdown => ("panels.md", include_str!("panels.md.j2")),
            Format::Html => ("panels.html", include_str!("panels.html.j2")),
        }
    }
}

/// Where a model's report template is: a file of the registry (git mode) or a key of a
/// ConfigMap (a cluster).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateRef {
    /// The ConfigMap in the model's namespace, in a cluster.
    pub config_map: Option<String>,
    /// The file (relative to the registry folder) or the ConfigMap's key.
    pub name: String,
}

impl TemplateRef {
    /// How the report names it when it fails.
    pub fn origin(&self) -> String {
        match &self.config_map {
            Some(cm) => format!("ConfigMap {cm}, key {}", self.name),
            None => self.name.clone(),
        }
    }
}

/// The template `model` names for `format`, if any.
pub fn template_of(model: &RegisteredModel, format: Format) -> Option<TemplateRef> {
    let r = model.spec.report.as_ref()?;
    let name = match format {
        Format::Markdown => r.markdown.as_ref()?,
        Format::Html => r.html.as_ref()?,
    };
    Some(TemplateRef {
        config_map: r.config_map.clone(),
        name: name.clone(),
    })
}

/// A model's own template as a home read it: its text, or why it could not be read.
#[derive(Clone, Debug, PartialEq)]
pub struct Custom {
    /// Where it is, as the report names it when it fails.
    pub origin: String,
    /// The template, or why it could not be read.
    pub text: Result<String, String>,
}

/// How much work a model's template may do, in minijinja's instructions (the default reports
/// take a few thousand).
const FUEL: u64 = 2_000_000;
/// The largest report a model's template may produce.
const MAX_OUTPUT: usize = 4 << 20;
/// The largest template a home reads.
pub const MAX_TEMPLATE: u64 = 256 << 10;

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .keep_trailing_newline(true)
        .build()
    {
        env.set_syntax(syntax);
    }
    env.add_filter("num", |v: Option<f64>| {
        v.map(|v| {
            format!("{v:.4}")
                .trim_end_matches('0')
                .trim_end_matches('.')
                .to_string()
        })
        .unwrap_or_else(|| "—".into())
    });
    env.add_filter("cell", |s: String| s.replace('|', "\\|").replace('\n', " "));
    env
}

/// What every template reads (see the README's "Reports a team designs").
fn data(s: &Subject) -> serde_json::Value {
    let e = &s.evaluation;
    let status = e.status.clone().unwrap_or_default();
    let op = |g: &slipway_crd::evaluation::GateResult| {
        serde_json::to_value(g.op)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    };
    let gates: Vec<serde_json::Value> = status
        .gates
        .iter()
        .map(|g| {
            json!({
                "metric": g.metric,
                "rule": match g.relative_to {
                    RelativeTo::Absolute => format!("{} {}", op(g), g.value),
                    RelativeTo::Baseline => format!("{} baseline {:+}", op(g), g.value),
                },
                "actual": g.actual, "threshold": g.threshold, "passed": g.passed, "message": g.message,
            })
        })
        .collect();
    let bars = panels::bars(e);
    let signature = match (&s.baseline, &s.candidate) {
        (Some(b), Some(c)) => match (&b.spec.signature, &c.spec.signature) {
            (Some(b), Some(c)) => crate::signature::diff(b, c),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    let signature: Vec<serde_json::Value> = signature
        .iter()
        .map(|d| {
            let mut v = json!(d);
            v["text"] = d.describe().into();
            v
        })
        .collect();
    let lineage = s.candidate.as_ref().map(|v| {
        json!({
            "artifact": v.spec.artifact, "source": v.spec.source,
            "description": v.spec.description, "labels": v.spec.labels,
            "trainingMetrics": v.spec.metrics,
        })
    });
    json!({
        "name": e.metadata.name.clone().unwrap_or_default(),
        "namespace": e.metadata.namespace,
        "model": e.spec.model, "version": e.spec.version, "suite": e.spec.suite,
        "baseline_version": status.baseline_version,
        "dataset": e.spec.dataset.uri, "dataset_digest": e.spec.dataset.digest,
        "verdict": status.verdict.map(|v| v.as_str()), "phase": status.phase.as_str(),
        "cache_key": status.cache_key,
        "completed_at": status.completed_at.map(|t| t.to_rfc3339()),
        "metrics": status.metrics, "baseline_metrics": status.baseline_metrics,
        "gates": gates, "samples": status.samples,
        "bars": bars, "chart_height": 40 + bars.len() as u32 * 46,
        "lineage": lineage,
        "signature": signature,
        "history": s.history,
        "lines": panels::lines(&s.history),
    })
}

/// The built-in panels of `format`, rendered from `data` (marked safe for HTML templates).
fn panels(env: &mut Environment<'static>, format: Format, data: &Value) -> Value {
    let (name, source) = format.panels();
    let mut out = std::collections::BTreeMap::new();
    let rendered = env
        .add_template(name, source)
        .and_then(|()| env.get_template(name))
        .and_then(|t| t.render_captured(data.clone()))
        .and_then(|mut captured| {
            captured.with_state_mut(|state| {
                for block in [
                    "comparison",
                    "history",
                    "gates",
                    "samples",
                    "signature",
                    "style",
                ] {
                    out.insert(block, Value::from_safe_string(state.render_block(block)?));
                }
                Ok(())
            })
        });
    if let Err(e) = rendered {
        out.insert("error", Value::from(format!("panel error: {e}")));
    }
    Value::from(minijinja::value::Serde(&out))
}

/// A writer that refuses more than [`MAX_OUTPUT`] bytes (and says it did).
struct Bounded(Vec<u8>, bool);

impl std::io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > MAX_OUTPUT {
            self.1 = true;
            return Err(std::io::Error::other("too large"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What went wrong in a model's template, by its line (not the internal template name).
fn explain(e: &minijinja::Error) -> String {
    let why = match (e.kind(), e.detail()) {
        (minijinja::ErrorKind::OutOfFuel, _) => {
            format!("the template worked too long (over {FUEL} steps)")
        }
        (kind, Some(detail)) => format!("{kind}: {detail}"),
        (kind, None) => kind.to_string(),
    };
    match e.line() {
        Some(line) => format!("line {line}: {why}"),
        None => why,
    }
}

/// A model's template rendered with `ctx`, within [`FUEL`] and [`MAX_OUTPUT`].
fn render_custom(text: &str, format: Format, ctx: &Value) -> Result<String, String> {
    let mut env = environment();
    env.set_fuel(Some(FUEL));
    env.add_template_owned(format.name(), text.to_string())
        .map_err(|e| explain(&e))?;
    let t = env.get_template(format.name()).map_err(|e| explain(&e))?;
    let mut out = Bounded(Vec::new(), false);
    let rendered = t.render_captured_to(ctx.clone(), &mut out).map(drop);
    if out.1 {
        return Err(format!(
            "the report would be larger than {} MiB",
            MAX_OUTPUT >> 20
        ));
    }
    rendered.map_err(|e| explain(&e))?;
    String::from_utf8(out.0).map_err(|e| e.to_string())
}

/// The report of `subject` in `format`: with the model's own template when `custom` is given and
/// renders, the default one (with the custom one's error on top) otherwise.
pub fn render(subject: &Subject, format: Format, custom: Option<&Custom>) -> String {
    render_checked(subject, format, custom).0
}

/// [`render`], with why the model's own template was not used, if it failed.
pub fn render_checked(
    subject: &Subject,
    format: Format,
    custom: Option<&Custom>,
) -> (String, Option<String>) {
    let mut env = environment();
    let mut data = data(subject);
    let panels = panels(
        &mut env,
        format,
        &Value::from(minijinja::value::Serde(&data)),
    );
    let with_panels = |data: &serde_json::Value, panels: &Value| {
        Value::from_pairs(
            data.as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), Value::from(minijinja::value::Serde(v))))
                .chain([("panels".to_string(), panels.clone())]),
        )
    };
    let mut failed = None;
    if let Some(c) = custom {
        let ctx = with_panels(&data, &panels);
        match c
            .text
            .as_deref()
            .map_err(String::clone)
            .and_then(|t| render_custom(t, format, &ctx))
        {
            Ok(out) => return (out, None),
            Err(message) => {
                // Shown in inline code: a backtick in it would end the code early.
                let shown = message.replace('`', "'");
                data["template_error"] = json!({"origin": c.origin, "message": shown});
                failed = Some(message);
            }
        }
    }
    let ctx = with_panels(&data, &panels);
    let out = env
        .add_template(format.name(), format.default_template())
        .and_then(|()| env.get_template(format.name()))
        .and_then(|t| t.render(ctx))
        .unwrap_or_else(|err| format!("report template error: {err}"));
    (out, failed)
}

/// The default Markdown report of an evaluation on its own.
pub fn markdown(e: &slipway_crd::Evaluation) -> String {
    render(&Subject::alone(e), Format::Markdown, None)
}

/// The default HTML report of an evaluation on its own.
pub fn html(e: &slipway_crd::Evaluation) -> String {
    render(&Subject::alone(e), Format::Html, None)
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
