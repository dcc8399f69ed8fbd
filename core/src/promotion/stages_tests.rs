use super::*;

fn at(h: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-07T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
        + chrono::Duration::hours(h)
}

fn moved(to: &str, digest: &str, h: i64) -> AliasMove {
    AliasMove {
        from: None,
        to: to.into(),
        artifact_digest: Some(digest.into()),
        by: None,
        at: Some(at(h)),
        revision: None,
        decision: AliasDecision::Allowed,
        message: None,
    }
}

fn staging(moves: Vec<AliasMove>) -> Histories {
    [("staging".to_string(), moves)].into()
}

#[test]
fn served_time_adds_up_the_stints_with_the_same_artifact_until_now() {
    let h = staging(vec![
        moved("7", "sha256:a", 0),
        moved("8", "sha256:b", 2),
        moved("9", "sha256:c", 5),
        moved("8", "sha256:b", 6),
    ]);
    let r = Record::of(&h, "8", "sha256:b", at(10));
    // 2h..5h, then 6h..now (10h).
    assert_eq!(r.served_in("staging"), chrono::Duration::hours(7));
    assert_eq!(r.served["staging"].1, Some(at(6)));
    assert!(!r.rolled_back_in("staging"));
    // The label registered again with another artifact has served nothing.
    let again = Record::of(&h, "8", "sha256:other", at(10));
    assert_eq!(again.served_in("staging"), chrono::Duration::zero());
    assert!(again.served.is_empty());
    // Denied moves and moves without a time count for nothing.
    let mut denied = moved("10", "sha256:d", 7);
    denied.decision = AliasDecision::Denied;
    let mut untimed = moved("10", "sha256:d", 7);
    untimed.at = None;
    let h = staging(vec![moved("9", "sha256:c", 0), denied, untimed]);
    assert!(Record::of(&h, "10", "sha256:d", at(10)).served.is_empty());
}

#[test]
fn a_move_back_to_what_served_before_is_the_candidates_rollback() {
    let h = staging(vec![
        moved("7", "sha256:a", 0),
        moved("8", "sha256:b", 2),
        moved("7", "sha256:a", 3),
    ]);
    let r = Record::of(&h, "8", "sha256:b", at(10));
    assert_eq!(r.served_in("staging"), chrono::Duration::hours(1));
    assert_eq!(r.served["staging"].1, None, "not serving there now");
    assert_eq!(r.rollbacks, vec![("staging".into(), at(3), "7".into())]);
    // Moving on to a new version is no rollback.
    let h = staging(vec![moved("7", "sha256:a", 0), moved("8", "sha256:b", 2)]);
    assert!(Record::of(&h, "7", "sha256:a", at(3)).rollbacks.is_empty());
    let json = Record::of(&h, "8", "sha256:b", at(3)).json();
    assert_eq!(json["served"]["staging"], 3600);
    assert_eq!(json["aliases"], json!(["staging"]));
    assert_eq!(json["since"]["staging"], at(2).to_rfc3339());
}

fn model(soak: &str) -> slipway_crd::RegisteredModel {
    let mut m = slipway_crd::RegisteredModel::new("m", Default::default());
    m.spec.soak = Some(slipway_crd::registered_model::Soak {
        alias: "staging".into(),
        duration: soak.into(),
    });
    m
}

#[test]
fn a_soak_says_what_is_left_and_when_it_ends() {
    let h = staging(vec![moved("7", "sha256:a", 0), moved("8", "sha256:b", 2)]);
    let now = at(5);
    let s = Soak::of(&model("24h"), &Record::of(&h, "8", "sha256:b", now)).unwrap();
    assert!(!s.met());
    assert_eq!(s.earliest(now), Some(at(26)));
    assert_eq!(
        s.describe("8", now),
        "version 8 served in staging for 3h of 24h; earliest 2026-12-08 02:00 UTC"
    );
    let later = Soak::of(&model("24h"), &Record::of(&h, "8", "sha256:b", at(26))).unwrap();
    assert!(later.met());
    assert_eq!(later.earliest(at(26)), None);
    // Not in staging now: waiting does not help.
    let h = staging(vec![
        moved("7", "sha256:a", 0),
        moved("8", "sha256:b", 2),
        moved("9", "sha256:c", 3),
    ]);
    let gone = Soak::of(&model("24h"), &Record::of(&h, "8", "sha256:b", now)).unwrap();
    assert_eq!(gone.earliest(now), None);
    assert!(
        gone.describe("8", now)
            .ends_with("does not serve there now; move staging to it first")
    );
    // Rolled back there: never, however long it served.
    let h = staging(vec![
        moved("7", "sha256:a", 0),
        moved("8", "sha256:b", 2),
        moved("7", "sha256:a", 30),
    ]);
    let back = Soak::of(&model("1h"), &Record::of(&h, "8", "sha256:b", at(40))).unwrap();
    assert!(!back.met() && back.earliest(at(40)).is_none());
    assert!(back.describe("8", at(40)).contains("was rolled back there"));
    assert_eq!(Soak::of(&model("not a duration"), &Record::default()), None);
}

#[test]
fn durations_read_as_people_write_them() {
    assert_eq!(human(chrono::Duration::seconds(0)), "0s");
    assert_eq!(human(chrono::Duration::seconds(5400)), "1h30m");
    assert_eq!(human(chrono::Duration::seconds(86_400)), "24h");
    assert_eq!(human(chrono::Duration::seconds(61)), "1m1s");
}

#[test]
fn moves_without_a_time_or_an_artifact_credit_nothing_and_still_count_as_served() {
    // 7 (dated), then 8 without a time, then 7 again: 7's first stint ends where it began, 8
    // served (undated) and 7 coming back is no rollback of 8 (8 had no stint).
    let mut undated = moved("8", "sha256:b", 0);
    undated.at = None;
    let h = staging(vec![
        moved("7", "sha256:a", 0),
        undated,
        moved("7", "sha256:a", 5),
    ]);
    let r = Record::of(&h, "7", "sha256:a", at(10));
    assert_eq!(r.served_in("staging"), chrono::Duration::hours(5));
    assert!(Record::of(&h, "8", "sha256:b", at(10)).served.is_empty());
    // Then 9, then back to 8: a move back to what served before (undated) is 9's rollback.
    let mut undated = moved("8", "sha256:b", 0);
    undated.at = None;
    let h = staging(vec![
        undated,
        moved("9", "sha256:c", 1),
        moved("8", "sha256:b", 2),
    ]);
    let r = Record::of(&h, "9", "sha256:c", at(3));
    assert_eq!(r.rollbacks, vec![("staging".into(), at(2), "8".into())]);
    // A move that recorded no artifact says nothing of what served.
    let mut bare = moved("8", "sha256:b", 0);
    bare.artifact_digest = None;
    let h = staging(vec![bare]);
    assert!(Record::of(&h, "8", "sha256:b", at(10)).served.is_empty());
}

#[test]
fn a_soak_too_long_for_the_calendar_never_ends_and_does_not_panic() {
    let h = staging(vec![moved("8", "sha256:b", 0)]);
    let huge = Soak {
        needed: chrono::Duration::MAX,
        ..Soak::of(&model("1h"), &Record::of(&h, "8", "sha256:b", at(0))).unwrap()
    };
    assert_eq!(huge.earliest(at(0)), None);
    assert!(
        huge.describe("8", at(0))
            .starts_with("version 8 served in staging for 0s of ")
    );
}
