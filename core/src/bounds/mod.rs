//! The bounds an operator sets on what objects may make the controller do in a cluster
//! (SECURITY.md): where requests that carry secrets or tokens may go, which images, service
//! accounts and resources evaluation Jobs and model Deployments may use, which SageMaker API
//! addresses and execution roles a deployment may name. They come from the controller's flags
//! (the chart's values), which someone holding the promoter role cannot change. Admission
//! refuses an object outside them with the reason; the controllers check them again before
//! acting, for objects admitted while the webhook was not called. Pure.
//!
//! An empty list allows nothing: the operator names what is allowed (`*` allows anything).

use slipway_crd::common::{Resources, RunnerSpec, SecretRef};

use crate::catalog::Resource;

/// The operator's bounds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Bounds {
    /// Hosts requests built from objects may go to (notifications, `webhook` runners):
    /// `hooks.slack.com`, `*.example.com` (any subdomain), `*`.
    pub destinations: Vec<String>,
    /// Images Jobs and Deployments may run: exact, or a prefix ending in `*`.
    pub images: Vec<String>,
    /// Service accounts evaluation Jobs may name (none named: the namespace's default).
    pub service_accounts: Vec<String>,
    /// The most CPU a container may request or be limited to, in cores.
    pub max_cpu: Option<f64>,
    /// The most memory a container may request or be limited to, in bytes.
    pub max_memory: Option<f64>,
    /// SageMaker API addresses a deployment may name (`endpointUrl`): origins such as
    /// `https://api.sagemaker.eu-west-1.amazonaws.com`.
    pub endpoint_urls: Vec<String>,
    /// Execution roles a SageMaker deployment may pass: exact ARNs, or a prefix ending in `*`.
    pub execution_roles: Vec<String>,
    /// Resources beyond `cpu`, `memory` and `ephemeral-storage` a container may ask for
    /// (`nvidia.com/gpu`): exact, or a prefix ending in `*`.
    pub extended_resources: Vec<String>,
    /// The longest an evaluation may run (`timeout`), each attempt.
    pub max_timeout: Option<std::time::Duration>,
    /// SageMaker instance types a deployment may ask for: exact (`ml.m5.large`), or a prefix
    /// ending in `*` (`ml.m5.*`).
    pub instance_types: Vec<String>,
    /// The most instances a SageMaker deployment may ask for (each variant).
    pub max_instance_count: Option<u32>,
    /// Taint keys model-server pods may tolerate: exact, or a prefix ending in `*` (`*` also
    /// allows a toleration without a key, which tolerates every taint).
    pub tolerations: Vec<String>,
}

/// The resources every container has, which `max_cpu` and `max_memory` bound.
const STANDARD_RESOURCES: [&str; 3] = ["cpu", "memory", "ephemeral-storage"];

/// A field outside the bounds, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Breach {
    /// The field, e.g. `spec.evaluations[0].runner.kubernetes.image`.
    pub field: String,
    /// What is wrong and what to do.
    pub message: String,
}

fn matches(pattern: &str, value: &str) -> bool {
    pattern == "*"
        || pattern == value
        || pattern
            .strip_suffix('*')
            .is_some_and(|prefix| value.starts_with(prefix))
}

/// Scheme, host (lower case) and port of an `http(s)` URL; the error says what is wrong.
pub fn origin(url: &str) -> Result<(String, String, u16), String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("`{url}` is not a URL ({e})"))?;
    let scheme = uri.scheme_str().unwrap_or_default().to_ascii_lowercase();
    let port = match scheme.as_str() {
        "https" => 443,
        "http" => 80,
        _ => return Err(format!("`{url}` is not an http(s) URL")),
    };
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
    if authority.contains('@') {
        return Err(format!("`{url}` carries user information; leave it out"));
    }
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("`{url}` names no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    Ok((scheme, host, uri.port_u16().unwrap_or(port)))
}

