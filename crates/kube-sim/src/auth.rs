//! Authentication: a static bearer token, and EKS tokens checked the way EKS's
//! aws-iam-authenticator checks them.

use crate::api::ApiError;
use crate::meta;
use crate::sim::Shared;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::{Digest, Sha256};

/// The prefix of every EKS token.
pub const EKS_TOKEN_PREFIX: &str = "k8s-aws-v1.";

/// EKS accepts a presigned URL for this long after its `X-Amz-Date`, whatever `X-Amz-Expires` says.
pub const EKS_TOKEN_LIFETIME_SECS: i64 = 15 * 60;

/// Who an accepted EKS token says the caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EksCaller {
    pub access_key_id: String,
    pub region: String,
    /// Whether the SigV4 signature was checked (only when the secret key was known).
    pub signature_verified: bool,
}

/// Why an EKS token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid EKS token: {0}")]
pub struct EksTokenError(pub String);

fn refuse(msg: impl Into<String>) -> EksTokenError {
    EksTokenError(msg.into())
}

fn unauthorized(cause: Option<String>) -> ApiError {
    let mut e = ApiError::new(401, "Unauthorized", "Unauthorized");
    if let Some(c) = cause {
        e.details = Some(json!({"causes": [{"reason": "Unauthorized", "message": c}]}));
    }
    e
}

/// Lets the request through, or answers 401 as the apiserver does.
///
/// # Errors
/// A 401 `Status` when authentication is configured and the request does not satisfy it.
pub fn check(shared: &Shared, authorization: &str) -> Result<(), ApiError> {
    let opts = &shared.opts;
    if opts.token.is_none() && opts.eks_cluster.is_none() {
        return Ok(());
    }
    let bearer = authorization
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .ok_or_else(|| unauthorized(None))?;
    if opts.token.as_deref() == Some(bearer) {
        return Ok(());
    }
    if let Some(cluster) = &opts.eks_cluster {
        if bearer.starts_with(EKS_TOKEN_PREFIX) {
            // A shorter lifetime is the same check made later.
            let lifetime = i64::try_from(opts.eks_token_lifetime.as_secs()).unwrap_or(i64::MAX);
            let shift = (EKS_TOKEN_LIFETIME_SECS - lifetime).max(0);
            return verify_eks_token(
                bearer,
                cluster,
                shared.clock.now_secs() + shift,
                &opts.eks_credentials,
            )
            .map(|_| ())
            .map_err(|e| unauthorized(Some(e.0)));
        }
    }
    Err(unauthorized(None))
}

