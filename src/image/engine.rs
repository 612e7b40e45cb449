//! A small client of the Docker Engine API: what monoship needs to build with the daemon's
//! BuildKit and push, without the docker CLI. The address comes from `DOCKER_HOST`
//! (`unix://path`, default `/var/run/docker.sock`, or `tcp://host:port` in plain HTTP).
//!
//! Each call opens its own connection and has a deadline; dropping a call's future closes the
//! connection, which makes the daemon cancel the build or push. Registry passwords travel only
//! in the `X-Registry-Auth`/`X-Registry-Config` headers, never in a URL or a log.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::Value;

use crate::image::hub;
use crate::image::progress::{decode_status, PlainProgress};
use crate::secret::Secret;

/// The daemon's socket when `DOCKER_HOST` is unset.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// The newest API version this client speaks; an older daemon's own version is used instead.
const API_VERSION: (u32, u32) = (1, 41);
/// The first API version whose `/build` accepts `version=2` (BuildKit).
const BUILDKIT_API: (u32, u32) = (1, 39);
/// How long `_ping` and `/version` may take.
const CONNECT_LIMIT: Duration = Duration::from_secs(30);

/// The Docker daemon could not be used.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("DOCKER_HOST={host} is not supported: monoship talks to the Docker daemon over a unix socket (unix:///var/run/docker.sock) or plain tcp://host:port; for ssh://, forward the socket (ssh -L) and point DOCKER_HOST at it")]
    UnsupportedHost { host: String },
    #[error("DOCKER_TLS_VERIFY is set, but monoship cannot talk TLS to the Docker daemon; use its unix socket, or unset DOCKER_TLS_VERIFY for a plain tcp:// daemon on a trusted network")]
    Tls,
    #[error("cannot reach the Docker daemon at {address}. In a workflow, a Docker container action gets the runner's /var/run/docker.sock mounted; elsewhere start Docker or set DOCKER_HOST, and check that this user may use the socket")]
    Connect {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the Docker daemon at {address} broke off the connection")]
    Http {
        address: String,
        #[source]
        source: hyper::Error,
    },
    #[error("the Docker daemon refused {what} (HTTP {status}): {message}")]
    Refused {
        what: String,
        status: u16,
        message: String,
    },
    #[error("the Docker daemon answered /version with something unexpected: {0}")]
    Version(String),
    #[error("{what} did not finish within {limit:?}")]
    Timeout { what: String, limit: Duration },
    #[error("cannot make the build context")]
    Context(#[source] std::io::Error),
}

/// Where the daemon listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerAddress {
    Unix(PathBuf),
    /// `host:port`.
    Tcp(String),
}

impl std::fmt::Display for DockerAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DockerAddress::Unix(p) => write!(f, "unix://{}", p.display()),
            DockerAddress::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

/// The daemon's address from `DOCKER_HOST` (unset or empty: the default socket). Pure.
///
/// # Errors
/// Schemes other than `unix://` and `tcp://`, and TLS (`DOCKER_TLS_VERIFY`), which this client
/// does not speak.
pub fn docker_address(host: Option<&str>, tls_verify: bool) -> Result<DockerAddress, EngineError> {
    let host = host.map(str::trim).filter(|h| !h.is_empty());
    let unsupported = || EngineError::UnsupportedHost {
        host: host.unwrap_or_default().to_string(),
    };
    let address = match host {
        None => DockerAddress::Unix(DEFAULT_SOCKET.into()),
        Some(h) => match h.split_once("://") {
            Some(("unix", path)) if path.starts_with('/') => DockerAddress::Unix(path.into()),
            Some(("tcp", rest)) => {
                let rest = rest.trim_end_matches('/');
                if rest.is_empty() || rest.contains(['/', '@', '?', '#']) {
                    return Err(unsupported());
                }
                match rest.rsplit_once(':') {
                    Some((_, port)) if port.parse::<u16>().is_ok() => {
                        DockerAddress::Tcp(rest.into())
                    }
                    _ => DockerAddress::Tcp(format!("{rest}:2375")),
                }
            }
            _ => return Err(unsupported()),
        },
    };
    if tls_verify {
        return Err(EngineError::Tls);
    }
    Ok(address)
}

