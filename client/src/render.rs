//! The inspector panels' display-only markup, as HTML text built from plain
//! data (every piece of text escaped).
//!
//! The panels show many figures that change together a few times a second
//! and take no input. Built as one string each, set with `inner_html` (and
//! only when it changed, through a memo), they cost a few hundred bytes of
//! the page's wasm instead of a view tree per figure. Controls (buttons,
//! fields) stay Leptos views; a click inside this markup reaches its
//! component by event delegation (`data-follow`).

use std::fmt::Write as _;

use crate::clock::{utc_clock, ClockOffset};
use crate::conn_limit::{LimitHint, PER_ORIGIN};
use crate::decimal::{fixed, signed};
use crate::inspector::Insight;
use crate::latency::{format_ms, Chart, CHART_HEIGHT, CHART_POINTS, CHART_WIDTH};
use crate::timeline::Entry;
use crate::topic_rates::TopicLine;

/// `text` safe inside an element or a quoted attribute.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The transport facts (HTTP version, advised retry, clock offset) and the
/// hints for bulk arrival and the connection limit, when they apply.
pub fn transport(insight: &Insight, advised_retry_ms: Option<u64>) -> String {
    let protocol = insight.protocol.as_deref().unwrap_or("unknown");
    let retry = advised_retry_ms.map_or_else(|| "—".to_owned(), |ms| format!("{ms} ms"));
    let mut html = format!(
        "<dl class=\"facts\">\
         <dt>HTTP version</dt><dd id=\"transport-http\" title=\"nextHopProtocol of GET /time\">{}</dd>\
         <dt>Advised retry</dt><dd id=\"transport-retry\" title=\"EventSource hides retry:; \
         the server repeats it in its position events\">{retry}</dd>\
         <dt>Clock offset</dt>{}</dl>",
        escape(protocol),
        offset(insight.offset),
    );
    if let Some(bulk) = insight.bulk {
        let times = insight.bulks;
        let _ = write!(
            html,
            "<p id=\"hint-buffering\" class=\"hint-box\"><strong>Events arrive in bulk.</strong> \
             {} events came at {} UTC after {} s of silence, though the server sent them over \
             {} s ({times} time{} so far): something between the server and this page buffers \
             the stream. Fix: send the header <code>X-Accel-Buffering: no</code> (this server \
             does), or turn proxy buffering off (<code>proxy_buffering off;</code> in nginx).</p>",
            bulk.events,
            utc_clock(bulk.at_ms),
            fixed(bulk.silence_ms / 1000.0, 1),
            fixed(bulk.sent_over_ms / 1000.0, 1),
            if times == 1 { "" } else { "s" },
        );
    }
    if let Some(hint) = insight.limit {
        let kind = match hint {
            LimitHint::Reached { .. } => "reached",
            LimitHint::Waiting { .. } => "waiting",
        };
        let _ = write!(
            html,
            "<p id=\"hint-limit\" class=\"hint-box\" data-kind=\"{kind}\"><strong>The browser's \
             {PER_ORIGIN}-connection limit.</strong> {}</p>",
            escape(&hint.text())
        );
    }
    html
}

fn offset(offset: Option<ClockOffset>) -> String {
    match offset {
        Some(o) => format!(
            "<dd id=\"transport-offset\" data-ms=\"{}\" data-rtt-ms=\"{}\" title=\"server clock \
             minus this page's, from the fastest of a few GET /time\">{} ms ± {}</dd>",
            fixed(o.offset_ms, 2),
            fixed(o.rtt_ms, 2),
            signed(o.offset_ms, 1),
            fixed(o.rtt_ms / 2.0 + 1.0, 1)
        ),
        None => "<dd id=\"transport-offset\">measuring…</dd>".to_owned(),
    }
}

/// The timeline's entries, newest first, as `<li>`s.
pub fn timeline(entries: &[Entry]) -> String {
    let mut html = String::new();
    for entry in entries {
        let _ = write!(
            html,
            "<li data-kind=\"{}\"><time>{}</time> {}</li>",
            entry.what.as_str(),
            utc_clock(entry.at_ms),
            escape(&entry.text)
        );
    }
    html
}

/// The live percentiles, for the status bar: `p50 · p99`, with the
/// figures in `data-` attributes.
pub fn latency_now(insight: &Insight) -> String {
    match insight.live {
        Some(p) => format!(
            "<span id=\"latency-now\" data-p50=\"{}\" data-p99=\"{}\" data-count=\"{}\">{} · {}</span>",
            fixed(p.p50, 0),
            fixed(p.p99, 0),
            p.count,
            format_ms(p.p50),
            format_ms(p.p99),
        ),
        None => "<span id=\"latency-now\">—</span>".to_owned(),
    }
}

