//! `slipway status` and `slipway history`: read the state store of `slipway run`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};

use super::print_out;
use crate::store::{HistoryEntry, HistoryFilter, Store};

/// Arguments of `slipway status`.
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// Only this model.
    pub model: Option<String>,
    /// The state folder of `slipway run`.
    #[arg(long, default_value = ".slipway", env = "SLIPWAY_STATE")]
    pub state: PathBuf,
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
    /// The state folder of `slipway run`.
    #[arg(long, default_value = ".slipway", env = "SLIPWAY_STATE")]
    pub state: PathBuf,
}

fn open(state: &std::path::Path) -> anyhow::Result<Store> {
    if !state.join("state.db").is_file() {
        anyhow::bail!(
            "no state in {}; run `slipway run --state {}` first, or pass the right --state",
            state.display(),
            state.display()
        );
    }
    Ok(Store::open(state)?)
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

pub fn status(args: StatusArgs) -> anyhow::Result<i32> {
    let store = open(&args.state)?;
    let entries = store.history(&HistoryFilter {
        model: args.model.clone(),
        ..Default::default()
    })?;
    let mut versions: BTreeMap<String, BTreeMap<String, VersionView>> = BTreeMap::new();
    let mut aliases: BTreeMap<String, BTreeMap<String, AliasView>> = BTreeMap::new();
    for h in &entries {
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
                    .held = Some(h.message.clone());
            }
            _ => {}
        }
    }
    if versions.is_empty() && aliases.is_empty() {
        print_out("nothing registered yet\n")?;
        return Ok(0);
    }
    let mut out = String::new();
    let models: std::collections::BTreeSet<&String> =
        versions.keys().chain(aliases.keys()).collect();
    for model in models {
        out.push_str(&format!("{model}\n"));
        let mut vs: Vec<(&String, &VersionView)> = versions
            .get(model)
            .map(|m| m.iter().collect())
            .unwrap_or_default();
        vs.sort_by(|a, b| crate::catalog::natural(a.0).cmp(&crate::catalog::natural(b.0)));
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
    let deployments = store.statuses("ModelDeployment")?;
    if !deployments.is_empty() {
        out.push_str("deployments\n");
        for (ns, name, st) in deployments {
            let traffic: Vec<String> = st["traffic"]
                .as_object()
                .map(|t| t.iter().map(|(v, w)| format!("{v}: {w}%")).collect())
                .unwrap_or_default();
            out.push_str(&format!(
                "  {ns}/{name}  {}  serving {}  traffic {{{}}}",
                st["phase"].as_str().unwrap_or("?"),
                st["servingVersion"].as_str().unwrap_or("-"),
                traffic.join(", ")
            ));
            if let Some(addr) = st["address"].as_str() {
                out.push_str(&format!("  at http://{addr}"));
            }
            let rejected: Vec<&str> = st["rejectedVersions"]
                .as_array()
                .map(|r| r.iter().filter_map(|v| v.as_str()).collect())
                .unwrap_or_default();
            if !rejected.is_empty() {
                out.push_str(&format!(
                    "  rejected: {} (run `slipway retry` or move the alias)",
                    rejected.join(", ")
                ));
            }
            out.push('\n');
        }
    }
    print_out(&out)?;
    Ok(0)
}

fn line(h: &HistoryEntry) -> String {
    let who = h
        .actor
        .as_deref()
        .map(|a| format!(" by {a}"))
        .unwrap_or_default();
    let rev = h
        .revision
        .as_deref()
        .map(|r| format!(" @{r}"))
        .unwrap_or_default();
    format!("{}  {:<20} {}{who}{rev}\n", time(h.at), h.event, h.message)
}

pub fn history(args: HistoryArgs) -> anyhow::Result<i32> {
    let store = open(&args.state)?;
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
    /// The deployment (`NAME` or `NAMESPACE/NAME`).
    pub deployment: String,
    /// The rejected version to retry (default: every rejected version).
    #[arg(long)]
    pub version: Option<String>,
    /// The state folder of `slipway run`.
    #[arg(long, default_value = ".slipway", env = "SLIPWAY_STATE")]
    pub state: PathBuf,
}

pub fn retry(args: RetryArgs) -> anyhow::Result<i32> {
    let store = open(&args.state)?;
    let (ns, name) = match args.deployment.split_once('/') {
        Some((ns, name)) => (ns.to_string(), name.to_string()),
        None => ("default".to_string(), args.deployment.clone()),
    };
    let mut state = store.rollout(&ns, &name)?;
    let versions: Vec<String> = match &args.version {
        Some(v) => vec![v.clone()],
        None => state.rejected.iter().cloned().collect(),
    };
    if versions.is_empty() || versions.iter().any(|v| !state.rejected.contains(v)) {
        let rejected: Vec<&str> = state.rejected.iter().map(String::as_str).collect();
        anyhow::bail!(
            "{ns}/{name} has {} rejected; nothing to retry{}",
            if rejected.is_empty() {
                "no version".to_string()
            } else {
                format!("versions {}", rejected.join(", "))
            },
            args.version
                .as_ref()
                .map(|v| format!(" for version {v}"))
                .unwrap_or_default()
        );
    }
    let mut writes = Vec::new();
    for v in &versions {
        state = crate::rollout::retry(&state, v);
        writes.push(crate::store::Write::History(HistoryEntry {
            id: 0,
            at: Utc::now(),
            event: "RetryRequested".into(),
            namespace: ns.clone(),
            model: store
                .status("ModelDeployment", &ns, &name)?
                .and_then(|s| s["model"].as_str().map(str::to_string))
                .unwrap_or_default(),
            subject: format!("ModelDeployment/{name}"),
            version: Some(v.clone()),
            alias: None,
            actor: std::env::var("USER").ok(),
            revision: None,
            decision: None,
            message: format!("{name}: version {v} may be rolled out again"),
            data: serde_json::Value::Null,
        }));
    }
    writes.insert(
        0,
        crate::store::Write::Rollout {
            namespace: ns.clone(),
            name: name.clone(),
            state,
        },
    );
    store.apply(&writes)?;
    print_out(&format!(
        "{ns}/{name}: {} will be rolled out again by the next `slipway run` pass\n",
        versions.join(", ")
    ))?;
    Ok(0)
}
