//! The registry web UI: models → versions (lineage, metrics, evaluation reports) → alias history
//! → deployments with their live traffic split. Server-rendered, no JavaScript.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::S;
use crate::edges::store::HistoryFilter;

fn render(ctx: Value) -> Response {
    let mut env = minijinja::Environment::new();
    if let Err(e) = env.add_template("ui.html", include_str!("ui.html.j2")) {
        return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
    }
    match env
        .get_template("ui.html")
        .and_then(|t| t.render(minijinja::Value::from(minijinja::value::Serde(&ctx))))
    {
        Ok(html) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn deployments(s: &S, model: Option<&str>) -> Vec<Value> {
    crate::modes::git::deployment_rows(&s.store)
        .unwrap_or_default()
        .into_iter()
        .filter(|row| model.is_none_or(|m| row["model"] == m))
        .map(|row| {
            let (ns, name, st) = (&row["namespace"], &row["name"], &row["status"]);
            let (ns, name) = (ns.as_str().unwrap_or_default(), name.as_str().unwrap_or_default());
            let traffic: Vec<Value> = st["traffic"]
                .as_object()
                .map(|t| t.iter().map(|(v, w)| json!({"version": v, "weight": w})).collect())
                .unwrap_or_default();
            json!({"name": format!("{ns}/{name}"), "phase": st["phase"], "serving": st["servingVersion"],
                   "traffic": traffic, "rejected": st["rejectedVersions"].as_array().cloned().unwrap_or_default()})
        })
        .collect()
}

/// Where each alias points now, per (namespace, model), from the history.
fn aliases(s: &S) -> BTreeMap<(String, String), BTreeMap<String, Option<String>>> {
    let mut out: BTreeMap<(String, String), BTreeMap<String, Option<String>>> = BTreeMap::new();
    for h in s
        .store
        .history(&HistoryFilter::default())
        .unwrap_or_default()
    {
        if h.event == "AliasMoved" {
            out.entry((h.namespace.clone(), h.model.clone()))
                .or_default()
                .insert(h.alias.clone().unwrap_or_default(), h.version.clone());
        }
    }
    out
}

pub async fn index(State(s): State<S>) -> Response {
    let catalog = s.catalog.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let pointers = aliases(&s);
    let models: Vec<Value> = catalog["models"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|m| {
            let (ns, name) = (m["namespace"].as_str().unwrap_or("default").to_string(), m["name"].as_str().unwrap_or("").to_string());
            let versions = catalog["versions"].as_array().map_or(0, |v| v.iter().filter(|v| v["spec"]["model"] == name.as_str() && v["namespace"] == ns.as_str()).count());
            let mut al: Vec<Value> = catalog["aliases"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|a| a["spec"]["model"] == name.as_str() && a["namespace"] == ns.as_str())
                .map(|a| {
                    let alias = a["spec"]["alias"].as_str().unwrap_or("").to_string();
                    let version = pointers.get(&(ns.clone(), name.clone())).and_then(|p| p.get(&alias)).cloned().flatten();
                    json!({"alias": alias, "version": version})
                })
                .collect();
            al.sort_by_key(|a| a["alias"].as_str().unwrap_or("").to_string());
            json!({"namespace": ns, "name": name, "description": m["spec"]["description"], "versions": versions, "aliases": al})
        })
        .collect();
    render(
        json!({"page": "index", "title": "Models", "models": models, "deployments": deployments(&s, None)}),
    )
}

pub async fn model(State(s): State<S>, Path((ns, name)): Path<(String, String)>) -> Response {
    let catalog = s.catalog.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let Some(model) = catalog["models"]
        .as_array()
        .and_then(|m| {
            m.iter()
                .find(|m| m["name"] == name.as_str() && m["namespace"] == ns.as_str())
        })
        .cloned()
    else {
        return (StatusCode::NOT_FOUND, format!("no model {ns}/{name}")).into_response();
    };
    let history = s
        .store
        .history(&HistoryFilter {
            model: Some(name.clone()),
            ..Default::default()
        })
        .unwrap_or_default();
    let mut evaluations: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for h in history.iter().filter(|h| h.event == "EvaluationCompleted") {
        let eval = h.subject.trim_start_matches("Evaluation/").to_string();
        let list = evaluations
            .entry(h.version.clone().unwrap_or_default())
            .or_default();
        list.retain(|e| e["name"] != eval.as_str());
        let verdict = h
            .decision
            .as_deref()
            .map(|d| if d == "passed" { "Passed" } else { "Failed" })
            .unwrap_or("?");
        list.push(json!({"name": eval, "verdict": verdict, "report": format!("/reports/{ns}/{eval}.html")}));
    }
    let mut versions: Vec<Value> = catalog["versions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|v| v["spec"]["model"] == name.as_str() && v["namespace"] == ns.as_str())
        .map(|v| {
            let spec = &v["spec"];
            let version = spec["version"].as_str().unwrap_or("").to_string();
            json!({
                "version": version, "description": spec["description"], "artifact": spec["artifact"]["uri"],
                "digest": spec["artifact"]["digest"], "run": spec["source"]["run"], "commit": spec["source"]["commit"],
                "dataset": spec["source"]["dataset"]["uri"], "metrics": spec["metrics"],
                "evaluations": evaluations.get(&version).cloned().unwrap_or_default(),
            })
        })
        .collect();
    versions.sort_by(|a, b| {
        crate::decide::catalog::natural(a["version"].as_str().unwrap_or("")).cmp(
            &crate::decide::catalog::natural(b["version"].as_str().unwrap_or("")),
        )
    });
    let alias_history: Vec<Value> = history
        .iter()
        .filter(|h| h.event == "AliasMoved" || h.event == "PromotionBlocked")
        .map(|h| {
            // A held move says why: each rule that denied it (a soak: what was left, and when
            // it ends), and the approvals it waited for.
            let decision = &h.data;
            let rules = decision["rules"].as_array().into_iter().flatten();
            let mut why: Vec<String> = rules
                .filter(|r| r["passed"] == false && r["effect"] == "deny")
                .map(|r| format!("{}/{}: {}", r["policy"].as_str().unwrap_or(""), r["name"].as_str().unwrap_or(""), r["message"].as_str().unwrap_or("")))
                .collect();
            if h.event == "PromotionBlocked" && why.is_empty() {
                why.push(h.message.clone());
            }
            json!({"at": h.at.format("%Y-%m-%d %H:%M:%S").to_string(), "event": h.event, "alias": h.alias, "version": h.version, "decision": h.decision, "revision": h.revision, "why": why})
        })
        .collect();
    render(
        json!({"page": "model", "title": name, "model": {"name": name, "description": model["spec"]["description"]},
                  "versions": versions, "alias_history": alias_history, "deployments": deployments(&s, Some(&name))}),
    )
}
