//! CEL support: compile-time identifier checks and the "values each rule read".

use std::collections::{BTreeMap, HashSet};

use cel::common::ast::{EntryExpr, Expr, LiteralValue, operators};
use cel::{Context, IdedExpr, Program, Value};

/// Variables a rule may read.
pub const VARIABLES: [&str; 6] = ["change", "candidate", "current", "model", "request", "now"];

/// Functions and macros of the CEL standard library that Slipway's evaluator provides.
const FUNCTIONS: [&str; 28] = [
    "size", "contains", "startsWith", "endsWith", "matches", "string", "int", "uint", "double", "bool", "bytes",
    "timestamp", "duration", "type", "max", "min", "has", "all", "exists", "exists_one", "map", "filter",
    "getFullYear", "getMonth", "getDayOfMonth", "getDayOfWeek", "getHours", "getMinutes",
];

/// A compiled rule expression and the member chains it reads.
pub struct CompiledExpr {
    /// The program.
    pub program: Program,
    /// Top-level reads (`candidate.metrics.f1`, `current`…), outermost chains only.
    reads: Vec<IdedExpr>,
}

impl std::fmt::Debug for CompiledExpr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledExpr").field("reads", &self.reads.len()).finish()
    }
}

/// Compiles `source`, rejecting unknown variables and functions.
pub fn compile(source: &str) -> Result<CompiledExpr, String> {
    let program = Program::compile(source).map_err(|e| format!("CEL syntax error: {}", one_line(&e.to_string())))?;
    let mut problems = Vec::new();
    let mut reads = Vec::new();
    walk(program.expression(), &mut Vec::new(), &mut problems, &mut reads, false);
    if !problems.is_empty() {
        problems.dedup();
        return Err(problems.join("; "));
    }
    Ok(CompiledExpr { program, reads })
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether `e` is a member chain (`a.b["c"].d`) rooted at a free variable.
fn chain_root<'a>(e: &'a IdedExpr, bound: &[String]) -> Option<&'a str> {
    match &e.expr {
        Expr::Ident(name) if !bound.iter().any(|b| b == name) => Some(name),
        Expr::Select(s) if !s.test => chain_root(&s.operand, bound),
        Expr::Call(c) if c.func_name == operators::INDEX && c.target.is_none() && c.args.len() == 2 => {
            chain_root(&c.args[0], bound)
        }
        _ => None,
    }
}

fn walk(e: &IdedExpr, bound: &mut Vec<String>, problems: &mut Vec<String>, reads: &mut Vec<IdedExpr>, in_chain: bool) {
    let is_chain = chain_root(e, bound).is_some();
    if is_chain && !in_chain && !mentions_bound(e, bound) {
        reads.push(e.clone());
    }
    match &e.expr {
        Expr::Ident(name) => {
            if !bound.iter().any(|b| b == name) && !VARIABLES.contains(&name.as_str()) {
                problems.push(format!(
                    "unknown variable `{name}`; rules can read {}",
                    VARIABLES.map(|v| format!("`{v}`")).join(", ")
                ));
            }
        }
        Expr::Select(s) => walk(&s.operand, bound, problems, reads, is_chain),
        Expr::Call(c) => {
            let name = c.func_name.as_str();
            let operator = name.starts_with('_') || name.starts_with('@') || name.ends_with('_');
            if !operator && !FUNCTIONS.contains(&name) {
                problems.push(format!("unknown function `{name}`"));
            }
            let index = name == operators::INDEX;
            if let Some(t) = &c.target {
                walk(t, bound, problems, reads, false);
            }
            for (i, a) in c.args.iter().enumerate() {
                walk(a, bound, problems, reads, index && i == 0 && is_chain);
            }
        }
        Expr::Comprehension(c) => {
            walk(&c.iter_range, bound, problems, reads, false);
            walk(&c.accu_init, bound, problems, reads, false);
            bound.push(c.iter_var.clone());
            if let Some(v) = &c.iter_var2 {
                bound.push(v.clone());
            }
            bound.push(c.accu_var.clone());
            for sub in [&c.loop_cond, &c.loop_step, &c.result] {
                walk(sub, bound, problems, reads, false);
            }
            bound.truncate(bound.len() - 2 - usize::from(c.iter_var2.is_some()));
        }
        Expr::List(l) => l.elements.iter().for_each(|x| walk(x, bound, problems, reads, false)),
        Expr::Map(m) => {
            for entry in &m.entries {
                if let EntryExpr::MapEntry(me) = &entry.expr {
                    walk(&me.key, bound, problems, reads, false);
                    walk(&me.value, bound, problems, reads, false);
                }
            }
        }
        Expr::Struct(s) => problems.push(format!("struct literals (`{}{{…}}`) are not supported", s.type_name)),
        Expr::Literal(_) | Expr::Unspecified => {}
    }
}

fn mentions_bound(e: &IdedExpr, bound: &[String]) -> bool {
    match &e.expr {
        Expr::Ident(n) => bound.iter().any(|b| b == n),
        Expr::Select(s) => mentions_bound(&s.operand, bound),
        Expr::Call(c) => c.target.iter().any(|t| mentions_bound(t, bound)) || c.args.iter().any(|a| mentions_bound(a, bound)),
        _ => false,
    }
}

