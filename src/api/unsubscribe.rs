//! The public one-click unsubscribe endpoint `/u/TOKEN` (RFC 8058): GET shows a
//! confirmation page, POST (the page's form, or a mail client's one-click request)
//! writes the member's unsubscribe for the token's channel.

use super::{blocking, Api};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use std::sync::Arc;

pub(super) async fn unsubscribe_page(State(api): State<Arc<Api>>, Path(token): Path<String>) -> Response {
    if api.links.verify(&token).is_none() {
        return (StatusCode::FORBIDDEN, Html("<p>This link is not valid.</p>")).into_response();
    }
    Html(format!(
        "<!doctype html><meta charset=utf-8><title>Unsubscribe</title>\
         <form method=post action=\"/u/{token}\"><p>Stop these messages?</p><button type=submit>Unsubscribe</button></form>"
    ))
    .into_response()
}

/// RFC 8058 one-click (`List-Unsubscribe=One-Click` body) and the page's form both land here.
pub(super) async fn unsubscribe(State(api): State<Arc<Api>>, Path(token): Path<String>) -> Response {
    let Some((member, channel)) = api.links.verify(&token) else {
        return (StatusCode::FORBIDDEN, Html("<p>This link is not valid.</p>")).into_response();
    };
    let store = api.store.clone();
    let now = chrono::Utc::now().timestamp();
    let ch = channel.clone();
    match blocking(move || store.suppress(&member, &ch, now)).await {
        Ok(()) => {
            tracing::info!(channel = %channel, "unsubscribed");
            tracing::debug!(token = %token, "unsubscribe token");
            Html("<p>You are unsubscribed. You will not get these messages any more.</p>").into_response()
        }
        Err(r) => r,
    }
}

