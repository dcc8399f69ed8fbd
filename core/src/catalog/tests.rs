//! One test per loader error class: each names file, line, column, object and field.

use crate::diagnostics::Category;
use crate::testing::{catalog, diagnostics, registry};

const HEAD: &str = "apiVersion: slipway.dev/v1alpha1\n";

fn only(yaml: &str) -> crate::diagnostics::Diagnostic {
    let d = diagnostics(yaml);
    assert_eq!(d.len(), 1, "{d:#?}");
    d.into_iter().next().unwrap()
}

#[test]
fn bad_yaml_is_a_syntax_error_with_a_position() {
    let d = only(&format!(
        "{HEAD}kind: Group\nmetadata: {{name: g\nspec: {{members: []}}\n"
    ));
    assert_eq!(d.category, Category::Syntax);
    assert_eq!(d.file, "f.yaml");
    assert!(d.line >= 3, "{d}");
    assert!(d.message.starts_with("invalid YAML"));
}

#[test]
fn a_syntax_error_does_not_hide_other_documents() {
    let yaml = format!(
        "{HEAD}kind: Group\nmetadata: {{name: [\n---\n{HEAD}kind: Group\nmetadata: {{name: ok}}\nspec: {{members: [a], extra: 1}}\n"
    );
    let d = diagnostics(&yaml);
    assert_eq!(d.len(), 2, "{d:#?}");
    assert_eq!(d[0].category, Category::Syntax);
    assert_eq!(
        (d[1].category, d[1].line, d[1].field.as_str()),
        (Category::UnknownField, 8, "spec.extra")
    );
}

#[test]
fn an_unknown_field_names_its_path_and_suggests_a_fix() {
    let d = only(&format!(
        "{HEAD}kind: Group\nmetadata:\n  name: g\nspec:\n  memebers: [a]\n  members: [a]\n"
    ));
    assert_eq!(
        (d.category, d.line, d.column),
        (Category::UnknownField, 6, 3)
    );
    assert_eq!(d.field, "spec.memebers");
    assert_eq!(d.kind.as_deref(), Some("Group"));
    assert_eq!(d.object.as_deref(), Some("default/g"));
    assert!(
        d.message.contains("did you mean `members`?"),
        "{}",
        d.message
    );
}

#[test]
fn a_wrong_type_points_at_the_value() {
    let d = only(&format!(
        "{HEAD}kind: ModelAlias\nmetadata: {{name: a}}\nspec:\n  model: m\n  alias: p\n  version: [1, 2]\n"
    ));
    assert_eq!((d.category, d.line, d.column), (Category::WrongType, 7, 12));
    assert_eq!(d.field, "spec.version");
}

#[test]
fn a_missing_field_names_the_field() {
    let d = only(&format!(
        "{HEAD}kind: ModelAlias\nmetadata: {{name: a}}\nspec:\n  model: m\n  alias: p\n"
    ));
    assert_eq!(d.category, Category::MissingField);
    assert_eq!(d.field, "spec.version");
    assert_eq!(d.line, 5);
    assert!(d.message.contains("missing field `version`"));
}

#[test]
fn a_missing_name_is_reported() {
    let d = only(&format!(
        "{HEAD}kind: Group\nmetadata: {{}}\nspec: {{members: []}}\n"
    ));
    assert_eq!(
        (d.category, d.field.as_str()),
        (Category::MissingField, "metadata.name")
    );
}

#[test]
fn an_unknown_kind_suggests_the_closest() {
    let d = only(&format!("{HEAD}kind: ModelAlais\nmetadata: {{name: a}}\n"));
    assert_eq!(
        (d.category, d.line, d.column),
        (Category::UnknownKind, 2, 7)
    );
    assert!(d.message.contains("did you mean `ModelAlias`?"));
}

