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
