//! The alias decision's tests: statuses, steps, rollbacks and baselines.

mod alias_status {
    use super::super::*;
    use slipway_crd::model_alias::ModelAliasStatus;

    fn facts(to: &str, s: u32) -> AliasFacts<'_> {
        AliasFacts {
            label: "m/production",
            to,
            generation: Some(2),
            digest: Some("sha256:77"),
            revision: Some("git:abc"),
            now: chrono::DateTime::from_timestamp(1_800_000_000 + i64::from(s), 0).unwrap(),
        }
    }

    #[test]
    fn a_move_resolves_and_records_history_and_a_hold_keeps_the_resolution() {
        let (moved, message) = alias_status(
            &ModelAliasStatus::default(),
            &AliasStep::Moved,
            &facts("7", 0),
        );
        assert_eq!(message, "m/production: (none) → 7");
        assert_eq!(moved.resolved_version.as_deref(), Some("7"));
        assert_eq!(moved.history.len(), 1);
        assert_eq!(moved.conditions[0].reason, "Resolved");
        let (held, message) =
            alias_status(&moved, &AliasStep::Held("denied by p/r"), &facts("8", 5));
        assert_eq!(message, "m/production → 8 held: denied by p/r");
        assert_eq!(held.resolved_version.as_deref(), Some("7"));
        assert_eq!(held.history, moved.history);
        assert_eq!(held.conditions[0].status, "False");
        // Waiting after a hold: still not ready, so the transition time stays.
        let (waiting, _) = alias_status(
            &held,
            &AliasStep::Waiting(&["holdout".into()]),
            &facts("8", 9),
        );
        assert_eq!(
            waiting.conditions[0].last_transition_time,
            held.conditions[0].last_transition_time
        );
        let (again, _) = alias_status(&waiting, &AliasStep::Moved, &facts("8", 12));
        assert_eq!(
            (
                again.resolved_version.as_deref(),
                again.previous_version.as_deref()
            ),
            (Some("8"), Some("7"))
        );
        assert_ne!(
            again.conditions[0].last_transition_time,
            held.conditions[0].last_transition_time
        );
    }
}

mod step {
    use super::super::*;
    use slipway_crd::model_alias::ModelAliasStatus;

    fn facts(to: &str) -> AliasFacts<'_> {
        AliasFacts {
            label: "m/production",
            to,
            generation: None,
            digest: None,
            revision: None,
            now: crate::testing::now(),
        }
    }

    fn held() -> Promotion {
        Promotion::Decided(crate::policy::Decision {
            allowed: false,
            ..Default::default()
        })
    }

    #[test]
    fn a_hold_is_written_and_announced_once_and_a_wait_is_written_once() {
        let s = ModelAliasStatus::default();
        let first = alias_step(&s, Some(&held()), &facts("8"));
        assert_eq!(first.news, Some(Event::PromotionBlocked));
        let written = first.status.unwrap();
        let again = alias_step(&written, Some(&held()), &facts("8"));
        assert_eq!((again.status, again.news), (None, None));
        let waiting = Promotion::Waiting(vec!["holdout".into()]);
        let w = alias_step(&written, Some(&waiting), &facts("8"));
        assert_eq!(
            w.message,
            "m/production → 8: waiting for evaluation holdout"
        );
        assert_eq!(
            alias_step(&w.status.unwrap(), Some(&waiting), &facts("8")).status,
            None
        );
    }

    #[test]
    fn a_move_is_always_news_and_then_the_alias_is_settled() {
        let allowed = Promotion::Decided(crate::policy::Decision {
            allowed: true,
            ..Default::default()
        });
        let moved = alias_step(&ModelAliasStatus::default(), Some(&allowed), &facts("7"));
        assert_eq!(moved.news, Some(Event::AliasMoved));
        let status = moved.status.unwrap();
        assert!(settled(&status, &facts("7")));
        assert!(!settled(&status, &facts("8")));
        // The unresolvable is said in status too, in both homes.
        let u = alias_step(&status, Some(&Promotion::Unresolvable), &facts("9"));
        assert_eq!(u.status.unwrap().conditions[0].reason, "Unresolvable");
    }
}

mod rollback {
    use super::super::*;
    use crate::catalog::Resource;
    use crate::testing::{catalog, registry, result};
    use slipway_crd::model_alias::{AliasDecision, AliasMove, ModelAliasStatus};

    /// A recorded move to `to`, with the artifact digest the fixture registers for it.
    fn moved(from: Option<&str>, to: &str, decision: AliasDecision) -> AliasMove {
        AliasMove {
            from: from.map(str::to_string),
            to: to.into(),
            artifact_digest: Some(format!("sha256:0{to}")),
            decision,
            ..AliasMove::default()
        }
    }

