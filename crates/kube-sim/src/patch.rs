//! The four patch flavours the apiserver accepts: strategic merge, JSON merge (RFC 7386),
//! JSON patch (RFC 6902), and the merge step of server-side apply.

use serde_json::{Map, Value};
use std::fmt;

/// A patch that cannot be applied to the object, with the reason in the apiserver's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchError(pub String);

impl fmt::Display for PatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PatchError {}

/// RFC 7386: objects merge recursively, `null` deletes, everything else replaces.
pub fn merge_patch(target: &Value, patch: &Value) -> Value {
    let Value::Object(p) = patch else {
        return patch.clone();
    };
    let mut out = match target {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    for (k, v) in p {
        if v.is_null() {
            out.remove(k);
        } else {
            let merged = merge_patch(out.get(k).unwrap_or(&Value::Null), v);
            out.insert(k.clone(), merged);
        }
    }
    Value::Object(out)
}

/// RFC 6902 JSON patch: `add`, `remove`, `replace`, `move`, `copy`, `test`.
///
/// # Errors
/// When the document is not an array of operations, or an operation does not apply.
pub fn json_patch(target: &Value, patch: &Value) -> Result<Value, PatchError> {
    let ops = patch
        .as_array()
        .ok_or_else(|| PatchError("json patch must be an array of operations".into()))?;
    let mut doc = target.clone();
    for op in ops {
        let kind = op.get("op").and_then(Value::as_str).unwrap_or("");
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| PatchError(format!("operation {op} has no path")))?;
        match kind {
            "add" => add(&mut doc, path, value_of(op)?.clone())?,
            "remove" => {
                remove(&mut doc, path)?;
            }
            "replace" => {
                let slot = doc.pointer_mut(path).ok_or_else(|| {
                    PatchError(format!(
                        "replace operation does not apply: doc is missing path: {path}"
                    ))
                })?;
                *slot = value_of(op)?.clone();
            }
            "move" | "copy" => {
                let from = op
                    .get("from")
                    .and_then(Value::as_str)
                    .ok_or_else(|| PatchError(format!("{kind} operation has no from")))?;
                let value = if kind == "move" {
                    remove(&mut doc, from)?
                } else {
                    doc.pointer(from).cloned().ok_or_else(|| {
                        PatchError(format!(
                            "copy operation does not apply: doc is missing from path: {from}"
                        ))
                    })?
                };
                add(&mut doc, path, value)?;
            }
            "test" => {
                if doc.pointer(path) != Some(value_of(op)?) {
                    return Err(PatchError(format!("testing value {path} failed")));
                }
            }
            other => return Err(PatchError(format!("Unexpected kind: {other}"))),
        }
    }
    Ok(doc)
}

fn value_of(op: &Value) -> Result<&Value, PatchError> {
    op.get("value")
        .ok_or_else(|| PatchError(format!("operation {op} has no value")))
}

fn split_pointer(path: &str) -> Result<(String, String), PatchError> {
    let idx = path
        .rfind('/')
        .ok_or_else(|| PatchError(format!("invalid JSON pointer: {path:?}")))?;
    let last = path[idx + 1..].replace("~1", "/").replace("~0", "~");
    Ok((path[..idx].to_string(), last))
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), PatchError> {
    if path.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (parent, last) = split_pointer(path)?;
    let missing = || {
        PatchError(format!(
            "add operation does not apply: doc is missing path: {path:?}"
        ))
    };
    match doc.pointer_mut(&parent).ok_or_else(missing)? {
        Value::Object(m) => {
            m.insert(last, value);
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(value);
            } else {
                let i: usize = last.parse().map_err(|_| missing())?;
                if i > a.len() {
                    return Err(PatchError(format!(
                        "add operation does not apply: index {i} out of bounds"
                    )));
                }
                a.insert(i, value);
            }
        }
        _ => return Err(missing()),
    }
    Ok(())
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, PatchError> {
    let (parent, last) = split_pointer(path)?;
    let missing = || {
        PatchError(format!(
            "remove operation does not apply: doc is missing path: {path:?}"
        ))
    };
    match doc.pointer_mut(&parent).ok_or_else(missing)? {
        Value::Object(m) => m.remove(&last).ok_or_else(missing),
        Value::Array(a) => {
            let i: usize = last.parse().map_err(|_| missing())?;
            if i >= a.len() {
                return Err(missing());
            }
            Ok(a.remove(i))
        }
        _ => Err(missing()),
    }
}

