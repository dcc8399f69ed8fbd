//! The checks of a `ModelVersion` on its own.

use slipway_crd::ModelVersion;

use super::Checker;

impl Checker<'_> {
    /// Checks a version's label, artifact URI and digest, and its signature.
    pub(super) fn model_version(&mut self, v: &ModelVersion) {
        if v.spec.version.trim().is_empty() {
            self.invalid("spec.version", "version label is empty");
        }
        if v.spec.artifact.uri.trim().is_empty() {
            self.invalid("spec.artifact.uri", "artifact URI is empty");
        }
        let d = &v.spec.artifact.digest;
        let ok = d.split_once(':').is_some_and(|(algo, hex)| {
            !algo.is_empty() && !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit())
        });
        if !ok {
            self.invalid(
                "spec.artifact.digest",
                format!("`{d}` is not a digest; write `sha256:<hex>`"),
            );
        }
        for (field, why) in v
            .spec
            .signature
            .iter()
            .flat_map(|s| crate::signature::problems("spec.signature", s))
        {
            self.invalid(&field, why);
        }
    }
}
