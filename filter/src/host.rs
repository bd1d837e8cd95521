//! The seam between the filter's glue and the proxy-wasm host: the host
//! calls the request path, the callouts and the activity flush make. The
//! wasm build implements it with real host calls (`ffi`); native tests with
//! a fake host that records every call (`fake_host`), so that the glue
//! itself (which local reply, which headers set, which counters) is tested
//! without Envoy.
//!
//! Every call reports a failure instead of panicking: a panic kills the VM
//! for every request of the worker.

use std::fmt;
use std::time::Duration;

use crate::headers::HeaderPairs;
use crate::metrics::Metric;

/// A host call that failed (the host's status, for logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostError(pub String);

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the glue continues a request with (proxy-wasm's `Action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Let the request go on (headers set, or passed through).
    Continue,
    /// Hold it: answered locally, or waiting for a callout.
    Pause,
}

/// The answer to a callout, as received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallAnswer {
    /// Serialized header pairs (see [`HeaderPairs`]).
    pub headers: Vec<u8>,
    pub body: Vec<u8>,
}

impl CallAnswer {
    /// The first value of `name` (case-insensitive).
    pub fn header(&self, name: &[u8]) -> Option<&[u8]> {
        HeaderPairs::new(&self.headers)
            .ok()?
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
}

/// The host calls the glue makes. "The request" is the one of the HTTP
/// context the call is made from.
pub trait Host {
    /// The request's headers as serialized pairs.
    fn request_headers(&self) -> Result<Vec<u8>, HostError>;
    /// Sets a request header, replacing every existing value.
    fn set_request_header(&self, name: &str, value: &str) -> Result<(), HostError>;
    /// Removes every value of a request header.
    fn remove_request_header(&self, name: &[u8]) -> Result<(), HostError>;
    /// Answers the request locally.
    fn send_reply(
        &self,
        status: u32,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), HostError>;
    /// Lets a paused request go on.
    fn resume_request(&self) -> Result<(), HostError>;
    /// Lets a paused response go on (as the upstream sent it).
    fn resume_response(&self) -> Result<(), HostError>;
    /// The VM-shared value at `key`, if any.
    fn shared_data(&self, key: &str) -> Option<Vec<u8>>;
    /// Writes the VM-shared value at `key` (no compare-and-swap).
    fn set_shared_data(&self, key: &str, value: &[u8]) -> Result<(), HostError>;
    /// Adds `n` to a counter.
    fn add(&self, metric: Metric, n: u64);
    /// Adds one to a counter.
    fn count(&self, metric: Metric) {
        self.add(metric, 1);
    }
    /// Milliseconds since the Unix epoch by the host clock.
    fn now_ms(&self) -> u64;
    /// Sends a callout to `cluster`; its token on success.
    fn dispatch(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, HostError>;
    /// The `:status` of the upstream's response (read in the response
    /// headers' event); `None` when absent or unreadable.
    fn response_status(&self) -> Option<u32>;
    /// Reads the answer of the callout being answered (`num_headers` and
    /// `body_size` as the host reported them). `None` when the callout
    /// failed without a response: the host then reports zero headers.
    fn call_answer(&self, num_headers: usize, body_size: usize) -> Option<CallAnswer>;
}
