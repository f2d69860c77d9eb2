//! The access token: kept for this tab, sent when publishing, and on
//! request used for reading private topics through a cookie.

use leptos::prelude::*;

use crate::stream::Stream;
use crate::token;

/// A token field with "use for reading" and "forget" buttons. The token is
/// kept in the tab's session storage and sent as `Authorization: Bearer`
/// on every publish; "Use for reading" puts it in the cookie the server
/// reads a stream's token from, and reopens the stream.
#[component]
pub fn TokenPanel(
    /// The live stream, reopened when the reading token changes.
    stream: Stream,
) -> impl IntoView {
    let input = NodeRef::<leptos::html::Input>::new();
    let reading = RwSignal::new(token::reading_cookie_set());
    let note = RwSignal::new(None::<&'static str>);
    let value = move || input.get_untracked().map(|i| i.value()).unwrap_or_default();

    let on_change = move |_| {
        token::store(&value());
        note.set(Some("Kept for this tab: publishing sends it."));
    };
    let use_for_reading = move |_| {
        let text = value();
        token::store(&text);
        if text.trim().is_empty() {
            return;
        }
        token::set_reading_cookie(Some(&text));
        reading.set(true);
        note.set(Some("Reading with this token."));
        stream.reopen();
    };
    let forget = move |_| {
        token::store("");
        token::set_reading_cookie(None);
        if let Some(input) = input.get_untracked() {
            input.set_value("");
        }
        reading.set(false);
        note.set(Some("Forgotten."));
        stream.reopen();
    };

    view! {
        <section class="card token" aria-labelledby="token-title">
            <h2 id="token-title">"Access token"</h2>
            <div class="field">
                <label for="token">"Token " <span class="optional">"(JWT, optional)"</span></label>
                <input
                    id="token"
                    name="token"
                    type="password"
                    autocomplete="off"
                    spellcheck="false"
                    placeholder="eyJhbGciOi…"
                    prop:value=token::stored().unwrap_or_default()
                    on:change=on_change
                    node_ref=input
                />
            </div>
            <div class="actions">
                <button id="token-read" type="button" on:click=use_for_reading>
                    "Use this token for reading"
                </button>
                <button id="token-forget" type="button" class="secondary" on:click=forget>
                    "Forget"
                </button>
            </div>
            <p id="token-state" class="hint" role="status">
                {move || match (note.get(), reading.get()) {
                    (Some(text), _) => text,
                    (None, true) => "Reading with the token in this page's cookie.",
                    (None, false) => "Public topics need no token.",
                }}
            </p>
        </section>
    }
}