    /// Production asks for 1 while it serves 2, with `history`; 1 was compared against its own
    /// predecessor 0, which was better than 1 by more than the tolerance. Decided as if no alias
    /// resolved for the suite's baseline (the baseline checks are [`promote`]'s own tests).
    fn decide(history: Vec<AliasMove>) -> crate::policy::Decision {
        match promote(
            history,
            &result("1", "Passed", 0.80, 0.90, "0"),
            None,
            false,
        ) {
            Promotion::Decided(d) => d,
            other => panic!("not decided: {other:?}"),
        }
    }

    /// [`decide`]'s move with `evaluation` as 1's result (its baseline pinned to version `pin`
    /// when given, as a cluster could hold it), with production resolving to 2 for the suite's
    /// baseline when `baselines`, and no evaluation the home's own.
    fn promote(
        history: Vec<AliasMove>,
        evaluation: &str,
        pin: Option<&str>,
        baselines: bool,
    ) -> Promotion {
        let cat = catalog(&format!("{}\n---\n{evaluation}", registry("1")));
        let mut results = Results::default();
        let pinned: Vec<slipway_crd::Evaluation> = cat
            .objects()
            .iter()
            .filter_map(|o| match &o.resource {
                Resource::Evaluation(e) => Some((**e).clone()),
                _ => None,
            })
            .map(|mut e| {
                if let Some(v) = pin {
                    e.spec.baseline = Some(slipway_crd::common::BaselineRef {
                        alias: None,
                        version: Some(v.into()),
                    });
                }
                e
            })
            .collect();
        results.add(&pinned);
        let alias = cat
            .objects()
            .iter()
            .find_map(|o| match &o.resource {
                Resource::ModelAlias(a) => Some(a.clone()),
                _ => None,
            })
            .unwrap();
        let status = ModelAliasStatus {
            resolved_version: Some("2".into()),
            history,
            ..ModelAliasStatus::default()
        };
        let aliases = |a: &str| (baselines && a == "production").then(|| "2".to_string());
        promotion(
            &cat,
            &results,
            "default",
            "m-production",
            &alias,
            &status,
            "git",
            crate::testing::now(),
            None,
            &Baselines {
                aliases: &aliases,
                own: &|_| false,
                histories: &Default::default(),
            },
        )
    }

    /// A result counts only if it was compared against what its suite's baseline resolves to
    /// now: one that follows the declaration is compared again (the move waits), one pinned to
    /// another version holds the move, naming it; a rollback is not held to its comparison.
    #[test]
    fn a_result_compared_against_another_baseline_does_not_count() {
        use AliasDecision::Allowed;
        let against_0 = result("1", "Passed", 0.80, 0.90, "0");
        match promote(vec![], &against_0, None, true) {
            Promotion::Rebaseline {
                pending,
                evaluations,
            } => {
                assert_eq!(pending, ["eval (compared again against 2)"]);
                assert_eq!(evaluations.len(), 1);
                let r = &evaluations[0];
                assert_eq!(
                    (r.evaluation.as_str(), r.baseline.as_str()),
                    ("m-1-eval", "2")
                );
                assert_eq!(r.status.phase, EvaluationPhase::Pending);
                assert_eq!(r.status.conditions[0].reason, "BaselineMoved");
                assert!(
                    r.status.conditions[0]
                        .message
                        .contains("against version 2: its suite's baseline resolves there now, and it was compared against version 0"),
                    "{}",
                    r.status.conditions[0].message
                );
            }
            other => panic!("not compared again: {other:?}"),
        }
        // Pinned by hand to a weaker version, or run with no baseline at all: held, named.
        let none = against_0.replace("  baselineVersion: \"0\"\n", "");
        for (evaluation, against) in [(&against_0, "version 0"), (&none, "no baseline")] {
            let Promotion::Decided(d) = promote(vec![], evaluation, Some("0"), true) else {
                panic!("not decided");
            };
            assert!(!d.allowed);
            let stale = d
                .denying_rules()
                .find(|r| r.name == STALE_BASELINE)
                .unwrap();
            assert_eq!(stale.policy, "slipway");
            assert!(
                stale.message.contains(&format!(
                    "has its result from evaluation m-1-eval, compared against {against}, but the suite's baseline is alias production, version 2 now"
                )),
                "{}",
                stale.message
            );
        }
        // Compared against what production serves: counts (held only by the policies' rules).
        let against_2 = result("1", "Passed", 0.95, 0.90, "2");
        let Promotion::Decided(d) = promote(vec![], &against_2, None, true) else {
            panic!("not decided");
        };
        assert!(d.rules.iter().all(|r| r.name != STALE_BASELINE));
        // A rollback to 1, which production served with this artifact: not compared again.
        let served = vec![moved(None, "1", Allowed), moved(Some("1"), "2", Allowed)];
        let Promotion::Decided(d) = promote(served, &against_0, Some("0"), true) else {
            panic!("not decided");
        };
        assert!(d.allowed, "{}", d.summary());
    }

