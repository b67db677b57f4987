//! Amazon SNS message signatures: a notification (or subscription confirmation) is
//! believed only when its `Signature` verifies under the certificate at
//! `SigningCertURL`, and that URL is an https URL on `sns.<region>.amazonaws.com` (or
//! `.amazonaws.com.cn`). SignatureVersion 1 is SHA1withRSA, 2 is SHA256withRSA, both
//! over the canonical "Key\nValue\n" string of the message type's fields, as AWS
//! documents it. The certificate is fetched through the channel's HTTP grant, asking
//! the host to cache it (`x-rekindle-cache-seconds`), since every callback runs in a
//! fresh instance.

use rekindle_plugin_sdk::http;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::signature::Verifier;
use serde_json::Value;
use base64ct::Encoding;
use x509_cert::der::referenced::OwnedToRef;
use x509_cert::der::DecodePem;

/// The setting that widens the accepted certificate origin, for tests and private
/// deployments only: certificate and subscribe URLs must start with its value instead
/// of matching the SNS host pattern.
pub const TESTING_ORIGIN: &str = "sns_cert_url_prefix_for_testing";
/// How long the host may keep a fetched certificate.
const CERT_CACHE_SECONDS: &str = "86400";
/// Largest certificate accepted (SNS certificates are about 2 KB).
const MAX_CERT_BYTES: usize = 16 * 1024;

/// A verified SNS message: its type and fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified<'a> {
    pub kind: &'a str,
    pub message: &'a Value,
}

/// The string SNS signs: each field of the message type, "Name\nvalue\n", in this
/// order; `Subject` only when the notification has one.
pub fn canonical_string(message: &Value) -> Result<String, String> {
    let kind = text(message, "Type")?;
    let fields: &[&str] = match kind {
        "Notification" => &["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"],
        "SubscriptionConfirmation" | "UnsubscribeConfirmation" => {
            &["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
        }
        other => return Err(format!("SNS message type `{other}` is not Notification, SubscriptionConfirmation or UnsubscribeConfirmation")),
    };
    let mut out = String::new();
    for &name in fields {
        match message.get(name) {
            None if name == "Subject" => {}
            Some(Value::Null) if name == "Subject" => {}
            _ => {
                out.push_str(name);
                out.push('\n');
                out.push_str(text(message, name)?);
                out.push('\n');
            }
        }
    }
    Ok(out)
}

fn text<'a>(message: &'a Value, name: &str) -> Result<&'a str, String> {
    message.get(name).and_then(Value::as_str).ok_or_else(|| format!("SNS message without {name}"))
}

/// Whether `url` may serve SNS certificates or subscription confirmations: https on
/// `sns.<region>.amazonaws.com[.cn]` with no port or user part, or (only when the
/// operator set [`TESTING_ORIGIN`]) a URL starting with that prefix.
pub fn check_sns_url(url: &str, testing_prefix: Option<&str>) -> Result<(), String> {
    if let Some(prefix) = testing_prefix.filter(|p| !p.is_empty()) {
        return if url.starts_with(prefix) && prefix.ends_with('/') {
            Ok(())
        } else {
            Err(format!("`{url}` does not start with {TESTING_ORIGIN} (which must end with /)"))
        };
    }
    let refused = || Err(format!("`{url}` is not an https URL on sns.<region>.amazonaws.com"));
    let Some(rest) = url.strip_prefix("https://") else { return refused() };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let Some(region) = host.strip_prefix("sns.").and_then(|h| h.strip_suffix(".amazonaws.com").or_else(|| h.strip_suffix(".amazonaws.com.cn"))) else {
        return refused();
    };
    let region_ok = !region.is_empty() && region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if region_ok && rest.len() > host.len() {
        Ok(())
    } else {
        refused()
    }
}

