//! The page's clock against the server's, so that an event's `time` (the
//! server's clock when it stored the event) tells how late the event
//! arrived.
//!
//! The page asks `GET /time` a few times. For each answer it knows when it
//! asked and when the answer came, in its own clock, and what the server's
//! clock said somewhere in between. Taking the middle of the round trip as
//! the moment the server read its clock is wrong by at most half the round
//! trip, so the probe with the fastest round trip gives the best estimate.

/// One `GET /time` round trip.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Probe {
    /// When the request was sent, in the page's clock (ms since the epoch).
    pub sent_ms: f64,
    /// When the answer arrived, in the page's clock.
    pub received_ms: f64,
    /// The server's clock in the answer (`unix_ms`).
    pub server_ms: f64,
}

impl Probe {
    /// The round trip's duration.
    pub fn rtt_ms(&self) -> f64 {
        (self.received_ms - self.sent_ms).max(0.0)
    }
}

/// How far the server's clock is ahead of the page's, and how sure that is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClockOffset {
    /// Server clock minus page clock, in ms (negative: the page's clock is
    /// ahead).
    pub offset_ms: f64,
    /// The round trip the estimate came from: the offset is right within
    /// half of it (plus the server's 1 ms resolution).
    pub rtt_ms: f64,
}

impl ClockOffset {
    /// The estimate from the probe with the fastest round trip, or `None`
    /// without a probe.
    pub fn estimate(probes: &[Probe]) -> Option<Self> {
        let best = probes
            .iter()
            .filter(|p| p.received_ms >= p.sent_ms)
            .min_by(|a, b| a.rtt_ms().total_cmp(&b.rtt_ms()))?;
        Some(Self {
            offset_ms: best.server_ms - (best.sent_ms + best.received_ms) / 2.0,
            rtt_ms: best.rtt_ms(),
        })
    }

    /// The page-clock time of a server-clock time.
    pub fn to_local(&self, server_ms: f64) -> f64 {
        server_ms - self.offset_ms
    }

    /// How late an event sent at `server_ms` (server clock) is, having
    /// arrived at `arrived_ms` (page clock). Never negative: what the
    /// estimate cannot tell apart from zero counts as zero.
    pub fn latency_ms(&self, server_ms: f64, arrived_ms: f64) -> f64 {
        (arrived_ms - self.to_local(server_ms)).max(0.0)
    }
}

/// The `unix_ms` of a `GET /time` answer (`{"unix_ms": N}`, a
/// `shared::ServerTime`), read without a JSON library; `None` when the text
/// has no such field.
pub fn parse_server_time(json: &str) -> Option<f64> {
    let (_, after) = json.split_once("\"unix_ms\"")?;
    let value = after.trim_start().strip_prefix(':')?.trim_start();
    let digits = value.bytes().take_while(u8::is_ascii_digit).count();
    value.get(..digits)?.parse::<u64>().ok().map(|ms| ms as f64)
}