    #[test]
    fn a_move_back_to_a_version_the_alias_served_is_a_rollback_and_not_held_to_its_old_comparison()
    {
        use AliasDecision::{Allowed, Denied};
        let back = decide(vec![
            moved(None, "1", Allowed),
            moved(Some("1"), "2", Allowed),
        ]);
        assert!(back.allowed, "{}", back.summary());
        // Still checked: every rule ran, and the candidate passed its suites.
        assert!(back.rules.iter().all(|r| r.passed));
        assert!(
            back.rules
                .iter()
                .any(|r| r.name == "candidate-evaluations-passed")
        );
        // Never served (a denied move is not service), served with another artifact under the
        // same label, or recorded without a digest (before moves recorded them): held for its
        // comparison.
        let other_artifact = AliasMove {
            artifact_digest: Some("sha256:ff".into()),
            ..moved(None, "1", Allowed)
        };
        let unknown_artifact = AliasMove {
            artifact_digest: None,
            ..moved(None, "1", Allowed)
        };
        for history in [
            vec![moved(None, "2", Allowed)],
            vec![moved(None, "2", Allowed), moved(Some("2"), "1", Denied)],
            vec![other_artifact, moved(Some("1"), "2", Allowed)],
            vec![unknown_artifact, moved(Some("1"), "2", Allowed)],
        ] {
            let d = decide(history);
            assert!(!d.allowed);
            let denied: Vec<&str> = d.denying_rules().map(|r| r.name.as_str()).collect();
            assert_eq!(
                denied,
                [
                    "baseline-is-current-production",
                    "no-primary-metric-regression"
                ]
            );
        }
    }

    #[test]
    fn a_rollback_is_a_move_away_from_what_is_served_to_what_was() {
        let served = served(&[
            moved(None, "1", AliasDecision::Allowed),
            moved(Some("1"), "2", AliasDecision::Allowed),
            moved(Some("2"), "3", AliasDecision::Denied),
        ]);
        let pair = |v: &str| (v.to_string(), format!("sha256:0{v}"));
        assert_eq!(served, BTreeSet::from([pair("1"), pair("2")]));
        assert!(is_rollback(&served, Some("2"), "1", "sha256:01"));
        assert!(!is_rollback(&served, Some("2"), "1", "sha256:ff"));
        assert!(!is_rollback(&served, Some("2"), "2", "sha256:02"));
        assert!(!is_rollback(&served, Some("2"), "3", "sha256:03"));
        assert!(!is_rollback(&served, None, "1", "sha256:01"));
    }

    #[test]
    fn a_deployment_serves_a_version_only_with_the_artifact_its_alias_moved_with() {
        let history = [
            moved(None, "1", AliasDecision::Allowed),
            moved(Some("1"), "2", AliasDecision::Allowed),
        ];
        assert_eq!(artifact_drift(&history, "m", "2", "sha256:02"), None);
        let why = artifact_drift(&history, "m", "2", "sha256:ff").unwrap();
        assert!(
            why.starts_with(
                "version 2 of m has artifact sha256:ff, but the alias moved to it with sha256:02"
            ),
            "{why}"
        );
        // A version no move recorded is not this check's to judge.
        assert_eq!(artifact_drift(&history, "m", "3", "sha256:ff"), None);
    }
}

mod soak {
    use super::super::*;
    use crate::catalog::Resource;
    use crate::testing::{catalog, now, registry, result};
    use slipway_crd::model_alias::{AliasDecision, AliasMove, ModelAliasStatus};

