//! The proxy-wasm contexts (compiled for `wasm32` only), kept thin: each
//! host event is handed to the glue ([`Stream`] for an HTTP context,
//! [`Flusher`] for the root), with the real host ([`WasmHost`]).

use std::rc::Rc;
use std::time::Duration;

use log::info;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

use crate::ffi::{critical, plugin_configuration, set_tick_period, sync_log_level, WasmHost};
use crate::flusher::Flusher;
use crate::host::Flow;
use crate::shared::Shared;
use crate::stream::Stream;

proxy_wasm::main! {{
    // Raised or lowered to Envoy's own level in `on_configure` and on each tick.
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

fn action(flow: Flow) -> Action {
    match flow {
        Flow::Continue => Action::Continue,
        Flow::Pause => Action::Pause,
    }
}

#[derive(Default)]
struct Root {
    host: Rc<WasmHost>,
    shared: Option<Rc<Shared>>,
    flusher: Flusher,
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        if let Some(shared) = &self.shared {
            self.flusher
                .on_call_answer(&*self.host, shared, token_id, num_headers, body_size);
        }
    }
}

impl RootContext for Root {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        true
    }

    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        sync_log_level();
        let bytes = match plugin_configuration(plugin_configuration_size) {
            Ok(bytes) => bytes,
            Err(e) => {
                critical(&format!("invalid configuration: cannot read it ({e})"));
                return false;
            }
        };
        let shared = match Shared::configure(&bytes, self.shared.as_deref()) {
            Ok(shared) => shared,
            Err(e) => {
                critical(&e);
                return false;
            }
        };
        let host = WasmHost::define_metrics();
        let config = &shared.config;
        if let Err(e) = set_tick_period(Duration::from_millis(config.activity_flush_ms)) {
            critical(&format!("cannot set the activity tick: {e}"));
            return false;
        }
        info!(
            "configured: sidecar cluster {}, routing header {}, cache ttl {} ms, flush every {} ms, failure policy {:?}",
            config.sidecar_cluster,
            config.routing_header,
            config.cache_ttl_ms,
            config.activity_flush_ms,
            config.failure_policy
        );
        self.host = Rc::new(host);
        self.shared = Some(Rc::new(shared));
        true
    }

    fn on_tick(&mut self) {
        sync_log_level();
        if let Some(shared) = &self.shared {
            self.flusher.tick(&*self.host, shared);
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http {
            host: Rc::clone(&self.host),
            stream: Stream::new(self.shared.clone()),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Http {
    host: Rc<WasmHost>,
    stream: Stream,
}

impl Context for Http {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        self.stream
            .on_call_answer(&*self.host, token_id, num_headers, body_size);
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        action(self.stream.on_request_headers(&*self.host))
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        action(self.stream.on_response_headers(&*self.host))
    }

    fn on_log(&mut self) {
        self.stream.close();
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        // `on_log` normally did it; a context deleted without it must not
        // leave its stream counted as open forever.
        self.stream.close();
    }
}
