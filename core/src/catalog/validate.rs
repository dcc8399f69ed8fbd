//! Invariants of single objects and references between objects.

use slipway_crd::Kind;
use slipway_crd::common::{BaselineRef, RunnerSpec, SecretRef};
use slipway_crd::model_deployment::StrategyType;

use super::{Catalog, Object, Resource};
use crate::diagnostics::{Category, Diagnostic, FieldPath};
use crate::duration;

struct Checker<'a> {
    obj: &'a Object,
    out: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn err(&mut self, field: &str, category: Category, msg: impl Into<String>) {
        self.out
            .push(self.obj.diagnostic(&FieldPath::parse(field), category, msg));
    }

    fn invalid(&mut self, field: &str, msg: impl Into<String>) {
        self.err(field, Category::Invalid, msg);
    }

    fn one_of(&mut self, field: &str, set: &[&str], allowed: &[&str]) {
        if set.len() != 1 {
            let how = if set.is_empty() {
                "none is set".to_string()
            } else {
                format!("{} are set", set.join(" and "))
            };
            self.invalid(
                field,
                format!("set exactly one of {}; {how}", allowed.join(", ")),
            );
        }
    }

    fn duration(&mut self, field: &str, value: Option<&String>) {
        if let Some(v) = value
            && let Err(e) = duration::parse(v)
        {
            self.invalid(field, e);
        }
    }

    fn runner(&mut self, field: &str, r: &RunnerSpec) {
        self.one_of(
            field,
            &r.set_variants(),
            &["local", "kubernetes", "webhook"],
        );
        if let Some(l) = &r.local
            && l.command.is_empty()
        {
            self.invalid(
                &format!("{field}.local.command"),
                "command is empty; give the program and its arguments",
            );
        }
        if let Some(w) = &r.webhook {
            for (name, s) in &w.headers {
                self.secret(&format!("{field}.webhook.headers.{name}"), s);
            }
        }
    }

    fn baseline(&mut self, field: &str, b: &BaselineRef) {
        let mut set = Vec::new();
        if b.alias.is_some() {
            set.push("alias");
        }
        if b.version.is_some() {
            set.push("version");
        }
        self.one_of(field, &set, &["alias", "version"]);
    }

    fn secret(&mut self, field: &str, s: &SecretRef) {
        let mut set = Vec::new();
        if s.env.is_some() {
            set.push("env");
        }
        if s.file.is_some() {
            set.push("file");
        }
        if s.secret_key_ref.is_some() {
            set.push("secretKeyRef");
        }
        self.one_of(field, &set, &["env", "file", "secretKeyRef"]);
    }
}

fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric()
}

