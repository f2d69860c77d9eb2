//! Figures as decimal text, written with integer formatting only: Rust's
//! float formatting (shortest and fixed precision) is several KiB of the
//! page's wasm, and the page only ever needs a few fixed decimals.

/// `value` rounded to `places` decimals (at most 6; half away from zero),
/// like `format!("{value:.places$}")`; `-` for a value that is not finite.
pub fn fixed(value: f64, places: u8) -> String {
    if !value.is_finite() {
        return "-".to_owned();
    }
    let places = u32::from(places.min(6));
    let scale = 10u64.pow(places);
    let scaled = (value.abs() * scale as f64).round() as u64;
    let sign = if value < 0.0 && scaled != 0 { "-" } else { "" };
    let (whole, part) = (scaled / scale, scaled % scale);
    if places == 0 {
        format!("{sign}{whole}")
    } else {
        format!("{sign}{whole}.{part:0width$}", width = places as usize)
    }
}

/// As [`fixed`], with a `+` before a positive value.
pub fn signed(value: f64, places: u8) -> String {
    let text = fixed(value, places);
    if value > 0.0 && text.bytes().any(|b| b.is_ascii_digit() && b != b'0') {
        format!("+{text}")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_formats_fixed_precision() {
        for value in [
            0.0, 0.04, 0.05, 1.25, 9.96, 12.0, 1234.5678, -3.25, -0.04, 1e12,
        ] {
            for places in 0..=3u8 {
                let expected = format!("{value:.*}", usize::from(places));
                let got = fixed(value, places);
                // Halves may round either way in the float formatter.
                if (value * 10f64.powi(i32::from(places))).fract().abs() == 0.5 {
                    continue;
                }
                // No "-0.0": a value that rounds to zero has no sign.
                let zero = expected.bytes().all(|b| matches!(b, b'-' | b'0' | b'.'));
                let expected = if zero {
                    expected.trim_start_matches('-')
                } else {
                    &expected
                };
                assert_eq!(got, expected, "{value} {places}");
            }
        }
        assert_eq!(fixed(2.5, 0), "3");
        assert_eq!(fixed(-2.5, 0), "-3");
        assert_eq!(fixed(-0.04, 1), "0.0");
        assert_eq!(fixed(f64::NAN, 1), "-");
    }

    #[test]
    fn signed_values() {
        assert_eq!(signed(3.26, 1), "+3.3");
        assert_eq!(signed(-3.26, 1), "-3.3");
        assert_eq!(signed(0.01, 1), "0.0");
        assert_eq!(signed(0.0, 0), "0");
    }
}
