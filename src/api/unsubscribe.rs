//! The public one-click unsubscribe endpoint `/u/TOKEN` (RFC 8058): GET shows a
//! confirmation page, POST (the page's form, or a mail client's one-click request with
//! its `List-Unsubscribe=One-Click` body, no cookies) writes the member's unsubscribe for
//! the token's channel. Nothing changes without a token whose full signature is right
//! (`plan::links::Links::verify`); any other token, however malformed, gets the
//! invalid-link page with 403, which the failure limits count.
//!
//! The pages speak Simplified Chinese and English: `?lang=zh|en` first, then the best
//! language of `Accept-Language` (q-values honoured), else Chinese, as the shops and most
//! of their members are Chinese and a client that sends no Accept-Language (a mail
//! client's one-click POST) shows the page to no one.

use super::{blocking, Api};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use minijinja::HtmlEscape;
use std::sync::Arc;

/// The languages of the pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lang {
    Zh,
    En,
}

impl Lang {
    /// A language tag's primary subtag (`zh-CN`, `zh-Hant`, `en-GB`, ...), if we speak it.
    fn from_tag(tag: &str) -> Option<Lang> {
        let primary = tag.trim().split(['-', '_']).next().unwrap_or("");
        if primary.eq_ignore_ascii_case("zh") {
            Some(Lang::Zh)
        } else if primary.eq_ignore_ascii_case("en") {
            Some(Lang::En)
        } else {
            None
        }
    }

    fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh",
            Lang::En => "en",
        }
    }

    /// `?lang=` first, then the best of Accept-Language, else Chinese.
    fn choose(uri: &Uri, headers: &HeaderMap) -> Lang {
        let asked = uri.query().unwrap_or("").split('&').find_map(|p| p.strip_prefix("lang=")).and_then(Lang::from_tag);
        let accepted = || headers.get_all(header::ACCEPT_LANGUAGE).iter().filter_map(|v| v.to_str().ok()).find_map(best_accepted);
        asked.or_else(accepted).unwrap_or(Lang::Zh)
    }
}

/// The language of highest quality in an Accept-Language value (RFC 9110 12.5.4): the
/// first of equal ones, none with q=0, entries past the 64th ignored.
fn best_accepted(value: &str) -> Option<Lang> {
    let mut best: Option<(u16, Lang)> = None;
    for item in value.split(',').take(64) {
        let mut parts = item.split(';');
        let Some(lang) = parts.next().and_then(Lang::from_tag) else { continue };
        let q = parts.find_map(|p| p.trim().strip_prefix("q=")).map_or(Some(1000), qvalue);
        match q {
            Some(q) if q > 0 && best.is_none_or(|(b, _)| q > b) => best = Some((q, lang)),
            _ => {}
        }
    }
    best.map(|(_, l)| l)
}