fn loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Bounds {
    /// Anything goes: for the tests of other things.
    #[cfg(test)]
    pub fn open() -> Bounds {
        Bounds {
            destinations: vec!["*".into()],
            images: vec!["*".into()],
            service_accounts: vec!["*".into()],
            max_cpu: None,
            max_memory: None,
            endpoint_urls: vec!["*".into()],
            execution_roles: vec!["*".into()],
            extended_resources: vec!["*".into()],
            max_timeout: None,
            instance_types: vec!["*".into()],
            max_instance_count: None,
            tolerations: vec!["*".into()],
        }
    }

    /// `r` as a container gets it: a bounded resource without a limit (CPU under `max_cpu`,
    /// memory under `max_memory`) is limited to the bound, so nothing runs unbounded because
    /// its limit was not written.
    pub fn limited(&self, r: Option<&Resources>) -> Resources {
        let mut r = r.cloned().unwrap_or_default();
        for (name, max) in [("cpu", self.max_cpu), ("memory", self.max_memory)] {
            if let Some(max) = max
                && !r.limits.contains_key(name)
            {
                // Rounded up: a bound rounded down to 0 would be no limit at all.
                let amount = if name == "cpu" {
                    format!("{}m", ((max * 1000.0).ceil() as u64).max(1))
                } else {
                    format!("{}", (max.ceil() as u64).max(1))
                };
                r.limits.insert(name.to_string(), amount);
            }
        }
        r
    }

    /// Whether a request built from an object (it may carry secrets or a results token) may go
    /// to `url`.
    /// What these bounds keep from ever running, said at start (and in `/readyz`): a setup
    /// that cannot work is told, not discovered object by object.
    pub fn setup_warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.images.is_empty() {
            out.push(
                "no image is allowed (--allowed-images): no evaluation Job or model-server Deployment can run; name the images or prefixes your suites and targets use"
                    .to_string(),
            );
        }
        if self.destinations.is_empty() {
            out.push(
                "no destination is allowed (--allowed-destinations): no notification is sent and no webhook runner is called; name their hosts"
                    .to_string(),
            );
        }
        if self.execution_roles.is_empty() {
            out.push(
                "no SageMaker execution role is allowed (--allowed-execution-roles): no SageMaker deployment can roll out"
                    .to_string(),
            );
        } else if self.instance_types.is_empty() {
            out.push(
                "no SageMaker instance type is allowed (--allowed-instance-types): no SageMaker deployment can roll out"
                    .to_string(),
            );
        }
        out
    }

    /// The service accounts these bounds name exactly (not `*` or a prefix): the ones a setup
    /// counts on, checked at start to exist.
    pub fn named_service_accounts(&self) -> Vec<&str> {
        self.service_accounts
            .iter()
            .map(String::as_str)
            .filter(|s| !s.is_empty() && !s.ends_with('*'))
            .collect()
    }

    pub fn destination(&self, url: &str) -> Result<(), String> {
        let (_, host, _) = origin(url)?;
        let allowed = self.destinations.iter().any(|d| {
            let d = d.to_ascii_lowercase();
            d == "*"
                || d == host
                || d.strip_prefix("*.")
                    .is_some_and(|suffix| host.ends_with(&format!(".{suffix}")))
        });
        if allowed {
            Ok(())
        } else {
            Err(format!(
                "host {host} is not among the destinations the operator allows ({}); ask them \
                 to add it to --allowed-destinations (`slipway controller`, chart value \
                 bounds.destinations; `slipway run`)",
                listed(&self.destinations)
            ))
        }
    }

    /// Whether a container may run `image`.
    pub fn image(&self, image: &str) -> Result<(), String> {
        if self.images.iter().any(|p| matches(p, image)) {
            Ok(())
        } else {
            Err(format!(
                "image {image} is not among the images the operator allows ({}); use an allowed \
                 image or ask them to add it to --allowed-images (chart value bounds.images)",
                listed(&self.images)
            ))
        }
    }

    fn resources(&self, field: &str, r: &Resources, out: &mut Vec<Breach>) {
        for (kind, amounts) in [("requests", &r.requests), ("limits", &r.limits)] {
            for name in amounts.keys() {
                if !STANDARD_RESOURCES.contains(&name.as_str())
                    && !self.extended_resources.iter().any(|p| matches(p, name))
                {
                    out.push(Breach {
                        field: format!("{field}.{kind}.{name}"),
                        message: format!(
                            "{name} is not among the extended resources the operator allows \
                             ({}); ask them to add it to --allowed-extended-resources (chart \
                             value bounds.extendedResources)",
                            listed(&self.extended_resources)
                        ),
                    });
                }
            }
            for (name, max, unit) in [
                ("cpu", self.max_cpu, "cores"),
                ("memory", self.max_memory, "bytes"),
            ] {
                let (Some(value), Some(max)) = (amounts.get(name), max) else {
                    continue;
                };
                let message = match quantity(value) {
                    None => format!("{value:?} is not a quantity (e.g. `500m`, `2`, `512Mi`)"),
                    // Kubernetes reads a limit of 0 as none at all.
                    Some(v) if kind == "limits" && v <= 0.0 => format!(
                        "a limit of {value} is no limit to Kubernetes; write one of at most {max} \
                         {unit} (--max-{name}), or leave it out (the bound becomes the limit)"
                    ),
                    Some(v) if v > max => format!(
                        "{value} is more than the operator allows ({max} {unit}; --max-{name})"
                    ),
                    Some(_) => continue,
                };
                out.push(Breach {
                    field: format!("{field}.{kind}.{name}"),
                    message,
                });
            }
        }
    }

    fn secret(field: &str, r: &SecretRef, out: &mut Vec<Breach>) {
        if r.env.is_some() || r.file.is_some() {
            out.push(Breach {
                field: field.to_string(),
                message: "env: and file: secret references name the controller's own \
                          environment and files, and are refused in Kubernetes mode; use \
                          secretKeyRef (a Secret labelled slipway.dev/usable-by=slipway)"
                    .into(),
            });
        }
    }

    /// Whether git mode may read secret `r` — an `env:` variable or a `file:` of `slipway run`'s
    /// own — by the operator's allow-list `allowed` (`--allowed-secrets`: exact names or paths,
    /// or prefixes ending in `*`). A pull request cannot make the reconciler send its other
    /// variables (cloud credentials) or files (keys) anywhere.
    pub fn secret_source(allowed: &[String], r: &SecretRef) -> Result<(), String> {
        let (what, name) = match (&r.env, &r.file) {
            (Some(v), _) => ("environment variable", v),
            (None, Some(f)) => ("file", f),
            _ => return Ok(()),
        };
        // `/run/secrets/../../home/op/.aws/credentials` matches `/run/secrets/*` as text.
        if r.env.is_none() && name.split('/').any(|seg| seg == ".." || seg == ".") {
            return Err(format!(
                "file {name} has `.` or `..` in its path: name the secret file by its plain path"
            ));
        }
        if allowed.iter().any(|p| matches(p, name)) {
            Ok(())
        } else {
            Err(format!(
                "{what} {name} is not among the secrets the operator lets the registry use ({}); \
                 ask them to add it to `slipway run --allowed-secrets`",
                listed(allowed)
            ))
        }
    }

    /// The image at `field`, if the operator does not allow it.
    fn image_at(&self, field: &str, image: &str, out: &mut Vec<Breach>) {
        if let Err(message) = self.image(image) {
            out.push(Breach {
                field: field.to_string(),
                message,
            });
        }
    }

    fn runner(&self, field: &str, r: &RunnerSpec, out: &mut Vec<Breach>) {
        if let Some(k) = &r.kubernetes {
            let field = format!("{field}.kubernetes");
            self.image_at(&format!("{field}.image"), &k.image, out);
            if let Some(sa) = &k.service_account_name
                && !self.service_accounts.iter().any(|p| matches(p, sa))
            {
                out.push(Breach {
                    field: format!("{field}.serviceAccountName"),
                    message: format!(
                        "service account {sa} is not among those the operator lets evaluation \
                         Jobs use ({}); leave it out (the namespace's default) or ask them to \
                         add it to --allowed-service-accounts",
                        listed(&self.service_accounts)
                    ),
                });
            }
            if let Some(res) = &k.resources {
                self.resources(&format!("{field}.resources"), res, out);
            }
        }
        if let Some(w) = &r.webhook {
            self.webhook(&format!("{field}.webhook"), &w.url, &w.headers, out);
        }
    }

    /// A request built from an object (a `webhook` runner or notification): where it goes, and
    /// the secret references of its headers.
    fn webhook(
        &self,
        field: &str,
        url: &str,
        headers: &std::collections::BTreeMap<String, SecretRef>,
        out: &mut Vec<Breach>,
    ) {
        if let Err(message) = self.destination(url) {
            out.push(Breach {
                field: format!("{field}.url"),
                message,
            });
        }
        for (k, v) in headers {
            Self::secret(&format!("{field}.headers.{k}"), v, out);
        }
    }

    /// Tolerations of taints the operator does not let model-server pods tolerate (a taint
    /// keeps pods off nodes on purpose: control-plane nodes, nodes of another team).
    fn tolerations(&self, tolerations: &[slipway_crd::serving::Toleration], out: &mut Vec<Breach>) {
        for (i, t) in tolerations.iter().enumerate() {
            let key = t.key.as_deref().unwrap_or("");
            let allowed = if key.is_empty() {
                self.tolerations.iter().any(|p| p == "*")
            } else {
                self.tolerations.iter().any(|p| matches(p, key))
            };
            if !allowed {
                let what = if key.is_empty() {
                    "a toleration without a key tolerates every taint".to_string()
                } else {
                    format!(
                        "taint {key} is not among those the operator lets model servers tolerate"
                    )
                };
                out.push(Breach {
                    field: format!("spec.target.kubernetes.tolerations[{i}]"),
                    message: format!(
                        "{what} ({}); ask them to add it to --allowed-tolerations (chart value \
                         bounds.tolerations)",
                        listed(&self.tolerations)
                    ),
                });
            }
        }
    }

    /// A suite's `timeout` longer than the operator allows (each attempt runs that long).
    fn timeout(&self, field: &str, written: Option<&str>, out: &mut Vec<Breach>) {
        let (Some(t), Some(max)) = (written, self.max_timeout) else {
            return;
        };
        if let Ok(d) = crate::duration::parse(t)
            && d > max
        {
            out.push(Breach {
                field: field.to_string(),
                message: format!(
                    "{t} is longer than the operator allows an evaluation attempt to run \
                     ({max:?}; --max-timeout)"
                ),
            });
        }
    }

    /// Every field of `resource` outside the bounds (Kubernetes mode).
    pub fn check(&self, resource: &Resource) -> Vec<Breach> {
        let mut out = Vec::new();
        match resource {
            Resource::RegisteredModel(m) => {
                for (i, s) in m.spec.evaluations.iter().enumerate() {
                    self.runner(
                        &format!("spec.evaluations[{i}].runner"),
                        &s.runner,
                        &mut out,
                    );
                    self.timeout(
                        &format!("spec.evaluations[{i}].timeout"),
                        s.timeout.as_deref(),
                        &mut out,
                    );
                }
                for (i, n) in m.spec.notifications.iter().enumerate() {
                    let field = format!("spec.notifications[{i}]");
                    if let Some(s) = &n.slack {
                        Self::secret(
                            &format!("{field}.slack.webhookUrl"),
                            &s.webhook_url,
                            &mut out,
                        );
                    }
                    if let Some(w) = &n.webhook {
                        self.webhook(&format!("{field}.webhook"), &w.url, &w.headers, &mut out);
                    }
                }
            }
            Resource::Evaluation(e) => {
                self.runner("spec.runner", &e.spec.runner, &mut out);
                self.timeout("spec.timeout", e.spec.timeout.as_deref(), &mut out);
            }
            Resource::ModelDeployment(d) => {
                if let Some(k) = &d.spec.target.kubernetes {
                    self.image_at("spec.target.kubernetes.image", &k.image, &mut out);
                    if let Some(res) = &k.resources {
                        self.resources("spec.target.kubernetes.resources", res, &mut out);
                    }
                    self.tolerations(&k.tolerations, &mut out);
                }
                if let Some(s) = &d.spec.target.sagemaker {
                    out.extend(self.sagemaker(s));
                }
                // A metric's provider is asked from the controller: where it may go, and the
                // secrets its headers carry.
                let metrics = d.spec.strategy.analysis.iter().flat_map(|a| &a.metrics);
                for (i, m) in metrics.enumerate() {
                    let field = format!("spec.strategy.analysis.metrics[{i}].provider");
                    if let Some(p) = &m.provider.prometheus {
                        self.webhook(
                            &format!("{field}.prometheus"),
                            &p.address,
                            &Default::default(),
                            &mut out,
                        );
                    }
                    if let Some(h) = &m.provider.http {
                        self.webhook(&format!("{field}.http"), &h.url, &h.headers, &mut out);
                    }
                }
            }
            _ => {}
        }
        out
    }

    /// Why `resource` is outside the bounds, in one line (`field: reason; …`); None: it is not.
    pub fn refusal(&self, resource: &Resource) -> Option<String> {
        let breaches = self.check(resource);
        (!breaches.is_empty()).then(|| {
            breaches
                .iter()
                .map(|b| format!("{}: {}", b.field, b.message))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    /// The SageMaker target's image, API address and execution role.
    pub fn sagemaker(&self, s: &slipway_crd::model_deployment::SageMakerTarget) -> Vec<Breach> {
        let mut out = Vec::new();
        // The image runs with the execution role's credentials.
        self.image_at("spec.target.sagemaker.image", &s.image, &mut out);
        if let Some(url) = &s.endpoint_url {
            let allowed = origin(url).and_then(|(scheme, host, port)| {
                if scheme != "https" && !loopback(&host) {
                    return Err(format!(
                        "`{url}` is plain HTTP: SageMaker requests are signed with the \
                         controller's AWS credentials, so only https is allowed (or a loopback \
                         emulator)"
                    ));
                }
                let known = self.endpoint_urls.iter().any(|e| {
                    e == "*" || origin(e).is_ok_and(|o| o == (scheme.clone(), host.clone(), port))
                });
                if known {
                    Ok(())
                } else {
                    Err(format!(
                        "`{url}` is not among the SageMaker API addresses the operator allows \
                         ({}); leave endpointUrl out (the region's endpoint) or ask them to add \
                         it to --allowed-endpoint-urls",
                        listed(&self.endpoint_urls)
                    ))
                }
            });
            if let Err(message) = allowed {
                out.push(Breach {
                    field: "spec.target.sagemaker.endpointUrl".into(),
                    message,
                });
            }
        }
        if !self
            .instance_types
            .iter()
            .any(|p| matches(p, &s.instance_type))
        {
            out.push(Breach {
                field: "spec.target.sagemaker.instanceType".into(),
                message: format!(
                    "instance type {} is not among those the operator lets deployments run on \
                     ({}); ask them to add it to --allowed-instance-types",
                    s.instance_type,
                    listed(&self.instance_types)
                ),
            });
        }
        if let Some(max) = self.max_instance_count
            && s.instance_count > max
        {
            out.push(Breach {
                field: "spec.target.sagemaker.instanceCount".into(),
                message: format!(
                    "{} instances are more than the operator lets a deployment run ({max}; \
                     --max-instance-count)",
                    s.instance_count
                ),
            });
        }
        if !self
            .execution_roles
            .iter()
            .any(|p| matches(p, &s.execution_role_arn))
        {
            out.push(Breach {
                field: "spec.target.sagemaker.executionRoleArn".into(),
                message: format!(
                    "role {} is not among the execution roles the operator lets deployments \
                     pass ({}); ask them to add it to --allowed-execution-roles",
                    s.execution_role_arn,
                    listed(&self.execution_roles)
                ),
            });
        }
        out
    }
}

fn listed(list: &[String]) -> String {
    if list.is_empty() {
        "none are".to_string()
    } else {
        list.join(", ")
    }
}

mod quantity;
pub use quantity::quantity;

#[cfg(test)]
mod tests;
