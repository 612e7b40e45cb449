//! Small pieces every part of the simulator uses: timestamps, ids, hashes, JSON accessors.

use serde_json::{Map, Value};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The simulator's clock: the wall clock plus an offset tests can move forward.
#[derive(Debug, Default)]
pub struct Clock {
    offset_ms: AtomicI64,
}

impl Clock {
    /// Milliseconds since the Unix epoch, as the simulator sees it.
    pub fn now_ms(&self) -> i64 {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as i64;
        wall + self.offset_ms.load(Ordering::SeqCst)
    }

    pub fn now_secs(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }

    /// `2026-11-26T03:36:26Z`.
    pub fn now_rfc3339(&self) -> String {
        format_rfc3339(self.now_secs())
    }

    pub fn advance(&self, by: Duration) {
        self.offset_ms
            .fetch_add(by.as_millis() as i64, Ordering::SeqCst);
    }
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// Formats Unix seconds as RFC 3339 in UTC, the way Kubernetes writes timestamps.
pub fn format_rfc3339(secs: i64) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(86400));
    let s = secs.rem_euclid(86400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        (s / 60) % 60,
        s % 60
    )
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.frac]Z` (what Kubernetes writes) into Unix seconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || !s.ends_with('Z') {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let days = days_from_civil(n(0..4)?, n(5..7)?, n(8..10)?);
    Some(days * 86400 + n(11..13)? * 3600 + n(14..16)? * 60 + n(17..19)?)
}

/// Parses SigV4's `YYYYMMDDTHHMMSSZ` into Unix seconds.
pub fn parse_amz_date(s: &str) -> Option<i64> {
    if s.len() != 16 || s.as_bytes()[8] != b'T' || !s.ends_with('Z') {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let days = days_from_civil(n(0..4)?, n(4..6)?, n(6..8)?);
    Some(days * 86400 + n(9..11)? * 3600 + n(11..13)? * 60 + n(13..15)?)
}

static SEED: AtomicU64 = AtomicU64::new(0);

/// A fast, non-cryptographic random number (names and uids only need to be unique-looking).
pub fn random_u64() -> u64 {
    let mut s = SEED.load(Ordering::Relaxed);
    loop {
        let mut x = if s == 0 {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos() as u64
                | 1
        } else {
            s
        };
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        match SEED.compare_exchange(s, x, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return x.wrapping_mul(0x2545_F491_4F6C_DD1D),
            Err(cur) => s = cur,
        }
    }
}

/// A uid in the 8-4-4-4-12 hex form.
pub fn new_uid() -> String {
    let a = random_u64();
    let b = random_u64();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | (b >> 48) & 0x3fff,
        b & 0xffff_ffff_ffff
    )
}

/// The alphabet Kubernetes uses for generated names (no vowels, no confusable characters).
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// A random suffix like `x7k2q`, as `generateName` produces.
pub fn random_suffix(len: usize) -> String {
    (0..len)
        .map(|_| SAFE_ALPHABET[(random_u64() % SAFE_ALPHABET.len() as u64) as usize] as char)
        .collect()
}

/// Maps each character of a string onto the safe alphabet, as `rand.SafeEncodeString` does.
pub fn safe_encode(s: &str) -> String {
    s.bytes()
        .map(|b| SAFE_ALPHABET[b as usize % SAFE_ALPHABET.len()] as char)
        .collect()
}

/// FNV-1a, 32 bit.
pub fn fnv32a(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in data {
        h ^= *b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// JSON with object keys sorted, whatever `serde_json`'s map ordering is.
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                write_canonical(&m[*k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The hash Kubernetes-style controllers put in names and labels (`pod-template-hash`,
/// `controller-revision-hash`): FNV-32a of the template, safe-encoded.
pub fn template_hash(template: &Value, collision_count: i64) -> String {
    let mut data = canonical_json(template);
    if collision_count != 0 {
        data.push_str(&collision_count.to_string());
    }
    safe_encode(&fnv32a(data.as_bytes()).to_string())
}

/// `obj[a][b]...` as a value, if every step exists.
pub fn path<'a>(v: &'a Value, keys: &[&str]) -> Option<&'a Value> {
    let mut cur = v;
    for k in keys {
        cur = cur.get(*k)?;
    }
    Some(cur)
}

pub fn path_str<'a>(v: &'a Value, keys: &[&str]) -> Option<&'a str> {
    path(v, keys)?.as_str()
}

pub fn path_i64(v: &Value, keys: &[&str]) -> Option<i64> {
    path(v, keys)?.as_i64()
}

/// `obj[a][b]...`, creating objects on the way.
pub fn path_mut<'a>(v: &'a mut Value, keys: &[&str]) -> &'a mut Value {
    let mut cur = v;
    for k in keys {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        cur = cur
            .as_object_mut()
            .expect("just made an object")
            .entry(k.to_string())
            .or_insert(Value::Null);
    }
    cur
}

pub fn set_path(v: &mut Value, keys: &[&str], value: Value) {
    *path_mut(v, keys) = value;
}

pub fn name(v: &Value) -> &str {
    path_str(v, &["metadata", "name"]).unwrap_or("")
}

pub fn namespace(v: &Value) -> &str {
    path_str(v, &["metadata", "namespace"]).unwrap_or("")
}

pub fn uid(v: &Value) -> &str {
    path_str(v, &["metadata", "uid"]).unwrap_or("")
}

pub fn annotation<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    path(v, &["metadata", "annotations", key])?.as_str()
}

pub fn label<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    path(v, &["metadata", "labels", key])?.as_str()
}

/// The uid of the object's controller (the owner reference with `controller: true`).
pub fn controller_uid(v: &Value) -> Option<&str> {
    path(v, &["metadata", "ownerReferences"])?
        .as_array()?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))?
        .get("uid")?
        .as_str()
}

/// An owner reference naming `owner` as controller.
pub fn controller_ref(owner: &Value) -> Value {
    serde_json::json!({
        "apiVersion": owner.get("apiVersion").cloned().unwrap_or(Value::Null),
        "kind": owner.get("kind").cloned().unwrap_or(Value::Null),
        "name": name(owner),
        "uid": uid(owner),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// Resolves an int-or-percent (`maxSurge: 25%`) against a total, rounding up or down.
pub fn int_or_percent(v: Option<&Value>, total: i64, default: &str, round_up: bool) -> i64 {
    let v = match v {
        Some(Value::Null) | None => Value::String(default.to_string()),
        Some(v) => v.clone(),
    };
    match v {
        Value::Number(n) => n.as_i64().unwrap_or(0),
        Value::String(s) => match s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) {
            Some(p) if round_up => (p * total + 99) / 100,
            Some(p) => p * total / 100,
            None => s.parse().unwrap_or(0),
        },
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rfc3339_round_trips() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(1_533_427_200), "2018-08-05T00:00:00Z");
        assert_eq!(parse_rfc3339("2018-08-05T00:00:00Z"), Some(1_533_427_200));
        assert_eq!(
            parse_rfc3339("2024-02-29T23:59:59.123Z"),
            Some(1_709_251_199)
        );
        assert_eq!(parse_amz_date("20180805T000000Z"), Some(1_533_427_200));
        assert_eq!(parse_amz_date("2018-08-05"), None);
    }

    #[test]
    fn canonical_json_sorts_keys() {
        assert_eq!(
            canonical_json(&json!({"b":1,"a":[{"d":2,"c":3}]})),
            r#"{"a":[{"c":3,"d":2}],"b":1}"#
        );
    }

    #[test]
    fn int_or_percent_rounds_like_kubernetes() {
        assert_eq!(int_or_percent(None, 2, "25%", true), 1);
        assert_eq!(int_or_percent(None, 2, "25%", false), 0);
        assert_eq!(int_or_percent(Some(&json!(3)), 2, "25%", false), 3);
        assert_eq!(int_or_percent(Some(&json!("50%")), 3, "25%", false), 1);
    }

    #[test]
    fn hashes_use_the_safe_alphabet() {
        let h = template_hash(&json!({"spec":{}}), 0);
        assert!(h.bytes().all(|b| SAFE_ALPHABET.contains(&b)));
        assert_ne!(h, template_hash(&json!({"spec":{"x":1}}), 0));
        assert!(new_uid().len() == 36);
        assert_ne!(new_uid(), new_uid());
        assert_ne!(random_suffix(5), random_suffix(5));
    }
}
