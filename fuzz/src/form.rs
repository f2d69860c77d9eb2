//! The `application/x-www-form-urlencoded` parser
//! (<https://url.spec.whatwg.org/#urlencoded-parsing>), which is how a
//! browser's `URLSearchParams` and the server read `/stream?topic=…`.

/// `%XY` with two hex digits becomes that byte; any other `%` stays.
fn percent_decode(bytes: &[u8]) -> Vec<u8> {
    let hex = |b: u8| char::from(b).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let (Some(high), Some(low)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                // Two hex digits are at most 0xFF.
                out.push(u8::try_from(high * 16 + low).expect("one byte"));
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

fn decode(bytes: &[u8]) -> String {
    let plus_as_space: Vec<u8> = bytes
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    String::from_utf8_lossy(&percent_decode(&plus_as_space)).into_owned()
}

/// The name-value pairs of `input`, in order.
pub fn parse(input: &str) -> Vec<(String, String)> {
    input
        .as_bytes()
        .split(|&b| b == b'&')
        .filter(|sequence| !sequence.is_empty())
        .map(|sequence| {
            let (name, value) = match sequence.iter().position(|&b| b == b'=') {
                Some(eq) => (&sequence[..eq], &sequence[eq + 1..]),
                None => (sequence, &[][..]),
            };
            (decode(name), decode(value))
        })
        .collect()
}