/// Checks a parsed SNS message's signature with the certificate `pem`, valid at
/// `now_unix_s`.
pub fn verify_with_certificate(message: &Value, pem: &[u8], now_unix_s: u64) -> Result<(), String> {
    let canonical = canonical_string(message)?;
    let signature = base64ct::Base64::decode_vec(text(message, "Signature")?).map_err(|_| "SNS Signature is not base64".to_string())?;
    let certificate = x509_cert::Certificate::from_pem(pem).map_err(|e| format!("the SNS signing certificate is not a PEM certificate: {e}"))?;
    let validity = &certificate.tbs_certificate.validity;
    let (from, until) = (validity.not_before.to_unix_duration().as_secs(), validity.not_after.to_unix_duration().as_secs());
    if !(from..=until).contains(&now_unix_s) {
        return Err("the SNS signing certificate is not valid now".into());
    }
    let key = rsa::RsaPublicKey::try_from(certificate.tbs_certificate.subject_public_key_info.owned_to_ref())
        .map_err(|e| format!("the SNS signing certificate has no usable RSA key: {e}"))?;
    let signature = Signature::try_from(signature.as_slice()).map_err(|_| "SNS Signature is malformed".to_string())?;
    let verified = match text(message, "SignatureVersion")? {
        "1" => VerifyingKey::<sha1::Sha1>::new(key).verify(canonical.as_bytes(), &signature),
        "2" => VerifyingKey::<sha2::Sha256>::new(key).verify(canonical.as_bytes(), &signature),
        other => return Err(format!("SNS SignatureVersion `{other}` is not 1 or 2")),
    };
    verified.map_err(|_| "the SNS signature does not verify".to_string())
}

/// Verifies an SNS message: its certificate URL, the certificate (fetched through the
/// host, cached there) and the signature.
pub fn verify<'a>(message: &'a Value, testing_prefix: Option<&str>, now_unix_s: u64) -> Result<Verified<'a>, String> {
    let kind = text(message, "Type")?;
    let url = text(message, "SigningCertURL")?;
    check_sns_url(url, testing_prefix)?;
    let pem = get(url)?;
    if pem.len() > MAX_CERT_BYTES {
        return Err(format!("the SNS signing certificate is over {MAX_CERT_BYTES} bytes"));
    }
    verify_with_certificate(message, &pem, now_unix_s)?;
    Ok(Verified { kind, message })
}

/// A GET through the channel's HTTP grant that the host may answer from its cache.
pub fn get(url: &str) -> Result<Vec<u8>, String> {
    let request = http::Request {
        method: "GET".into(),
        url: url.into(),
        headers: vec![("x-rekindle-cache-seconds".into(), CERT_CACHE_SECONDS.into())],
        body: Vec::new(),
    };
    match http::send(&request) {
        Ok(response) if response.status == 200 => Ok(response.body),
        Ok(response) => Err(format!("GET {url} answered {}", response.status)),
        Err(http::HttpError::Denied(why)) => Err(format!(
            "SNS notifications need the SNS host in this channel's grants.http (like \"https://sns.us-east-1.amazonaws.com\"): {why}"
        )),
        Err(http::HttpError::Timeout(why) | http::HttpError::Transport(why) | http::HttpError::TooLarge(why)) => Err(format!("GET {url}: {why}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_sns_hosts_may_serve_certificates() {
        for good in [
            "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
            "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc.pem",
        ] {
            assert!(check_sns_url(good, None).is_ok(), "{good}");
        }
        for bad in [
            "http://sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com.evil.test/x.pem",
            "https://sns.us-east-1.amazonaws.com:8443/x.pem",
            "https://evil.test@sns.us-east-1.amazonaws.com/x.pem",
            "https://sns..amazonaws.com/x.pem",
            "https://sns.US-EAST-1.amazonaws.com/x.pem",
            "https://s3.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com",
            "",
        ] {
            assert!(check_sns_url(bad, None).is_err(), "{bad}");
        }
        assert!(check_sns_url("http://127.0.0.1:9/c.pem", Some("http://127.0.0.1:9/")).is_ok());
        assert!(check_sns_url("http://127.0.0.1:99/c.pem", Some("http://127.0.0.1:9")).is_err(), "a prefix must end with /");
    }

    #[test]
    fn the_canonical_string_follows_the_message_type() {
        let note = serde_json::json!({"Type": "Notification", "MessageId": "m", "TopicArn": "t", "Message": "x", "Timestamp": "ts"});
        assert_eq!(canonical_string(&note).unwrap(), "Message\nx\nMessageId\nm\nTimestamp\nts\nTopicArn\nt\nType\nNotification\n");
        let mut with_subject = note.clone();
        with_subject["Subject"] = "s".into();
        assert!(canonical_string(&with_subject).unwrap().contains("MessageId\nm\nSubject\ns\nTimestamp"));
        let confirm = serde_json::json!({"Type": "SubscriptionConfirmation", "MessageId": "m", "TopicArn": "t", "Message": "x", "Timestamp": "ts", "Token": "k", "SubscribeURL": "u"});
        assert!(canonical_string(&confirm).unwrap().contains("SubscribeURL\nu\nTimestamp\nts\nToken\nk\n"));
        assert!(canonical_string(&serde_json::json!({"Type": "Notification"})).is_err());
    }
}
