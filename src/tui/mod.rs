//! The console: a ratatui front end on the embedded engine. [`app`] holds
//! the state and the `Action`s that change it, the pane modules render it,
//! [`keymap`] turns keys into actions, and [`run`](mod@run) drives the terminal.

pub mod alerts;
pub mod app;
pub mod demo;
pub mod feedback;
pub mod hosts;
pub mod keymap;
pub mod overview;
pub mod run;
pub mod theme;
pub mod view;

pub use run::{ConsoleOptions, run};
