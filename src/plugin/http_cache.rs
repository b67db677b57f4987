//! An opt-in cache of a channel's HTTP GET responses, for what a plugin must fetch on
//! many calls but cannot keep (every call runs in a fresh instance): the SNS signing
//! certificate the email plugin checks each notification against.
//!
//! A plugin asks for it per request with the header `x-rekindle-cache-seconds: N`
//! (removed before the request leaves); a 200 answer is kept for at most N seconds (at
//! most a day). Bounded: a few entries per channel, each a small body, the oldest
//! dropped first. Only answers that passed the channel's grant are stored, and the
//! cache belongs to one channel, so a hit never reaches past that grant.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The request header that asks for caching.
pub(crate) const HEADER: &str = "x-rekindle-cache-seconds";
const MAX_ENTRIES: usize = 16;
const MAX_BODY_BYTES: usize = 64 * 1024;
const MAX_AGE: Duration = Duration::from_secs(86_400);

/// A cached answer: status 200, headers and body.
pub(crate) type Answer = (Vec<(String, String)>, Vec<u8>);

/// One channel's cached GET answers.
#[derive(Default)]
pub(crate) struct GetCache {
    entries: Mutex<VecDeque<(String, Instant, Answer)>>,
}

impl GetCache {
    /// Takes the opt-in header out of `headers`; how long a GET of this request may be
    /// kept, if it asked (and is a GET).
    pub(crate) fn wanted(method: &str, headers: &mut Vec<(String, String)>) -> Option<Duration> {
        let asked = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(HEADER)).and_then(|(_, v)| v.trim().parse::<u64>().ok());
        headers.retain(|(k, _)| !k.eq_ignore_ascii_case(HEADER));
        asked.filter(|&s| s > 0 && method.eq_ignore_ascii_case("GET")).map(|s| Duration::from_secs(s).min(MAX_AGE))
    }

    /// A fresh answer for `url`.
    pub(crate) fn get(&self, url: &str) -> Option<Answer> {
        let entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        entries.iter().find(|(u, until, _)| u == url && Instant::now() < *until).map(|(_, _, answer)| answer.clone())
    }

    /// Keeps a 200 answer for `url` for `keep` (small answers only).
    pub(crate) fn put(&self, url: &str, keep: Duration, answer: &Answer) {
        if answer.1.len() > MAX_BODY_BYTES {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        entries.retain(|(u, until, _)| u != url && now < *until);
        while entries.len() >= MAX_ENTRIES {
            entries.pop_front();
        }
        entries.push_back((url.to_string(), now + keep, answer.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_asked_gets_are_kept_and_the_cache_stays_small() {
        let mut headers = vec![("X-Rekindle-Cache-Seconds".to_string(), "999999".to_string()), ("accept".to_string(), "*/*".to_string())];
        assert_eq!(GetCache::wanted("GET", &mut headers), Some(MAX_AGE));
        assert_eq!(headers.len(), 1, "the opt-in header never leaves");
        assert_eq!(GetCache::wanted("POST", &mut vec![(HEADER.to_string(), "60".to_string())]), None);
        assert_eq!(GetCache::wanted("GET", &mut Vec::new()), None);
        let cache = GetCache::default();
        for i in 0..40 {
            cache.put(&format!("https://x/{i}"), Duration::from_secs(60), &(Vec::new(), vec![1]));
        }
        assert!(cache.get("https://x/0").is_none(), "the oldest went first");
        assert_eq!(cache.get("https://x/39").map(|a| a.1), Some(vec![1]));
        assert_eq!(cache.entries.lock().unwrap().len(), MAX_ENTRIES);
        cache.put("https://x/big", Duration::from_secs(60), &(Vec::new(), vec![0; MAX_BODY_BYTES + 1]));
        assert!(cache.get("https://x/big").is_none());
    }
}
