//! Manifests from the repository, read and prepared for server-side apply: each YAML document
//! becomes one object, and every container image of the service's repository is replaced by
//! the new image by digest. Pure: files come in as text, objects go out as JSON.
//!
//! Images are matched by repository path, the registry and the tag or digest stripped, so
//! `cart:dev`, `localhost:5000/cart` and `123456789012.dkr.ecr.eu-west-1.amazonaws.com/cart@sha256:..`
//! all match a service pushed as `127.0.0.1:5000/cart`. A registry port is never mistaken for
//! a tag. Every image found is reported, substituted or not, with its file and line.

use serde_json::Value;

/// Keys whose arrays hold containers, wherever they sit (Pods, workloads, Jobs, CronJobs and
/// custom resources that embed pod specs).
const CONTAINER_LISTS: [&str; 3] = ["containers", "initContainers", "ephemeralContainers"];

/// One document of a manifest file.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// The file, from the repository root.
    pub file: String,
    /// The document's first line in the file (1-based).
    pub line: usize,
    /// `apiVersion`.
    pub api_version: String,
    pub kind: String,
    pub name: String,
    /// `metadata.namespace`, when the document sets one.
    pub namespace: Option<String>,
    /// The whole document as JSON.
    pub object: Value,
    /// The document's text, to find image lines in.
    text: String,
}

impl Document {
    /// `kind/name` as kubectl prints it, e.g. `Deployment/checkout`.
    pub fn title(&self) -> String {
        format!("{}/{}", self.kind, self.name)
    }
}

/// A manifest that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}{}: {why}", .column.map(|c| format!(":{c}")).unwrap_or_default())]
pub struct ManifestError {
    pub file: String,
    pub line: usize,
    /// The column, for a YAML syntax error.
    pub column: Option<usize>,
    pub why: String,
}

/// What happened to one container image found in the manifests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUse {
    pub file: String,
    /// The line of the `image:` field (the document's first line when it cannot be found).
    pub line: usize,
    /// `Kind/name` of the object holding the container.
    pub object: String,
    pub container: String,
    /// The image as written in the file.
    pub image: String,
    /// The image now in the object, when it was replaced.
    pub replaced_by: Option<String>,
}

impl ImageUse {
    /// One line for logs and annotations.
    pub fn describe(&self) -> String {
        match &self.replaced_by {
            Some(new) => format!(
                "{}:{}: {} container {}: {} -> {new}",
                self.file, self.line, self.object, self.container, self.image
            ),
            None => format!(
                "{}:{}: {} container {}: {} left as written (another repository)",
                self.file, self.line, self.object, self.container, self.image
            ),
        }
    }
}

/// Reads every document of a multi-document YAML file. Empty documents are skipped; a `List`
/// is not unpacked (write the items as documents).
///
/// # Errors
/// When a document is not YAML, not a mapping, or lacks `apiVersion`, `kind` or
/// `metadata.name`.
pub fn read_documents(file: &str, text: &str) -> Result<Vec<Document>, ManifestError> {
    let mut out = Vec::new();
    for (line, chunk) in split_documents(text) {
        let err = |why: String| ManifestError {
            file: file.to_string(),
            line,
            column: None,
            why,
        };
        let value: Value = serde_yaml_ng::from_str(&chunk).map_err(|e| {
            let (at, kind) = yaml_error_parts(&e);
            // The parser's own positions count from the document, not the file.
            let (at, column) = at.map_or((line, None), |(l, c)| (line + l - 1, Some(c)));
            ManifestError {
                file: file.to_string(),
                line: at,
                column,
                why: format!("not valid YAML ({kind})"),
            }
        })?;
        if value.is_null() {
            continue;
        }
        let Value::Object(map) = &value else {
            return Err(err("a manifest document must be a mapping".into()));
        };
        let field = |key: &str| map.get(key).and_then(Value::as_str).map(str::to_string);
        let api_version = field("apiVersion").ok_or_else(|| err("no `apiVersion`".into()))?;
        let kind = field("kind").ok_or_else(|| err("no `kind`".into()))?;
        let metadata = map.get("metadata");
        let name = metadata
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| err(format!("{kind} has no `metadata.name`")))?
            .to_string();
        let namespace = metadata
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .map(str::to_string);
        out.push(Document {
            file: file.to_string(),
            line,
            api_version,
            kind,
            name,
            namespace,
            object: value,
            text: chunk,
        });
    }
    Ok(out)
}

/// A YAML error told without the text around it (which may hold a credential): where it is
/// (1-based line and column, when known) and its kind, with quoted input redacted.
pub(crate) fn yaml_error_parts(error: &serde_yaml_ng::Error) -> (Option<(usize, usize)>, String) {
    let at = error
        .location()
        .map(|l| (l.line().max(1), l.column().max(1)));
    let text = error.to_string();
    let kind = text.split(" at line ").next().unwrap_or_default();
    // "invalid type: string \"..\", expected a sequence": only the part before
    // "expected" quotes the input.
    let (found, expected) = match kind.split_once(", expected") {
        Some((found, expected)) => (found, format!(", expected{expected}")),
        None => (kind, String::new()),
    };
    (at, format!("{}{expected}", redact_quoted(found)))
}

