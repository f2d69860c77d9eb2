//! An event's details: the event as SSE lines, and the `curl` command that
//! resumes the stream right after it.
//!
//! The browser's `EventSource` hands the page each event's type, id and
//! data, never the bytes: comments, `retry:` and the exact line breaks are
//! gone. The lines are rebuilt from what it parsed, and say so.

use crate::topic::{stream_url, Start, TopicChoice};

/// The event as the server framed it, rebuilt: `id: …`, `event: …` (only for
/// a named event: `message` is the unnamed type), one `data: …` per line of
/// data, and the blank line that ends it.
pub fn sse_lines(id: Option<&str>, event_type: &str, data: &str) -> String {
    let mut lines = String::new();
    if let Some(id) = id {
        lines.push_str("id: ");
        lines.push_str(id);
        lines.push('\n');
    }
    if event_type != "message" {
        lines.push_str("event: ");
        lines.push_str(event_type);
        lines.push('\n');
    }
    for line in data.split('\n') {
        lines.push_str("data: ");
        lines.push_str(line);
        lines.push('\n');
    }
    lines.push('\n');
    lines
}

/// `text` as one shell word: in single quotes, a quote inside written
/// `'\''`.
pub fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The command that resumes `choice`'s stream on `origin` right after the
/// event `id`: `curl -N -H 'Last-Event-ID: <id>' '<origin>/stream?…'`.
/// With `token`, it adds `-H 'Authorization: Bearer <token>'` as a
/// placeholder to fill in: the page never copies a real token.
pub fn resume_command(origin: &str, choice: &TopicChoice, id: &str, token: bool) -> String {
    let mut command = format!(
        "curl -N -H {}",
        shell_quote(&format!("Last-Event-ID: {id}"))
    );
    if token {
        command.push_str(" -H 'Authorization: Bearer <token>'");
    }
    command.push(' ');
    command.push_str(&shell_quote(&format!(
        "{origin}{}",
        stream_url(choice, Start::Live)
    )));
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unnamed_event_has_no_event_line() {
        assert_eq!(
            sse_lines(Some("17-4"), "message", r#"{"seq":4}"#),
            "id: 17-4\ndata: {\"seq\":4}\n\n"
        );
    }

    #[test]
    fn a_named_event_and_several_data_lines() {
        assert_eq!(
            sse_lines(Some("17-3"), "reset", "a\nb"),
            "id: 17-3\nevent: reset\ndata: a\ndata: b\n\n"
        );
        assert_eq!(sse_lines(None, "message", ""), "data: \n\n");
    }

    #[test]
    fn the_resume_command_quotes_for_the_shell() {
        assert_eq!(
            resume_command("http://127.0.0.1:3000", &TopicChoice::Ticker, "17-4", false),
            "curl -N -H 'Last-Event-ID: 17-4' 'http://127.0.0.1:3000/stream?topic=ticker'"
        );
        assert_eq!(
            resume_command("https://example.com", &TopicChoice::All, "1-2", true),
            "curl -N -H 'Last-Event-ID: 1-2' -H 'Authorization: Bearer <token>' \
             'https://example.com/stream'"
        );
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
