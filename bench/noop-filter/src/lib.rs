//! A proxy-wasm HTTP filter that does nothing: every callback keeps the SDK's
//! default, which lets the request through (`Continue`).
//!
//! `make bench` loads it into an Envoy started like the others to measure the
//! floor every wasm filter pays (the VM, the ABI crossings per stream), so
//! that the cost of the Paastis filter's own work can be told apart from it.
//! It is built for `wasm32-wasip1` only; natively it is an empty library (so
//! `cargo test --workspace` and clippy still build it). It depends on
//! proxy-wasm alone: nothing of Paastis may leak into the floor it measures.

#[cfg(target_arch = "wasm32")]
mod filter {
    use proxy_wasm::traits::{Context, HttpContext};
    use proxy_wasm::types::LogLevel;

    proxy_wasm::main! {{
        proxy_wasm::set_log_level(LogLevel::Warn);
        proxy_wasm::set_http_context(|_, _| -> Box<dyn HttpContext> { Box::new(Noop) });
    }}

    /// One per stream, as Envoy creates them; nothing overridden.
    struct Noop;

    impl Context for Noop {}

    impl HttpContext for Noop {}
}
