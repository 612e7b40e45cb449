//! A list-then-watch that survives dropped connections: it resumes from the last
//! resourceVersion it saw (bookmarks included), and lists again only when the server says that
//! version is gone (410).

use std::time::Duration;

use futures::stream::BoxStream;
use futures::StreamExt;
use kube::api::{Api, DynamicObject, ListParams, WatchEvent, WatchParams};

use crate::retry::RetryPolicy;

/// What changed since the last call.
pub enum Change {
    /// A fresh list: everything that matches now (after a start or a 410).
    Listed(Vec<DynamicObject>),
    Applied(Box<DynamicObject>),
    Deleted,
}

/// The pause after a failed list or watch: 100 ms, doubling up to 3 s, for as long as it takes
/// (the rollout's deadline bounds it); a delivered change starts it over.
const BACK_OFF: RetryPolicy = RetryPolicy {
    attempts: u32::MAX,
    first_delay: Duration::from_millis(100),
    factor: 2,
    max_delay: Duration::from_secs(3),
    max_wait: None,
};

pub struct ObjectWatch {
    api: Api<DynamicObject>,
    fields: Option<String>,
    labels: Option<String>,
    resource_version: Option<String>,
    stream: Option<BoxStream<'static, kube::Result<WatchEvent<DynamicObject>>>>,
    /// Failed requests since the last delivered change, for [`BACK_OFF`].
    failures: u32,
    /// 401 answers in a row; a token source mints a new token after one, so a few are retried.
    unauthorized: u32,
}

/// How many 401 answers in a row a list survives.
const UNAUTHORIZED_RETRIES: u32 = 3;

/// What to do about a failed list.
#[derive(Debug, PartialEq, Eq)]
enum ListFailure {
    /// A 401 while the token may be stale: list again, with the next token.
    NewToken,
    /// The server refuses outright (forbidden, not found, ...): the caller's error.
    Refused,
    /// A connection failure, a server error, throttling: list again after a pause.
    Retry,
}

impl ListFailure {
    /// Judges a list error, `unauthorized` 401s in a row before it.
    fn of(error: &kube::Error, unauthorized: u32) -> ListFailure {
        match error {
            kube::Error::Api(s) if s.code == 401 && unauthorized < UNAUTHORIZED_RETRIES => {
                ListFailure::NewToken
            }
            kube::Error::Api(s) if is_refusal(s.code) => ListFailure::Refused,
            _ => ListFailure::Retry,
        }
    }
}

impl ObjectWatch {
    /// Watches the objects of `api` matching a field selector and/or a label selector.
    pub fn new(api: Api<DynamicObject>, fields: Option<String>, labels: Option<String>) -> Self {
        ObjectWatch {
            api,
            fields,
            labels,
            resource_version: None,
            stream: None,
            failures: 0,
            unauthorized: 0,
        }
    }

    /// The next change. Connection failures are retried here with a short back-off; only a
    /// list the server refuses outright (a 4xx other than 410 and 429: forbidden, not found)
    /// is returned as an error.
    ///
    /// Cancel-safe: dropping the future loses no event, because the resourceVersion is only
    /// advanced when an event is returned.
    pub async fn next(&mut self) -> kube::Result<Change> {
        loop {
            let change = match self.resource_version.clone() {
                None => self.list().await?,
                Some(version) if self.stream.is_none() => {
                    self.open(&version).await;
                    None
                }
                Some(_) => self.receive().await,
            };
            if let Some(change) = change {
                return Ok(change);
            }
        }
    }

    /// Lists what matches now; `None` after a failure worth another try.
    async fn list(&mut self) -> kube::Result<Option<Change>> {
        let mut params = ListParams::default();
        if let Some(f) = &self.fields {
            params = params.fields(f);
        }
        if let Some(l) = &self.labels {
            params = params.labels(l);
        }
        let error = match self.api.list(&params).await {
            Ok(list) => {
                self.resource_version = Some(list.metadata.resource_version.unwrap_or_default());
                self.stream = None;
                self.failures = 0;
                self.unauthorized = 0;
                return Ok(Some(Change::Listed(list.items)));
            }
            Err(error) => error,
        };
        match ListFailure::of(&error, self.unauthorized) {
            ListFailure::NewToken => {
                self.unauthorized += 1;
                tracing::debug!("list refused with 401; retrying with a new token");
            }
            ListFailure::Refused => return Err(error),
            ListFailure::Retry => tracing::debug!(error = %error, "list failed; retrying"),
        }
        self.back_off().await;
        Ok(None)
    }