/// The merge key of a list field, as the Kubernetes API types declare it
/// (`patchMergeKey`), or `None` for lists that a patch replaces whole.
/// `parents` are the field names above the list, outermost first.
fn merge_key(parents: &[String], field: &str) -> Option<&'static str> {
    let parent = parents.last().map(String::as_str).unwrap_or("");
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "resourceClaims" => Some("name"),
        "ports"
            if matches!(
                parent,
                "containers" | "initContainers" | "ephemeralContainers"
            ) =>
        {
            Some("containerPort")
        }
        "ports" => Some("port"),
        "volumeMounts" => Some("mountPath"),
        "volumeDevices" => Some("devicePath"),
        "hostAliases" => Some("ip"),
        "topologySpreadConstraints" => Some("topologyKey"),
        "conditions" => Some("type"),
        "ownerReferences" => Some("uid"),
        _ => None,
    }
}

/// Lists of scalars whose patch strategy is `merge` (union instead of replace).
fn merges_scalars(field: &str) -> bool {
    field == "finalizers"
}

/// Applies a strategic-merge patch (`application/strategic-merge-patch+json`): maps merge,
/// lists with a merge key merge item by item, `null` deletes, and the directives `$patch`
/// (`replace`, `delete`, `merge`), `$retainKeys`, `$setElementOrder/<list>` and
/// `$deleteFromPrimitiveList/<list>` are honoured.
///
/// # Errors
/// When the patch is not an object or a directive is malformed.
pub fn strategic_merge(original: &Value, patch: &Value) -> Result<Value, PatchError> {
    let Value::Object(p) = patch else {
        return Err(PatchError(
            "strategic merge patch must be a JSON object".into(),
        ));
    };
    let orig = match original {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    Ok(merge_map(orig, p, &mut Vec::new())?
        .map(Value::Object)
        .unwrap_or(Value::Object(Map::new())))
}

/// Merges `patch` into `orig`; `None` means the map itself is deleted (`$patch: delete`).
fn merge_map(
    mut orig: Map<String, Value>,
    patch: &Map<String, Value>,
    parents: &mut Vec<String>,
) -> Result<Option<Map<String, Value>>, PatchError> {
    match patch.get("$patch").and_then(Value::as_str) {
        Some("replace") => return Ok(Some(clean_map(patch))),
        Some("delete") => return Ok(None),
        Some("merge") | None => {}
        Some(other) => return Err(PatchError(format!("unknown patch type: {other}"))),
    }
    for (k, v) in patch {
        if k.starts_with('$') {
            continue;
        }
        if v.is_null() {
            orig.remove(k);
            continue;
        }
        let merged = match (orig.remove(k), v) {
            (Some(Value::Object(o)), Value::Object(pm)) => {
                parents.push(k.clone());
                let r = merge_map(o, pm, parents)?;
                parents.pop();
                match r {
                    Some(m) => Value::Object(m),
                    None => continue,
                }
            }
            (Some(Value::Array(o)), Value::Array(pl)) => {
                let order = patch.get(&format!("$setElementOrder/{k}"));
                merge_list(o, pl, parents, k, order)?
            }
            (_, v) => clean(v),
        };
        orig.insert(k.clone(), merged);
    }
    for (k, v) in patch {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Some(del)) = (orig.get_mut(field), v.as_array()) {
                list.retain(|x| !del.contains(x));
            }
        } else if let Some(field) = k.strip_prefix("$setElementOrder/") {
            if !patch.contains_key(field) {
                if let (Some(Value::Array(list)), Some(order)) = (orig.get_mut(field), v.as_array())
                {
                    let key = merge_key(parents, field);
                    reorder(list, order, key);
                }
            }
        }
    }
    if let Some(keep) = patch.get("$retainKeys") {
        let keep: Vec<&str> = keep
            .as_array()
            .ok_or_else(|| PatchError("$retainKeys must be a list".into()))?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        orig.retain(|k, _| keep.contains(&k.as_str()));
    }
    Ok(Some(orig))
}

