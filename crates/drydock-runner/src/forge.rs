//! Commit statuses on the forge: for a repository configured with
//! `forge: { kind: github|gitlab, api: URL, project: …, token: { env: … } }`,
//! the runner posts a status on each run's commit when the run is queued,
//! when it starts and when it ends, with a link to the run's page and the
//! tier summary as the description.
//!
//! The endpoints (as the forges document them; tested against a loopback
//! server implementing this contract, not against github.com or gitlab.com):
//! - GitHub: `POST {api}/repos/{owner}/{repo}/statuses/{sha}`, headers
//!   `Authorization: Bearer <token>`, `Accept: application/vnd.github+json`,
//!   `X-GitHub-Api-Version: 2022-11-28`, JSON body
//!   `{state, target_url, description, context}` with `state` one of
//!   `pending`, `success`, `failure`, `error`; 201 on success.
//! - GitLab: `POST {api}/projects/{id}/statuses/{sha}` (`id` the numeric id
//!   or the URL-encoded path), header `PRIVATE-TOKEN: <token>`, JSON body
//!   `{state, target_url, description, name}` with `state` one of
//!   `pending`, `running`, `success`, `failed`, `canceled`; 201 on success.
//!
//! Posting never blocks a run: each post is a task of its own, chained after
//! the previous post of the same run so that statuses land in order; a
//! failed post (connection refused, timeout, 429, 5xx) is retried
//! [`ATTEMPTS`] times with exponential backoff from [`FIRST_BACKOFF`], then
//! given up (logged, counted in the metrics). A 4xx other than 429 is not
//! retried. The token is never logged: errors are reported by status code
//! and reqwest's message, which never carries request headers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

pub use crate::config::{ForgeConfig, ForgeKind};
use crate::metrics::Metrics;
use crate::store::{Run, RunState, RunSummary};

/// Attempts of one status post (the first and the retries).
pub const ATTEMPTS: u32 = 4;
/// Wait before the first retry; doubled before each next one.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Time one request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The moment of a run a status is posted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moment {
    /// Queued.
    Queued,
    /// A runner started it.
    Started,
    /// It ended (its state is final).
    Finished,
}

/// One status to post: the body's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The forge's state word.
    pub state: &'static str,
    /// The run's page.
    pub target_url: String,
    /// At most 140 characters (GitHub's limit).
    pub description: String,
}

/// The forge's state word for a run at `moment`.
pub fn state_word(kind: ForgeKind, moment: Moment, state: RunState) -> &'static str {
    match (kind, moment) {
        (ForgeKind::Github, Moment::Queued | Moment::Started) => "pending",
        (ForgeKind::Gitlab, Moment::Queued) => "pending",
        (ForgeKind::Gitlab, Moment::Started) => "running",
        (ForgeKind::Github, Moment::Finished) => match state {
            RunState::Passed => "success",
            RunState::Failed => "failure",
            // GitHub has no "cancelled": an error that says so.
            _ => "error",
        },
        (ForgeKind::Gitlab, Moment::Finished) => match state {
            RunState::Passed => "success",
            RunState::Failed | RunState::Errored => "failed",
            _ => "canceled",
        },
    }
}

/// The description: the run's state and its tier summary
/// (`failed: lint ✓ 3s, unit ✗ 12s (41/42 tests)`), cut to 140 characters.
pub fn describe(moment: Moment, run: &Run, runner: &str) -> String {
    let text = match moment {
        Moment::Queued => format!("queued ({})", run.trigger),
        Moment::Started => format!("running on {runner}"),
        Moment::Finished => {
            let mut text = run.state.as_str().to_string();
            if let Some(summary) = &run.summary {
                let tiers = tier_summary(summary);
                if !tiers.is_empty() {
                    text.push_str(": ");
                    text.push_str(&tiers);
                }
            } else if let Some(reason) = &run.reason {
                text.push_str(": ");
                text.push_str(reason);
            }
            text
        }
    };
    cut(&text, 140)
}

