//! Micro-benchmark of policy decisions: the example registry's `production` policy (3 CEL rules
//! and one approval requirement) deciding the 7 → 8 promotion, repeated.
//!
//! `cargo run --release --example bench_policy [ITERATIONS]`

use std::time::Instant;

/// The allocator of the `slipway` binary, so that decisions are timed as it makes them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use slipway::decide::catalog::results::{self, Results};
use slipway::decide::catalog::{Catalog, Resource, load_files};
use slipway::decide::policy::approvals::SignOffs;
use slipway::decide::policy::{ChangeFacts, DecisionInput, Requester};
use slipway_crd::promotion_policy::Operation;

fn main() {
    let iterations: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let files = slipway::edges::source::dir::read(&root.join("examples/football-frames"))
        .expect("example registry");
    let (cat, diags) = Catalog::from_files(&files);
    assert!(diags.is_empty(), "{diags:?}");
    let result_files =
        slipway::edges::source::dir::read(&root.join("examples/promotion-pr/results"))
            .expect("results");
    let (objects, _) = load_files(&result_files);
    let mut results = Results::default();
    results.add(objects.iter().filter_map(|o| match &o.resource {
        Resource::Evaluation(e) => Some(&**e),
        _ => None,
    }));
    let model = "pitch-frame-classifier";
    let input = DecisionInput {
        change: ChangeFacts {
            kind: "ModelAlias".into(),
            name: "pitch-frame-classifier-production".into(),
            namespace: "default".into(),
            operation: Operation::Update,
            model: Some(model.into()),
            alias: Some("production".into()),
            from: Some("7".into()),
            to: Some("8".into()),
            fields: Vec::new(),
            previous_alias: None,
            rollback: false,
            experiment: false,
        },
        candidate: results::version(cat.version("default", model, "8").expect("v8"), &results),
        current: results::version(cat.version("default", model, "7").expect("v7"), &results),
        model: results::model(cat.model("default", model).expect("model")),
        request: Requester {
            user: Some("dana".into()),
            groups: vec!["ml-leads".into()],
            source: "git".into(),
        },
        now: chrono::Utc::now(),
    };
    let members = |g: &str| cat.group("default", g).map(|g| g.spec.members.clone());
    let signoffs = SignOffs::default();
    let first = cat.policies.decide(&input, &signoffs, &members);
    let rules = first.rules.len();
    for _ in 0..iterations / 10 {
        std::hint::black_box(cat.policies.decide(&input, &signoffs, &members));
    }
    let start = Instant::now();
    for _ in 0..iterations {
        std::hint::black_box(cat.policies.decide(&input, &signoffs, &members));
    }
    let per_decision = start.elapsed().as_secs_f64() * 1e6 / iterations as f64;
    println!(
        "{iterations} decisions of {rules} rules + {} approval requirement: {per_decision:.1} µs per decision, {:.1} µs per rule (including context construction and the values-read records)",
        first.approvals.len(),
        per_decision / rules as f64
    );
}
