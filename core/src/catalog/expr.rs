//! CEL support: compile-time identifier checks and the "values each rule read".

use std::collections::{BTreeMap, HashSet};

use cel::common::ast::{EntryExpr, Expr, LiteralValue, operators};
use cel::{Context, IdedExpr, Program, Value};

/// Variables a rule may read.
pub const VARIABLES: [&str; 6] = ["change", "candidate", "current", "model", "request", "now"];

/// Functions and macros of the CEL standard library that Slipway's evaluator provides.
const FUNCTIONS: [&str; 30] = [
    // Slipway's own (see `policy` and `signature`): how long the candidate served in an alias,
    // and whether a signature accepts what another does.
    "servedIn",
    "compatibleWith",
    "size",
    "contains",
    "startsWith",
    "endsWith",
    "matches",
    "string",
    "int",
    "uint",
    "double",
    "bool",
    "bytes",
    "timestamp",
    "duration",
    "type",
    "max",
    "min",
    "has",
    "all",
    "exists",
    "exists_one",
    "map",
    "filter",
    "getFullYear",
    "getMonth",
    "getDayOfMonth",
    "getDayOfWeek",
    "getHours",
    "getMinutes",
];

/// A member chain a rule reads. Inside a comprehension (`all`, `exists`…) a chain may use the
/// innermost iteration variable; it is then read once per element of the iterated range.
#[derive(Clone)]
struct Read {
    expr: IdedExpr,
    scope: Option<(IdedExpr, String)>,
}

/// A compiled rule expression and the member chains it reads.
pub struct CompiledExpr {
    /// The program.
    pub program: Program,
    /// Outermost chains (`candidate.metrics.f1`, `current`…).
    reads: Vec<Read>,
    /// The variables some chain reads below (a bare read of one of them adds nothing).
    roots: HashSet<String>,
}

impl std::fmt::Debug for CompiledExpr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledExpr")
            .field("reads", &self.reads.len())
            .finish()
    }
}

/// Compiles a rule's `source`, rejecting unknown variables and functions.
pub fn compile(source: &str) -> Result<CompiledExpr, String> {
    compile_over(source, &VARIABLES)
}

/// Compiles `source`, which may read `variables`, rejecting unknown variables and functions.
pub fn compile_over(source: &str, variables: &[&str]) -> Result<CompiledExpr, String> {
    let program = Program::compile(source).map_err(|e| syntax_message(&e.to_string()))?;
    let mut problems = Vec::new();
    let mut reads = Vec::new();
    let mut w = Walker {
        variables,
        bound: Vec::new(),
        scopes: Vec::new(),
        problems: &mut problems,
        reads: &mut reads,
    };
    w.walk(program.expression(), false);
    if !problems.is_empty() {
        problems.dedup();
        return Err(problems.join("; "));
    }
    // A bare variable that is an object adds nothing when a chain below it is read too.
    let roots = reads
        .iter()
        .filter(|r| !matches!(r.expr.expr, Expr::Ident(_)))
        .filter_map(|r| chain_root(&r.expr, &[]).map(str::to_string))
        .collect();
    Ok(CompiledExpr {
        program,
        reads,
        roots,
    })
}

/// Condenses the parser's report (`ERROR: <input>:1:20: Syntax error: … | source | ^`) to its first problem.
fn syntax_message(report: &str) -> String {
    let first = report
        .lines()
        .find(|l| l.contains("ERROR:"))
        .unwrap_or(report);
    let detail = first
        .split_once("ERROR: <input>:")
        .map(|(_, rest)| rest)
        .unwrap_or(first);
    match detail.split_once(": ") {
        Some((pos, what)) => match pos.split_once(':') {
            Some((line, col)) => format!(
                "CEL syntax error at line {line}, character {col} of the expression: {}",
                what.trim()
            ),
            None => format!("CEL syntax error: {}", what.trim()),
        },
        None => format!("CEL syntax error: {}", detail.trim()),
    }
}

/// Whether `e` is a member chain (`a.b["c"].d`) rooted at a free variable.
fn chain_root<'a>(e: &'a IdedExpr, bound: &[String]) -> Option<&'a str> {
    match &e.expr {
        Expr::Ident(name) if !bound.iter().any(|b| b == name) => Some(name),
        Expr::Select(s) if !s.test => chain_root(&s.operand, bound),
        Expr::Call(c)
            if c.func_name == operators::INDEX && c.target.is_none() && c.args.len() == 2 =>
        {
            chain_root(&c.args[0], bound)
        }
        _ => None,
    }
}

struct Walker<'a> {
    /// Free variables the expression may read.
    variables: &'a [&'a str],
    /// Variables bound by enclosing comprehensions.
    bound: Vec<String>,
    /// Enclosing comprehensions: (range, iteration variable), innermost last.
    scopes: Vec<(IdedExpr, String)>,
    problems: &'a mut Vec<String>,
    reads: &'a mut Vec<Read>,
}

