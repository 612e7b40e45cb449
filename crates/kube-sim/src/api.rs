//! Request routing and the REST verbs: discovery, get, list, watch, create, update, patch,
//! delete, and the `status`/`scale`/`log` subresources.

use crate::access;
use crate::auth;
use crate::defaults;
use crate::fields;
use crate::meta::{self, Clock};
use crate::openapi;
use crate::patch;
use crate::resources::{self, ResourceType, TYPES};
use crate::selectors::Selector;
use crate::server::Body;
use crate::sim::{RecordedRequest, Shared, State};
use crate::tables;
use crate::watch;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::{json, Value};
use std::sync::Arc;

/// The Kubernetes version the simulator claims to be.
pub const VERSION_MINOR: &str = "32";

/// An error answered as a `Status` object.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, t: &ResourceType, name: &str) -> ApiError {
        let mut d = json!({"name": name, "kind": t.plural});
        if !t.group.is_empty() {
            d["group"] = json!(t.group);
        }
        self.details = Some(d);
        self
    }

    pub fn not_found(t: &ResourceType, name: &str) -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", t.qualified()),
        )
        .with_details(t, name)
    }

    pub fn already_exists(t: &ResourceType, name: &str) -> ApiError {
        ApiError::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", t.qualified()),
        )
        .with_details(t, name)
    }

    pub fn conflict(t: &ResourceType, name: &str) -> ApiError {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                t.qualified()
            ),
        )
        .with_details(t, name)
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    pub fn invalid(t: &ResourceType, name: &str, causes: &[(String, String)]) -> ApiError {
        let list: Vec<String> = causes.iter().map(|(f, m)| format!("{f}: {m}")).collect();
        let msg = if list.len() == 1 {
            list[0].clone()
        } else {
            format!("[{}]", list.join(", "))
        };
        let mut e = ApiError::new(
            422,
            "Invalid",
            format!("{} \"{name}\" is invalid: {msg}", qualified_kind(t)),
        )
        .with_details(t, name);
        if let Some(d) = e.details.as_mut() {
            d["kind"] = json!(t.kind);
            d["causes"] = causes
                .iter()
                .map(|(f, m)| json!({"reason": "FieldValueInvalid", "message": m, "field": f}))
                .collect();
        }
        e
    }

    pub fn status(&self) -> Value {
        let mut s = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason, "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

/// `Deployment.apps` or `Pod`, as the apiserver names a kind in validation errors.
fn qualified_kind(t: &ResourceType) -> String {
    if t.group.is_empty() {
        t.kind.to_string()
    } else {
        format!("{}.{}", t.kind, t.group)
    }
}

/// What a route answers.
enum Reply {
    Json(u16, Value),
    Text(u16, String),
    Stream(Body),
}

fn json_response(code: u16, v: &Value) -> Response<Body> {
    let body = serde_json::to_vec(v).unwrap_or_default();
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .header("cache-control", "no-cache, private")
        .body(Body::Full(Some(Bytes::from(body))))
        .unwrap_or_else(|_| Response::new(Body::Full(None)))
}

/// The request, parsed.
pub struct Req {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub accept: String,
    pub content_type: String,
    pub user_agent: String,
    pub body: Bytes,
}

impl Req {
    pub fn param(&self, k: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(q, _)| q == k)
            .map(|(_, v)| v.as_str())
    }

    fn flag(&self, k: &str) -> bool {
        matches!(self.param(k), Some("1" | "true" | "True"))
    }

    /// The field manager: the `fieldManager` parameter, else the user agent's program name,
    /// as the apiserver derives it.
    fn manager(&self) -> String {
        match self.param("fieldManager") {
            Some(m) if !m.is_empty() => m.to_string(),
            _ => self
                .user_agent
                .split('/')
                .next()
                .unwrap_or("unknown")
                .to_string(),
        }
    }
}

/// Serves one request.
pub async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let header = |n: &str| {
        parts
            .headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let authorization = header("authorization");
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let r = Req {
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        query: form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect(),
        accept: header("accept"),
        content_type: header("content-type"),
        user_agent: header("user-agent"),
        body,
    };
    let reply = route(&shared, &r, &authorization);
    let (code, resp) = match reply {
        Ok(Reply::Json(code, v)) => (code, json_response(code, &v)),
        Ok(Reply::Text(code, t)) => (
            code,
            Response::builder()
                .status(code)
                .header("content-type", "text/plain; charset=utf-8")
                .body(Body::Full(Some(Bytes::from(t))))
                .unwrap_or_else(|_| Response::new(Body::Full(None))),
        ),
        Ok(Reply::Stream(b)) => (
            200,
            Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .header("cache-control", "no-cache, private")
                .body(b)
                .unwrap_or_else(|_| Response::new(Body::Full(None))),
        ),
        Err(e) => {
            let mut resp = json_response(e.code, &e.status());
            if e.code == 429 {
                resp.headers_mut()
                    .insert("retry-after", hyper::header::HeaderValue::from_static("1"));
            }
            (e.code, resp)
        }
    };
    let mut log = shared.requests.lock().unwrap_or_else(|p| p.into_inner());
    if log.len() >= 2000 {
        log.pop_front();
    }
    log.push_back(RecordedRequest {
        method: r.method.clone(),
        uri: parts.uri.to_string(),
        content_type: (!r.content_type.is_empty()).then(|| r.content_type.clone()),
        authorization: (!authorization.is_empty()).then(|| authorization.clone()),
        user_agent: (!r.user_agent.is_empty()).then(|| r.user_agent.clone()),
        body: String::from_utf8_lossy(&r.body).into_owned(),
        status: code,
    });
    resp
}

