//! Building RFC 5322 / MIME email messages inside a plugin, without any host help.
//!
//! Owns the encodings an international marketing email needs: RFC 2047
//! encoded-words for UTF-8 subjects and display names (folded so no line
//! exceeds 78 characters and no character is split), base64 bodies with
//! 76-character lines, multipart/alternative with text and HTML, a Message-ID
//! derived from the idempotency key (the same key on a retry gives the same
//! id; a hash, so it shows no member id), and RFC 8058 one-click
//! List-Unsubscribe headers. Used by the email
//! plugin and by the file plugin's .eml output.

/// One email, as the plugin has it after rendering.
#[derive(Debug, Clone)]
pub struct Email<'a> {
    pub from_address: &'a str,
    pub from_name: Option<&'a str>,
    pub to_address: &'a str,
    pub to_name: Option<&'a str>,
    pub subject: &'a str,
    pub text: &'a str,
    pub html: Option<&'a str>,
    /// Becomes the multipart boundary.
    pub idempotency_key: &'a str,
    /// The Message-ID header, as [`message_id`] makes it from the idempotency key.
    pub message_id: &'a str,
    /// For the Date header.
    pub date_unix_ms: i64,
    /// `https:` and `mailto:` unsubscribe targets, in order.
    pub list_unsubscribe: Vec<String>,
    /// Extra header lines (`Name`, value); values must be ASCII.
    pub extra_headers: Vec<(String, String)>,
}

/// The complete message, CRLF line endings.
pub fn build(email: &Email<'_>) -> Vec<u8> {
    let mut out = String::with_capacity(email.text.len() * 2 + 1024);
    header(&mut out, "From", &mailbox(email.from_name, email.from_address));
    header(&mut out, "To", &mailbox(email.to_name, email.to_address));
    header(&mut out, "Subject", &encode_text(email.subject, "Subject: ".len()));
    header(&mut out, "Date", &rfc5322_date(email.date_unix_ms));
    header(&mut out, "Message-ID", email.message_id);
    if !email.list_unsubscribe.is_empty() {
        let targets: Vec<String> = email.list_unsubscribe.iter().map(|t| format!("<{t}>")).collect();
        header(&mut out, "List-Unsubscribe", &targets.join(",\r\n "));
        if email.list_unsubscribe.iter().any(|t| t.starts_with("https:")) {
            header(&mut out, "List-Unsubscribe-Post", "List-Unsubscribe=One-Click");
        }
    }
    for (name, value) in &email.extra_headers {
        header(&mut out, name, value);
    }
    header(&mut out, "MIME-Version", "1.0");
    match email.html {
        None => {
            header(&mut out, "Content-Type", "text/plain; charset=utf-8");
            header(&mut out, "Content-Transfer-Encoding", "base64");
            out.push_str("\r\n");
            out.push_str(&base64_lines(email.text.as_bytes()));
        }
        Some(html) => {
            // Base64 never produces "=_", so the boundary cannot occur in a part.
            let boundary = format!("=_rk_{:016x}", fnv1a(email.idempotency_key.as_bytes()));
            header(&mut out, "Content-Type", &format!("multipart/alternative; boundary=\"{boundary}\""));
            out.push_str("\r\n");
            for (content_type, body) in [("text/plain", email.text), ("text/html", html)] {
                out.push_str(&format!("--{boundary}\r\n"));
                header(&mut out, "Content-Type", &format!("{content_type}; charset=utf-8"));
                header(&mut out, "Content-Transfer-Encoding", "base64");
                out.push_str("\r\n");
                out.push_str(&base64_lines(body.as_bytes()));
            }
            out.push_str(&format!("--{boundary}--\r\n"));
        }
    }
    out.into_bytes()
}

fn header(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push_str(": ");
    out.push_str(value);
    out.push_str("\r\n");
}

/// `Name <address>`, with the name quoted or encoded as needed.
pub fn mailbox(name: Option<&str>, address: &str) -> String {
    match name.map(str::trim).filter(|n| !n.is_empty()) {
        None => address.to_string(),
        Some(name) if name.is_ascii() && !name.chars().any(|c| c.is_ascii_control()) => {
            let escaped = name.replace('\\', "\\\\").replace('"', "\\\"");
            format!("\"{escaped}\" <{address}>")
        }
        Some(name) => format!("{} <{address}>", encode_text(name, 0)),
    }
}

