//! The store on real SQLite files in temporary folders.

use chrono::TimeZone;

use super::*;

fn at(h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, h, 0, 0).unwrap()
}

fn moved(h: u32, version: &str) -> Write {
    Write::History(HistoryEntry {
        id: 0,
        at: at(h),
        event: "AliasMoved".into(),
        namespace: "default".into(),
        model: "m".into(),
        subject: "ModelAlias/m-production".into(),
        version: Some(version.into()),
        alias: Some("production".into()),
        actor: Some("dana".into()),
        revision: Some("abc".into()),
        decision: Some("allowed".into()),
        message: format!("production → {version}"),
        data: serde_json::json!({"to": version}),
    })
}

#[test]
fn every_write_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let rollout = RolloutState {
        stable: Some("7".into()),
        candidate: Some("8".into()),
        step: 1,
        ..Default::default()
    };
    let record = EvaluationRecord {
        cache_key: "sha256:k".into(),
        namespace: "default".into(),
        name: "m-8-eval".into(),
        model: "m".into(),
        version: "8".into(),
        suite: "eval".into(),
        status: slipway_crd::EvaluationStatus {
            attempts: 1,
            ..Default::default()
        },
    };
    {
        let store = Store::open(dir.path()).unwrap();
        let ids = store
            .apply(&[
                Write::Status {
                    kind: "ModelAlias".into(),
                    namespace: "default".into(),
                    name: "a".into(),
                    status: serde_json::json!({"resolvedVersion": "8"}),
                },
                Write::Rollout {
                    namespace: "default".into(),
                    name: "api".into(),
                    record: DeploymentRecord {
                        state: rollout.clone(),
                        model: "m".into(),
                        address: Some("127.0.0.1:8080".into()),
                    },
                },
                Write::Evaluation(record.clone()),
                moved(9, "7"),
            ])
            .unwrap();
        assert_eq!(ids.len(), 1);
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.status("ModelAlias", "default", "a").unwrap().unwrap()["resolvedVersion"],
        "8"
    );
    let deployment = store.rollout("default", "api").unwrap();
    assert_eq!(
        (
            deployment.state,
            deployment.model.as_str(),
            deployment.address.as_deref()
        ),
        (rollout, "m", Some("127.0.0.1:8080"))
    );
    assert_eq!(
        store.rollout("default", "never").unwrap(),
        DeploymentRecord::default()
    );
    assert_eq!(
        store.evaluation(&record.namespace, "sha256:k").unwrap(),
        Some(record.clone())
    );
    // Kept per namespace: another namespace's run of the same content address is not its.
    assert_eq!(store.evaluation("team-b", "sha256:k").unwrap(), None);
    let h = store.history(&HistoryFilter::default()).unwrap();
    assert_eq!(
        (h.len(), h[0].at, h[0].data["to"].as_str()),
        (1, at(9), Some("7"))
    );
}

#[test]
fn what_served_at_a_time_comes_from_the_history() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .apply(&[moved(9, "6"), moved(12, "7"), moved(18, "8")])
        .unwrap();
    let served = |h| {
        store
            .alias_at("m", "production", at(h))
            .unwrap()
            .and_then(|e| e.version)
    };
    assert_eq!(served(8), None);
    assert_eq!(served(9).as_deref(), Some("6"));
    assert_eq!(served(17).as_deref(), Some("7"));
    assert_eq!(served(23).as_deref(), Some("8"));
}

#[test]
fn history_is_append_only_even_for_raw_sql() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.apply(&[moved(9, "6")]).unwrap();
    let raw = Connection::open(store.path()).unwrap();
    let err = raw
        .execute("UPDATE history SET version = '9'", [])
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    assert!(raw.execute("DELETE FROM history", []).is_err());
}

#[test]
fn a_database_from_a_newer_slipway_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).unwrap());
    Connection::open(dir.path().join("state.db"))
        .unwrap()
        .pragma_update(None, "user_version", 9)
        .unwrap();
    let err = Store::open(dir.path()).err().unwrap();
    assert!(
        err.to_string()
            .contains("schema version 9, newer than this Slipway (2)"),
        "{err}"
    );
    assert_eq!(err.category(), "store-version");
}