#[test]
fn an_unknown_api_version_is_reported() {
    let d =
        only("apiVersion: slipway.dev/v2\nkind: Group\nmetadata: {name: g}\nspec: {members: []}\n");
    assert_eq!(
        (d.category, d.line, d.column),
        (Category::UnknownKind, 1, 13)
    );
    assert!(d.message.contains("supports `slipway.dev/v1alpha1` only"));
}

#[test]
fn duplicate_objects_point_at_the_first() {
    let g = format!("{HEAD}kind: Group\nmetadata: {{name: g}}\nspec: {{members: []}}\n");
    let d = only(&format!("{g}---\n{g}"));
    assert_eq!((d.category, d.line, d.column), (Category::Duplicate, 8, 18));
    assert!(
        d.message.contains("already defined at f.yaml:1"),
        "{}",
        d.message
    );
}

#[test]
fn duplicate_version_labels_are_reported() {
    let yaml = registry("1").replace(
        "metadata: {name: m-2}\nspec: {model: m, version: \"2\"",
        "metadata: {name: m-2}\nspec: {model: m, version: \"1\"",
    );
    let d = diagnostics(&yaml);
    assert!(
        d.iter()
            .any(|d| d.category == Category::Duplicate && d.field == "spec.version"),
        "{d:#?}"
    );
}

#[test]
fn an_alias_to_a_missing_version_is_a_broken_reference() {
    let d = diagnostics(&registry("9"));
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_eq!(
        (d[0].category, d[0].field.as_str()),
        (Category::BrokenReference, "spec.version")
    );
    assert!(
        d[0].message
            .contains("model `m` has no version `9` (versions: 1, 2)"),
        "{}",
        d[0].message
    );
}

#[test]
fn a_deployment_of_a_missing_alias_is_a_broken_reference() {
    let d = diagnostics(
        &registry("1").replace("  alias: production\n  target", "  alias: prod\n  target"),
    );
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_eq!(
        (d[0].category, d[0].kind.as_deref()),
        (Category::BrokenReference, Some("ModelDeployment"))
    );
    assert!(
        d[0].message
            .contains("has no alias `prod` (aliases: production)")
    );
}

#[test]
fn an_evaluation_of_a_missing_version_is_a_broken_reference() {
    let ev = "---\napiVersion: slipway.dev/v1alpha1\nkind: Evaluation\nmetadata: {name: e}\nspec: {model: m, version: \"3\", suite: s, dataset: {uri: x}, runner: {local: {command: [x]}}}\n";
    let d = diagnostics(&format!("{}\n{ev}", registry("1")));
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_eq!(
        (d[0].category, d[0].kind.as_deref()),
        (Category::BrokenReference, Some("Evaluation"))
    );
}

#[test]
fn a_policy_naming_a_missing_group_is_a_broken_reference() {
    let d = diagnostics(
        &registry("1").replace("metadata: {name: ml-leads}", "metadata: {name: leads}"),
    );
    assert!(
        d.iter().all(|d| d.category == Category::BrokenReference
            && d.field.starts_with("spec.approvals[0].from")),
        "{d:#?}"
    );
    assert!(d[0].message.contains("Group `ml-leads` does not exist"));
}

#[test]
fn a_bad_policy_expression_is_reported_at_load() {
    let d = only(&format!(
        "{HEAD}kind: PromotionPolicy\nmetadata: {{name: p}}\nspec:\n  rules:\n    - name: r\n      expression: candidate.metrics.f1 >\n"
    ));
    assert_eq!(
        (d.category, d.field.as_str(), d.line),
        (Category::Invalid, "spec.rules[0].expression", 7)
    );
}

#[test]
fn invariants_are_checked() {
    let yaml = format!(
        "{HEAD}kind: ModelDeployment\nmetadata: {{name: d}}\nspec:\n  model: m\n  target: {{}}\n  strategy:\n    type: Canary\n    steps: [{{weight: 50, pause: soon}}, {{weight: 20}}]\n"
    );
    let d = diagnostics(&yaml);
    let fields: Vec<&str> = d.iter().map(|d| d.field.as_str()).collect();
    for f in [
        "spec",
        "spec.target",
        "spec.strategy.steps[0].pause",
        "spec.strategy.steps[1].weight",
        "spec.model",
    ] {
        assert!(fields.contains(&f), "{f} not in {fields:?}");
    }
}

