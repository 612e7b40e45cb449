//! Field sets in the `FieldsV1` form (`{"f:spec": {"f:replicas": {}}}`), for
//! `metadata.managedFields`: which manager owns which fields, and server-side apply conflicts.

use serde_json::{json, Map, Value};

/// Fields that belong to the object's identity or to the server; nobody owns them.
fn skipped(parents: &[String], k: &str) -> bool {
    (parents.is_empty() && matches!(k, "apiVersion" | "kind" | "status"))
        || (parents.len() == 1
            && parents[0] == "metadata"
            && matches!(
                k,
                "name"
                    | "namespace"
                    | "uid"
                    | "resourceVersion"
                    | "creationTimestamp"
                    | "generation"
                    | "managedFields"
            ))
        || k.starts_with('$')
}

/// The key of a list whose items are identified by a field (the first of these that every
/// item has), as server-side apply keys `listType: map` lists.
fn list_key(items: &[Value]) -> Option<&'static str> {
    if items.is_empty() || !items.iter().all(Value::is_object) {
        return None;
    }
    [
        "name",
        "containerPort",
        "port",
        "mountPath",
        "type",
        "uid",
        "ip",
        "topologyKey",
        "devicePath",
    ]
    .into_iter()
    .find(|key| items.iter().all(|i| i.get(*key).is_some()))
}

fn item_key(key: &str, item: &Value) -> String {
    format!("k:{}", json!({key: item[key]}))
}

/// The set of every field present in `v`.
pub fn of(v: &Value) -> Value {
    fn walk(v: &Value, parents: &mut Vec<String>) -> Value {
        let mut out = Map::new();
        if let Value::Object(m) = v {
            for (k, x) in m {
                if skipped(parents, k) {
                    continue;
                }
                parents.push(k.clone());
                out.insert(format!("f:{k}"), child(x, parents));
                parents.pop();
            }
        }
        Value::Object(out)
    }
    fn child(x: &Value, parents: &mut Vec<String>) -> Value {
        match x {
            Value::Object(_) => walk(x, parents),
            Value::Array(items) => match list_key(items) {
                Some(key) => {
                    let mut lm = Map::new();
                    for i in items {
                        let mut item = walk(i, parents);
                        item[".".to_string()] = json!({});
                        lm.insert(item_key(key, i), item);
                    }
                    Value::Object(lm)
                }
                None => json!({}),
            },
            _ => json!({}),
        }
    }
    walk(v, &mut Vec::new())
}

/// The fields of `new` that are absent from `old` or have another value there.
pub fn changed(old: &Value, new: &Value) -> Value {
    fn walk(old: Option<&Value>, new: &Value, parents: &mut Vec<String>) -> Option<Value> {
        match (old, new) {
            (Some(Value::Object(o)), Value::Object(n)) => {
                let mut out = Map::new();
                for (k, x) in n {
                    if skipped(parents, k) {
                        continue;
                    }
                    parents.push(k.clone());
                    if let Some(c) = walk(o.get(k), x, parents) {
                        out.insert(format!("f:{k}"), c);
                    }
                    parents.pop();
                }
                (!out.is_empty()).then_some(Value::Object(out))
            }
            (Some(Value::Array(o)), Value::Array(n))
                if list_key(n).is_some() && list_key(n) == list_key(o) =>
            {
                let key = list_key(n).expect("checked");
                let mut out = Map::new();
                for item in n {
                    let before = o.iter().find(|x| x.get(key) == item.get(key));
                    let c = match before {
                        Some(b) => walk(Some(b), item, parents),
                        None => {
                            let mut all = of(item);
                            all[".".to_string()] = json!({});
                            Some(all)
                        }
                    };
                    if let Some(c) = c {
                        out.insert(item_key(key, item), c);
                    }
                }
                (!out.is_empty()).then_some(Value::Object(out))
            }
            (Some(o), n) if o == n => None,
            // A new or replaced subtree: all of it.
            (_, Value::Object(_)) | (_, Value::Array(_)) => {
                of(&json!({"x": new})).get("f:x").cloned()
            }
            _ => Some(json!({})),
        }
    }
    walk(Some(old), new, &mut Vec::new()).unwrap_or_else(|| json!({}))
}

/// Every field in either set.
pub fn union(a: &Value, b: &Value) -> Value {
    let mut out = a.as_object().cloned().unwrap_or_default();
    for (k, v) in b.as_object().into_iter().flatten() {
        let merged = match out.get(k) {
            Some(x) => union(x, v),
            None => v.clone(),
        };
        out.insert(k.clone(), merged);
    }
    Value::Object(out)
}

/// The fields of `a` that are not leaves of `b` (the members `.` of `b` are ignored).
pub fn subtract(a: &Value, b: &Value) -> Value {
    let mut out = a.as_object().cloned().unwrap_or_default();
    for (k, v) in b.as_object().into_iter().flatten() {
        if k == "." {
            continue;
        }
        let Some(x) = out.get(k).cloned() else {
            continue;
        };
        let b_children = v.as_object().is_some_and(|m| m.keys().any(|c| c != "."));
        if !b_children {
            out.remove(k);
            continue;
        }
        let had_children = x.as_object().is_some_and(|m| !m.is_empty());
        let rest = subtract(&x, v);
        if had_children && rest.as_object().is_some_and(Map::is_empty) {
            out.remove(k);
        } else {
            out.insert(k.clone(), rest);
        }
    }
    Value::Object(out)
}

