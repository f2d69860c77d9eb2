//! The access token the person gave the page: kept in the tab's session
//! storage (gone when the tab closes), sent as `Authorization: Bearer` when
//! publishing, and, when asked, set as the cookie the server reads a
//! stream's token from. A cookie set by JavaScript cannot be `HttpOnly`:
//! scripts on this origin can read it.

use wasm_bindgen::JsCast;

/// The session-storage key of the token.
const STORAGE_KEY: &str = "sse_token";

/// The cookie a stream's token goes in (the server's `--jwt-cookie`
/// default).
pub const COOKIE: &str = "sse_token";

fn storage() -> Option<web_sys::Storage> {
    web_sys::window()?.session_storage().ok()?
}

fn document() -> Option<web_sys::HtmlDocument> {
    web_sys::window()?.document()?.dyn_into().ok()
}

/// The token kept for this tab, if any.
pub fn stored() -> Option<String> {
    storage()?
        .get_item(STORAGE_KEY)
        .ok()?
        .filter(|t| !t.trim().is_empty())
}

/// Keeps `token` for this tab (an empty one forgets it).
pub fn store(token: &str) {
    let Some(storage) = storage() else { return };
    let token = token.trim();
    let _ = if token.is_empty() {
        storage.remove_item(STORAGE_KEY)
    } else {
        storage.set_item(STORAGE_KEY, token)
    };
}

/// The `Cookie` text that gives (or, with `None`, takes away) the stream
/// token for this origin.
pub fn cookie_text(token: Option<&str>, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    match token {
        Some(token) => format!("{COOKIE}={token}; Path=/; SameSite=Strict{secure}"),
        None => format!("{COOKIE}=; Path=/; Max-Age=0; SameSite=Strict{secure}"),
    }
}

/// Sets (or clears) the stream token cookie.
pub fn set_reading_cookie(token: Option<&str>) {
    let Some(document) = document() else { return };
    let secure = web_sys::window()
        .and_then(|w| w.location().protocol().ok())
        .is_some_and(|p| p == "https:");
    let _ = document.set_cookie(&cookie_text(token.map(str::trim), secure));
}

/// Whether the stream token cookie is set.
pub fn reading_cookie_set() -> bool {
    document().and_then(|d| d.cookie().ok()).is_some_and(|c| {
        c.split(';')
            .any(|p| p.trim().starts_with(&format!("{COOKIE}=")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_scoped_to_the_origin_and_can_be_taken_back() {
        assert_eq!(
            cookie_text(Some("a.b.c"), false),
            "sse_token=a.b.c; Path=/; SameSite=Strict"
        );
        assert_eq!(
            cookie_text(None, true),
            "sse_token=; Path=/; Max-Age=0; SameSite=Strict; Secure"
        );
    }
}
