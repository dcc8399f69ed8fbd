//! The rollouts of a pass: local model servers and SageMaker endpoints (`--once`: stepped until
//! they settle).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::{Loop, sleep_unless};
use crate::decide::catalog::{Catalog, Resource};
use crate::edges::progress::Progress;
use crate::edges::serving::local::LocalTarget;
use crate::edges::source::remote::Root;
use crate::modes::git::{PassReport, Reconciler};

impl Loop {
    /// Rolls out the local deployments (`--once`: until every one has settled); when to look
    /// again.
    pub(super) fn deploy_local(
        &mut self,
        reconciler: &Reconciler,
        catalog: &Catalog,
        root: &Root,
        report: &mut PassReport,
    ) -> anyhow::Result<Option<Duration>> {
        let has_local = catalog.objects().iter().any(|o| {
            matches!(&o.resource, Resource::ModelDeployment(d) if d.spec.target.local.is_some())
        });
        let logs = self.settings.state.join("logs");
        // Without local deployments, still once to stop what an earlier run left serving.
        if !has_local && self.target.is_none() && !LocalTarget::left_behind(&logs) {
            return Ok(None);
        }
        let root = root.path().map_err(anyhow::Error::msg)?;
        if self.target.is_none() {
            let target = LocalTarget::new(&root, &logs)?;
            self.target = Some(
                target
                    .exporting(self.shared.metrics.traffic.clone())
                    .keep_serving(self.settings.keep_serving),
            );
        }
        let Some(target) = self.target.as_mut() else {
            return Ok(None);
        };
        target.set_root(&root);
        until_settled(
            self.settings.once,
            &self.stop,
            &self.live,
            "rollouts in progress: waiting for the next step",
            || Ok(reconciler.deploy(catalog, target, report)?),
        )
    }

    /// Rolls out the declared SageMaker deployments, and deletes the endpoints of removed ones
    /// (`--once`: until the endpoint updates settle); when to look again.
    pub(super) fn deploy_sagemaker(
        &mut self,
        reconciler: &Reconciler,
        catalog: &Catalog,
        report: &mut PassReport,
    ) -> anyhow::Result<Option<Duration>> {
        let declared = catalog.objects().iter().any(|o| {
            matches!(&o.resource, Resource::ModelDeployment(d) if d.spec.target.sagemaker.is_some())
        });
        let left = || -> anyhow::Result<bool> {
            Ok(self
                .store
                .statuses("ModelDeployment")?
                .iter()
                .any(|(_, _, s)| s["endpoint"].is_object()))
        };
        if !declared && !left()? {
            return Ok(None);
        }
        self.sagemaker_pass(reconciler, catalog, report)
    }

    #[cfg(feature = "sagemaker")]
    fn sagemaker_pass(
        &mut self,
        reconciler: &Reconciler,
        catalog: &Catalog,
        report: &mut PassReport,
    ) -> anyhow::Result<Option<Duration>> {
        if self.sagemaker.is_none() {
            self.sagemaker = Some(crate::edges::serving::sagemaker::aws::SageMaker::new()?);
        }
        let Some(aws) = self.sagemaker.as_mut() else {
            return Ok(None);
        };
        until_settled(
            self.settings.once,
            &self.stop,
            &self.live,
            "SageMaker updates in progress: waiting for the endpoint",
            || Ok(reconciler.deploy_sagemaker(catalog, aws, report)?),
        )
    }

    #[cfg(not(feature = "sagemaker"))]
    fn sagemaker_pass(
        &mut self,
        _: &Reconciler,
        _: &Catalog,
        report: &mut PassReport,
    ) -> anyhow::Result<Option<Duration>> {
        report.deploy_errors.push(
            "this slipway was built without the `sagemaker` feature: SageMaker deployments are \
             not rolled out (build with default features)"
                .into(),
        );
        Ok(None)
    }
}

/// One rollout step, then (`--once`) the next ones as their waits come due, until none is left
/// to wait for or the run is stopped; the last step's wait.
fn until_settled(
    once: bool,
    stop: &AtomicBool,
    live: &Progress,
    waiting: &str,
    mut step: impl FnMut() -> anyhow::Result<Option<Duration>>,
) -> anyhow::Result<Option<Duration>> {
    let mut wait = step()?;
    while once
        && !stop.load(Ordering::Relaxed)
        && let Some(w) = wait
    {
        live.waiting(waiting);
        sleep_unless(stop, w.min(Duration::from_secs(1)));
        wait = step()?;
    }
    Ok(wait)
}