/// The result of one build or push: its log, and whether it succeeded.
#[derive(Debug, Clone)]
pub struct CommandLog {
    pub success: bool,
    /// What the builder or daemon printed, in order.
    pub output: String,
}

/// Registry credentials for the daemon's pushes and pulls.
#[derive(Clone)]
struct Login {
    host: String,
    username: String,
    password: Secret,
}

/// The Docker daemon, as found by [`Engine::connect`].
pub struct Engine {
    address: DockerAddress,
    /// The API version every path starts with, `1.41`.
    version: String,
    buildkit: bool,
    /// The push registry's login.
    login: Option<Login>,
    /// Logins for other registries (the runner's), for base images.
    others: Vec<Login>,
}

/// A `major.minor` API version.
fn api_version(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// Aborts the task that drives a connection when the call using it is dropped or done.
/// A request body: whole ([`whole`]) or written as it goes ([`streamed_body`]).
pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>;

fn whole(bytes: Bytes) -> Body {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// How much a [`BodyWriter`] gathers before it sends a chunk.
const CHUNK: usize = 256 * 1024;

/// Why a [`BodyWriter`] stopped: the request no longer reads its body (it failed, timed out
/// or was cancelled), which the request's own error explains.
const BODY_DROPPED: &str = "the request stopped reading its body";

/// A request body written by blocking code ([`std::io::Write`]) while the request is sent,
/// a few chunks ahead at most, so the body is never whole in memory.
pub fn streamed_body() -> (Body, BodyWriter) {
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let frames = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let body = http_body_util::StreamBody::new(frames).boxed_unsync();
    let writer = BodyWriter {
        buffer: Vec::with_capacity(CHUNK),
        tx,
    };
    (body, writer)
}

/// The writing end of [`streamed_body`]; call only from blocking code (`spawn_blocking`).
pub struct BodyWriter {
    buffer: Vec<u8>,
    tx: tokio::sync::mpsc::Sender<Result<hyper::body::Frame<Bytes>, std::io::Error>>,
}

impl BodyWriter {
    fn send(&mut self) -> std::io::Result<()> {
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(CHUNK),
        ));
        self.tx
            .blocking_send(Ok(hyper::body::Frame::data(chunk)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, BODY_DROPPED))
    }

    /// Ends the body with an error, so the request is cut off instead of ending as if the
    /// body were complete (a tar cut at an entry would read as a smaller context).
    pub fn fail(self, error: &std::io::Error) {
        let error = std::io::Error::new(error.kind(), error.to_string());
        let _ = self.tx.blocking_send(Err(error));
    }
}

impl std::io::Write for BodyWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self.buffer.is_empty() {
            true => Ok(()),
            false => self.send(),
        }
    }
}

/// Whether `error` only says that the request stopped reading a [`BodyWriter`].
pub fn body_dropped(error: &std::io::Error) -> bool {
    error.kind() == std::io::ErrorKind::BrokenPipe && error.to_string() == BODY_DROPPED
}

struct Connection(tokio::task::JoinHandle<()>);

impl Drop for Connection {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Engine {
    /// Pings the daemon and reads its API version and OS.
    ///
    /// # Errors
    /// [`EngineError::Connect`] when nothing answers at `address`, with how to fix it.
    pub async fn connect(address: DockerAddress) -> Result<Engine, EngineError> {
        let mut engine = Engine {
            address,
            version: format!("{}.{}", API_VERSION.0, API_VERSION.1),
            buildkit: false,
            login: None,
            others: vec![],
        };
        let what = "GET /version".to_string();
        let version = timed(&what, CONNECT_LIMIT, async {
            engine
                .call("GET", "/_ping", vec![], Bytes::new(), "GET /_ping")
                .await?;
            engine
                .call("GET", "/version", vec![], Bytes::new(), &what)
                .await
        })
        .await?;
        let info: Value =
            serde_json::from_slice(&version).map_err(|e| EngineError::Version(e.to_string()))?;
        let api = info["ApiVersion"]
            .as_str()
            .and_then(api_version)
            .ok_or_else(|| EngineError::Version("no ApiVersion".into()))?;
        let api = api.min(API_VERSION);
        engine.version = format!("{}.{}", api.0, api.1);
        engine.buildkit = info["Os"] == "linux" && api >= BUILDKIT_API;
        Ok(engine)
    }

