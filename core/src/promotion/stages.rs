//! Stages and soak: what a version's serving record says, read from the recorded moves of its
//! model's aliases — how long it served in each alias (with the artifact it has now), the
//! aliases it resolved in, and the rollbacks that took it out of one. Policies read it as
//! `candidate.serving` and `candidate.servedIn(alias)`; [`Soak`] says what a model's `soak` still
//! asks of a candidate and when it is met. Pure: every home passes the histories it records.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use slipway_crd::model_alias::{AliasDecision, AliasMove};

/// The recorded moves of a model's aliases, by alias name (`staging` → its moves, oldest first).
pub type Histories = BTreeMap<String, Vec<AliasMove>>;

/// The recorded moves of `model`'s aliases in `ns` as a cluster's objects carry them (their
/// status, which only the controller writes). Only for a catalog read from the API server: a
/// status written into a registry file is its author's word.
pub fn cluster_histories(catalog: &crate::catalog::Catalog, ns: &str, model: &str) -> Histories {
    catalog
        .alias_names(ns, model)
        .into_iter()
        .filter_map(|alias| {
            let a = catalog.alias(ns, model, alias)?;
            let history = a.status.as_ref().map(|s| s.history.clone());
            Some((alias.to_string(), history.unwrap_or_default()))
        })
        .collect()
}

/// One stretch of time an alias resolved to a version.
#[derive(Clone, Debug, PartialEq)]
struct Stint {
    version: String,
    digest: Option<String>,
    from: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
    /// It ended with a rollback: the alias moved back to a version it served before (this one).
    rolled_back: Option<String>,
}

/// The stints of one alias by its allowed moves. A move recorded without a time (made before
/// moves were dated) ends the stint before it where it began — no time is credited that cannot
/// be told — and starts none.
fn stints(history: &[AliasMove]) -> Vec<Stint> {
    let mut out: Vec<Stint> = Vec::new();
    let mut served: Vec<(String, Option<String>)> = Vec::new();
    for m in history {
        if m.decision != AliasDecision::Allowed {
            continue;
        }
        let back = served.contains(&(m.to.clone(), m.artifact_digest.clone()));
        if let Some(last) = out.last_mut().filter(|l| l.until.is_none()) {
            last.until = Some(m.at.unwrap_or(last.from).max(last.from));
            if back && last.version != m.to {
                last.rolled_back = Some(m.to.clone());
            }
            served.push((last.version.clone(), last.digest.clone()));
        }
        let Some(at) = m.at else {
            served.push((m.to.clone(), m.artifact_digest.clone()));
            continue;
        };
        out.push(Stint {
            version: m.to.clone(),
            digest: m.artifact_digest.clone(),
            from: at,
            until: None,
            rolled_back: None,
        });
    }
    out
}

/// Whether a stint served this very version: its label, with the artifact the move recorded (a
/// label registered again with another artifact is not what served; a move that recorded none
/// says nothing of what served, and counts for nothing).
fn is(stint: &Stint, version: &str, digest: &str) -> bool {
    stint.version == version && stint.digest.as_deref() == Some(digest)
}

/// What `version` (whose artifact is `digest`) did in each alias until `now`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Record {
    /// Per alias it resolved in: how long it served there in all, and since when it serves
    /// there now (None: not now).
    pub served: BTreeMap<String, (chrono::Duration, Option<DateTime<Utc>>)>,
    /// The rollbacks that took it out of an alias: the alias, when, and to which version.
    pub rollbacks: Vec<(String, DateTime<Utc>, String)>,
}

impl Record {
    /// The serving record of `version` in `histories`, as of `now`.
    pub fn of(histories: &Histories, version: &str, digest: &str, now: DateTime<Utc>) -> Record {
        let mut record = Record::default();
        for (alias, history) in histories {
            let mine: Vec<Stint> = stints(history)
                .into_iter()
                .filter(|s| is(s, version, digest))
                .collect();
            if mine.is_empty() {
                continue;
            }
            let total = mine
                .iter()
                .map(|s| (s.until.unwrap_or(now).min(now) - s.from).max(chrono::Duration::zero()))
                .fold(chrono::Duration::zero(), |a, b| a + b);
            let since = mine.iter().find(|s| s.until.is_none()).map(|s| s.from);
            record.served.insert(alias.clone(), (total, since));
            for s in &mine {
                if let Some(to) = &s.rolled_back {
                    let at = s.until.unwrap_or(now);
                    record.rollbacks.push((alias.clone(), at, to.clone()));
                }
            }
        }
        record
    }

    /// How long it served in `alias` (zero: never).
    pub fn served_in(&self, alias: &str) -> chrono::Duration {
        self.served
            .get(alias)
            .map_or(chrono::Duration::zero(), |(d, _)| *d)
    }

    /// Whether a rollback took it out of `alias`.
    pub fn rolled_back_in(&self, alias: &str) -> bool {
        self.rollbacks.iter().any(|(a, _, _)| a == alias)
    }

    /// As policies read it (`candidate.serving`): `served` (alias → seconds), `since` (alias →
    /// when it started serving there, for the aliases it serves in now), `aliases` (every alias
    /// it resolved in) and `rollbacks` (`alias`, `at`, `to`).
    pub fn json(&self) -> Value {
        let served: serde_json::Map<String, Value> = self
            .served
            .iter()
            .map(|(a, (d, _))| (a.clone(), json!(d.num_seconds())))
            .collect();
        let since: serde_json::Map<String, Value> = self
            .served
            .iter()
            .filter_map(|(a, (_, s))| Some((a.clone(), json!(s.as_ref()?.to_rfc3339()))))
            .collect();
        json!({
            "served": served,
            "since": since,
            "aliases": self.served.keys().collect::<Vec<_>>(),
            "rollbacks": self.rollbacks.iter().map(|(alias, at, to)| json!({
                "alias": alias, "at": at.to_rfc3339(), "to": to,
            })).collect::<Vec<_>>(),
        })
    }
}