fn injected_fault(shared: &Shared, r: &Req) -> Option<Result<Reply, ApiError>> {
    let mut faults = shared.faults.lock().unwrap_or_else(|p| p.into_inner());
    let f = faults.iter_mut().find(|f| f.matches(&r.method, &r.path))?;
    f.times -= 1;
    let (status, plain) = (f.status, f.plain_body.clone());
    faults.retain(|f| f.times > 0);
    if let Some(body) = plain {
        return Some(Ok(Reply::Text(status, body)));
    }
    Some(Err(match status {
        409 => ApiError::new(
            409,
            "Conflict",
            "Operation cannot be fulfilled: the object has been modified; please apply your changes to the latest version and try again",
        ),
        429 => ApiError::new(429, "TooManyRequests", "the server has received too many requests and has asked us to try again later"),
        404 => ApiError::new(404, "NotFound", "the server could not find the requested resource"),
        401 => ApiError::new(401, "Unauthorized", "Unauthorized"),
        503 => ApiError::new(503, "ServiceUnavailable", "the server is currently unable to handle the request"),
        code => ApiError::new(code, "InternalError", "Internal error occurred: injected by kube-sim"),
    }))
}

fn route(shared: &Arc<Shared>, r: &Req, authorization: &str) -> Result<Reply, ApiError> {
    let p = r.path.trim_end_matches('/');
    if matches!(p, "/healthz" | "/readyz" | "/livez") {
        return Ok(Reply::Text(200, "ok".into()));
    }
    auth::check(shared, authorization)?;
    if let Some(answer) = injected_fault(shared, r) {
        return answer;
    }
    let segs: Vec<&str> = p.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        ["version"] => Ok(Reply::Json(200, version())),
        ["api"] => Ok(Reply::Json(
            200,
            json!({"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": shared.addr.to_string()}]}),
        )),
        ["apis"] => Ok(Reply::Json(200, group_list())),
        ["apis", g] => match group_list()["groups"]
            .as_array()
            .and_then(|gs| gs.iter().find(|x| x["name"] == *g))
        {
            Some(grp) => {
                let mut grp = grp.clone();
                grp["kind"] = json!("APIGroup");
                grp["apiVersion"] = json!("v1");
                Ok(Reply::Json(200, grp))
            }
            None => Err(ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )),
        },
        ["openapi", "v3"] => Ok(Reply::Json(200, openapi::root())),
        ["openapi", "v3", gv @ ..] => openapi::group_version(&gv.join("/"))
            .map(|v| Reply::Json(200, v))
            .ok_or_else(|| {
                ApiError::new(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                )
            }),
        ["apis", "authorization.k8s.io", "v1"] => Ok(Reply::Json(200, access::resource_list())),
        ["apis", "authorization.k8s.io", "v1", "selfsubjectaccessreviews"]
            if r.method == "POST" =>
        {
            let body = if r
                .content_type
                .starts_with("application/vnd.kubernetes.protobuf")
            {
                access::review_from_protobuf(&r.body).ok_or_else(|| {
                    ApiError::bad_request("the body is not a SelfSubjectAccessReview")
                })?
            } else {
                parse_body(r)?
            };
            access::review(&shared.denials(), &body).map(|v| Reply::Json(201, v))
        }
        ["api", "v1"] => Ok(Reply::Json(200, resource_list("", "v1"))),
        ["apis", g, v] if TYPES.iter().any(|t| t.group == *g && t.version == *v) => {
            Ok(Reply::Json(200, resource_list(g, v)))
        }
        ["api", "v1", rest @ ..] => resource_request(shared, r, "", "v1", rest),
        ["apis", g, v, rest @ ..] => resource_request(shared, r, g, v, rest),
        _ => Err(ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )),
    }
}

fn version() -> Value {
    json!({
        "major": "1", "minor": VERSION_MINOR, "gitVersion": format!("v1.{VERSION_MINOR}.0-kube-sim"),
        "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.23.0", "compiler": "gc",
        "platform": "linux/amd64",
    })
}

