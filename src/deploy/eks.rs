//! EKS: a cluster's endpoint and CA from `DescribeCluster`, and the bearer token EKS accepts:
//! `k8s-aws-v1.` + base64url of a presigned STS `GetCallerIdentity` URL whose signature covers
//! the header `x-k8s-aws-id: <cluster>`. EKS honours a token for 15 minutes after its
//! `X-Amz-Date`; [`crate::deploy::Cluster::with_token_source`] mints a fresh one before that.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
};
use aws_sigv4::sign::v4;
use base64::Engine;

/// The prefix of every EKS bearer token.
pub const TOKEN_PREFIX: &str = "k8s-aws-v1.";

/// EKS could not be used.
#[derive(Debug, thiserror::Error)]
pub enum EksError {
    #[error("cannot sign the EKS token for cluster `{cluster}`: {message}")]
    Sign { cluster: String, message: String },
    #[error("DescribeCluster `{cluster}` failed: {message}; the credentials need `eks:DescribeCluster`, and the cluster name and region must be right")]
    Describe { cluster: String, message: String },
    #[error("cluster `{cluster}` has no {what} in DescribeCluster's answer (is it still being created?)")]
    Incomplete { cluster: String, what: &'static str },
    #[error("no AWS credentials to sign the EKS token with")]
    NoCredentials(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Mints an EKS token for `cluster` in `region` at time `now`. Pure: the same inputs give the
/// same token.
///
/// # Errors
/// When signing fails (a malformed region or cluster name).
pub fn token(
    credentials: &Credentials,
    region: &str,
    cluster: &str,
    now: SystemTime,
) -> Result<String, EksError> {
    let fail = |message: String| EksError::Sign {
        cluster: cluster.to_string(),
        message,
    };
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(Duration::from_secs(60));
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("sts")
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| fail(e.to_string()))?
        .into();
    let url =
        format!("https://sts.{region}.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15");
    let request = SignableRequest::new(
        "GET",
        &url,
        [("x-k8s-aws-id", cluster)].into_iter(),
        SignableBody::Bytes(&[]),
    )
    .map_err(|e| fail(e.to_string()))?;
    let (instructions, _) = sign(request, &params)
        .map_err(|e| fail(e.to_string()))?
        .into_parts();
    let mut signed = http::Request::get(&url)
        .header("x-k8s-aws-id", cluster)
        .body(())
        .map_err(|e| fail(e.to_string()))?;
    instructions.apply_to_request_http1x(&mut signed);
    Ok(format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signed.uri().to_string())
    ))
}

/// A cluster's API endpoint and base64 CA bundle.
#[derive(Debug, Clone)]
pub struct ClusterInfo {
    pub endpoint: String,
    pub ca_b64: Option<String>,
}

/// Asks EKS for a cluster's endpoint and CA.
///
/// # Errors
/// [`EksError::Describe`] with AWS's message, [`EksError::Incomplete`] when a field is missing.
pub async fn describe(sdk: &aws_config::SdkConfig, cluster: &str) -> Result<ClusterInfo, EksError> {
    let client = aws_sdk_eks::Client::new(sdk);
    let out = client
        .describe_cluster()
        .name(cluster)
        .send()
        .await
        .map_err(|e| {
            let message = e
                .as_service_error()
                .map(|s| s.to_string())
                .unwrap_or_else(|| crate::error::render_chain(&e));
            EksError::Describe {
                cluster: cluster.to_string(),
                message,
            }
        })?;
    let info = out.cluster().ok_or(EksError::Incomplete {
        cluster: cluster.to_string(),
        what: "cluster",
    })?;
    let endpoint = info
        .endpoint()
        .ok_or(EksError::Incomplete {
            cluster: cluster.to_string(),
            what: "endpoint",
        })?
        .to_string();
    let ca_b64 = info
        .certificate_authority()
        .and_then(|c| c.data())
        .map(str::to_string);
    Ok(ClusterInfo { endpoint, ca_b64 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(token: &str) -> String {
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.strip_prefix(TOKEN_PREFIX).unwrap())
            .unwrap();
        String::from_utf8(b).unwrap()
    }

    #[test]
    fn tokens_are_presigned_get_caller_identity_urls_covering_the_cluster_header() {
        let creds = Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            None,
            None,
            "test",
        );
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_533_427_200); // 2018-08-05T00:00:00Z
        let t = token(&creds, "us-west-2", "my-eks-cluster", now).unwrap();
        assert!(t.starts_with(TOKEN_PREFIX));
        assert!(!t.contains('='), "no padding");
        let url = decode(&t);
        assert!(
            url.starts_with(
                "https://sts.us-west-2.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&"
            ),
            "{url}"
        );
        for part in [
            "X-Amz-Algorithm=AWS4-HMAC-SHA256",
            "X-Amz-Date=20180805T000000Z",
            "X-Amz-Expires=60",
            "X-Amz-SignedHeaders=host%3Bx-k8s-aws-id",
            "X-Amz-Credential=AKIDEXAMPLE%2F20180805%2Fus-west-2%2Fsts%2Faws4_request",
        ] {
            assert!(url.contains(part), "{part} in {url}");
        }
        assert_eq!(
            t,
            token(&creds, "us-west-2", "my-eks-cluster", now).unwrap(),
            "deterministic"
        );
        assert_ne!(
            t,
            token(&creds, "us-west-2", "other", now).unwrap(),
            "the cluster is signed"
        );
        let session = Credentials::new(
            "ASIAEXAMPLE",
            "secret",
            Some("session-token".into()),
            None,
            "test",
        );
        assert!(decode(&token(&session, "eu-west-1", "c", now).unwrap())
            .contains("X-Amz-Security-Token=session-token"));
    }
}
