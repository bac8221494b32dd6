//! A BuildKit session of drydock's own: the connection through which
//! BuildKit, running inside the daemon, pulls the build context and the
//! Dockerfile (file sync) and asks for secrets, as the Docker CLI's session
//! serves them.
//!
//! The daemon's `POST /session` is upgraded to `h2c`; on that connection
//! the daemon is the gRPC client and drydock the server. The request names
//! the session (`X-Docker-Expose-Session-Uuid`, the id the build request
//! then refers to) and lists every method offered
//! (`X-Docker-Expose-Session-Grpc-Method`): BuildKit calls only those. The
//! daemon checks the session's health every second and drops it when
//! `grpc.health.v1.Health/Check` stops answering.
//!
//! bollard's `build_image` opens a session too, but one that serves only
//! registry credentials and exports: no file sync (so the context must go
//! as a tar, which BuildKit cannot filter) and no secrets. Hence this
//! module; it speaks HTTP/1.1 and h2 through hyper and tonic, the same
//! crates bollard uses.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bollard_buildkit_proto::health::health_check_response::ServingStatus;
use bollard_buildkit_proto::health::health_server::{Health, HealthServer};
use bollard_buildkit_proto::health::{
    HealthCheckRequest, HealthCheckResponse, HealthListRequest, HealthListResponse,
};
use bollard_buildkit_proto::moby::buildkit::secrets::v1::secrets_server::{Secrets, SecretsServer};
use bollard_buildkit_proto::moby::buildkit::secrets::v1::{GetSecretRequest, GetSecretResponse};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::task::JoinHandle;
use tonic::transport::server::Connected;
use tonic::{Request, Response, Status};

use super::filesync::{FileSync, DIFF_COPY_METHOD};

/// How long opening a session may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// What a session offers.
pub(crate) struct SessionSpec {
    /// The session id the build request names.
    pub id: String,
    /// A key BuildKit uses with the directory names to find what it synced
    /// before (the CLI hashes the context path): same key, faster re-sync.
    pub shared_key: String,
    /// The directories BuildKit may pull.
    pub files: FileSync,
    /// Secrets by id (`RUN --mount=type=secret,id=…`).
    pub secrets: HashMap<String, Vec<u8>>,
}

/// An open session; dropping it closes the connection (the daemon then
/// forgets the session).
pub(crate) struct Session {
    server: JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Why a session could not be opened: BuildKit cannot be used this way.
#[derive(Debug, thiserror::Error)]
#[error("cannot open a BuildKit session on {host}: {reason}")]
pub(crate) struct SessionError {
    host: String,
    reason: String,
}

/// Opens a session on the daemon at `host` (`unix://…`, `tcp://…` or
/// `http://…`; TLS and SSH hosts are not supported).
pub(crate) async fn open(host: &str, spec: SessionSpec) -> Result<Session, SessionError> {
    let fail = |reason: String| SessionError {
        host: host.to_string(),
        reason,
    };
    let upgraded = tokio::time::timeout(OPEN_TIMEOUT, async {
        if let Some(path) = host.strip_prefix("unix://") {
            let stream = tokio::net::UnixStream::connect(path)
                .await
                .map_err(|e| e.to_string())?;
            upgrade(stream, &spec).await
        } else if let Some(addr) = host
            .strip_prefix("tcp://")
            .or_else(|| host.strip_prefix("http://"))
        {
            let addr = addr.trim_end_matches('/');
            let stream = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| e.to_string())?;
            upgrade(stream, &spec).await
        } else {
            Err("only unix:// and plain tcp:// engines are supported".to_string())
        }
    })
    .await
    .map_err(|_| fail(format!("no answer in {}s", OPEN_TIMEOUT.as_secs())))?
    .map_err(fail)?;

    let io = Conn(TokioIo::new(upgraded));
    let router = tonic::transport::Server::builder()
        .add_service(HealthServer::new(Healthy))
        .add_service(SecretsServer::new(SecretStore(spec.secrets)))
        .add_service(spec.files);
    let id = spec.id;
    let server = tokio::spawn(async move {
        let incoming = futures::stream::iter([Ok::<_, io::Error>(io)]);
        if let Err(e) = router.serve_with_incoming(incoming).await {
            tracing::debug!(session = %id, error = %e, "BuildKit session ended");
        }
    });
    Ok(Session { server })
}

/// The methods the session offers, as the daemon wants them listed.
fn methods() -> [&'static str; 3] {
    [
        "/grpc.health.v1.Health/Check",
        "/moby.buildkit.secrets.v1.Secrets/GetSecret",
        DIFF_COPY_METHOD,
    ]
}

/// `POST /session` with `Upgrade: h2c`; the upgraded connection.
async fn upgrade<S>(stream: S, spec: &SessionSpec) -> Result<hyper::upgrade::Upgraded, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!(error = %e, "session connection");
        }
    });
    let mut request = http::Request::post("/session")
        .header(http::header::HOST, "docker")
        .header(http::header::CONNECTION, "Upgrade")
        .header(http::header::UPGRADE, "h2c")
        .header("X-Docker-Expose-Session-Uuid", &spec.id)
        .header("X-Docker-Expose-Session-Name", "drydock")
        .header("X-Docker-Expose-Session-Sharedkey", &spec.shared_key);
    for method in methods() {
        request = request.header("X-Docker-Expose-Session-Grpc-Method", method);
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    if response.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_string())
            .unwrap_or_default();
        return Err(format!("the engine answered {status}: {body}"));
    }
    hyper::upgrade::on(response)
        .await
        .map_err(|e| e.to_string())
}

/// The upgraded connection as tonic wants it.
struct Conn(TokioIo<hyper::upgrade::Upgraded>);

impl Connected for Conn {
    type ConnectInfo = ();
    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Answers the daemon's health checks.
struct Healthy;

#[tonic::async_trait]
impl Health for Healthy {
    async fn check(
        &self,
        _request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        Ok(Response::new(HealthCheckResponse {
            status: ServingStatus::Serving as i32,
        }))
    }

    async fn list(
        &self,
        _request: Request<HealthListRequest>,
    ) -> Result<Response<HealthListResponse>, Status> {
        Ok(Response::new(HealthListResponse::default()))
    }

    type WatchStream = futures::stream::Empty<Result<HealthCheckResponse, Status>>;

    async fn watch(
        &self,
        _request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("watch is not offered"))
    }
}

/// Serves secrets by id.
struct SecretStore(HashMap<String, Vec<u8>>);

#[tonic::async_trait]
impl Secrets for SecretStore {
    async fn get_secret(
        &self,
        request: Request<GetSecretRequest>,
    ) -> Result<Response<GetSecretResponse>, Status> {
        let id = &request.get_ref().id;
        match self.0.get(id) {
            Some(data) => Ok(Response::new(GetSecretResponse { data: data.clone() })),
            None => Err(Status::not_found(format!("secret {id} not found"))),
        }
    }
}
