//! Record the stream and download it as NDJSON, for `server replay`.

use leptos::prelude::*;
use wasm_bindgen::JsValue;

use crate::clock::utc_clock;
use crate::render;
use crate::stream::Stream;

/// Record / Stop, and once stopped a link that downloads the recording:
/// one `shared::RecordedEvent` a line.
#[component]
pub fn Recorder(
    /// The live stream.
    stream: Stream,
) -> impl IntoView {
    let recording = move || stream.insight.with(|i| i.recording);
    // The object URL of the last recording, and its file name.
    let download = RwSignal::new(None::<(String, String)>);
    let origin = window().location().origin().unwrap_or_default();
    let toggle = move |_| {
        if !recording() {
            stream.start_recording();
            return;
        }
        let Some(text) = stream.stop_recording() else {
            return;
        };
        if let Some((url, _)) = download.get_untracked() {
            let _ = web_sys::Url::revoke_object_url(&url);
        }
        let now = js_sys::Date::now();
        let date = String::from(js_sys::Date::new(&JsValue::from_f64(now)).to_iso_string());
        let name = format!(
            "events-{}-{}.ndjson",
            date.get(..10).unwrap_or("recording"),
            utc_clock(now).replace(':', "")
        );
        download.set(object_url(&text).map(|url| (url, name)));
    };
    let status = Memo::new(move |_| {
        let (on, lines) = stream.insight.with(|i| (i.recording, i.recorded));
        download.with(|d| {
            let file = d.as_ref().map(|(url, name)| (url.as_str(), name.as_str()));
            render::recording(on, lines, file, &origin)
        })
    });
    view! {
        <section id="recorder" class="card panel" aria-labelledby="recorder-title">
            <header class="panel-head">
                <h2 id="recorder-title">"Record and replay"</h2>
                <button id="record" type="button" aria-pressed=move || recording().to_string() on:click=toggle>
                    {move || if recording() { "Stop recording" } else { "Record" }}
                </button>
            </header>
            <div role="status" inner_html=status></div>
        </section>
    }
}

/// An object URL for `text` as an NDJSON file.
fn object_url(text: &str) -> Option<String> {
    let parts = js_sys::Array::of1(&JsValue::from_str(text));
    let options = web_sys::BlobPropertyBag::new();
    options.set_type("application/x-ndjson");
    let blob = web_sys::Blob::new_with_str_sequence_and_options(&parts, &options).ok()?;
    web_sys::Url::create_object_url_with_blob(&blob).ok()
}
