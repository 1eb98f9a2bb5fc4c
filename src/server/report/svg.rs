//! The report's two drawings, as inline SVG (no script, no external file):
//! a client's snapshots as marks on a time axis, and a quantity over time
//! (a client's space, the store's) as a line. Pure: plain data in, markup
//! out, every text through [`escape`].

use std::fmt::Write as _;

use jiff::{SignedDuration, Timestamp};

use super::html::escape;
use crate::sys::fs::human_bytes;

/// The drawings' coordinate width (they scale to the page's).
const WIDTH: f64 = 960.0;
/// Room left of a chart for the value labels.
const LEFT: f64 = 80.0;
/// Room right of a drawing, so the last label fits.
const RIGHT: f64 = 40.0;

/// One snapshot on the timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub name: String,
    pub time: Timestamp,
    pub partial: bool,
}

/// Where `t` falls between `from` and `to` (0 to 1; 0.5 for an empty span).
fn fraction(t: Timestamp, from: Timestamp, to: Timestamp) -> f64 {
    let span = to.duration_since(from).as_secs_f64();
    if span <= 0.0 {
        return 0.5;
    }
    (t.duration_since(from).as_secs_f64() / span).clamp(0.0, 1.0)
}

/// A date label whose precision suits the span drawn.
fn label(t: Timestamp, span: SignedDuration) -> String {
    let format = if span >= SignedDuration::from_hours(24 * 4) {
        "%Y-%m-%d"
    } else {
        "%m-%d %H:%M"
    };
    t.strftime(format).to_string()
}

/// Five evenly spaced ticks along `from..=to`, each at (x, label).
fn time_ticks(from: Timestamp, to: Timestamp, x0: f64, width: f64) -> Vec<(f64, String)> {
    let span = to.duration_since(from);
    (0..=4)
        .map(|i| {
            let t = from + span * i / 4;
            (x0 + width * f64::from(i) / 4.0, label(t, span))
        })
        .collect()
}

/// The snapshots as marks on a time axis from the oldest (or a week ago,
/// whichever is earlier) to `now`: filled circles, partial ones hollow.
/// Each mark is a `<circle class="mark">` with its name as its `<title>`;
/// the drawing's `id` is `id`. With `last`, only that span before `now` is
/// drawn (a closer look at the recent snapshots, which a long history
/// crowds together).
pub fn timeline(id: &str, marks: &[Mark], now: Timestamp, last: Option<SignedDuration>) -> String {
    let height = 80.0;
    let axis = 40.0;
    let marks: Vec<&Mark> = match last {
        Some(span) => marks.iter().filter(|m| m.time >= now - span).collect(),
        None => marks.iter().collect(),
    };
    let week_ago = now - last.unwrap_or(SignedDuration::from_hours(24 * 7));
    let from = marks
        .iter()
        .map(|m| m.time)
        .min()
        .map_or(week_ago, |t| t.min(week_ago));
    let to = marks
        .iter()
        .map(|m| m.time)
        .max()
        .map_or(now, |t| t.max(now));
    // Room either side for the first and last date labels.
    let x0 = 50.0;
    let width = WIDTH - 2.0 * x0;
    let mut o = String::new();
    let _ = write!(
        o,
        "<svg id=\"{}\" class=\"timeline\" viewBox=\"0 0 {WIDTH} {height}\" role=\"img\" aria-label=\"{} snapshot(s) from {} to {}\">",
        escape(id),
        marks.len(),
        escape(&label(from, SignedDuration::ZERO)),
        escape(&label(to, SignedDuration::ZERO)),
    );
    let _ = write!(
        o,
        "<line class=\"axis\" x1=\"{x0}\" y1=\"{axis}\" x2=\"{:.1}\" y2=\"{axis}\"/>",
        x0 + width
    );
    for (x, text) in time_ticks(from, to, x0, width) {
        let _ = write!(
            o,
            "<line class=\"tick\" x1=\"{x:.1}\" y1=\"{}\" x2=\"{x:.1}\" y2=\"{}\"/><text class=\"tick-label\" x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            axis - 4.0,
            axis + 4.0,
            axis + 22.0,
            escape(&text)
        );
    }
    for m in &marks {
        let x = x0 + width * fraction(m.time, from, to);
        let class = if m.partial { "mark partial" } else { "mark" };
        let _ = write!(
            o,
            "<circle class=\"{class}\" cx=\"{x:.1}\" cy=\"{axis}\" r=\"6\" data-snapshot=\"{}\"><title>{}{}</title></circle>",
            escape(&m.name),
            escape(&m.name),
            if m.partial { " (partial)" } else { "" }
        );
    }
    o.push_str("</svg>");
    o
}

