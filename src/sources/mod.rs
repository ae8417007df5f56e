//! Where events come from. Today: files and stdin read offline
//! ([`replay`]), the signed HTTP gateway ([`gateway`]) and syslog listeners
//! ([`syslog`]). File tailing comes later.

pub mod gateway;
pub mod replay;
pub mod syslog;
