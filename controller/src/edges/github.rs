//! GitHub's REST API, for the one thing Slipway asks of it: opening the pull request of a
//! rollback written back to the source (`POST /repos/{owner}/{repo}/pulls`), or finding the one
//! already open for the branch. The token is the operator's and never appears in an error.

use std::time::Duration;

use serde_json::{Value, json};

/// Where and as whom pull requests are opened.
#[derive(Clone)]
pub struct GitHub {
    /// The API's base URL (`https://api.github.com`, or a GitHub Enterprise `…/api/v3`).
    pub api: String,
    /// `owner/name`.
    pub repository: String,
    /// The token (a secret: never printed).
    pub token: String,
}

/// The repository `owner/name` a github.com remote URL names (`https://github.com/o/r.git`,
/// `git@github.com:o/r.git`, `ssh://git@github.com/o/r`), if it is one.
pub fn repository_of(url: &str) -> Option<String> {
    let rest = url
        .split_once("github.com/")
        .or_else(|| url.split_once("github.com:"))?
        .1;
    let mut parts = rest.trim_end_matches('/').split('/');
    let owner = parts.next().filter(|s| !s.is_empty())?;
    let name = parts.next()?.trim_end_matches(".git");
    (!name.is_empty() && parts.next().is_none()).then(|| format!("{owner}/{name}"))
}

impl std::fmt::Debug for GitHub {
    /// Without the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHub")
            .field("api", &self.api)
            .field("repository", &self.repository)
            .finish_non_exhaustive()
    }
}

impl GitHub {
    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(Duration::from_secs(20)))
            .build()
            .new_agent()
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, Value), String> {
        let url = format!("{}{path}", self.api.trim_end_matches('/'));
        let agent = Self::agent();
        let auth = format!("Bearer {}", self.token);
        let answer = match body {
            Some(b) => agent
                .post(&url)
                .header("Authorization", &auth)
                .header("Accept", "application/vnd.github+json")
                .header("X-GitHub-Api-Version", "2022-11-28")
                .header("User-Agent", "slipway")
                .header("Content-Type", "application/json")
                .send(b.to_string()),
            None => agent
                .get(&url)
                .header("Authorization", &auth)
                .header("Accept", "application/vnd.github+json")
                .header("X-GitHub-Api-Version", "2022-11-28")
                .header("User-Agent", "slipway")
                .call(),
        };
        let mut answer = answer.map_err(|e| format!("cannot reach {url} ({method}): {e}"))?;
        let code = answer.status().as_u16();
        let text = answer
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_string()
            .unwrap_or_default();
        Ok((code, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// Opens a pull request from `branch` into `base`; its web address. A pull request already
    /// open for the branch (an earlier attempt) is found and returned instead.
    pub fn open_pull_request(
        &self,
        branch: &str,
        base: &str,
        title: &str,
        body: &str,
    ) -> Result<String, String> {
        let pulls = format!("/repos/{}/pulls", self.repository);
        let (code, answer) = self.call(
            "POST",
            &pulls,
            Some(&json!({"title": title, "head": branch, "base": base, "body": body})),
        )?;
        let link = |v: &Value| v["html_url"].as_str().map(str::to_string);
        match code {
            201 => link(&answer)
                .ok_or_else(|| "GitHub opened a pull request but gave no html_url".to_string()),
            422 => {
                let owner = self.repository.split('/').next().unwrap_or_default();
                let (_, open) = self.call(
                    "GET",
                    &format!("{pulls}?state=open&head={owner}:{branch}"),
                    None,
                )?;
                open.as_array()
                    .and_then(|a| a.first())
                    .and_then(link)
                    .ok_or_else(|| format!("GitHub refused the pull request: {}", words(&answer)))
            }
            401 | 403 => Err(format!(
                "GitHub refused the token (HTTP {code}): {}; it needs pull-request write access to {}",
                words(&answer),
                self.repository
            )),
            _ => Err(format!(
                "GitHub answered HTTP {code} to opening a pull request on {}: {}",
                self.repository,
                words(&answer)
            )),
        }
    }
}

/// Carries a rollback's proposal out, as both homes do: commits it on `base` (a fetched commit
/// of `remote`) and pushes its branch, then — with `github` — opens its pull request into the
/// branch the remote follows.
pub fn push_and_propose(
    remote: &crate::edges::source::remote::Remote,
    base: &str,
    p: &crate::decide::rollout::writeback::Proposal,
    github: Option<&GitHub>,
) -> crate::decide::rollout::writeback::Done {
    use crate::decide::rollout::writeback::Done;
    let commit = match remote.push_change(base, &p.file, &p.content, &p.branch, &p.message) {
        Ok(c) => c,
        Err(why) => return Done::Failed(why),
    };
    let (pull_request, refused) = match github {
        Some(gh) => match gh.open_pull_request(&p.branch, remote.reference(), p.title(), &p.body())
        {
            Ok(url) => (Some(url), None),
            Err(why) => (None, Some(why)),
        },
        None => (None, None),
    };
    Done::Pushed {
        commit,
        pull_request,
        refused,
    }
}

/// GitHub's own words in an error answer (`message` and the errors' messages), at most 300 bytes.
fn words(answer: &Value) -> String {
    let mut out = answer["message"]
        .as_str()
        .unwrap_or("no message")
        .to_string();
    for e in answer["errors"].as_array().into_iter().flatten() {
        if let Some(m) = e["message"].as_str() {
            out.push_str(&format!("; {m}"));
        }
    }
    let mut end = out.len().min(300);
    while !out.is_char_boundary(end) {
        end -= 1;
    }
    out.truncate(end);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_is_read_from_a_github_url() {
        for url in [
            "https://github.com/acme/registry.git",
            "https://bot:tok@github.com/acme/registry",
            "git@github.com:acme/registry.git",
            "ssh://git@github.com/acme/registry.git",
        ] {
            assert_eq!(
                repository_of(url).as_deref(),
                Some("acme/registry"),
                "{url}"
            );
        }
        assert_eq!(repository_of("https://gitlab.com/acme/registry.git"), None);
        assert_eq!(repository_of("https://github.com/acme"), None);
        assert_eq!(repository_of("https://github.com/acme/r/tree/main"), None);
    }
}
