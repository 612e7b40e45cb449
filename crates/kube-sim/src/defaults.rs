//! What the apiserver fills in and checks before storing: defaults and a few validations.

use crate::meta;
use crate::resources::{self, TYPES};
use serde_json::{json, Map, Value};

fn set_default(obj: &mut Map<String, Value>, key: &str, value: Value) {
    if obj.get(key).is_none_or(Value::is_null) {
        obj.insert(key.to_string(), value);
    }
}

fn object_at<'a>(v: &'a mut Value, keys: &[&str]) -> &'a mut Map<String, Value> {
    let slot = meta::path_mut(v, keys);
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut().expect("just made an object")
}

/// `Always` for `:latest` or untagged images, `IfNotPresent` otherwise (as the apiserver does).
fn pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

/// Pod spec defaults (used for pods and pod templates).
pub fn pod_spec(spec: &mut Value) {
    let Some(s) = spec.as_object_mut() else {
        return;
    };
    set_default(s, "restartPolicy", json!("Always"));
    set_default(s, "terminationGracePeriodSeconds", json!(30));
    set_default(s, "dnsPolicy", json!("ClusterFirst"));
    set_default(s, "securityContext", json!({}));
    set_default(s, "schedulerName", json!("default-scheduler"));
    for list in ["containers", "initContainers"] {
        for c in s
            .get_mut(list)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            let Some(c) = c.as_object_mut() else { continue };
            let image = c
                .get("image")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            set_default(c, "imagePullPolicy", json!(pull_policy(&image)));
            set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
            set_default(c, "terminationMessagePolicy", json!("File"));
            set_default(c, "resources", json!({}));
            for p in c
                .get_mut("ports")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                if let Some(p) = p.as_object_mut() {
                    set_default(p, "protocol", json!("TCP"));
                }
            }
        }
    }
}

fn template(obj: &mut Value) {
    let md = object_at(obj, &["spec", "template", "metadata"]);
    set_default(md, "creationTimestamp", Value::Null);
    pod_spec(meta::path_mut(obj, &["spec", "template", "spec"]));
}

/// Fills in what the apiserver defaults for each type.
pub fn apply(rtype: usize, obj: &mut Value) {
    let spec_missing = obj.get("spec").is_none_or(Value::is_null);
    match rtype {
        resources::DEPLOYMENTS => {
            let s = object_at(obj, &["spec"]);
            set_default(s, "replicas", json!(1));
            set_default(s, "revisionHistoryLimit", json!(10));
            set_default(s, "progressDeadlineSeconds", json!(600));
            set_default(s, "strategy", json!({"type": "RollingUpdate"}));
            let st = object_at(obj, &["spec", "strategy"]);
            set_default(st, "type", json!("RollingUpdate"));
            if st.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                set_default(st, "rollingUpdate", json!({}));
                let ru = object_at(obj, &["spec", "strategy", "rollingUpdate"]);
                set_default(ru, "maxSurge", json!("25%"));
                set_default(ru, "maxUnavailable", json!("25%"));
            }
            template(obj);
        }
        resources::REPLICASETS => {
            set_default(object_at(obj, &["spec"]), "replicas", json!(1));
            template(obj);
        }
        resources::STATEFULSETS => {
            let s = object_at(obj, &["spec"]);
            set_default(s, "replicas", json!(1));
            set_default(s, "revisionHistoryLimit", json!(10));
            set_default(s, "podManagementPolicy", json!("OrderedReady"));
            set_default(s, "updateStrategy", json!({"type": "RollingUpdate"}));
            set_default(
                s,
                "persistentVolumeClaimRetentionPolicy",
                json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
            );
            let st = object_at(obj, &["spec", "updateStrategy"]);
            if st.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                set_default(st, "rollingUpdate", json!({"partition": 0}));
            }
            template(obj);
        }
        resources::DAEMONSETS => {
            let s = object_at(obj, &["spec"]);
            set_default(s, "revisionHistoryLimit", json!(10));
            set_default(s, "updateStrategy", json!({"type": "RollingUpdate"}));
            let st = object_at(obj, &["spec", "updateStrategy"]);
            if st.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                set_default(
                    st,
                    "rollingUpdate",
                    json!({"maxUnavailable": 1, "maxSurge": 0}),
                );
            }
            template(obj);
        }
        resources::PODS => pod_spec(meta::path_mut(obj, &["spec"])),
        resources::NAMESPACES => {
            set_default(
                object_at(obj, &["spec"]),
                "finalizers",
                json!(["kubernetes"]),
            );
            let st = object_at(obj, &["status"]);
            set_default(st, "phase", json!("Active"));
        }
        _ if TYPES[rtype].kind == "Service" => {
            let s = object_at(obj, &["spec"]);
            set_default(s, "type", json!("ClusterIP"));
            set_default(s, "sessionAffinity", json!("None"));
            if s.get("clusterIP").is_none_or(Value::is_null) {
                let ip = format!(
                    "10.96.{}.{}",
                    meta::random_u64() % 250 + 1,
                    meta::random_u64() % 250 + 2
                );
                s.insert("clusterIP".into(), json!(ip));
                s.insert("clusterIPs".into(), json!([ip]));
            }
            set_default(s, "ipFamilies", json!(["IPv4"]));
            set_default(s, "ipFamilyPolicy", json!("SingleStack"));
            set_default(s, "internalTrafficPolicy", json!("Cluster"));
            for p in s
                .get_mut("ports")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                if let Some(p) = p.as_object_mut() {
                    set_default(p, "protocol", json!("TCP"));
                    if let Some(port) = p.get("port").cloned() {
                        set_default(p, "targetPort", port);
                    }
                }
            }
            set_default(object_at(obj, &["status"]), "loadBalancer", json!({}));
        }
        _ => {
            if spec_missing {
                if let Some(m) = obj.as_object_mut() {
                    if m.get("spec").is_some_and(Value::is_null) {
                        m.remove("spec");
                    }
                }
            }
        }
    }
}

