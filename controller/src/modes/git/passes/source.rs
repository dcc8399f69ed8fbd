//! The source of a pass: read (a folder, or a fetched git repository), and an invalid revision
//! rejected — reported once, the source's `Stalled` condition written, the last good revision
//! kept in force.

use sha2::{Digest, Sha256};

use super::{Finished, Loop, Next};
use crate::decide::diagnostics::Diagnostic;
use crate::decide::outcome::{Outcome, Stall, StallReason};
use crate::edges::source::dir;
use crate::edges::source::remote::Root;
use crate::edges::store::{HistoryEntry, Write};

/// A revision id for a folder: the digest of its files' paths and contents.
fn folder_revision(files: &[crate::decide::catalog::SourceFile]) -> String {
    let mut h = Sha256::new();
    for f in files {
        h.update(f.path.as_bytes());
        h.update([0]);
        h.update(&f.content);
        h.update([0]);
    }
    format!("folder:{}", crate::decide::hex(&h.finalize()[..6]))
}

impl Loop {
    /// The source's files, its revision and its root folder; why not, when it cannot be read.
    pub(super) fn read(
        &self,
    ) -> Result<(Vec<crate::decide::catalog::SourceFile>, String, Root), String> {
        match &self.remote {
            None => dir::read_settled(&self.settings.path, dir::SETTLE, &|files| {
                self.shared_revision().as_deref() == Some(folder_revision(files).as_str())
            })
            .map(|files| {
                let revision = folder_revision(&files);
                (files, revision, Root::folder(&self.settings.path))
            })
            .map_err(|e| format!("cannot read {}: {e}", self.settings.path.display())),
            Some(remote) => remote
                .fetch()
                .map(|snap| {
                    let revision = format!("git:{}", &snap.revision.commit[..12]);
                    (snap.files, revision, snap.root)
                })
                .map_err(|e| e.to_string()),
        }
    }

    /// An unreadable folder or a broken or unreachable repository changes nothing that runs:
    /// the last good revision stays, and the source is looked at again, backing off.
    pub(super) fn unreadable(&mut self, why: String) -> Next {
        let outcome = self.failed("fetch", why);
        if self.settings.once {
            return Finished::with(1);
        }
        Next::Look(outcome)
    }

    /// A pass that failed on the way (`what`: `fetch` or `pass`): counted, shown in `/readyz`,
    /// and a transient outcome (backoff).
    pub(super) fn failed(&mut self, what: &str, why: String) -> Outcome {
        self.failures += 1;
        self.shared.metrics.reconciled("git", false);
        self.shared.metrics.failed("pass", what);
        self.set_ready(|r| {
            r.rejected = Some(what.into());
            r.errors = vec![why.clone()];
        });
        // A source is looked at again at the interval at the latest (it may be fixed by then),
        // the state store after the full backoff.
        let outcome = Outcome::Transient;
        let (wait, kept) = if what == "fetch" {
            (
                outcome.requeue(self.failures).min(self.settings.interval),
                "keeping the last good revision, trying again",
            )
        } else {
            (outcome.requeue(self.failures), "trying the pass again")
        };
        self.retry_in = wait;
        self.live.say(&format!("error: {why}; {kept} in {wait:?}"));
        outcome
    }

    /// A revision that fails validation: reported once (every error, and a `RevisionRejected`
    /// history entry), the source stalled on it; the last good revision stays in force.
    pub(super) fn rejected(
        &mut self,
        revision: &str,
        diags: &[Diagnostic],
    ) -> anyhow::Result<Next> {
        self.shared.metrics.reconciled("git", false);
        self.shared.metrics.failed("pass", "invalid-revision");
        let errors: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
        self.set_ready(|r| {
            r.rejected = Some(revision.to_string());
            r.errors = errors.clone();
        });
        let message = format!(
            "revision {revision} is invalid ({} error{}); {}",
            diags.len(),
            if diags.len() == 1 { "" } else { "s" },
            match self.last_good() {
                Some(g) => format!("still serving {g}"),
                None => "nothing reconciled yet".to_string(),
            }
        );
        if self.last_rejected.as_deref() != Some(revision) {
            for d in diags {
                self.live.say(&format!("error: {d}"));
            }
            self.live.say(&message);
            self.record_rejection(revision, &message, diags)?;
            self.last_rejected = Some(revision.to_string());
            // Counted now: no pass reads the history while the revision stays invalid.
            self.observe()?;
        }
        let stall = Stall {
            reason: StallReason::InvalidRevision,
            message,
        };
        self.source_status(None, Some(&stall))?;
        if self.settings.once {
            return Ok(Finished::with(1));
        }
        Ok(Next::Look(Outcome::Stalled(stall)))
    }

    /// The `RevisionRejected` history entry.
    fn record_rejection(
        &self,
        revision: &str,
        message: &str,
        diags: &[Diagnostic],
    ) -> anyhow::Result<()> {
        self.store.apply(&[Write::History(HistoryEntry {
            id: 0,
            at: chrono::Utc::now(),
            event: crate::decide::events::Event::RevisionRejected
                .as_str()
                .into(),
            namespace: "default".into(),
            model: String::new(),
            subject: self.source.clone(),
            version: None,
            alias: None,
            actor: Some("slipway".into()),
            revision: Some(revision.to_string()),
            decision: Some("rejected".into()),
            message: message.to_string(),
            data: serde_json::to_value(diags)?,
        })])?;
        Ok(())
    }

    /// The last good revision and when it was reconciled, from the source's status.
    fn last_good(&self) -> Option<String> {
        let s = self
            .store
            .status("Source", "default", &self.source)
            .ok()??;
        Some(format!(
            "{} (reconciled {})",
            s.get("lastGood")?.as_str()?,
            s.get("at")?.as_str()?
        ))
    }

    /// Writes the source's status: the last good revision when `good`, and its `Stalled`
    /// condition as `stall` says (set for an invalid revision, cleared by a good one).
    pub(super) fn source_status(
        &self,
        good: Option<&str>,
        stall: Option<&Stall>,
    ) -> anyhow::Result<()> {
        let mut status = self
            .store
            .status("Source", "default", &self.source)?
            .unwrap_or_else(|| serde_json::json!({}));
        let now = chrono::Utc::now();
        if let Some(revision) = good {
            status["lastGood"] = revision.into();
            status["at"] = now
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                .into();
        }
        let previous: Vec<slipway_crd::common::Condition> =
            serde_json::from_value(status["conditions"].clone()).unwrap_or_default();
        let conditions = crate::decide::outcome::stall_conditions(&previous, stall, None, now);
        if good.is_none() && conditions.is_none() {
            return Ok(());
        }
        if let Some(c) = conditions {
            status["conditions"] = serde_json::to_value(c)?;
        }
        self.store.apply(&[Write::Status {
            kind: "Source".into(),
            namespace: "default".into(),
            name: self.source.clone(),
            status,
        }])?;
        Ok(())
    }
}