    /// Whether the daemon builds with BuildKit (Linux daemons with API 1.39 or later).
    pub fn has_buildkit(&self) -> bool {
        self.buildkit
    }

    /// Credentials for `host`, sent with every push and build (for private base images).
    pub fn login(&mut self, host: &str, username: &str, password: &Secret) {
        self.login = Some(Login {
            host: host.to_string(),
            username: username.to_string(),
            password: password.clone(),
        });
    }

    /// Credentials for another registry than the push registry's (for base images): pulls
    /// from `host` and builds send them.
    pub fn add_login(&mut self, host: &str, username: &str, password: &Secret) {
        self.others.push(Login {
            host: host.to_string(),
            username: username.to_string(),
            password: password.clone(),
        });
    }

    /// Every login, the push registry's first.
    fn logins(&self) -> impl Iterator<Item = &Login> {
        self.login.iter().chain(&self.others)
    }

    /// Whether a container named `name` exists on the daemon (`GET /containers/NAME/json`).
    ///
    /// # Errors
    /// When the daemon cannot be reached or answers other than found or not found.
    pub async fn container_exists(&self, name: &str) -> Result<bool, EngineError> {
        let what = format!("the lookup of container {name}");
        let path = format!("/containers/{}/json", encode(name));
        let call = self.call("GET", &path, vec![], Bytes::new(), &what);
        match timed(&what, CONNECT_LIMIT, call).await {
            Ok(_) => Ok(true),
            Err(EngineError::Refused { status: 404, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Has the daemon log in to the registry of [`Engine::login`] (`POST /auth`), so wrong
    /// credentials stop the run before anything is built.
    ///
    /// # Errors
    /// [`EngineError::Refused`] with the daemon's message when the registry refuses them.
    pub async fn check_login(&self) -> Result<(), EngineError> {
        let Some(login) = &self.login else {
            return Ok(());
        };
        let what = format!("the login to {}", login.host);
        let body = Bytes::from(auth_json(login).to_string());
        let headers = vec![("Content-Type", "application/json".to_string())];
        let call = self.call("POST", "/auth", headers, body, &what);
        timed(&what, CONNECT_LIMIT, call).await.map(|_| ())
    }

    /// Opens a connection and sends one request; the connection lives as long as the answer.
    async fn send(
        &self,
        method: &str,
        path: &str,
        headers: Vec<(&'static str, String)>,
        body: Body,
    ) -> Result<(http::Response<Incoming>, Connection), EngineError> {
        let (mut sender, connection) = self.handshake().await?;
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("/v{}{path}", self.version))
            .header("Host", "docker")
            .header(
                "User-Agent",
                concat!("monoship/", env!("CARGO_PKG_VERSION")),
            );
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let request = request.body(body).expect("a request of known-good parts");
        let response = sender
            .send_request(request)
            .await
            .map_err(|source| self.http_error(source))?;
        Ok((response, connection))
    }

    async fn handshake(
        &self,
    ) -> Result<(hyper::client::conn::http1::SendRequest<Body>, Connection), EngineError> {
        let connect_error = |source| EngineError::Connect {
            address: self.address.to_string(),
            source,
        };
        match &self.address {
            DockerAddress::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(connect_error)?;
                self.start(stream).await
            }
            DockerAddress::Tcp(address) => {
                let stream = tokio::net::TcpStream::connect(address)
                    .await
                    .map_err(connect_error)?;
                self.start(stream).await
            }
        }
    }

    async fn start<S>(
        &self,
        stream: S,
    ) -> Result<(hyper::client::conn::http1::SendRequest<Body>, Connection), EngineError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let io = hyper_util::rt::TokioIo::new(stream);
        let (sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|source| self.http_error(source))?;
        let task = tokio::spawn(async move {
            // Its errors reach the caller through the request or the body.
            let _ = conn.await;
        });
        Ok((sender, Connection(task)))
    }

    fn http_error(&self, source: hyper::Error) -> EngineError {
        EngineError::Http {
            address: self.address.to_string(),
            source,
        }
    }

    /// One request whose whole answer is read; an HTTP error status is an error with the
    /// daemon's message.
    async fn call(
        &self,
        method: &str,
        path: &str,
        headers: Vec<(&'static str, String)>,
        body: Bytes,
        what: &str,
    ) -> Result<Bytes, EngineError> {
        let (response, _connection) = self.send(method, path, headers, whole(body)).await?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|source| self.http_error(source))?
            .to_bytes();
        if !status.is_success() {
            return Err(refused(what, status.as_u16(), &body));
        }
        Ok(body)
    }

    /// A call whose answer is a stream of JSON messages (build, push), rendered as a log.
    async fn stream(
        &self,
        path: &str,
        headers: Vec<(&'static str, String)>,
        body: Body,
        what: &str,
    ) -> Result<CommandLog, EngineError> {
        let (response, _connection) = self.send("POST", path, headers, body).await?;
        let status = response.status();
        let mut body = response.into_body();
        if !status.is_success() {
            let bytes = body
                .collect()
                .await
                .map_err(|source| self.http_error(source))?
                .to_bytes();
            return Err(refused(what, status.as_u16(), &bytes));
        }
        let mut messages = Messages::default();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|source| self.http_error(source))?;
            if let Ok(data) = frame.into_data() {
                messages.feed(&data);
            }
        }
        Ok(messages.finish())
    }

    /// Builds `context` (a tar) with the settings of `query` (see [`build_query`]).
    ///
    /// # Errors
    /// When the daemon cannot be reached or refuses the request, or `limit` passes. A build
    /// that fails is a [`CommandLog`] without success.
    pub async fn build(
        &self,
        query: &str,
        context: Body,
        limit: Duration,
        what: &str,
    ) -> Result<CommandLog, EngineError> {
        let mut headers = vec![("Content-Type", "application/x-tar".to_string())];
        let logins: Vec<&Login> = self.logins().collect();
        if !logins.is_empty() {
            headers.push(("X-Registry-Config", registry_config(&logins)));
        }
        let path = format!("/build?{query}");
        timed(what, limit, self.stream(&path, headers, context, what)).await
    }

    /// Puts the base image `reference` on the daemon at exactly `digest`, the one its content
    /// tag names: pulled by digest (with the login for its registry: monoship's for the push
    /// registry, else the runner's; anonymously otherwise; for `platform` when the build has
    /// one), then tagged as the Dockerfile names it. Both builders take the daemon's copy of a
    /// tag when it has one, and BuildKit without a client session cannot pull with
    /// credentials. `None` when nothing was needed: a reference
    /// pinned by digest in a registry without a login, which BuildKit finds or pulls itself.
    ///
    /// # Errors
    /// As [`Engine::build`].
    pub async fn pull_base(
        &self,
        reference: &str,
        digest: &str,
        platform: Option<&str>,
        limit: Duration,
    ) -> Result<Option<CommandLog>, EngineError> {
        let (name, tag) = split_reference(reference);
        let host = registry_host(reference);
        let login = self.logins().find(|l| hub::same_registry(&l.host, host));
        if tag.is_none() && login.is_none() {
            return Ok(None);
        }
        let auth = match login {
            Some(login) => registry_auth(login),
            None => base64::engine::general_purpose::URL_SAFE.encode("{}"),
        };
        let mut path = format!(
            "/images/create?fromImage={}&tag={}",
            encode(name),
            encode(digest)
        );
        if let Some(platform) = platform {
            // The image of the platform built for, where the digest names an index.
            path.push_str(&format!("&platform={}", encode(platform)));
        }
        let what = format!("the pull of {name}@{digest}");
        let headers = vec![("X-Registry-Auth", auth)];
        let mut log = timed(
            &what,
            limit,
            self.stream(&path, headers, whole(Bytes::new()), &what),
        )
        .await?;
        if let (true, Some(tag)) = (log.success, tag) {
            let path = format!(
                "/images/{name}@{digest}/tag?repo={}&tag={}",
                encode(name),
                encode(tag)
            );
            let what = format!("the tag {name}:{tag} of {digest}");
            timed(
                &what,
                limit,
                self.call("POST", &path, vec![], Bytes::new(), &what),
            )
            .await?;
            log.output
                .push_str(&format!("{name}:{tag} is {digest} on the daemon\n"));
        }
        Ok(Some(log))
    }

    /// Pushes `image:tag` (`image` is `host/repository`).
    ///
    /// # Errors
    /// As [`Engine::build`].
    pub async fn push(
        &self,
        image: &str,
        tag: &str,
        limit: Duration,
    ) -> Result<CommandLog, EngineError> {
        let auth = match &self.login {
            Some(login) => registry_auth(login),
            None => base64::engine::general_purpose::URL_SAFE.encode("{}"),
        };
        let path = format!("/images/{image}/push?tag={}", encode(tag));
        let what = format!("the push of {image}:{tag}");
        let headers = vec![("X-Registry-Auth", auth)];
        timed(
            &what,
            limit,
            self.stream(&path, headers, whole(Bytes::new()), &what),
        )
        .await
    }
}

/// The registry host of an image reference (`docker.io` when it names none). Pure.
pub fn registry_host(reference: &str) -> &str {
    match reference.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first,
        _ => "docker.io",
    }
}

/// The name of `reference` and its tag (`latest` when it has neither tag nor digest; `None`
/// when it is pinned by digest). Pure.
pub fn split_reference(reference: &str) -> (&str, Option<&str>) {
    if let Some((name, _)) = reference.split_once('@') {
        return (name, None);
    }
    let last = reference.rsplit('/').next().unwrap_or(reference);
    match last.rsplit_once(':') {
        Some((_, tag)) => (&reference[..reference.len() - tag.len() - 1], Some(tag)),
        None => (reference, Some("latest")),
    }
}

async fn timed<T>(
    what: &str,
    limit: Duration,
    future: impl std::future::Future<Output = Result<T, EngineError>>,
) -> Result<T, EngineError> {
    tokio::time::timeout(limit, future)
        .await
        .map_err(|_| EngineError::Timeout {
            what: what.to_string(),
            limit,
        })?
}

fn refused(what: &str, status: u16, body: &[u8]) -> EngineError {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
    EngineError::Refused {
        what: what.to_string(),
        status,
        message: crate::report::commands::one_line(&message),
    }
}

/// The daemon's auth config; Docker Hub's `serveraddress` is `https://index.docker.io/v1/`,
/// the one `POST /auth` sends to Hub's endpoints and builds look Hub's credentials up by.
fn auth_json(login: &Login) -> Value {
    serde_json::json!({
        "username": login.username,
        "password": login.password.expose(),
        "serveraddress": hub::auth_address(&login.host),
    })
}

/// `X-Registry-Auth`: base64url of `{username, password, serveraddress}`.
fn registry_auth(login: &Login) -> String {
    base64::engine::general_purpose::URL_SAFE.encode(auth_json(login).to_string())
}

/// `X-Registry-Config`: base64url of `{host: {username, password, serveraddress}}`, Docker
/// Hub under its historical key; the first login of a host wins.
fn registry_config(logins: &[&Login]) -> String {
    let mut config = serde_json::Map::new();
    for login in logins {
        config
            .entry(hub::auth_address(&login.host))
            .or_insert_with(|| auth_json(login));
    }
    base64::engine::general_purpose::URL_SAFE.encode(Value::Object(config).to_string())
}

/// Percent-encodes a query value (RFC 3986 unreserved characters stay). Pure.
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char);
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// What `/build` needs besides the context.
#[derive(Debug, Clone, Copy)]
pub struct BuildQuery<'a> {
    /// The Dockerfile's path inside the context tar.
    pub dockerfile: &'a str,
    pub buildkit: bool,
    pub tags: &'a [String],
    pub labels: &'a BTreeMap<String, String>,
    pub build_args: &'a BTreeMap<String, String>,
    pub target: Option<&'a str>,
    /// One platform (more need buildx).
    pub platform: Option<&'a str>,
}

