//! Line ends as the event-stream grammar reads them: CRLF, CR or LF.

/// The pieces of `text` between line ends, the last one included even when
/// empty: `"a\r\nb\n"` is `["a", "b", ""]`, `""` is `[""]`.
pub fn split(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\r' if bytes.get(i + 1) == Some(&b'\n') => {
                pieces.push(&text[start..i]);
                i += 2;
                start = i;
            }
            b'\r' | b'\n' => {
                pieces.push(&text[start..i]);
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    pieces.push(&text[start..]);
    pieces
}

/// `text` with every line end made LF, as a parser hands back the `data` of
/// an event that was written one `data:` line per line.
pub fn normalized(text: &str) -> String {
    split(text).join("\n")
}
