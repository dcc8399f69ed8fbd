//! `slipway status`, `slipway history` and `slipway retry`: on the state folder of `slipway run`,
//! or on a running instance through its HTTP API (`--state http://127.0.0.1:8080`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};

use super::print_out;
use crate::edges::store::{HistoryEntry, HistoryFilter, Store};

/// Arguments of `slipway status`.
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// Only this model.
    pub model: Option<String>,
    /// The state folder of `slipway run`, or the URL of a running `slipway run --listen`.
    #[arg(long, default_value = ".slipway", env = "SLIPWAY_STATE")]
    pub state: String,
}

/// Arguments of `slipway history`.
#[derive(clap::Args, Debug)]
pub struct HistoryArgs {
    /// The model.
    pub model: String,
    /// Only this alias.
    #[arg(long)]
    pub alias: Option<String>,
    /// Show what each alias pointed at at this time (RFC 3339, e.g. 2026-11-25T21:00:00Z).
    #[arg(long)]
    pub at: Option<DateTime<Utc>>,
    /// The state folder of `slipway run`, or the URL of a running `slipway run --listen`.
    #[arg(long, default_value = ".slipway", env = "SLIPWAY_STATE")]
    pub state: String,
}

/// Where `status`, `history` and `retry` read: a state folder or a running instance.
enum StateRef {
    Dir(Store),
    Url(String),
}

impl StateRef {
    fn open(state: &str) -> anyhow::Result<StateRef> {
        StateRef::open_to(state, false)
    }

    /// [`StateRef::open`], a state folder opened to write (`retry`) when `write`.
    fn open_to(state: &str, write: bool) -> anyhow::Result<StateRef> {
        if state.starts_with("http://") || state.starts_with("https://") {
            return Ok(StateRef::Url(state.trim_end_matches('/').to_string()));
        }
        let dir = PathBuf::from(state);
        if !dir.join("state.db").is_file() {
            anyhow::bail!(
                "no state in {state}; run `slipway run --state {state}` first, or pass the right \
                 --state (a folder, or the URL of a running `slipway run --listen`)"
            );
        }
        Ok(StateRef::Dir(if write {
            Store::open(&dir)?
        } else {
            Store::open_reader(&dir)?
        }))
    }

    fn get(url: &str) -> anyhow::Result<serde_json::Value> {
        let mut response = ureq::get(url)
            .config()
            .http_status_as_error(false)
            .build()
            .call()
            .map_err(|e| {
                anyhow::anyhow!("cannot reach {url}: {e}; is `slipway run --listen` running there?")
            })?;
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string()?;
        if status != 200 {
            anyhow::bail!("{url} answered {status}: {}", body.trim());
        }
        serde_json::from_str(&body)
            .map_err(|e| anyhow::anyhow!("{url} did not answer with JSON: {e}"))
    }

    fn history(&self, filter: &HistoryFilter) -> anyhow::Result<Vec<HistoryEntry>> {
        match self {
            StateRef::Dir(store) => Ok(store.history(filter)?),
            StateRef::Url(base) => {
                let mut query = Vec::new();
                if let Some(m) = &filter.model {
                    query.push(format!(
                        "model={}",
                        crate::decide::rollout::metrics::url_component(m)
                    ));
                }
                if let Some(a) = &filter.alias {
                    query.push(format!(
                        "alias={}",
                        crate::decide::rollout::metrics::url_component(a)
                    ));
                }
                if let Some(t) = filter.until {
                    query.push(format!(
                        "until={}",
                        crate::decide::rollout::metrics::url_component(&t.to_rfc3339())
                    ));
                }
                let url = format!("{base}/api/v1/history?{}", query.join("&"));
                Ok(serde_json::from_value(Self::get(&url)?)?)
            }
        }
    }

    /// Deployment rows as the read API gives them (`crate::modes::git::deployment_rows`).
    fn deployments(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        match self {
            StateRef::Dir(store) => Ok(crate::modes::git::deployment_rows(store)?),
            StateRef::Url(base) => {
                let rows = Self::get(&format!("{base}/api/v1/deployments"))?;
                Ok(rows.as_array().cloned().unwrap_or_default())
            }
        }
    }
}

fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// What `status` shows of one version: when it was registered, its latest evaluations.
#[derive(Default)]
struct VersionView {
    registered: String,
    evaluations: Vec<String>,
}