fn group_list() -> Value {
    let groups: Vec<Value> = resources::groups()
        .into_iter()
        .chain(["authorization.k8s.io"])
        .map(|g| {
            let v = TYPES
                .iter()
                .find(|t| t.group == g)
                .map(|t| t.version)
                .unwrap_or("v1");
            let gv = json!({"groupVersion": format!("{g}/{v}"), "version": v});
            json!({"name": g, "versions": [gv.clone()], "preferredVersion": gv})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn resource_list(group: &str, version: &str) -> Value {
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    let mut out = Vec::new();
    for t in TYPES
        .iter()
        .filter(|t| t.group == group && t.version == version)
    {
        let verbs = json!([
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch"
        ]);
        let mut r = json!({"name": t.plural, "singularName": t.singular, "namespaced": t.namespaced,
            "kind": t.kind, "verbs": verbs});
        if !t.short_names.is_empty() {
            r["shortNames"] = json!(t.short_names);
        }
        if !t.categories.is_empty() {
            r["categories"] = json!(t.categories);
        }
        out.push(r);
        if t.status {
            out.push(json!({"name": format!("{}/status", t.plural), "singularName": "", "namespaced": t.namespaced,
                "kind": t.kind, "verbs": ["get", "patch", "update"]}));
        }
        if t.scale {
            out.push(json!({"name": format!("{}/scale", t.plural), "singularName": "", "namespaced": t.namespaced,
                "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]}));
        }
        if t.plural == "pods" {
            out.push(json!({"name": "pods/log", "singularName": "", "namespaced": true, "kind": "Pod", "verbs": ["get"]}));
        }
    }
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out})
}

/// `[namespaces/NS/]PLURAL[/NAME[/SUB]]` under a group/version.
fn resource_request(
    shared: &Arc<Shared>,
    r: &Req,
    group: &str,
    version: &str,
    rest: &[&str],
) -> Result<Reply, ApiError> {
    let nf = || {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    };
    let (ns, rest) = match rest {
        ["namespaces", ns, plural, tail @ ..]
            if resources::by_path(group, version, plural).is_some_and(|t| TYPES[t].namespaced) =>
        {
            (Some(*ns), [&[*plural][..], tail].concat())
        }
        _ => (None, rest.to_vec()),
    };
    let (plural, name, sub) = match rest.as_slice() {
        [p] => (*p, None, None),
        [p, n] => (*p, Some(*n), None),
        [p, n, s] => (*p, Some(*n), Some(*s)),
        _ => return Err(nf()),
    };
    let rtype = resources::by_path(group, version, plural).ok_or_else(nf)?;
    let t = &TYPES[rtype];
    if t.namespaced != ns.is_some() && name.is_some() {
        return Err(nf());
    }
    match sub {
        None | Some("status") => {}
        Some("scale") if t.scale => {}
        Some("log") if rtype == resources::PODS => {}
        Some(_) => return Err(nf()),
    }
    let ns_str = ns.unwrap_or("");
    let resource = match sub {
        Some(s) => format!("{plural}/{s}"),
        None => plural.to_string(),
    };
    access::authorize(
        &shared.denials(),
        t,
        &access::Attributes {
            verb: access::verb_of(&r.method, name.is_some(), r.flag("watch")),
            group,
            plural: &resource,
            namespace: ns_str,
            name,
        },
    )?;
    match (r.method.as_str(), name) {
        ("GET", None) if r.flag("watch") => watch::start(shared, r, rtype, ns).map(Reply::Stream),
        ("GET", None) => {
            let state = shared.lock();
            list(&state, &shared.clock, r, rtype, ns)
        }
        ("GET", Some(n)) => {
            let state = shared.lock();
            let obj = state
                .store
                .get(rtype, ns_str, n)
                .ok_or_else(|| ApiError::not_found(t, n))?;
            match sub {
                Some("scale") => Ok(Reply::Json(200, scale_of(obj))),
                Some("log") => Ok(Reply::Text(200, crate::controllers::pod_log(obj))),
                _ if tables::wanted(&r.accept) => Ok(Reply::Json(
                    200,
                    tables::table(
                        rtype,
                        std::slice::from_ref(obj),
                        state.store.resource_version(),
                        shared.clock.now_secs(),
                    ),
                )),
                _ => Ok(Reply::Json(200, obj.clone())),
            }
        }
        ("POST", None) => {
            let obj = parse_body(r)?;
            let mut state = shared.lock();
            let created = create(
                &mut state,
                &shared.clock,
                rtype,
                ns_str,
                obj,
                &r.manager(),
                r.param("dryRun").is_some(),
            )?;
            Ok(Reply::Json(201, created))
        }
        ("PUT", Some(n)) => {
            let obj = parse_body(r)?;
            let mut state = shared.lock();
            if sub == Some("scale") {
                let cur = state
                    .store
                    .get(rtype, ns_str, n)
                    .ok_or_else(|| ApiError::not_found(t, n))?
                    .clone();
                return set_scale(&mut state, &shared.clock, rtype, cur, &obj, r)
                    .map(|v| Reply::Json(200, v));
            }
            let updated = update(
                &mut state,
                &shared.clock,
                rtype,
                ns_str,
                n,
                obj,
                sub,
                &r.manager(),
                r.param("dryRun").is_some(),
            )?;
            Ok(Reply::Json(200, updated))
        }
        ("PATCH", Some(n)) => {
            let mut state = shared.lock();
            patch_request(&mut state, &shared.clock, r, rtype, ns_str, n, sub)
        }
        ("DELETE", Some(n)) => {
            let options: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
            let orphan = r.param("propagationPolicy") == Some("Orphan")
                || options["propagationPolicy"] == "Orphan"
                || options["orphanDependents"] == true;
            let mut state = shared.lock();
            if orphan {
                let uid = state
                    .store
                    .get(rtype, ns_str, n)
                    .map(|o| meta::uid(o).to_string())
                    .unwrap_or_default();
                orphan_dependents(&mut state, &uid);
            }
            let grace = r
                .param("gracePeriodSeconds")
                .and_then(|g| g.parse::<i64>().ok())
                .or_else(|| options["gracePeriodSeconds"].as_i64());
            if rtype == resources::PODS && grace != Some(0) {
                // Pods terminate gracefully: the answer is the pod, now Terminating.
                let pod = crate::controllers::terminate_pod(
                    &mut state,
                    shared.clock.now_secs(),
                    ns_str,
                    n,
                )
                .ok_or_else(|| ApiError::not_found(t, n))?;
                return Ok(Reply::Json(200, pod));
            }
            let obj = delete(&mut state, rtype, ns_str, n)?;
            let mut details = json!({"name": n, "kind": t.plural, "uid": meta::uid(&obj)});
            if !t.group.is_empty() {
                details["group"] = json!(t.group);
            }
            Ok(Reply::Json(
                200,
                json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}),
            ))
        }
        ("DELETE", None) => {
            let mut state = shared.lock();
            let labels = selector(r, "labelSelector")?;
            let fields = selector(r, "fieldSelector")?;
            let names: Vec<(String, String)> = state
                .store
                .list(rtype, ns)
                .filter(|o| labels.matches_labels(o) && fields.matches_fields(o))
                .map(|o| (meta::namespace(o).to_string(), meta::name(o).to_string()))
                .collect();
            let mut items = Vec::new();
            for (ns, name) in names {
                if let Ok(o) = delete(&mut state, rtype, &ns, &name) {
                    items.push(o);
                }
            }
            let rv = state.store.resource_version().to_string();
            Ok(Reply::Json(
                200,
                json!({"kind": format!("{}List", t.kind), "apiVersion": t.api_version(),
                "metadata": {"resourceVersion": rv}, "items": items}),
            ))
        }
        _ => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )),
    }
}

