//! The git-mode reconciler: register versions, run and report evaluations, and promote aliases
//! whose data rules pass — recording every step in the store's history.
//!
//! Decisions come from the pure core ([`plan`], `evaluation`, `policy`); this module sequences
//! them and carries out their effects (subprocesses, report files, store writes).

mod deploy;
mod evaluate;
pub use evaluate::EvaluationPool;
pub mod external;
pub mod http;
pub mod passes;
mod promote;
mod reports;
pub mod retry;
mod sagemaker;
mod statuses;
pub mod writeback;

use crate::decide::events::Event as Happened;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use slipway_crd::Evaluation;

use crate::decide::catalog::results::Results;
use crate::decide::catalog::{Catalog, Resource};
use crate::decide::evaluation::summary;
use crate::decide::tasks::{self, Task};
use crate::edges::store::{HistoryEntry, Store, StoreError, Write};
use slipway_crd::model_version::ModelVersionStatus;

/// Why a pass stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A report could not be written.
    #[error("cannot write the report {path}: {source}")]
    Report {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The revision's files could not be put on disk for a local job: the source's fault, not
    /// the evaluation's (no attempt is counted; the pass backs off and tries again).
    #[error("{0}")]
    Checkout(String),
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Store(StoreError::Decode(e))
    }
}

impl Error {
    /// Short stable name for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Store(e) => e.category(),
            Error::Report { .. } => "report-io",
            Error::Checkout(_) => "checkout",
        }
    }
}

/// What one pass did, for progress output and tests.
#[derive(Debug, Default, Serialize, PartialEq)]
pub struct PassReport {
    /// Versions seen for the first time.
    pub registered: Vec<String>,
    /// Evaluations that ran and finished (name: verdict).
    pub evaluated: Vec<String>,
    /// Evaluations whose content-addressed result already existed.
    pub reused: Vec<String>,
    /// Aliases moved (`model/alias: from → to`).
    pub moved: Vec<String>,
    /// Alias moves held by policy (`model/alias → to: why`).
    pub blocked: Vec<String>,
    /// Alias moves waiting for evaluations.
    pub waiting: Vec<String>,
    /// Rollout events (steps, successes, rollbacks).
    pub rollout_events: Vec<String>,
    /// Deployment errors (ports taken, servers that do not start).
    pub deploy_errors: Vec<String>,
    /// Deployments that stand rolled back or failed at the end of the run (`--once`).
    pub stuck: Vec<String>,
    /// Evaluations that failed, as (namespace, model, version).
    pub failed_evaluations: Vec<(String, String, String)>,
    /// The soonest time a held move becomes allowed by itself (a soak that ends): the next
    /// pass is then, if that is sooner than the interval.
    pub opens_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Evaluations that finished in this pass, as (namespace, name): their reports are written
    /// once the pass has read its last results (each report shows the others' history).
    #[serde(skip)]
    pub reports: Vec<(String, String)>,
}

impl PassReport {
    /// Adds what a later pass of the same run did (`--once` runs passes until everything has
    /// settled); holds and waits are the later pass's.
    pub fn absorb(&mut self, later: PassReport) {
        self.registered.extend(later.registered);
        self.evaluated.extend(later.evaluated);
        self.reused.extend(later.reused);
        self.moved.extend(later.moved);
        self.blocked = later.blocked;
        self.waiting = later.waiting;
        self.opens_at = later.opens_at;
        self.rollout_events.extend(later.rollout_events);
        self.deploy_errors.extend(later.deploy_errors);
        self.failed_evaluations.extend(later.failed_evaluations);
    }