/// What `status` shows of one alias: where it points, and a held move.
#[derive(Default)]
struct AliasView {
    version: Option<String>,
    held: Option<String>,
}

/// Views per model, then per version or alias name.
type ByModel<T> = BTreeMap<String, BTreeMap<String, T>>;

pub fn status(args: StatusArgs) -> anyhow::Result<i32> {
    let store = StateRef::open(&args.state)?;
    let entries = store.history(&HistoryFilter {
        model: args.model.clone(),
        ..Default::default()
    })?;
    let (versions, aliases) = fold_history(&entries);
    if versions.is_empty() && aliases.is_empty() {
        if let Some(model) = &args.model {
            no_such_model(&store, model)?;
        }
        print_out("nothing registered yet\n")?;
        return Ok(0);
    }
    let mut out = String::new();
    // A state folder: its sources (a rejected newest revision), and whether a run serves it. A
    // running instance's answers are live by definition (its /readyz names a rejection).
    let serving = match &store {
        StateRef::Dir(s) => {
            out.push_str(&sources_text(s)?);
            // Unknown (the lock cannot be read): not said to be stopped.
            crate::edges::store::run_lock::holding(std::path::Path::new(&args.state))
                != crate::edges::store::run_lock::Holding::Free
        }
        StateRef::Url(_) => true,
    };
    out.push_str(&models_text(&versions, &aliases));
    let deployments = store.deployments()?;
    if !deployments.is_empty() {
        out.push_str("deployments\n");
        let logs = std::path::Path::new(&args.state).join("logs");
        for row in deployments {
            use super::deployment_text::Served;
            let key = (
                row["namespace"].as_str().unwrap_or_default().to_string(),
                row["name"].as_str().unwrap_or_default().to_string(),
            );
            let served = if serving {
                Served::ByRun
            } else if crate::edges::serving::processes::router_runs(&logs, &key) {
                Served::Unattended
            } else {
                Served::Stopped
            };
            out.push_str(&super::deployment_text::deployment_text(&row, served));
        }
    }
    print_out(&out)?;
    Ok(0)
}

/// The sources whose newest revision was rejected (their `Stalled` condition): which revision
/// stays in force, and why the new one does not.
fn sources_text(store: &Store) -> anyhow::Result<String> {
    let mut out = String::new();
    for (_, name, st) in store.statuses("Source")? {
        let Some(stalled) = st["conditions"].as_array().and_then(|c| {
            c.iter()
                .find(|c| c["type"] == "Stalled" && c["status"] == "True")
        }) else {
            continue;
        };
        out.push_str(&format!(
            "source {name}\n  newest revision rejected: {}\n  (`slipway validate` on it shows every error)\n",
            stalled["message"].as_str().unwrap_or("invalid")
        ));
    }
    Ok(out)
}

/// Folds the history into what `status` shows of each version and alias.
fn fold_history(entries: &[HistoryEntry]) -> (ByModel<VersionView>, ByModel<AliasView>) {
    let mut versions: ByModel<VersionView> = BTreeMap::new();
    let mut aliases: ByModel<AliasView> = BTreeMap::new();
    for h in entries {
        let v = h.version.clone().unwrap_or_default();
        let alias = h.alias.clone().unwrap_or_default();
        match h.event.as_str() {
            "VersionRegistered" => {
                versions
                    .entry(h.model.clone())
                    .or_default()
                    .entry(v)
                    .or_default()
                    .registered = time(h.at);
            }
            "EvaluationCompleted" => {
                let name = h.subject.trim_start_matches("Evaluation/");
                let evals = &mut versions
                    .entry(h.model.clone())
                    .or_default()
                    .entry(v)
                    .or_default()
                    .evaluations;
                evals.retain(|e| !e.ends_with(&format!("({name})")));
                evals.push(format!("{} ({name})", h.decision.as_deref().unwrap_or("?")));
            }
            "AliasMoved" => {
                let a = aliases
                    .entry(h.model.clone())
                    .or_default()
                    .entry(alias)
                    .or_default();
                *a = AliasView {
                    version: h.version.clone(),
                    held: None,
                };
            }
            "PromotionBlocked" => {
                aliases
                    .entry(h.model.clone())
                    .or_default()
                    .entry(alias)
                    .or_default()
                    // "m/alias → 9 held: why" says "held" once in `[held: …]`.
                    .held = Some(match h.message.split_once(" held: ") {
                    Some((what, why)) => format!("{what}: {why}"),
                    None => h.message.clone(),
                });
            }
            _ => {}
        }
    }
    (versions, aliases)
}

