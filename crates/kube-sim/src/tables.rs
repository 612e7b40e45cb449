//! Server-side printing: the `meta.k8s.io/v1` Table that `kubectl get` asks for.

use crate::meta;
use crate::resources::{self, TYPES};
use serde_json::{json, Value};

/// Whether the client asked for a Table (`Accept: application/json;as=Table;...`).
pub fn wanted(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=Table"))
}

/// kubectl's short age format (`5s`, `3m10s`, `2d4h`).
pub fn age(secs: i64) -> String {
    if secs < 0 {
        return "0s".into();
    }
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86400);
    if secs < 120 {
        format!("{secs}s")
    } else if m < 10 {
        if secs % 60 == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{}s", secs % 60)
        }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 192 {
        if h % 24 == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{}h", h % 24)
        }
    } else {
        format!("{d}d")
    }
}

fn int(v: &Value, keys: &[&str]) -> i64 {
    meta::path_i64(v, keys).unwrap_or(0)
}

fn s(v: &Value, keys: &[&str]) -> String {
    meta::path_str(v, keys).unwrap_or("").to_string()
}

fn images(v: &Value) -> (String, String) {
    let cs = meta::path(v, &["spec", "template", "spec", "containers"])
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let names: Vec<&str> = cs.iter().filter_map(|c| c["name"].as_str()).collect();
    let imgs: Vec<&str> = cs.iter().filter_map(|c| c["image"].as_str()).collect();
    (names.join(","), imgs.join(","))
}

/// The STATUS column kubectl shows for a pod.
pub fn pod_status(p: &Value) -> String {
    if p.pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
    {
        return "Terminating".into();
    }
    let mut reason = s(p, &["status", "phase"]);
    for c in meta::path(p, &["status", "containerStatuses"])
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(r) = c.pointer("/state/waiting/reason").and_then(Value::as_str) {
            reason = r.to_string();
        } else if let Some(r) = c
            .pointer("/state/terminated/reason")
            .and_then(Value::as_str)
        {
            reason = r.to_string();
        }
    }
    reason
}

