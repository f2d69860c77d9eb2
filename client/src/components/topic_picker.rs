//! The topic choice: all, ticker, default or a custom topic.

use leptos::ev::SubmitEvent;
use leptos::prelude::*;

use crate::topic::TopicChoice;

const FIXED: [(&str, &str); 3] = [("all", "All"), ("ticker", "ticker"), ("default", "default")];

/// Radio buttons for the fixed choices and a field for a custom topic.
/// Changing the choice reopens the stream with `?topic=` and starts the list
/// afresh, so only rows of the chosen topic show.
#[component]
pub fn TopicPicker(
    /// The current subscription.
    topic: RwSignal<TopicChoice>,
    /// Why the server refused the stream, if it did.
    refused: ReadSignal<Option<String>>,
) -> impl IntoView {
    let selected = RwSignal::new(topic.get_untracked().kind());
    let error = RwSignal::new(None::<String>);
    let custom_input = NodeRef::<leptos::html::Input>::new();

    let custom_text = move || {
        custom_input
            .get_untracked()
            .map(|input| input.value())
            .unwrap_or_default()
    };
    let apply_custom = move || match TopicChoice::custom(&custom_text()) {
        Ok(choice) => {
            error.set(None);
            selected.set("custom");
            if topic.get_untracked() != choice {
                topic.set(choice);
            }
        }
        Err(text) => error.set(Some(text)),
    };
    let choose = move |kind: &'static str| {
        selected.set(kind);
        error.set(None);
        let choice = match kind {
            "ticker" => TopicChoice::Ticker,
            "default" => TopicChoice::Default,
            "all" => TopicChoice::All,
            _ => {
                if custom_text().trim().is_empty() {
                    if let Some(input) = custom_input.get_untracked() {
                        let _ = input.focus();
                    }
                } else {
                    apply_custom();
                }
                return;
            }
        };
        if topic.get_untracked() != choice {
            topic.set(choice);
        }
    };
    // The choice may also change elsewhere (the list of live topics).
    Effect::new(move |_| {
        let choice = topic.get();
        if selected.get_untracked() != choice.kind() {
            selected.set(choice.kind());
        }
        if let (TopicChoice::Custom(name), Some(input)) = (&choice, custom_input.get_untracked()) {
            input.set_value(name);
        }
    });
    let submit_custom = move |ev: SubmitEvent| {
        ev.prevent_default();
        apply_custom();
    };

    view! {
        <section class="card topics" aria-labelledby="topic-title">
            <h2 id="topic-title">"Topic"</h2>
            <fieldset id="topic-picker" class="segmented">
                <legend class="visually-hidden">"Show events of"</legend>
                {FIXED
                    .into_iter()
                    .map(|(kind, label)| {
                        view! {
                            <label class="segment">
                                <input
                                    type="radio"
                                    name="topic"
                                    id=format!("topic-{kind}")
                                    value=kind
                                    prop:checked=move || selected.get() == kind
                                    on:change=move |_| choose(kind)
                                />
                                <span>{label}</span>
                            </label>
                        }
                    })
                    .collect_view()}
                <label class="segment">
                    <input
                        type="radio"
                        name="topic"
                        id="topic-custom-choice"
                        value="custom"
                        prop:checked=move || selected.get() == "custom"
                        on:change=move |_| choose("custom")
                    />
                    <span>"custom"</span>
                </label>
            </fieldset>
            <form id="topic-custom-form" class="inline-form" novalidate on:submit=submit_custom>
                <label for="topic-custom">"Custom topic"</label>
                <div class="inline">
                    <input
                        id="topic-custom"
                        name="topic"
                        type="text"
                        autocomplete="off"
                        placeholder="e.g. news.eu"
                        aria-describedby="topic-error"
                        node_ref=custom_input
                    />
                    <button id="topic-apply" type="submit">"Subscribe"</button>
                </div>
            </form>
            <p id="topic-error" class="error" role="alert" hidden=move || error.with(Option::is_none)>
                {move || error.get()}
            </p>
            <p id="topic-refused" class="error" role="alert" hidden=move || refused.with(Option::is_none)>
                {move || refused.get()}
            </p>
        </section>
    }
}