/// The lines of every model: its versions in natural order, then its aliases.
fn models_text(versions: &ByModel<VersionView>, aliases: &ByModel<AliasView>) -> String {
    let mut out = String::new();
    let models: std::collections::BTreeSet<&String> =
        versions.keys().chain(aliases.keys()).collect();
    for model in models {
        out.push_str(&format!("{model}\n"));
        let mut vs: Vec<(&String, &VersionView)> = versions
            .get(model)
            .map(|m| m.iter().collect())
            .unwrap_or_default();
        vs.sort_by(|a, b| {
            crate::decide::catalog::natural(a.0).cmp(&crate::decide::catalog::natural(b.0))
        });
        for (v, view) in vs {
            let evals = if view.evaluations.is_empty() {
                "not evaluated".to_string()
            } else {
                view.evaluations.join(", ")
            };
            out.push_str(&format!(
                "  version {v:<6} registered {}  evaluation: {evals}\n",
                view.registered
            ));
        }
        for (alias, view) in aliases.get(model).into_iter().flatten() {
            out.push_str(&format!(
                "  alias {alias} → {}",
                view.version.as_deref().unwrap_or("(unresolved)")
            ));
            if let Some(h) = &view.held {
                out.push_str(&format!("  [held: {h}]"));
            }
            out.push('\n');
        }
    }
    out
}

