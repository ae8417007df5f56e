//! Response: what Vigil does about what it detected. [`policy`] decides per
//! event and keeps host cooldowns, quarantines and IP bans.

pub mod policy;