fn selector(r: &Req, param: &str) -> Result<Selector, ApiError> {
    Selector::parse(r.param(param).unwrap_or("")).map_err(ApiError::bad_request)
}

fn list(
    state: &State,
    clock: &Clock,
    r: &Req,
    rtype: usize,
    ns: Option<&str>,
) -> Result<Reply, ApiError> {
    let t = &TYPES[rtype];
    let labels = selector(r, "labelSelector")?;
    let fields = selector(r, "fieldSelector")?;
    let items: Vec<Value> = state
        .store
        .list(rtype, ns)
        .filter(|o| labels.matches_labels(o) && fields.matches_fields(o))
        .cloned()
        .collect();
    let rv = state.store.resource_version();
    if tables::wanted(&r.accept) {
        return Ok(Reply::Json(
            200,
            tables::table(rtype, &items, rv, clock.now_secs()),
        ));
    }
    Ok(Reply::Json(
        200,
        json!({"kind": format!("{}List", t.kind), "apiVersion": t.api_version(),
            "metadata": {"resourceVersion": rv.to_string()}, "items": items}),
    ))
}

fn parse_body(r: &Req) -> Result<Value, ApiError> {
    if let Ok(v) = serde_json::from_slice::<Value>(&r.body) {
        return Ok(v);
    }
    let text = std::str::from_utf8(&r.body)
        .map_err(|_| ApiError::bad_request("the request body is not UTF-8"))?;
    serde_yaml_ng::from_str::<Value>(text).map_err(|e| {
        ApiError::bad_request(format!(
            "the body of the request was in an unknown format: {e}"
        ))
    })
}

/// The `autoscaling/v1` Scale view of a workload.
fn scale_of(obj: &Value) -> Value {
    let sel = meta::path(obj, &["spec", "selector"])
        .map(defaults::selector_string)
        .unwrap_or_default();
    json!({
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {"name": meta::name(obj), "namespace": meta::namespace(obj), "uid": meta::uid(obj),
            "resourceVersion": obj["metadata"]["resourceVersion"], "creationTimestamp": obj["metadata"]["creationTimestamp"]},
        "spec": {"replicas": meta::path_i64(obj, &["spec", "replicas"]).unwrap_or(0)},
        "status": {"replicas": meta::path_i64(obj, &["status", "replicas"]).unwrap_or(0), "selector": sel},
    })
}

fn set_scale(
    state: &mut State,
    clock: &Clock,
    rtype: usize,
    cur: Value,
    scale: &Value,
    r: &Req,
) -> Result<Value, ApiError> {
    let t = &TYPES[rtype];
    let want_rv = meta::path_str(scale, &["metadata", "resourceVersion"]).unwrap_or("");
    if !want_rv.is_empty()
        && Some(want_rv) != meta::path_str(&cur, &["metadata", "resourceVersion"])
    {
        return Err(ApiError::conflict(t, meta::name(&cur)));
    }
    let replicas = meta::path_i64(scale, &["spec", "replicas"]).unwrap_or(0);
    let mut obj = cur.clone();
    meta::set_path(&mut obj, &["spec", "replicas"], json!(replicas));
    record_update(
        &mut obj,
        Some(&cur),
        &r.manager(),
        t,
        &clock.now_rfc3339(),
        Some("scale"),
    );
    let stored = state.store.update(rtype, obj);
    Ok(scale_of(&stored))
}

