//! Sending one request to a served model, with the faults of real servers
//! handled in one place: the base URL with the fewest requests in flight is
//! chosen; a connection error, a timeout, HTTP 408/429/5xx or a broken stream
//! is retried a bounded number of times after a backoff (the server's
//! `Retry-After` when it sends one, else 0.5 s doubling, at most 30 s); any
//! other HTTP error is final and reported with the start of the server's
//! answer. The API key goes into the `Authorization` header only, and no
//! error message carries it.

use anyhow::{anyhow, Result};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How requests are sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HttpOptions {
    /// Requests in flight at once (`--concurrency`).
    pub concurrency: usize,
    /// Longest wait for the response headers, and for each streamed chunk after them (seconds).
    pub timeout_s: f64,
    /// Further attempts after a failed one (`--retries`).
    pub max_retries: u32,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self { concurrency: 1, timeout_s: 120.0, max_retries: 3 }
    }
}

/// Times a request that never reached the server (a kept-alive connection it
/// had closed) is sent again, on top of the retries.
pub const MAX_RESENDS: u32 = 3;

/// The longest `Retry-After` honoured; a longer one is cut to this.
pub const MAX_RETRY_AFTER_S: f64 = 30.0;

/// A failed attempt: whether another may succeed, and why it failed.
#[derive(Debug)]
pub struct Failure {
    pub retryable: bool,
    /// Seconds the server asked us to wait (`Retry-After`), if it did.
    pub retry_after_s: Option<f64>,
    pub error: anyhow::Error,
    /// The request never reached the server (a kept-alive connection it had
    /// closed): sending it again measures nothing twice.
    pub not_sent: bool,
    /// No connection could be made (refused, unknown host): the server is down.
    pub unreachable: bool,
}

impl Failure {
    pub fn fatal(error: anyhow::Error) -> Self {
        Self { retryable: false, retry_after_s: None, error, not_sent: false, unreachable: false }
    }
    pub fn transient(error: anyhow::Error) -> Self {
        Self { retryable: true, retry_after_s: None, error, not_sent: false, unreachable: false }
    }
}

/// A server no connection could be made to, after every retry. The engine
/// stops the run on it (every later request would fail the same way) rather
/// than failing each remaining item; what finished before is kept.
#[derive(Debug, thiserror::Error)]
#[error("{url} cannot be reached after {attempts} attempt(s) ({error}): the server stopped or the URL is wrong; the items finished before are kept — restart the server and run again")]
pub struct Unreachable {
    pub url: String,
    pub attempts: u32,
    pub error: String,
}

/// A client for one endpoint's base URLs.
pub struct Client {
    pub http: reqwest::Client,
    base_urls: Vec<String>,
    /// Requests in flight per base URL; one lock, so choosing and counting are one step.
    in_flight: Mutex<Vec<usize>>,
    api_key: Option<String>,
    pub opts: HttpOptions,
}

/// Holds a base URL's in-flight count up while a request is out.
pub struct Lease<'a> {
    client: &'a Client,
    index: usize,
}

impl Lease<'_> {
    pub fn base_url(&self) -> &str {
        &self.client.base_urls[self.index]
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let mut n = self.client.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        n[self.index] -= 1;
    }
}

impl Client {
    pub fn new(base_urls: Vec<String>, api_key: Option<String>, opts: HttpOptions) -> Result<Arc<Self>> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs_f64(opts.timeout_s.min(30.0)))
            .pool_max_idle_per_host(opts.concurrency.max(1))
            .build()?;
        let in_flight = Mutex::new(vec![0; base_urls.len()]);
        Ok(Arc::new(Self { http, base_urls, in_flight, api_key, opts }))
    }

    /// The base URL with the fewest requests in flight (the first on ties).
    pub fn lease(&self) -> Lease<'_> {
        let mut n = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let index = (0..n.len()).min_by_key(|&i| n[i]).unwrap_or(0);
        n[index] += 1;
        Lease { client: self, index }
    }

    /// A POST of `body` as JSON to `base_url` + `path`, the key attached.
    pub fn post(&self, base_url: &str, path: &str, body: &serde_json::Value) -> reqwest::RequestBuilder {
        self.with_key(self.http.post(format!("{base_url}{path}")).json(body))
    }

    /// A GET of `base_url` + `path`, the key attached.
    pub fn get(&self, base_url: &str, path: &str) -> reqwest::RequestBuilder {
        self.with_key(self.http.get(format!("{base_url}{path}")))
    }

    /// The key as a bearer token: the one place it leaves the process.
    fn with_key(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.api_key {
            Some(k) => rb.bearer_auth(k),
            None => rb,
        }
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.opts.timeout_s)
    }

    /// Sends the request `attempt` makes, retrying transient failures up to
    /// `max_retries` times; returns what the successful attempt gave and how
    /// many retries it took.
    pub async fn with_retries<T, F, Fut>(&self, what: &str, mut attempt: F) -> Result<(T, u32)>
    where
        F: FnMut(String) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, Failure>>,
    {
        let mut retries = 0u32;
        let mut resent = 0u32;
        loop {
            let lease = self.lease();
            let url = lease.base_url().to_string();
            let outcome = attempt(url.clone()).await;
            drop(lease);
            match outcome {
                Ok(v) => return Ok((v, retries)),
                // Never reached the server: sent again at once, silently, and not counted as a retry.
                Err(f) if f.not_sent && resent < MAX_RESENDS => resent += 1,
                Err(f) if f.retryable && retries < self.opts.max_retries => {
                    let wait = backoff_s(retries, f.retry_after_s);
                    tracing_note(&format!("{what} at {url}: {:#}; retry {} in {wait:.1} s", f.error, retries + 1));
                    tokio::time::sleep(Duration::from_secs_f64(wait)).await;
                    retries += 1;
                }
                // A server that cannot be reached at all ends the batch (see `Unreachable`).
                Err(f) if f.unreachable => {
                    return Err(anyhow::Error::new(Unreachable {
                        url,
                        attempts: retries + 1,
                        error: format!("{:#}", f.error),
                    }))
                }
                Err(f) => {
                    let tries = if f.retryable { format!(" (after {} attempts)", retries + 1) } else { String::new() };
                    return Err(f.error.context(format!("{what} at {url} failed{tries}")));
                }
            }
        }
    }
}

