//! Invariants of single objects and references between objects.

use slipway_crd::common::{BaselineRef, RunnerSpec, SecretRef};
use slipway_crd::model_deployment::{SageMakerMode, SageMakerTarget, Strategy, StrategyType};
use slipway_crd::promotion_policy::ApprovalRequirement;
use slipway_crd::registered_model::Notification;
use slipway_crd::{Approval, Evaluation, Kind, ModelDeployment, PromotionPolicy, RegisteredModel};

use super::{Object, Resource};
use crate::diagnostics::{Category, Diagnostic, FieldPath};
use crate::duration;

mod references;
mod version;
pub use references::references;

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
        Resource::RegisteredModel(m) => c.registered_model(m),
        Resource::ModelVersion(v) => c.model_version(v),
        Resource::ModelAlias(_) | Resource::Group(_) => {}
        Resource::Evaluation(e) => c.evaluation(e),
        Resource::ModelDeployment(d) => c.deployment(d),
        Resource::PromotionPolicy(p) => c.promotion_policy(p),
        Resource::Approval(a) => c.approval(a),
    }
    c.out
}

/// The checks of one object on its own, one method per kind (and per part of a big kind).
impl Checker<'_> {
    /// Checks a model's suites (unique names, runners, baselines, timeouts), its primary metric
    /// and its notifications.
    fn registered_model(&mut self, m: &RegisteredModel) {
        let mut names = std::collections::HashSet::new();
        for (i, s) in m.spec.evaluations.iter().enumerate() {
            let f = format!("spec.evaluations[{i}]");
            if !names.insert(s.name.as_str()) {
                self.err(
                    &format!("{f}.name"),
                    Category::Duplicate,
                    format!("suite `{}` is defined twice", s.name),
                );
            }
            self.runner(&format!("{f}.runner"), &s.runner);
            if let Some(b) = &s.baseline {
                self.baseline(&format!("{f}.baseline"), b);
            }
            self.duration(&format!("{f}.timeout"), s.timeout.as_ref());
        }
        if let Some(soak) = &m.spec.soak {
            match crate::duration::parse(&soak.duration) {
                Err(e) => self.invalid("spec.soak.duration", e),
                Ok(d) if d > std::time::Duration::from_secs(366 * 86_400) => self.invalid(
                    "spec.soak.duration",
                    format!("`{}` is over a year; a soak is at most 366d", soak.duration),
                ),
                Ok(_) => {}
            }
            if soak.alias.trim().is_empty() {
                self.invalid(
                    "spec.soak.alias",
                    "name the alias a version serves in first, e.g. `staging`",
                );
            }
        }
        if let Some(r) = &m.spec.report {
            let empty = |n: &Option<String>| n.as_ref().is_some_and(|n| n.trim().is_empty());
            if (r.markdown.is_none() && r.html.is_none()) || empty(&r.markdown) || empty(&r.html) {
                self.invalid("spec.report", "name a template: `markdown`, `html` or both");
            }
            if let Some(cm) = r.config_map.as_deref().filter(|c| !is_dns_subdomain(c)) {
                self.invalid(
                    "spec.report.configMap",
                    format!("`{cm}` is not a ConfigMap name; use lower-case letters, digits, `-` and `.`"),
                );
            }
        }
        if let Some(p) = &m.spec.primary_metric {
            if !m.spec.evaluations.iter().any(|s| s.name == p.suite) {
                let known: Vec<&str> = m.spec.evaluations.iter().map(|s| s.name.as_str()).collect();
                self.err(
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
                self.invalid(
                    "spec.primaryMetric.maxRegression",
                    "must be zero or positive",
                );
            }
        }
        for (i, n) in m.spec.notifications.iter().enumerate() {
            self.notification(&format!("spec.notifications[{i}]"), n);
        }
    }

    /// Checks one notification of a model at `f`: one channel, some events, its secrets, and a
    /// body template that parses.
    fn notification(&mut self, f: &str, n: &Notification) {
        let mut set = Vec::new();
        if n.slack.is_some() {
            set.push("slack");
        }
        if n.webhook.is_some() {
            set.push("webhook");
        }
        self.one_of(f, &set, &["slack", "webhook"]);
        if n.events.is_empty() {
            self.invalid(
                &format!("{f}.events"),
                "list at least one event, e.g. [AliasMoved, RolledBack]",
            );
        }
        if let Some(s) = &n.slack {
            self.secret(&format!("{f}.slack.webhookUrl"), &s.webhook_url);
        }
        if let Some(w) = &n.webhook {
            for (name, s) in &w.headers {
                self.secret(&format!("{f}.webhook.headers.{name}"), s);
            }
            if let Some(t) = &w.body_template
                && let Err(e) = minijinja::Environment::new().template_from_str(t)
            {
                self.invalid(
                    &format!("{f}.webhook.bodyTemplate"),
                    format!("template does not parse: {e}"),
                );
            }
        }
    }

    /// Checks an evaluation's runner, baseline and timeout.
    fn evaluation(&mut self, e: &Evaluation) {
        self.runner("spec.runner", &e.spec.runner);
        if let Some(b) = &e.spec.baseline {
            self.baseline("spec.baseline", b);
        }
        self.duration("spec.timeout", e.spec.timeout.as_ref());
    }

    /// Checks a deployment: what it deploys, one target, a SageMaker target's limits and the
    /// strategy.
    fn deployment(&mut self, d: &ModelDeployment) {
        let mut set = Vec::new();
        if d.spec.alias.is_some() {
            set.push("alias");
        }
        if d.spec.version.is_some() {
            set.push("version");
        }
        self.one_of("spec", &set, &["alias", "version"]);
        self.one_of(
            "spec.target",
            &d.spec.target.set_variants(),
            &["local", "kubernetes", "sagemaker"],
        );
        let s = &d.spec.strategy;
        if let Some(sm) = &d.spec.target.sagemaker {
            self.sagemaker_target(sm, s);
        }
        if let Some(k) = &d.spec.target.kubernetes {
            self.kubernetes_target(k);
        }
        self.strategy(s);
        let routes_requests = d.spec.target.local.is_some();
        let gateway = d
            .spec
            .target
            .kubernetes
            .as_ref()
            .is_some_and(|k| k.traffic.as_ref().is_some_and(|t| t.gateway_api.is_some()));
        let shadows =
            crate::rollout::shadow::standing::problems(&d.spec.shadows, routes_requests || gateway);
        // A SageMaker endpoint copies requests to a shadow variant when Slipway sets its variants.
        let variants = d
            .spec
            .target
            .sagemaker
            .as_ref()
            .is_some_and(crate::rollout::sagemaker::judged_by_metrics);
        let headers = routes_requests || gateway;
        for (field, message) in
            crate::rollout::routing::problems(s, routes_requests, headers, headers || variants)
                .into_iter()
                .chain(shadows)
        {
            self.invalid(&field, message);
        }
    }

    /// Checks a Kubernetes target's readiness path and tolerations as the API server would, and
    /// the HTTPRoute its traffic goes through.
    fn kubernetes_target(&mut self, k: &slipway_crd::model_deployment::KubernetesTarget) {
        let route = k.traffic.as_ref().and_then(|t| t.gateway_api.as_ref());
        if let Some(g) = route
            && !is_dns_subdomain(&g.http_route)
        {
            self.invalid(
                "spec.target.kubernetes.traffic.gatewayAPI.httpRoute",
                format!(
                    "`{}` is not the name of an HTTPRoute (lower-case letters, digits, `-` and `.`)",
                    g.http_route
                ),
            );
        }
        if let Some(r) = &k.readiness
            && !r.path.starts_with('/')
        {
            self.invalid(
                "spec.target.kubernetes.readiness.path",
                format!(
                    "`{}` is not a path; write it from the root, e.g. `/healthz`",
                    r.path
                ),
            );
        }
        for (i, t) in k.tolerations.iter().enumerate() {
            let at = |f: &str| format!("spec.target.kubernetes.tolerations[{i}].{f}");
            match t.operator.as_deref() {
                None | Some("Equal") => {}
                Some("Exists") if t.value.is_some() => self.invalid(
                    &at("value"),
                    "operator Exists takes no value; leave it out, or use operator Equal",
                ),
                Some("Exists") => {}
                Some(other) => self.invalid(
                    &at("operator"),
                    format!("operator `{other}` is not Equal or Exists"),
                ),
            }
            if let Some(e) = &t.effect
                && !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&e.as_str())
            {
                self.invalid(
                    &at("effect"),
                    format!("effect `{e}` is not NoSchedule, PreferNoSchedule or NoExecute"),
                );
            }
            if t.toleration_seconds.is_some() && t.effect.as_deref() != Some("NoExecute") {
                self.invalid(
                    &at("tolerationSeconds"),
                    "tolerationSeconds applies to effect NoExecute only; set that effect or leave it out",
                );
            }
            if t.key.is_none() && t.operator.as_deref() != Some("Exists") {
                self.invalid(
                    &at("key"),
                    "a toleration without a key needs operator Exists",
                );
            }
        }
    }

    /// Checks a SageMaker target's endpoint name, and that mode Guardrails is given at most one
    /// canary step.
    fn sagemaker_target(&mut self, sm: &SageMakerTarget, s: &Strategy) {
        let name = &sm.endpoint_name;
        let valid = !name.is_empty()
            && name.len() <= 63
            && name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-')
            && !name.starts_with('-')
            && !name.ends_with('-');
        if !valid {
            self.invalid(
                "spec.target.sagemaker.endpointName",
                format!("`{name}` is not a SageMaker endpoint name: up to 63 letters, digits and hyphens, not starting or ending with a hyphen"),
            );
        }
        if sm.mode == SageMakerMode::Guardrails
            && s.type_ == StrategyType::Canary
            && s.steps
                .iter()
                .filter(|st| st.weight < 100 && st.mirror.is_none())
                .count()
                > 1
        {
            self.invalid(
                "spec.strategy.steps",
                "a sagemaker target in mode Guardrails shifts one canary and then all traffic (SageMaker's deployment guardrails): keep one step below 100%, or use mode: Variants for several steps",
            );
        }
    }

    /// Checks a strategy: the steps or step weight its type needs, its durations and its
    /// analysis.
    fn strategy(&mut self, s: &Strategy) {
        match s.type_ {
            StrategyType::AllAtOnce => {
                if !s.steps.is_empty() {
                    self.invalid(
                        "spec.strategy.steps",
                        "AllAtOnce takes no steps; use type: Canary for steps",
                    );
                }
            }
            StrategyType::Canary => self.canary_steps(s),
            StrategyType::Linear => match s.step_weight {
                Some(w) if (1..=100).contains(&w) => {}
                _ => self.invalid(
                    "spec.strategy.stepWeight",
                    "Linear needs stepWeight between 1 and 100",
                ),
            },
        }
        if s.type_ == StrategyType::Linear && s.interval.is_none() {
            self.invalid(
                "spec.strategy.interval",
                "Linear needs an interval, e.g. `2m`",
            );
        }
        self.duration("spec.strategy.interval", s.interval.as_ref());
        self.duration(
            "spec.strategy.progressDeadline",
            s.progress_deadline.as_ref(),
        );
        if let Some(a) = &s.analysis
            && a.max_error_ratio.is_some_and(|r| !(0.0..=1.0).contains(&r))
        {
            self.invalid(
                "spec.strategy.analysis.maxErrorRatio",
                "a ratio between 0 and 1",
            );
        }
        if let Some(a) = &s.analysis {
            for (field, message) in crate::rollout::metrics::problems(a) {
                self.invalid(&field, message);
            }
        }
    }

    /// Checks a canary's steps: at least one, weights rising within 1..=100, pauses that parse.
    fn canary_steps(&mut self, s: &Strategy) {
        if s.steps.is_empty() {
            self.invalid(
                "spec.strategy.steps",
                "Canary needs at least one step, e.g. [{weight: 10, pause: 5m}]",
            );
        }
        let mut last = 0;
        for (i, step) in s.steps.iter().enumerate() {
            let shadow = step.weight == 0 && step.mirror.is_some();
            if let Some(m) = step.mirror
                && (step.weight != 0 || !(1..=100).contains(&m))
            {
                self.invalid(
                    &format!("spec.strategy.steps[{i}].mirror"),
                    format!("mirror {m}: a shadow step has weight 0 and mirrors between 1 and 100 percent of requests"),
                );
            }
            if shadow && last > 0 {
                self.invalid(
                    &format!("spec.strategy.steps[{i}].weight"),
                    "a shadow step (weight 0) comes before the steps that send traffic to the new version",
                );
            }
            if !shadow && (step.weight == 0 || step.weight > 100 || step.weight <= last) {
                self.invalid(
                    &format!("spec.strategy.steps[{i}].weight"),
                    match (step.weight, i) {
                        (0, _) => "weight 0 sends the new version nothing: give it a weight between 1 and 100, or add mirror (1–100) to make it a shadow step".to_string(),
                        (_, 0) => format!("weight {} must be between 1 and 100", step.weight),
                        _ => format!("weight {} must be between 1 and 100 and larger than the step before ({last})", step.weight),
                    },
                );
            }
            last = last.max(step.weight);
            self.duration(
                &format!("spec.strategy.steps[{i}].pause"),
                step.pause.as_ref(),
            );
        }
    }

    /// Checks a policy: unique rule names, known kinds, spec fields, and its approvals.
    fn promotion_policy(&mut self, p: &PromotionPolicy) {
        let mut names = std::collections::HashSet::new();
        for (i, r) in p.spec.rules.iter().enumerate() {
            if !names.insert(r.name.as_str()) {
                self.err(
                    &format!("spec.rules[{i}].name"),
                    Category::Duplicate,
                    format!("rule `{}` is defined twice", r.name),
                );
            }
        }
        for (i, k) in p.spec.match_.kinds.iter().enumerate() {
            if !Kind::ALL.iter().any(|x| x.as_str() == k) {
                self.err(
                    &format!("spec.match.kinds[{i}]"),
                    Category::UnknownKind,
                    format!("unknown kind `{k}`"),
                );
            }
        }
        for (i, f) in p.spec.match_.fields.iter().enumerate() {
            if !(f == "spec" || f.starts_with("spec.")) {
                self.invalid(
                    &format!("spec.match.fields[{i}]"),
                    format!(
                        "`{f}` is not a field of the spec; write a path such as `spec.evaluations`"
                    ),
                );
            }
        }
        for (i, a) in p.spec.approvals.iter().enumerate() {
            self.approval_requirement(&format!("spec.approvals[{i}]"), a);
        }
        let mut seen = std::collections::HashSet::new();
        for (i, w) in p.spec.windows.iter().enumerate() {
            if !seen.insert(w.name.as_str()) {
                let why = format!("window `{}` is defined twice", w.name);
                self.err(&format!("spec.windows[{i}].name"), Category::Duplicate, why);
            }
            for (field, why) in crate::catalog::windows::compile(w)
                .err()
                .unwrap_or_default()
            {
                self.invalid(&format!("spec.windows[{i}].{field}"), why);
            }
            if let Some(o) = &w.override_ {
                self.approval_requirement(&format!("spec.windows[{i}].override"), o);
            }
        }
    }

    /// Checks an approval a policy requires (at field `at`): its expiry, a count of at least
    /// one, and approvers written `group:NAME` or `user:LOGIN`.
    fn approval_requirement(&mut self, at: &str, a: &ApprovalRequirement) {
        self.duration(&format!("{at}.expiresAfter"), a.expires_after.as_ref());
        if a.required == 0 {
            self.invalid(
                &format!("{at}.required"),
                "must be at least 1 (remove the requirement instead)",
            );
        }
        if a.from.is_empty() {
            self.invalid(
                &format!("{at}.from"),
                "list who may approve: `group:NAME` or `user:LOGIN`",
            );
        }
        for (j, f) in a.from.iter().enumerate() {
            if !(f.starts_with("group:") || f.starts_with("user:")) || f.ends_with(':') {
                self.invalid(
                    &format!("{at}.from[{j}]"),
                    format!("`{f}` must be `group:NAME` or `user:LOGIN`"),
                );
            }
        }
    }

    /// Checks that an approval targets a known kind.
    fn approval(&mut self, a: &Approval) {
        if Kind::parse(&a.spec.target.kind).is_none() {
            self.err(
                "spec.target.kind",
                Category::UnknownKind,
                format!("unknown kind `{}`", a.spec.target.kind),
            );
        }
    }
}

fn none_if_empty(list: &[&str]) -> String {
    if list.is_empty() {
        "none".to_string()
    } else {
        list.join(", ")
    }
}