fn patch_request(
    state: &mut State,
    clock: &Clock,
    r: &Req,
    rtype: usize,
    ns: &str,
    name: &str,
    sub: Option<&str>,
) -> Result<Reply, ApiError> {
    let t = &TYPES[rtype];
    let ct = r
        .content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let dry = r.param("dryRun").is_some();
    let body = parse_body(r)?;
    let existing = state.store.get(rtype, ns, name).cloned();
    if ct == "application/apply-patch+yaml" {
        let manager = match r.param("fieldManager") {
            Some(m) if !m.is_empty() => m.to_string(),
            _ => {
                return Err(ApiError::invalid_options(
                    "fieldManager: Required value: is required for apply patch",
                ));
            }
        };
        if body
            .get("kind")
            .and_then(Value::as_str)
            .is_some_and(|k| k != t.kind)
        {
            return Err(ApiError::bad_request(format!(
                "the kind of the applied object does not match {}",
                t.kind
            )));
        }
        let mut applied = body;
        meta::set_path(&mut applied, &["metadata", "name"], json!(name));
        if t.namespaced {
            meta::set_path(&mut applied, &["metadata", "namespace"], json!(ns));
        }
        return match existing {
            None => {
                let fields = fields::of(&applied);
                let mut obj = applied;
                obj["apiVersion"] = json!(t.api_version());
                obj["kind"] = json!(t.kind);
                let mut created = create(state, clock, rtype, ns, obj, &manager, true)?;
                // An apply that creates records only the applier.
                meta::set_path(&mut created, &["metadata", "managedFields"], json!([]));
                record_apply(
                    &mut created,
                    &manager,
                    t,
                    &clock.now_rfc3339(),
                    fields,
                    &json!({}),
                );
                if !dry {
                    created = state.store.create(rtype, created);
                }
                Ok(Reply::Json(201, created))
            }
            Some(cur) => {
                let (merged, ownership) =
                    server_side_apply(&cur, &applied, &manager, r.flag("force"))?;
                let v = write_patched(
                    state, clock, rtype, &cur, merged, sub, &manager, ownership, dry,
                )?;
                Ok(Reply::Json(200, v))
            }
        };
    }
    let cur = existing.ok_or_else(|| ApiError::not_found(t, name))?;
    if sub == Some("scale") {
        let scale = scale_of(&cur);
        let patched = apply_patch_type(&ct, &scale, &body)?;
        return set_scale(state, clock, rtype, cur, &patched, r).map(|v| Reply::Json(200, v));
    }
    let patched = apply_patch_type(&ct, &cur, &body)?;
    let v = write_patched(
        state,
        clock,
        rtype,
        &cur,
        patched,
        sub,
        &r.manager(),
        Ownership::Update,
        dry,
    )?;
    Ok(Reply::Json(200, v))
}

impl ApiError {
    fn invalid_options(msg: &str) -> ApiError {
        ApiError::new(
            422,
            "Invalid",
            format!("PatchOptions.meta.k8s.io \"\" is invalid: {msg}"),
        )
    }
}