fn merge_list(
    mut orig: Vec<Value>,
    patch: &[Value],
    parents: &mut Vec<String>,
    field: &str,
    order: Option<&Value>,
) -> Result<Value, PatchError> {
    let replace = patch
        .iter()
        .any(|x| x.get("$patch").and_then(Value::as_str) == Some("replace"));
    if replace {
        return Ok(Value::Array(
            patch
                .iter()
                .filter(|x| x.get("$patch").is_none())
                .map(clean)
                .collect(),
        ));
    }
    if let Some(key) = merge_key(parents, field) {
        parents.push(field.to_string());
        for item in patch {
            let Value::Object(pm) = item else {
                parents.pop();
                return Err(PatchError(format!("list {field} must hold objects")));
            };
            let kv = pm.get(key);
            let pos = orig.iter().position(|o| o.get(key) == kv && kv.is_some());
            let delete = pm.get("$patch").and_then(Value::as_str) == Some("delete");
            match (pos, delete) {
                (Some(i), true) => {
                    orig.remove(i);
                }
                (None, true) => {}
                (Some(i), false) => {
                    let o = match orig[i].take() {
                        Value::Object(m) => m,
                        _ => Map::new(),
                    };
                    match merge_map(o, pm, parents)? {
                        Some(m) => orig[i] = Value::Object(m),
                        None => {
                            orig.remove(i);
                        }
                    }
                }
                (None, false) => orig.push(Value::Object(clean_map(pm))),
            }
        }
        parents.pop();
        if let Some(Value::Array(order)) = order {
            reorder(&mut orig, order, Some(key));
        }
        Ok(Value::Array(orig))
    } else if merges_scalars(field) {
        for item in patch {
            if !orig.contains(item) {
                orig.push(item.clone());
            }
        }
        Ok(Value::Array(orig))
    } else {
        Ok(Value::Array(patch.iter().map(clean).collect()))
    }
}

/// Orders `list` as `order` says (items named there first, in that order; the rest after).
fn reorder(list: &mut [Value], order: &[Value], key: Option<&str>) {
    let rank = |x: &Value| {
        let id = match key {
            Some(k) => x.get(k),
            None => Some(x),
        };
        order
            .iter()
            .position(|o| match key {
                Some(k) => o.get(k) == id,
                None => Some(o) == id,
            })
            .unwrap_or(usize::MAX)
    };
    list.sort_by_key(rank);
}

/// The value with patch directives removed (for values inserted where nothing was).
fn clean(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(clean_map(m)),
        Value::Array(a) => Value::Array(
            a.iter()
                .filter(|x| {
                    !matches!(
                        x.get("$patch").and_then(Value::as_str),
                        Some("delete" | "replace")
                    )
                })
                .map(clean)
                .collect(),
        ),
        other => other.clone(),
    }
}

fn clean_map(m: &Map<String, Value>) -> Map<String, Value> {
    m.iter()
        .filter(|(k, v)| !k.starts_with('$') && !v.is_null())
        .map(|(k, v)| (k.clone(), clean(v)))
        .collect()
}

/// The merge step of server-side apply, simplified: the applied configuration is merged into
/// the live object with strategic-merge rules (so `containers` merge by name). Removing what
/// a manager stopped applying is [`prune_fields`]'s job.
///
/// # Errors
/// When the applied configuration is not an object.
pub fn apply_merge(live: &Value, applied: &Value) -> Result<Value, PatchError> {
    strategic_merge(live, applied)
}