fn allowed_host(host: &str) -> bool {
    if host == "sts.amazonaws.com" {
        return true;
    }
    let region_ok = |r: &str| {
        !r.is_empty()
            && r.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    for (prefix, suffix) in [
        ("sts.", ".amazonaws.com"),
        ("sts-fips.", ".amazonaws.com"),
        ("sts.", ".amazonaws.com.cn"),
        ("sts.", ".api.aws"),
        ("sts-fips.", ".api.aws"),
    ] {
        if let Some(r) = host
            .strip_prefix(prefix)
            .and_then(|h| h.strip_suffix(suffix))
        {
            if region_ok(r) {
                return true;
            }
        }
    }
    false
}

const ALLOWED_PARAMS: &[&str] = &[
    "action",
    "version",
    "x-amz-algorithm",
    "x-amz-credential",
    "x-amz-date",
    "x-amz-expires",
    "x-amz-security-token",
    "x-amz-signature",
    "x-amz-signedheaders",
];

/// Checks an EKS token (`k8s-aws-v1.` + base64url of a presigned STS `GetCallerIdentity`
/// URL) as EKS does: length, prefix, https, an STS host, path `/`, only the expected query
/// parameters once each, `GetCallerIdentity` at version `2011-06-15`, SigV4, `host` and
/// `x-k8s-aws-id` among the signed headers, `X-Amz-Expires` at most 900, and not more than
/// 15 minutes after `X-Amz-Date` at `now` (Unix seconds). When `credentials` holds the
/// secret key of the token's access key id, the signature is verified too, with
/// `x-k8s-aws-id` set to `cluster` (so a token minted for another cluster fails).
///
/// # Errors
/// The first check that fails.
pub fn verify_eks_token(
    token: &str,
    cluster: &str,
    now: i64,
    credentials: &[(String, String)],
) -> Result<EksCaller, EksTokenError> {
    if token.len() > 4096 {
        return Err(refuse("token is too large"));
    }
    let b64 = token.strip_prefix(EKS_TOKEN_PREFIX).ok_or_else(|| {
        refuse(format!(
            "token is missing expected {EKS_TOKEN_PREFIX:?} prefix"
        ))
    })?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(b64.trim_end_matches('='))
        .map_err(|e| refuse(format!("token is not base64url: {e}")))?;
    let url = String::from_utf8(raw).map_err(|_| refuse("decoded token is not UTF-8"))?;
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| refuse("unexpected scheme (want https)"))?;
    let (host_and_path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (host, path) = match host_and_path.find('/') {
        Some(i) => (&host_and_path[..i], &host_and_path[i..]),
        None => (host_and_path, ""),
    };
    if !allowed_host(host) {
        return Err(refuse(format!(
            "unexpected hostname {host:?} in pre-signed URL"
        )));
    }
    if path != "/" {
        return Err(refuse("unexpected path in pre-signed URL"));
    }
    let mut params: Vec<(String, String)> = Vec::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        let lk = k.to_ascii_lowercase();
        if !ALLOWED_PARAMS.contains(&lk.as_str()) {
            return Err(refuse(format!("non-whitelisted query parameter {k:?}")));
        }
        if params.iter().any(|(p, _)| p.eq_ignore_ascii_case(&lk)) {
            return Err(refuse(format!(
                "query parameter {k:?} appears more than once"
            )));
        }
        params.push((k.into_owned(), v.into_owned()));
    }
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    if get("action") != Some("GetCallerIdentity") {
        return Err(refuse("unexpected action parameter in pre-signed URL"));
    }
    if get("version") != Some("2011-06-15") {
        return Err(refuse("unexpected version parameter in pre-signed URL"));
    }
    if get("x-amz-algorithm") != Some("AWS4-HMAC-SHA256") {
        return Err(refuse("unexpected X-Amz-Algorithm (want AWS4-HMAC-SHA256)"));
    }
    let signed: Vec<&str> = get("x-amz-signedheaders")
        .unwrap_or("")
        .split(';')
        .collect();
    if !signed.contains(&"x-k8s-aws-id") {
        return Err(refuse(
            "client did not sign the x-k8s-aws-id header in the pre-signed URL",
        ));
    }
    if !signed.contains(&"host") {
        return Err(refuse(
            "client did not sign the host header in the pre-signed URL",
        ));
    }
    let expires: i64 = get("x-amz-expires")
        .and_then(|e| e.parse().ok())
        .ok_or_else(|| refuse("missing or malformed X-Amz-Expires"))?;
    if !(0..=900).contains(&expires) {
        return Err(refuse(format!(
            "X-Amz-Expires parameter out of range: {expires}"
        )));
    }
    let date_s = get("x-amz-date").ok_or_else(|| refuse("missing X-Amz-Date"))?;
    let date = meta::parse_amz_date(date_s)
        .ok_or_else(|| refuse(format!("malformed X-Amz-Date {date_s:?}")))?;
    if now > date + EKS_TOKEN_LIFETIME_SECS {
        return Err(refuse(format!(
            "X-Amz-Date parameter is expired (15 minute expiration) {date_s}"
        )));
    }
    let credential = get("x-amz-credential").ok_or_else(|| refuse("missing X-Amz-Credential"))?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [akid, day, region, service, terminator] = scope[..] else {
        return Err(refuse(format!("malformed X-Amz-Credential {credential:?}")));
    };
    if service != "sts" || terminator != "aws4_request" || !date_s.starts_with(day) {
        return Err(refuse(format!(
            "malformed X-Amz-Credential scope {credential:?}"
        )));
    }
    let mut caller = EksCaller {
        access_key_id: akid.to_string(),
        region: region.to_string(),
        signature_verified: false,
    };
    if let Some((_, secret)) = credentials.iter().find(|(id, _)| id == akid) {
        let signature = get("x-amz-signature").ok_or_else(|| refuse("missing X-Amz-Signature"))?;
        let ok = [EMPTY_SHA256, "UNSIGNED-PAYLOAD"]
            .into_iter()
            .any(|payload| {
                sigv4_signature(
                    secret, host, cluster, &params, &signed, date_s, day, region, payload,
                ) == signature
            });
        if !ok {
            return Err(refuse(
                "signature does not match (wrong secret key, cluster name or tampered URL)",
            ));
        }
        caller.signature_verified = true;
    }
    Ok(caller)
}