impl Walker<'_> {
    fn record(&mut self, e: &IdedExpr) {
        if !mentions_bound(e, &self.bound) {
            self.reads.push(Read {
                expr: e.clone(),
                scope: None,
            });
            return;
        }
        // Only chains over the innermost iteration variable, whose range reads nothing bound.
        if let Some((range, var)) = self.scopes.last() {
            let others: Vec<String> = self.bound.iter().filter(|b| *b != var).cloned().collect();
            if !mentions_bound(e, &others) && !mentions_bound(range, &others) {
                self.reads.push(Read {
                    expr: e.clone(),
                    scope: Some((range.clone(), var.clone())),
                });
            }
        }
    }

    fn walk(&mut self, e: &IdedExpr, in_chain: bool) {
        let is_chain = chain_root(e, &self.bound).is_some();
        if is_chain && !in_chain {
            self.record(e);
        }
        match &e.expr {
            Expr::Ident(name) => {
                if !self.bound.iter().any(|b| b == name) && !self.variables.contains(&name.as_str())
                {
                    let known: Vec<String> =
                        self.variables.iter().map(|v| format!("`{v}`")).collect();
                    self.problems.push(format!(
                        "unknown variable `{name}`; it can read {}",
                        known.join(", ")
                    ));
                }
            }
            Expr::Select(s) => self.walk(&s.operand, is_chain),
            Expr::Call(c) => {
                let name = c.func_name.as_str();
                let operator =
                    name.starts_with('_') || name.starts_with('@') || name.ends_with('_');
                if !operator && !FUNCTIONS.contains(&name) {
                    self.problems.push(format!("unknown function `{name}`"));
                }
                let index = name == operators::INDEX;
                if let Some(t) = &c.target {
                    self.walk(t, false);
                }
                for (i, a) in c.args.iter().enumerate() {
                    self.walk(a, index && i == 0 && is_chain);
                }
            }
            Expr::Comprehension(c) => {
                self.walk(&c.iter_range, false);
                self.walk(&c.accu_init, false);
                let mut vars = vec![c.iter_var.clone(), c.accu_var.clone()];
                vars.extend(c.iter_var2.clone());
                self.bound.extend(vars.iter().cloned());
                self.scopes.push((c.iter_range.clone(), c.iter_var.clone()));
                for sub in [&c.loop_cond, &c.loop_step, &c.result] {
                    self.walk(sub, false);
                }
                self.scopes.pop();
                self.bound.truncate(self.bound.len() - vars.len());
            }
            Expr::List(l) => l.elements.iter().for_each(|x| self.walk(x, false)),
            Expr::Map(m) => {
                for entry in &m.entries {
                    if let EntryExpr::MapEntry(me) = &entry.expr {
                        self.walk(&me.key, false);
                        self.walk(&me.value, false);
                    }
                }
            }
            Expr::Struct(s) => self.problems.push(format!(
                "struct literals (`{}{{…}}`) are not supported",
                s.type_name
            )),
            Expr::Literal(_) | Expr::Unspecified => {}
        }
    }
}

