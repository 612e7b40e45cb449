//! A skeletal OpenAPI v3: enough for kubectl to see that PATCH takes `fieldValidation`
//! (so it validates on the server instead of downloading schemas).

use crate::resources::TYPES;
use serde_json::{json, Map, Value};

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `/openapi/v3`: the group-versions and where their documents are.
pub fn root() -> Value {
    let mut paths = Map::new();
    for t in TYPES {
        let p = gv_path(t.group, t.version);
        paths.insert(p.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash=kube-sim-{}", env!("CARGO_PKG_VERSION"))}));
    }
    json!({"paths": paths})
}

/// `/openapi/v3/api/v1` or `/openapi/v3/apis/GROUP/VERSION`.
pub fn group_version(gv: &str) -> Option<Value> {
    let mut paths = Map::new();
    let query = |names: &[&str]| -> Vec<Value> {
        names.iter().map(|n| json!({"name": n, "in": "query", "schema": {"type": "string", "uniqueItems": true}})).collect()
    };
    let mut found = false;
    for t in TYPES.iter().filter(|t| gv_path(t.group, t.version) == gv) {
        found = true;
        let gvk = json!({"group": t.group, "version": t.version, "kind": t.kind});
        let base = if t.namespaced {
            format!("/{gv}/namespaces/{{namespace}}/{}", t.plural)
        } else {
            format!("/{gv}/{}", t.plural)
        };
        let op = |action: &str, params: Vec<Value>| {
            json!({"x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk, "parameters": params,
                "responses": {"200": {"description": "OK"}}})
        };
        paths.insert(
            base.clone(),
            json!({
                "get": op("list", query(&["labelSelector", "fieldSelector", "watch", "resourceVersion", "limit", "continue", "timeoutSeconds"])),
                "post": op("post", query(&["dryRun", "fieldManager", "fieldValidation"])),
            }),
        );
        let mut patch = op(
            "patch",
            query(&["dryRun", "fieldManager", "fieldValidation", "force"]),
        );
        patch["requestBody"] = json!({"content": {
            "application/apply-patch+yaml": {"schema": {"type": "object"}},
            "application/json-patch+json": {"schema": {"type": "object"}},
            "application/merge-patch+json": {"schema": {"type": "object"}},
            "application/strategic-merge-patch+json": {"schema": {"type": "object"}},
        }});
        paths.insert(
            format!("{base}/{{name}}"),
            json!({
                "get": op("get", vec![]),
                "put": op("put", query(&["dryRun", "fieldManager", "fieldValidation"])),
                "patch": patch,
                "delete": op("delete", query(&["dryRun", "propagationPolicy"])),
            }),
        );
    }
    found.then(|| {
        json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": format!("v1.{}.0", crate::api::VERSION_MINOR)},
            "paths": paths, "components": {"schemas": {}}})
    })
}
