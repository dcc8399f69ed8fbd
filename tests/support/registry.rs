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

/// Version 9 of the football-frames example: version 8's document of `versions` (the example's
/// `versions.yaml`) under label 9 with its own artifact, and `edits` (from, to) made to it.
pub fn example_nine(versions: &str, edits: &[(&str, &str)]) -> String {
    let mut nine = versions
        .split("---\n")
        .nth(1)
        .unwrap()
        .replace("pitch-frame-classifier-8", "pitch-frame-classifier-9")
        .replace("version: \"8\"", "version: \"9\"")
        .replace("/8/model.onnx", "/9/model.onnx");
    for (from, to) in edits {
        assert!(nine.contains(from), "{from} not in version 8");
        nine = nine.replace(from, to);
    }
    nine
}
