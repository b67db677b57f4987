//! Signed unsubscribe links: the token every message carries in `{{ unsubscribe_url }}`
//! and the check of a token that comes back to the public `/u/` endpoint.
//!
//! A token is `<member hex>.<channel>.<signature>`, the signature the first 128 bits of
//! an HMAC-SHA256 over member and channel, in 32 lowercase hex digits. Only a signature of
//! exactly that length is accepted, compared in constant time: a shorter one would let
//! anyone guess it (one byte: 256 tries).

use crate::domain::{hex, MAX_ID_CHARS};
use subtle::ConstantTimeEq;

/// Signature bytes in a token (128 bits, what links already sent carry).
const SIGNATURE_BYTES: usize = 16;

/// The longest token `verify` reads: a member id of `MAX_ID_CHARS` four-byte characters
/// in hex, a channel name and the signature, with room to spare. Longer is refused
/// before any decoding.
pub const MAX_TOKEN_BYTES: usize = 2 * 4 * MAX_ID_CHARS + 256;

/// Signed unsubscribe links: `<public_url>/u/<member hex>.<channel>.<signature>`.
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

    fn signature(&self, member: &str, channel: &str) -> [u8; SIGNATURE_BYTES] {
        use hmac::{Mac, SimpleHmac};
        let mut mac = <SimpleHmac<sha2::Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(b"unsubscribe\0");
        mac.update(member.as_bytes());
        mac.update(b"\0");
        mac.update(channel.as_bytes());
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; SIGNATURE_BYTES];
        out.copy_from_slice(&full[..SIGNATURE_BYTES]);
        out
    }

    /// The member and channel of a token whose signature is the full 128 bits and right
    /// (compared in constant time); None for anything else: truncated, altered, moved to
    /// another member or channel, malformed or over `MAX_TOKEN_BYTES`.
    pub fn verify(&self, token: &str) -> Option<(String, String)> {
        if token.len() > MAX_TOKEN_BYTES {
            return None;
        }
        let mut parts = token.split('.');
        let (m, c, s) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || m.is_empty() || c.is_empty() {
            return None;
        }
        let given: [u8; SIGNATURE_BYTES] = unhex(s)?.try_into().ok()?;
        let member = String::from_utf8(unhex(m)?).ok()?;
        bool::from(self.signature(&member, c).ct_eq(&given)).then(|| (member, c.to_string()))
    }
}