fn apply_patch_type(ct: &str, cur: &Value, body: &Value) -> Result<Value, ApiError> {
    let bad = |e: patch::PatchError| ApiError::new(422, "Invalid", e.0);
    match ct {
        "application/strategic-merge-patch+json" => patch::strategic_merge(cur, body).map_err(bad),
        "application/merge-patch+json" => Ok(patch::merge_patch(cur, body)),
        "application/json-patch+json" => patch::json_patch(cur, body).map_err(bad),
        other => Err(ApiError::new(415, "UnsupportedMediaType", format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {other:?})"))),
    }
}

/// Stores the result of a patch, with the checks an update gets.
#[allow(clippy::too_many_arguments)]
fn write_patched(
    state: &mut State,
    clock: &Clock,
    rtype: usize,
    cur: &Value,
    mut patched: Value,
    sub: Option<&str>,
    manager: &str,
    ownership: Ownership,
    dry: bool,
) -> Result<Value, ApiError> {
    let t = &TYPES[rtype];
    let name = meta::name(cur).to_string();
    let cur_rv = meta::path_str(cur, &["metadata", "resourceVersion"]);
    if meta::path_str(&patched, &["metadata", "resourceVersion"])
        .is_some_and(|rv| Some(rv) != cur_rv)
    {
        return Err(ApiError::conflict(t, &name));
    }
    // A patch cannot rename or move an object or change its identity.
    for k in ["name", "namespace", "uid", "creationTimestamp"] {
        if let Some(v) = cur.pointer(&format!("/metadata/{k}")) {
            meta::set_path(&mut patched, &["metadata", k], v.clone());
        }
    }
    prepare_update(rtype, cur, &mut patched, sub)?;
    record(
        &mut patched,
        Some(cur),
        manager,
        t,
        &clock.now_rfc3339(),
        sub,
        ownership,
    );
    if dry {
        return Ok(patched);
    }
    Ok(state.store.update(rtype, patched))
}

/// Keeps what an update may not change (status through the main resource, everything but
/// status through `/status`), applies defaults and validates.
fn prepare_update(
    rtype: usize,
    cur: &Value,
    obj: &mut Value,
    sub: Option<&str>,
) -> Result<(), ApiError> {
    let t = &TYPES[rtype];
    if sub == Some("status") {
        let status = obj.get("status").cloned();
        let managed = obj.pointer("/metadata/managedFields").cloned();
        *obj = cur.clone();
        match status {
            Some(s) => obj["status"] = s,
            None => {
                if let Some(m) = obj.as_object_mut() {
                    m.remove("status");
                }
            }
        }
        if let Some(m) = managed {
            meta::set_path(obj, &["metadata", "managedFields"], m);
        }
        return Ok(());
    }
    if t.status {
        match cur.get("status") {
            Some(s) => obj["status"] = s.clone(),
            None => {
                if let Some(m) = obj.as_object_mut() {
                    m.remove("status");
                }
            }
        }
    }
    if let Some(g) = cur.pointer("/metadata/generation") {
        meta::set_path(obj, &["metadata", "generation"], g.clone());
    }
    if let Some(m) = cur.pointer("/metadata/managedFields") {
        meta::set_path(obj, &["metadata", "managedFields"], m.clone());
    }
    obj["apiVersion"] = json!(t.api_version());
    obj["kind"] = json!(t.kind);
    if t.kind == "Service" && meta::path_str(obj, &["spec", "clusterIP"]).is_none_or(str::is_empty)
    {
        // An allocated cluster IP survives updates that leave it out.
        for k in ["clusterIP", "clusterIPs"] {
            if let Some(v) = meta::path(cur, &["spec", k]).cloned() {
                meta::set_path(obj, &["spec", k], v);
            }
        }
    }
    defaults::apply(rtype, obj);
    let errs = defaults::validate(rtype, obj, Some(cur));
    if !errs.is_empty() {
        return Err(ApiError::invalid(t, meta::name(cur), &errs));
    }
    Ok(())
}

/// Creates an object as a POST would. With `dry`, returns it without storing it.
pub fn create(
    state: &mut State,
    clock: &Clock,
    rtype: usize,
    ns: &str,
    mut obj: Value,
    manager: &str,
    dry: bool,
) -> Result<Value, ApiError> {
    let t = &TYPES[rtype];
    if !obj.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    if let Some(k) = obj.get("kind").and_then(Value::as_str) {
        if k != t.kind {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({}) does not match the expected API version ({})",
                obj.get("apiVersion").and_then(Value::as_str).unwrap_or(""),
                t.api_version()
            )));
        }
    }
    obj["apiVersion"] = json!(t.api_version());
    obj["kind"] = json!(t.kind);
    if t.namespaced {
        let body_ns = meta::namespace(&obj).to_string();
        if !body_ns.is_empty() && body_ns != ns {
            return Err(ApiError::bad_request("the namespace of the provided object does not match the namespace sent on the request"));
        }
        meta::set_path(&mut obj, &["metadata", "namespace"], json!(ns));
        match state.store.get(resources::NAMESPACES, "", ns) {
            None => return Err(ApiError::not_found(&TYPES[resources::NAMESPACES], ns)),
            Some(n) if meta::path_str(n, &["status", "phase"]) == Some("Terminating") => {
                return Err(ApiError::new(403, "Forbidden", format!(
                    "{} \"{}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                    t.qualified(), meta::name(&obj))));
            }
            Some(_) => {}
        }
    } else if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("namespace");
    }
    if meta::name(&obj).is_empty() {
        match meta::path_str(&obj, &["metadata", "generateName"]) {
            Some(g) if !g.is_empty() => {
                let n = format!("{g}{}", meta::random_suffix(5));
                meta::set_path(&mut obj, &["metadata", "name"], json!(n));
            }
            _ => {
                return Err(ApiError::invalid(
                    t,
                    "",
                    &[(
                        "metadata.name".into(),
                        "Required value: name or generateName is required".into(),
                    )],
                ));
            }
        }
    }
    let name = meta::name(&obj).to_string();
    if state.store.get(rtype, ns, &name).is_some() {
        return Err(ApiError::already_exists(t, &name));
    }
    let md = meta::path_mut(&mut obj, &["metadata"]);
    if let Some(m) = md.as_object_mut() {
        m.insert("uid".into(), json!(meta::new_uid()));
        m.insert("creationTimestamp".into(), json!(clock.now_rfc3339()));
        m.remove("resourceVersion");
        m.remove("deletionTimestamp");
        m.remove("managedFields");
        if t.generation {
            m.insert("generation".into(), json!(1));
        } else {
            m.remove("generation");
        }
    }
    if t.status && rtype != resources::NAMESPACES && rtype != resources::NODES {
        if let Some(m) = obj.as_object_mut() {
            m.remove("status");
        }
    }
    if rtype == resources::PODS {
        obj["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
    }
    defaults::apply(rtype, &mut obj);
    let errs = defaults::validate(rtype, &obj, None);
    if !errs.is_empty() {
        return Err(ApiError::invalid(t, &name, &errs));
    }
    record_update(&mut obj, None, manager, t, &clock.now_rfc3339(), None);
    if dry {
        return Ok(obj);
    }
    Ok(state.store.create(rtype, obj))
}

/// Replaces an object as a PUT would (optimistic concurrency on `metadata.resourceVersion`).
#[allow(clippy::too_many_arguments)]
pub fn update(
    state: &mut State,
    clock: &Clock,
    rtype: usize,
    ns: &str,
    name: &str,
    mut obj: Value,
    sub: Option<&str>,
    manager: &str,
    dry: bool,
) -> Result<Value, ApiError> {
    let t = &TYPES[rtype];
    let cur = state
        .store
        .get(rtype, ns, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(t, name))?;
    if !meta::name(&obj).is_empty() && meta::name(&obj) != name {
        return Err(ApiError::bad_request(
            "the name of the object does not match the name on the URL",
        ));
    }
    let want = meta::path_str(&obj, &["metadata", "resourceVersion"])
        .unwrap_or("")
        .to_string();
    if !want.is_empty()
        && Some(want.as_str()) != meta::path_str(&cur, &["metadata", "resourceVersion"])
    {
        return Err(ApiError::conflict(t, name));
    }
    record_update(&mut obj, None, manager, t, &clock.now_rfc3339(), None);
    for k in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "resourceVersion",
    ] {
        match cur.pointer(&format!("/metadata/{k}")) {
            Some(v) => meta::set_path(&mut obj, &["metadata", k], v.clone()),
            None => {
                if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove(k);
                }
            }
        }
    }
    prepare_update(rtype, &cur, &mut obj, sub)?;
    record_update(&mut obj, Some(&cur), manager, t, &clock.now_rfc3339(), sub);
    if dry {
        return Ok(obj);
    }
    Ok(state.store.update(rtype, obj))
}