    /// Production asks for 1 while it serves 2 (1's result passes, compared against 2); the
    /// model asks for a day in staging, where 1 has served since `seconds` ago (after 2).
    fn decided(seconds: i64, at: chrono::DateTime<chrono::Utc>) -> crate::policy::Decision {
        let text = registry("1").replacen(
            "  primaryMetric:",
            "  soak: {alias: staging, duration: 1d}\n  primaryMetric:",
            1,
        );
        let cat = catalog(&format!(
            "{text}\n---\n{}",
            result("1", "Passed", 0.9, 0.9, "2")
        ));
        let mut results = Results::default();
        results.add(cat.objects().iter().filter_map(|o| match &o.resource {
            Resource::Evaluation(e) => Some(&**e),
            _ => None,
        }));
        let alias = cat.alias("default", "m", "production").unwrap().clone();
        let status = ModelAliasStatus {
            resolved_version: Some("2".into()),
            ..ModelAliasStatus::default()
        };
        let staged = |to: &str, ago: chrono::Duration| AliasMove {
            to: to.into(),
            artifact_digest: Some(format!("sha256:0{to}")),
            at: Some(now() - ago),
            decision: AliasDecision::Allowed,
            ..AliasMove::default()
        };
        let histories: stages::Histories = [(
            "staging".to_string(),
            vec![
                staged("2", chrono::Duration::days(3)),
                staged("1", chrono::Duration::seconds(seconds)),
            ],
        )]
        .into();
        let aliases = |a: &str| (a == "production").then(|| "2".to_string());
        let baselines = Baselines {
            aliases: &aliases,
            own: &|_| false,
            histories: &histories,
        };
        match promotion(
            &cat,
            &results,
            "default",
            "m-production",
            &alias,
            &status,
            "git",
            at,
            None,
            &baselines,
        ) {
            Promotion::Decided(d) => d,
            other => panic!("not decided: {other:?}"),
        }
    }

    /// A version that served three hours of a day in staging is held, with what is left and
    /// when the move is allowed — and the alias is looked at again then; a day later it moves.
    #[test]
    fn a_move_waits_out_the_soak_and_is_made_when_it_ends() {
        let d = decided(3 * 3600, now());
        assert!(!d.allowed);
        let rule = d.rules.iter().find(|r| !r.passed).unwrap();
        assert_eq!(rule.name, "soaked-in-staging");
        assert!(
            rule.message.ends_with(
                "version 1 served in staging for 3h of 24h; earliest 2026-11-29 09:00 UTC"
            ),
            "{}",
            rule.message
        );
        let opens = chrono::DateTime::parse_from_rfc3339("2026-11-29T09:00:00Z").unwrap();
        assert_eq!(d.opens_at, Some(opens.with_timezone(&chrono::Utc)));
        assert_eq!(
            d.summary(),
            "denied by production/soaked-in-staging until 2026-11-29 09:00 UTC"
        );
        // Looked at again when it ends, when that is sooner than the usual look.
        let facts = |at| AliasFacts {
            label: "m/production",
            to: "1",
            generation: None,
            digest: Some("sha256:01"),
            revision: None,
            now: at,
        };
        let held = Promotion::Decided(decided(86_400 - 36, now()));
        let step = alias_step(&ModelAliasStatus::default(), Some(&held), &facts(now()));
        assert_eq!(step.wait, Some(std::time::Duration::from_secs(37)));
        let step = alias_step(
            &ModelAliasStatus::default(),
            Some(&Promotion::Decided(d)),
            &facts(now()),
        );
        assert_eq!(step.wait, Some(crate::limits::ALIAS_HELD_POLL));
        // At the time it said, the same move is allowed.
        let later = decided(3 * 3600, opens.with_timezone(&chrono::Utc));
        assert!(later.allowed, "{:?}", later.rules);
    }

    /// Rolled back in staging: no wait helps, and the decision says so.
    #[test]
    fn a_version_rolled_back_in_staging_never_soaks() {
        let mut d = decided(30 * 3600, now());
        assert!(d.allowed, "served 30h of 24h: {:?}", d.rules);
        // The same with a rollback from 1 to 2 an hour ago.
        let text = registry("1").replacen(
            "  primaryMetric:",
            "  soak: {alias: staging, duration: 1d}\n  primaryMetric:",
            1,
        );
        let m = catalog(&text).model("default", "m").unwrap().clone();
        let moved = |to: &str, hours: i64| AliasMove {
            to: to.into(),
            artifact_digest: Some(format!("sha256:0{to}")),
            at: Some(now() - chrono::Duration::hours(hours)),
            decision: AliasDecision::Allowed,
            ..AliasMove::default()
        };
        let h: stages::Histories = [(
            "staging".into(),
            vec![moved("2", 72), moved("1", 30), moved("2", 1)],
        )]
        .into();
        let record = stages::Record::of(&h, "1", "sha256:01", now());
        d.allowed = false;
        d.rules[0].passed = false;
        d.rules[0].expression = "candidate.servedIn(model.soak.alias) > duration(\"0s\")".into();
        assert_eq!(stages::explain(&mut d, &m, &record, "1", now()), None);
        assert!(
            d.rules[0].message.contains("was rolled back there"),
            "{}",
            d.rules[0].message
        );
    }
}