/// What a model's `soak` asks of one candidate, as of a moment.
#[derive(Clone, Debug, PartialEq)]
pub struct Soak {
    /// The alias it must serve in first.
    pub alias: String,
    /// How long.
    pub needed: chrono::Duration,
    /// How long it has.
    pub served: chrono::Duration,
    /// Since when it serves there now (None: not now).
    pub since: Option<DateTime<Utc>>,
    /// A rollback took it out of the alias.
    pub rolled_back: bool,
}

impl Soak {
    /// The soak `model` asks of a candidate with this record (None: the model asks none, or its
    /// duration does not read — validation reports that).
    pub fn of(model: &slipway_crd::RegisteredModel, record: &Record) -> Option<Soak> {
        let soak = model.spec.soak.as_ref()?;
        let needed = crate::duration::parse(&soak.duration).ok()?;
        Some(Soak {
            alias: soak.alias.clone(),
            needed: chrono::Duration::from_std(needed).ok()?,
            served: record.served_in(&soak.alias),
            since: record.served.get(&soak.alias).and_then(|(_, since)| *since),
            rolled_back: record.rolled_back_in(&soak.alias),
        })
    }

    /// Whether it is met.
    pub fn met(&self) -> bool {
        self.served >= self.needed && !self.rolled_back
    }

    /// When it will be met if the candidate keeps serving in the alias (None: met already, or
    /// it cannot be by waiting — it does not serve there now, or was rolled back there).
    pub fn earliest(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.met() || self.rolled_back {
            return None;
        }
        // A soak too long for the calendar never ends (validation bounds it).
        self.since
            .and_then(|_| now.checked_add_signed(self.needed - self.served))
    }

    /// What is left, for people: `version 8 served in staging for 3h of 24h; earliest
    /// 2026-12-08 14:00 UTC`.
    pub fn describe(&self, version: &str, now: DateTime<Utc>) -> String {
        let of = format!(
            "version {version} served in {} for {} of {}",
            self.alias,
            human(self.served),
            human(self.needed)
        );
        if self.rolled_back {
            return format!(
                "{of}, and was rolled back there: a version rolled back in {} is not promoted from it; register a fixed version",
                self.alias
            );
        }
        match (self.earliest(now), self.since) {
            (Some(at), _) => format!("{of}; earliest {}", at.format("%Y-%m-%d %H:%M UTC")),
            (None, None) if !self.met() => format!(
                "{of}, and does not serve there now; move {} to it first",
                self.alias
            ),
            _ => of,
        }
    }
}

/// The candidate's policy document with its serving record (`candidate.serving`).
pub fn with_record(mut candidate: Value, record: &Record) -> Value {
    if let Some(o) = candidate.as_object_mut() {
        o.insert("serving".into(), record.json());
    }
    candidate
}

/// `input` as of `t`: the decision time moved there, and the candidate's serving record
/// `record` (its record as of then) in place of the one it had.
pub fn as_of(
    input: &crate::policy::DecisionInput,
    t: DateTime<Utc>,
    record: &Record,
) -> crate::policy::DecisionInput {
    let mut later = input.clone();
    later.now = t;
    later.candidate = with_record(later.candidate, record);
    later
}

/// Says what a model's soak still asks of `version` in the rules of `decision` that read how
/// long it served (`servedIn`); returns when the soak ends by waiting, if it does.
pub fn explain(
    decision: &mut crate::policy::Decision,
    model: &slipway_crd::RegisteredModel,
    record: &Record,
    version: &str,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let soak = Soak::of(model, record).filter(|s| !s.met())?;
    let said = soak.describe(version, now);
    for r in decision
        .rules
        .iter_mut()
        .filter(|r| !r.passed && r.expression.contains("servedIn("))
    {
        r.message = format!("{}: {said}", r.message.trim_end_matches('.'));
    }
    soak.earliest(now)
}

/// When a denied change becomes allowed with nothing but time passing
/// ([`crate::policy::Decision::opens_at`]): the first of the times anything time-bound changes —
/// the soak's end (`soak`), the next opening of the matching policies' windows now and after the
/// soak — at which the decision (`allowed_at`) lets it through.
pub fn opening(
    decision: &crate::policy::Decision,
    policies: &crate::policy::PolicySet,
    change: &crate::policy::ChangeFacts,
    now: DateTime<Utc>,
    soak: Option<DateTime<Utc>>,
    allowed_at: &dyn Fn(DateTime<Utc>) -> bool,
) -> Option<DateTime<Utc>> {
    if decision.allowed {
        return None;
    }
    let mut times: Vec<DateTime<Utc>> = soak.into_iter().collect();
    times.extend(policies.windows_open(change, now));
    if let Some(s) = soak {
        times.extend(policies.windows_open(change, s));
    }
    times.retain(|t| *t > now);
    times.sort();
    times.dedup();
    times.into_iter().find(|t| allowed_at(*t))
}

/// A duration as people write it: `3h`, `1h30m`, `45s`, `0s`.
pub fn human(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
#[path = "stages_tests.rs"]
mod tests;
