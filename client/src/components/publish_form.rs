//! The form that publishes a message.

use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::PublishRequest;

use crate::api;

/// Message and topic fields POSTed to `/publish`. The server decides what is
/// valid: its error message is shown beside the form when it refuses.
///
/// The fields are read when the form is submitted, so whatever put the text
/// there (typing, pasting, autofill) counts.
#[component]
pub fn PublishForm() -> impl IntoView {
    let message = NodeRef::<leptos::html::Input>::new();
    let topic = NodeRef::<leptos::html::Input>::new();
    let error = RwSignal::new(None::<String>);
    let result = RwSignal::new(None::<String>);
    let sending = RwSignal::new(false);

    let submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        if sending.get_untracked() {
            return;
        }
        let (Some(message_input), Some(topic_input)) =
            (message.get_untracked(), topic.get_untracked())
        else {
            return;
        };
        let topic = topic_input.value().trim().to_owned();
        let request = PublishRequest {
            message: message_input.value(),
            topic: (!topic.is_empty()).then_some(topic),
        };
        sending.set(true);
        error.set(None);
        result.set(None);
        spawn_local(async move {
            match api::publish(&request).await {
                Ok(answer) => {
                    result.set(Some(format!(
                        "Published #{} to {}.",
                        answer.seq, answer.topic
                    )));
                    message_input.set_value("");
                }
                Err(text) => error.set(Some(text)),
            }
            sending.set(false);
        });
    };

    view! {
        <form id="publish-form" class="card publish" novalidate on:submit=submit>
            <h2>"Publish"</h2>
            <div class="field">
                <label for="publish-message">"Message"</label>
                <input
                    id="publish-message"
                    name="message"
                    type="text"
                    autocomplete="off"
                    placeholder="Hello, everyone"
                    aria-describedby="publish-error"
                    aria-invalid=move || error.with(Option::is_some).to_string()
                    node_ref=message
                />
            </div>
            <div class="field">
                <label for="publish-topic">"Topic " <span class="optional">"(optional)"</span></label>
                <input
                    id="publish-topic"
                    name="topic"
                    type="text"
                    autocomplete="off"
                    placeholder="default"
                    node_ref=topic
                />
            </div>
            <div class="actions">
                <button id="publish-submit" type="submit" disabled=move || sending.get()>
                    {move || if sending.get() { "Publishing…" } else { "Publish" }}
                </button>
            </div>
            <p id="publish-error" class="error" role="alert" hidden=move || error.with(Option::is_none)>
                {move || error.get()}
            </p>
            <p id="publish-result" class="ok" role="status">
                {move || result.get()}
            </p>
        </form>
    }
}
