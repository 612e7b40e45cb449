//! Authorization: every caller may do everything, except what a [`Denial`] forbids. Denied
//! requests answer `403 Forbidden` worded as RBAC words it, and `SelfSubjectAccessReview`s
//! (`kubectl auth can-i`) answer from the same rules.

use crate::api::ApiError;
use crate::resources::ResourceType;
use serde_json::{json, Value};

/// The user named in `Forbidden` messages; the simulator does not tell callers apart.
pub const USER: &str = "kube-sim-user";

/// Forbids one verb on one resource, as a missing RBAC rule would.
///
/// ```
/// let rule = kube_sim::Denial::new("patch", "deployments").namespace("shop");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`;
    /// `*` for every verb.
    pub verb: String,
    /// The plural resource (`deployments`, `pods`), optionally with its group
    /// (`deployments.apps`); `*` for every resource.
    pub resource: String,
    /// Only in this namespace; `None`: everywhere.
    pub namespace: Option<String>,
}

impl Denial {
    /// Denies `verb` on `resource` in every namespace.
    pub fn new(verb: &str, resource: &str) -> Denial {
        Denial {
            verb: verb.to_ascii_lowercase(),
            resource: resource.to_ascii_lowercase(),
            namespace: None,
        }
    }

    /// Only in `namespace`.
    pub fn namespace(mut self, namespace: &str) -> Denial {
        self.namespace = Some(namespace.to_string());
        self
    }

    /// Parses `VERB:RESOURCE[:NAMESPACE]`, the `--deny` flag's form.
    ///
    /// # Errors
    /// When a part is missing.
    pub fn parse(text: &str) -> Result<Denial, String> {
        let mut parts = text.split(':');
        let (Some(verb), Some(resource)) = (parts.next(), parts.next()) else {
            return Err(format!("{text:?} is not VERB:RESOURCE[:NAMESPACE]"));
        };
        if verb.is_empty() || resource.is_empty() {
            return Err(format!("{text:?} is not VERB:RESOURCE[:NAMESPACE]"));
        }
        let denial = Denial::new(verb, resource);
        Ok(match parts.next() {
            Some(ns) if !ns.is_empty() => denial.namespace(ns),
            _ => denial,
        })
    }

    /// Whether this rule forbids `verb` on `group`/`plural` in `namespace` ("" when
    /// cluster-scoped).
    pub fn forbids(&self, verb: &str, group: &str, plural: &str, namespace: &str) -> bool {
        let resource_matches = self.resource == "*"
            || match self.resource.split_once('.') {
                Some((p, g)) => p == plural && g == group,
                None => self.resource == plural,
            };
        (self.verb == "*" || self.verb == verb)
            && resource_matches
            && self.namespace.as_deref().is_none_or(|ns| ns == namespace)
    }
}

/// What a request asks to do, for authorization.
pub struct Attributes<'a> {
    pub verb: &'a str,
    pub group: &'a str,
    pub plural: &'a str,
    pub namespace: &'a str,
    pub name: Option<&'a str>,
}

/// The RBAC verb of a request: `GET` of a collection is `list` (or `watch`), of one object
/// `get`; `PUT` is `update`; a `DELETE` of a collection is `deletecollection`.
pub fn verb_of(method: &str, named: bool, watch: bool) -> &'static str {
    match (method, named) {
        ("GET", _) if watch => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unknown",
    }
}

/// `Ok` when no rule forbids the request, else the apiserver's `403 Forbidden`.
///
/// # Errors
/// The `Forbidden` status, naming user, verb, resource, group and namespace.
pub fn authorize(denials: &[Denial], t: &ResourceType, a: &Attributes<'_>) -> Result<(), ApiError> {
    if !denials
        .iter()
        .any(|d| d.forbids(a.verb, a.group, a.plural, a.namespace))
    {
        return Ok(());
    }
    let subject = match a.name {
        Some(n) => format!("{} \"{n}\"", t.qualified()),
        None => t.qualified(),
    };
    let scope = if a.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace \"{}\"", a.namespace)
    };
    let mut e = ApiError::new(
        403,
        "Forbidden",
        format!(
            "{subject} is forbidden: User \"{USER}\" cannot {} resource \"{}\" in API group \"{}\" {scope}",
            a.verb, a.plural, a.group
        ),
    );
    let mut details = json!({"kind": t.plural});
    if let Some(n) = a.name {
        details["name"] = json!(n);
    }
    if !t.group.is_empty() {
        details["group"] = json!(t.group);
    }
    e.details = Some(details);
    Err(e)
}