fn mentions_bound(e: &IdedExpr, bound: &[String]) -> bool {
    match &e.expr {
        Expr::Ident(n) => bound.iter().any(|b| b == n),
        Expr::Select(s) => mentions_bound(&s.operand, bound),
        Expr::Call(c) => {
            c.target.iter().any(|t| mentions_bound(t, bound))
                || c.args.iter().any(|a| mentions_bound(a, bound))
        }
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
pub fn read_values(
    compiled: &CompiledExpr,
    ctx: &Context,
) -> (BTreeMap<String, serde_json::Value>, Vec<String>) {
    let mut values = BTreeMap::new();
    let mut missing = Vec::new();
    let mut seen = HashSet::new();
    let roots = &compiled.roots;
    for read in &compiled.reads {
        match &read.scope {
            None => read_one(&read.expr, ctx, roots, &mut seen, &mut values, &mut missing),
            Some((range, var)) => {
                let elements = match ctx.resolve(range) {
                    Ok(Value::List(items)) => items.iter().cloned().collect::<Vec<_>>(),
                    Ok(Value::Map(m)) => m.map.keys().map(|k| Value::from(k.clone())).collect(),
                    _ => Vec::new(),
                };
                for element in elements {
                    let mut inner = ctx.new_inner_scope();
                    inner.add_variable_from_value(var.clone(), element);
                    read_one(
                        &read.expr,
                        &inner,
                        roots,
                        &mut seen,
                        &mut values,
                        &mut missing,
                    );
                }
            }
        }
    }
    (values, missing)
}

fn read_one(
    read: &IdedExpr,
    ctx: &Context,
    roots: &HashSet<String>,
    seen: &mut HashSet<String>,
    values: &mut BTreeMap<String, serde_json::Value>,
    missing: &mut Vec<String>,
) {
    let name = label(read, ctx);
    if !seen.insert(name.clone()) {
        return;
    }
    match ctx.resolve(read) {
        Ok(v) => {
            if matches!(read.expr, Expr::Ident(_))
                && roots.contains(&name)
                && matches!(v, Value::Map(_) | Value::List(_))
            {
                return;
            }
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
            missing.push(match child {
                Some(c) => format!(
                    "`{}` is missing (`{}` has no such field)",
                    label(c, ctx),
                    label(node, ctx)
                ),
                None => format!("`{name}` could not be read"),
            });
        }
    }
}

/// JSON for a value read by a rule; a large map keeps its short scalar fields, a large list its length.
fn summarize(v: &Value) -> serde_json::Value {
    const LIMIT: usize = 240;
    let json = v.json().unwrap_or(serde_json::Value::Null);
    let short = match &json {
        serde_json::Value::Null | serde_json::Value::Bool(_) | serde_json::Value::Number(_) => true,
        // Quotes and escapes: a string of up to a third of the limit is surely short.
        serde_json::Value::String(s) => s.len() <= LIMIT / 3,
        _ => false,
    };
    if short || json.to_string().len() <= LIMIT {
        return json;
    }
    match json {
        serde_json::Value::Object(m) => {
            let total = m.len();
            let mut kept = serde_json::Map::new();
            let mut size = 0;
            for (k, v) in m {
                let short = matches!(&v, serde_json::Value::String(s) if s.len() <= 64)
                    || v.is_number()
                    || v.is_boolean();
                if short && size + k.len() + v.to_string().len() < LIMIT {
                    size += k.len() + v.to_string().len();
                    kept.insert(k, v);
                }
            }
            let more = total - kept.len();
            kept.insert(
                "…".into(),
                serde_json::Value::String(format!("{more} more fields")),
            );
            serde_json::Value::Object(kept)
        }
        serde_json::Value::Array(a) => serde_json::Value::String(format!("[list of {}]", a.len())),
        other => other,
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
        let err = compile("candidate.metrics.f1 >").unwrap_err();
        assert!(
            err.starts_with("CEL syntax error at line 1, character"),
            "{err}"
        );
        assert!(!err.contains('\n'));
    }

    #[test]
    fn outermost_chains_are_the_reads() {
        let c = compile("candidate.evaluations[model.primaryMetric.suite].verdict == 'Passed' && current == null").unwrap();
        let mut ctx = Context::default();
        ctx.add_variable_from_value(
            "model",
            cel::to_value(serde_json::json!({"primaryMetric": {"suite": "s"}})).unwrap(),
        );
        ctx.add_variable_from_value(
            "candidate",
            cel::to_value(serde_json::json!({"evaluations": {"s": {"verdict": "Passed"}}}))
                .unwrap(),
        );
        ctx.add_variable_from_value("current", Value::Null);
        let (values, missing) = read_values(&c, &ctx);
        assert!(missing.is_empty());
        assert_eq!(values["candidate.evaluations[\"s\"].verdict"], "Passed");
        assert_eq!(values["model.primaryMetric.suite"], "s");
        assert_eq!(values["current"], serde_json::Value::Null);
    }

    #[test]
    fn chains_inside_comprehensions_are_read_per_element() {
        let c = compile("model.evaluations.all(s, candidate.evaluations[s].verdict == 'Passed')")
            .unwrap();
        let mut ctx = Context::default();
        ctx.add_variable_from_value(
            "model",
            cel::to_value(serde_json::json!({"evaluations": ["a", "b"]})).unwrap(),
        );
        ctx.add_variable_from_value(
            "candidate",
            cel::to_value(serde_json::json!({"evaluations": {"a": {"verdict": "Passed"}}}))
                .unwrap(),
        );
        let (values, missing) = read_values(&c, &ctx);
        assert_eq!(values["candidate.evaluations[\"a\"].verdict"], "Passed");
        assert_eq!(
            missing,
            vec![
                "`candidate.evaluations[\"b\"]` is missing (`candidate.evaluations` has no such field)"
            ]
        );
    }

    #[test]
    fn missing_fields_name_the_absent_key() {
        let c = compile("candidate.evaluations['pitch'].verdict == 'Passed'").unwrap();
        let mut ctx = Context::default();
        ctx.add_variable_from_value(
            "candidate",
            cel::to_value(serde_json::json!({"evaluations": {}})).unwrap(),
        );
        let (_, missing) = read_values(&c, &ctx);
        assert_eq!(
            missing,
            vec![
                "`candidate.evaluations[\"pitch\"]` is missing (`candidate.evaluations` has no such field)"
            ]
        );
    }
}