/// Creates the object, or merges it into the existing one as server-side apply does.
pub fn apply_object(
    state: &mut State,
    clock: &Clock,
    rtype: usize,
    mut obj: Value,
    manager: &str,
) -> Result<Value, ApiError> {
    let t = &TYPES[rtype];
    let ns = if t.namespaced {
        let ns = meta::namespace(&obj);
        if ns.is_empty() {
            "default".to_string()
        } else {
            ns.to_string()
        }
    } else {
        String::new()
    };
    if t.namespaced {
        meta::set_path(&mut obj, &["metadata", "namespace"], json!(ns));
    }
    let name = meta::name(&obj).to_string();
    match state.store.get(rtype, &ns, &name).cloned() {
        None => {
            let applied = fields::of(&obj);
            let mut created = create(state, clock, rtype, &ns, obj, manager, true)?;
            meta::set_path(&mut created, &["metadata", "managedFields"], json!([]));
            record_apply(
                &mut created,
                manager,
                t,
                &clock.now_rfc3339(),
                applied,
                &json!({}),
            );
            Ok(state.store.create(rtype, created))
        }
        Some(cur) => {
            let (merged, ownership) = server_side_apply(&cur, &obj, manager, true)?;
            write_patched(
                state, clock, rtype, &cur, merged, None, manager, ownership, false,
            )
        }
    }
}

/// Removes the owner references to `uid`, so the garbage collector leaves the dependents
/// alone (`propagationPolicy: Orphan`).
fn orphan_dependents(state: &mut State, uid: &str) {
    if uid.is_empty() {
        return;
    }
    for (t, ns, name) in state.store.all_keys() {
        let Some(obj) = state.store.get(t, &ns, &name) else {
            continue;
        };
        let Some(refs) = obj
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
        else {
            continue;
        };
        if !refs.iter().any(|r| r["uid"] == uid) {
            continue;
        }
        let mut obj = obj.clone();
        let kept: Vec<Value> = refs.iter().filter(|r| r["uid"] != uid).cloned().collect();
        if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            if kept.is_empty() {
                m.remove("ownerReferences");
            } else {
                m.insert("ownerReferences".into(), Value::Array(kept));
            }
        }
        state.store.update(t, obj);
    }
}

/// Deletes an object. Deleting a namespace deletes what it holds.
pub fn delete(state: &mut State, rtype: usize, ns: &str, name: &str) -> Result<Value, ApiError> {
    let t = &TYPES[rtype];
    let obj = state
        .store
        .delete(rtype, ns, name)
        .ok_or_else(|| ApiError::not_found(t, name))?;
    if rtype == resources::NAMESPACES {
        for (ty, ons, oname) in state.store.all_keys() {
            if ons == name && TYPES[ty].namespaced {
                state.store.delete(ty, &ons, &oname);
            }
        }
    }
    Ok(obj)
}

/// How a write changes field ownership.
enum Ownership {
    /// The writer owns what it changed; nobody else owns that any more.
    Update,
    /// The applier owns exactly `applied`; the `taken` fields (forced conflicts) leave their
    /// other owners.
    Apply { applied: Value, taken: Value },
}

fn entries_of(obj: &Value) -> Vec<Value> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn is_entry(e: &Value, manager: &str, operation: &str, sub: Option<&str>) -> bool {
    e["manager"] == manager
        && e["operation"] == operation
        && e.get("subresource").and_then(Value::as_str) == sub
}

fn new_entry(
    manager: &str,
    operation: &str,
    t: &ResourceType,
    time: &str,
    fields: Value,
    sub: Option<&str>,
) -> Value {
    let mut entry = json!({"manager": manager, "operation": operation, "apiVersion": t.api_version(),
        "time": time, "fieldsType": "FieldsV1", "fieldsV1": fields});
    if let Some(s) = sub {
        entry["subresource"] = json!(s);
    }
    entry
}