/// `found "x"` and ``found `x` `` become `found "…"`, so no input text is repeated.
fn redact_quoted(text: &str) -> String {
    let mut out = String::new();
    let mut closing: Option<char> = None;
    for c in text.chars() {
        match closing {
            Some(end) if c == end => {
                out.push('…');
                out.push(c);
                closing = None;
            }
            Some(_) => {}
            None => {
                out.push(c);
                if c == '"' || c == '`' {
                    closing = Some(c);
                }
            }
        }
    }
    if closing.is_some() {
        out.push('…');
    }
    out
}

/// Splits at `---` lines (and drops `...` end markers), keeping each document's first line
/// number. A `---` can only start a line at column 0 outside a block scalar, and top-level
/// block scalars are indented, so a line-based split is exact for manifests.
fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut start = 1;
    let mut current = String::new();
    for (index, line) in text.lines().enumerate() {
        let marker = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        if marker || line == "..." {
            if !current.trim().is_empty() {
                out.push((start, std::mem::take(&mut current)));
            }
            current.clear();
            start = index + 2;
            // `--- {inline}` keeps the content after the marker.
            if let Some(rest) = line.strip_prefix("---").filter(|r| !r.trim().is_empty()) {
                current.push_str(rest.trim_start());
                current.push('\n');
                start = index + 1;
            }
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    if !current.trim().is_empty() {
        out.push((start, current));
    }
    out
}

/// The repository path of an image: no registry host, tag or digest; Docker Hub's implied
/// `library/` dropped so `nginx` and `docker.io/library/nginx` agree.
pub fn repository_path(image: &str) -> String {
    let full = super::image::repository_of(image);
    let path = match full.split_once('/') {
        Some((_host, path)) => path,
        None => full.as_str(),
    };
    let hub = full.starts_with("docker.io/");
    match path.strip_prefix("library/") {
        Some(rest) if hub => rest.to_string(),
        _ => path.to_string(),
    }
}

/// Replaces, in every document, each container image whose repository path is
/// `repository`'s by `image`, and reports every container image seen.
pub fn substitute(documents: &mut [Document], repository: &str, image: &str) -> Vec<ImageUse> {
    let wanted = repository_path(repository);
    let mut uses = Vec::new();
    for doc in documents.iter_mut() {
        let mut found = Vec::new();
        visit_containers(&mut doc.object, &mut |container| {
            let Some(written) = container.get("image").and_then(Value::as_str) else {
                return;
            };
            let written = written.to_string();
            let name = container
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string();
            let matches = repository_path(&written) == wanted;
            if matches {
                container["image"] = Value::String(image.to_string());
            }
            found.push((name, written, matches.then(|| image.to_string())));
        });
        let mut used = Vec::new();
        for (container, written, replaced_by) in found {
            let line = match image_line(&doc.text, &written, &used) {
                Some(offset) => {
                    used.push(offset);
                    doc.line + offset
                }
                None => doc.line,
            };
            uses.push(ImageUse {
                file: doc.file.clone(),
                line,
                object: doc.title(),
                container,
                image: written,
                replaced_by,
            });
        }
    }
    uses
}

/// Calls `f` on every container object under a container list, at any depth.
fn visit_containers(value: &mut Value, f: &mut dyn FnMut(&mut Value)) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if CONTAINER_LISTS.contains(&key.as_str()) {
                    if let Value::Array(items) = child {
                        items.iter_mut().filter(|c| c.is_object()).for_each(&mut *f);
                        continue;
                    }
                }
                visit_containers(child, f);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| visit_containers(v, f)),
        _ => {}
    }
}