/// Lowercase hex digits, two per byte, as `hex` writes them.
fn unhex(s: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let bytes = s.as_bytes();
    if bytes.len() % 2 != 0 {
        return None;
    }
    bytes.chunks_exact(2).map(|p| Some(digit(p[0])? << 4 | digit(p[1])?)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links() -> Links {
        Links { public_url: "http://127.0.0.1:8787".into(), key: b"secret".to_vec() }
    }

    /// The token's parts: member hex, channel, signature hex.
    fn parts(t: &str) -> (String, String, String) {
        let v: Vec<&str> = t.split('.').collect();
        (v[0].to_string(), v[1].to_string(), v[2].to_string())
    }

    #[test]
    fn unsubscribe_tokens_verify_and_cannot_be_moved_to_another_member() {
        let links = links();
        let t = links.token("m-42", "email");
        assert_eq!(links.verify(&t), Some(("m-42".into(), "email".into())));
        let other = t.replacen(&hex(b"m-42"), &hex(b"m-43"), 1);
        assert_eq!(links.verify(&other), None, "a signature for m-42 does not unsubscribe m-43");
        assert_eq!(links.verify(&t.replace(".email.", ".sms.")), None, "nor m-42 on another channel");
        let forged = Links { public_url: String::new(), key: b"guess".to_vec() }.token("m-42", "email");
        assert_eq!(links.verify(&forged), None);
        assert!(links.unsubscribe_url("m-42", "email").starts_with("http://127.0.0.1:8787/u/"));
    }

    #[test]
    fn a_token_signed_today_has_the_128_bit_signature_links_already_sent_carry() {
        // HMAC-SHA256("secret", "unsubscribe\0m-42\0email") cut to 16 bytes: links in
        // mailboxes were signed so, and keep working
        use hmac::{Mac, SimpleHmac};
        let mut mac = <SimpleHmac<sha2::Sha256> as Mac>::new_from_slice(b"secret").unwrap();
        mac.update(b"unsubscribe\0m-42\0email");
        let full = hex(&mac.finalize().into_bytes());
        let (_, _, sig) = parts(&links().token("m-42", "email"));
        assert_eq!(sig, full[..32]);
        assert_eq!(links().verify(&format!("{}.email.{}", hex(b"m-42"), &full[..32])), Some(("m-42".into(), "email".into())));
    }

    #[test]
    fn a_one_byte_signature_is_refused() {
        let links = links();
        let (m, c, s) = parts(&links.token("m-42", "email"));
        assert_eq!(links.verify(&format!("{m}.{c}.{}", &s[..2])), None, "the right first byte alone");
        let accepted = (0..=255u8).filter(|b| links.verify(&format!("{m}.{c}.{b:02x}")).is_some()).count();
        assert_eq!(accepted, 0, "no one-byte guess passes");
    }

    #[test]
    fn a_signature_of_any_other_length_is_refused() {
        use hmac::{Mac, SimpleHmac};
        let links = links();
        let (m, c, s) = parts(&links.token("m-42", "email"));
        for len in (0..32).step_by(2) {
            assert_eq!(links.verify(&format!("{m}.{c}.{}", &s[..len])), None, "{len} hex digits of the right signature");
        }
        let mut mac = <SimpleHmac<sha2::Sha256> as Mac>::new_from_slice(b"secret").unwrap();
        mac.update(b"unsubscribe\0m-42\0email");
        let full = hex(&mac.finalize().into_bytes());
        assert_eq!(links.verify(&format!("{m}.{c}.{full}")), None, "the whole 256-bit MAC is not the token's signature");
        assert_eq!(links.verify(&format!("{m}.{c}.{s}00")), None, "a byte appended");
    }

    #[test]
    fn an_altered_signature_is_refused() {
        let links = links();
        let (m, c, s) = parts(&links.token("m-42", "email"));
        let mut sig: Vec<u8> = unhex(&s).unwrap();
        for i in 0..sig.len() {
            for bit in 0..8 {
                sig[i] ^= 1 << bit;
                assert_eq!(links.verify(&format!("{m}.{c}.{}", hex(&sig))), None, "byte {i} bit {bit} flipped");
                sig[i] ^= 1 << bit;
            }
        }
        assert_eq!(links.verify(&format!("{m}.{c}.{}", s.to_uppercase())), None, "tokens are lowercase hex, as written");
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let links = links();
        let t = links.token("m-42", "email");
        let (m, c, s) = parts(&t);
        let bad_utf8 = links.token("m-42", "email").replacen(&m, "ff", 1);
        for (token, what) in [
            (String::new(), "empty"),
            (format!("{m}.{c}"), "no signature"),
            (format!("{m}.{c}.{s}.{s}"), "a fourth part"),
            (format!(".{c}.{s}"), "no member"),
            (format!("{m}..{s}"), "no channel"),
            (format!("{}.{c}.{s}", &m[1..]), "odd member hex"),
            (format!("{m}.{c}.{}", &s[1..]), "odd signature hex"),
            (format!("{m}.{c}.{}zz", &s[..30]), "not hex"),
            (format!("{m}.{c}.{}é", &s[..30]), "a multi-byte character in the signature"),
            (bad_utf8, "a member id that is not UTF-8"),
            (format!("{}.{c}.{s}", "6d".repeat(MAX_TOKEN_BYTES)), "huge"),
        ] {
            assert_eq!(links.verify(&token), None, "{what}: {token:.80}");
        }
    }

    #[test]
    fn the_longest_member_id_still_gets_a_link_that_verifies() {
        let links = links();
        let id: String = std::iter::repeat_n('茶', MAX_ID_CHARS).collect();
        let t = links.token(&id, "a-rather-long-channel-name");
        assert!(t.len() <= MAX_TOKEN_BYTES, "{}", t.len());
        assert_eq!(links.verify(&t), Some((id, "a-rather-long-channel-name".into())));
    }
}