/// The query string of `/build`: builder version, Dockerfile, tags, labels, build args,
/// target and platform. Pure.
pub fn build_query(q: &BuildQuery<'_>) -> String {
    let mut params = vec![
        ("version", if q.buildkit { "2" } else { "1" }.to_string()),
        ("dockerfile", q.dockerfile.to_string()),
    ];
    if !q.buildkit {
        params.push(("rm", "1".into()));
        params.push(("forcerm", "1".into()));
    }
    params.extend(q.tags.iter().map(|t| ("t", t.clone())));
    if !q.labels.is_empty() {
        let labels = serde_json::to_string(q.labels).expect("a map of strings");
        params.push(("labels", labels));
    }
    if !q.build_args.is_empty() {
        let args = serde_json::to_string(q.build_args).expect("a map of strings");
        params.push(("buildargs", args));
    }
    if let Some(target) = q.target {
        params.push(("target", target.to_string()));
    }
    if let Some(platform) = q.platform {
        params.push(("platform", platform.to_string()));
    }
    params
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Reads a stream of JSON messages into a log: build output, BuildKit progress, push status,
/// and errors. Pure.
#[derive(Default)]
pub struct Messages {
    pending: Vec<u8>,
    log: String,
    failed: bool,
    progress: PlainProgress,
}

impl Messages {
    /// Takes the next bytes of the answer.
    pub fn feed(&mut self, data: &[u8]) {
        self.pending.extend_from_slice(data);
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            self.message(&line);
        }
    }

    fn message(&mut self, line: &[u8]) {
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let Ok(m) = serde_json::from_slice::<Value>(line) else {
            self.log.push_str(&String::from_utf8_lossy(line));
            return;
        };
        if let Some(error) = m["errorDetail"]["message"].as_str().or(m["error"].as_str()) {
            self.failed = true;
            self.log.push_str(&format!("ERROR: {error}\n"));
        } else if let Some(text) = m["stream"].as_str() {
            self.log.push_str(text);
        } else if m["id"] == "moby.buildkit.trace" {
            let bytes = m["aux"]
                .as_str()
                .and_then(|a| base64::engine::general_purpose::STANDARD.decode(a).ok());
            match bytes.as_deref().map(decode_status) {
                Some(Ok(status)) => self.progress.render(&status, &mut self.log),
                _ => self
                    .log
                    .push_str("(an unreadable BuildKit progress message)\n"),
            }
        } else if let Some(status) = m["status"].as_str() {
            // Push progress: one line per layer state, without the progress bars.
            if m["progressDetail"].as_object().is_none_or(|d| d.is_empty()) {
                match m["id"].as_str() {
                    Some(id) => self.log.push_str(&format!("{id}: {status}\n")),
                    None => self.log.push_str(&format!("{status}\n")),
                }
            }
        }
    }

    /// The log, and whether no error came.
    pub fn finish(mut self) -> CommandLog {
        let rest = std::mem::take(&mut self.pending);
        self.message(&rest);
        CommandLog {
            success: !self.failed,
            output: self.log,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_streamed_body_carries_every_byte_and_a_failure_cuts_it_off() {
        use std::io::Write as _;
        let (body, mut writer) = streamed_body();
        let producer = tokio::task::spawn_blocking(move || {
            writer.write_all(&[7u8; CHUNK + 10]).unwrap();
            writer.write_all(b"end").unwrap();
            writer.flush().unwrap();
        });
        let bytes = body.collect().await.unwrap().to_bytes();
        producer.await.unwrap();
        assert_eq!(bytes.len(), CHUNK + 13);
        assert!(bytes.ends_with(b"\x07end"));

        // A writer that fails ends the body with an error, never as a shorter whole body.
        let (body, mut writer) = streamed_body();
        let producer = tokio::task::spawn_blocking(move || {
            writer.write_all(&[1u8; CHUNK]).unwrap();
            writer.fail(&std::io::Error::other("cannot read a.txt"));
        });
        let error = body.collect().await.expect_err("the body fails");
        assert!(error.to_string().contains("cannot read a.txt"), "{error}");
        producer.await.unwrap();

        // A body nobody reads any more stops its writer with an error of its own kind.
        let (body, mut writer) = streamed_body();
        drop(body);
        let written = tokio::task::spawn_blocking(move || writer.write_all(&[0u8; CHUNK]))
            .await
            .unwrap();
        assert!(body_dropped(&written.unwrap_err()));
    }

    #[test]
    fn docker_host_takes_unix_sockets_and_plain_tcp_only() {
        let ok = |h: Option<&str>| docker_address(h, false).unwrap();
        assert_eq!(ok(None), DockerAddress::Unix("/var/run/docker.sock".into()));
        assert_eq!(
            ok(Some("")),
            DockerAddress::Unix("/var/run/docker.sock".into())
        );
        assert_eq!(
            ok(Some("unix:///run/d.sock")),
            DockerAddress::Unix("/run/d.sock".into())
        );
        assert_eq!(
            ok(Some("tcp://10.0.0.2:2376")),
            DockerAddress::Tcp("10.0.0.2:2376".into())
        );
        assert_eq!(
            ok(Some("tcp://docker")),
            DockerAddress::Tcp("docker:2375".into())
        );
        for bad in [
            "ssh://me@host",
            "npipe:////./pipe/docker",
            "tcp://",
            "unix://rel",
            "host:2375",
        ] {
            let e = docker_address(Some(bad), false).unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains("unix://"), "{e}");
        }
        let tls = docker_address(Some("tcp://h:2376"), true)
            .unwrap_err()
            .to_string();
        assert!(tls.contains("DOCKER_TLS_VERIFY"), "{tls}");
    }

    #[test]
    fn api_versions_compare_as_numbers() {
        assert_eq!(api_version("1.41"), Some((1, 41)));
        assert!(api_version("1.9").unwrap() < BUILDKIT_API);
        assert!(api_version("1.100").unwrap() > API_VERSION);
        assert_eq!(api_version("x"), None);
    }

    #[test]
    fn build_queries_carry_every_setting_encoded() {
        let tags = ["h:5000/cart:src-1".to_string(), "h:5000/cart:c0ffee".into()];
        let args: BTreeMap<String, String> = [("A".to_string(), "x y&z".to_string())].into();
        let labels: BTreeMap<String, String> = [(
            "org.opencontainers.image.revision".to_string(),
            "c0ffee".to_string(),
        )]
        .into();
        let q = BuildQuery {
            dockerfile: "svc/Dockerfile",
            buildkit: true,
            tags: &tags,
            labels: &labels,
            build_args: &args,
            target: Some("prod"),
            platform: Some("linux/arm64"),
        };
        assert_eq!(
            build_query(&q),
            "version=2&dockerfile=svc%2FDockerfile&t=h%3A5000%2Fcart%3Asrc-1&t=h%3A5000%2Fcart%3Ac0ffee\
             &labels=%7B%22org.opencontainers.image.revision%22%3A%22c0ffee%22%7D\
             &buildargs=%7B%22A%22%3A%22x%20y%26z%22%7D&target=prod&platform=linux%2Farm64"
        );
        let none = BTreeMap::new();
        let plain = BuildQuery {
            dockerfile: "Dockerfile",
            buildkit: false,
            labels: &none,
            build_args: &none,
            target: None,
            platform: None,
            ..q
        };
        let q = build_query(&plain);
        assert!(
            q.starts_with("version=1&dockerfile=Dockerfile&rm=1&forcerm=1&t="),
            "{q}"
        );
        assert!(!q.contains("labels") && !q.contains("buildargs") && !q.contains("platform"));
    }

    #[test]
    fn credentials_go_in_base64url_headers() {
        let login = Login {
            host: "127.0.0.1:5000".into(),
            username: "ci".into(),
            password: Secret::new("p?w/+"),
        };
        let decode = |s: &str| {
            let bytes = base64::engine::general_purpose::URL_SAFE.decode(s).unwrap();
            serde_json::from_slice::<Value>(&bytes).unwrap()
        };
        let auth = decode(&registry_auth(&login));
        assert_eq!(
            auth,
            serde_json::json!({"username": "ci", "password": "p?w/+", "serveraddress": "127.0.0.1:5000"})
        );
        let hub = Login {
            host: "docker.io".into(),
            username: "me".into(),
            password: Secret::new("hub"),
        };
        let config = decode(&registry_config(&[&login, &hub]));
        assert_eq!(config["127.0.0.1:5000"], auth);
        assert_eq!(
            config["https://index.docker.io/v1/"]["username"], "me",
            "Docker Hub under the key the daemon looks up"
        );
        // Docker Hub, by any of its names, is the server address the daemon keys it by.
        for host in ["docker.io", "index.docker.io", "registry-1.docker.io"] {
            let hub = Login {
                host: host.into(),
                ..login.clone()
            };
            let auth = decode(&registry_auth(&hub));
            assert_eq!(
                auth["serveraddress"], "https://index.docker.io/v1/",
                "{host}"
            );
            let config = decode(&registry_config(&[&hub]));
            assert_eq!(config["https://index.docker.io/v1/"], auth, "{host}");
        }
    }

    #[test]
    fn base_image_references_name_their_registry_and_one_tag() {
        assert_eq!(
            registry_host("127.0.0.1:5000/base/busybox:1"),
            "127.0.0.1:5000"
        );
        assert_eq!(registry_host("ghcr.io/acme/base"), "ghcr.io");
        assert_eq!(registry_host("localhost/base"), "localhost");
        assert_eq!(registry_host("library/alpine:3"), "docker.io");
        assert_eq!(registry_host("alpine"), "docker.io");
        assert_eq!(
            split_reference("h:5000/base"),
            ("h:5000/base", Some("latest"))
        );
        assert_eq!(split_reference("h:5000/base:1"), ("h:5000/base", Some("1")));
        assert_eq!(split_reference("h/base@sha256:ab"), ("h/base", None));
        assert_eq!(split_reference("alpine:3"), ("alpine", Some("3")));
    }

    #[test]
    fn messages_become_a_log_and_errors_fail_it() {
        let mut m = Messages::default();
        m.feed(b"{\"stream\":\"Step 1/2 : FROM scratch\\n\"}\n{\"status\":\"Pushing\",\"id\":\"ab\",\"progressDetail\":{\"current\":1}}\n");
        m.feed(b"{\"status\":\"Pushed\",\"id\":\"ab\",\"progressDetail\":{}}\n{\"aux\":{\"ID\":\"sha256:1\"}}\n{\"errorDe");
        m.feed(b"tail\":{\"message\":\"no space\"},\"error\":\"no space\"}");
        let log = m.finish();
        assert!(!log.success);
        assert_eq!(
            log.output,
            "Step 1/2 : FROM scratch\nab: Pushed\nERROR: no space\n"
        );
        let mut ok = Messages::default();
        ok.feed(b"{\"id\":\"moby.buildkit.trace\",\"aux\":\"!!\"}\n");
        let ok = ok.finish();
        assert!(
            ok.success && ok.output.contains("unreadable"),
            "{}",
            ok.output
        );
    }
}
