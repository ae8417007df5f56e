//! Producer signatures: HMAC-SHA256 over the raw body, the key chosen by
//! `X-ARES-KEY-ID`.

use std::net::SocketAddr;

use axum::http::HeaderMap;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::{AuditRecord, GatewayState, KEY_ID_HEADER, SIGNATURE_HEADER};
use crate::store::audit_log::sha256_hex_array;

/// HMAC-SHA256 over the raw body, compared in constant time.
pub fn verify_signature(
    secret: &[u8],
    body: &[u8],
    header: Option<&str>,
) -> Result<(), &'static str> {
    let header = header.ok_or("missing_signature")?;
    let hex = header
        .strip_prefix("sha256=")
        .ok_or("bad_signature_format")?
        .trim();
    let provided = decode_hex(hex).ok_or("signature_mismatch")?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| "signature_mismatch")?;
    mac.update(body);
    mac.verify_slice(&provided)
        .map_err(|_| "signature_mismatch")
}

/// `sha256=<hex>` for `body` (producers and tests sign with this).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let mut s = String::from("sha256=");
    for b in tag.iter() {
        s.push(char::from(b"0123456789abcdef"[(b >> 4) as usize]));
        s.push(char::from(b"0123456789abcdef"[(b & 15) as usize]));
    }
    s
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || s.len() > 128 {
        return None;
    }
    let val = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    s.as_bytes()
        .chunks(2)
        .map(|p| Some(val(p[0])? << 4 | val(p[1])?))
        .collect()
}

impl GatewayState {
    /// Checks the body's signature with the key the request names. On
    /// success returns the key id used (`None` for the default key).
    fn check_signature(
        &self,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Option<String>, &'static str> {
        let header = headers
            .get(SIGNATURE_HEADER)
            .map(|v| v.to_str().unwrap_or(""))
            .filter(|h| !h.is_empty());
        let key_id = match headers.get(KEY_ID_HEADER) {
            None => None,
            Some(v) => Some(v.to_str().map_err(|_| "unknown_key_id")?.trim()),
        };
        match key_id {
            None | Some("default") => verify_signature(&self.secret, body, header).map(|_| None),
            Some(id) => {
                // Unknown ids and bad signatures cost the same HMAC, so timing
                // does not tell which key ids exist.
                let (secret, known) = match self.producer_keys.get(id) {
                    Some(k) => (k.as_slice(), true),
                    None => (self.secret.as_slice(), false),
                };
                let verdict = verify_signature(secret, body, header);
                match (known, verdict) {
                    (true, Ok(())) => Ok(Some(id.to_string())),
                    (_, Err(r @ ("missing_signature" | "bad_signature_format"))) => Err(r),
                    (false, _) => Err("unknown_key_id"),
                    (true, Err(r)) => Err(r),
                }
            }
        }
    }

    /// The signature check both ingest routes start with: the id of the key
    /// that signed the body, or the (audited) reason for a 401. The body's
    /// hash is left to the caller: a batch's accepted lines are audited
    /// with their own hashes, so hashing the whole body would be wasted.
    pub(super) fn authenticate(
        &self,
        client: &SocketAddr,
        headers: &HeaderMap,
        body: &[u8],
        path: &'static str,
    ) -> Result<String, &'static str> {
        match self.check_signature(headers, body) {
            Ok(k) => Ok(k.unwrap_or_else(|| "default".into())),
            Err(reason) => {
                let sha = sha256_hex_array(body);
                self.write_audit(client, &[AuditRecord::reject(reason, path, Some(sha))]);
                Err(reason)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures() {
        let s = sign(b"k", b"body");
        assert!(verify_signature(b"k", b"body", Some(&s)).is_ok());
        assert_eq!(
            verify_signature(b"k", b"body", None),
            Err("missing_signature")
        );
        assert_eq!(
            verify_signature(b"k", b"body", Some(&s[7..])),
            Err("bad_signature_format")
        );
        assert_eq!(
            verify_signature(b"k", b"bodY", Some(&s)),
            Err("signature_mismatch")
        );
        assert_eq!(
            verify_signature(b"k", b"body", Some("sha256=zz")),
            Err("signature_mismatch")
        );
        assert_eq!(
            verify_signature(b"other", b"body", Some(&s)),
            Err("signature_mismatch")
        );
    }
}