/// Removes from `obj` the fields in the `FieldsV1` set `old` that are neither in `new` nor
/// in any of `others` (what server-side apply does when a manager stops applying a field).
pub fn prune_fields(obj: &mut Value, old: &Value, new: &Value, others: &[&Value]) {
    let Some(old) = old.as_object() else { return };
    for (k, sub_old) in old {
        if k == "." {
            continue;
        }
        let sub_new = new.get(k).unwrap_or(&Value::Null);
        let sub_others: Vec<&Value> = others.iter().filter_map(|o| o.get(k)).collect();
        let keep = !sub_new.is_null() || !sub_others.is_empty();
        if let Some(field) = k.strip_prefix("f:") {
            let Some(m) = obj.as_object_mut() else {
                continue;
            };
            if !keep {
                m.remove(field);
            } else if let Some(child) = m.get_mut(field) {
                prune_fields(child, sub_old, sub_new, &sub_others);
            }
        } else if let Some(key) = k.strip_prefix("k:") {
            let Ok(Value::Object(key)) = serde_json::from_str::<Value>(key) else {
                continue;
            };
            let Some(list) = obj.as_array_mut() else {
                continue;
            };
            let matches = |item: &Value| key.iter().all(|(kk, kv)| item.get(kk) == Some(kv));
            if !keep {
                list.retain(|item| !matches(item));
            } else if let Some(item) = list.iter_mut().find(|i| matches(i)) {
                prune_fields(item, sub_old, sub_new, &sub_others);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> Value {
        json!({
            "metadata": {"name": "web", "labels": {"app": "web", "tier": "front"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [
                {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                 "ports": [{"containerPort": 80, "name": "http"}]},
                {"name": "sidecar", "image": "side:1"}
            ]}}}
        })
    }

    #[test]
    fn strategic_merge_merges_containers_by_name() {
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}],
            "containers": [{"name": "app", "image": "app@sha256:abc"}]}}}});
        let out = strategic_merge(&deployment(), &patch).unwrap();
        let cs = out
            .pointer("/spec/template/spec/containers")
            .unwrap()
            .as_array()
            .unwrap();
        assert_eq!(cs.len(), 2);
        assert_eq!(cs[0]["image"], "app@sha256:abc");
        assert_eq!(
            cs[0]["env"].as_array().unwrap().len(),
            2,
            "untouched fields stay"
        );
        assert_eq!(cs[1]["image"], "side:1");
    }

    #[test]
    fn strategic_merge_merges_env_and_ports_by_their_keys() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "app",
            "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}],
            "ports": [{"containerPort": 80, "protocol": "TCP"}]}]}}}});
        let out = strategic_merge(&deployment(), &patch).unwrap();
        let c = &out.pointer("/spec/template/spec/containers/0").unwrap();
        assert_eq!(
            c["env"],
            json!([{"name":"A","value":"1"},{"name":"B","value":"3"},{"name":"C","value":"4"}])
        );
        assert_eq!(
            c["ports"],
            json!([{"containerPort":80,"name":"http","protocol":"TCP"}])
        );
    }

    #[test]
    fn strategic_merge_honours_delete_and_replace_directives() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "sidecar", "$patch": "delete"},
            {"name": "app", "env": [{"name": "A", "$patch": "delete"}]}]}}}});
        let out = strategic_merge(&deployment(), &patch).unwrap();
        let cs = out.pointer("/spec/template/spec/containers").unwrap();
        assert_eq!(cs.as_array().unwrap().len(), 1);
        assert_eq!(cs[0]["env"], json!([{"name": "B", "value": "2"}]));

        // What `kubectl rollout undo` sends for a StatefulSet or DaemonSet.
        let patch = json!({"spec": {"template": {"$patch": "replace",
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "image": "app:0"}]}}}});
        let out = strategic_merge(&deployment(), &patch).unwrap();
        assert_eq!(
            out["spec"]["template"],
            json!({"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "image": "app:0"}]}})
        );
        assert_eq!(out["spec"]["replicas"], 2);

        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"$patch": "replace"}, {"name": "only", "image": "o:1"}]}}}});
        let out = strategic_merge(&deployment(), &patch).unwrap();
        assert_eq!(
            out.pointer("/spec/template/spec/containers").unwrap(),
            &json!([{"name": "only", "image": "o:1"}])
        );
    }

    #[test]
    fn strategic_merge_null_deletes_and_retain_keys_prunes() {
        let orig = json!({"metadata": {"labels": {"a": "1", "b": "2"}},
            "spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
        let patch = json!({"metadata": {"labels": {"a": null}},
            "spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
        let out = strategic_merge(&orig, &patch).unwrap();
        assert_eq!(
            out,
            json!({"metadata": {"labels": {"b": "2"}}, "spec": {"strategy": {"type": "Recreate"}}})
        );
    }

    #[test]
    fn strategic_merge_primitive_lists() {
        let orig = json!({"metadata": {"finalizers": ["a", "b"]}, "spec": {"args": ["x", "y"]}});
        let patch = json!({"metadata": {"finalizers": ["c"], "$deleteFromPrimitiveList/finalizers": ["a"]},
            "spec": {"args": ["z"]}});
        let out = strategic_merge(&orig, &patch).unwrap();
        assert_eq!(
            out,
            json!({"metadata": {"finalizers": ["b", "c"]}, "spec": {"args": ["z"]}})
        );
    }

    #[test]
    fn service_ports_merge_by_port() {
        let orig = json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}});
        let patch = json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}});
        let out = strategic_merge(&orig, &patch).unwrap();
        assert_eq!(
            out["spec"]["ports"],
            json!([{"port": 80, "targetPort": 9090}, {"port": 443}])
        );
    }

    #[test]
    fn merge_patch_follows_rfc7386() {
        let orig = json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]});
        let patch = json!({"a": "z", "c": {"f": null}, "l": [3]});
        assert_eq!(
            merge_patch(&orig, &patch),
            json!({"a": "z", "c": {"d": "e"}, "l": [3]})
        );
        assert_eq!(merge_patch(&json!({"a": 1}), &json!(null)), json!(null));
    }

    #[test]
    fn json_patch_follows_rfc6902() {
        let orig = json!({"metadata": {"annotations": {"a/b": "1"}}, "list": [1, 2, 3]});
        let patch = json!([
            {"op": "test", "path": "/metadata/annotations/a~1b", "value": "1"},
            {"op": "replace", "path": "/metadata/annotations", "value": {"x": "y"}},
            {"op": "add", "path": "/list/1", "value": 9},
            {"op": "add", "path": "/list/-", "value": 4},
            {"op": "remove", "path": "/list/0"},
            {"op": "copy", "from": "/list", "path": "/copy"},
            {"op": "move", "from": "/copy", "path": "/moved"}
        ]);
        let out = json_patch(&orig, &patch).unwrap();
        assert_eq!(
            out,
            json!({"metadata": {"annotations": {"x": "y"}}, "list": [9, 2, 3, 4], "moved": [9, 2, 3, 4]})
        );
    }

    #[test]
    fn json_patch_reports_what_does_not_apply() {
        let err = json_patch(
            &json!({}),
            &json!([{"op": "replace", "path": "/spec/x", "value": 1}]),
        )
        .unwrap_err();
        assert!(err.0.contains("missing path"), "{err}");
        let err = json_patch(
            &json!({"a": 1}),
            &json!([{"op": "test", "path": "/a", "value": 2}]),
        )
        .unwrap_err();
        assert!(err.0.contains("testing value"), "{err}");
        assert!(json_patch(&json!({}), &json!({"op": "add"})).is_err());
    }

    #[test]
    fn prune_fields_removes_what_only_this_manager_applied() {
        let mut obj = json!({"metadata": {"labels": {"a": "1", "b": "2", "c": "3"}},
            "spec": {"containers": [{"name": "app", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]}]}});
        let old = json!({"f:metadata": {"f:labels": {"f:a": {}, "f:b": {}, "f:c": {}}},
            "f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {".": {}, "f:env": {
                "k:{\"name\":\"X\"}": {".": {}, "f:value": {}}, "k:{\"name\":\"Y\"}": {".": {}, "f:value": {}}}}}}});
        let new = json!({"f:metadata": {"f:labels": {"f:a": {}}},
            "f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {".": {}, "f:env": {"k:{\"name\":\"X\"}": {".": {}, "f:value": {}}}}}}});
        let other = json!({"f:metadata": {"f:labels": {"f:c": {}}}});
        prune_fields(&mut obj, &old, &new, &[&other]);
        assert_eq!(
            obj,
            json!({"metadata": {"labels": {"a": "1", "c": "3"}},
            "spec": {"containers": [{"name": "app", "env": [{"name": "X", "value": "1"}]}]}})
        );
    }
}