fn columns(rtype: usize) -> Vec<(&'static str, &'static str, u8)> {
    let mut c = vec![("Name", "string", 0)];
    c.extend(match rtype {
        resources::DEPLOYMENTS => vec![
            ("Ready", "string", 0),
            ("Up-to-date", "integer", 0),
            ("Available", "integer", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        resources::REPLICASETS => vec![
            ("Desired", "integer", 0),
            ("Current", "integer", 0),
            ("Ready", "integer", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        resources::STATEFULSETS => vec![
            ("Ready", "string", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
        ],
        resources::DAEMONSETS => vec![
            ("Desired", "integer", 0),
            ("Current", "integer", 0),
            ("Ready", "integer", 0),
            ("Up-to-date", "integer", 0),
            ("Available", "integer", 0),
            ("Node Selector", "string", 0),
            ("Age", "string", 0),
        ],
        resources::PODS => vec![
            ("Ready", "string", 0),
            ("Status", "string", 0),
            ("Restarts", "string", 0),
            ("Age", "string", 0),
            ("IP", "string", 1),
            ("Node", "string", 1),
        ],
        resources::EVENTS => vec![
            ("Last Seen", "string", 0),
            ("Type", "string", 0),
            ("Reason", "string", 0),
            ("Object", "string", 0),
            ("Message", "string", 0),
        ],
        resources::NAMESPACES => vec![("Status", "string", 0), ("Age", "string", 0)],
        resources::NODES => vec![
            ("Status", "string", 0),
            ("Roles", "string", 0),
            ("Age", "string", 0),
            ("Version", "string", 0),
        ],
        resources::CONTROLLERREVISIONS => vec![
            ("Controller", "string", 0),
            ("Revision", "integer", 0),
            ("Age", "string", 0),
        ],
        _ if TYPES[rtype].kind == "Service" => vec![
            ("Type", "string", 0),
            ("Cluster-IP", "string", 0),
            ("External-IP", "string", 0),
            ("Port(s)", "string", 0),
            ("Age", "string", 0),
        ],
        _ => vec![("Age", "string", 0)],
    });
    c
}

fn cells(rtype: usize, o: &Value, now: i64) -> Vec<Value> {
    let name = json!(meta::name(o));
    let created = meta::path_str(o, &["metadata", "creationTimestamp"])
        .and_then(meta::parse_rfc3339)
        .unwrap_or(now);
    let a = json!(age(now - created));
    let sel = meta::path(o, &["spec", "selector"])
        .map(crate::defaults::selector_string)
        .unwrap_or_default();
    let (cn, im) = images(o);
    match rtype {
        resources::DEPLOYMENTS => vec![
            name,
            json!(format!(
                "{}/{}",
                int(o, &["status", "readyReplicas"]),
                int(o, &["spec", "replicas"])
            )),
            json!(int(o, &["status", "updatedReplicas"])),
            json!(int(o, &["status", "availableReplicas"])),
            a,
            json!(cn),
            json!(im),
            json!(sel),
        ],
        resources::REPLICASETS => vec![
            name,
            json!(int(o, &["spec", "replicas"])),
            json!(int(o, &["status", "replicas"])),
            json!(int(o, &["status", "readyReplicas"])),
            a,
            json!(cn),
            json!(im),
            json!(sel),
        ],
        resources::STATEFULSETS => vec![
            name,
            json!(format!(
                "{}/{}",
                int(o, &["status", "readyReplicas"]),
                int(o, &["spec", "replicas"])
            )),
            a,
            json!(cn),
            json!(im),
        ],
        resources::DAEMONSETS => vec![
            name,
            json!(int(o, &["status", "desiredNumberScheduled"])),
            json!(int(o, &["status", "currentNumberScheduled"])),
            json!(int(o, &["status", "numberReady"])),
            json!(int(o, &["status", "updatedNumberScheduled"])),
            json!(int(o, &["status", "numberAvailable"])),
            json!("<none>"),
            a,
        ],
        resources::PODS => {
            let cs = meta::path(o, &["status", "containerStatuses"])
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let total = meta::path(o, &["spec", "containers"])
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let ready = cs.iter().filter(|c| c["ready"] == true).count();
            let restarts: i64 = cs
                .iter()
                .map(|c| c["restartCount"].as_i64().unwrap_or(0))
                .sum();
            vec![
                name,
                json!(format!("{ready}/{total}")),
                json!(pod_status(o)),
                json!(restarts.to_string()),
                a,
                json!(meta::path_str(o, &["status", "podIP"]).unwrap_or("<none>")),
                json!(meta::path_str(o, &["spec", "nodeName"]).unwrap_or("<none>")),
            ]
        }
        resources::EVENTS => {
            let last = meta::path_str(o, &["lastTimestamp"])
                .and_then(meta::parse_rfc3339)
                .unwrap_or(created);
            vec![
                name,
                json!(age(now - last)),
                json!(s(o, &["type"])),
                json!(s(o, &["reason"])),
                json!(format!(
                    "{}/{}",
                    s(o, &["involvedObject", "kind"]).to_lowercase(),
                    s(o, &["involvedObject", "name"])
                )),
                json!(s(o, &["message"])),
            ]
        }
        resources::NAMESPACES => vec![name, json!(s(o, &["status", "phase"])), a],
        resources::NODES => vec![
            name,
            json!("Ready"),
            json!("<none>"),
            a,
            json!(format!("v1.{}.0", crate::api::VERSION_MINOR)),
        ],
        resources::CONTROLLERREVISIONS => {
            let owner = meta::path(o, &["metadata", "ownerReferences", "0"])
                .cloned()
                .unwrap_or(Value::Null);
            let ctl = format!(
                "{}.{}/{}",
                s(&owner, &["kind"]).to_lowercase(),
                s(&owner, &["apiVersion"]).split('/').next().unwrap_or(""),
                s(&owner, &["name"])
            );
            vec![name, json!(ctl), json!(int(o, &["revision"])), a]
        }
        _ if TYPES[rtype].kind == "Service" => {
            let ports: Vec<String> = meta::path(o, &["spec", "ports"])
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|p| format!("{}/{}", p["port"], p["protocol"].as_str().unwrap_or("TCP")))
                .collect();
            vec![
                name,
                json!(s(o, &["spec", "type"])),
                json!(s(o, &["spec", "clusterIP"])),
                json!("<none>"),
                json!(ports.join(",")),
                a,
            ]
        }
        _ => vec![name, a],
    }
}

/// A Table of `items` with the full objects embedded (kubectl asks `includeObject=Object`).
pub fn table(rtype: usize, items: &[Value], rv: u64, now: i64) -> Value {
    let cols: Vec<Value> = columns(rtype)
        .into_iter()
        .map(|(n, t, p)| {
            let mut c =
                json!({"name": n, "type": t, "format": "", "description": "", "priority": p});
            if n == "Name" {
                c["format"] = json!("name");
            }
            c
        })
        .collect();
    let rows: Vec<Value> = items
        .iter()
        .map(|o| json!({"cells": cells(rtype, o, now), "object": o}))
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": rv.to_string()},
        "columnDefinitions": cols, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(age(5), "5s");
        assert_eq!(age(190), "3m10s");
        assert_eq!(age(3600 * 5 + 60), "5h1m");
        assert_eq!(age(86400 * 3), "3d");
    }
}
