//! Registry documents the suites share: a model's versions (artifact digests that end in the
//! version number) and its production alias, each document starting with `---`.

/// A `ModelVersion` `MODEL-V` for each of `versions`, its artifact at `s3://models/MODEL/V/FILE`.
pub fn versions(model: &str, versions: &[&str], file: &str) -> String {
    versions
        .iter()
        .map(|v| {
            format!(
                "---\napiVersion: slipway.dev/v1alpha1\nkind: ModelVersion\nmetadata: {{name: {model}-{v}}}\nspec: {{model: {model}, version: \"{v}\", artifact: {{uri: \"s3://models/{model}/{v}/{file}\", digest: \"sha256:{v:0>64}\"}}}}\n"
            )
        })
        .collect()
}

/// The alias `MODEL-production` at `version`.
pub fn production(model: &str, version: &str) -> String {
    format!(
        "---\napiVersion: slipway.dev/v1alpha1\nkind: ModelAlias\nmetadata: {{name: {model}-production}}\nspec: {{model: {model}, alias: production, version: \"{version}\"}}\n"
    )
}
