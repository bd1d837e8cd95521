//! The test kit of Paastis, and the end-to-end suites (in `tests/`).
//!
//! Owns what tests need around the gateway, never the gateway itself: it
//! must not depend on `paastis-sidecar` or `paastis-filter` (it runs their
//! built artefacts), so that the sidecar can use it as a dev-dependency
//! without a cycle. Suites that exercise only the sidecar live in
//! `sidecar/tests/`.
//!
//! The [`fake`] module is an in-process fake of the Scalingo API (auth API,
//! one regional API per region, one app front-end per region) that follows
//! `shared/scalingo-api.md`, the project's API contract. The `fake-scalingo`
//! binary serves the same fake for demos and shell debugging.
//!
//! The [`harness`] module starts the whole gateway for the end-to-end tests:
//! a real Envoy with the built `.wasm`, the sidecar binary, and the fake;
//! [`redis`] runs a private `redis-server` for a test; [`browser`] drives a
//! real headless Chromium through chromedriver; [`openapi`] checks live
//! answers against the project's OpenAPI documents.
pub mod browser;
pub mod fake;
pub mod harness;
pub mod openapi;
pub mod redis;
pub mod setup;
