//! Object storage with one global resourceVersion counter and a bounded history of changes
//! for watches.

use crate::meta;
use crate::resources::TYPES;
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use tokio::sync::broadcast;

/// How many changes are kept for watches that resume from a resourceVersion. Older
/// resourceVersions get `410 Gone`, as on a real apiserver after etcd compaction.
const HISTORY: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Added,
    Modified,
    Deleted,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Added => "ADDED",
            Change::Modified => "MODIFIED",
            Change::Deleted => "DELETED",
        }
    }
}

/// One stored change, as watches see it.
#[derive(Debug)]
pub struct Event {
    pub rv: u64,
    pub rtype: usize,
    pub change: Change,
    pub object: Value,
    /// The object before a modification (watch filters need it to turn a change that leaves
    /// a selector into DELETED).
    pub old: Option<Value>,
}

/// The requested resourceVersion is older than the kept history.
#[derive(Debug)]
pub struct TooOld;

pub type Key = (usize, String, String);

#[derive(Debug)]
pub struct Store {
    objects: BTreeMap<Key, Value>,
    rv: u64,
    history: VecDeque<Arc<Event>>,
    /// Changes up to and including this resourceVersion are no longer in `history`.
    compacted: u64,
    tx: broadcast::Sender<Arc<Event>>,
}

impl Default for Store {
    fn default() -> Self {
        Store {
            objects: BTreeMap::new(),
            rv: 0,
            history: VecDeque::new(),
            compacted: 0,
            tx: broadcast::channel(8192).0,
        }
    }
}

fn key(rtype: usize, obj: &Value) -> Key {
    (
        rtype,
        meta::namespace(obj).to_string(),
        meta::name(obj).to_string(),
    )
}

impl Store {
    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    pub fn get(&self, rtype: usize, ns: &str, name: &str) -> Option<&Value> {
        self.objects.get(&(rtype, ns.to_string(), name.to_string()))
    }

    /// Objects of a type, in one namespace or all, ordered by namespace and name.
    pub fn list<'a>(
        &'a self,
        rtype: usize,
        ns: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Value> + 'a {
        let start = (rtype, ns.unwrap_or("").to_string(), String::new());
        self.objects
            .range(start..)
            .take_while(move |((t, n, _), _)| *t == rtype && ns.is_none_or(|ns| ns == n))
            .map(|(_, v)| v)
    }

    /// Clones of all objects of a type in a namespace (or all), for controllers that write while iterating.
    pub fn list_owned(&self, rtype: usize, ns: Option<&str>) -> Vec<Value> {
        self.list(rtype, ns).cloned().collect()
    }

    /// Every uid in the store (for garbage collection).
    pub fn all_uids(&self) -> std::collections::HashSet<String> {
        self.objects
            .values()
            .map(|v| meta::uid(v).to_string())
            .collect()
    }

    pub fn all_keys(&self) -> Vec<Key> {
        self.objects.keys().cloned().collect()
    }

    fn bump(&mut self, obj: &mut Value) -> u64 {
        self.rv += 1;
        meta::set_path(
            obj,
            &["metadata", "resourceVersion"],
            Value::String(self.rv.to_string()),
        );
        self.rv
    }

    fn record(&mut self, event: Event) {
        let event = Arc::new(event);
        self.history.push_back(event.clone());
        while self.history.len() > HISTORY {
            if let Some(e) = self.history.pop_front() {
                self.compacted = e.rv;
            }
        }
        let _ = self.tx.send(event);
    }

    /// Stores a new object (the caller has checked it does not exist) and returns it as stored.
    pub fn create(&mut self, rtype: usize, mut obj: Value) -> Value {
        let rv = self.bump(&mut obj);
        self.objects.insert(key(rtype, &obj), obj.clone());
        self.record(Event {
            rv,
            rtype,
            change: Change::Added,
            object: obj.clone(),
            old: None,
        });
        obj
    }

    /// Replaces a stored object. Bumps `metadata.generation` when a workload's spec changed.
    /// A write that changes nothing is a no-op that keeps the resourceVersion, as on a real
    /// apiserver.
    pub fn update(&mut self, rtype: usize, mut obj: Value) -> Value {
        let k = key(rtype, &obj);
        let Some(old) = self.objects.get(&k).cloned() else {
            return self.create(rtype, obj);
        };
        if TYPES[rtype].generation {
            let gen = meta::path_i64(&old, &["metadata", "generation"]).unwrap_or(1);
            let gen = if old.get("spec") != obj.get("spec") {
                gen + 1
            } else {
                gen
            };
            meta::set_path(&mut obj, &["metadata", "generation"], Value::from(gen));
        }
        if let Some(rv) = old.pointer("/metadata/resourceVersion") {
            meta::set_path(&mut obj, &["metadata", "resourceVersion"], rv.clone());
        }
        if obj == old {
            return old;
        }
        let rv = self.bump(&mut obj);
        self.objects.insert(k, obj.clone());
        self.record(Event {
            rv,
            rtype,
            change: Change::Modified,
            object: obj.clone(),
            old: Some(old),
        });
        obj
    }

    /// Removes an object; the DELETED event carries a new resourceVersion.
    pub fn delete(&mut self, rtype: usize, ns: &str, name: &str) -> Option<Value> {
        let mut obj = self
            .objects
            .remove(&(rtype, ns.to_string(), name.to_string()))?;
        let rv = self.bump(&mut obj);
        self.record(Event {
            rv,
            rtype,
            change: Change::Deleted,
            object: obj.clone(),
            old: None,
        });
        Some(obj)
    }

    /// Changes after `rv`, or `TooOld` when some of them were forgotten.
    pub fn changes_since(&self, rv: u64) -> Result<Vec<Arc<Event>>, TooOld> {
        if rv < self.compacted {
            return Err(TooOld);
        }
        Ok(self.history.iter().filter(|e| e.rv > rv).cloned().collect())
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    /// Forgets the change history, so watches from any earlier resourceVersion get 410 Gone.
    pub fn compact(&mut self) {
        self.history.clear();
        self.compacted = self.rv;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{CONFIGMAPS_FOR_TESTS, DEPLOYMENTS};
    use serde_json::json;

    #[test]
    fn writes_bump_one_counter_and_generation_follows_spec() {
        let mut s = Store::default();
        let d = s.create(DEPLOYMENTS, json!({"metadata": {"name": "a", "namespace": "x", "generation": 1}, "spec": {"replicas": 1}}));
        assert_eq!(d["metadata"]["resourceVersion"], "1");
        let mut d2 = d.clone();
        d2["metadata"]["labels"] = json!({"l": "1"});
        let d2 = s.update(DEPLOYMENTS, d2);
        assert_eq!(d2["metadata"]["generation"], 1);
        assert_eq!(d2["metadata"]["resourceVersion"], "2");
        let mut d3 = d2.clone();
        d3["spec"]["replicas"] = json!(2);
        let d3 = s.update(DEPLOYMENTS, d3);
        assert_eq!(d3["metadata"]["generation"], 2);
        let same = s.update(DEPLOYMENTS, d3.clone());
        assert_eq!(
            same["metadata"]["resourceVersion"], "3",
            "no-op writes keep the resourceVersion"
        );
        s.create(
            CONFIGMAPS_FOR_TESTS,
            json!({"metadata": {"name": "c", "namespace": "x"}}),
        );
        assert_eq!(s.list(DEPLOYMENTS, Some("x")).count(), 1);
        assert_eq!(s.changes_since(2).unwrap().len(), 2);
        s.compact();
        assert!(s.changes_since(2).is_err());
        assert!(s.changes_since(4).unwrap().is_empty());
    }
}