    /// Opens a watch from `version`; a 410 (the version is gone) makes the next call list.
    async fn open(&mut self, version: &str) {
        let mut params = WatchParams::default().timeout(290);
        if let Some(f) = &self.fields {
            params = params.fields(f);
        }
        if let Some(l) = &self.labels {
            params = params.labels(l);
        }
        match self.api.watch(&params, version).await {
            Ok(stream) => self.stream = Some(stream.boxed()),
            Err(kube::Error::Api(s)) if s.code == 410 => self.resource_version = None,
            Err(e) => {
                tracing::debug!(error = %e, "watch failed to start; retrying");
                self.back_off().await;
            }
        }
    }

    /// The next event of the open watch; `None` when it was a bookmark or the watch ended.
    async fn receive(&mut self) -> Option<Change> {
        let stream = self.stream.as_mut().expect("a watch is open");
        match stream.next().await {
            Some(Ok(WatchEvent::Added(o) | WatchEvent::Modified(o))) => {
                self.seen(&o);
                return Some(Change::Applied(Box::new(o)));
            }
            Some(Ok(WatchEvent::Deleted(o))) => {
                self.seen(&o);
                return Some(Change::Deleted);
            }
            Some(Ok(WatchEvent::Bookmark(b))) => {
                self.resource_version = Some(b.metadata.resource_version);
            }
            Some(Ok(WatchEvent::Error(s))) => {
                self.stream = None;
                if s.code == 410 {
                    self.resource_version = None;
                } else {
                    tracing::debug!(code = s.code, message = %s.message, "watch error; resuming");
                    self.back_off().await;
                }
            }
            Some(Err(e)) => {
                // A cut connection: resume from the last version seen.
                tracing::debug!(error = %e, "watch broke; resuming");
                self.stream = None;
                self.back_off().await;
            }
            None => self.stream = None,
        }
        None
    }

    fn seen(&mut self, object: &DynamicObject) {
        if let Some(v) = &object.metadata.resource_version {
            self.resource_version = Some(v.clone());
        }
        self.failures = 0;
        self.unauthorized = 0;
    }

    async fn back_off(&mut self) {
        self.failures = self.failures.saturating_add(1);
        tokio::time::sleep(BACK_OFF.delay(self.failures)).await;
    }
}

fn is_refusal(code: u16) -> bool {
    (400..500).contains(&code) && code != 410 && code != 429
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure("no", "Reason")
                .with_code(code)
                .boxed(),
        )
    }

    #[test]
    fn list_failures_are_judged_by_status_and_401_count() {
        assert_eq!(ListFailure::of(&api_error(401), 0), ListFailure::NewToken);
        assert_eq!(ListFailure::of(&api_error(401), 2), ListFailure::NewToken);
        assert_eq!(ListFailure::of(&api_error(401), 3), ListFailure::Refused);
        for refused in [403, 404, 400] {
            assert_eq!(
                ListFailure::of(&api_error(refused), 0),
                ListFailure::Refused
            );
        }
        for again in [410, 429, 500, 503] {
            assert_eq!(ListFailure::of(&api_error(again), 0), ListFailure::Retry);
        }
        let not_api = kube::Error::LinesCodecMaxLineLengthExceeded;
        assert_eq!(ListFailure::of(&not_api, 9), ListFailure::Retry);
    }

    #[test]
    fn the_back_off_doubles_from_100_ms_to_3_s() {
        let pauses: Vec<u128> = (1..=7).map(|n| BACK_OFF.delay(n).as_millis()).collect();
        assert_eq!(pauses, [100, 200, 400, 800, 1600, 3000, 3000]);
    }
}