#[test]
fn an_unusable_state_folder_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-folder");
    std::fs::write(&file, "x").unwrap();
    let err = Store::open(&file.join("state")).err().unwrap();
    assert!(
        err.to_string()
            .starts_with("cannot create the state folder"),
        "{err}"
    );
}

/// A deployment record written before the model and address were kept still reads (its rollout
/// state intact, the model and address empty).
#[test]
fn an_older_rollout_record_reads_with_its_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // What older versions wrote: the rollout state alone.
    let old = RolloutState {
        stable: Some("7".into()),
        traffic: [("7".to_string(), 100)].into(),
        ..Default::default()
    };
    store
        .conn()
        .execute(
            "INSERT INTO rollouts (namespace, name, state) VALUES ('default', 'api', ?1)",
            params![serde_json::to_string(&old).unwrap()],
        )
        .unwrap();
    let record = store.rollout("default", "api").unwrap();
    assert_eq!(record.state.stable.as_deref(), Some("7"));
    assert_eq!(record.state.traffic.get("7"), Some(&100));
    assert_eq!((record.model.as_str(), record.address), ("", None));
}

#[test]
fn schema_passes_are_kept_per_build_and_other_builds_are_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert!(
        store.schema_passes("build-a").unwrap().is_empty(),
        "no table yet"
    );
    store
        .remember_schema_passes("build-a", &[[1; 32], [2; 32]])
        .unwrap();
    store.remember_schema_passes("build-a", &[[2; 32]]).unwrap();
    let mut a = store.schema_passes("build-a").unwrap();
    a.sort();
    assert_eq!(a, vec![[1; 32], [2; 32]]);
    store.remember_schema_passes("build-b", &[[3; 32]]).unwrap();
    assert_eq!(store.schema_passes("build-b").unwrap(), vec![[3; 32]]);
    assert!(store.schema_passes("build-a").unwrap().is_empty());
}

#[test]
fn a_schema_1_database_is_read_as_it_is_and_upgraded_by_slipway_run_with_an_empty_reuse_cache() {
    let dir = tempfile::tempdir().unwrap();
    {
        // A database as Slipway wrote it at schema 1: one run per content address.
        let raw = Connection::open(dir.path().join("state.db")).unwrap();
        raw.execute_batch(
            "CREATE TABLE evaluations (
               cache_key TEXT PRIMARY KEY, namespace TEXT NOT NULL, name TEXT NOT NULL,
               model TEXT NOT NULL, version TEXT NOT NULL, suite TEXT NOT NULL, status TEXT NOT NULL);
             CREATE INDEX evaluations_by_version ON evaluations (namespace, model, version);
             INSERT INTO evaluations VALUES
               ('sha256:k', 'team-a', 'm-2-eval', 'm', '2', 'offline', '{\"phase\":\"Succeeded\"}');
             PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    let version = || -> i64 {
        Connection::open(dir.path().join("state.db"))
            .unwrap()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap()
    };
    // A reader (`slipway status`) reads it as it is and writes nothing.
    let reader = Store::open_reader(dir.path()).unwrap();
    assert!(reader.evaluation("team-a", "sha256:k").unwrap().is_some());
    drop(reader);
    assert_eq!(version(), 1);
    // `slipway run` upgrades it: the reuse cache starts empty (a schema-1 row may hold another
    // namespace's results under its own), and the same content address is a row per namespace.
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(version(), 2);
    assert_eq!(store.evaluation("team-a", "sha256:k").unwrap(), None);
    let record = |ns: &str, name: &str| EvaluationRecord {
        cache_key: "sha256:k".into(),
        namespace: ns.into(),
        name: name.into(),
        model: "m".into(),
        version: "2".into(),
        suite: "offline".into(),
        status: Default::default(),
    };
    store
        .apply(&[
            Write::Evaluation(record("team-a", "m-2-eval")),
            Write::Evaluation(record("team-b", "m-2-b")),
        ])
        .unwrap();
    assert_eq!(
        store.evaluation("team-a", "sha256:k").unwrap(),
        Some(record("team-a", "m-2-eval"))
    );
    // Opened again: nothing to migrate, nothing lost.
    drop(store);
    let again = Store::open(dir.path()).unwrap();
    assert_eq!(
        again.evaluation("team-b", "sha256:k").unwrap(),
        Some(record("team-b", "m-2-b"))
    );
}
