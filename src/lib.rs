//! Vigil: a terminal SOC console. This library holds the engine; `main.rs`
//! is a thin command-line layer over it. See `DESIGN.md` in the shared docs
//! for the data flow: sources → parse → detect → respond → sinks.

pub mod config;
pub mod detect;
pub mod engine;
pub mod event;
pub mod live;
pub mod parse;
pub mod respond;
pub mod sources;
pub mod store;
pub mod tui;
pub mod util;
