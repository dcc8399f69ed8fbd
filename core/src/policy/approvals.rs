//! Counting sign-offs: which reviews count for an approval requirement, and why the others do not.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use slipway_crd::promotion_policy::ApprovalRequirement;

/// One review, in the shape of GitHub's "list reviews for a pull request" response.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct Review {
    /// The reviewer.
    pub user: ReviewUser,
    /// `APPROVED`, `CHANGES_REQUESTED`, `COMMENTED`, `DISMISSED` or `PENDING`.
    pub state: String,
    /// The commit the review was made on.
    #[serde(default)]
    pub commit_id: Option<String>,
    /// When the review was submitted.
    #[serde(default)]
    pub submitted_at: Option<DateTime<Utc>>,
}

/// The reviewer of a [`Review`].
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct ReviewUser {
    /// Login.
    pub login: String,
}

/// The sign-offs available for one change.
#[derive(Clone, Debug, Default)]
pub struct SignOffs {
    /// Reviews (git mode) or approvals (Kubernetes mode) in any order.
    pub reviews: Vec<Review>,
    /// The commit (or change fingerprint) an approval must be made on.
    pub head: Option<String>,
    /// Who made the change.
    pub author: Option<String>,
}

/// The outcome of one approval requirement.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ApprovalResult {
    /// Requirement name.
    pub name: String,
    /// Approvals needed.
    pub required: u32,
    /// Approvals that count.
    pub have: u32,
    /// Everyone who could approve.
    pub eligible: Vec<String>,
    /// Reviews that did not count, with the reason.
    pub ignored: Vec<Ignored>,
    /// Who counted (shown in comments; not part of the JSON contract).
    #[serde(skip)]
    pub approved_by: Vec<String>,
    /// Which policy the requirement belongs to (not part of the JSON contract).
    #[serde(skip)]
    pub policy: String,
    /// Eligibility sources as written (`group:ml-leads`), for messages.
    #[serde(skip)]
    pub from: Vec<String>,
    /// Whether the change's author is excluded (`excludeAuthor`), for warnings.
    #[serde(skip)]
    pub exclude_author: bool,
}

impl ApprovalResult {
    /// Whether the requirement is met.
    pub fn satisfied(&self) -> bool {
        self.have >= self.required
    }
}

/// A review that did not count.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Ignored {
    /// Reviewer.
    pub user: String,
    /// Why it did not count.
    pub reason: String,
}

fn short(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

/// Evaluates one requirement at time `now`. `members` expands `group:NAME` to logins (None:
/// unknown group).
pub fn evaluate(
    policy: &str,
    req: &ApprovalRequirement,
    signoffs: &SignOffs,
    members: &dyn Fn(&str) -> Option<Vec<String>>,
    now: DateTime<Utc>,
) -> ApprovalResult {
    let via = eligible_via(req, members);
    let author = signoffs.author.as_deref();
    let eligible: Vec<String> = via
        .keys()
        .filter(|u| !(req.exclude_author && Some(u.as_str()) == author))
        .cloned()
        .collect();
    let mut ignored = Vec::new();
    let latest = latest_reviews(&signoffs.reviews, &mut ignored);
    let lifetime = req.expires_after.as_deref().map(crate::duration::parse);
    let mut approved_by = Vec::new();
    for (user, r) in latest {
        let expired = expiry(req, lifetime.as_ref(), r, now);
        let reason = if r.state != "APPROVED" {
            Some(format!("latest review is {}", r.state))
        } else if let Some(why) = expired {
            Some(why)
        } else {
            not_counted(req, signoffs, &via, user, r)
        };
        match reason {
            Some(reason) => ignored.push(Ignored {
                user: user.to_string(),
                reason,
            }),
            None => approved_by.push(user.to_string()),
        }
    }
    ApprovalResult {
        name: req.name.clone(),
        required: req.required,
        have: approved_by.len() as u32,
        eligible,
        ignored,
        approved_by,
        policy: policy.to_string(),
        from: req.from.clone(),
        exclude_author: req.exclude_author,
    }
}

/// Who is eligible to approve, and through which source (the first that names them).
fn eligible_via(
    req: &ApprovalRequirement,
    members: &dyn Fn(&str) -> Option<Vec<String>>,
) -> BTreeMap<String, String> {
    let mut via: BTreeMap<String, String> = BTreeMap::new();
    for source in &req.from {
        if let Some(group) = source.strip_prefix("group:") {
            for m in members(group).unwrap_or_default() {
                via.entry(m).or_insert_with(|| source.clone());
            }
        } else if let Some(user) = source.strip_prefix("user:") {
            via.entry(user.to_string())
                .or_insert_with(|| source.clone());
        }
    }
    via
}

/// The latest decisive review per reviewer; comments and pending reviews, and reviews a later
/// one superseded, go to `ignored`. Comments do not change a reviewer's approval state (as on
/// GitHub).
fn latest_reviews<'r>(
    reviews: &'r [Review],
    ignored: &mut Vec<Ignored>,
) -> BTreeMap<&'r str, &'r Review> {
    let mut ordered: Vec<&Review> = reviews.iter().collect();
    ordered.sort_by_key(|r| r.submitted_at);
    let mut latest: BTreeMap<&str, &Review> = BTreeMap::new();
    for r in &ordered {
        if r.state == "COMMENTED" || r.state == "PENDING" {
            ignored.push(Ignored {
                user: r.user.login.clone(),
                reason: format!("{} review does not approve", r.state.to_lowercase()),
            });
            continue;
        }
        if let Some(prev) = latest.insert(r.user.login.as_str(), r) {
            ignored.push(Ignored {
                user: prev.user.login.clone(),
                reason: format!(
                    "superseded: their later review{} is what counts",
                    r.submitted_at
                        .map(|t| format!(" ({})", t.format("%Y-%m-%d %H:%M UTC")))
                        .unwrap_or_default()
                ),
            });
        }
    }
    latest
}

