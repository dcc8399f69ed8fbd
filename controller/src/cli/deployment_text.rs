//! How `slipway status` shows one deployment.

/// Who serves a local deployment of a state folder.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Served {
    /// A `slipway run` holds the folder (or the state is a running instance).
    ByRun,
    /// No run holds it, but the router a run left (killed, or `--keep-serving`) still serves.
    Unattended,
    /// Nothing serves it.
    Stopped,
}

/// The lines of one deployment row: phase, serving version, traffic, where, what is rejected,
/// then its drift and a stall. A local deployment nothing serves is stopped; one whose router
/// outlived its run serves unattended.
pub(super) fn deployment_text(row: &serde_json::Value, served: Served) -> String {
    let mut out = String::new();
    let st = &row["status"];
    let ns = row["namespace"].as_str().unwrap_or_default();
    let name = row["name"].as_str().unwrap_or_default();
    let traffic: Vec<String> = st["traffic"]
        .as_object()
        .map(|t| t.iter().map(|(v, w)| format!("{v}: {w}%")).collect())
        .unwrap_or_default();
    let address = row["address"].as_str();
    let stopped = served == Served::Stopped && address.is_some();
    out.push_str(&format!(
        "  {ns}/{name}  {}  {} {}  traffic {{{}}}",
        if stopped {
            "Stopped"
        } else {
            st["phase"].as_str().unwrap_or("?")
        },
        if stopped { "last served" } else { "serving" },
        st["servingVersion"].as_str().unwrap_or("-"),
        traffic.join(", ")
    ));
    match address {
        Some(addr) if stopped => out.push_str(&format!(
            "  (at http://{addr} until `slipway run` ended; run it again to serve)"
        )),
        Some(addr) if served == Served::Unattended => out.push_str(&format!(
            "  at http://{addr} (its router outlived `slipway run`: it serves, nobody reconciles it until the next run adopts it)"
        )),
        Some(addr) => out.push_str(&format!("  at http://{addr}")),
        None => {}
    }
    if let Some(endpoint) = st["endpoint"]["name"].as_str() {
        out.push_str(&format!(
            "  sagemaker endpoint {endpoint} ({}, config {})",
            st["endpoint"]["status"].as_str().unwrap_or("unknown"),
            st["endpoint"]["config"].as_str().unwrap_or("-")
        ));
    }
    let shadows: Vec<String> = st["shadows"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            format!(
                "{} ({}% mirrored)",
                s["version"].as_str().unwrap_or("?"),
                s["mirror"]
            )
        })
        .collect();
    if !shadows.is_empty() {
        out.push_str(&format!("  shadows: {}", shadows.join(", ")));
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
    for d in st["drift"].as_array().into_iter().flatten() {
        out.push_str(&format!("    out of sync: {}\n", d.as_str().unwrap_or("?")));
    }
    // The rollback written back to the source, while the source still asks for that version.
    let p = &st["proposal"];
    if let (Some(v), true) = (
        p["version"].as_str(),
        rejected.contains(&p["version"].as_str().unwrap_or_default()),
    ) {
        let what = match (
            p["pullRequest"].as_str(),
            p["branch"].as_str(),
            p["error"].as_str(),
        ) {
            (Some(pr), _, _) => format!("pull request {pr}"),
            (None, Some(b), _) => format!("branch {b} (no pull request opened)"),
            (None, None, Some(e)) => format!("not written back: {e}"),
            _ => "pending".to_string(),
        };
        out.push_str(&format!(
            "    rollback of {v} written back to the source: {what}\n"
        ));
    }
    // A rollout under way: what holds it, and each metric of its step.
    if let Some(target) = st["targetVersion"].as_str() {
        for c in st["conditions"].as_array().into_iter().flatten() {
            if c["type"] == "Ready" {
                out.push_str(&format!(
                    "    rolling out {target}: {}\n",
                    c["message"].as_str().unwrap_or("?")
                ));
            }
        }
        if st["analysis"]["version"].as_str() == Some(target) {
            for m in st["analysis"]["metrics"].as_array().into_iter().flatten() {
                let last = m["measurements"].as_array().and_then(|l| l.last());
                out.push_str(&format!(
                    "    metric {}: {} success(es), {} failure(s), {} inconclusive; last: {} {}{}\n",
                    m["name"].as_str().unwrap_or("?"),
                    m["successes"],
                    m["failures"],
                    m["inconclusives"],
                    last.and_then(|l| l["value"].as_str()).unwrap_or("no value"),
                    last.and_then(|l| l["verdict"].as_str()).unwrap_or("-"),
                    last.and_then(|l| l["message"].as_str())
                        .map(|w| format!(" ({w})"))
                        .unwrap_or_default(),
                ));
            }
        }
    }
    for c in st["conditions"].as_array().into_iter().flatten() {
        if c["type"] == "Stalled" && c["status"] == "True" {
            out.push_str(&format!(
                "    stalled: {}\n",
                c["message"].as_str().unwrap_or("?")
            ));
        }
    }
    out
}