/// A quantity over time as a line (`<polyline class="series">` through
/// every point, each point also a dot), on axes from zero to the largest
/// value or `ceiling` (drawn dashed: the store's size, say), labelled in
/// bytes. Nothing is drawn for no points; one point is a lone dot.
pub fn line_chart(points: &[(Timestamp, u64)], ceiling: Option<u64>, what: &str) -> String {
    let height = 240.0;
    let top = 14.0;
    let bottom = height - 34.0;
    let x0 = LEFT;
    let width = WIDTH - LEFT - RIGHT;
    let (Some(from), Some(to)) = (
        points.iter().map(|p| p.0).min(),
        points.iter().map(|p| p.0).max(),
    ) else {
        return String::new();
    };
    let largest = points.iter().map(|p| p.1).max().unwrap_or(0);
    let max = ceiling.unwrap_or(0).max(largest).max(1) as f64;
    let y = |v: u64| bottom - (bottom - top) * (v as f64 / max);
    let x = |t: Timestamp| match points.len() {
        1 => x0 + width / 2.0,
        _ => x0 + width * fraction(t, from, to),
    };
    let mut o = String::new();
    let _ = write!(
        o,
        "<svg class=\"chart\" viewBox=\"0 0 {WIDTH} {height}\" role=\"img\" aria-label=\"{}\"><title>{}</title>",
        escape(what),
        escape(what)
    );
    for i in 0..=4u32 {
        let v = (max * f64::from(i) / 4.0) as u64;
        let yy = y(v);
        let _ = write!(
            o,
            "<line class=\"grid\" x1=\"{x0}\" y1=\"{yy:.1}\" x2=\"{:.1}\" y2=\"{yy:.1}\"/><text class=\"value-label\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            x0 + width,
            x0 - 8.0,
            yy + 4.0,
            escape(&human_bytes(v))
        );
    }
    let ticks = if points.len() == 1 {
        vec![(x0 + width / 2.0, label(from, SignedDuration::ZERO))]
    } else {
        time_ticks(from, to, x0, width)
    };
    for (tx, text) in ticks {
        let _ = write!(
            o,
            "<text class=\"tick-label\" x=\"{tx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            bottom + 22.0,
            escape(&text)
        );
    }
    if let Some(c) = ceiling {
        let yy = y(c);
        let _ = write!(
            o,
            "<line class=\"ceiling\" x1=\"{x0}\" y1=\"{yy:.1}\" x2=\"{:.1}\" y2=\"{yy:.1}\"/>",
            x0 + width
        );
    }
    let coords: Vec<String> = points
        .iter()
        .map(|&(t, v)| format!("{:.1},{:.1}", x(t), y(v)))
        .collect();
    let _ = write!(
        o,
        "<polyline class=\"series\" points=\"{}\"/>",
        coords.join(" ")
    );
    // Dots only where they can be told apart.
    if points.len() <= 120 {
        for &(t, v) in points {
            let _ = write!(
                o,
                "<circle class=\"dot\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\"><title>{}: {}</title></circle>",
                x(t),
                y(v),
                escape(&t.strftime("%Y-%m-%d %H:%M UTC").to_string()),
                escape(&human_bytes(v))
            );
        }
    }
    o.push_str("</svg>");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t: &str) -> Timestamp {
        t.parse().unwrap()
    }

    #[test]
    fn a_mark_per_snapshot_partial_ones_apart() {
        let marks = vec![
            Mark {
                name: "2026-11-20T03:00:00Z".into(),
                time: at("2026-11-20T03:00:00Z"),
                partial: false,
            },
            Mark {
                name: "2026-11-27T03:00:00Z".into(),
                time: at("2026-11-27T03:00:00Z"),
                partial: true,
            },
        ];
        let now = at("2026-11-28T03:00:00Z");
        let svg = timeline("t", &marks, now, None);
        assert!(svg.starts_with("<svg id=\"t\" "), "{svg}");
        assert_eq!(svg.matches("<circle class=\"mark").count(), 2, "{svg}");
        assert_eq!(svg.matches("class=\"mark partial\"").count(), 1);
        // The oldest sits at the axis' start (a week before now is later).
        assert!(svg.contains("<circle class=\"mark\" cx=\"50.0\""), "{svg}");
        assert!(svg.contains("<title>2026-11-27T03:00:00Z (partial)</title>"));
        // The last three days: only the newest.
        let recent = timeline("r", &marks, now, Some(SignedDuration::from_hours(72)));
        assert_eq!(
            recent.matches("<circle class=\"mark").count(),
            1,
            "{recent}"
        );
        // Without snapshots: the axis alone, the last week.
        let empty = timeline("t", &[], now, None);
        assert!(!empty.contains("<circle"), "{empty}");
        assert!(empty.contains(">11-21 03:00<") || empty.contains(">2026-11-21<"));
    }

    #[test]
    fn the_line_goes_through_every_point() {
        let points = vec![
            (at("2026-11-26T00:00:00Z"), 0),
            (at("2026-11-27T00:00:00Z"), 512),
            (at("2026-11-28T00:00:00Z"), 1024),
        ];
        let svg = line_chart(&points, None, "space <held>");
        let line = svg
            .split("<polyline class=\"series\" points=\"")
            .nth(1)
            .unwrap();
        let coords: Vec<&str> = line.split('"').next().unwrap().split(' ').collect();
        // From the left edge at zero to the right edge at the top.
        assert_eq!(coords, vec!["80.0,206.0", "500.0,110.0", "920.0,14.0"]);
        assert!(svg.contains("aria-label=\"space &lt;held&gt;\""), "{svg}");
        assert!(svg.contains(">1.0 KiB<"), "{svg}");
        // A ceiling sets the scale and is drawn.
        let svg = line_chart(&points, Some(2048), "x");
        assert!(svg.contains("class=\"ceiling\""));
        assert!(svg.contains("920.0,110.0\""), "{svg}");
        // One point: a dot in the middle; none: nothing.
        let one = line_chart(&points[..1], None, "x");
        assert!(one.contains("points=\"500.0,206.0\""), "{one}");
        assert_eq!(one.matches("class=\"dot\"").count(), 1);
        assert_eq!(line_chart(&[], None, "x"), "");
    }
}