/// Answers a `SelfSubjectAccessReview` (`POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews`):
/// the review with `status.allowed` set from the rules. Non-resource requests are allowed.
///
/// # Errors
/// `400` when the body is not a review, `422` when it has no attributes.
pub fn review(denials: &[Denial], body: &Value) -> Result<Value, ApiError> {
    if body.get("kind").and_then(Value::as_str) != Some("SelfSubjectAccessReview") {
        return Err(ApiError::bad_request(
            "the body is not a SelfSubjectAccessReview",
        ));
    }
    let spec = &body["spec"];
    let attributes = &spec["resourceAttributes"];
    let allowed = if attributes.is_object() {
        let field = |k: &str| attributes.get(k).and_then(Value::as_str).unwrap_or("");
        let verb = field("verb");
        !denials
            .iter()
            .any(|d| d.forbids(verb, field("group"), field("resource"), field("namespace")))
    } else if spec["nonResourceAttributes"].is_object() {
        true
    } else {
        return Err(ApiError::new(
            422,
            "Invalid",
            "SelfSubjectAccessReview.authorization.k8s.io \"\" is invalid: spec.resourceAttributes: Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified",
        ));
    };
    Ok(json!({
        "kind": "SelfSubjectAccessReview",
        "apiVersion": "authorization.k8s.io/v1",
        "metadata": {"creationTimestamp": null},
        "spec": spec,
        "status": {"allowed": allowed},
    }))
}

/// A `SelfSubjectAccessReview` sent as Kubernetes protobuf (as kubectl's typed client sends
/// it), turned into its JSON form: the `k8s\0` envelope holds an `Unknown` whose `raw` is the
/// review; only the fields a review is judged on are read. `None` when the bytes are not one.
pub fn review_from_protobuf(bytes: &[u8]) -> Option<Value> {
    let unknown = bytes.strip_prefix(b"k8s\0")?;
    let raw = field(unknown, 2)?;
    let spec = field(raw, 2).unwrap_or_default();
    let mut json_spec = json!({});
    if let Some(attributes) = field(spec, 1) {
        let names = [
            "namespace",
            "verb",
            "group",
            "version",
            "resource",
            "subresource",
            "name",
        ];
        let mut out = serde_json::Map::new();
        for (number, name) in (1..).zip(names) {
            if let Some(v) = field(attributes, number) {
                out.insert(name.into(), json!(String::from_utf8_lossy(v)));
            }
        }
        json_spec["resourceAttributes"] = Value::Object(out);
    } else if field(spec, 2).is_some() {
        json_spec["nonResourceAttributes"] = json!({});
    }
    Some(
        json!({"kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1", "spec": json_spec}),
    )
}

/// The bytes of the first length-delimited field `number` of a protobuf message.
fn field(message: &[u8], number: u64) -> Option<&[u8]> {
    let mut rest = message;
    while !rest.is_empty() {
        let key = varint(&mut rest)?;
        let value: &[u8] = match key & 7 {
            0 => {
                varint(&mut rest)?;
                &[]
            }
            1 => take(&mut rest, 8)?,
            2 => {
                let len = usize::try_from(varint(&mut rest)?).ok()?;
                take(&mut rest, len)?
            }
            5 => take(&mut rest, 4)?,
            _ => return None,
        };
        if key >> 3 == number && key & 7 == 2 {
            return Some(value);
        }
    }
    None
}

fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if rest.len() < n {
        return None;
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Some(head)
}

fn varint(rest: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, tail) = rest.split_first()?;
        *rest = tail;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// The discovery document of `authorization.k8s.io/v1`: the self-review is the only resource.
pub fn resource_list() -> Value {
    json!({
        "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "authorization.k8s.io/v1",
        "resources": [{"name": "selfsubjectaccessreviews", "singularName": "selfsubjectaccessreview",
            "namespaced": false, "kind": "SelfSubjectAccessReview", "verbs": ["create"]}],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denials_match_verb_resource_group_and_namespace() {
        let d = Denial::new("patch", "deployments").namespace("shop");
        assert!(d.forbids("patch", "apps", "deployments", "shop"));
        assert!(!d.forbids("get", "apps", "deployments", "shop"));
        assert!(!d.forbids("patch", "apps", "deployments", "other"));
        let grouped = Denial::parse("watch:pods.").unwrap();
        assert!(grouped.forbids("watch", "", "pods", "x"));
        assert!(!Denial::new("list", "deployments.apps").forbids(
            "list",
            "extensions",
            "deployments",
            ""
        ));
        assert!(Denial::new("*", "*").forbids("delete", "", "pods", ""));
        assert!(Denial::parse("get").is_err());
        assert_eq!(
            Denial::parse("get:pods:shop").unwrap().namespace.as_deref(),
            Some("shop")
        );
    }

    #[test]
    fn reviews_answer_from_the_rules() {
        let rules = [Denial::new("patch", "deployments")];
        let ask = |verb: &str| {
            json!({"kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
                "spec": {"resourceAttributes": {"verb": verb, "group": "apps", "resource": "deployments", "namespace": "shop", "name": "cart"}}})
        };
        assert_eq!(
            review(&rules, &ask("patch")).unwrap()["status"]["allowed"],
            false
        );
        assert_eq!(
            review(&rules, &ask("get")).unwrap()["status"]["allowed"],
            true
        );
        assert_eq!(
            review(
                &rules,
                &json!({"kind": "SelfSubjectAccessReview", "spec": {}})
            )
            .unwrap_err()
            .code,
            422
        );
    }
}
