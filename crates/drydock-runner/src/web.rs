//! The HTTP side: push webhooks, the JSON API, the status page and badges.
//!
//! | route | what |
//! |---|---|
//! | `POST /hooks/github` | GitHub push: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`, `X-GitHub-Delivery` |
//! | `POST /hooks/gitlab` | GitLab push: `X-Gitlab-Token` (the shared secret), `X-Gitlab-Event-UUID` |
//! | `GET /api/runs` | runs, newest first (`?repo=&branch=&state=&limit=`) |
//! | `GET /api/runs/{id}` | one run with its tiers, steps and test counts |
//! | `GET /api/runs/{id}/log` | its log, streamed until the run ends |
//! | `POST /api/runs/{id}/cancel`, `/rerun` | need `Authorization: Bearer <api token>` |
//! | `GET /api/runs/{id}/junit.xml` | the run's merged JUnit report |
//! | `GET /api/runs/{id}/results` | the files of its results folder (`{"files": [{"path", "size"}]}`) |
//! | `GET /api/runs/{id}/results/{path}` | one of them |
//! | `GET /badge/{repo}/{branch}.svg` | status badge of a branch's last finished run |
//! | `GET /`, `GET /runs/{id}` | the status page |
//! | `GET /metrics` | Prometheus metrics (see [`crate::metrics`]) |
//! | `GET /healthz` | liveness: 200 while the HTTP server answers |
//! | `GET /readyz` | readiness: 200 when the store and the engine answer, else 503 saying which does not |
//!
//! With `read_auth: true`, every `GET` route except `/healthz` and `/readyz`
//! needs `Authorization: Bearer <api token>` too (401 without it).
//!
//! Webhooks: a body larger than `max_body` gets 413, a missing or wrong
//! signature 401, malformed JSON 400 (each logged); a delivery id seen before
//! is a replay and is ignored (200). Secrets never appear in responses or logs.

// Handlers short-circuit with a ready `Response` as the error: it is built once
// per request, so its size does not matter.
#![allow(clippy::result_large_err)]

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::config::valid_branch;
use crate::git::is_sha;
use crate::metrics::DeliveryResult;
use crate::store::{Cancel, NewRun, Run, RunFilter, RunKind, RunState};
use crate::Shared;

type AppState = Arc<Shared>;

/// Serves until the runner stops.
pub async fn serve(shared: Arc<Shared>, listener: tokio::net::TcpListener) {
    let stop = shared.shutdown.clone();
    let app = router(shared);
    let result = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move { stop.cancelled().await })
    .await;
    if let Err(e) = result {
        tracing::error!("HTTP server: {e}");
    }
}

/// The routes.
pub fn router(shared: Arc<Shared>) -> Router {
    // Reading: behind the API token when `read_auth` is on.
    let read = Router::new()
        .route("/", get(page_index))
        .route("/runs/{id}", get(page_run))
        .route("/api/runs", get(api_runs))
        .route("/api/runs/{id}", get(api_run))
        .route("/api/runs/{id}/log", get(api_log))
        .route("/api/runs/{id}/junit.xml", get(api_junit))
        .route("/api/runs/{id}/results", get(api_results))
        .route("/api/runs/{id}/results/{*path}", get(api_result_file))
        .route("/badge/{repo}/{*branch}", get(badge))
        .route("/metrics", get(metrics))
        .route_layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            read_guard,
        ));
    Router::new()
        .merge(read)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/hooks/github", post(hook_github))
        .route("/hooks/gitlab", post(hook_gitlab))
        .route("/api/runs/{id}/cancel", post(api_cancel))
        .route("/api/runs/{id}/rerun", post(api_rerun))
        .with_state(shared)
}

/// `read_auth: true`: reading needs the API token.
async fn read_guard(State(shared): State<AppState>, request: Request, next: Next) -> Response {
    if shared.config.read_auth {
        if let Err(refused) = authorized(&shared, request.headers()) {
            return refused;
        }
    }
    next.run(request).await
}

// ---------------------------------------------------------------- operations

/// Liveness: the process serves HTTP.
async fn healthz(State(shared): State<AppState>) -> Response {
    Json(json!({ "status": "ok", "runner": shared.identity.name })).into_response()
}