/// The chart as a small `<svg>` (p99 above, p50 below, the last three
/// minutes left to right), with the latency at its top.
pub fn chart(chart: &Chart) -> String {
    let top = format_ms(chart.top_ms);
    format!(
        "<svg id=\"latency-chart\" class=\"chart\" viewBox=\"0 0 {CHART_WIDTH} {CHART_HEIGHT}\" \
         preserveAspectRatio=\"none\" role=\"img\" data-points=\"{}\" aria-label=\"p50 and p99 \
         latency, one point a second over the last {} minutes; the top is {top}\">\
         <path class=\"p99\" d=\"{}\"/><path class=\"p50\" d=\"{}\"/></svg>\
         <span class=\"chart-axis\" aria-hidden=\"true\"><span><i class=\"p50\"></i>p50 <i class=\"p99\">\
         </i>p99</span><span>{top}</span></span>",
        chart.seconds,
        CHART_POINTS / 60,
        chart.p99,
        chart.p50,
    )
}

/// The topics table's rows, or the reason there are none (`error`);
/// `following` is the topic the page follows. A topic's name is a button
/// whose `data-follow` names it.
pub fn topics(lines: &[TopicLine], following: Option<&str>, error: Option<&str>) -> String {
    let mut html = String::new();
    if let Some(error) = error {
        let _ = write!(
            html,
            "<tr><td colspan=\"3\" id=\"topic-list-error\" class=\"error\">{}</td></tr>",
            escape(error)
        );
    }
    for line in lines {
        let name = escape(&line.name);
        let current = if following == Some(line.name.as_str()) {
            " aria-current=\"true\""
        } else {
            ""
        };
        let rate = line
            .per_second
            .map_or_else(|| "…".to_owned(), |r| fixed(r, 1));
        let _ = write!(
            html,
            "<tr data-topic=\"{name}\"><td><button type=\"button\" class=\"link\" data-follow=\"{name}\" \
             title=\"follow this topic\"{current}>{name}</button></td><td class=\"num\">{}</td>\
             <td class=\"num\">{rate}</td></tr>",
            line.subscribers
        );
    }
    if lines.is_empty() && error.is_none() {
        html.push_str("<tr><td colspan=\"3\" class=\"hint\">No live topic yet.</td></tr>");
    }
    html
}

/// The recorder's status line and, once a recording is ready, its download
/// link (`url` an object URL, `name` the file's name).
/// `origin` is the page's, where `server replay` may publish it again.
pub fn recording(
    recording: bool,
    lines: Option<usize>,
    file: Option<(&str, &str)>,
    origin: &str,
) -> String {
    let mut html = match (recording, lines) {
        (true, Some(n)) => {
            format!("<p id=\"record-status\" class=\"hint\">Recording: {n} events so far.</p>")
        }
        (false, Some(n)) => {
            format!("<p id=\"record-status\" class=\"hint\">Recorded {n} events.</p>")
        }
        _ => "<p id=\"record-status\" class=\"hint\">Records what the list takes in, with each \
              event's time since the start.</p>"
            .to_owned(),
    };
    if let Some((url, name)) = file {
        let _ = write!(
            html,
            "<p><a id=\"record-download\" href=\"{}\" download=\"{}\">Download the recording \
             (NDJSON)</a></p>",
            escape(url),
            escape(name)
        );
    }
    let _ = write!(
        html,
        "<p class=\"hint\">Play it again into a server, at its pace or faster: \
         <code>server replay {} --to {} --speed 2</code></p>",
        escape(file.map_or("FILE", |(_, name)| name)),
        escape(origin)
    );
    html
}