/// Checks one object on its own.
pub fn object(obj: &Object) -> Vec<Diagnostic> {
    let mut c = Checker {
        obj,
        out: Vec::new(),
    };
    if !is_dns_subdomain(&obj.key.name) {
        c.invalid(
            "metadata.name",
            format!("`{}` is not a valid name; use lower-case letters, digits, `-` and `.`, starting and ending with a letter or digit", obj.key.name),
        );
    }
    match &obj.resource {
        Resource::RegisteredModel(m) => {
            let mut names = std::collections::HashSet::new();
            for (i, s) in m.spec.evaluations.iter().enumerate() {
                let f = format!("spec.evaluations[{i}]");
                if !names.insert(s.name.as_str()) {
                    c.err(
                        &format!("{f}.name"),
                        Category::Duplicate,
                        format!("suite `{}` is defined twice", s.name),
                    );
                }
                c.runner(&format!("{f}.runner"), &s.runner);
                if let Some(b) = &s.baseline {
                    c.baseline(&format!("{f}.baseline"), b);
                }
                c.duration(&format!("{f}.timeout"), s.timeout.as_ref());
            }
            if let Some(p) = &m.spec.primary_metric {
                if !m.spec.evaluations.iter().any(|s| s.name == p.suite) {
                    let known: Vec<&str> =
                        m.spec.evaluations.iter().map(|s| s.name.as_str()).collect();
                    c.err(
                        "spec.primaryMetric.suite",
                        Category::BrokenReference,
                        format!(
                            "no evaluation suite `{}` in this model (suites: {})",
                            p.suite,
                            none_if_empty(&known)
                        ),
                    );
                }
                if p.max_regression < 0.0 {
                    c.invalid(
                        "spec.primaryMetric.maxRegression",
                        "must be zero or positive",
                    );
                }
            }
            for (i, n) in m.spec.notifications.iter().enumerate() {
                let f = format!("spec.notifications[{i}]");
                let mut set = Vec::new();
                if n.slack.is_some() {
                    set.push("slack");
                }
                if n.webhook.is_some() {
                    set.push("webhook");
                }
                c.one_of(&f, &set, &["slack", "webhook"]);
                if n.events.is_empty() {
                    c.invalid(
                        &format!("{f}.events"),
                        "list at least one event, e.g. [AliasMoved, RolledBack]",
                    );
                }
                if let Some(s) = &n.slack {
                    c.secret(&format!("{f}.slack.webhookUrl"), &s.webhook_url);
                }
                if let Some(w) = &n.webhook {
                    for (name, s) in &w.headers {
                        c.secret(&format!("{f}.webhook.headers.{name}"), s);
                    }
                    if let Some(t) = &w.body_template
                        && let Err(e) = minijinja::Environment::new().template_from_str(t)
                    {
                        c.invalid(
                            &format!("{f}.webhook.bodyTemplate"),
                            format!("template does not parse: {e}"),
                        );
                    }
                }
            }
        }
        Resource::ModelVersion(v) => {
            if v.spec.version.trim().is_empty() {
                c.invalid("spec.version", "version label is empty");
            }
            if v.spec.artifact.uri.trim().is_empty() {
                c.invalid("spec.artifact.uri", "artifact URI is empty");
            }
            let d = &v.spec.artifact.digest;
            let ok = d.split_once(':').is_some_and(|(algo, hex)| {
                !algo.is_empty() && !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit())
            });
            if !ok {
                c.invalid(
                    "spec.artifact.digest",
                    format!("`{d}` is not a digest; write `sha256:<hex>`"),
                );
            }
        }
        Resource::ModelAlias(_) | Resource::Group(_) => {}
        Resource::Evaluation(e) => {
            c.runner("spec.runner", &e.spec.runner);
            if let Some(b) = &e.spec.baseline {
                c.baseline("spec.baseline", b);
            }
            c.duration("spec.timeout", e.spec.timeout.as_ref());
        }
        Resource::ModelDeployment(d) => {
            let mut set = Vec::new();
            if d.spec.alias.is_some() {
                set.push("alias");
            }
            if d.spec.version.is_some() {
                set.push("version");
            }
            c.one_of("spec", &set, &["alias", "version"]);
            c.one_of(
                "spec.target",
                &d.spec.target.set_variants(),
                &["local", "kubernetes", "sagemaker"],
            );
            let s = &d.spec.strategy;
            if let Some(sm) = &d.spec.target.sagemaker {
                let name = &sm.endpoint_name;
                let valid = !name.is_empty()
                    && name.len() <= 63
                    && name
                        .chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || ch == '-')
                    && !name.starts_with('-')
                    && !name.ends_with('-');
                if !valid {
                    c.invalid(
                        "spec.target.sagemaker.endpointName",
                        format!("`{name}` is not a SageMaker endpoint name: up to 63 letters, digits and hyphens, not starting or ending with a hyphen"),
                    );
                }
                if sm.mode == slipway_crd::model_deployment::SageMakerMode::Guardrails
                    && s.type_ == StrategyType::Canary
                    && s.steps.iter().filter(|st| st.weight < 100).count() > 1
                {
                    c.invalid(
                        "spec.strategy.steps",
                        "a sagemaker target in mode Guardrails shifts one canary and then all traffic (SageMaker's deployment guardrails): keep one step below 100%, or use mode: Variants for several steps",
                    );
                }
            }
            match s.type_ {
                StrategyType::AllAtOnce => {
                    if !s.steps.is_empty() {
                        c.invalid(
                            "spec.strategy.steps",
                            "AllAtOnce takes no steps; use type: Canary for steps",
                        );
                    }
                }
                StrategyType::Canary => {
                    if s.steps.is_empty() {
                        c.invalid(
                            "spec.strategy.steps",
                            "Canary needs at least one step, e.g. [{weight: 10, pause: 5m}]",
                        );
                    }
                    let mut last = 0;
                    for (i, step) in s.steps.iter().enumerate() {
                        if step.weight == 0 || step.weight > 100 || step.weight <= last {
                            c.invalid(
                                &format!("spec.strategy.steps[{i}].weight"),
                                format!("weight {} must be between 1 and 100 and larger than the step before ({last})", step.weight),
                            );
                        }
                        last = last.max(step.weight);
                        c.duration(
                            &format!("spec.strategy.steps[{i}].pause"),
                            step.pause.as_ref(),
                        );
                    }
                }
                StrategyType::Linear => match s.step_weight {
                    Some(w) if (1..=100).contains(&w) => {}
                    _ => c.invalid(
                        "spec.strategy.stepWeight",
                        "Linear needs stepWeight between 1 and 100",
                    ),
                },
            }
            if s.type_ == StrategyType::Linear && s.interval.is_none() {
                c.invalid(
                    "spec.strategy.interval",
                    "Linear needs an interval, e.g. `2m`",
                );
            }
            c.duration("spec.strategy.interval", s.interval.as_ref());
            c.duration(
                "spec.strategy.progressDeadline",
                s.progress_deadline.as_ref(),
            );
            if let Some(a) = &s.analysis
                && a.max_error_ratio.is_some_and(|r| !(0.0..=1.0).contains(&r))
            {
                c.invalid(
                    "spec.strategy.analysis.maxErrorRatio",
                    "a ratio between 0 and 1",
                );
            }
        }
        Resource::PromotionPolicy(p) => {
            let mut names = std::collections::HashSet::new();
            for (i, r) in p.spec.rules.iter().enumerate() {
                if !names.insert(r.name.as_str()) {
                    c.err(
                        &format!("spec.rules[{i}].name"),
                        Category::Duplicate,
                        format!("rule `{}` is defined twice", r.name),
                    );
                }
            }
            for (i, k) in p.spec.match_.kinds.iter().enumerate() {
                if !Kind::ALL.iter().any(|x| x.as_str() == k) {
                    c.err(
                        &format!("spec.match.kinds[{i}]"),
                        Category::UnknownKind,
                        format!("unknown kind `{k}`"),
                    );
                }
            }
            for (i, f) in p.spec.match_.fields.iter().enumerate() {
                if !(f == "spec" || f.starts_with("spec.")) {
                    c.invalid(
                        &format!("spec.match.fields[{i}]"),
                        format!("`{f}` is not a field of the spec; write a path such as `spec.evaluations`"),
                    );
                }
            }
            for (i, a) in p.spec.approvals.iter().enumerate() {
                c.duration(
                    &format!("spec.approvals[{i}].expiresAfter"),
                    a.expires_after.as_ref(),
                );
                if a.required == 0 {
                    c.invalid(
                        &format!("spec.approvals[{i}].required"),
                        "must be at least 1 (remove the requirement instead)",
                    );
                }
                if a.from.is_empty() {
                    c.invalid(
                        &format!("spec.approvals[{i}].from"),
                        "list who may approve: `group:NAME` or `user:LOGIN`",
                    );
                }
                for (j, f) in a.from.iter().enumerate() {
                    if !(f.starts_with("group:") || f.starts_with("user:")) || f.ends_with(':') {
                        c.invalid(
                            &format!("spec.approvals[{i}].from[{j}]"),
                            format!("`{f}` must be `group:NAME` or `user:LOGIN`"),
                        );
                    }
                }
            }
        }
        Resource::Approval(a) => {
            if Kind::parse(&a.spec.target.kind).is_none() {
                c.err(
                    "spec.target.kind",
                    Category::UnknownKind,
                    format!("unknown kind `{}`", a.spec.target.kind),
                );
            }
        }
    }
    c.out
}