/// Renders a chain for people, with index keys resolved: `candidate.evaluations["pitch-frames"].verdict`.
pub fn label(e: &IdedExpr, ctx: &Context) -> String {
    match &e.expr {
        Expr::Ident(n) => n.clone(),
        Expr::Select(s) => format!("{}.{}", label(&s.operand, ctx), s.field),
        Expr::Call(c) if c.func_name == operators::INDEX && c.args.len() == 2 => {
            let key = match &c.args[1].expr {
                Expr::Literal(LiteralValue::String(s)) => format!("{:?}", s.to_string()),
                Expr::Literal(LiteralValue::Int(i)) => i.to_string(),
                _ => match ctx.resolve(&c.args[1]) {
                    Ok(Value::String(s)) => format!("{:?}", s.as_str()),
                    Ok(Value::Int(i)) => i.to_string(),
                    _ => "?".to_string(),
                },
            };
            format!("{}[{key}]", label(&c.args[0], ctx))
        }
        _ => "…".to_string(),
    }
}

/// The parent of a chain node (`a.b` for `a.b.c`), if any.
fn parent(e: &IdedExpr) -> Option<&IdedExpr> {
    match &e.expr {
        Expr::Select(s) => Some(&s.operand),
        Expr::Call(c) if c.func_name == operators::INDEX && c.args.len() == 2 => Some(&c.args[0]),
        _ => None,
    }
}

/// The values a compiled expression reads, and for each chain that could not be read, why.
pub fn read_values(compiled: &CompiledExpr, ctx: &Context) -> (BTreeMap<String, serde_json::Value>, Vec<String>) {
    let mut values = BTreeMap::new();
    let mut missing = Vec::new();
    let mut seen = HashSet::new();
    for read in &compiled.reads {
        let name = label(read, ctx);
        if !seen.insert(name.clone()) {
            continue;
        }
        match ctx.resolve(read) {
            Ok(v) => {
                values.insert(name, summarize(&v));
            }
            Err(_) => {
                // Find the deepest prefix that resolves, to say exactly what is absent.
                let mut node = read;
                let mut child = None;
                while let Some(p) = parent(node) {
                    child = Some(node);
                    node = p;
                    if ctx.resolve(node).is_ok() {
                        break;
                    }
                }
                let what = match child {
                    Some(c) => format!("`{}` is missing (`{}` has no such field)", label(c, ctx), label(node, ctx)),
                    None => format!("`{name}` could not be read"),
                };
                missing.push(what);
            }
        }
    }
    (values, missing)
}

/// JSON for a value read by a rule; large maps and lists are summarised.
fn summarize(v: &Value) -> serde_json::Value {
    let json = v.json().unwrap_or(serde_json::Value::Null);
    let size = serde_json::to_string(&json).map(|s| s.len()).unwrap_or(0);
    match &json {
        serde_json::Value::Object(m) if size > 240 => {
            serde_json::Value::String(format!("{{map with {} keys}}", m.len()))
        }
        serde_json::Value::Array(a) if size > 240 => serde_json::Value::String(format!("[list of {}]", a.len())),
        _ => json,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_variables_are_rejected_at_load() {
        let err = compile("candidat.metrics.f1 > 0.5").unwrap_err();
        assert!(err.contains("unknown variable `candidat`"), "{err}");
    }

    #[test]
    fn comprehension_variables_are_not_unknown() {
        compile("model.evaluations.all(s, candidate.evaluations[s].verdict == 'Passed')").unwrap();
    }

    #[test]
    fn unknown_functions_are_rejected_at_load() {
        let err = compile("frobnicate(candidate)").unwrap_err();
        assert!(err.contains("unknown function `frobnicate`"), "{err}");
    }

    #[test]
    fn syntax_errors_are_reported() {
        assert!(compile("candidate.metrics.f1 >").unwrap_err().starts_with("CEL syntax error"));
    }

    #[test]
    fn outermost_chains_are_the_reads() {
        let c = compile("candidate.evaluations[model.primaryMetric.suite].verdict == 'Passed' && current == null").unwrap();
        let mut ctx = Context::default();
        ctx.add_variable_from_value("model", cel::to_value(serde_json::json!({"primaryMetric": {"suite": "s"}})).unwrap());
        ctx.add_variable_from_value("candidate", cel::to_value(serde_json::json!({"evaluations": {"s": {"verdict": "Passed"}}})).unwrap());
        ctx.add_variable_from_value("current", Value::Null);
        let (values, missing) = read_values(&c, &ctx);
        assert!(missing.is_empty());
        assert_eq!(values["candidate.evaluations[\"s\"].verdict"], "Passed");
        assert_eq!(values["model.primaryMetric.suite"], "s");
        assert_eq!(values["current"], serde_json::Value::Null);
    }

    #[test]
    fn missing_fields_name_the_absent_key() {
        let c = compile("candidate.evaluations['pitch'].verdict == 'Passed'").unwrap();
        let mut ctx = Context::default();
        ctx.add_variable_from_value("candidate", cel::to_value(serde_json::json!({"evaluations": {}})).unwrap());
        let (_, missing) = read_values(&c, &ctx);
        assert_eq!(missing, vec!["`candidate.evaluations[\"pitch\"]` is missing (`candidate.evaluations` has no such field)"]);
    }
}