fn line(h: &HistoryEntry) -> String {
    // Who and from which revision, apart from the message (which may end in a version or a
    // path of its own).
    let by: Vec<String> = [
        h.actor.as_deref().map(|a| format!("by {a}")),
        h.revision.as_deref().map(|r| format!("revision {r}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    let by = if by.is_empty() {
        String::new()
    } else {
        format!("  ({})", by.join(", "))
    };
    format!("{}  {:<20} {}{by}\n", time(h.at), h.event, h.message)
}

/// Fails with "no model X (did you mean Y?)" when the state knows other models than `model`
/// (a misspelt name), and returns when it knows none at all (nothing registered yet).
fn no_such_model(store: &StateRef, model: &str) -> anyhow::Result<()> {
    let all = store.history(&HistoryFilter::default())?;
    let models: std::collections::BTreeSet<&str> = all
        .iter()
        .map(|h| h.model.as_str())
        .filter(|m| !m.is_empty())
        .collect();
    if models.is_empty() || models.contains(model) {
        return Ok(());
    }
    let hint = crate::decide::diagnostics::did_you_mean(model, models.iter().copied())
        .map(|m| format!(" (did you mean {m}?)"))
        .unwrap_or_default();
    let known: Vec<&str> = models.into_iter().collect();
    anyhow::bail!(
        "no model {model} in this state{hint}; models: {}",
        known.join(", ")
    )
}

pub fn history(args: HistoryArgs) -> anyhow::Result<i32> {
    let store = StateRef::open(&args.state)?;
    no_such_model(&store, &args.model)?;
    let filter = HistoryFilter {
        model: Some(args.model.clone()),
        alias: None,
        until: args.at,
        after_id: None,
    };
    let entries: Vec<HistoryEntry> = store
        .history(&filter)?
        .into_iter()
        .filter(|h| args.alias.is_none() || h.alias == args.alias)
        .collect();
    if let Some(at) = args.at {
        // What served at T: the last move of each alias at or before T.
        let mut served: BTreeMap<String, &HistoryEntry> = BTreeMap::new();
        for h in entries.iter().filter(|h| h.event == "AliasMoved") {
            served.insert(h.alias.clone().unwrap_or_default(), h);
        }
        if served.is_empty() {
            print_out(&format!(
                "no alias of {} pointed anywhere at {}\n",
                args.model,
                time(at)
            ))?;
            return Ok(0);
        }
        let mut out = format!("{} at {}:\n", args.model, time(at));
        for (alias, h) in served {
            out.push_str(&format!(
                "  {alias} → {} (since {})\n",
                h.version.as_deref().unwrap_or("?"),
                time(h.at)
            ));
        }
        print_out(&out)?;
        return Ok(0);
    }
    if entries.is_empty() {
        print_out(&format!("no history for {}\n", args.model))?;
        return Ok(0);
    }
    print_out(&entries.iter().map(line).collect::<String>())?;
    Ok(0)
}

/// Arguments of `slipway retry`.
#[derive(clap::Args, Debug)]
pub struct RetryArgs {
    /// The deployment (`NAME` or `NAMESPACE/NAME`) whose rejected version to roll out again.
    #[arg(required_unless_present = "evaluation", conflicts_with = "evaluation")]
    pub deployment: Option<String>,
    /// Instead: the evaluation (`NAME` or `NAMESPACE/NAME`) that failed without results to run
    /// again, from its first attempt.
    #[arg(long, value_name = "NAME")]
    pub evaluation: Option<String>,
    /// The rejected version to retry (default: every rejected version).
    #[arg(long)]
    pub version: Option<String>,
    /// The state folder of `slipway run`, or the URL of a running `slipway run --listen`.
    #[arg(long, default_value = ".slipway", env = "SLIPWAY_STATE")]
    pub state: String,
}

/// `NAME` or `NAMESPACE/NAME` as (namespace, name).
fn namespaced(given: &str) -> (String, String) {
    match given.split_once('/') {
        Some((ns, name)) => (ns.to_string(), name.to_string()),
        None => ("default".to_string(), given.to_string()),
    }
}

/// A POST to a running instance's API with the token of `SLIPWAY_API_TOKEN`; the JSON answer
/// of a 200, or the error the instance gave.
fn post_api(url: &str, body: serde_json::Value) -> anyhow::Result<serde_json::Value> {
    let token = std::env::var("SLIPWAY_API_TOKEN").map_err(|_| {
        anyhow::anyhow!(
            "set SLIPWAY_API_TOKEN to the token in the instance's --api-token-file to retry over HTTP"
        )
    })?;
    let mut response = ureq::post(url)
        .config()
        .http_status_as_error(false)
        .build()
        .header("authorization", &format!("Bearer {}", token.trim()))
        .header("content-type", "application/json")
        .send(body.to_string())
        .map_err(|e| anyhow::anyhow!("cannot reach {url}: {e}"))?;
    let status = response.status().as_u16();
    let body: serde_json::Value =
        serde_json::from_str(&response.body_mut().read_to_string().unwrap_or_default())
            .unwrap_or_default();
    if status != 200 {
        anyhow::bail!(
            "{url} answered {status}: {}",
            body["error"].as_str().unwrap_or("no reason given")
        );
    }
    Ok(body)
}

/// `slipway retry --evaluation`: runs an evaluation that failed without results again.
fn retry_evaluation(given: &str, state: &str) -> anyhow::Result<i32> {
    let (ns, name) = namespaced(given);
    let actor = std::env::var("USER").ok();
    match StateRef::open_to(state, true)? {
        StateRef::Dir(store) => {
            crate::modes::git::retry::request_evaluation_retry(&store, &ns, &name, actor)?
        }
        StateRef::Url(base) => {
            let url = format!(
                "{base}/api/v1/evaluations/{}/{}/retry",
                crate::decide::rollout::metrics::url_component(&ns),
                crate::decide::rollout::metrics::url_component(&name)
            );
            post_api(&url, serde_json::json!({"actor": actor}))?;
        }
    }
    print_out(&format!(
        "{ns}/{name}: runs again from its first attempt on the next `slipway run` pass\n"
    ))?;
    Ok(0)
}

pub fn retry(args: RetryArgs) -> anyhow::Result<i32> {
    let deployment = match (&args.deployment, &args.evaluation) {
        (_, Some(e)) => return retry_evaluation(e, &args.state),
        (Some(d), None) => d,
        (None, None) => anyhow::bail!("name a deployment, or an evaluation with --evaluation"),
    };
    let (ns, name) = namespaced(deployment);
    let actor = std::env::var("USER").ok();
    let versions = match StateRef::open_to(&args.state, true)? {
        StateRef::Dir(store) => crate::modes::git::retry::request_retry(
            &store,
            &ns,
            &name,
            args.version.as_deref(),
            actor,
        )?,
        StateRef::Url(base) => {
            let url = format!(
                "{base}/api/v1/deployments/{}/{}/retry",
                crate::decide::rollout::metrics::url_component(&ns),
                crate::decide::rollout::metrics::url_component(&name)
            );
            let body = post_api(
                &url,
                serde_json::json!({"version": args.version, "actor": actor}),
            )?;
            serde_json::from_value(body["versions"].clone())?
        }
    };
    print_out(&format!(
        "{ns}/{name}: {} will be rolled out again by the next `slipway run` pass\n",
        versions.join(", ")
    ))?;
    Ok(0)
}
