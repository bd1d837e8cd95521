//! A fake proxy-wasm host for native tests of the glue: it holds the
//! request's headers, the VM-shared data, a clock, the answer of the next
//! callout, and records every call the glue makes, in order.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::Duration;

use crate::headers::serialize_pairs;
use crate::host::{CallAnswer, Host, HostError};
use crate::metrics::Metric;

/// One host call that changes something, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    SetHeader(String, String),
    RemoveHeader(String),
    Reply(Reply),
    Resume,
    ResumeResponse,
    SetShared(String, String),
    Count(Metric),
    Dispatch(Dispatch),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispatch {
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    pub timeout_ms: u64,
}

#[derive(Debug, Default)]
pub struct FakeHost {
    request: RefCell<Vec<(String, String)>>,
    shared: RefCell<HashMap<String, Vec<u8>>>,
    now: Cell<u64>,
    next_token: Cell<u32>,
    /// When set, `dispatch` fails.
    pub refuse_dispatch: Cell<bool>,
    answer: RefCell<Option<CallAnswer>>,
    calls: RefCell<Vec<Call>>,
    /// The upstream's response status `response_status` reads.
    pub response: Cell<Option<u32>>,
    /// Every host call made (reads included), since `request` or
    /// `reset_host_calls`: what a request costs on Envoy's side.
    host_calls: Cell<u32>,
}

impl FakeHost {
    pub fn at(now_ms: u64) -> Self {
        let host = Self::default();
        host.now.set(now_ms);
        host.next_token.set(1);
        host
    }

    /// Starts a new request with these headers (and forgets the calls).
    pub fn request(&self, headers: &[(&str, &str)]) {
        *self.request.borrow_mut() = headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        self.calls.borrow_mut().clear();
        self.host_calls.set(0);
    }

    /// The host calls made since `request` or the last reset, reads included.
    pub fn host_calls(&self) -> u32 {
        self.host_calls.get()
    }

    pub fn reset_host_calls(&self) {
        self.host_calls.set(0);
    }

    fn hostcall(&self) {
        self.host_calls.set(self.host_calls.get() + 1);
    }

    pub fn advance(&self, ms: u64) {
        self.now.set(self.now.get() + ms);
    }

    /// The answer the next `call_answer` reads.
    pub fn answer(&self, status: &str, content_type: &str, body: &str) {
        *self.answer.borrow_mut() = Some(CallAnswer {
            headers: serialize_pairs(&[(":status", status), ("content-type", content_type)]),
            body: body.as_bytes().to_vec(),
        });
    }

    pub fn put_shared(&self, key: &str, value: &str) {
        self.shared
            .borrow_mut()
            .insert(key.to_owned(), value.as_bytes().to_vec());
    }

    /// The calls recorded since the last `take_calls` or `request`.
    pub fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut *self.calls.borrow_mut())
    }

    fn record(&self, call: Call) {
        self.calls.borrow_mut().push(call);
    }
}

/// The counters among `calls`.
pub fn counts(calls: &[Call]) -> Vec<Metric> {
    calls
        .iter()
        .filter_map(|c| match c {
            Call::Count(m) => Some(*m),
            _ => None,
        })
        .collect()
}

/// The one local reply among `calls`.
pub fn the_reply(calls: &[Call]) -> Reply {
    let replies: Vec<&Reply> = calls
        .iter()
        .filter_map(|c| match c {
            Call::Reply(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(replies.len(), 1, "one local reply expected: {calls:?}");
    replies[0].clone()
}

/// The one callout among `calls`.
pub fn the_dispatch(calls: &[Call]) -> Dispatch {
    let dispatches: Vec<&Dispatch> = calls
        .iter()
        .filter_map(|c| match c {
            Call::Dispatch(d) => Some(d),
            _ => None,
        })
        .collect();
    assert_eq!(dispatches.len(), 1, "one callout expected: {calls:?}");
    dispatches[0].clone()
}

/// The request headers set, in order.
pub fn headers_set(calls: &[Call]) -> Vec<(String, String)> {
    calls
        .iter()
        .filter_map(|c| match c {
            Call::SetHeader(n, v) => Some((n.clone(), v.clone())),
            _ => None,
        })
        .collect()
}

fn owned(headers: &[(&str, &str)]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
}

impl Host for FakeHost {
    fn request_headers(&self) -> Result<Vec<u8>, HostError> {
        self.hostcall();
        Ok(serialize_pairs(&self.request.borrow()))
    }

    fn set_request_header(&self, name: &str, value: &str) -> Result<(), HostError> {
        self.hostcall();
        let mut request = self.request.borrow_mut();
        request.retain(|(n, _)| n != name);
        request.push((name.to_owned(), value.to_owned()));
        self.record(Call::SetHeader(name.to_owned(), value.to_owned()));
        Ok(())
    }

    fn remove_request_header(&self, name: &[u8]) -> Result<(), HostError> {
        self.hostcall();
        let name = String::from_utf8_lossy(name).into_owned();
        self.request.borrow_mut().retain(|(n, _)| *n != name);
        self.record(Call::RemoveHeader(name));
        Ok(())
    }

    fn send_reply(
        &self,
        status: u32,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), HostError> {
        self.hostcall();
        self.record(Call::Reply(Reply {
            status,
            headers: owned(headers),
            body: String::from_utf8_lossy(body).into_owned(),
        }));
        Ok(())
    }

    fn resume_request(&self) -> Result<(), HostError> {
        self.hostcall();
        self.record(Call::Resume);
        Ok(())
    }

    fn resume_response(&self) -> Result<(), HostError> {
        self.hostcall();
        self.record(Call::ResumeResponse);
        Ok(())
    }

    fn shared_data(&self, key: &str) -> Option<Vec<u8>> {
        self.hostcall();
        self.shared.borrow().get(key).cloned()
    }

    fn set_shared_data(&self, key: &str, value: &[u8]) -> Result<(), HostError> {
        self.hostcall();
        self.shared
            .borrow_mut()
            .insert(key.to_owned(), value.to_vec());
        self.record(Call::SetShared(
            key.to_owned(),
            String::from_utf8_lossy(value).into_owned(),
        ));
        Ok(())
    }

    /// Recorded as `n` calls of `Count` (what the counter shows).
    fn add(&self, metric: Metric, n: u64) {
        self.hostcall();
        for _ in 0..n {
            self.record(Call::Count(metric));
        }
    }

    fn now_ms(&self) -> u64 {
        self.hostcall();
        self.now.get()
    }

    fn dispatch(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, HostError> {
        self.hostcall();
        if self.refuse_dispatch.get() {
            return Err(HostError("BadArgument".to_owned()));
        }
        self.record(Call::Dispatch(Dispatch {
            cluster: cluster.to_owned(),
            headers: owned(headers),
            body: body.map(|b| String::from_utf8_lossy(b).into_owned()),
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        }));
        let token = self.next_token.get();
        self.next_token.set(token + 1);
        Ok(token)
    }

    fn response_status(&self) -> Option<u32> {
        self.hostcall();
        self.response.get()
    }

    fn call_answer(&self, num_headers: usize, _body_size: usize) -> Option<CallAnswer> {
        self.hostcall();
        if num_headers == 0 {
            return None;
        }
        self.answer.borrow_mut().take()
    }
}
