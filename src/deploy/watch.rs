//! A list-then-watch that survives dropped connections: it resumes from the last
//! resourceVersion it saw (bookmarks included), and lists again only when the server says that
//! version is gone (410).

use std::time::Duration;

use futures::stream::BoxStream;
use futures::StreamExt;
use kube::api::{Api, DynamicObject, ListParams, WatchEvent, WatchParams};

/// What changed since the last call.
pub enum Change {
    /// A fresh list: everything that matches now (after a start or a 410).
    Listed(Vec<DynamicObject>),
    Applied(Box<DynamicObject>),
    Deleted,
}

const FIRST_RETRY: Duration = Duration::from_millis(100);
const LAST_RETRY: Duration = Duration::from_secs(3);

pub struct ObjectWatch {
    api: Api<DynamicObject>,
    fields: Option<String>,
    labels: Option<String>,
    resource_version: Option<String>,
    stream: Option<BoxStream<'static, kube::Result<WatchEvent<DynamicObject>>>>,
    retry: Duration,
    /// 401 answers in a row; a token source mints a new token after one, so a few are retried.
    unauthorized: u32,
}

/// How many 401 answers in a row a list survives.
const UNAUTHORIZED_RETRIES: u32 = 3;

impl ObjectWatch {
    /// Watches the objects of `api` matching a field selector and/or a label selector.
    pub fn new(api: Api<DynamicObject>, fields: Option<String>, labels: Option<String>) -> Self {
        ObjectWatch {
            api,
            fields,
            labels,
            resource_version: None,
            stream: None,
            retry: FIRST_RETRY,
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
            let Some(version) = self.resource_version.clone() else {
                let mut params = ListParams::default();
                if let Some(f) = &self.fields {
                    params = params.fields(f);
                }
                if let Some(l) = &self.labels {
                    params = params.labels(l);
                }
                match self.api.list(&params).await {
                    Ok(list) => {
                        self.resource_version =
                            Some(list.metadata.resource_version.unwrap_or_default());
                        self.stream = None;
                        self.retry = FIRST_RETRY;
                        self.unauthorized = 0;
                        return Ok(Change::Listed(list.items));
                    }
                    Err(kube::Error::Api(s))
                        if s.code == 401 && self.unauthorized < UNAUTHORIZED_RETRIES =>
                    {
                        self.unauthorized += 1;
                        tracing::debug!("list refused with 401; retrying with a new token");
                        self.back_off().await;
                        continue;
                    }
                    Err(kube::Error::Api(s)) if is_refusal(s.code) => {
                        return Err(kube::Error::Api(s))
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "list failed; retrying");
                        self.back_off().await;
                        continue;
                    }
                }
            };
            if self.stream.is_none() {
                let mut params = WatchParams::default().timeout(290);
                if let Some(f) = &self.fields {
                    params = params.fields(f);
                }
                if let Some(l) = &self.labels {
                    params = params.labels(l);
                }
                match self.api.watch(&params, &version).await {
                    Ok(stream) => self.stream = Some(stream.boxed()),
                    Err(kube::Error::Api(s)) if s.code == 410 => self.resource_version = None,
                    Err(e) => {
                        tracing::debug!(error = %e, "watch failed to start; retrying");
                        self.back_off().await;
                    }
                }
                continue;
            }
            let stream = self.stream.as_mut().expect("a watch is open");
            match stream.next().await {
                Some(Ok(WatchEvent::Added(o) | WatchEvent::Modified(o))) => {
                    self.seen(&o);
                    return Ok(Change::Applied(Box::new(o)));
                }
                Some(Ok(WatchEvent::Deleted(o))) => {
                    self.seen(&o);
                    return Ok(Change::Deleted);
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
        }
    }

    fn seen(&mut self, object: &DynamicObject) {
        if let Some(v) = &object.metadata.resource_version {
            self.resource_version = Some(v.clone());
        }
        self.retry = FIRST_RETRY;
        self.unauthorized = 0;
    }

    async fn back_off(&mut self) {
        tokio::time::sleep(self.retry).await;
        self.retry = (self.retry * 2).min(LAST_RETRY);
    }
}

fn is_refusal(code: u16) -> bool {
    (400..500).contains(&code) && code != 410 && code != 429
}
