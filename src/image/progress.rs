//! BuildKit progress as plain text. Through the Engine API the daemon reports a BuildKit build
//! as `moby.buildkit.trace` messages, each a protobuf `StatusResponse`; this reads the few
//! fields a build log needs and prints them the way `docker build --progress=plain` does
//! (`#3 [2/4] COPY . .`, `#3 CACHED`, `#3 ERROR: …`), so logs and [`super::build::failed_line`]
//! read the same whichever builder ran. Pure.

use std::collections::HashMap;

/// A trace message that is not the protobuf it should be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a BuildKit progress message is malformed at byte {at}")]
pub struct DecodeError {
    at: usize,
}

/// One step of a build (`Vertex` in BuildKit's control API).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Vertex {
    pub digest: String,
    pub name: String,
    pub cached: bool,
    /// Seconds since the epoch.
    pub started: Option<f64>,
    pub completed: Option<f64>,
    pub error: String,
}

/// Output of a step (`VertexLog`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VertexLog {
    pub vertex: String,
    pub msg: Vec<u8>,
}

/// The parts of a `StatusResponse` a log shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    pub vertexes: Vec<Vertex>,
    pub logs: Vec<VertexLog>,
}

/// One field's value; fixed-size values are skipped.
enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// Reads protobuf fields one after the other.
struct Fields<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Fields<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Fields { buf, at: 0 }
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.buf.get(self.at).ok_or(DecodeError { at: self.at })?;
            self.at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError { at: self.at })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(DecodeError { at: self.at })?;
        let bytes = &self.buf[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    fn next(&mut self) -> Result<Option<(u64, Value<'a>)>, DecodeError> {
        if self.at >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => self.take(8).map(|_| Value::Fixed)?,
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| DecodeError { at: self.at })?;
                Value::Bytes(self.take(n)?)
            }
            5 => self.take(4).map(|_| Value::Fixed)?,
            _ => return Err(DecodeError { at: self.at }),
        };
        Ok(Some((key >> 3, value)))
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A `google.protobuf.Timestamp` as seconds.
fn timestamp(bytes: &[u8]) -> Result<f64, DecodeError> {
    let (mut seconds, mut nanos) = (0u64, 0u64);
    let mut fields = Fields::new(bytes);
    while let Some((field, value)) = fields.next()? {
        match (field, value) {
            (1, Value::Varint(v)) => seconds = v,
            (2, Value::Varint(v)) => nanos = v,
            _ => {}
        }
    }
    Ok(seconds as f64 + nanos as f64 / 1e9)
}

fn vertex(bytes: &[u8]) -> Result<Vertex, DecodeError> {
    let mut v = Vertex::default();
    let mut fields = Fields::new(bytes);
    while let Some((field, value)) = fields.next()? {
        match (field, value) {
            (1, Value::Bytes(b)) => v.digest = text(b),
            (3, Value::Bytes(b)) => v.name = text(b),
            (4, Value::Varint(c)) => v.cached = c != 0,
            (5, Value::Bytes(b)) => v.started = Some(timestamp(b)?),
            (6, Value::Bytes(b)) => v.completed = Some(timestamp(b)?),
            (7, Value::Bytes(b)) => v.error = text(b),
            _ => {}
        }
    }
    Ok(v)
}

fn vertex_log(bytes: &[u8]) -> Result<VertexLog, DecodeError> {
    let mut log = VertexLog::default();
    let mut fields = Fields::new(bytes);
    while let Some((field, value)) = fields.next()? {
        match (field, value) {
            (1, Value::Bytes(b)) => log.vertex = text(b),
            // 2 is the timestamp, 3 the stream (stdout or stderr).
            (4, Value::Bytes(b)) => log.msg = b.to_vec(),
            _ => {}
        }
    }
    Ok(log)
}

/// Decodes a `StatusResponse`: vertexes (field 1) and logs (field 3); statuses (2, transfer
/// progress) and anything newer are skipped.
///
/// # Errors
/// [`DecodeError`] when the bytes are not a well-formed protobuf message.
pub fn decode_status(bytes: &[u8]) -> Result<Status, DecodeError> {
    let mut status = Status::default();
    let mut fields = Fields::new(bytes);
    while let Some((field, value)) = fields.next()? {
        match (field, value) {
            (1, Value::Bytes(b)) => status.vertexes.push(vertex(b)?),
            (3, Value::Bytes(b)) => status.logs.push(vertex_log(b)?),
            _ => {}
        }
    }
    Ok(status)
}

/// What has been printed of one step.
#[derive(Default)]
struct Shown {
    number: usize,
    named: bool,
    finished: bool,
    /// Output after the last newline, printed when the line ends or the step finishes.
    partial: String,
}

/// Turns a build's status messages into the lines of a plain progress log.
#[derive(Default)]
pub struct PlainProgress {
    steps: HashMap<String, Shown>,
}

impl PlainProgress {
    fn step(&mut self, digest: &str) -> &mut Shown {
        let next = self.steps.len() + 1;
        self.steps
            .entry(digest.to_string())
            .or_insert_with(|| Shown {
                number: next,
                ..Shown::default()
            })
    }