fn tier_summary(summary: &RunSummary) -> String {
    use drydock_core::events::Status as S;
    summary
        .tiers
        .iter()
        .map(|t| {
            let mark = match t.status {
                S::Passed | S::Flaky => "✓",
                S::Failed | S::TimedOut | S::Errored => "✗",
                _ => "–",
            };
            let mut s = format!("{} {mark} {}s", t.name, t.duration_ms.div_ceil(1000));
            if t.tests.tests > 0 {
                let passed = t
                    .tests
                    .tests
                    .saturating_sub(t.tests.failures + t.tests.errors + t.tests.skipped);
                s.push_str(&format!(" ({passed}/{} tests)", t.tests.tests));
            }
            s
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `text` cut to at most `max` characters, `…` marking a cut.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// Percent-encodes a GitLab project path (`group/project` →
/// `group%2Fproject`): everything but RFC 3986 unreserved characters.
fn encode_component(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The request of a status post: URL and JSON body (the headers are in the
/// module documentation).
pub fn request(forge: &ForgeConfig, sha: &str, status: &Status) -> (String, serde_json::Value) {
    match forge.kind {
        ForgeKind::Github => (
            format!("{}/repos/{}/statuses/{sha}", forge.api, forge.project),
            json!({
                "state": status.state,
                "target_url": status.target_url,
                "description": status.description,
                "context": forge.context,
            }),
        ),
        ForgeKind::Gitlab => (
            format!(
                "{}/projects/{}/statuses/{sha}",
                forge.api,
                encode_component(&forge.project)
            ),
            json!({
                "state": status.state,
                "target_url": status.target_url,
                "description": status.description,
                "name": forge.context,
            }),
        ),
    }
}

/// Why one post failed, and whether trying again may help.
#[derive(Debug)]
struct PostError {
    message: String,
    retry: bool,
}

async fn post_once(
    client: &reqwest::Client,
    forge: &ForgeConfig,
    sha: &str,
    status: &Status,
) -> Result<(), PostError> {
    let (url, body) = request(forge, sha, status);
    let mut req = client.post(&url).json(&body);
    req = match forge.kind {
        ForgeKind::Github => req
            .bearer_auth(forge.token.expose())
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28"),
        ForgeKind::Gitlab => req.header("PRIVATE-TOKEN", forge.token.expose()),
    };
    match req.send().await {
        Ok(resp) if resp.status().is_success() => Ok(()),
        Ok(resp) => {
            let code = resp.status();
            Err(PostError {
                message: format!("{} answered {code}", forge.kind.as_str()),
                retry: code.is_server_error() || code.as_u16() == 429,
            })
        }
        // reqwest's errors name the URL, never the headers.
        Err(e) => Err(PostError {
            message: e.without_url().to_string(),
            retry: true,
        }),
    }
}

/// Posts commit statuses in the background, in order per run.
pub struct Poster {
    client: reqwest::Client,
    /// The last post task of each run that has not ended.
    chains: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
    metrics: Arc<Metrics>,
    backoff: Duration,
}

impl Poster {
    /// A poster that counts its posts in `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Poster {
        Poster::with_backoff(metrics, FIRST_BACKOFF)
    }

    /// [`Poster::new`] with another first backoff (tests).
    pub fn with_backoff(metrics: Arc<Metrics>, backoff: Duration) -> Poster {
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("drydock-runner/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Poster {
            client,
            chains: Mutex::new(HashMap::new()),
            metrics,
            backoff,
        }
    }

    /// Queues the post of `status` on `run`'s commit, after the run's
    /// previous posts; returns at once. `last`: the run's final status (its
    /// chain is dropped afterwards).
    pub fn post(&self, forge: &ForgeConfig, run: &Run, status: Status, last: bool) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut chains = self.chains.lock().unwrap_or_else(|p| p.into_inner());
        let previous = chains.remove(&run.id);
        let client = self.client.clone();
        let forge = forge.clone();
        let sha = run.sha.clone();
        let run_id = run.id.clone();
        let metrics = self.metrics.clone();
        let backoff = self.backoff;
        let task = runtime.spawn(async move {
            if let Some(previous) = previous {
                let _ = previous.await;
            }
            let kind = forge.kind.as_str();
            let mut wait = backoff;
            for attempt in 1..=ATTEMPTS {
                match post_once(&client, &forge, &sha, &status).await {
                    Ok(()) => {
                        metrics.forge_status(kind, "posted");
                        tracing::debug!(run = %run_id, state = status.state, "commit status posted to {kind}");
                        return;
                    }
                    Err(e) if e.retry && attempt < ATTEMPTS => {
                        metrics.forge_status(kind, "retried");
                        tracing::warn!(run = %run_id, state = status.state, "commit status to {kind}: {} (attempt {attempt} of {ATTEMPTS}; retrying in {wait:?})", e.message);
                        tokio::time::sleep(wait).await;
                        wait *= 2;
                    }
                    Err(e) => {
                        metrics.forge_status(kind, "failed");
                        tracing::warn!(run = %run_id, state = status.state, "commit status to {kind} not posted: {} (attempt {attempt} of {ATTEMPTS}); the run goes on", e.message);
                        return;
                    }
                }
            }
        });
        if !last {
            chains.insert(run.id.clone(), task);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn forge(kind: ForgeKind) -> ForgeConfig {
        ForgeConfig {
            kind,
            api: "http://127.0.0.1:1/api/v4".into(),
            project: "group/sub project".into(),
            token: Secret::new("t0ken-value"),
            context: "drydock".into(),
        }
    }

    #[test]
    fn states_per_forge() {
        use ForgeKind::*;
        use Moment::*;
        let cases = [
            (Github, Queued, RunState::Queued, "pending"),
            (Github, Started, RunState::Running, "pending"),
            (Github, Finished, RunState::Passed, "success"),
            (Github, Finished, RunState::Failed, "failure"),
            (Github, Finished, RunState::Errored, "error"),
            (Github, Finished, RunState::Cancelled, "error"),
            (Github, Finished, RunState::Interrupted, "error"),
            (Gitlab, Queued, RunState::Queued, "pending"),
            (Gitlab, Started, RunState::Running, "running"),
            (Gitlab, Finished, RunState::Passed, "success"),
            (Gitlab, Finished, RunState::Failed, "failed"),
            (Gitlab, Finished, RunState::Errored, "failed"),
            (Gitlab, Finished, RunState::Cancelled, "canceled"),
        ];
        for (kind, moment, state, word) in cases {
            assert_eq!(
                state_word(kind, moment, state),
                word,
                "{kind:?} {moment:?} {state:?}"
            );
        }
    }

    #[test]
    fn requests_follow_the_documented_contract() {
        let status = Status {
            state: "success",
            target_url: "http://runner/runs/r1".into(),
            description: "passed".into(),
        };
        let (url, body) = request(&forge(ForgeKind::Gitlab), "abc", &status);
        assert_eq!(
            url,
            "http://127.0.0.1:1/api/v4/projects/group%2Fsub%20project/statuses/abc"
        );
        assert_eq!(body["name"], "drydock");
        assert_eq!(body["state"], "success");
        let mut github = forge(ForgeKind::Github);
        github.project = "owner/repo".into();
        github.api = "https://api.github.com".into();
        let (url, body) = request(&github, "abc", &status);
        assert_eq!(url, "https://api.github.com/repos/owner/repo/statuses/abc");
        assert_eq!(body["context"], "drydock");
        assert_eq!(body["target_url"], "http://runner/runs/r1");
        assert!(!body.to_string().contains("t0ken"));
    }

    #[test]
    fn descriptions_are_cut() {
        assert_eq!(cut("abc", 140), "abc");
        let long = "x".repeat(200);
        let c = cut(&long, 140);
        assert_eq!(c.chars().count(), 140);
        assert!(c.ends_with('…'));
    }
}
