//! The raw host calls (compiled for `wasm32` only): the [`Host`] seam
//! implemented with `proxy_wasm::hostcalls` (which return `Result`) rather
//! than the SDK's trait helpers (which `unwrap`), and the three header-map
//! calls made directly (see [`raw`]): the SDK's versions panic on non-UTF-8
//! values and on a map the host cannot give, and a panic kills the VM for
//! every request of the worker.

use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MetricType};

use crate::answer::MAX_ANSWER_BYTES;
use crate::host::{CallAnswer, Host, HostError};
use crate::metrics::Metric;

/// Direct header-map host calls that report a failure instead of panicking.
mod raw {
    use std::ptr::null_mut;

    /// `proxy_wasm::types::MapType::HttpRequestHeaders`.
    pub const REQUEST_HEADERS: u32 = 0;
    /// `proxy_wasm::types::MapType::HttpCallResponseHeaders`.
    pub const CALL_RESPONSE_HEADERS: u32 = 6;
    /// `proxy_wasm::types::MapType::HttpResponseHeaders`.
    pub const RESPONSE_HEADERS: u32 = 2;
    const OK: u32 = 0;

    #[link(wasm_import_module = "env")]
    extern "C" {
        fn proxy_get_header_map_pairs(
            map_type: u32,
            return_map_data: *mut *mut u8,
            return_map_size: *mut usize,
        ) -> u32;
        fn proxy_replace_header_map_value(
            map_type: u32,
            key_data: *const u8,
            key_size: usize,
            value_data: *const u8,
            value_size: usize,
        ) -> u32;
        fn proxy_remove_header_map_value(
            map_type: u32,
            key_data: *const u8,
            key_size: usize,
        ) -> u32;
        fn proxy_get_header_map_value(
            map_type: u32,
            key_data: *const u8,
            key_size: usize,
            return_value_data: *mut *mut u8,
            return_value_size: *mut usize,
        ) -> u32;
    }

    /// The value of `name` in a header map (`None`: absent, or the host's
    /// error).
    pub fn header_value(map_type: u32, name: &[u8]) -> Option<Vec<u8>> {
        let mut data: *mut u8 = null_mut();
        let mut size: usize = 0;
        // SAFETY: the host only reads `name` during the call; both
        // out-pointers point to live locals for the whole call.
        let status = unsafe {
            proxy_get_header_map_value(map_type, name.as_ptr(), name.len(), &mut data, &mut size)
        };
        if status != OK || data.is_null() {
            return None;
        }
        // SAFETY: as in `header_map`: `size` bytes the host allocated
        // through this module's allocator, now owned here.
        Some(unsafe { Vec::from_raw_parts(data, size, size) })
    }

    /// The serialized pairs of a header map (see `headers::HeaderPairs`), or
    /// the host's status code.
    pub fn header_map(map_type: u32) -> Result<Vec<u8>, u32> {
        let mut data: *mut u8 = null_mut();
        let mut size: usize = 0;
        // SAFETY: both out-pointers point to live locals for the whole call.
        let status = unsafe { proxy_get_header_map_pairs(map_type, &mut data, &mut size) };
        if status != OK {
            return Err(status);
        }
        if data.is_null() {
            return Ok(Vec::new());
        }
        // SAFETY: on success the host hands over `size` bytes at `data`,
        // allocated through this module's `proxy_on_memory_allocate` (the
        // SDK's, a boxed slice of exactly `size` bytes from the global
        // allocator); the SDK reclaims such buffers the same way.
        Ok(unsafe { Vec::from_raw_parts(data, size, size) })
    }

    /// Sets `name` to `value`, replacing every existing value.
    pub fn replace_header(map_type: u32, name: &[u8], value: &[u8]) -> Result<(), u32> {
        // SAFETY: the host only reads `name` and `value` during the call.
        let status = unsafe {
            proxy_replace_header_map_value(
                map_type,
                name.as_ptr(),
                name.len(),
                value.as_ptr(),
                value.len(),
            )
        };
        if status == OK {
            Ok(())
        } else {
            Err(status)
        }
    }

    /// Removes every value of `name`.
    pub fn remove_header(map_type: u32, name: &[u8]) -> Result<(), u32> {
        // SAFETY: the host only reads `name` during the call.
        let status = unsafe { proxy_remove_header_map_value(map_type, name.as_ptr(), name.len()) };
        if status == OK {
            Ok(())
        } else {
            Err(status)
        }
    }
}

fn status_error(status: impl std::fmt::Debug) -> HostError {
    HostError(format!("{status:?}"))
}