/// Readiness: the store and the engine answer (each within 5 s).
async fn readyz(State(shared): State<AppState>) -> Response {
    const WITHIN: Duration = Duration::from_secs(5);
    let store = match tokio::time::timeout(WITHIN, shared.store.count(RunState::Queued)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {WITHIN:?}")),
    };
    let engine = match tokio::time::timeout(WITHIN, shared.engine.ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {WITHIN:?}")),
    };
    if engine.is_err() {
        shared.metrics.engine_error("ping");
    }
    let word = |r: &Result<(), String>| match r {
        Ok(()) => json!({ "ok": true }),
        Err(e) => json!({ "ok": false, "error": e }),
    };
    let ready = store.is_ok() && engine.is_ok();
    let body = json!({ "ready": ready, "store": word(&store), "engine": word(&engine) });
    if ready {
        Json(body).into_response()
    } else {
        tracing::warn!("not ready: {body}");
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

/// `GET /metrics`: the queue gauge is read from the store now; the rest is
/// counted as things happen.
async fn metrics(State(shared): State<AppState>) -> Response {
    for state in [RunState::Queued, RunState::Running] {
        match shared.store.count(state).await {
            Ok(n) => shared.metrics.set_queue(state, n),
            Err(e) => tracing::warn!("metrics: cannot count {} runs: {e}", state.as_str()),
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.metrics.encode(),
    )
        .into_response()
}

// ---------------------------------------------------------------- webhooks

/// HMAC-SHA256 (RFC 2104) of `message` under `key` (any length), by the
/// `hmac` crate: what GitHub signs a delivery's raw body with
/// (`X-Hub-Signature-256: sha256=<hex>`).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    // HMAC accepts keys of any length (longer ones are hashed first), so
    // `new_from_slice` cannot fail for it.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        unreachable!("HMAC takes keys of any length")
    };
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// Equality in time independent of where the inputs differ (`subtle`); the
/// length is not secret (a signature's or a token's length is public).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

fn reject(status: StatusCode, why: &str) -> Response {
    (status, Json(json!({ "error": why }))).into_response()
}

async fn read_body(
    shared: &Shared,
    body: Body,
    hook: &str,
    peer: std::net::SocketAddr,
) -> Result<Bytes, Response> {
    match axum::body::to_bytes(body, shared.config.max_body).await {
        Ok(bytes) => Ok(bytes),
        Err(_) => {
            tracing::warn!(hook, %peer, "webhook rejected: body larger than {} bytes (or unreadable)", shared.config.max_body);
            Err(reject(StatusCode::PAYLOAD_TOO_LARGE, "body too large"))
        }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Counts a delivery's result in the metrics: what the handler marked
/// (queued, replayed), else what its status says.
fn count_delivery(shared: &Shared, hook: &str, response: Response) -> Response {
    let result = response
        .extensions()
        .get::<DeliveryResult>()
        .copied()
        .unwrap_or(match response.status() {
            StatusCode::UNAUTHORIZED => DeliveryResult::unauthorized,
            StatusCode::SERVICE_UNAVAILABLE => DeliveryResult::unavailable,
            s if s.is_success() => DeliveryResult::ignored,
            _ => DeliveryResult::rejected,
        });
    shared.metrics.delivery(hook, result);
    response
}

/// Marks a response with what became of the delivery.
fn marked(mut response: Response, result: DeliveryResult) -> Response {
    response.extensions_mut().insert(result);
    response
}

async fn hook_github(
    State(shared): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let response = hook_github_inner(&shared, peer, headers, body).await;
    count_delivery(&shared, "github", response)
}

async fn hook_gitlab(
    State(shared): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let response = hook_gitlab_inner(&shared, peer, headers, body).await;
    count_delivery(&shared, "gitlab", response)
}

async fn hook_github_inner(
    shared: &Shared,
    peer: std::net::SocketAddr,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let body = match read_body(shared, body, "github", peer).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(secret) = &shared.config.webhook_secret else {
        tracing::warn!(hook = "github", %peer, "webhook rejected: no webhook_secret configured");
        return reject(StatusCode::UNAUTHORIZED, "webhooks are not configured");
    };
    let delivery = header(&headers, "x-github-delivery").unwrap_or("");
    let signature = header(&headers, "x-hub-signature-256")
        .and_then(|s| s.strip_prefix("sha256="))
        .and_then(|h| hex::decode(h).ok());
    let expected = hmac_sha256(secret.expose().as_bytes(), &body);
    match signature {
        None => {
            tracing::warn!(hook = "github", %peer, delivery, "webhook rejected: missing signature");
            return reject(StatusCode::UNAUTHORIZED, "missing signature");
        }
        Some(sig) if !constant_time_eq(&sig, &expected) => {
            tracing::warn!(hook = "github", %peer, delivery, "webhook rejected: wrong signature");
            return reject(StatusCode::UNAUTHORIZED, "wrong signature");
        }
        Some(_) => {}
    }
    let event = header(&headers, "x-github-event").unwrap_or("push");
    // The signature covers the raw body, whatever its content type.
    let payload = match github_payload(header(&headers, "content-type"), &body) {
        Ok(p) => p,
        Err(why) => {
            tracing::warn!(hook = "github", %peer, delivery, "webhook rejected: {why}");
            return reject(StatusCode::BAD_REQUEST, why);
        }
    };
    handle_push(
        shared,
        "github",
        peer,
        delivery,
        event == "push",
        &body,
        &payload,
    )
    .await
}

/// The JSON of a GitHub delivery: the body itself (`application/json`), or
/// the `payload` field of a form (`application/x-www-form-urlencoded`, the
/// content type GitHub's webhook form preselects). A missing content type is
/// taken as JSON.
pub fn github_payload<'b>(
    content_type: Option<&str>,
    body: &'b [u8],
) -> Result<std::borrow::Cow<'b, [u8]>, &'static str> {
    let media = content_type
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match media.as_str() {
        "application/json" | "" => Ok(body.into()),
        "application/x-www-form-urlencoded" => form_urlencoded::parse(body)
            .find(|(k, _)| k == "payload")
            .map(|(_, v)| v.into_owned().into_bytes().into())
            .ok_or("a form delivery without a `payload` field"),
        _ => Err("unsupported content type (expected application/json or application/x-www-form-urlencoded)"),
    }
}

async fn hook_gitlab_inner(
    shared: &Shared,
    peer: std::net::SocketAddr,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let body = match read_body(shared, body, "gitlab", peer).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(secret) = &shared.config.webhook_secret else {
        tracing::warn!(hook = "gitlab", %peer, "webhook rejected: no webhook_secret configured");
        return reject(StatusCode::UNAUTHORIZED, "webhooks are not configured");
    };
    let delivery = header(&headers, "x-gitlab-event-uuid").unwrap_or("");
    match header(&headers, "x-gitlab-token") {
        None => {
            tracing::warn!(hook = "gitlab", %peer, delivery, "webhook rejected: missing token");
            return reject(StatusCode::UNAUTHORIZED, "missing token");
        }
        Some(t) if !constant_time_eq(t.as_bytes(), secret.expose().as_bytes()) => {
            tracing::warn!(hook = "gitlab", %peer, delivery, "webhook rejected: wrong token");
            return reject(StatusCode::UNAUTHORIZED, "wrong token");
        }
        Some(_) => {}
    }
    let event = header(&headers, "x-gitlab-event").unwrap_or("Push Hook");
    handle_push(
        shared,
        "gitlab",
        peer,
        delivery,
        event == "Push Hook",
        &body,
        &body,
    )
    .await
}

/// What a push delivery asks for, read from its JSON (see [`parse_push`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushRequest {
    /// A branch moved to a commit; `names` are the repository's names and
    /// URLs the delivery gives (matched against the configuration).
    Push {
        /// The branch.
        branch: String,
        /// The commit it points to now.
        after: String,
        /// `name`, `full_name`, clone URLs… of the repository.
        names: Vec<String>,
    },
    /// Nothing to run (a tag, a deleted branch): why.
    Ignored(&'static str),
}

/// Reads a push delivery's JSON: `ref`, `after` and the repository's names.
/// Every field is checked (a branch name git accepts, a full commit id); a
/// refusal is `(400, why)`.
pub fn parse_push(payload: &[u8]) -> Result<PushRequest, &'static str> {
    let payload: Value = match serde_json::from_slice(payload) {
        Ok(v @ Value::Object(_)) => v,
        _ => return Err("malformed JSON body"),
    };
    let refname = payload.get("ref").and_then(Value::as_str);
    let after = payload.get("after").and_then(Value::as_str);
    let (Some(refname), Some(after)) = (refname, after) else {
        return Err("a push needs `ref` and `after`");
    };
    let Some(branch) = refname.strip_prefix("refs/heads/") else {
        return Ok(PushRequest::Ignored("not a branch"));
    };
    if !is_sha(after) || !valid_branch(branch) {
        return Err("invalid branch name or commit id");
    }
    if after.bytes().all(|b| b == b'0') {
        return Ok(PushRequest::Ignored("branch deleted"));
    }
    let project = payload
        .get("repository")
        .or_else(|| payload.get("project"))
        .cloned()
        .unwrap_or(Value::Null);
    let names = [
        "name",
        "full_name",
        "path_with_namespace",
        "clone_url",
        "ssh_url",
        "git_http_url",
        "git_ssh_url",
        "url",
    ]
    .iter()
    .filter_map(|k| project.get(k).and_then(Value::as_str))
    .map(str::to_string)
    .collect();
    Ok(PushRequest::Push {
        branch: branch.to_string(),
        after: after.to_string(),
        names,
    })
}

/// A verified delivery: replay check, then the push's branch and commit.
/// `body` is the raw body (its digest names deliveries without an id),
/// `payload` its JSON.
async fn handle_push(
    shared: &Shared,
    hook: &str,
    peer: std::net::SocketAddr,
    delivery: &str,
    is_push: bool,
    body: &[u8],
    payload: &[u8],
) -> Response {
    if serde_json::from_slice::<serde::de::IgnoredAny>(payload).is_err() {
        tracing::warn!(hook, %peer, delivery, "webhook rejected: malformed JSON body");
        return reject(StatusCode::BAD_REQUEST, "malformed JSON body");
    }
    // The delivery id: the header, else a digest of the signed body.
    let delivery_id = if delivery.is_empty() {
        format!("{hook}:body:{}", hex::encode(Sha256::digest(body)))
    } else if delivery.len() > 200 {
        return reject(StatusCode::BAD_REQUEST, "delivery id too long");
    } else {
        format!("{hook}:{delivery}")
    };
    // A delivery is recorded once its push is queued (below), so that one
    // cut short (the runner died) is handled again when it is redelivered.
    match shared.store.delivery_seen(&delivery_id).await {
        Ok(false) => {}
        Ok(true) => {
            tracing::warn!(hook, %peer, delivery, "webhook ignored: replayed delivery");
            return marked(
                (
                    StatusCode::OK,
                    Json(json!({ "ignored": "replayed delivery" })),
                )
                    .into_response(),
                DeliveryResult::replayed,
            );
        }
        Err(e) => {
            tracing::error!("{e}");
            return reject(StatusCode::SERVICE_UNAVAILABLE, "database unavailable");
        }
    }
    if !is_push {
        return (
            StatusCode::OK,
            Json(json!({ "ignored": "not a push event" })),
        )
            .into_response();
    }
    let (branch, after, names) = match parse_push(payload) {
        Ok(PushRequest::Push {
            branch,
            after,
            names,
        }) => (branch, after, names),
        Ok(PushRequest::Ignored(why)) => {
            return (StatusCode::OK, Json(json!({ "ignored": why }))).into_response()
        }
        Err(why) => {
            tracing::warn!(hook, %peer, delivery, "webhook rejected: {why}");
            return reject(StatusCode::BAD_REQUEST, why);
        }
    };
    let (branch, after) = (branch.as_str(), after.as_str());
    let repo = shared.config.repos.iter().find(|r| {
        names
            .iter()
            .any(|n| *n == r.name || *n == r.url || n.rsplit('/').next() == Some(r.name.as_str()))
    });
    let Some(repo) = repo else {
        tracing::info!(hook, delivery, "webhook ignored: repository not configured");
        return (
            StatusCode::ACCEPTED,
            Json(json!({ "ignored": "repository not configured" })),
        )
            .into_response();
    };
    if !repo.watches(branch) {
        return (
            StatusCode::ACCEPTED,
            Json(json!({ "ignored": "branch not watched" })),
        )
            .into_response();
    }
    let kind = if repo.is_candidate(branch) {
        RunKind::Candidate
    } else {
        RunKind::Branch
    };
    let new = NewRun {
        repo: repo.name.clone(),
        branch: branch.to_string(),
        sha: after.to_string(),
        kind,
        trigger: format!("webhook:{hook}"),
        retry_of: None,
    };
    let queued = shared.observe(new).await;
    if queued.is_ok() {
        if let Err(e) = shared.store.first_delivery(&delivery_id).await {
            tracing::warn!(hook, delivery, "cannot record the delivery: {e}");
        }
    }
    match queued {
        Ok(Some(run)) => marked(
            (StatusCode::ACCEPTED, Json(json!({ "queued": run.id }))).into_response(),
            DeliveryResult::queued,
        ),
        Ok(None) => (
            StatusCode::ACCEPTED,
            Json(json!({ "ignored": "commit already seen" })),
        )
            .into_response(),
        Err(e) => {
            tracing::error!("{e}");
            reject(StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
        }
    }
}

// ---------------------------------------------------------------- API

#[derive(Debug, Deserialize)]
struct ListQuery {
    repo: Option<String>,
    branch: Option<String>,
    state: Option<String>,
    limit: Option<usize>,
}

fn parse_state(s: &str) -> Option<RunState> {
    RunState::ALL.into_iter().find(|st| st.as_str() == s)
}

/// A run for the API: one this runner runs shows its progress as of now;
/// one another runner runs shows what that runner's last heartbeat stored.
fn with_live(shared: &Shared, mut run: Run) -> Run {
    if run.state == RunState::Running {
        if let Some(live) = shared.live.lock().unwrap().get(&run.id) {
            run.summary = Some(live.clone());
        }
    }
    run
}

async fn api_runs(State(shared): State<AppState>, Query(q): Query<ListQuery>) -> Response {
    let state = match q.state.as_deref().map(|s| (s, parse_state(s))) {
        Some((s, None)) => return reject(StatusCode::BAD_REQUEST, &format!("unknown state {s:?}")),
        Some((_, st)) => st,
        None => None,
    };
    let filter = RunFilter {
        repo: q.repo,
        branch: q.branch,
        state,
        finished: false,
        limit: q.limit.unwrap_or(100).clamp(1, 1000),
    };
    match shared.store.list(&filter).await {
        Ok(runs) => {
            let runs: Vec<Run> = runs.into_iter().map(|r| with_live(&shared, r)).collect();
            Json(json!({ "runs": runs })).into_response()
        }
        Err(e) => reject(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

async fn find(shared: &Shared, id: &str) -> Result<Run, Response> {
    match shared.store.get(id).await {
        Ok(Some(run)) => Ok(with_live(shared, run)),
        Ok(None) => Err(reject(StatusCode::NOT_FOUND, "no such run")),
        Err(e) => Err(reject(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())),
    }
}

/// One run, with its attempts (`attempts`: who claimed it, when, how each
/// ended).
async fn api_run(State(shared): State<AppState>, Path(id): Path<String>) -> Response {
    let run = match find(&shared, &id).await {
        Ok(run) => run,
        Err(r) => return r,
    };
    let attempts = shared.store.attempts(&id).await.unwrap_or_default();
    let mut value = serde_json::to_value(&run).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        map.insert("attempts".into(), json!(attempts));
    }
    Json(value).into_response()
}

/// The address of the runner that keeps a run's log (the one that ran its
/// latest attempt), when it is another runner of the fleet.
async fn log_elsewhere(shared: &Shared, run: &Run) -> Option<String> {
    let runner = run.runner.as_deref()?;
    if runner == shared.identity.name {
        return None;
    }
    let runners = shared.store.runners().await.ok()?;
    runners
        .into_iter()
        .find(|r| r.name == runner)
        .and_then(|r| r.url)
}

async fn api_log(State(shared): State<AppState>, Path(id): Path<String>) -> Response {
    let run = match find(&shared, &id).await {
        Ok(run) => run,
        Err(r) => return r,
    };
    // Logs stay on the machine that ran the run: send people there.
    if let Some(url) = log_elsewhere(&shared, &run).await {
        return Response::builder()
            .status(StatusCode::TEMPORARY_REDIRECT)
            .header(header::LOCATION, format!("{url}/api/runs/{id}/log"))
            .body(Body::empty())
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
    }
    let path = shared.results_dir(&id).join("run.log");
    // Stream what is there, then what is appended, until the run has ended.
    let stream = futures::stream::unfold(
        (shared.clone(), id, path, 0u64, false),
        |(shared, id, path, offset, done)| async move {
            if done {
                return None;
            }
            loop {
                let finished = shared
                    .store
                    .get(&id)
                    .await
                    .ok()
                    .flatten()
                    .is_none_or(|r| r.state.is_finished());
                let chunk = read_from(&path, offset);
                if !chunk.is_empty() {
                    let next = offset + chunk.len() as u64;
                    return Some((
                        Ok::<_, std::io::Error>(Bytes::from(chunk)),
                        (shared, id, path, next, false),
                    ));
                }
                if finished || shared.shutdown.is_cancelled() {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        },
    );
    Response::builder()
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn read_from(path: &std::path::Path, offset: u64) -> Vec<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let mut buf = Vec::new();
    if f.seek(SeekFrom::Start(offset)).is_ok() {
        let _ = f.take(1 << 20).read_to_end(&mut buf);
    }
    buf
}

/// A redirect to the runner of the fleet that keeps the run's results.
async fn elsewhere(shared: &Shared, run: &Run, path: &str) -> Option<Response> {
    let url = log_elsewhere(shared, run).await?;
    Some(
        Response::builder()
            .status(StatusCode::TEMPORARY_REDIRECT)
            .header(header::LOCATION, format!("{url}{path}"))
            .body(Body::empty())
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()),
    )
}

/// `GET /api/runs/{id}/junit.xml`: the merged JUnit report of the run.
async fn api_junit(State(shared): State<AppState>, Path(id): Path<String>) -> Response {
    serve_result(&shared, &id, "junit.xml").await
}

/// `GET /api/runs/{id}/results/{path}`: one file of the results folder.
async fn api_result_file(
    State(shared): State<AppState>,
    Path((id, path)): Path<(String, String)>,
) -> Response {
    serve_result(&shared, &id, &path).await
}

/// A relative path of `/`-separated normal components (no `..`, `.`,
/// empty component or leading `/`), at most 1024 bytes.
pub fn safe_relative(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= 1024
        && !path.contains('\\')
        && !path.contains('\0')
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    match ext {
        "xml" => "application/xml",
        "json" => "application/json",
        "log" | "txt" | "ndjson" | "raw" | "omitted" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

async fn serve_result(shared: &Arc<Shared>, id: &str, path: &str) -> Response {
    let run = match find(shared, id).await {
        Ok(run) => run,
        Err(r) => return r,
    };
    if !safe_relative(path) {
        return reject(StatusCode::BAD_REQUEST, "invalid path");
    }
    if let Some(redirect) = elsewhere(shared, &run, &format!("/api/runs/{id}/results/{path}")).await
    {
        return redirect;
    }
    let dir = shared.results_dir(id);
    // Inside the results folder even through symbolic links.
    let (Ok(root), Ok(file)) = (
        tokio::fs::canonicalize(&dir).await,
        tokio::fs::canonicalize(dir.join(path)).await,
    ) else {
        return reject(StatusCode::NOT_FOUND, "no such file in the run's results");
    };
    if !file.starts_with(&root) {
        return reject(StatusCode::NOT_FOUND, "no such file in the run's results");
    }
    let opened = match tokio::fs::File::open(&file).await {
        Ok(f) => f,
        Err(_) => return reject(StatusCode::NOT_FOUND, "no such file in the run's results"),
    };
    match opened.metadata().await {
        Ok(m) if m.is_file() => {
            let stream = tokio_util::io::ReaderStream::new(opened);
            Response::builder()
                .header(header::CONTENT_TYPE, content_type(path))
                .header(header::CONTENT_LENGTH, m.len())
                .body(Body::from_stream(stream))
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
        }
        _ => reject(StatusCode::NOT_FOUND, "no such file in the run's results"),
    }
}

/// Most files listed by `GET /api/runs/{id}/results`.
pub const MAX_LISTED_FILES: usize = 10_000;

/// `GET /api/runs/{id}/results`: the files of the results folder
/// (`{"files": [{"path", "size"}], "truncated": bool}`, sorted by path).
async fn api_results(State(shared): State<AppState>, Path(id): Path<String>) -> Response {
    let run = match find(&shared, &id).await {
        Ok(run) => run,
        Err(r) => return r,
    };
    if let Some(redirect) = elsewhere(&shared, &run, &format!("/api/runs/{id}/results")).await {
        return redirect;
    }
    let dir = shared.results_dir(&id);
    let listed = tokio::task::spawn_blocking(move || {
        let mut files = Vec::new();
        let mut truncated = false;
        let mut stack = vec![(dir.clone(), String::new())];
        while let Some((folder, prefix)) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&folder) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let rel = if prefix.is_empty() {
                    name
                } else {
                    format!("{prefix}/{name}")
                };
                // Symbolic links are not followed (file_type does not).
                match entry.file_type() {
                    Ok(t) if t.is_dir() => stack.push((entry.path(), rel)),
                    Ok(t) if t.is_file() => {
                        if files.len() >= MAX_LISTED_FILES {
                            truncated = true;
                            break;
                        }
                        let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                        files.push(json!({ "path": rel, "size": size }));
                    }
                    _ => {}
                }
            }
        }
        files.sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
        (files, truncated)
    })
    .await;
    match listed {
        Ok((files, truncated)) => {
            Json(json!({ "run": id, "files": files, "truncated": truncated })).into_response()
        }
        Err(e) => reject(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

fn authorized(shared: &Shared, headers: &HeaderMap) -> Result<(), Response> {
    let Some(token) = &shared.config.api_token else {
        return Err(reject(
            StatusCode::FORBIDDEN,
            "mutating endpoints are disabled: no api_token configured",
        ));
    };
    let given = header(headers, "authorization").and_then(|h| h.strip_prefix("Bearer "));
    match given {
        Some(g) if constant_time_eq(g.trim().as_bytes(), token.expose().as_bytes()) => Ok(()),
        _ => {
            tracing::warn!("API request rejected: missing or wrong token");
            Err(reject(StatusCode::UNAUTHORIZED, "missing or wrong token"))
        }
    }
}

async fn api_cancel(
    State(shared): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorized(&shared, &headers) {
        return r;
    }
    // Queued: one conditional update, so a worker claiming it at the same
    // moment either gets it first (then it is a running run's request) or
    // never gets it. Running: a persisted request its worker sees at its
    // next heartbeat (or at once, when it runs here or hears the store).
    let outcome = match shared.store.cancel(&id).await {
        Ok(outcome) => outcome,
        Err(e) => return reject(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    match outcome {
        Cancel::Cancelled => {
            tracing::info!(run = %id, "cancelled through the API before it started");
            // No worker will report its end: say it on the forge here.
            if let Ok(Some(run)) = shared.store.get(&id).await {
                shared.post_status(&run, crate::forge::Moment::Finished);
            }
            (
                StatusCode::ACCEPTED,
                Json(json!({ "cancelling": id, "state": "cancelled" })),
            )
                .into_response()
        }
        Cancel::Requested => {
            let handle = shared.running.lock().unwrap().get(&id).cloned();
            if let Some(handle) = handle {
                handle.cancel_asked();
            }
            tracing::info!(run = %id, "cancel requested through the API");
            (
                StatusCode::ACCEPTED,
                Json(json!({ "cancelling": id, "state": "running" })),
            )
                .into_response()
        }
        Cancel::Ended => reject(StatusCode::CONFLICT, "the run has already ended"),
        Cancel::NotFound => reject(StatusCode::NOT_FOUND, "no such run"),
    }
}

async fn api_rerun(
    State(shared): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorized(&shared, &headers) {
        return r;
    }
    let run = match find(&shared, &id).await {
        Ok(run) => run,
        Err(r) => return r,
    };
    match shared
        .enqueue(NewRun {
            repo: run.repo,
            branch: run.branch,
            sha: run.sha,
            kind: run.kind,
            trigger: format!("rerun of {id}"),
            retry_of: Some(id),
        })
        .await
    {
        Ok(again) => (StatusCode::ACCEPTED, Json(json!({ "queued": again.id }))).into_response(),
        Err(e) => reject(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

// ---------------------------------------------------------------- badge

async fn badge(
    State(shared): State<AppState>,
    Path((repo, branch)): Path<(String, String)>,
) -> Response {
    let Some(branch) = branch.strip_suffix(".svg") else {
        return reject(StatusCode::NOT_FOUND, "badges end in .svg");
    };
    let last = shared
        .store
        .list(&RunFilter {
            repo: Some(repo),
            branch: Some(branch.to_string()),
            finished: true,
            limit: 1,
            ..RunFilter::default()
        })
        .await
        .ok()
        .and_then(|runs| runs.into_iter().next());
    let (word, color) = match last.map(|r| r.state) {
        Some(RunState::Passed) => ("passing", "#2e7d32"),
        Some(RunState::Failed) => ("failing", "#c62828"),
        Some(RunState::Errored) => ("error", "#6d4c41"),
        Some(_) => ("stopped", "#757575"),
        None => ("unknown", "#9e9e9e"),
    };
    let label = "drydock";
    let lw = 6 * label.len() + 12;
    let rw = 7 * word.len() + 12;
    let svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="20" role="img" aria-label="{label}: {word}"><title>{label}: {word}</title><rect width="{lw}" height="20" fill="#555"/><rect x="{lw}" width="{rw}" height="20" fill="{color}"/><g fill="#fff" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11"><text x="6" y="14">{label}</text><text x="{tx}" y="14">{word}</text></g></svg>"##,
        w = lw + rw,
        tx = lw + 6,
    );
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        svg,
    )
        .into_response()
}

// ---------------------------------------------------------------- page

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn ms(d: u64) -> String {
    if d < 1000 {
        format!("{d} ms")
    } else {
        format!("{:.1} s", d as f64 / 1000.0)
    }
}

fn run_duration(run: &Run) -> String {
    match (run.started_ms, run.finished_ms) {
        (Some(s), Some(f)) => ms((f - s).max(0) as u64),
        (Some(s), None) => format!(
            "{} (running)",
            ms((crate::store::now_ms() - s).max(0) as u64)
        ),
        _ => String::new(),
    }
}

const STYLE: &str =
    "body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse}\
td,th{padding:.25em .75em;border-bottom:1px solid #ddd;text-align:left}\
.passed{color:#2e7d32}.failed,.timed_out{color:#c62828}.errored{color:#6d4c41}\
.running{color:#1565c0}.queued,.skipped,.cancelled,.interrupted{color:#757575}\
pre{background:#f6f6f6;padding:1em;overflow:auto;max-height:40em}";

fn page(title: &str, refresh: bool, body: &str) -> Html<String> {
    let meta = if refresh {
        "<meta http-equiv=\"refresh\" content=\"3\">"
    } else {
        ""
    };
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\">{meta}<title>{}</title><style>{STYLE}</style></head><body>{body}</body></html>",
        escape(title)
    ))
}

async fn page_index(State(shared): State<AppState>) -> Response {
    let runs = shared
        .store
        .list(&RunFilter {
            limit: 200,
            ..RunFilter::default()
        })
        .await
        .unwrap_or_default();
    let mut body = String::from("<h1>drydock runner</h1>");
    let queued = shared.store.count(RunState::Queued).await.unwrap_or(0);
    let running = shared.store.count(RunState::Running).await.unwrap_or(0);
    let _ = write!(
        body,
        "<p id=\"counts\">{running} running, {queued} queued</p>"
    );
    // The fleet: every runner sharing the store.
    let runners = shared.store.runners().await.unwrap_or_default();
    let now = crate::store::now_ms();
    // A runner that beat within two leases is alive.
    let alive_within = 2 * shared.config.lease.as_millis() as i64;
    body.push_str("<table id=\"runners\"><thead><tr><th>runner</th><th>where</th><th>last seen</th></tr></thead><tbody>");
    for r in &runners {
        let ago = (now - r.seen_ms).max(0);
        let _ = write!(
            body,
            "<tr class=\"runner\"><td>{name}{me}</td><td>{host}</td><td class=\"{class}\">{ago} ago</td></tr>",
            name = escape(&r.name),
            me = if r.name == shared.identity.name { " (this one)" } else { "" },
            host = escape(&r.host),
            class = if ago <= alive_within { "passed" } else { "interrupted" },
            ago = ms(ago as u64),
        );
    }
    body.push_str("</tbody></table>");
    let _ = write!(
        body,
        "<table id=\"runs\"><thead><tr><th>run</th><th>repository</th><th>branch</th><th>commit</th><th>state</th><th>runner</th><th>duration</th><th>why</th></tr></thead><tbody>"
    );
    for run in &runs {
        let _ = write!(
            body,
            "<tr class=\"run\" data-run=\"{id}\"><td><a href=\"/runs/{id}\">{id}</a></td><td>{repo}</td><td class=\"branch\">{branch}</td><td><code>{sha}</code></td><td class=\"state {state}\">{state}</td><td class=\"runner\">{runner}</td><td>{dur}</td><td class=\"reason\">{reason}</td></tr>",
            id = escape(&run.id),
            repo = escape(&run.repo),
            branch = escape(&run.branch),
            sha = escape(&run.sha[..run.sha.len().min(12)]),
            state = run.state.as_str(),
            runner = escape(&runner_attempt(run)),
            dur = run_duration(run),
            reason = escape(run.reason.as_deref().unwrap_or("")),
        );
    }
    body.push_str("</tbody></table>");
    page("drydock runner", running > 0 || queued > 0, &body).into_response()
}

/// `runner` (or `runner, attempt N` after the first attempt).
fn runner_attempt(run: &Run) -> String {
    match (&run.runner, run.attempt) {
        (Some(r), a) if a > 1 => format!("{r}, attempt {a}"),
        (Some(r), _) => r.clone(),
        (None, _) => String::new(),
    }
}

async fn page_run(State(shared): State<AppState>, Path(id): Path<String>) -> Response {
    let run = match find(&shared, &id).await {
        Ok(run) => run,
        Err(_) => {
            return (
                StatusCode::NOT_FOUND,
                page("not found", false, "<h1>No such run</h1>"),
            )
                .into_response()
        }
    };
    let mut body = format!(
        "<p><a href=\"/\">all runs</a></p><h1>Run <span id=\"run-id\">{id}</span></h1><table><tr><th>repository</th><td>{repo}</td></tr><tr><th>branch</th><td id=\"branch\">{branch}</td></tr><tr><th>commit</th><td><code>{sha}</code></td></tr><tr><th>tested</th><td><code>{tested}</code></td></tr><tr><th>state</th><td id=\"state\" class=\"{state}\">{state}</td></tr><tr><th>duration</th><td>{dur}</td></tr><tr><th>runner</th><td id=\"runner\">{runner}</td></tr><tr><th>trigger</th><td>{trigger}</td></tr><tr><th>why</th><td id=\"reason\">{reason}</td></tr></table>",
        id = escape(&run.id),
        repo = escape(&run.repo),
        branch = escape(&run.branch),
        sha = escape(&run.sha),
        tested = escape(run.tested_sha.as_deref().unwrap_or("")),
        state = run.state.as_str(),
        dur = run_duration(&run),
        runner = escape(&runner_attempt(&run)),
        trigger = escape(&run.trigger),
        reason = escape(run.reason.as_deref().unwrap_or("")),
    );
    if let Some(deploy) = run.summary.as_ref().and_then(|s| s.deploy.as_ref()) {
        let _ = write!(
            body,
            "<h2>Deploy</h2><table id=\"deploy\"><tr><th>channel</th><td>{channel}</td></tr><tr><th>outcome</th><td id=\"deploy-outcome\" class=\"{class}\">{outcome}</td></tr><tr><th>address</th><td>{address}</td></tr><tr><th>duration</th><td>{dur}</td></tr><tr><th>what happened</th><td id=\"deploy-reason\">{reason}</td></tr></table>",
            channel = escape(&deploy.channel),
            class = if deploy.outcome == "failed" { "failed" } else { "passed" },
            outcome = escape(&deploy.outcome),
            address = escape(deploy.address.as_deref().unwrap_or("")),
            dur = ms(deploy.duration_ms),
            reason = escape(deploy.reason.as_deref().unwrap_or("")),
        );
    }
    if let Some(summary) = &run.summary {
        let _ = write!(
            body,
            "<h2>Tiers</h2><table id=\"tiers\"><thead><tr><th>tier</th><th>state</th><th>duration</th><th>tests</th></tr></thead><tbody>"
        );
        for t in &summary.tiers {
            let word = serde_json::to_value(t.status)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default();
            let _ = write!(
                body,
                "<tr class=\"tier\"><td>{}</td><td class=\"{word}\">{}</td><td>{}</td><td>{} passed, {} failed</td></tr>",
                escape(&t.name),
                t.status.word(),
                ms(t.duration_ms),
                t.tests.passed(),
                t.tests.failures + t.tests.errors
            );
        }
        body.push_str("</tbody></table><h2>Steps</h2><table id=\"steps\"><thead><tr><th>tier</th><th>step</th><th>state</th><th>duration</th><th>why</th></tr></thead><tbody>");
        for s in &summary.steps {
            let word = serde_json::to_value(s.status)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default();
            let _ = write!(
                body,
                "<tr class=\"step\"><td>{}</td><td>{}</td><td class=\"{word}\">{}</td><td>{}</td><td>{}</td></tr>",
                escape(&s.tier),
                escape(&s.step),
                s.status.word(),
                ms(s.duration_ms),
                escape(s.error.as_deref().unwrap_or(""))
            );
        }
        body.push_str("</tbody></table>");
        if !summary.failed_tests.is_empty() {
            body.push_str("<h2>Failed tests</h2><ul id=\"failed-tests\">");
            for t in &summary.failed_tests {
                let _ = write!(body, "<li>{}</li>", escape(t));
            }
            body.push_str("</ul>");
        }
    }
    let attempts = shared.store.attempts(&run.id).await.unwrap_or_default();
    if attempts.len() > 1 {
        body.push_str("<h2>Attempts</h2><table id=\"attempts\"><thead><tr><th>attempt</th><th>runner</th><th>outcome</th></tr></thead><tbody>");
        for a in &attempts {
            let _ = write!(
                body,
                "<tr class=\"attempt\"><td>{}</td><td>{}</td><td>{}</td></tr>",
                a.attempt,
                escape(&a.runner),
                escape(a.outcome.as_deref().unwrap_or("running")),
            );
        }
        body.push_str("</tbody></table>");
    }
    if let Some(url) = log_elsewhere(&shared, &run).await {
        let _ = write!(
            body,
            "<h2>Log</h2><p id=\"log\">The log is kept by runner {runner}: <a href=\"{url}/runs/{id}\">{url}/runs/{id}</a></p>",
            runner = escape(run.runner.as_deref().unwrap_or("")),
            url = escape(&url),
            id = escape(&run.id)
        );
    } else {
        let log = read_from(&shared.results_dir(&run.id).join("run.log"), 0);
        let log = String::from_utf8_lossy(&log);
        let _ = write!(
            body,
            "<h2>Log</h2><p><a href=\"/api/runs/{id}/log\">raw, live</a></p><pre id=\"log\">{}</pre>",
            escape(&log),
            id = escape(&run.id)
        );
    }
    page(&format!("run {}", run.id), !run.state.is_finished(), &body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha256_known_answers() {
        // RFC 4231, test case 2.
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // GitHub's documented example of X-Hub-Signature-256.
        assert_eq!(
            hex::encode(hmac_sha256(b"It's a Secret to Everybody", b"Hello, World!")),
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        // A key longer than the block is hashed first (RFC 4231, test case 6).
        assert_eq!(
            hex::encode(hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn escaping() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