/// A q-value in thousandths: `0`, `0.8`, `1`, `1.000` (at most three decimals).
fn qvalue(s: &str) -> Option<u16> {
    let (int, frac) = s.trim().split_once('.').unwrap_or((s.trim(), ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = frac.bytes().chain(std::iter::repeat(b'0')).take(3).fold(0u16, |acc, b| acc * 10 + u16::from(b - b'0'));
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// What the member is unsubscribing from, in their language: email or SMS by the
/// channel's plugin kind or its name (the name is what consent goes by), else the name.
fn channel_label(lang: Lang, kind: Option<&str>, channel: &str) -> String {
    let known = [kind.unwrap_or(""), channel].into_iter().find(|k| matches!(*k, "email" | "sms"));
    match (lang, known) {
        (Lang::Zh, Some("email")) => "邮件".into(),
        (Lang::Zh, Some("sms")) => "短信".into(),
        (Lang::Zh, _) => format!("「{channel}」渠道的消息"),
        (Lang::En, Some("email")) => "emails".into(),
        (Lang::En, Some("sms")) => "text messages".into(),
        (Lang::En, _) => format!("messages on the “{channel}” channel"),
    }
}

enum Page<'a> {
    Confirm { label: &'a str },
    Done { label: &'a str },
    Invalid,
}

/// A page, every piece of text HTML-escaped.
fn page(lang: Lang, page: Page<'_>) -> Response {
    let (status, title, text, button) = match (lang, &page) {
        (Lang::Zh, Page::Confirm { label }) => (StatusCode::OK, "退订".to_string(), format!("您将不再收到我们的{label}。确定退订吗？"), Some("确认退订")),
        (Lang::En, Page::Confirm { label }) => (StatusCode::OK, "Unsubscribe".into(), format!("Stop receiving {label} from us?"), Some("Unsubscribe")),
        (Lang::Zh, Page::Done { label }) => (StatusCode::OK, "已退订".into(), format!("您已退订{label}，今后不会再收到这类消息。"), None),
        (Lang::En, Page::Done { label }) => (StatusCode::OK, "Unsubscribed".into(), format!("You are unsubscribed from {label}. You will not get these messages any more."), None),
        (Lang::Zh, Page::Invalid) => (StatusCode::FORBIDDEN, "链接无效".into(), "此退订链接无效或不完整，请使用消息中的完整链接。".into(), None),
        (Lang::En, Page::Invalid) => (StatusCode::FORBIDDEN, "This link is not valid".into(), "This unsubscribe link is not valid or not complete. Please use the whole link from the message.".into(), None),
    };
    let code = lang.code();
    // the form posts back to this very URL, so the page works below any proxy path
    let form = button.map(|b| format!("<form method=post action=\"?lang={code}\"><button type=submit>{}</button></form>", HtmlEscape(b))).unwrap_or_default();
    let (other, other_name) = match lang {
        Lang::Zh => ("en", "English"),
        Lang::En => ("zh", "中文"),
    };
    let switch = if matches!(page, Page::Done { .. }) { String::new() } else { format!("<p class=lang><a href=\"?lang={other}\">{other_name}</a></p>") };
    let html = format!(
        "<!doctype html><html lang={}><meta charset=utf-8><meta name=viewport content=\"width=device-width,initial-scale=1\">\
         <title>{title}</title><style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;line-height:1.6}}\
         button{{font-size:1rem;padding:.5rem 1.5rem}}.lang{{margin-top:2rem;font-size:.9rem}}</style>\
         <h1>{title}</h1><p>{text}</p>{form}{switch}</html>",
        if lang == Lang::Zh { "zh-CN" } else { "en" },
        title = HtmlEscape(&title),
        text = HtmlEscape(&text),
    );
    (status, [(header::CACHE_CONTROL, "no-store"), (header::VARY, "Accept-Language")], Html(html)).into_response()
}

/// The member and channel of a valid token (a path that did not decode is none).
fn verified(api: &Api, token: Result<Path<String>, PathRejection>) -> Option<(String, String)> {
    token.ok().and_then(|Path(t)| api.links.verify(&t))
}

pub(super) async fn unsubscribe_page(State(api): State<Arc<Api>>, token: Result<Path<String>, PathRejection>, uri: Uri, headers: HeaderMap) -> Response {
    let lang = Lang::choose(&uri, &headers);
    match verified(&api, token) {
        Some((_, channel)) => page(lang, Page::Confirm { label: &channel_label(lang, api.host.kind(&channel), &channel) }),
        None => page(lang, Page::Invalid),
    }
}

/// RFC 8058 one-click (`List-Unsubscribe=One-Click` body) and the page's form both land here.
pub(super) async fn unsubscribe(State(api): State<Arc<Api>>, token: Result<Path<String>, PathRejection>, uri: Uri, headers: HeaderMap) -> Response {
    let lang = Lang::choose(&uri, &headers);
    let Some((member, channel)) = verified(&api, token) else { return page(lang, Page::Invalid) };
    let store = api.store.clone();
    let now = chrono::Utc::now().timestamp();
    let ch = channel.clone();
    let at = member.clone();
    match blocking(move || store.suppress(&at, &ch, now)).await {
        Ok(()) => {
            tracing::info!(channel = %channel, "unsubscribed");
            tracing::debug!(member = %member, "unsubscribed member");
            page(lang, Page::Done { label: &channel_label(lang, api.host.kind(&channel), &channel) })
        }
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> Lang {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_LANGUAGE, value.parse().unwrap());
        Lang::choose(&Uri::from_static("/u/x"), &h)
    }

    #[test]
    fn accept_language_picks_the_best_language_by_q_value() {
        assert_eq!(accept("en-US,en;q=0.9"), Lang::En);
        assert_eq!(accept("zh-CN,zh;q=0.9,en;q=0.8"), Lang::Zh);
        assert_eq!(accept("en;q=0.5, zh-TW;q=0.8"), Lang::Zh, "a higher q wins, wherever it stands");
        assert_eq!(accept("zh;q=0.5, en-GB;q=0.7, de"), Lang::En, "a language we do not speak is passed over");
        assert_eq!(accept("en;q=0, fr"), Lang::Zh, "q=0 means not acceptable: the default");
        assert_eq!(accept("zh;q=0.800, EN;q=0.801"), Lang::En, "thousandths count; tags are case-insensitive");
        assert_eq!(accept("en;q=1.5, zh;q=0.1"), Lang::Zh, "a q-value out of range is ignored");
        assert_eq!(accept("en;q=NaN, en;q=inf, zh;q=0.2"), Lang::Zh);
        assert_eq!(accept(&"x,".repeat(100_000)), Lang::Zh, "a huge header costs at most 64 entries");
        assert_eq!(accept(""), Lang::Zh);
    }

    #[test]
    fn the_lang_parameter_overrides_accept_language() {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_LANGUAGE, "zh-CN".parse().unwrap());
        assert_eq!(Lang::choose(&Uri::from_static("/u/x?lang=en"), &h), Lang::En);
        assert_eq!(Lang::choose(&Uri::from_static("/u/x?a=1&lang=zh"), &HeaderMap::new()), Lang::Zh);
        assert_eq!(Lang::choose(&Uri::from_static("/u/x?lang=klingon"), &h), Lang::Zh, "an unknown lang falls back to the header");
    }

    #[test]
    fn channel_names_on_the_page_are_html_escaped() {
        let label = channel_label(Lang::En, None, "<script>alert(1)</script>");
        let r = page(Lang::En, Page::Confirm { label: &label });
        let body = futures_body(r);
        assert!(!body.contains("<script>") && body.contains("&lt;script&gt;"), "{body}");
    }

    fn futures_body(r: Response) -> String {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let bytes = rt.block_on(axum::body::to_bytes(r.into_body(), 1 << 20)).unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }
}