fn none_if_empty(list: &[&str]) -> String {
    if list.is_empty() {
        "none".to_string()
    } else {
        list.join(", ")
    }
}

/// Checks that what an object refers to exists in the catalog.
pub fn references(obj: &Object, cat: &Catalog) -> Vec<Diagnostic> {
    let mut c = Checker {
        obj,
        out: Vec::new(),
    };
    let ns = obj.key.namespace.as_str();
    let model_exists = |c: &mut Checker, model: &str| {
        if cat.model(ns, model).is_none() {
            c.err(
                "spec.model",
                Category::BrokenReference,
                format!("RegisteredModel `{model}` does not exist in namespace `{ns}`; add it or fix the name"),
            );
            false
        } else {
            true
        }
    };
    let version_exists = |c: &mut Checker, field: &str, model: &str, version: &str| {
        if cat.version(ns, model, version).is_none() {
            let known = cat.version_labels(ns, model);
            c.err(
                field,
                Category::BrokenReference,
                format!(
                    "model `{model}` has no version `{version}` (versions: {}); add a ModelVersion or use an existing version",
                    none_if_empty(&known)
                ),
            );
        }
    };
    let alias_exists = |c: &mut Checker, field: &str, model: &str, alias: &str| {
        if cat.alias(ns, model, alias).is_none() {
            let known = cat.alias_names(ns, model);
            c.err(
                field,
                Category::BrokenReference,
                format!("model `{model}` has no alias `{alias}` (aliases: {}); add a ModelAlias or fix the name", none_if_empty(&known)),
            );
        }
    };
    match &obj.resource {
        Resource::ModelVersion(v) => {
            model_exists(&mut c, &v.spec.model);
        }
        Resource::ModelAlias(a) => {
            if model_exists(&mut c, &a.spec.model) {
                version_exists(&mut c, "spec.version", &a.spec.model, &a.spec.version);
            }
        }
        Resource::Evaluation(e) => {
            if model_exists(&mut c, &e.spec.model) {
                version_exists(&mut c, "spec.version", &e.spec.model, &e.spec.version);
                // An evaluation of a model's suite runs it as the model declares it, or it would
                // pass for the model's judgement without being it.
                if let Some(m) = cat.model(ns, &e.spec.model)
                    && let Some(suite) = m.spec.evaluations.iter().find(|s| s.name == e.spec.suite)
                {
                    let advice = "an Evaluation of a model's suite runs it exactly as the model declares it; leave the Evaluation to Slipway, or name a suite of your own in spec.suite for an experiment (it runs, but never judges a promotion)";
                    if let Err(why) = crate::evaluation::judging(m, &e.spec) {
                        c.invalid("spec", format!("{why}: {advice}"));
                    }
                    // Its baseline is the suite's: the alias as written, or the version it
                    // resolves to now (none when that is the candidate itself).
                    let resolved = |alias: &str| {
                        cat.alias(ns, &e.spec.model, alias).map(|a| {
                            a.status
                                .as_ref()
                                .and_then(|s| s.resolved_version.clone())
                                .unwrap_or_else(|| a.spec.version.clone())
                        })
                    };
                    let pinned = |v: Option<String>| {
                        v.filter(|v| *v != e.spec.version).map(|v| BaselineRef {
                            alias: None,
                            version: Some(v),
                        })
                    };
                    let allowed: Vec<Option<BaselineRef>> = match &suite.baseline {
                        None => vec![None],
                        Some(b) => match (&b.version, &b.alias) {
                            (Some(v), _) => vec![Some(b.clone()), pinned(Some(v.clone()))],
                            (None, Some(a)) => vec![Some(b.clone()), pinned(resolved(a))],
                            (None, None) => vec![Some(b.clone())],
                        },
                    };
                    if !allowed.contains(&e.spec.baseline) {
                        c.invalid(
                            "spec.baseline",
                            format!(
                                "suite `{}` of model {} compares against {}, not this baseline: {advice}",
                                suite.name,
                                e.spec.model,
                                match &suite.baseline {
                                    Some(BaselineRef { alias: Some(a), .. }) => format!("alias {a} (what it resolves to now)"),
                                    Some(BaselineRef { version: Some(v), .. }) => format!("version {v}"),
                                    _ => "no baseline".to_string(),
                                }
                            ),
                        );
                    }
                }
                if let Some(v) = e.spec.baseline.as_ref().and_then(|b| b.version.as_ref()) {
                    version_exists(&mut c, "spec.baseline.version", &e.spec.model, v);
                }
            }
        }
        Resource::ModelDeployment(d) => {
            if model_exists(&mut c, &d.spec.model) {
                if let Some(a) = &d.spec.alias {
                    alias_exists(&mut c, "spec.alias", &d.spec.model, a);
                }
                if let Some(v) = &d.spec.version {
                    version_exists(&mut c, "spec.version", &d.spec.model, v);
                }
            }
        }
        Resource::RegisteredModel(m) => {
            let name = obj.key.name.as_str();
            for (i, s) in m.spec.evaluations.iter().enumerate() {
                if let Some(v) = s.baseline.as_ref().and_then(|b| b.version.as_ref()) {
                    version_exists(
                        &mut c,
                        &format!("spec.evaluations[{i}].baseline.version"),
                        name,
                        v,
                    );
                }
            }
        }
        Resource::PromotionPolicy(p) => {
            for (i, a) in p.spec.approvals.iter().enumerate() {
                for (j, f) in a.from.iter().enumerate() {
                    if let Some(g) = f.strip_prefix("group:")
                        && !g.is_empty()
                        && cat.group(ns, g).is_none()
                    {
                        c.err(
                            &format!("spec.approvals[{i}].from[{j}]"),
                            Category::BrokenReference,
                            format!("Group `{g}` does not exist in namespace `{ns}`; add a Group with its members"),
                        );
                    }
                }
            }
        }
        Resource::Approval(_) | Resource::Group(_) => {}
    }
    c.out
}