/// The field errors the apiserver would report, as `(field, message)`.
pub fn validate(rtype: usize, obj: &Value, old: Option<&Value>) -> Vec<(String, String)> {
    let mut errs = Vec::new();
    let workload = matches!(
        rtype,
        resources::DEPLOYMENTS
            | resources::REPLICASETS
            | resources::STATEFULSETS
            | resources::DAEMONSETS
    );
    let mut containers = |prefix: &str, spec: Option<&Value>| {
        let list = spec
            .and_then(|s| s.get("containers"))
            .and_then(Value::as_array);
        match list {
            None => errs.push((format!("{prefix}.containers"), "Required value".to_string())),
            Some(cs) => {
                for (i, c) in cs.iter().enumerate() {
                    if c.get("name")
                        .and_then(Value::as_str)
                        .is_none_or(str::is_empty)
                    {
                        errs.push((
                            format!("{prefix}.containers[{i}].name"),
                            "Required value".into(),
                        ));
                    }
                    if c.get("image")
                        .and_then(Value::as_str)
                        .is_none_or(str::is_empty)
                    {
                        errs.push((
                            format!("{prefix}.containers[{i}].image"),
                            "Required value".into(),
                        ));
                    }
                }
            }
        }
    };
    if workload {
        containers(
            "spec.template.spec",
            meta::path(obj, &["spec", "template", "spec"]),
        );
    } else if rtype == resources::PODS {
        containers("spec", obj.get("spec"));
    }
    if workload {
        match meta::path(obj, &["spec", "selector"]) {
            None | Some(Value::Null) => {
                errs.push(("spec.selector".into(), "Required value".into()))
            }
            Some(sel) => {
                let s = crate::selectors::Selector::from_label_selector(sel);
                let tpl = meta::path(obj, &["spec", "template"])
                    .cloned()
                    .unwrap_or(Value::Null);
                if s.is_empty() {
                    errs.push((
                        "spec.selector".into(),
                        "Invalid value: \"null\": empty selector is invalid for deployment".into(),
                    ));
                } else if !s.matches_labels(&tpl) {
                    let labels = meta::path(&tpl, &["metadata", "labels"])
                        .cloned()
                        .unwrap_or(json!({}));
                    errs.push((
                        "spec.template.metadata.labels".into(),
                        format!(
                            "Invalid value: {}: `selector` does not match template `labels`",
                            labels_string(&labels)
                        ),
                    ));
                }
                if let Some(old) = old {
                    if rtype != resources::REPLICASETS
                        && meta::path(old, &["spec", "selector"]) != Some(sel)
                    {
                        errs.push((
                            "spec.selector".into(),
                            format!(
                                "Invalid value: {}: field is immutable",
                                selector_string(sel)
                            ),
                        ));
                    }
                }
            }
        }
        if meta::path_i64(obj, &["spec", "replicas"]).is_some_and(|r| r < 0) {
            errs.push((
                "spec.replicas".into(),
                "Invalid value: must be greater than or equal to 0".into(),
            ));
        }
    }
    errs
}

fn labels_string(labels: &Value) -> String {
    let mut parts: Vec<String> = labels
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}:{}", v.as_str().unwrap_or("")))
        .collect();
    parts.sort();
    format!("map[string]string{{{}}}", parts.join(", "))
}

/// `app=web,tier in (a,b)`, the text form of a `LabelSelector`.
pub fn selector_string(sel: &Value) -> String {
    let mut parts: Vec<String> = sel
        .get("matchLabels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    for e in sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = e.get("key").and_then(Value::as_str).unwrap_or("");
        let vals: Vec<&str> = e
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        parts.push(match e.get("operator").and_then(Value::as_str) {
            Some("In") => format!("{key} in ({})", vals.join(",")),
            Some("NotIn") => format!("{key} notin ({})", vals.join(",")),
            Some("DoesNotExist") => format!("!{key}"),
            _ => key.to_string(),
        });
    }
    parts.sort();
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_defaults_match_the_apiserver() {
        let mut d = json!({"spec": {"selector": {"matchLabels": {"app": "w"}}, "template": {
            "metadata": {"labels": {"app": "w"}},
            "spec": {"containers": [{"name": "a", "image": "nginx"}, {"name": "b", "image": "r/x@sha256:1"}]}}}});
        apply(resources::DEPLOYMENTS, &mut d);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["progressDeadlineSeconds"], 600);
        assert_eq!(
            d["spec"]["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
        );
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
            "Always"
        );
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][1]["imagePullPolicy"],
            "IfNotPresent"
        );
        assert!(validate(resources::DEPLOYMENTS, &d, None).is_empty());
        d["spec"]["template"]["metadata"]["labels"]["app"] = json!("other");
        let errs = validate(resources::DEPLOYMENTS, &d, None);
        assert!(
            errs[0]
                .1
                .contains("`selector` does not match template `labels`"),
            "{errs:?}"
        );
    }
}