#[test]
fn a_report_names_a_template_and_a_configmap_by_its_name() {
    let model = |report: &str| {
        format!("{HEAD}kind: RegisteredModel\nmetadata: {{name: m}}\nspec:\n  report: {report}\n")
    };
    let d = only(&model("{configMap: Team_Report, markdown: md}"));
    assert_eq!(d.field.as_str(), "spec.report.configMap");
    assert!(
        d.message.contains("`Team_Report` is not a ConfigMap name"),
        "{}",
        d.message
    );
    let d = only(&model("{configMap: team-report}"));
    assert_eq!(d.field.as_str(), "spec.report");
    assert!(diagnostics(&model("{markdown: reports/team.md.j2}")).is_empty());
}

#[test]
fn every_error_of_a_run_is_reported() {
    let yaml = format!(
        "{HEAD}kind: Group\nmetadata: {{name: a}}\nspec: {{members: [], x: 1}}\n---\n{HEAD}kind: Grup\nmetadata: {{name: b}}\n---\n{HEAD}kind: Group\nmetadata: {{name: c}}\nspec: {{y: 2, members: []}}\n"
    );
    assert_eq!(diagnostics(&yaml).len(), 3);
}

#[test]
fn non_utf8_files_are_reported_not_panicked_on() {
    let (_, d) = crate::catalog::Catalog::from_files(&[crate::catalog::SourceFile {
        path: "bin.yaml".into(),
        content: vec![0xff, 0xfe, 0x00],
        ..Default::default()
    }]);
    assert_eq!(d[0].category, Category::Syntax);
}

#[test]
fn the_example_registry_is_valid() {
    let files = crate::testing::read_folder(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/football-frames"
    )));
    let (cat, d) = crate::catalog::Catalog::from_files(&files);
    assert!(d.is_empty(), "{d:#?}");
    assert_eq!(
        cat.version_labels("default", "pitch-frame-classifier"),
        vec!["7", "8"]
    );
    let _ = catalog;
}

/// An amended catalog holds what a catalog built from the changed objects holds, and reports the
/// problems of the changed objects that a full build reports for them.
#[test]
fn an_amended_catalog_equals_one_built_from_the_changed_objects() {
    use super::{Catalog, ObjectKey, load_files};
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/football-frames");
    let files = crate::testing::read_folder(&root);
    let (objects, _) = load_files(&files);
    let (full, _) = Catalog::build(objects.clone());
    let version = |label: &str, model: &str| {
        let yaml = format!(
            "{HEAD}kind: ModelVersion\nmetadata: {{name: extra-{label}}}\nspec:\n  model: {model}\n  version: \"{label}\"\n  artifact: {{uri: s3://b/m.onnx, digest: \"sha256:{}\"}}\n  source: {{commit: abc}}\n",
            "a".repeat(64)
        );
        let (mut o, d) = load_files(&[super::SourceFile {
            path: format!("extra-{label}.yaml"),
            content: yaml.into_bytes(),
            id: None,
            from_api_server: false,
        }]);
        assert!(d.is_empty(), "{d:#?}");
        o.pop().unwrap()
    };
    let model = objects
        .iter()
        .find_map(|o| o.resource.model().map(str::to_string))
        .unwrap();
    let removed = objects
        .iter()
        .find(|o| o.key.kind == slipway_crd::Kind::ModelVersion)
        .unwrap()
        .key
        .clone();
    let (good, broken) = (version("77", &model), version("78", "no-such-model"));
    let changes: Vec<(ObjectKey, Option<super::Object>)> = vec![
        (good.key.clone(), Some(good.clone())),
        (broken.key.clone(), Some(broken.clone())),
        (removed.clone(), None),
    ];
    let (amended, diags) = full.amended(changes);

    let mut expected: Vec<_> = objects.into_iter().filter(|o| o.key != removed).collect();
    expected.extend([good.clone(), broken.clone()]);
    let (built, built_diags) = Catalog::build(expected);
    let keys = |c: &Catalog| {
        let mut k: Vec<ObjectKey> = c.objects().iter().map(|o| o.key.clone()).collect();
        k.sort();
        k
    };
    assert_eq!(keys(&amended), keys(&built));
    assert!(amended.get(&removed).is_none());
    assert_eq!(
        amended.version_labels("default", &model),
        built.version_labels("default", &model)
    );
    let of_changed = |d: &[crate::diagnostics::Diagnostic]| {
        let mut m: Vec<String> = d
            .iter()
            .filter(|d| d.file.starts_with("extra-"))
            .map(|d| d.to_string())
            .collect();
        m.sort();
        m
    };
    assert_eq!(of_changed(&diags), of_changed(&built_diags));
    assert_eq!(of_changed(&diags).len(), 1, "{diags:#?}");
    assert!(
        of_changed(&diags)[0].contains("no-such-model"),
        "{diags:#?}"
    );
    // A second version 77 of the same model is refused as a duplicate, as in a full build.
    let mut twin = version("77", &model);
    twin.key.name = "extra-77-twin".into();
    let (_, diags) = amended.amended([(twin.key.clone(), Some(twin))]);
    assert!(
        diags
            .iter()
            .any(|d| d.category == Category::Duplicate
                && d.message.contains("already has version `77`")),
        "{diags:#?}"
    );
}

