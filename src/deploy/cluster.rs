//! Where `deploy` sends its requests: a kube client and the namespace to use when the config
//! names none.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::header::{HeaderValue, AUTHORIZATION};
use kube::client::{Body, ClientBuilder};
use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::{Client, Config};

use super::manifests::yaml_error_parts;
use super::DeployError;

/// A boxed error from a token source.
pub type TokenError = Box<dyn std::error::Error + Send + Sync>;

/// How long a token from a token source is used before the source is asked again. EKS
/// tokens are valid for 15 minutes; 10 leaves room for slow requests and clock skew.
pub const TOKEN_REFRESH: Duration = Duration::from_secs(10 * 60);

/// A Kubernetes cluster to deploy to.
#[derive(Clone)]
pub struct Cluster {
    pub(crate) client: Client,
    namespace: String,
    /// The API server's URL, for messages.
    server: String,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("namespace", &self.namespace)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// A cluster from a kubeconfig file, using `context` or the file's current context.
    ///
    /// With `path` = `None` the usual chain applies, read from this process's environment:
    /// see [`usual_kubeconfigs`] and [`Cluster::from_usual_kubeconfigs`].
    ///
    /// # Errors
    /// When the file cannot be read or parsed, the context does not exist, or no cluster is
    /// found at all.
    pub async fn from_kubeconfig(
        path: Option<&Path>,
        context: Option<&str>,
    ) -> Result<Cluster, DeployError> {
        match path {
            Some(path) => {
                let loaded = read_kubeconfig(path)?;
                Self::from_loaded(loaded, &path.display().to_string(), context).await
            }
            None => {
                let kubeconfig = std::env::var("KUBECONFIG").ok();
                let home = std::env::var("HOME").ok();
                let files = usual_kubeconfigs(kubeconfig.as_deref(), home.as_deref());
                Self::from_usual_kubeconfigs(&files, context).await
            }
        }
    }

    /// A cluster from the first kubeconfig found in the usual places, `files` as
    /// [`usual_kubeconfigs`] lists them: the files of that list that exist, merged as kubectl
    /// merges them (the first to set a value wins); when none exists and no `context` is
    /// given, the in-cluster service account.
    ///
    /// Every file is parsed by monoship's reader, so a broken one is told by file, line and
    /// column, never by its text (which may hold a token).
    ///
    /// # Errors
    /// When a file cannot be read or parsed, the files disagree, the context does not exist,
    /// or no cluster is found at all.
    pub async fn from_usual_kubeconfigs(
        files: &[PathBuf],
        context: Option<&str>,
    ) -> Result<Cluster, DeployError> {
        // kubectl skips the files of `KUBECONFIG` that do not exist; so does monoship.
        let present: Vec<&PathBuf> = files.iter().filter(|f| f.exists()).collect();
        let shown = present
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let mut merged: Option<Kubeconfig> = None;
        for file in &present {
            let loaded = read_kubeconfig(file)?;
            merged = Some(match merged {
                None => loaded,
                Some(first) => first
                    .merge(loaded)
                    .map_err(|source| DeployError::Kubeconfig {
                        path: shown.clone(),
                        source,
                    })?,
            });
        }
        match (merged, context) {
            (Some(loaded), _) => Self::from_loaded(loaded, &shown, context).await,
            (None, Some(context)) => Err(DeployError::NoKubeconfig {
                context: context.to_string(),
            }),
            (None, None) => {
                let config = Config::incluster().map_err(DeployError::NoCluster)?;
                Self::from_config(config)
            }
        }
    }

    /// A cluster from a parsed kubeconfig, `shown` naming where it came from.
    async fn from_loaded(
        loaded: Kubeconfig,
        shown: &str,
        context: Option<&str>,
    ) -> Result<Cluster, DeployError> {
        let options = KubeConfigOptions {
            context: context.map(str::to_owned),
            ..KubeConfigOptions::default()
        };
        let config = Config::from_custom_kubeconfig(loaded, &options)
            .await
            .map_err(|source| DeployError::Kubeconfig {
                path: shown.to_string(),
                source,
            })?;
        Self::from_config(config)
    }

    fn from_config(config: Config) -> Result<Cluster, DeployError> {
        let config = without_kube_retries(config);
        let namespace = config.default_namespace.clone();
        let server = server_of(&config.cluster_url);
        let client = Client::try_from(config).map_err(DeployError::Client)?;
        Ok(Cluster {
            client,
            namespace,
            server,
        })
    }

