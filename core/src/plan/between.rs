//! What a change is about beyond its object, between the two catalogs a plan compares.

use serde_json::Value;
use slipway_crd::{ModelAlias, ModelDeployment, ModelVersion};

use super::rollouts::{rollout, warnings_of};
use super::{FieldChange, PlanInputs, Rollout};
use crate::catalog::results;
use crate::catalog::{Catalog, Object, ObjectKey, Resource};
use crate::policy::Requester;
use crate::promotion::stages;

/// What a change is about beyond its object: the alias and versions it moves, their facts for
/// policy, the alias a deployment followed before, the rollouts it starts and its warnings.
#[derive(Default)]
pub(super) struct About {
    pub(super) alias: Option<String>,
    pub(super) from: Option<String>,
    pub(super) to: Option<String>,
    pub(super) candidate: Value,
    pub(super) current: Value,
    pub(super) previous_alias: Option<String>,
    pub(super) rollback: bool,
    pub(super) rollouts: Vec<Rollout>,
    pub(super) warnings: Vec<String>,
    /// An alias move's candidate: its serving record now, and its artifact digest.
    pub(super) serving: Option<(stages::Record, String)>,
}

/// The two catalogs a change is between, in the change's namespace.
pub(super) struct Between<'a> {
    pub(super) base: &'a Catalog,
    pub(super) head: &'a Catalog,
    pub(super) ns: &'a str,
    pub(super) inputs: &'a PlanInputs,
}

impl Between<'_> {
    /// A version's facts for policy, from one catalog (null when it has no such version).
    fn version_json(&self, cat: &Catalog, m: &str, v: &str) -> Value {
        cat.version(self.ns, m, v)
            .map(|v| results::version(v, &self.inputs.results))
            .unwrap_or(Value::Null)
    }

    /// An alias change: the versions it moves from and to, and the deployments following the
    /// alias that a move rolls out.
    pub(super) fn alias_move(
        &self,
        key: &ObjectKey,
        a: &ModelAlias,
        old: Option<&Object>,
        new: Option<&Object>,
    ) -> About {
        let version_of = |o: &Object| match &o.resource {
            Resource::ModelAlias(a) => Some(a.spec.version.clone()),
            _ => None,
        };
        let mut about = About {
            alias: Some(a.spec.alias.clone()),
            from: old.and_then(version_of),
            to: new.and_then(version_of),
            ..About::default()
        };
        if let Some(t) = &about.to {
            about.candidate = self.version_json(self.head, &a.spec.model, t);
            if let Some(v) = self.head.version(self.ns, &a.spec.model, t) {
                let digest = v.spec.artifact.digest.clone();
                let at = (self.ns, a.spec.model.as_str());
                let record = self.inputs.record(at, t, &digest, self.inputs.now);
                about.candidate = stages::with_record(about.candidate, &record);
                about.serving = Some((record, digest));
            }
            if about.from.as_ref() != Some(t) {
                let following =
                    self.head
                        .deployments_following(self.ns, &a.spec.model, &a.spec.alias);
                about
                    .warnings
                    .extend(following.iter().flat_map(|d| warnings_of(d)));
                about.rollouts = following
                    .into_iter()
                    .map(|d| rollout(d, self.head, Some(t)))
                    .collect();
            }
        }
        if let Some(f) = &about.from {
            about.current = self.version_json(self.base, &a.spec.model, f);
        }
        if let (Some(served), Some(to)) = (self.inputs.served.get(key), &about.to)
            && let Some(v) = self.head.version(self.ns, &a.spec.model, to)
        {
            about.rollback = crate::promotion::is_rollback(
                served,
                about.from.as_deref(),
                to,
                &v.spec.artifact.digest,
            );
        }
        about
    }

    /// A version change: its label as from (deleted) or to (created), and a new version's facts.
    pub(super) fn version(
        &self,
        v: &ModelVersion,
        old: Option<&Object>,
        new: Option<&Object>,
    ) -> About {
        let label = |o: Option<&Object>| o.map(|_| v.spec.version.clone());
        let mut about = About {
            from: label(old),
            to: label(new),
            ..About::default()
        };
        if new.is_some() {
            about.candidate = self.version_json(self.head, &v.spec.model, &v.spec.version);
        }
        about
    }

    /// A deployment change: the alias it follows (and followed before), what its target cannot
    /// measure, and the rollout it starts. A new deployment, or a change of what or where it
    /// serves, rolls out now; a strategy-only change applies to the next rollout.
    pub(super) fn deployment(
        &self,
        d: &ModelDeployment,
        old: Option<&Object>,
        new: Option<&Object>,
        fields: &[FieldChange],
    ) -> About {
        let alias = d.spec.alias.clone();
        let previous_alias = old
            .and_then(|o| match &o.resource {
                Resource::ModelDeployment(o) => o.spec.alias.clone(),
                _ => None,
            })
            .filter(|a| Some(a) != alias.as_ref());
        let mut about = About {
            alias,
            previous_alias,
            ..About::default()
        };
        let redeploys =
            fields.is_empty() || fields.iter().any(|f| !f.path.starts_with("spec.strategy"));
        if let Some(Resource::ModelDeployment(n)) = new.map(|o| &o.resource) {
            about.warnings.extend(warnings_of(n));
            if redeploys {
                let serves = match (&n.spec.version, &n.spec.alias) {
                    (Some(v), _) => Some(v.clone()),
                    (None, Some(a)) => self
                        .head
                        .alias(self.ns, &n.spec.model, a)
                        .map(|a| a.spec.version.clone()),
                    _ => None,
                };
                about
                    .rollouts
                    .push(rollout(n, self.head, serves.as_deref()));
            }
        }
        about
    }

    /// Who asks for the change: in Kubernetes mode the authenticated user and groups, in git
    /// mode the author and the `Group`s of the base catalog they belong to.
    pub(super) fn requester(&self) -> Requester {
        let author = self.inputs.signoffs.author.clone();
        match &self.inputs.kubernetes {
            Some(k) => Requester {
                groups: k.groups.clone(),
                user: author,
                source: "kubernetes".to_string(),
            },
            None => Requester {
                groups: author
                    .as_deref()
                    .map(|a| self.base.groups_of(self.ns, a))
                    .unwrap_or_default(),
                user: author,
                source: "git".to_string(),
            },
        }
    }
}