/// Records an Update by `manager` in `metadata.managedFields`: it gains the fields it changed
/// (relative to `before`; everything when creating), which other managers lose.
fn record_update(
    obj: &mut Value,
    before: Option<&Value>,
    manager: &str,
    t: &ResourceType,
    time: &str,
    sub: Option<&str>,
) {
    let changed = match before {
        Some(b) => fields::changed(b, obj),
        None => fields::of(obj),
    };
    let mut list = entries_of(obj);
    let has_entry = list.iter().any(|e| is_entry(e, manager, "Update", sub));
    if changed.as_object().is_some_and(serde_json::Map::is_empty) && (has_entry || before.is_some())
    {
        return;
    }
    for e in list
        .iter_mut()
        .filter(|e| !is_entry(e, manager, "Update", sub))
    {
        e["fieldsV1"] = fields::subtract(&e["fieldsV1"], &changed);
    }
    match list
        .iter_mut()
        .find(|e| is_entry(e, manager, "Update", sub))
    {
        Some(e) => {
            let all = fields::union(&e["fieldsV1"], &changed);
            *e = new_entry(manager, "Update", t, time, all, sub);
        }
        None => list.push(new_entry(manager, "Update", t, time, changed, sub)),
    }
    list.retain(|e| e["fieldsV1"].as_object().is_some_and(|m| !m.is_empty()));
    meta::set_path(obj, &["metadata", "managedFields"], Value::Array(list));
}

/// Records an Apply by `manager`.
fn record_apply(
    obj: &mut Value,
    manager: &str,
    t: &ResourceType,
    time: &str,
    applied: Value,
    taken: &Value,
) {
    let mut list = entries_of(obj);
    for e in list
        .iter_mut()
        .filter(|e| !is_entry(e, manager, "Apply", None))
    {
        e["fieldsV1"] = fields::subtract(&e["fieldsV1"], taken);
    }
    list.retain(|e| !is_entry(e, manager, "Apply", None));
    list.push(new_entry(manager, "Apply", t, time, applied, None));
    list.retain(|e| e["fieldsV1"].as_object().is_some_and(|m| !m.is_empty()));
    meta::set_path(obj, &["metadata", "managedFields"], Value::Array(list));
}

fn record(
    obj: &mut Value,
    before: Option<&Value>,
    manager: &str,
    t: &ResourceType,
    time: &str,
    sub: Option<&str>,
    ownership: Ownership,
) {
    match ownership {
        Ownership::Update => record_update(obj, before, manager, t, time, sub),
        Ownership::Apply { applied, taken } => record_apply(obj, manager, t, time, applied, &taken),
    }
}

/// Merges an applied configuration into the live object, as server-side apply does: fields
/// other managers own with another value are conflicts (taken over with `force`), and what
/// `manager` applied before but applies no more is removed unless another manager owns it.
fn server_side_apply(
    cur: &Value,
    applied: &Value,
    manager: &str,
    force: bool,
) -> Result<(Value, Ownership), ApiError> {
    let applied_set = fields::of(applied);
    let entries = entries_of(cur);
    let mine = |e: &Value| is_entry(e, manager, "Apply", None);
    let mut conflicts: Vec<(String, String, Vec<String>)> = Vec::new();
    for leaf in fields::leaves(&applied_set) {
        if fields::value_at(cur, &leaf) == fields::value_at(applied, &leaf) {
            continue;
        }
        for e in entries.iter().filter(|e| !mine(e)) {
            if fields::contains(&e["fieldsV1"], &leaf) {
                let m = e["manager"].as_str().unwrap_or("").to_string();
                let v = e["apiVersion"].as_str().unwrap_or("").to_string();
                conflicts.push((m, v, leaf.clone()));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(apply_conflict(&conflicts));
    }
    let mut merged =
        patch::apply_merge(cur, applied).map_err(|e| ApiError::new(422, "Invalid", e.0))?;
    if let Some(old) = entries.iter().find(|e| mine(e)) {
        let others: Vec<&Value> = entries
            .iter()
            .filter(|e| !mine(e))
            .map(|e| &e["fieldsV1"])
            .collect();
        patch::prune_fields(&mut merged, &old["fieldsV1"], &applied_set, &others);
    }
    let taken: Vec<Vec<String>> = conflicts.into_iter().map(|(_, _, p)| p).collect();
    Ok((
        merged,
        Ownership::Apply {
            applied: applied_set,
            taken: fields::from_paths(&taken),
        },
    ))
}

/// The 409 an apply gets when other managers own fields it would change.
fn apply_conflict(conflicts: &[(String, String, Vec<String>)]) -> ApiError {
    let mut groups: Vec<(&str, &str, Vec<String>)> = Vec::new();
    for (m, v, p) in conflicts {
        match groups.iter_mut().find(|(gm, gv, _)| gm == m && gv == v) {
            Some(g) => g.2.push(fields::display(p)),
            None => groups.push((m, v, vec![fields::display(p)])),
        }
    }
    let n = conflicts.len();
    let mut msg = format!(
        "Apply failed with {n} conflict{}: ",
        if n == 1 { "" } else { "s" }
    );
    let parts: Vec<String> = groups
        .iter()
        .map(|(m, v, paths)| {
            if paths.len() == 1 {
                format!("conflict with \"{m}\" using {v}: {}", paths[0])
            } else {
                format!(
                    "conflicts with \"{m}\" using {v}:\n- {}",
                    paths.join("\n- ")
                )
            }
        })
        .collect();
    msg.push_str(&parts.join("\n"));
    let mut e = ApiError::new(409, "Conflict", msg);
    e.details = Some(json!({"causes": conflicts.iter().map(|(m, v, p)| json!({
        "reason": "FieldManagerConflict", "message": format!("conflict with \"{m}\" using {v}"), "field": fields::display(p)}))
        .collect::<Vec<_>>()}));
    e
}