    /// Appends the lines `status` adds to `out`.
    pub fn render(&mut self, status: &Status, out: &mut String) {
        for v in &status.vertexes {
            if v.started.is_none() && !v.cached && v.completed.is_none() && v.error.is_empty() {
                continue;
            }
            let step = self.step(&v.digest);
            let n = step.number;
            if !step.named {
                step.named = true;
                out.push_str(&format!("#{n} {}\n", v.name));
            }
            if step.finished {
                continue;
            }
            if !step.partial.is_empty() {
                out.push_str(&format!("#{n} {}\n", std::mem::take(&mut step.partial)));
            }
            if !v.error.is_empty() {
                out.push_str(&format!("#{n} ERROR: {}\n", v.error));
            } else if v.cached {
                out.push_str(&format!("#{n} CACHED\n"));
            } else if let Some(done) = v.completed {
                let took = done - v.started.unwrap_or(done);
                out.push_str(&format!("#{n} DONE {took:.1}s\n"));
            } else {
                continue;
            }
            step.finished = true;
        }
        for log in &status.logs {
            let step = self.step(&log.vertex);
            let n = step.number;
            step.partial.push_str(&String::from_utf8_lossy(&log.msg));
            while let Some(end) = step.partial.find('\n') {
                let line: String = step.partial.drain(..=end).collect();
                out.push_str(&format!("#{n} {}\n", line.trim_end_matches(['\n', '\r'])));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(n: u64, bytes: &[u8]) -> Vec<u8> {
        let mut out = varint(n << 3 | 2);
        out.extend(varint(bytes.len() as u64));
        out.extend_from_slice(bytes);
        out
    }

    fn varint(mut v: u64) -> Vec<u8> {
        let mut out = vec![];
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                return out;
            }
            out.push(byte | 0x80);
        }
    }

    fn seconds(s: u64) -> Vec<u8> {
        let mut t = varint(1 << 3);
        t.extend(varint(s));
        t.extend(varint(2 << 3));
        t.extend(varint(500_000_000));
        t
    }

    fn vertex_bytes(digest: &str, name: &str, extra: &[Vec<u8>]) -> Vec<u8> {
        let mut v = field(1, digest.as_bytes());
        v.extend(field(2, b"sha256:input")); // inputs: skipped
        v.extend(field(3, name.as_bytes()));
        for e in extra {
            v.extend_from_slice(e);
        }
        field(1, &v)
    }

    fn log_bytes(digest: &str, msg: &str) -> Vec<u8> {
        let mut l = field(1, digest.as_bytes());
        l.extend(field(2, &seconds(1)));
        l.extend(varint(3 << 3));
        l.extend(varint(1)); // stream
        l.extend(field(4, msg.as_bytes()));
        field(3, &l)
    }

    #[test]
    fn status_messages_decode_vertexes_and_logs() {
        let mut bytes = vertex_bytes("sha256:a", "[1/2] RUN make", &[field(5, &seconds(10))]);
        bytes.extend(field(2, b"transfer progress: skipped"));
        bytes.extend(log_bytes("sha256:a", "compiling\n"));
        let status = decode_status(&bytes).unwrap();
        assert_eq!(status.vertexes.len(), 1);
        let v = &status.vertexes[0];
        assert_eq!(
            (v.digest.as_str(), v.name.as_str()),
            ("sha256:a", "[1/2] RUN make")
        );
        assert_eq!(v.started, Some(10.5));
        assert!(!v.cached && v.completed.is_none() && v.error.is_empty());
        assert_eq!(status.logs[0].msg, b"compiling\n");
    }

    #[test]
    fn truncated_messages_are_errors_not_panics() {
        let bytes = vertex_bytes("sha256:a", "x", &[]);
        for cut in 1..bytes.len() {
            let _ = decode_status(&bytes[..cut]);
        }
        assert!(decode_status(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode_status(&[0xff; 11]).is_err());
        assert_eq!(decode_status(&[]).unwrap(), Status::default());
    }

    #[test]
    fn progress_prints_like_plain_docker_build() {
        let mut progress = PlainProgress::default();
        let mut out = String::new();
        let cached = [varint(4 << 3), varint(1)].concat();
        let started = field(5, &seconds(10));
        let mut first = vertex_bytes("sha256:a", "[1/3] COPY go.mod .", &[cached]);
        first.extend(vertex_bytes(
            "sha256:b",
            "[2/3] RUN make",
            std::slice::from_ref(&started),
        ));
        first.extend(vertex_bytes("sha256:c", "[3/3] RUN test", &[]));
        progress.render(&decode_status(&first).unwrap(), &mut out);
        progress.render(
            &decode_status(&log_bytes("sha256:b", "line one\nhalf ")).unwrap(),
            &mut out,
        );
        progress.render(
            &decode_status(&log_bytes("sha256:b", "line\n")).unwrap(),
            &mut out,
        );
        let done = vertex_bytes(
            "sha256:b",
            "[2/3] RUN make",
            &[started, field(6, &seconds(12))],
        );
        progress.render(&decode_status(&done).unwrap(), &mut out);
        let failed = vertex_bytes(
            "sha256:c",
            "[3/3] RUN test",
            &[field(5, &seconds(13)), field(7, b"exit code: 1")],
        );
        progress.render(&decode_status(&failed).unwrap(), &mut out);
        progress.render(&decode_status(&first).unwrap(), &mut out);
        assert_eq!(
            out,
            "#1 [1/3] COPY go.mod .\n#1 CACHED\n#2 [2/3] RUN make\n#2 line one\n#2 half line\n#2 DONE 2.0s\n#3 [3/3] RUN test\n#3 ERROR: exit code: 1\n"
        );
    }
}
