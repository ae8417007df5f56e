//! Where events come from. Today: files and stdin read offline
//! ([`replay`]), the signed HTTP gateway ([`gateway`]) and syslog listeners
//! ([`syslog`]), and files followed as they grow ([`tail`]).

pub mod gateway;
pub mod journald;
pub mod replay;
pub mod syslog;
pub mod tail;