/// The 0-based line (within the document) of the first `image: <image>` not in `used`.
fn image_line(text: &str, image: &str, used: &[usize]) -> Option<usize> {
    text.lines().enumerate().find_map(|(i, line)| {
        if used.contains(&i) {
            return None;
        }
        let rest = line.trim_start().trim_start_matches("- ");
        let value = rest.strip_prefix("image:")?.trim();
        let value = value.split(" #").next().unwrap_or(value).trim();
        let unquoted = value.trim_matches(|c| c == '"' || c == '\'');
        (unquoted == image).then_some(i)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FILE: &str = "# the checkout service
apiVersion: v1
kind: ConfigMap
metadata:
  name: checkout-config
data:
  mode: fast
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: checkout
  namespace: shop
spec:
  selector:
    matchLabels: {app: checkout}
  template:
    metadata:
      labels: {app: checkout}
    spec:
      initContainers:
        - name: migrate
          image: \"localhost:5000/checkout:1.2\"
      containers:
        - name: checkout
          image: checkout:placeholder # replaced at deploy time
        - name: proxy
          image: envoyproxy/envoy:v1.30
---
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: report}
spec:
  jobTemplate:
    spec:
      template:
        spec:
          containers: [{name: report, image: 'ghcr.io/acme/checkout@sha256:00'}]
...
";

    #[test]
    fn documents_keep_their_first_line_and_identity() {
        let docs = read_documents("deploy/checkout/all.yaml", FILE).unwrap();
        let got: Vec<(usize, String, Option<&str>)> = docs
            .iter()
            .map(|d| (d.line, d.title(), d.namespace.as_deref()))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, "ConfigMap/checkout-config".into(), None),
                (9, "Deployment/checkout".into(), Some("shop")),
                (31, "CronJob/report".into(), None),
            ]
        );
        assert_eq!(docs[1].api_version, "apps/v1");
    }

    #[test]
    fn every_image_is_reported_and_only_the_repository_is_replaced() {
        let mut docs = read_documents("d.yaml", FILE).unwrap();
        let new = "127.0.0.1:5000/checkout@sha256:ab";
        let uses = substitute(&mut docs, "127.0.0.1:5000/checkout", new);
        let lines: Vec<String> = uses.iter().map(ImageUse::describe).collect();
        assert_eq!(
            lines,
            vec![
                format!("d.yaml:26: Deployment/checkout container checkout: checkout:placeholder -> {new}"),
                "d.yaml:28: Deployment/checkout container proxy: envoyproxy/envoy:v1.30 left as written (another repository)".to_string(),
                format!("d.yaml:23: Deployment/checkout container migrate: localhost:5000/checkout:1.2 -> {new}"),
                "d.yaml:31: CronJob/report container report: ghcr.io/acme/checkout@sha256:00 left as written (another repository)".to_string(),
            ]
        );
        let spec = &docs[1].object["spec"]["template"]["spec"];
        assert_eq!(spec["containers"][0]["image"], json!(new));
        assert_eq!(spec["initContainers"][0]["image"], json!(new));
        assert_eq!(
            spec["containers"][1]["image"],
            json!("envoyproxy/envoy:v1.30")
        );
    }

    #[test]
    fn repository_paths_ignore_registry_port_tag_and_digest() {
        for (image, path) in [
            ("cart", "cart"),
            ("cart:1", "cart"),
            ("docker.io/library/cart:1", "cart"),
            ("127.0.0.1:5000/cart", "cart"),
            ("127.0.0.1:5000/shop/cart:v@sha256:00", "shop/cart"),
            ("shop/cart", "shop/cart"),
            (
                "123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop/cart:x",
                "shop/cart",
            ),
            ("localhost/cart", "cart"),
        ] {
            assert_eq!(repository_path(image), path, "{image}");
        }
    }

    #[test]
    fn broken_documents_are_refused_with_file_and_line() {
        let cases = [
            (
                "kind: ConfigMap\nmetadata: {name: a}\n",
                1,
                "no `apiVersion`",
            ),
            (
                "---\napiVersion: v1\nkind: ConfigMap\n",
                2,
                "ConfigMap has no `metadata.name`",
            ),
            (
                "apiVersion: v1\nkind: A\nmetadata: {name: a}\n---\n- 1\n",
                5,
                "must be a mapping",
            ),
            (
                "apiVersion: v1\nkind: A\nmetadata:\n  name: [a\n",
                5,
                "not valid YAML (did not find expected",
            ),
        ];
        for (text, line, why) in cases {
            let e = read_documents("m.yaml", text).unwrap_err();
            assert_eq!((e.file.as_str(), e.line), ("m.yaml", line), "{text}: {e}");
            assert!(e.why.contains(why), "{text}: {e}");
        }
        assert!(read_documents("e.yaml", "---\n# nothing\n---\n")
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_broken_document_is_told_by_line_and_column_without_its_text() {
        let text = "apiVersion: v1\nkind: Secret\nmetadata: {name: a}\n---\napiVersion: v1\n\
                    kind: Secret\nstringData:\n  token: planted-secret-value: x\n";
        let e = read_documents("s.yaml", text).unwrap_err();
        let shown = e.to_string();
        assert!(shown.starts_with("s.yaml:8:"), "{shown}");
        assert!(e.column.is_some(), "{shown}");
        assert!(!shown.contains("planted"), "{shown}");
        let typed = serde_yaml_ng::from_str::<Vec<String>>("planted-secret-value").unwrap_err();
        let (_, kind) = yaml_error_parts(&typed);
        assert!(!kind.contains("planted"), "{kind}");
        assert!(kind.contains("expected a sequence"), "{kind}");
    }
}