/// A retry notice on stderr (progress bars are suspended by the caller's terminal handling).
fn tracing_note(msg: &str) {
    eprintln!("note: {msg}");
}

/// Seconds to wait before retry number `retry` (0-based): the server's
/// `Retry-After` when given (at most [`MAX_RETRY_AFTER_S`]), else 0.5 s × 2^retry, at most 8 s.
pub fn backoff_s(retry: u32, retry_after_s: Option<f64>) -> f64 {
    match retry_after_s {
        Some(s) if s.is_finite() && s >= 0.0 => s.min(MAX_RETRY_AFTER_S),
        _ => (0.5 * 2f64.powi(retry.min(10) as i32)).min(8.0),
    }
}

/// `Retry-After` in seconds: delta-seconds, or an HTTP date from now.
pub fn parse_retry_after(value: &str) -> Option<f64> {
    let v = value.trim();
    if let Ok(s) = v.parse::<f64>() {
        return Some(s);
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    Some(((when.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_milliseconds() as f64 / 1000.0).max(0.0))
}

/// Sends `rb` and waits for the headers (at most the client's timeout);
/// a status that is not success becomes a [`Failure`], retryable for 408, 429 and 5xx.
pub async fn send(client: &Client, rb: reqwest::RequestBuilder) -> std::result::Result<reqwest::Response, Failure> {
    let timeout = client.timeout();
    let resp = match tokio::time::timeout(timeout, rb.send()).await {
        Err(_) => {
            return Err(Failure::transient(anyhow!(
                "no response within {:.1} s (--request-timeout)",
                timeout.as_secs_f64()
            )))
        }
        Ok(Err(e)) => {
            // A kept-alive connection the server closed as we reused it
            // (llama.cpp closes one after 5 requests): the request never
            // reached it, so it goes again at once.
            let not_sent = describe_reqwest(&e).contains("connection closed before message completed");
            let retry_after_s = not_sent.then_some(0.0);
            let error = anyhow!("{}", describe_reqwest(&e));
            return Err(Failure { retryable: true, retry_after_s, error, not_sent, unreachable: e.is_connect() });
        }
        Ok(Ok(r)) => r,
    };
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let retry_after_s =
        resp.headers().get(reqwest::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(parse_retry_after);
    let body = tokio::time::timeout(timeout, resp.text()).await.ok().and_then(|r| r.ok()).unwrap_or_default();
    let excerpt: String = body.chars().take(300).collect();
    let error = anyhow!("HTTP {status}: {}", excerpt.trim());
    let retryable = status.as_u16() == 408 || status.as_u16() == 429 || status.is_server_error();
    Err(Failure { retryable, retry_after_s, error, not_sent: false, unreachable: false })
}

/// A transport error in words, without the URL's query (reqwest's Display
/// includes the URL, which carries no key here, but keep it short).
pub fn describe_reqwest(e: &reqwest::Error) -> String {
    let kind = if e.is_connect() {
        "connection failed"
    } else if e.is_timeout() {
        "timed out"
    } else if e.is_body() || e.is_decode() {
        "the answer broke off"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {detail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_honours_retry_after_within_a_cap() {
        assert_eq!(backoff_s(0, None), 0.5);
        assert_eq!(backoff_s(3, None), 4.0);
        assert_eq!(backoff_s(9, None), 8.0);
        assert_eq!(backoff_s(0, Some(2.0)), 2.0);
        assert_eq!(backoff_s(0, Some(3600.0)), MAX_RETRY_AFTER_S);
        assert_eq!(parse_retry_after(" 1.5 "), Some(1.5));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(0.0));
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn least_in_flight_base_url_is_leased() {
        let c = Client::new(vec!["http://a".into(), "http://b".into()], None, HttpOptions::default()).unwrap();
        let l1 = c.lease();
        let l2 = c.lease();
        assert_eq!((l1.base_url(), l2.base_url()), ("http://a", "http://b"));
        drop(l1);
        assert_eq!(c.lease().base_url(), "http://a");
    }
}