/// The paths to the leaves of a set (fields without sub-fields), without `.` members.
pub fn leaves(set: &Value) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    fn walk(v: &Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        let Some(m) = v.as_object() else { return };
        let children: Vec<(&String, &Value)> = m.iter().filter(|(k, _)| *k != ".").collect();
        if children.is_empty() {
            if !path.is_empty() && !m.contains_key(".") {
                out.push(path.clone());
            }
            return;
        }
        for (k, c) in children {
            path.push(k.clone());
            walk(c, path, out);
            path.pop();
        }
    }
    walk(set, &mut Vec::new(), &mut out);
    out
}

/// Whether `path` is a field in `set`.
pub fn contains(set: &Value, path: &[String]) -> bool {
    let mut cur = set;
    for p in path {
        match cur.get(p) {
            Some(next) => cur = next,
            None => return false,
        }
    }
    true
}

/// The set holding just these paths.
pub fn from_paths(paths: &[Vec<String>]) -> Value {
    let mut out = json!({});
    for p in paths {
        let mut cur = &mut out;
        for seg in p {
            if cur.get(seg).is_none() {
                cur[seg.as_str()] = json!({});
            }
            cur = cur.get_mut(seg).expect("just inserted");
        }
    }
    out
}

/// The value at a field path of an object.
pub fn value_at<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = obj;
    for seg in path {
        if let Some(f) = seg.strip_prefix("f:") {
            cur = cur.get(f)?;
        } else if let Some(k) = seg.strip_prefix("k:") {
            let key: Map<String, Value> = serde_json::from_str(k).ok()?;
            cur = cur
                .as_array()?
                .iter()
                .find(|i| key.iter().all(|(kk, kv)| i.get(kk) == Some(kv)))?;
        } else {
            return None;
        }
    }
    Some(cur)
}

/// `.spec.template.spec.containers[name="app"].image`, as conflict messages name fields.
pub fn display(path: &[String]) -> String {
    let mut out = String::new();
    for seg in path {
        if let Some(f) = seg.strip_prefix("f:") {
            out.push('.');
            out.push_str(f);
        } else if let Some(k) = seg.strip_prefix("k:") {
            let key: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            let parts: Vec<String> = key.iter().map(|(kk, kv)| format!("{kk}={kv}")).collect();
            out.push_str(&format!("[{}]", parts.join(",")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_of_objects_key_list_items() {
        let obj = json!({"apiVersion": "v1", "metadata": {"name": "x", "labels": {"a": "1"}},
            "spec": {"containers": [{"name": "app", "image": "i:1"}], "args": ["a"]}, "status": {"x": 1}});
        assert_eq!(
            of(&obj),
            json!({"f:metadata": {"f:labels": {"f:a": {}}},
            "f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {".": {}, "f:name": {}, "f:image": {}}}, "f:args": {}}})
        );
    }

    #[test]
    fn changed_names_only_what_differs() {
        let old = json!({"spec": {"replicas": 1, "containers": [{"name": "app", "image": "i:1"}, {"name": "side", "image": "s:1"}]}});
        let new = json!({"spec": {"replicas": 1, "containers": [{"name": "app", "image": "i:2"}, {"name": "side", "image": "s:1"}, {"name": "new", "image": "n:1"}]}});
        assert_eq!(
            changed(&old, &new),
            json!({"f:spec": {"f:containers": {
            "k:{\"name\":\"app\"}": {"f:image": {}},
            "k:{\"name\":\"new\"}": {".": {}, "f:name": {}, "f:image": {}}}}})
        );
        assert_eq!(changed(&old, &old), json!({}));
    }

    #[test]
    fn set_algebra_and_paths() {
        let a = json!({"f:spec": {"f:replicas": {}, "f:containers": {"k:{\"name\":\"app\"}": {".": {}, "f:image": {}, "f:name": {}}}}});
        let b = json!({"f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {"f:image": {}}}}});
        let rest = subtract(&a, &b);
        assert_eq!(
            rest,
            json!({"f:spec": {"f:replicas": {}, "f:containers": {"k:{\"name\":\"app\"}": {".": {}, "f:name": {}}}}})
        );
        assert_eq!(union(&rest, &b), a);
        let image = vec![
            "f:spec".to_string(),
            "f:containers".into(),
            "k:{\"name\":\"app\"}".into(),
            "f:image".into(),
        ];
        assert!(leaves(&a).contains(&image));
        assert!(contains(&a, &image) && !contains(&rest, &image));
        assert_eq!(display(&image), ".spec.containers[name=\"app\"].image");
        assert_eq!(from_paths(std::slice::from_ref(&image)), b);
        let obj = json!({"spec": {"containers": [{"name": "app", "image": "i:1"}]}});
        assert_eq!(value_at(&obj, &image), Some(&json!("i:1")));
    }
}