    /// A cluster from its API endpoint, the base64 PEM CA bundle (as EKS `DescribeCluster`
    /// returns it; `None` trusts the system roots) and a token source such as an EKS token
    /// minter.
    ///
    /// The source is called once here (so a broken source fails now, not mid-deploy), then
    /// again for the first request made [`TOKEN_REFRESH`] after the last call, or after the
    /// API server answered `401 Unauthorized` (an expired token, or a clock that disagrees).
    /// Every request carries `Authorization: Bearer <the current token>`, set by a layer of
    /// the client's service stack. When a refresh fails, the previous token is kept and the
    /// failure is logged (never the token). The default namespace is `default`.
    ///
    /// # Errors
    /// When the endpoint or CA is malformed, or the first token cannot be minted.
    pub async fn with_token_source<F>(
        endpoint: &str,
        ca_b64: Option<&str>,
        source: F,
    ) -> Result<Cluster, DeployError>
    where
        F: Fn() -> Result<String, TokenError> + Send + Sync + 'static,
    {
        Self::with_token_source_every(endpoint, ca_b64, source, TOKEN_REFRESH).await
    }

    /// [`Cluster::with_token_source`] with another refresh interval than [`TOKEN_REFRESH`].
    ///
    /// # Errors
    /// As [`Cluster::with_token_source`].
    pub async fn with_token_source_every<F>(
        endpoint: &str,
        ca_b64: Option<&str>,
        source: F,
        refresh: Duration,
    ) -> Result<Cluster, DeployError>
    where
        F: Fn() -> Result<String, TokenError> + Send + Sync + 'static,
    {
        let mut cluster = serde_json::json!({"server": endpoint});
        if let Some(ca) = ca_b64 {
            cluster["certificate-authority-data"] = ca.into();
        }
        let kubeconfig: Kubeconfig = serde_json::from_value(serde_json::json!({
            "clusters": [{"name": "target", "cluster": cluster}],
            "users": [{"name": "monoship", "user": {}}],
            "contexts": [{"name": "target", "context": {"cluster": "target", "user": "monoship"}}],
            "current-context": "target",
        }))
        .map_err(|e| DeployError::Endpoint {
            endpoint: endpoint.to_string(),
            source: e.into(),
        })?;
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|e| DeployError::Endpoint {
                endpoint: endpoint.to_string(),
                source: e.into(),
            })?;
        let tokens = Arc::new(TokenCache {
            source: Box::new(source),
            current: Mutex::new(None),
            refresh,
            rejected: AtomicBool::new(false),
        });
        tokens.first().map_err(DeployError::Token)?;
        let client = ClientBuilder::try_from(without_kube_retries(config))
            .map_err(DeployError::Client)?
            // Cloneable, so a refused request can be sent again.
            .with_layer(&tower::buffer::BufferLayer::new(64))
            .with_layer(&tower::layer::layer_fn(move |inner| Reauth {
                inner,
                tokens: Arc::clone(&tokens),
            }))
            .build();
        Ok(Cluster {
            client,
            namespace: "default".into(),
            server: endpoint.trim_end_matches('/').to_string(),
        })
    }

    /// A cluster from a ready client; `namespace` is used when the config names none.
    pub fn from_client(client: Client, namespace: &str) -> Cluster {
        Cluster {
            client,
            namespace: namespace.to_string(),
            server: "the cluster".into(),
        }
    }

    /// The API server's URL, e.g. `https://10.0.0.1:6443` (for a client made with
    /// [`Cluster::from_client`], the words "the cluster").
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The namespace for workloads whose config names none: the kubeconfig context's, else
    /// `default`.
    pub fn default_namespace(&self) -> &str {
        &self.namespace
    }
}

