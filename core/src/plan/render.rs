//! Rendering a plan: Terraform-like text, one Markdown PR comment, or the JSON contract.

use std::fmt::Write;

use minijinja::{Environment, context};
use serde_json::Value;
use slipway_crd::promotion_policy::{Effect, Operation};

use super::{Change, Plan, show};

/// Marker that identifies Slipway's PR comment, so CI updates it instead of adding another.
pub const COMMENT_MARKER: &str = "<!-- slipway:plan -->";
/// GitHub rejects comments over 65,536 characters; stay under with room for the note.
pub const COMMENT_LIMIT: usize = 65_000;

fn short(commit: &str) -> &str {
    commit.get(..7).unwrap_or(commit)
}

fn sigil(action: Operation) -> char {
    match action {
        Operation::Create => '+',
        Operation::Update => '~',
        Operation::Delete => '-',
    }
}

fn headline(c: &Change) -> String {
    let mut line = format!("{} {} {}/{}", sigil(c.action), c.kind, c.namespace, c.name);
    match (c.kind.as_str(), &c.alias, &c.from, &c.to) {
        ("ModelAlias", Some(a), Some(f), Some(t)) if c.rollback => {
            write!(line, "  {a}: {f} → {t} (rollback: {a} served {t} before)")
        }
        ("ModelAlias", Some(a), Some(f), Some(t)) => write!(line, "  {a}: {f} → {t}"),
        ("ModelAlias", Some(a), None, Some(t)) => write!(line, "  {a} → {t}"),
        ("ModelAlias", Some(a), Some(f), None) => write!(line, "  {a} (was {f})"),
        ("ModelVersion", _, _, _) => write!(
            line,
            "  {} version {}",
            c.model.as_deref().unwrap_or("?"),
            c.to.as_deref().or(c.from.as_deref()).unwrap_or("?")
        ),
        _ => Ok(()),
    }
    .ok();
    line
}

/// Terraform-like text.
pub fn text(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Slipway plan: {} ({}) → {} ({})\n",
        plan.base.name,
        short(&plan.base.commit),
        plan.head.name,
        short(&plan.head.commit)
    );
    for e in &plan.errors {
        let _ = writeln!(out, "error: {e}");
    }
    if !plan.errors.is_empty() {
        out.push('\n');
    }
    if plan.changes.is_empty() {
        out.push_str("No changes.\n");
    }
    for c in &plan.changes {
        text_change(&mut out, c);
        text_decision(&mut out, c);
    }
    let s = &plan.summary;
    let held = match s.held {
        0 => String::new(),
        n => format!(" {n} held until a soak ends, then made by the reconciler."),
    };
    let _ = writeln!(
        out,
        "\nPlan: {} to create, {} to update, {} to delete; {} denied or awaiting approval.{held}",
        s.create, s.update, s.delete, s.denied
    );
    out
}

/// Writes what one change does as text: its headline, changed fields, rollouts and warnings.
fn text_change(out: &mut String, c: &Change) {
    let _ = writeln!(out, "  {}", headline(c));
    for f in &c.fields {
        let _ = writeln!(
            out,
            "      {}: {} → {}",
            f.path,
            show(f.old.as_ref()),
            show(f.new.as_ref())
        );
    }
    for r in &c.rollouts {
        let _ = writeln!(
            out,
            "      ⇒ rolls out ModelDeployment {} ({}; {})",
            r.deployment, r.target, r.strategy
        );
        for line in &r.analysis {
            let _ = writeln!(out, "          judged by {line}");
        }
        for call in &r.aws {
            let _ = writeln!(out, "          AWS: {call}");
        }
    }
    for d in &c.signature {
        let _ = writeln!(out, "      signature: {}", d.describe());
    }
    for w in &c.warnings {
        let _ = writeln!(out, "      ! {w}");
    }
}

/// Writes what policy says about one change as text: each rule with its values, each approval
/// with who counted and who did not, and the verdict when there is any rule or approval.
fn text_decision(out: &mut String, c: &Change) {
    for r in &c.decision.rules {
        let mark = match (r.passed, r.effect) {
            (true, _) => "✓",
            (false, Effect::Deny) => "✗",
            (false, Effect::Warn) => "!",
        };
        let _ = write!(out, "      {mark} rule {}/{}", r.policy, r.name);
        if !r.passed {
            let _ = write!(out, ": {}", r.message);
        }
        out.push('\n');
        for (k, v) in &r.values {
            let _ = writeln!(out, "          {k} = {}", compact(v));
        }
    }
    for a in &c.decision.approvals {
        let mark = if a.satisfied() { "✓" } else { "✗" };
        let _ = write!(
            out,
            "      {mark} approval {}/{}: {}/{}",
            a.policy, a.name, a.have, a.required
        );
        if !a.approved_by.is_empty() {
            let _ = write!(out, " by {}", a.approved_by.join(", "));
        }
        let eligible = if a.eligible.is_empty() {
            "nobody".to_string()
        } else {
            a.eligible.join(", ")
        };
        let _ = writeln!(out, " (eligible: {eligible})");
        for i in &a.ignored {
            let _ = writeln!(out, "          ignored {}: {}", i.user, i.reason);
        }
    }
    if !c.decision.rules.is_empty() || !c.decision.approvals.is_empty() {
        let _ = writeln!(out, "      ⇒ {}", c.decision.verdict());
    }
}

