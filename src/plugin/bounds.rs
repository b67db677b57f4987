//! Size caps on every string and list a plugin hands to the host.
//!
//! A plugin's return values and host-call arguments end up in the store (provider
//! ids, status updates, error reasons), in logs and on the wire, so each has a cap
//! here, in one table (PLUGINS.md, "The sandbox", lists it). Identifiers over
//! their cap are refused, because a cut identifier is a wrong one: the call fails,
//! naming the value and the cap. Prose (an error reason, a problem, a log line) is
//! cut at its cap with a visible mark instead, so a failure still says why.
//! Nothing is stored silently at any size. The guest's memory limit already
//! bounds what the host copies out before these checks run.

/// A provider id (a send's `delivery`, a status update's) and a status update's recipient.
pub(crate) const MAX_ID: usize = 256;
/// Error reasons, validate-config problems, status-update reasons, metadata values.
pub(crate) const MAX_TEXT: usize = 1_024;
/// A metadata key.
pub(crate) const MAX_KEY: usize = 64;
/// Entries of a delivery's metadata.
pub(crate) const MAX_METADATA: usize = 32;
/// Status updates from one callback.
pub(crate) const MAX_UPDATES: usize = 1_000;
/// Problems validate-config reports (more are counted, not shown).
pub(crate) const MAX_PROBLEMS: usize = 64;
/// The manifest `describe` returns.
pub(crate) const MAX_MANIFEST: usize = 64 * 1024;
/// A log line (kept; the rest is cut).
pub(crate) const MAX_LOG_LINE: usize = 2_048;
/// An HTTP request's URL.
pub(crate) const MAX_URL: usize = 8 * 1024;
/// An HTTP request's headers: how many, and their names and values together.
pub(crate) const MAX_HEADERS: usize = 64;
pub(crate) const MAX_HEADER_BYTES: usize = 64 * 1024;
/// An HTTP request's body.
pub(crate) const MAX_HTTP_BODY: usize = 4 * 1024 * 1024;
/// An SMTP envelope address (RFC 5321: 64 + 1 + 255), recipients of one submission
/// (the 100 a relay must accept), and the message.
pub(crate) const MAX_ADDRESS: usize = 320;
pub(crate) const MAX_RECIPIENTS: usize = 100;
pub(crate) const MAX_MAIL: usize = 16 * 1024 * 1024;

/// `Err` naming `what`, its length and the cap when it is over `cap` bytes.
pub(crate) fn bytes(what: &str, len: usize, cap: usize) -> Result<(), String> {
    if len > cap {
        Err(format!("{what} of {len} bytes is over the cap of {cap}"))
    } else {
        Ok(())
    }
}

/// `Err` naming how many `what` there are and the cap when there are over `cap`.
pub(crate) fn count(what: &str, n: usize, cap: usize) -> Result<(), String> {
    if n > cap {
        Err(format!("{n} {what} are over the cap of {cap}"))
    } else {
        Ok(())
    }
}

/// `text` cut to at most `cap` bytes (on a character boundary), with a mark saying
/// how much was cut.
pub(crate) fn clip(mut text: String, cap: usize) -> String {
    if text.len() <= cap {
        return text;
    }
    let total = text.len();
    let mut cut = cap;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    text.push_str(&format!(" [cut at {cut} of {total} bytes]"));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_cuts_on_a_character_boundary_and_says_so() {
        let cases = [
            ("short", 10, "short"),
            ("exactly10!", 10, "exactly10!"),
            ("0123456789abc", 10, "0123456789 [cut at 10 of 13 bytes]"),
            ("茶馆茶馆", 4, "茶 [cut at 3 of 12 bytes]"),
        ];
        for (text, cap, expected) in cases {
            assert_eq!(clip(text.to_string(), cap), expected, "{text}");
        }
    }

    #[test]
    fn checks_name_the_value_and_the_cap() {
        assert_eq!(bytes("a provider id", 256, MAX_ID), Ok(()));
        assert_eq!(bytes("a provider id", 257, MAX_ID), Err("a provider id of 257 bytes is over the cap of 256".to_string()));
        assert_eq!(count("status updates", 1_000, MAX_UPDATES), Ok(()));
        assert_eq!(count("status updates", 1_001, MAX_UPDATES), Err("1001 status updates are over the cap of 1000".to_string()));
    }
}
