//! A label means one artifact, even after its `ModelVersion` is deleted: the controller holds
//! every version with its retire finalizer, and when one is deleted it records the label and
//! artifact digest in its model's status (`retiredVersions`, which admission reads) before it
//! lets the version go.

use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use slipway_crd::model_version::RETIRE_FINALIZER;
use slipway_crd::registered_model::RetiredVersion;
use slipway_crd::{ModelVersion, RegisteredModel};

use super::context::{Context, Error};

/// The field manager of `retiredVersions`: the model reconciler's status apply leaves what it
/// does not own alone.
const RETIRER: &str = "slipway-retire";

/// Whether `version` holds the retire finalizer.
fn held(version: &ModelVersion) -> bool {
    version.finalizers().iter().any(|f| f == RETIRE_FINALIZER)
}

/// Puts the retire finalizer on a version that lacks it (the resource version makes the patch
/// fail, to be tried again, if the version changed since it was read); returns whether it did
/// (the version is then looked at again as it is now).
pub async fn hold(ctx: &Context, ns: &str, version: &ModelVersion) -> Result<bool, Error> {
    if held(version) || version.metadata.deletion_timestamp.is_some() {
        return Ok(false);
    }
    let mut finalizers = version.finalizers().to_vec();
    finalizers.push(RETIRE_FINALIZER.to_string());
    set_finalizers(ctx, ns, version, &finalizers).await?;
    Ok(true)
}

/// Writes `version`'s finalizers (the resource version makes the patch fail, to be tried
/// again, if the version changed since it was read).
async fn set_finalizers(
    ctx: &Context,
    ns: &str,
    version: &ModelVersion,
    finalizers: &[String],
) -> Result<(), Error> {
    let patch = json!({"metadata": {
        "finalizers": finalizers,
        "resourceVersion": version.resource_version(),
    }});
    let api: Api<ModelVersion> = Api::namespaced(ctx.client.clone(), ns);
    api.patch(
        &version.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// A version being deleted: its label and artifact go into its model's `retiredVersions`
/// (unless there already), then the finalizer comes off.
pub async fn retire(ctx: &Context, ns: &str, version: &ModelVersion) -> Result<(), Error> {
    if !held(version) {
        return Ok(());
    }
    let (model, label) = (&version.spec.model, &version.spec.version);
    let digest = &version.spec.artifact.digest;
    let models: Api<RegisteredModel> = Api::namespaced(ctx.client.clone(), ns);
    // Read now, not from the cache: the list is written whole, guarded by this read's version.
    if let Some(m) = models.get_opt(model).await? {
        let mut retired = m
            .status
            .as_ref()
            .map(|s| s.retired_versions.clone())
            .unwrap_or_default();
        if !retired
            .iter()
            .any(|r| &r.version == label && &r.digest == digest)
        {
            retired.push(RetiredVersion {
                version: label.clone(),
                digest: digest.clone(),
                retired_at: Some(chrono::Utc::now()),
            });
            let patch = json!({
                "metadata": {"resourceVersion": m.resource_version()},
                "status": {"retiredVersions": retired},
            });
            let params = PatchParams {
                field_manager: Some(RETIRER.into()),
                ..PatchParams::default()
            };
            models
                .patch_status(model, &params, &Patch::Merge(&patch))
                .await?;
            tracing::info!(model = %model, version = %label, namespace = %ns, "version retired: its label keeps its artifact");
        }
    }
    let rest: Vec<String> = version
        .finalizers()
        .iter()
        .filter(|f| *f != RETIRE_FINALIZER)
        .cloned()
        .collect();
    set_finalizers(ctx, ns, version, &rest).await
}
