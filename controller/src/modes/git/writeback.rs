//! Rollbacks written back to a git source: the core says which rollback the source does not
//! know of yet and what change undoes it ([`rollout::writeback`]); here the change is committed
//! on the reconciled commit, pushed as a branch, a pull request opened (with a GitHub token),
//! and the outcome recorded in the status and the history (whose notification carries the
//! link).

use crate::decide::catalog::{Catalog, Resource};
use crate::decide::events::Event as Happened;
use crate::decide::rollout::writeback::{self, Done};
use crate::edges::github::GitHub;
use crate::edges::source::remote::Remote;
use crate::edges::store::Write;

use super::{Error, PassReport, Reconciler};

/// Where rollbacks are written back to.
pub struct Destination<'a> {
    /// The source's remote.
    pub remote: &'a Remote,
    /// Where pull requests are opened, if anywhere.
    pub github: Option<&'a GitHub>,
    /// Where people reach the UI (the report link), if anywhere.
    pub public_url: Option<&'a str>,
}

impl Reconciler<'_> {
    /// Writes back every rollback the source does not know of yet.
    pub fn write_back(
        &self,
        catalog: &Catalog,
        to: &Destination,
        out: &mut PassReport,
    ) -> Result<(), Error> {
        for obj in catalog.objects() {
            let Resource::ModelDeployment(d) = &obj.resource else {
                continue;
            };
            let (ns, name) = (&obj.key.namespace, &obj.key.name);
            let previous = self.deployment_status(ns, name)?;
            let asked = writeback::asked(catalog, ns, d);
            let Some(wanted) = writeback::wanted(&previous, asked.as_deref(), (self.now)()) else {
                continue;
            };
            let report = to
                .public_url
                .map(|u| format!("{u}/ui/{ns}/{}", d.spec.model));
            let read = |file: &str| to.remote.file(self.commit(), file);
            let proposal =
                writeback::propose(catalog, (ns, ns), d, &wanted, &read, report.as_deref());
            let done = match &proposal {
                Ok(p) => {
                    crate::edges::github::push_and_propose(to.remote, self.commit(), p, to.github)
                }
                Err(why) => Done::Failed(why.clone()),
            };
            let (status, news) = writeback::recorded(
                &previous,
                &wanted,
                proposal.as_ref().map_err(String::as_str),
                &done,
                (self.now)(),
            );
            let mut writes = vec![Write::Status {
                kind: "ModelDeployment".into(),
                namespace: ns.clone(),
                name: name.clone(),
                status: serde_json::to_value(&status)?,
            }];
            if let Some((kind, message)) = news {
                let mut h = self.history(
                    Happened::Rollout(kind),
                    ns,
                    &d.spec.model,
                    format!("ModelDeployment/{name}"),
                );
                h.version = Some(wanted.version.clone());
                h.alias = d.spec.alias.clone();
                h.message = format!("{name}: {message}");
                (self.progress)(&h.message);
                out.rollout_events.push(h.message.clone());
                writes.push(Write::History(h));
            }
            self.apply(&writes)?;
        }
        Ok(())
    }

    /// The reconciled commit (a prefix of its id), as the revision names it (`git:…`).
    fn commit(&self) -> &str {
        self.revision.strip_prefix("git:").unwrap_or(&self.revision)
    }
}
