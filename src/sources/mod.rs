//! Where events come from. Today: files and stdin read offline
//! ([`replay`]); the live gateway, syslog and tail sources come later.

pub mod gateway;
pub mod replay;