/// Why a review has expired at `now` under the requirement's `lifetime` (its parsed
/// `expiresAfter`; an unreadable one fails closed), or None while it is valid.
fn expiry(
    req: &ApprovalRequirement,
    lifetime: Option<&Result<std::time::Duration, String>>,
    r: &Review,
    now: DateTime<Utc>,
) -> Option<String> {
    match lifetime {
        Some(Err(e)) => Some(format!("expiresAfter: {e} (fail closed)")),
        Some(Ok(life)) => {
            let life = chrono::Duration::from_std(*life).unwrap_or(chrono::Duration::MAX);
            match r.submitted_at {
                Some(at) if at + life >= now => None,
                Some(at) => Some(format!(
                    "expired: given {} and valid for {}",
                    at.format("%Y-%m-%d %H:%M UTC"),
                    req.expires_after.as_deref().unwrap_or_default()
                )),
                None => Some("expired: the sign-off has no time".to_string()),
            }
        }
        None => None,
    }
}

/// Why an unexpired approval by `user` does not count — they wrote the change, it is stale or
/// names no commit, they are not eligible — or None when it counts.
fn not_counted(
    req: &ApprovalRequirement,
    signoffs: &SignOffs,
    via: &BTreeMap<String, String>,
    user: &str,
    r: &Review,
) -> Option<String> {
    if req.exclude_author && Some(user) == signoffs.author.as_deref() {
        Some("author of the change cannot approve it".to_string())
    } else if let (Some(head), Some(commit)) = (signoffs.head.as_deref(), r.commit_id.as_deref())
        && head != commit
    {
        Some(format!(
            "stale: approved commit {} but the head is {}; re-approve",
            short(commit),
            short(head)
        ))
    } else if signoffs.head.is_some() && r.commit_id.is_none() {
        Some("review names no commit".to_string())
    } else if !via.contains_key(user) {
        Some(format!("not eligible: not in {}", req.from.join(" or ")))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const OLD: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    fn review(user: &str, state: &str, commit: &str, minute: u32) -> Review {
        Review {
            user: ReviewUser { login: user.into() },
            state: state.into(),
            commit_id: Some(commit.into()),
            submitted_at: Some(format!("2026-11-20T10:{minute:02}:00Z").parse().unwrap()),
        }
    }

    fn at(minute: u32) -> DateTime<Utc> {
        format!("2026-11-20T{:02}:{:02}:00Z", 10 + minute / 60, minute % 60)
            .parse()
            .unwrap()
    }

    fn leads_requirement() -> ApprovalRequirement {
        ApprovalRequirement {
            name: "ml-lead".into(),
            required: 1,
            from: vec!["group:ml-leads".into()],
            exclude_author: true,
            expires_after: None,
        }
    }

    fn run(reviews: Vec<Review>) -> ApprovalResult {
        let signoffs = SignOffs {
            reviews,
            head: Some(HEAD.into()),
            author: Some("dana".into()),
        };
        let members = |g: &str| {
            (g == "ml-leads")
                .then(|| vec!["alice".to_string(), "bob".to_string(), "dana".to_string()])
        };
        evaluate(
            "production",
            &leads_requirement(),
            &signoffs,
            &members,
            at(0),
        )
    }

    fn reason_for<'a>(r: &'a ApprovalResult, user: &str) -> Vec<&'a str> {
        r.ignored
            .iter()
            .filter(|i| i.user == user)
            .map(|i| i.reason.as_str())
            .collect()
    }

    #[test]
    fn an_eligible_approval_on_the_head_commit_counts() {
        let r = run(vec![review("alice", "APPROVED", HEAD, 1)]);
        assert_eq!((r.have, r.satisfied()), (1, true));
        assert_eq!(r.approved_by, vec!["alice"]);
    }

    #[test]
    fn the_latest_review_wins() {
        let r = run(vec![
            review("alice", "APPROVED", HEAD, 1),
            review("alice", "CHANGES_REQUESTED", HEAD, 2),
        ]);
        assert_eq!(r.have, 0);
        assert!(reason_for(&r, "alice").contains(&"latest review is CHANGES_REQUESTED"));
        let r = run(vec![
            review("alice", "CHANGES_REQUESTED", HEAD, 1),
            review("alice", "APPROVED", HEAD, 2),
        ]);
        assert_eq!(r.have, 1);
        assert!(reason_for(&r, "alice")[0].starts_with("superseded"));
    }

    #[test]
    fn a_comment_after_an_approval_keeps_the_approval() {
        let r = run(vec![
            review("alice", "APPROVED", HEAD, 1),
            review("alice", "COMMENTED", HEAD, 2),
        ]);
        assert_eq!(r.have, 1);
        assert_eq!(
            reason_for(&r, "alice"),
            vec!["commented review does not approve"]
        );
    }

    #[test]
    fn a_stale_review_does_not_count() {
        let r = run(vec![review("bob", "APPROVED", OLD, 1)]);
        assert_eq!(r.have, 0);
        assert_eq!(
            reason_for(&r, "bob"),
            vec!["stale: approved commit aaaaaaa but the head is bbbbbbb; re-approve"]
        );
    }

    #[test]
    fn the_author_is_excluded() {
        let r = run(vec![review("dana", "APPROVED", HEAD, 1)]);
        assert_eq!(r.have, 0);
        assert_eq!(
            reason_for(&r, "dana"),
            vec!["author of the change cannot approve it"]
        );
        assert_eq!(r.eligible, vec!["alice", "bob"]);
    }

    #[test]
    fn an_ineligible_reviewer_does_not_count() {
        let r = run(vec![review("mallory", "APPROVED", HEAD, 1)]);
        assert_eq!(r.have, 0);
        assert_eq!(
            reason_for(&r, "mallory"),
            vec!["not eligible: not in group:ml-leads"]
        );
    }

    #[test]
    fn an_approval_counts_only_until_it_expires() {
        let signoffs = SignOffs {
            reviews: vec![review("alice", "APPROVED", HEAD, 1)],
            head: Some(HEAD.into()),
            author: Some("dana".into()),
        };
        let members = |_: &str| Some(vec!["alice".to_string()]);
        let req = ApprovalRequirement {
            expires_after: Some("1h".into()),
            ..leads_requirement()
        };
        assert_eq!(evaluate("p", &req, &signoffs, &members, at(61)).have, 1);
        let late = evaluate("p", &req, &signoffs, &members, at(62));
        assert_eq!(late.have, 0);
        assert_eq!(
            reason_for(&late, "alice"),
            vec!["expired: given 2026-11-20 10:01 UTC and valid for 1h"]
        );
    }

    #[test]
    fn two_approvals_from_one_person_count_once() {
        let r = run(vec![
            review("alice", "APPROVED", HEAD, 1),
            review("alice", "APPROVED", HEAD, 3),
        ]);
        assert_eq!(r.have, 1);
    }
}