    /// `slipway run --once`'s exit code for what the run did on `catalog` (README, "Exit
    /// codes"): [`exit::ERROR`] when a deployment could not be rolled out, [`exit::HELD`] when
    /// something the registry asks for is not in place (a move held by policy or still waiting,
    /// a deployment rolled back or failed, a failed evaluation of a version an alias asks for),
    /// else
    /// [`exit::SETTLED`]. A failed evaluation of a version no alias asks for is information.
    pub fn exit_code(&self, catalog: &Catalog) -> i32 {
        let asked = |(ns, model, version): &(String, String, String)| {
            catalog.objects().iter().any(|o| match &o.resource {
                Resource::ModelAlias(a) => {
                    o.key.namespace == *ns && a.spec.model == *model && a.spec.version == *version
                }
                _ => false,
            })
        };
        if !self.deploy_errors.is_empty() {
            exit::ERROR
        } else if !(self.blocked.is_empty() && self.waiting.is_empty() && self.stuck.is_empty())
            || self.failed_evaluations.iter().any(asked)
        {
            exit::HELD
        } else {
            exit::SETTLED
        }
    }
}

/// `slipway run --once`'s exit codes.
pub mod exit {
    /// Everything the registry asks for is in place.
    pub const SETTLED: i32 = 0;
    /// An invalid revision, a deployment that could not be rolled out, a state that cannot be
    /// written.
    pub const ERROR: i32 = 1;
    /// Something is held: a move held by policy or still waiting, an evaluation that failed, a
    /// rollout rolled back or failed.
    pub const HELD: i32 = 3;
}

/// The reconciler's fixed inputs.
pub struct Reconciler<'a> {
    /// The state store.
    pub store: &'a Store,
    /// The registry folder (evaluation jobs run relative to it; a commit is checked out when a
    /// job first needs it).
    pub root: &'a crate::edges::source::remote::Root,
    /// The state folder (reports and job folders go under it).
    pub state_dir: &'a Path,
    /// The source revision being reconciled (a git commit, or `folder`).
    pub revision: String,
    /// The clock.
    pub now: &'a dyn Fn() -> DateTime<Utc>,
    /// Progress lines (to a terminal or a log).
    pub progress: &'a dyn Fn(&str),
    /// Base URL of this instance's results API (`--listen`), for external evaluation jobs.
    pub results_url: Option<String>,
    /// Where local evaluation attempts run (None: inline, within the pass).
    pub pool: Option<&'a EvaluationPool>,
    /// The statuses this pass has read (empty at the start of a pass).
    pub statuses: statuses::PassStatuses,
    /// The secrets the registry may use and where requests with them may go.
    pub allowed: &'a crate::edges::notify::Allowed,
}

