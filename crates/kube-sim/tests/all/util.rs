//! Helpers: run kubectl with a deadline, poll with a deadline, raw HTTP.

use kube_sim::{Sim, SimOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const KUBECTL: &str = "/usr/bin/kubectl";

/// A simulator plus a kubeconfig and a private kubectl cache for it.
pub struct Cluster {
    pub sim: Sim,
    pub dir: tempfile::TempDir,
}

impl Cluster {
    pub fn start() -> Cluster {
        Cluster::with(SimOptions::default())
    }

    pub fn with(opts: SimOptions) -> Cluster {
        let sim = Sim::start_blocking(opts).expect("simulator starts");
        let dir = tempfile::tempdir().expect("temp dir");
        sim.write_kubeconfig(dir.path().join("kubeconfig"))
            .expect("kubeconfig written");
        Cluster { sim, dir }
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// Runs kubectl against this cluster and returns its output, whatever the exit code.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        let mut full = vec![
            "--kubeconfig".to_string(),
            self.kubeconfig().display().to_string(),
            "--cache-dir".to_string(),
            self.dir.path().join("cache").display().to_string(),
            "--request-timeout=15s".to_string(),
        ];
        full.extend(args.iter().map(|a| a.to_string()));
        run(KUBECTL, &full, Duration::from_secs(45))
    }

    /// Runs kubectl and insists it succeeds; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed ({:?})\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl get ... -o json`, parsed.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&a)).expect("kubectl printed JSON")
    }

    /// Writes a manifest into the temp dir and returns its path.
    pub fn manifest(&self, name: &str, yaml: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, yaml).expect("manifest written");
        p.display().to_string()
    }
}

/// Runs a program with a deadline; kills it and panics if it overruns.
pub fn run(program: &str, args: &[String], limit: Duration) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .env("KUBECONFIG", "/dev/null")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} ({e}); the fidelity tests need kubectl 1.32 at {KUBECTL}")
        });
    let deadline = Instant::now() + limit;
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stdout.read_to_end(&mut b);
        b
    });
    let err_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stderr.read_to_end(&mut b);
        b
    });
    loop {
        if let Some(status) = child.try_wait().expect("wait works") {
            return Output {
                status,
                stdout: out_t.join().unwrap_or_default(),
                stderr: err_t.join().unwrap_or_default(),
            };
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{program} {args:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `f` until it returns `Some`, or panics after `limit` with `what`.
pub fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A deployment manifest.
pub fn deployment(
    name: &str,
    image: &str,
    replicas: u32,
    extra_annotations: &str,
    deadline: Option<u32>,
) -> String {
    let deadline = deadline
        .map(|d| format!("  progressDeadlineSeconds: {d}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  labels: {{app: {name}}}
  annotations: {{{extra_annotations}}}
spec:
  replicas: {replicas}
{deadline}  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
      - name: app
        image: {image}
        ports: [{{containerPort: 8080}}]
        env: [{{name: MODE, value: test}}]
"
    )
}

/// A minimal HTTP/1.1 response.
pub struct Resp {
    pub status: u16,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// Sends one request over a fresh connection and reads the whole (de-chunked) response.
pub fn http(sim: &Sim, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Resp {
    let mut s = TcpStream::connect(sim.addr()).expect("connects");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout set");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        sim.addr(),
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).expect("request sent");
    let mut r = BufReader::new(s);
    let (status, chunked) = read_head(&mut r);
    let mut body = Vec::new();
    if chunked {
        while let Some(chunk) = read_chunk(&mut r) {
            body.extend(chunk);
        }
    } else {
        let _ = r.read_to_end(&mut body);
    }
    Resp {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Reads the status line and headers; returns the status and whether the body is chunked.
pub fn read_head(r: &mut impl BufRead) -> (u16, bool) {
    let mut line = String::new();
    r.read_line(&mut line).expect("status line");
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    let mut chunked = false;
    loop {
        line.clear();
        r.read_line(&mut line).expect("header line");
        if line.trim().is_empty() {
            break;
        }
        if line
            .to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
        {
            chunked = true;
        }
    }
    (status, chunked)
}

/// One chunk of a chunked body; `None` at the end (or when the connection is cut).
pub fn read_chunk(r: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut size = String::new();
    if r.read_line(&mut size).ok()? == 0 {
        return None;
    }
    let n = usize::from_str_radix(size.trim(), 16).ok()?;
    if n == 0 {
        return None;
    }
    let mut buf = vec![0; n + 2];
    r.read_exact(&mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

/// Opens a watch and returns a reader positioned at the first event.
pub fn open_watch(sim: &Sim, path: &str) -> BufReader<TcpStream> {
    let s = TcpStream::connect(sim.addr()).expect("connects");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout set");
    let mut w = s.try_clone().expect("clone");
    write!(w, "GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", sim.addr()).expect("request sent");
    let mut r = BufReader::new(s);
    let (status, chunked) = read_head(&mut r);
    assert_eq!(status, 200);
    assert!(chunked, "watches stream chunked");
    r
}

/// The next watch event (events may span chunks; each ends with a newline).
pub fn next_event(
    r: &mut BufReader<TcpStream>,
    pending: &mut Vec<u8>,
) -> Option<serde_json::Value> {
    loop {
        if let Some(i) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=i).collect();
            return Some(serde_json::from_slice(&line).expect("event is JSON"));
        }
        pending.extend(read_chunk(r)?);
    }
}