/// A header value as is when it is plain printable ASCII, else as RFC 2047
/// `=?UTF-8?B?...?=` words of at most 75 characters, folded onto new lines.
pub fn encode_text(value: &str, _first_line_used: usize) -> String {
    let plain = value.is_ascii() && !value.chars().any(|c| c.is_ascii_control()) && !value.contains("=?") && value.len() <= 66;
    if plain {
        return value.to_string();
    }
    // 45 bytes of UTF-8 make 60 base64 characters: 72 with the `=?UTF-8?B?` `?=` frame.
    const MAX_CHUNK: usize = 45;
    let mut words = Vec::new();
    let mut chunk_start = 0;
    let mut chunk_end = 0;
    for (index, ch) in value.char_indices() {
        let next = index + ch.len_utf8();
        if next - chunk_start > MAX_CHUNK {
            words.push(&value[chunk_start..chunk_end]);
            chunk_start = chunk_end;
        }
        chunk_end = next;
    }
    if chunk_end > chunk_start || words.is_empty() {
        words.push(&value[chunk_start..chunk_end]);
    }
    words
        .iter()
        .map(|word| format!("=?UTF-8?B?{}?=", base64(word.as_bytes())))
        .collect::<Vec<_>>()
        .join("\r\n ")
}

/// `<rk.HASH@DOMAIN>`, HASH the first 128 bits of SHA-256 of the idempotency key in
/// hex: the same key gives the same id (a retry is deduplicated by receivers), and the
/// header every recipient and relay sees shows nothing of the key (rule, run, member id).
pub fn message_id(idempotency_key: &str, domain: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(idempotency_key.as_bytes());
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = String::with_capacity(37 + domain.len());
    id.push_str("<rk.");
    for byte in &digest[..16] {
        id.push(HEX[usize::from(byte >> 4)] as char);
        id.push(HEX[usize::from(byte & 15)] as char);
    }
    id.push('@');
    id.push_str(domain);
    id.push('>');
    id
}

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(ALPHABET[(n >> 18) as usize & 63] as char);
        out.push(ALPHABET[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 { ALPHABET[(n >> 6) as usize & 63] as char } else { '=' });
        out.push(if chunk.len() > 2 { ALPHABET[n as usize & 63] as char } else { '=' });
    }
    out
}

/// Base64 in lines of 76 characters, each ending in CRLF.
pub fn base64_lines(bytes: &[u8]) -> String {
    let encoded = base64(bytes);
    let mut out = String::with_capacity(encoded.len() + encoded.len() / 76 * 2 + 2);
    for line in encoded.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push_str("\r\n");
    }
    out
}

/// `Tue, 24 Nov 2026 15:50:16 +0000` for a Unix time in milliseconds (UTC).
pub fn rfc5322_date(unix_ms: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let seconds = unix_ms.div_euclid(1000);
    let days = seconds.div_euclid(86_400);
    let of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} +0000",
        DAYS[days.rem_euclid(7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// Howard Hinnant's days-to-civil: (year, month 1..=12, day 1..=31).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, expected) in [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foobar", "Zm9vYmFy")] {
            assert_eq!(base64(input.as_bytes()), expected);
        }
    }

    #[test]
    fn dates_render_in_utc() {
        for (ms, expected) in [
            (0, "Thu, 01 Jan 1970 00:00:00 +0000"),
            (951_782_400_000, "Tue, 29 Feb 2000 00:00:00 +0000"),
            (1_795_535_416_000, "Tue, 24 Nov 2026 15:50:16 +0000"),
        ] {
            assert_eq!(rfc5322_date(ms), expected);
        }
    }

    #[test]
    fn long_chinese_subjects_fold_into_whole_character_words() {
        let subject = "您好，老朋友！我们为您准备了专属优惠，欢迎回来选购您最喜欢的茶叶和茶具";
        let encoded = encode_text(subject, 9);
        let mut decoded = Vec::new();
        for line in encoded.split("\r\n ") {
            assert!(line.len() <= 75, "{line}");
            let inner = line.strip_prefix("=?UTF-8?B?").and_then(|l| l.strip_suffix("?=")).expect("encoded word");
            let bytes = decode(inner);
            assert!(std::str::from_utf8(&bytes).is_ok(), "a word split a character");
            decoded.extend(bytes);
        }
        assert_eq!(String::from_utf8(decoded).expect("utf-8"), subject);
        assert_eq!(encode_text("Spring sale", 9), "Spring sale");
        assert_eq!(mailbox(Some("Tea \"House\""), "a@b.example"), "\"Tea \\\"House\\\"\" <a@b.example>");
        // sha256("m42/c7:1"), first 16 bytes (Python: hashlib.sha256(b"m42/c7:1").hexdigest()[:32])
        assert_eq!(message_id("m42/c7:1", "shop.example"), "<rk.0f85e392be4a1f1edc456cc22c10d568@shop.example>");
        assert_ne!(message_id("m42/c7:2", "shop.example"), message_id("m42/c7:1", "shop.example"));
        assert!(!message_id("winback:7:m-1:email", "shop.example").contains("m-1"), "no member id in clear");
    }

    fn decode(text: &str) -> Vec<u8> {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut bits = 0u32;
        let mut count = 0;
        let mut out = Vec::new();
        for byte in text.bytes().filter(|b| *b != b'=') {
            let value = ALPHABET.iter().position(|a| *a == byte).expect("base64 char") as u32;
            bits = (bits << 6) | value;
            count += 6;
            if count >= 8 {
                count -= 8;
                out.push((bits >> count) as u8);
            }
        }
        out
    }
}
