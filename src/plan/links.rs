//! Signed unsubscribe links: the token every message carries in `{{ unsubscribe_url }}`
//! and the check of a token that comes back to the public `/u/` endpoint.

/// Signed unsubscribe links: `<public_url>/u/<member hex>.<channel>.<signature>`, the
/// signature an HMAC-SHA256 (truncated to 128 bits) of member and channel.
#[derive(Clone)]
pub struct Links {
    pub public_url: String,
    pub key: Vec<u8>,
}

impl Links {
    pub fn unsubscribe_url(&self, member: &str, channel: &str) -> String {
        format!("{}/u/{}", self.public_url, self.token(member, channel))
    }

    pub fn token(&self, member: &str, channel: &str) -> String {
        format!("{}.{channel}.{}", hex(member.as_bytes()), hex(&self.signature(member, channel)))
    }

    fn signature(&self, member: &str, channel: &str) -> [u8; 16] {
        use hmac::{Mac, SimpleHmac};
        let mut mac = <SimpleHmac<sha2::Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(b"unsubscribe\0");
        mac.update(member.as_bytes());
        mac.update(b"\0");
        mac.update(channel.as_bytes());
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        out
    }

    /// The member and channel of a token, if its signature is right (constant-time).
    pub fn verify(&self, token: &str) -> Option<(String, String)> {
        use hmac::{Mac, SimpleHmac};
        let mut parts = token.split('.');
        let (m, c, s) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let member = String::from_utf8(unhex(m)?).ok()?;
        let mut mac = <SimpleHmac<sha2::Sha256> as Mac>::new_from_slice(&self.key).ok()?;
        mac.update(b"unsubscribe\0");
        mac.update(member.as_bytes());
        mac.update(b"\0");
        mac.update(c.as_bytes());
        mac.verify_truncated_left(&unhex(s)?).ok()?;
        Some((member, c.to_string()))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsubscribe_tokens_verify_and_cannot_be_moved_to_another_member() {
        let links = Links { public_url: "http://127.0.0.1:8787".into(), key: b"secret".to_vec() };
        let t = links.token("m-42", "email");
        assert_eq!(links.verify(&t), Some(("m-42".into(), "email".into())));
        let other = t.replacen(&hex(b"m-42"), &hex(b"m-43"), 1);
        assert_eq!(links.verify(&other), None, "a signature for m-42 does not unsubscribe m-43");
        assert_eq!(links.verify(&t.replace(".email.", ".sms.")), None);
        let forged = Links { public_url: String::new(), key: b"guess".to_vec() }.token("m-42", "email");
        assert_eq!(links.verify(&forged), None);
        assert!(links.unsubscribe_url("m-42", "email").starts_with("http://127.0.0.1:8787/u/"));
    }
}