/// An event's details: what it is, its SSE lines, its JSON and the resume
/// command.
pub fn details(title: &str, sse_lines: &str, json: &str, command: &str) -> String {
    format!(
        "<p id=\"details-what\"><strong>{}</strong></p>\
         <h3>As SSE lines</h3><pre id=\"details-sse\">{}</pre>\
         <p class=\"hint\">Rebuilt from what the browser parsed: EventSource keeps no bytes, \
         comments or <code>retry:</code> lines.</p>\
         <h3>JSON</h3><pre id=\"details-json\">{}</pre>\
         <h3>Resume right after it</h3><pre id=\"details-curl\">{}</pre>",
        escape(title),
        escape(sse_lines),
        escape(json),
        escape(command)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bulk::Bulk;
    use crate::latency::Percentiles;
    use crate::timeline::Happening;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape(r#"<b a="1">Tom & 'Jerry'</b>"#),
            "&lt;b a=&quot;1&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/b&gt;"
        );
        let html = details("Event #1", "data: <script>", "{\"a\": \"<x>\"}", "curl 'a'");
        assert!(
            html.contains("<pre id=\"details-sse\">data: &lt;script&gt;</pre>"),
            "{html}"
        );
        assert!(!html.contains("<x>"), "{html}");
        let lines = [TopicLine {
            name: "a\"b".to_owned(),
            subscribers: 1,
            retained: 0,
            per_second: None,
        }];
        assert!(topics(&lines, None, None).contains("data-follow=\"a&quot;b\""));
    }

    #[test]
    fn the_transport_panel_says_what_it_knows_and_hints_only_when_due() {
        let mut insight = Insight {
            protocol: Some("http/1.1".to_owned()),
            offset: Some(ClockOffset {
                offset_ms: -3.25,
                rtt_ms: 2.0,
            }),
            ..Insight::default()
        };
        let html = transport(&insight, Some(2000));
        assert!(html.contains(">http/1.1</dd>"), "{html}");
        assert!(html.contains(">2000 ms</dd>"), "{html}");
        assert!(html.contains("data-ms=\"-3.25\""), "{html}");
        assert!(html.contains(">-3.3 ms ± 2.0</dd>"), "{html}");
        assert!(
            !html.contains("hint-buffering") && !html.contains("hint-limit"),
            "{html}"
        );

        insight.bulk = Some(Bulk {
            at_ms: 0.0,
            events: 40,
            sent_over_ms: 1950.0,
            silence_ms: 2000.0,
        });
        insight.bulks = 1;
        insight.limit = Some(LimitHint::Reached {
            streams: 6,
            tabs: 6,
        });
        let html = transport(&insight, None);
        assert!(html.contains("<p id=\"hint-buffering\""), "{html}");
        assert!(
            html.contains("40 events came at 00:00:00 UTC after 2.0 s of silence"),
            "{html}"
        );
        assert!(html.contains("X-Accel-Buffering: no"), "{html}");
        assert!(html.contains("(1 time so far)"), "{html}");
        assert!(
            html.contains("<p id=\"hint-limit\" class=\"hint-box\" data-kind=\"reached\">"),
            "{html}"
        );
        assert!(html.contains("6 event streams are open"), "{html}");
        assert!(transport(&Insight::default(), None).contains(">unknown</dd>"));
    }

    #[test]
    fn the_recorder_offers_the_file_and_the_replay_command() {
        let idle = recording(false, None, None, "http://127.0.0.1:3000");
        assert!(
            idle.contains("server replay FILE --to http://127.0.0.1:3000 --speed 2"),
            "{idle}"
        );
        assert!(!idle.contains("record-download"), "{idle}");
        let on = recording(true, Some(3), None, "");
        assert!(on.contains("Recording: 3 events so far."), "{on}");
        let done = recording(false, Some(3), Some(("blob:x/1", "e.ndjson")), "http://h");
        assert!(
            done.contains("<a id=\"record-download\" href=\"blob:x/1\" download=\"e.ndjson\">"),
            "{done}"
        );
        assert!(
            done.contains("server replay e.ndjson --to http://h"),
            "{done}"
        );
    }

    #[test]
    fn timeline_chart_and_topics() {
        let entries = [Entry {
            key: 0,
            at_ms: 3_723_000.0,
            what: Happening::Open,
            text: "connected".to_owned(),
        }];
        assert_eq!(
            timeline(&entries),
            "<li data-kind=\"open\"><time>01:02:03</time> connected</li>"
        );
        let insight = Insight {
            live: Some(Percentiles {
                p50: 3.0,
                p99: 12.0,
                count: 40,
            }),
            ..Insight::default()
        };
        assert!(latency_now(&insight).contains("data-p99=\"12\""));
        assert!(latency_now(&insight).contains(">3 ms · 12 ms</span>"));
        let svg = chart(&Chart {
            p50: "M0 1".to_owned(),
            p99: "M0 2".to_owned(),
            top_ms: 50.0,
            seconds: 1,
        });
        assert!(svg.contains("<path class=\"p50\" d=\"M0 1\"/>"), "{svg}");
        assert!(svg.contains("<span>50 ms</span>"), "{svg}");
        let lines = [TopicLine {
            name: "ticker".to_owned(),
            subscribers: 2,
            retained: 100,
            per_second: Some(6.66),
        }];
        let rows = topics(&lines, Some("ticker"), None);
        assert!(
            rows.contains("aria-current=\"true\">ticker</button>"),
            "{rows}"
        );
        assert!(
            rows.contains("<td class=\"num\">2</td><td class=\"num\">6.7</td>"),
            "{rows}"
        );
        assert!(topics(&[], None, None).contains("No live topic yet."));
        let failed = topics(&[], None, Some("could not reach the server"));
        assert!(failed.contains("id=\"topic-list-error\""), "{failed}");
        assert!(!failed.contains("No live topic"), "{failed}");
    }
}