fn code_error(status: u32) -> HostError {
    HostError(format!("status {status}"))
}

/// The real host, with the ids of the counters this VM defined.
#[derive(Debug, Default)]
pub struct WasmHost {
    /// Metric ids, by `Metric::index` (`None`: not defined).
    metrics: [Option<u32>; Metric::ALL.len()],
}

impl WasmHost {
    /// Defines every counter (a counter the host refuses is logged and then
    /// not counted).
    pub fn define_metrics() -> Self {
        let mut metrics = [None; Metric::ALL.len()];
        for metric in Metric::ALL {
            match hostcalls::define_metric(MetricType::Counter, metric.name()) {
                Ok(id) => {
                    if let Some(slot) = metrics.get_mut(metric.index()) {
                        *slot = Some(id);
                    }
                }
                Err(status) => log::warn!("cannot define metric {}: {status:?}", metric.name()),
            }
        }
        Self { metrics }
    }
}

impl Host for WasmHost {
    fn request_headers(&self) -> Result<Vec<u8>, HostError> {
        raw::header_map(raw::REQUEST_HEADERS).map_err(code_error)
    }

    fn set_request_header(&self, name: &str, value: &str) -> Result<(), HostError> {
        raw::replace_header(raw::REQUEST_HEADERS, name.as_bytes(), value.as_bytes())
            .map_err(code_error)
    }

    fn remove_request_header(&self, name: &[u8]) -> Result<(), HostError> {
        raw::remove_header(raw::REQUEST_HEADERS, name).map_err(code_error)
    }

    fn send_reply(
        &self,
        status: u32,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), HostError> {
        hostcalls::send_http_response(status, headers.to_vec(), Some(body)).map_err(status_error)
    }

    fn resume_request(&self) -> Result<(), HostError> {
        hostcalls::resume_http_request().map_err(status_error)
    }

    fn resume_response(&self) -> Result<(), HostError> {
        hostcalls::resume_http_response().map_err(status_error)
    }

    fn shared_data(&self, key: &str) -> Option<Vec<u8>> {
        hostcalls::get_shared_data(key)
            .ok()
            .and_then(|(value, _cas)| value)
    }

    fn set_shared_data(&self, key: &str, value: &[u8]) -> Result<(), HostError> {
        hostcalls::set_shared_data(key, Some(value), None).map_err(status_error)
    }

    fn add(&self, metric: Metric, n: u64) {
        if let Some(Some(id)) = self.metrics.get(metric.index()) {
            let _ = hostcalls::increment_metric(*id, i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// 0 if the clock is unreadable, which only makes every cache entry
    /// look fresh-or-expired consistently.
    fn now_ms(&self) -> u64 {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    fn dispatch(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, HostError> {
        hostcalls::dispatch_http_call(cluster, headers.to_vec(), body, Vec::new(), timeout)
            .map_err(status_error)
    }

    fn response_status(&self) -> Option<u32> {
        let value = raw::header_value(raw::RESPONSE_HEADERS, b":status")?;
        std::str::from_utf8(&value).ok()?.parse().ok()
    }

    fn call_answer(&self, num_headers: usize, body_size: usize) -> Option<CallAnswer> {
        if num_headers == 0 {
            return None;
        }
        let headers = raw::header_map(raw::CALL_RESPONSE_HEADERS).ok()?;
        let body = if body_size == 0 {
            Vec::new()
        } else {
            hostcalls::get_buffer(
                BufferType::HttpCallResponseBody,
                0,
                body_size.min(MAX_ANSWER_BYTES),
            )
            .ok()
            .flatten()
            .unwrap_or_default()
        };
        Some(CallAnswer { headers, body })
    }
}

/// Follows Envoy's log level, so that disabled `debug!` calls cost nothing.
pub fn sync_log_level() {
    if let Ok(level) = hostcalls::get_log_level() {
        proxy_wasm::set_log_level(level);
    }
}

/// Logs at critical level (`log` has none: the host is called directly).
pub fn critical(message: &str) {
    let _ = hostcalls::log(LogLevel::Critical, message);
}

/// The plugin configuration's bytes.
pub fn plugin_configuration(size: usize) -> Result<Vec<u8>, HostError> {
    hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size)
        .map(Option::unwrap_or_default)
        .map_err(status_error)
}

/// Sets the root context's tick period.
pub fn set_tick_period(period: Duration) -> Result<(), HostError> {
    hostcalls::set_tick_period(period).map_err(status_error)
}