fn compact(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// The JSON contract of DESIGN §4.
pub fn json(plan: &Plan) -> String {
    serde_json::to_string_pretty(plan).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

const COMMENT_TEMPLATE: &str = include_str!("comment.md.j2");

/// One Markdown PR comment, kept under [`COMMENT_LIMIT`] characters.
pub fn markdown(plan: &Plan) -> String {
    let full = render_comment(plan, plan.changes.len(), true);
    if full.len() <= COMMENT_LIMIT {
        return full;
    }
    // Drop the per-rule value tables of allowed changes first, then whole changes from the end.
    let compact = render_comment(plan, plan.changes.len(), false);
    if compact.len() <= COMMENT_LIMIT {
        return compact;
    }
    let (mut lo, mut hi) = (0, plan.changes.len());
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if render_comment(plan, mid, false).len() <= COMMENT_LIMIT {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    render_comment(plan, lo, false)
}

fn render_comment(plan: &Plan, shown: usize, details: bool) -> String {
    let mut env = Environment::new();
    if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
    {
        env.set_syntax(syntax);
    }
    env.add_filter("cell", |s: String| {
        s.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .replace('|', "\\|")
    });
    env.add_filter("short", |s: String| short(&s).to_string());
    if let Err(e) = env.add_template("comment", COMMENT_TEMPLATE) {
        return format!("{COMMENT_MARKER}\nslipway: comment template error: {e}\n");
    }
    let changes: Vec<Value> = plan
        .changes
        .iter()
        .take(shown)
        .map(|c| {
            let rules: Vec<Value> = c
                .decision
                .rules
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "policy": r.policy, "name": r.name, "passed": r.passed,
                        "warn": r.effect == Effect::Warn, "message": r.message, "expression": r.expression,
                        "values": r.values.iter().map(|(k, v)| format!("`{k}` = `{}`", compact(v))).collect::<Vec<_>>(),
                    })
                })
                .collect();
            let approvals: Vec<Value> = c
                .decision
                .approvals
                .iter()
                .map(|a| {
                    serde_json::json!({
                        "policy": a.policy, "name": a.name, "have": a.have, "required": a.required,
                        "satisfied": a.satisfied(), "approved_by": a.approved_by, "eligible": a.eligible,
                        "from": a.from, "ignored": a.ignored,
                    })
                })
                .collect();
            serde_json::json!({
                "headline": headline(c),
                "allowed": c.decision.allowed,
                "summary": c.decision.verdict(),
                "fields": c.fields.iter().map(|f| format!("`{}`: {} → {}", f.path, show(f.old.as_ref()), show(f.new.as_ref()))).collect::<Vec<_>>(),
                "rollouts": c.rollouts.iter().map(|r| serde_json::json!({"deployment": r.deployment, "target": r.target, "strategy": r.strategy, "analysis": r.analysis, "aws": r.aws})).collect::<Vec<_>>(),
                "warnings": c.warnings,
                "signature": c.signature.iter().map(|d| serde_json::json!({"text": d.describe(), "breaks": d.breaks})).collect::<Vec<_>>(),
                "rules": rules,
                "approvals": approvals,
                "details": details || !c.decision.allowed,
            })
        })
        .collect();
    let errors: Vec<String> = plan.errors.iter().map(|e| e.to_string()).collect();
    let ctx = context! {
        marker => COMMENT_MARKER,
        base => &plan.base.name, base_commit => &plan.base.commit,
        head => &plan.head.name, head_commit => &plan.head.commit,
        changes => minijinja::Value::from(minijinja::value::Serde(&changes)),
        hidden => plan.changes.len() - shown,
        compact => !details,
        errors => errors,
        summary => minijinja::Value::from(minijinja::value::Serde(&plan.summary)),
        exit_code => plan.exit_code(),
    };
    env.get_template("comment")
        .and_then(|t| t.render(ctx))
        .unwrap_or_else(|e| format!("{COMMENT_MARKER}\nslipway: comment template error: {e}\n"))
}
