//! The results API and reports in Kubernetes mode: results are checked against the attempt's
//! token and judged by [`crate::decide::evaluation::lifecycle`]; reports render from status.

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use slipway_crd::Evaluation;
use slipway_crd::evaluation::{EvaluationPhase, Verdict};

use super::context::apply_status;
use crate::decide::evaluation::results;
use crate::decide::evaluation::{lifecycle, step};
use crate::decide::report::{self, Format};

use super::evaluations::token_secret;

/// The comparison report of an evaluation, rendered from its status when asked for (`format`
/// is `html` or `md`), with its model's history from the watches' view of the namespace
/// (`cache`, once they run) and the model's templates from their ConfigMap; the error is
/// (HTTP status, message).
pub async fn report(
    client: &kube::Client,
    cache: Option<&super::cache::Cache>,
    ns: &str,
    name: &str,
    format: &str,
) -> Result<String, (u16, String)> {
    let format = match format {
        "html" => Format::Html,
        "md" => Format::Markdown,
        other => {
            return Err((
                404,
                format!("no report format {other:?}: ask for {name}.html or {name}.md"),
            ));
        }
    };
    let api: Api<Evaluation> = Api::namespaced(client.clone(), ns);
    let e = api
        .get_opt(name)
        .await
        .map_err(|e| (500, format!("cannot read the cluster: {e}")))?
        .ok_or((404, format!("no evaluation {ns}/{name}")))?;
    let subject = match cache {
        Some(c) => {
            let view = c.view(ns);
            report::Subject::of(&view.catalog, &view.results, &e)
        }
        None => report::Subject::alone(&e),
    };
    let custom = match subject
        .model
        .as_ref()
        .and_then(|m| report::template_of(m, format))
    {
        Some(t) => Some(template(client, ns, &t).await),
        None => None,
    };
    // A team's template may work for a while: off the runtime that answers admission.
    tokio::task::spawn_blocking(move || report::render(&subject, format, custom.as_ref()))
        .await
        .map_err(|e| (500, format!("rendering the report failed: {e}")))
}

/// A model's report template: a key of a ConfigMap of its namespace that is labelled as one
/// (so that a model cannot show another ConfigMap through its report).
async fn template(client: &kube::Client, ns: &str, t: &report::TemplateRef) -> report::Custom {
    use k8s_openapi::api::core::v1::ConfigMap;
    use slipway_crd::registered_model::REPORT_TEMPLATE_LABEL as LABEL;
    let text = match &t.config_map {
        None => Err(format!(
            "in a cluster a report template is a key of a ConfigMap: set `spec.report.configMap` (a ConfigMap labelled {LABEL}: \"true\")"
        )),
        Some(cm) => match Api::<ConfigMap>::namespaced(client.clone(), ns)
            .get_opt(cm)
            .await
        {
            Err(e) => Err(format!("cannot read ConfigMap {ns}/{cm}: {e}")),
            Ok(None) => Err(format!("ConfigMap {ns}/{cm} does not exist")),
            Ok(Some(c)) => {
                let labelled = c
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(LABEL))
                    .is_some_and(|v| v == "true");
                let text = c.data.as_ref().and_then(|d| d.get(&t.name));
                match text {
                    _ if !labelled => Err(format!(
                        "ConfigMap {ns}/{cm} is not labelled {LABEL}: \"true\"; label it to use it for reports"
                    )),
                    None => Err(format!("ConfigMap {ns}/{cm} has no key {}", t.name)),
                    Some(s) if s.len() as u64 > report::MAX_TEMPLATE => Err(format!(
                        "the template is larger than {} KiB",
                        report::MAX_TEMPLATE >> 10
                    )),
                    Some(s) => Ok(s.clone()),
                }
            }
        },
    };
    report::Custom {
        origin: t.origin(),
        text,
    }
}

/// Accepts a Job's results for `ns/name`: checks the bearer token against the evaluation's
/// Secret, judges the gates and writes the evaluation's status. The error is (HTTP status,
/// message).
pub async fn accept(
    client: &kube::Client,
    reports_url: &str,
    ns: &str,
    name: &str,
    token: Option<&str>,
    body: &[u8],
) -> Result<Verdict, (u16, String)> {
    let evaluations: Api<Evaluation> = Api::namespaced(client.clone(), ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let api_error = |e: kube::Error| (500, format!("cannot read the cluster: {e}"));
    let e = evaluations.get_opt(name).await.map_err(api_error)?;
    let expected = match &e {
        // Only the evaluation's own token Secret opens it (not one planted under its name).
        Some(e) => secrets
            .get_opt(&token_secret(name))
            .await
            .map_err(api_error)?
            .filter(|s| super::evaluation_jobs::controlled_by(&s.metadata, e))
            .and_then(|s| s.data)
            .and_then(|d| d.get("token").map(|b| b.0.clone())),
        None => None,
    };
    let matches = |token: &str| {
        expected
            .as_ref()
            .is_some_and(|want| crate::edges::http::token::matches(token.as_bytes(), want))
    };
    let status = e
        .as_ref()
        .and_then(|e| e.status.clone())
        .unwrap_or_default();
    let answered = (status.phase != EvaluationPhase::Running)
        .then(|| format!("is {}, not waiting for results", status.phase.as_str()));
    let known = expected
        .is_some()
        .then_some(&matches as &dyn Fn(&str) -> bool);
    results::admit(&format!("{ns}/{name}"), token, known, || Ok(answered))?;
    let Some(e) = e else {
        return Err((500, format!("{ns}/{name} is gone")));
    };
    // Only an external system reports here; a Job reports through its results file (a token
    // Secret left over or planted for another runner opens nothing).
    if e.spec.runner.webhook.is_none() {
        return Err((
            409,
            format!(
                "{ns}/{name} does not run on a webhook runner: its Job reports through its results \
                 file, not this API"
            ),
        ));
    }
    let posted = results::posted(body, status.baseline_version.as_deref())?;
    // The attempt in flight reported: the same step as every other observation.
    let attempt = lifecycle::Attempt::recorded(&status);
    let input = super::evaluations::input(&e, name, &attempt, Some(&status));
    let seen = step::Seen::Results {
        candidate: posted.candidate,
        baseline: posted.baseline,
    };
    let observed = step::Observed {
        seen: Some(seen),
        ..Default::default()
    };
    // Between attempts (the last one failed and the next has not started) nothing is waiting.
    let next = step::step(&input, observed);
    let Some(mut finished) = next.status.filter(|_| next.start.is_none()) else {
        return Err((
            409,
            format!("{ns}/{name} is between attempts, not waiting for results"),
        ));
    };
    finished.report = Some(format!("{reports_url}/reports/{ns}/{name}.html"));
    let verdict = finished.verdict.unwrap_or(Verdict::Failed);
    apply_status(&evaluations, name, &finished)
        .await
        .map_err(|e| (500, format!("cannot record the results: {e}")))?;
    Ok(verdict)
}