/// Milliseconds since the Unix epoch of an RFC 3339 time such as the
/// server writes (`2026-12-01T09:23:06.527Z`; any fraction of a second,
/// `Z` or a `±HH:MM` offset). `None` when the text is not one.
pub fn parse_rfc3339_ms(text: &str) -> Option<f64> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        let part = text.get(from..to)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 60 {
        return None;
    }
    let mut rest = &text[19..];
    // Milliseconds of the fraction, further digits cut off (as the
    // server's clock is read), without float parsing.
    let mut millis = 0;
    if let Some(after) = rest.strip_prefix('.') {
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        for place in 0..3 {
            let digit = after.as_bytes().get(place).filter(|_| place < digits);
            millis = millis * 10 + digit.map_or(0, |d| i64::from(d - b'0'));
        }
        rest = &after[digits..];
    }
    let offset_min = match rest.as_bytes() {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let h = num_pair(*h1, *h2)?;
            let m = num_pair(*m1, *m2)?;
            let total = h * 60 + m;
            if *sign == b'+' {
                total
            } else {
                -total
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_min * 60;
    Some((seconds * 1000 + millis) as f64)
}

fn num_pair(a: u8, b: u8) -> Option<i64> {
    (a.is_ascii_digit() && b.is_ascii_digit()).then(|| i64::from((a - b'0') * 10 + (b - b'0')))
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar
/// (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The UTC time of day of `unix_ms`, as `HH:MM:SS`.
pub fn utc_clock(unix_ms: f64) -> String {
    let seconds = (unix_ms / 1000.0).floor() as i64;
    let of_day = seconds.rem_euclid(86_400);
    format!(
        "{:02}:{:02}:{:02}",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(sent_ms: f64, server_ms: f64, received_ms: f64) -> Probe {
        Probe {
            sent_ms,
            received_ms,
            server_ms,
        }
    }

    #[test]
    fn the_fastest_round_trip_wins() {
        // The server's clock is 5 s behind the page's. A slow probe whose
        // answer waited in a queue would say about -5 040 ms.
        let probes = [
            probe(1000.0, 1000.0 - 5000.0 + 5.0, 1100.0),
            probe(2000.0, 2000.0 - 5000.0 + 2.0, 2004.0),
            probe(3000.0, 3000.0 - 5000.0 + 4.0, 3030.0),
        ];
        let estimate = ClockOffset::estimate(&probes).expect("an estimate");
        assert_eq!(estimate.rtt_ms, 4.0);
        assert_eq!(estimate.offset_ms, -5000.0);
        assert_eq!(ClockOffset::estimate(&[]), None);
        // A probe whose clock went backwards is no use.
        assert_eq!(
            ClockOffset::estimate(&[probe(10.0, 5.0, 9.0)]),
            None,
            "received before sent"
        );
    }

    #[test]
    fn the_error_is_within_half_the_round_trip() {
        // Whenever in the round trip the server read its clock, the
        // estimate is off by at most rtt / 2.
        let true_offset = 1234.0;
        for read_at in [0.0, 3.0, 10.0] {
            let p = probe(500.0, 500.0 + read_at + true_offset, 510.0);
            let estimate = ClockOffset::estimate(&[p]).expect("an estimate");
            assert!((estimate.offset_ms - true_offset).abs() <= estimate.rtt_ms / 2.0);
        }
    }

    #[test]
    fn latency_is_corrected_by_the_offset_and_never_negative() {
        // The page's clock is an hour ahead of the server's.
        let offset = ClockOffset {
            offset_ms: -3_600_000.0,
            rtt_ms: 2.0,
        };
        let sent = 1_000_000.0;
        assert_eq!(offset.latency_ms(sent, sent + 3_600_000.0 + 12.0), 12.0);
        // Within the estimate's error an event may seem to arrive early.
        assert_eq!(offset.latency_ms(sent, sent + 3_600_000.0 - 0.5), 0.0);
        assert_eq!(offset.to_local(sent), sent + 3_600_000.0);
    }

    #[test]
    fn reads_the_servers_times() {
        // 2026-12-01T09:23:06.527Z, worked out by hand: 20 788 days.
        let expected = (20_788.0 * 86_400.0 + 9.0 * 3600.0 + 23.0 * 60.0 + 6.0) * 1000.0 + 527.0;
        assert_eq!(parse_rfc3339_ms("2026-12-01T09:23:06.527Z"), Some(expected));
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00.5Z"), Some(500.0));
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:01.0129Z"), Some(1012.0));
        assert_eq!(
            parse_rfc3339_ms("2000-03-01T00:00:00.000Z"),
            Some(951_868_800_000.0)
        );
        assert_eq!(
            parse_rfc3339_ms("2026-12-01T10:23:06.527+01:00"),
            Some(expected)
        );
        assert_eq!(
            parse_rfc3339_ms("2026-12-01T08:53:06.527-00:30"),
            Some(expected)
        );
        for bad in [
            "",
            "soon",
            "2026-12-01 09:23:06",
            "2026-13-01T09:23:06Z",
            "2026-12-01T24:00:00Z",
            "2026-12-01T09:23:06.Z",
            "2026-12-01T09:23:06.527",
            "2026-12-01T09:23:06.527+0100",
            "2026-12-01T09:23:0x.527Z",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn reads_the_servers_clock_as_the_server_writes_it() {
        let json = serde_json::to_string(&shared::ServerTime {
            unix_ms: 1_796_117_004_428,
        })
        .expect("serializes");
        assert_eq!(parse_server_time(&json), Some(1_796_117_004_428.0));
        assert_eq!(parse_server_time(r#"{ "unix_ms" : 12 }"#), Some(12.0));
        for bad in [
            "",
            "{}",
            r#"{"unix_ms":"12"}"#,
            r#"{"unix_ms":}"#,
            r#"{"unix_ms":-1}"#,
        ] {
            assert_eq!(parse_server_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn clock_of_day() {
        assert_eq!(utc_clock(0.0), "00:00:00");
        let t = parse_rfc3339_ms("2026-12-01T09:23:06.999Z").expect("a time");
        assert_eq!(utc_clock(t), "09:23:06");
    }
}
