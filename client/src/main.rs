//! Starts the page: panic messages go to the browser console, then the app
//! is mounted on `<body>`.

fn main() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(client::App);
}