impl Reconciler<'_> {
    /// A status as this pass sees it (see [`statuses::PassStatuses`]).
    fn status(
        &self,
        kind: &str,
        ns: &str,
        name: &str,
    ) -> Result<Option<std::rc::Rc<Value>>, StoreError> {
        self.statuses.get(self.store, kind, ns, name)
    }

    /// A status as this pass sees it, decoded as its type.
    fn typed_status<T: serde::de::DeserializeOwned>(
        &self,
        kind: &str,
        ns: &str,
        name: &str,
    ) -> Result<Option<T>, StoreError> {
        Ok(self
            .status(kind, ns, name)?
            .map(|v| T::deserialize(&*v))
            .transpose()?)
    }

    /// Applies writes (atomically) and lets the pass's statuses see them.
    fn apply(&self, writes: &[Write]) -> Result<Vec<i64>, StoreError> {
        let ids = self.store.apply(writes)?;
        self.statuses.wrote(writes);
        Ok(ids)
    }

    fn history(&self, event: Happened, ns: &str, model: &str, subject: String) -> HistoryEntry {
        HistoryEntry {
            id: 0,
            at: (self.now)(),
            event: event.as_str().into(),
            namespace: ns.into(),
            model: model.into(),
            subject,
            version: None,
            alias: None,
            actor: Some("slipway".into()),
            revision: Some(self.revision.clone()),
            decision: None,
            message: String::new(),
            data: Value::Null,
        }
    }

    /// One pass over a valid catalog.
    ///
    /// Evaluations whose baseline alias is about to be promoted for the first time wait for that
    /// promotion, so that (for example) version 8 is compared with production = 7 on the very
    /// first run; the pass alternates evaluating and promoting until nothing more can move.
    pub fn reconcile(&self, catalog: &Catalog) -> Result<PassReport, Error> {
        let mut out = PassReport::default();
        // Versions whose status says something new after this pass: registered or evaluated.
        let mut touched: BTreeSet<(String, String, String)> = self.register(catalog, &mut out)?;
        let mut done: BTreeSet<String> = BTreeSet::new();
        // Evaluations a move compared again this pass (once each: what they run next is the
        // comparison the move waits for).
        let mut compared_again: BTreeSet<String> = BTreeSet::new();
        loop {
            let finished_before = out.evaluated.len();
            let ready: Vec<Task> = self
                .tasks(catalog)
                .iter()
                .filter(|t| !done.contains(&t.name) && !self.awaits_baseline(catalog, t))
                .cloned()
                .collect();
            for task in &ready {
                let finished = out.evaluated.len();
                self.evaluate(task, &mut out)?;
                done.insert(task.name.clone());
                if out.evaluated.len() > finished {
                    touched.insert((
                        task.namespace.clone(),
                        task.model.clone(),
                        task.version.clone(),
                    ));
                }
            }
            let moved = out.moved.len();
            out.waiting.clear();
            out.blocked.clear();
            let results = self.results_of(catalog)?;
            let mut again = false;
            for name in self.promote(catalog, &results, &mut out)? {
                if compared_again.insert(name.clone()) {
                    done.remove(&name);
                    again = true;
                }
            }
            if out.evaluated.len() == finished_before && out.moved.len() == moved && !again {
                // Nothing finished or moved after these results were read (what runs in the
                // background reports in a later pass): they are the pass's last word.
                self.version_statuses(catalog, &touched, &results)?;
                self.write_reports(catalog, &results, &out.reports)?;
                self.rewrite_reports(catalog, &results)?;
                break;
            }
        }
        self.model_statuses(catalog)?;
        Ok(out)
    }

    /// Writes each `RegisteredModel`'s status when it says something new: its newest version
    /// and where its aliases resolve ([`crate::decide::model::status`], as in a cluster).
    fn model_statuses(&self, catalog: &Catalog) -> Result<(), Error> {
        // Every alias's resolution, by model, in one sweep (a registry holds thousands).
        let mut resolved: std::collections::HashMap<(&str, &str), BTreeMap<String, String>> =
            std::collections::HashMap::new();
        for a in catalog.objects() {
            let Resource::ModelAlias(alias) = &a.resource else {
                continue;
            };
            let ns = a.key.namespace.as_str();
            let version = self
                .status("ModelAlias", ns, &a.key.name)?
                .and_then(|s| s["resolvedVersion"].as_str().map(str::to_string));
            if let Some(v) = version {
                resolved
                    .entry((ns, alias.spec.model.as_str()))
                    .or_default()
                    .insert(alias.spec.alias.clone(), v);
            }
        }
        let mut writes = Vec::new();
        for o in catalog.objects() {
            let Resource::RegisteredModel(_) = &o.resource else {
                continue;
            };
            let (ns, model) = (&o.key.namespace, &o.key.name);
            let aliases = resolved
                .remove(&(ns.as_str(), model.as_str()))
                .unwrap_or_default();
            let previous = self
                .status("RegisteredModel", ns, model)?
                .and_then(|s| {
                    <slipway_crd::registered_model::RegisteredModelStatus as serde::Deserialize>::deserialize(&*s).ok()
                })
                .unwrap_or_default();
            let labels = catalog.version_labels(ns, model);
            if let Some(next) =
                crate::decide::model::status(&labels, aliases, &previous, None, (self.now)())
            {
                writes.push(Write::Status {
                    kind: "RegisteredModel".into(),
                    namespace: ns.clone(),
                    name: model.clone(),
                    status: serde_json::to_value(&next)?,
                });
            }
        }
        if !writes.is_empty() {
            self.apply(&writes)?;
        }
        Ok(())
    }

    /// Writes the status of each touched version: the same typed document as in Kubernetes mode
    /// ([`summary::version_status`]); one transaction for all (a first pass touches every version).
    fn version_statuses(
        &self,
        catalog: &Catalog,
        touched: &BTreeSet<(String, String, String)>,
        results: &Results,
    ) -> Result<(), Error> {
        if touched.is_empty() {
            return Ok(());
        }
        let mut writes = Vec::new();
        for obj in catalog.objects() {
            let Resource::ModelVersion(v) = &obj.resource else {
                continue;
            };
            let ns = &obj.key.namespace;
            if !touched.contains(&(ns.clone(), v.spec.model.clone(), v.spec.version.clone())) {
                continue;
            }
            let previous: ModelVersionStatus = self
                .typed_status("ModelVersion", ns, &obj.key.name)?
                .unwrap_or_default();
            let suites = catalog
                .model(ns, &v.spec.model)
                .map_or(0, |m| m.spec.evaluations.len());
            let held = results.of(ns, &v.spec.model, &v.spec.version);
            let next = summary::version_status(
                &previous,
                suites,
                held.into_iter()
                    .flatten()
                    .map(|(suite, e)| (suite.as_str(), &**e)),
                None,
                (self.now)(),
            );
            if !summary::same(&previous, &next) {
                writes.push(Write::Status {
                    kind: "ModelVersion".into(),
                    namespace: ns.clone(),
                    name: obj.key.name.clone(),
                    status: serde_json::to_value(&next)?,
                });
            }
        }
        if !writes.is_empty() {
            self.apply(&writes)?;
        }
        Ok(())
    }

    /// Whether a task's baseline alias has never been promoted but is about to be (to another version).
    fn awaits_baseline(&self, catalog: &Catalog, task: &Task) -> bool {
        let Some(model) = catalog.model(&task.namespace, &task.model) else {
            return false;
        };
        let Some(alias) = model
            .spec
            .evaluations
            .iter()
            .find(|s| s.name == task.suite)
            .and_then(|s| s.baseline.as_ref())
            .and_then(|b| b.alias.as_deref())
        else {
            return false;
        };
        let Some(wanted) = catalog.alias(&task.namespace, &task.model, alias) else {
            return false;
        };
        wanted.spec.version != task.version
            && self
                .resolved_alias(catalog, &task.namespace, &task.model, alias)
                .is_none()
    }

    /// Registers versions seen for the first time, all in one transaction (said once it is
    /// written: a process killed before loses nothing it reported); returns them (namespace,
    /// model, version).
    fn register(
        &self,
        catalog: &Catalog,
        out: &mut PassReport,
    ) -> Result<BTreeSet<(String, String, String)>, Error> {
        let mut registered = BTreeSet::new();
        let mut writes = Vec::new();
        let mut said = Vec::new();
        let known: std::collections::HashSet<(String, String)> = self
            .store
            .status_keys("ModelVersion")?
            .into_iter()
            .collect();
        for obj in catalog.objects() {
            let Resource::ModelVersion(v) = &obj.resource else {
                continue;
            };
            let ns = &obj.key.namespace;
            if known.contains(&(ns.clone(), obj.key.name.clone())) {
                continue;
            }
            let mut h = self.history(
                Happened::VersionRegistered,
                ns,
                &v.spec.model,
                format!("ModelVersion/{}", obj.key.name),
            );
            h.version = Some(v.spec.version.clone());
            h.message = format!(
                "{} version {} registered ({})",
                v.spec.model, v.spec.version, v.spec.artifact.uri
            );
            writes.push(Write::Status {
                kind: "ModelVersion".into(),
                namespace: ns.clone(),
                name: obj.key.name.clone(),
                status: json!({"registeredAt": h.at}),
            });
            writes.push(Write::History(h));
            said.push((v.spec.model.clone(), v.spec.version.clone()));
            registered.insert((ns.clone(), v.spec.model.clone(), v.spec.version.clone()));
        }
        if !writes.is_empty() {
            self.apply(&writes)?;
        }
        for (model, version) in said {
            (self.progress)(&format!("registered {model} version {version}"));
            out.registered.push(format!("{model}/{version}"));
        }
        Ok(registered)
    }

    /// The version an alias resolves to: as last promoted, else (never promoted) nothing.
    fn resolved_alias(
        &self,
        catalog: &Catalog,
        ns: &str,
        model: &str,
        alias: &str,
    ) -> Option<String> {
        let name = catalog.alias(ns, model, alias)?.metadata.name.as_deref()?;
        let status = self.status("ModelAlias", ns, name).ok()??;
        status
            .get("resolvedVersion")
            .and_then(Value::as_str)
            .map(str::to_string)
    }

    /// The evaluations of the revision, as documents with the status the store has for them
    /// (built once per pass until an evaluation or alias status changes).
    pub fn evaluations(
        &self,
        catalog: &Catalog,
    ) -> Result<std::rc::Rc<Vec<std::sync::Arc<Evaluation>>>, Error> {
        if let Some(e) = self.statuses.evaluations.borrow().as_ref() {
            return Ok(e.clone());
        }
        let built = std::rc::Rc::new(self.build_evaluations(catalog)?);
        *self.statuses.evaluations.borrow_mut() = Some(built.clone());
        Ok(built)
    }

    /// The evaluations the catalog calls for (built once until an alias or evaluation status
    /// changes).
    fn tasks(&self, catalog: &Catalog) -> std::rc::Rc<Vec<Task>> {
        if let Some(t) = self.statuses.tasks.borrow().as_ref() {
            return t.clone();
        }
        let resolved =
            |ns: &str, model: &str, alias: &str| self.resolved_alias(catalog, ns, model, alias);
        let built = std::rc::Rc::new(tasks::all(catalog, &resolved));
        *self.statuses.tasks.borrow_mut() = Some(built.clone());
        built
    }

    fn build_evaluations(
        &self,
        catalog: &Catalog,
    ) -> Result<Vec<std::sync::Arc<Evaluation>>, Error> {
        let mut evaluations = Vec::new();
        for t in self.tasks(catalog).iter() {
            if let Some(status) = self.evaluation_status(&t.namespace, &t.name)? {
                let mut e = Evaluation::new(&t.name, t.spec());
                e.metadata.namespace = Some(t.namespace.clone());
                e.status = Some((*status).clone());
                evaluations.push(std::sync::Arc::new(e));
            }
        }
        Ok(evaluations)
    }
}

/// Every deployment as git mode's read API and `slipway status` show it: namespace, name, the
/// status (the CRD's `ModelDeploymentStatus`), and from its record the model and the address the
/// local router serves it at.
pub fn deployment_rows(store: &Store) -> Result<Vec<Value>, StoreError> {
    let records: std::collections::HashMap<
        (String, String),
        crate::edges::store::DeploymentRecord,
    > = store
        .rollouts()?
        .into_iter()
        .map(|(ns, name, r)| ((ns, name), r))
        .collect();
    Ok(store
        .statuses("ModelDeployment")?
        .into_iter()
        .map(|(ns, name, status)| {
            let record = records.get(&(ns.clone(), name.clone()));
            json!({"namespace": ns, "name": name, "status": status,
                   "model": record.map(|r| r.model.as_str()),
                   "address": record.and_then(|r| r.address.as_deref())})
        })
        .collect())
}

#[cfg(test)]
mod tests;
