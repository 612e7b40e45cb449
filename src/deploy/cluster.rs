//! Where `deploy` sends its requests: a kube client and the namespace to use when the config
//! names none.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::header::{HeaderValue, AUTHORIZATION};
use kube::client::{Body, ClientBuilder};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

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
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// A cluster from a kubeconfig file, using `context` or the file's current context.
    ///
    /// With `path` = `None` the usual chain applies: `$KUBECONFIG`, then `~/.kube/config`,
    /// then (without a `context`) the in-cluster service account.
    ///
    /// # Errors
    /// When the file cannot be read or parsed, the context does not exist, or no cluster is
    /// found at all.
    pub async fn from_kubeconfig(
        path: Option<&Path>,
        context: Option<&str>,
    ) -> Result<Cluster, DeployError> {
        let options = KubeConfigOptions {
            context: context.map(str::to_owned),
            ..KubeConfigOptions::default()
        };
        let config = match path {
            Some(path) => {
                let loaded =
                    Kubeconfig::read_from(path).map_err(|source| DeployError::Kubeconfig {
                        path: path.display().to_string(),
                        source,
                    })?;
                Config::from_custom_kubeconfig(loaded, &options)
                    .await
                    .map_err(|source| DeployError::Kubeconfig {
                        path: path.display().to_string(),
                        source,
                    })?
            }
            None if context.is_some() => {
                Config::from_kubeconfig(&options).await.map_err(|source| {
                    DeployError::Kubeconfig {
                        path: "from $KUBECONFIG or ~/.kube/config".into(),
                        source,
                    }
                })?
            }
            None => Config::infer().await.map_err(DeployError::NoCluster)?,
        };
        let namespace = config.default_namespace.clone();
        let client = Client::try_from(config).map_err(DeployError::Client)?;
        Ok(Cluster { client, namespace })
    }

    /// A cluster from its API endpoint, the base64 PEM CA bundle (as EKS `DescribeCluster`
    /// returns it; `None` trusts the system roots) and a token source such as an EKS token
    /// minter.
    ///
    /// The source is called once here (so a broken source fails now, not mid-deploy), then
    /// again for the first request made [`TOKEN_REFRESH`] after the last call. Every request
    /// carries `Authorization: Bearer <the current token>`, set by a layer of the client's
    /// service stack. When a refresh fails, the previous token is kept and the failure is
    /// logged (never the token). The default namespace is `default`.
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
        });
        tokens.first().map_err(DeployError::Token)?;
        let layer = tower::util::MapRequestLayer::new(move |mut request: http::Request<Body>| {
            if let Some(value) = tokens.header() {
                request.headers_mut().insert(AUTHORIZATION, value);
            }
            request
        });
        let client = ClientBuilder::try_from(config)
            .map_err(DeployError::Client)?
            .with_layer(&layer)
            .build();
        Ok(Cluster {
            client,
            namespace: "default".into(),
        })
    }

    /// A cluster from a ready client; `namespace` is used when the config names none.
    pub fn from_client(client: Client, namespace: &str) -> Cluster {
        Cluster {
            client,
            namespace: namespace.to_string(),
        }
    }

    /// The namespace for workloads whose config names none: the kubeconfig context's, else
    /// `default`.
    pub fn default_namespace(&self) -> &str {
        &self.namespace
    }
}

struct TokenCache {
    source: Box<dyn Fn() -> Result<String, TokenError> + Send + Sync>,
    current: Mutex<Option<(HeaderValue, Instant)>>,
}

impl TokenCache {
    fn first(&self) -> Result<(), TokenError> {
        let value = bearer((self.source)()?)?;
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some((value, Instant::now()));
        Ok(())
    }

    fn header(&self) -> Option<HeaderValue> {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = current
            .as_ref()
            .is_some_and(|(_, minted)| minted.elapsed() < TOKEN_REFRESH);
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

fn bearer(token: String) -> Result<HeaderValue, TokenError> {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| "the token is not a valid HTTP header value")?;
    value.set_sensitive(true);
    Ok(value)
}