#[test]
fn one_typo_is_one_error_not_a_cascade_of_broken_references() {
    // `primaryMetrics` for `primaryMetric`: the model fails to load; what refers to it (its
    // versions, alias, deployment) is not reported as referring to a model that does not exist.
    let typo = registry("1").replacen("  primaryMetric: {", "  primaryMetrics: {", 1);
    assert_ne!(typo, registry("1"));
    let d = diagnostics(&typo);
    assert!(!d.is_empty());
    assert!(
        d.iter().all(|d| d.category != Category::BrokenReference),
        "{d:#?}"
    );
    assert!(
        d.iter()
            .all(|d| d.kind.as_deref() == Some("RegisteredModel")),
        "{d:#?}"
    );
    assert!(
        d.iter().any(|d| d.message.contains("primaryMetrics")),
        "{d:#?}"
    );
    // An unquoted `version: 2`: the version's own error, not also "has no version `2`".
    let unquoted = registry("2").replacen("version: \"2\"", "version: 2", 1);
    assert_ne!(unquoted, registry("2"));
    let d = diagnostics(&unquoted);
    assert!(
        d.iter().all(|d| d.kind.as_deref() == Some("ModelVersion")),
        "{d:#?}"
    );
    assert!(
        !d.iter().any(|d| d.message.contains("has no version")),
        "{d:#?}"
    );
    // A reference to something that truly is not there is still broken.
    let missing = registry("9");
    assert!(
        diagnostics(&missing)
            .iter()
            .any(|d| d.message.contains("has no version `9`"))
    );
}

#[test]
fn a_tab_is_called_a_tab_wherever_it_breaks_the_yaml() {
    for yaml in [
        format!("{HEAD}kind: Group\nmetadata:\n\tname: leads\nspec: {{members: [a]}}\n"),
        format!("{HEAD}kind: Group\nmetadata:\n  name: leads\nspec:\n  members:\n\t- a\n"),
        format!("{HEAD}kind: Group\nmetadata:\n  name: leads\n\tspec: {{members: [a]}}\n"),
    ] {
        let d = diagnostics(&yaml);
        assert!(
            d.iter().any(|d| d
                .message
                .contains("has a tab: YAML indents with spaces only")),
            "{yaml:?}: {d:#?}"
        );
    }
}