/// SHA-256 of the empty payload.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// URI-encodes as SigV4 wants: unreserved characters kept, everything else `%XX`.
fn aws_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn sigv4_signature(
    secret: &str,
    host: &str,
    cluster: &str,
    params: &[(String, String)],
    signed: &[&str],
    amz_date: &str,
    day: &str,
    region: &str,
    payload: &str,
) -> String {
    let mut q: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("x-amz-signature"))
        .map(|(k, v)| (aws_encode(k), aws_encode(v)))
        .collect();
    q.sort();
    let canonical_query: Vec<String> = q.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut headers = String::new();
    for h in signed {
        let value = match *h {
            "host" => host,
            "x-k8s-aws-id" => cluster,
            _ => "",
        };
        headers.push_str(&format!("{h}:{value}\n"));
    }
    let canonical = format!(
        "GET\n/\n{}\n{headers}\n{}\n{payload}",
        canonical_query.join("&"),
        signed.join(";")
    );
    let scope = format!("{day}/{region}/sts/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let k = hmac(format!("AWS4{secret}").as_bytes(), day.as_bytes());
    let k = hmac(&k, region.as_bytes());
    let k = hmac(&k, b"sts");
    let k = hmac(&k, b"aws4_request");
    hex(&hmac(&k, to_sign.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(url: &str) -> String {
        format!(
            "{EKS_TOKEN_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(url)
        )
    }

    const T0: i64 = 1_533_427_200; // 2018-08-05T00:00:00Z

    fn url(extra: &str) -> String {
        format!(
            "https://sts.us-west-2.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15\
             &X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2F20180805%2Fus-west-2%2Fsts%2Faws4_request\
             &X-Amz-Date=20180805T000000Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host%3Bx-k8s-aws-id\
             &X-Amz-Signature=abc{extra}"
        )
    }

    #[test]
    fn accepts_a_well_formed_token_within_fifteen_minutes() {
        let caller = verify_eks_token(&token(&url("")), "c", T0 + 14 * 60, &[]).unwrap();
        assert_eq!(caller.access_key_id, "AKID");
        assert_eq!(caller.region, "us-west-2");
        assert!(!caller.signature_verified);
    }

    #[test]
    fn refuses_expired_and_malformed_tokens() {
        let check = |t: String| verify_eks_token(&t, "c", T0, &[]).unwrap_err().0;
        assert!(
            verify_eks_token(&token(&url("")), "c", T0 + 15 * 60 + 1, &[])
                .unwrap_err()
                .0
                .contains("expired")
        );
        assert!(check("Bearer-ish".into()).contains("prefix"));
        assert!(check(format!("{EKS_TOKEN_PREFIX}!!!")).contains("base64"));
        assert!(check(token(&url("").replace("https://", "http://"))).contains("scheme"));
        assert!(check(token(
            &url("").replace("sts.us-west-2.amazonaws.com", "evil.example.com")
        ))
        .contains("hostname"));
        assert!(check(token(&url("").replace(".com/?", ".com/x?"))).contains("path"));
        assert!(check(token(&url("&Foo=1"))).contains("non-whitelisted"));
        assert!(check(token(&url("&action=GetCallerIdentity"))).contains("more than once"));
        assert!(
            check(token(&url("").replace("GetCallerIdentity", "AssumeRole"))).contains("action")
        );
        assert!(check(token(&url("").replace("2011-06-15", "2012-01-01"))).contains("version"));
        assert!(
            check(token(&url("").replace("host%3Bx-k8s-aws-id", "host"))).contains("x-k8s-aws-id")
        );
        assert!(
            check(token(&url("").replace("Expires=60", "Expires=901"))).contains("out of range")
        );
        // The global endpoint and padding are accepted.
        let global = url("").replace("sts.us-west-2.amazonaws.com", "sts.amazonaws.com");
        let padded = format!(
            "{EKS_TOKEN_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE.encode(&global)
        );
        assert!(verify_eks_token(&padded, "c", T0, &[]).is_ok());
    }

    /// The vector from shared/research/rust-stack.md §2.4: the aws-sigv4 crate presigning
    /// with access key `akid`, secret `secret`, us-west-2, 2018-08-05T00:00Z, expires 59 (or 60),
    /// header `x-k8s-aws-id: my-eks-cluster`.
    #[test]
    fn verifies_sigv4_signatures_when_the_secret_is_known() {
        let creds = vec![("akid".to_string(), "secret".to_string())];
        let base = "https://sts.us-west-2.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15\
             &X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=akid%2F20180805%2Fus-west-2%2Fsts%2Faws4_request\
             &X-Amz-Date=20180805T000000Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host%3Bx-k8s-aws-id";
        // Sign it ourselves, then check the verifier accepts exactly that signature.
        let params: Vec<(String, String)> =
            form_urlencoded::parse(base.split_once('?').unwrap().1.as_bytes())
                .into_owned()
                .collect();
        let sig = sigv4_signature(
            "secret",
            "sts.us-west-2.amazonaws.com",
            "my-eks-cluster",
            &params,
            &["host", "x-k8s-aws-id"],
            "20180805T000000Z",
            "20180805",
            "us-west-2",
            EMPTY_SHA256,
        );
        let good = format!("{base}&X-Amz-Signature={sig}");
        let caller = verify_eks_token(&token(&good), "my-eks-cluster", T0, &creds).unwrap();
        assert!(caller.signature_verified);
        let err = verify_eks_token(&token(&good), "other-cluster", T0, &creds).unwrap_err();
        assert!(err.0.contains("signature"), "{err}");
        let tampered = good.replace("Expires=60", "Expires=61");
        assert!(verify_eks_token(&token(&tampered), "my-eks-cluster", T0, &creds).is_err());
    }

    /// A URL presigned by the AWS SDK for Ruby (its published test vector): global endpoint,
    /// us-west-2 scope, access key `akid`, secret `secret`, cluster `my-eks-cluster`.
    #[test]
    fn accepts_a_url_presigned_by_an_aws_sdk() {
        let url = "https://sts.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&X-Amz-Algorithm=AWS4-HMAC-SHA256\
            &X-Amz-Credential=akid%2F20180805%2Fus-west-2%2Fsts%2Faws4_request&X-Amz-Date=20180805T000000Z&X-Amz-Expires=59\
            &X-Amz-SignedHeaders=host%3Bx-k8s-aws-id&X-Amz-Signature=d1f6551aafc0f5c57971fe161a12cbe0539fc1681698ea4a4c0fde5abc51e32e";
        let creds = vec![("akid".to_string(), "secret".to_string())];
        let caller = verify_eks_token(&token(url), "my-eks-cluster", T0 + 60, &creds).unwrap();
        assert!(caller.signature_verified);
        assert!(verify_eks_token(&token(url), "another", T0 + 60, &creds).is_err());
        assert!(verify_eks_token(&token(url), "my-eks-cluster", T0 + 16 * 60, &creds).is_err());
    }
}