/// Where a kubeconfig is looked for when none is given, as kubectl looks: each file of
/// `KUBECONFIG` (a `:`-separated list; empty entries ignored), else `$HOME/.kube/config`.
/// Pure: the caller reads the two variables.
pub fn usual_kubeconfigs(kubeconfig: Option<&str>, home: Option<&str>) -> Vec<PathBuf> {
    let listed: Vec<PathBuf> = kubeconfig
        .map(|list| {
            std::env::split_paths(list)
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default();
    if !listed.is_empty() {
        return listed;
    }
    home.filter(|h| !h.is_empty())
        .map(|h| Path::new(h).join(".kube").join("config"))
        .into_iter()
        .collect()
}

/// The kubeconfig at `path`. A file kube cannot parse is told by line and column and the
/// error's kind, never by kube's message, which quotes the file (and so maybe a token).
fn read_kubeconfig(path: &Path) -> Result<Kubeconfig, DeployError> {
    match Kubeconfig::read_from(path) {
        Ok(loaded) => Ok(loaded),
        Err(KubeconfigError::Parse(_)) => Err(parse_failure(path)),
        Err(source) => Err(DeployError::Kubeconfig {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// Where a kubeconfig that kube could not parse goes wrong, found again by a parser whose
/// errors carry a position apart from the text.
fn parse_failure(path: &Path) -> DeployError {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).unwrap_or_default();
    for document in serde_yaml_ng::Deserializer::from_str(&text) {
        if let Err(error) = <Kubeconfig as serde::Deserialize>::deserialize(document) {
            let (at, kind) = yaml_error_parts(&error);
            let at = at.map_or(String::new(), |(line, column)| format!(":{line}:{column}"));
            return DeployError::KubeconfigSyntax {
                path: format!("{shown}{at}"),
                kind,
            };
        }
    }
    DeployError::KubeconfigUnreadable { path: shown }
}

/// kube's own layer retries 429/503/504 up to 15 times, under `deploy`'s retries (4 attempts
/// of every 429 and 5xx): one policy, the documented one, is enough.
fn without_kube_retries(mut config: Config) -> Config {
    config.default_retry = false;
    config
}

/// `scheme://host:port` of a server URL, without a trailing slash.
fn server_of(url: &http::Uri) -> String {
    url.to_string().trim_end_matches('/').to_string()
}

struct TokenCache {
    source: Box<dyn Fn() -> Result<String, TokenError> + Send + Sync>,
    current: Mutex<Option<(HeaderValue, Instant)>>,
    refresh: Duration,
    /// Set when the API server answered 401: the next request mints a new token.
    rejected: AtomicBool,
}

impl TokenCache {
    fn first(&self) -> Result<(), TokenError> {
        let value = bearer((self.source)()?)?;
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some((value, Instant::now()));
        Ok(())
    }

    fn authorize(&self, request: &mut http::Request<Body>) {
        if let Some(value) = self.header() {
            request.headers_mut().insert(AUTHORIZATION, value);
        }
    }

    fn header(&self) -> Option<HeaderValue> {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let rejected = self.rejected.swap(false, Ordering::Relaxed);
        let fresh = !rejected
            && current
                .as_ref()
                .is_some_and(|(_, minted)| minted.elapsed() < self.refresh);
        if !fresh {
            match (self.source)().and_then(bearer) {
                Ok(value) => *current = Some((value, Instant::now())),
                Err(error) => tracing::warn!(
                    %error,
                    "could not refresh the cluster token; using the previous one"
                ),
            }
        }
        current.as_ref().map(|(value, _)| value.clone())
    }
}

/// Puts the current token on every request; after a `401 Unauthorized` it mints a new token
/// and sends the request once more (when its body can be replayed, which every body but a
/// stream can).
#[derive(Clone)]
struct Reauth<S> {
    inner: S,
    tokens: Arc<TokenCache>,
}

impl<S, B> tower::Service<http::Request<Body>> for Reauth<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send,
    B: Send + 'static,
{
    type Response = http::Response<B>;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<http::Response<B>, S::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let replay = request.body().try_clone().map(|body| {
            let mut again = http::Request::new(body);
            *again.method_mut() = request.method().clone();
            *again.uri_mut() = request.uri().clone();
            *again.version_mut() = request.version();
            *again.headers_mut() = request.headers().clone();
            again
        });
        self.tokens.authorize(&mut request);
        let first = self.inner.call(request);
        // `inner` was made ready for the first call; the replay waits for its own readiness.
        let mut inner = self.inner.clone();
        let tokens = Arc::clone(&self.tokens);
        Box::pin(async move {
            let response = first.await?;
            if response.status() != http::StatusCode::UNAUTHORIZED {
                return Ok(response);
            }
            tracing::info!("the cluster refused the token (401); minting a new one");
            tokens.rejected.store(true, Ordering::Relaxed);
            let Some(mut again) = replay else {
                return Ok(response);
            };
            tokens.authorize(&mut again);
            futures::future::poll_fn(|cx| inner.poll_ready(cx)).await?;
            inner.call(again).await
        })
    }
}

fn bearer(token: String) -> Result<HeaderValue, TokenError> {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| "the token is not a valid HTTP header value")?;
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_usual_kubeconfigs_are_kubeconfigs_list_else_the_home_one() {
        let paths = |v: &[&str]| v.iter().map(PathBuf::from).collect::<Vec<_>>();
        assert_eq!(
            usual_kubeconfigs(Some("/a/one::/b/two"), Some("/home/u")),
            paths(&["/a/one", "/b/two"])
        );
        for unset in [None, Some(""), Some(":")] {
            assert_eq!(
                usual_kubeconfigs(unset, Some("/home/u")),
                paths(&["/home/u/.kube/config"]),
                "{unset:?}"
            );
        }
        assert!(usual_kubeconfigs(None, None).is_empty());
        assert!(usual_kubeconfigs(None, Some("")).is_empty());
    }
}
