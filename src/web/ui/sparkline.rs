//! Sparklines as inline SVG: one path per series over a fixed time window, gaps where a value is unknown
//! (NaN: a stale series, an engine that cannot tell), and a dashed line at the alert's threshold.

use std::fmt::Write as _;

pub const WIDTH: f64 = 120.0;
pub const HEIGHT: f64 = 28.0;
/// Series drawn per sparkline at most (a primary with many replicas): the rest are left out, said in the title.
pub const MAX_SERIES: usize = 4;

/// What to draw.
pub struct Spark<'a> {
    pub series: Vec<&'a [(i64, f64)]>,
    /// The window, Unix milliseconds.
    pub from: i64,
    pub to: i64,
    pub threshold: Option<f64>,
    /// A fixed value range (ratios: 0 to 1); otherwise from 0 (or the lowest value) to the highest value or
    /// a little above the threshold.
    pub range: Option<(f64, f64)>,
    /// Said on hover, already escaped.
    pub title: &'a str,
}

const COLOURS: [&str; MAX_SERIES] = ["#0969da", "#8250df", "#bf8700", "#1b7c83"];

impl Spark<'_> {
    pub fn svg(&self, out: &mut String) {
        let finite = || {
            self.series
                .iter()
                .flat_map(|points| points.iter())
                .map(|(_, value)| *value)
                .filter(|value| value.is_finite())
        };
        let (low, high) = self.range.unwrap_or_else(|| {
            let low = finite().fold(0.0f64, f64::min);
            let mut high = finite().fold(f64::NEG_INFINITY, f64::max);
            if let Some(threshold) = self.threshold.filter(|t| t.is_finite()) {
                high = high.max(threshold * 1.2);
            }
            if !high.is_finite() || high <= low {
                high = low + 1.0;
            }
            (low, high)
        });
        // While the history holds less than the window (after a start), the line spans what there is.
        let oldest = self
            .series
            .iter()
            .filter_map(|points| points.first())
            .map(|(t, _)| *t)
            .min()
            .unwrap_or(self.from);
        let from = self.from.max(oldest).min(self.to.saturating_sub(1));
        let span_t = (self.to - from).max(1) as f64;
        let span_v = high - low;
        let x = |t: i64| ((t - from) as f64 / span_t * WIDTH).clamp(0.0, WIDTH);
        // 1 px of margin top and bottom so a line at either end stays visible.
        let y = |v: f64| {
            let v = v.clamp(low, high);
            1.0 + (1.0 - (v - low) / span_v) * (HEIGHT - 2.0)
        };
        let _ = write!(
            out,
            "<svg width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\">\
             <title>{}</title><rect width=\"{WIDTH}\" height=\"{HEIGHT}\" fill=\"#f6f8fa\"/>",
            self.title
        );
        if let Some(threshold) = self
            .threshold
            .filter(|t| t.is_finite() && *t >= low && *t <= high)
        {
            let at = y(threshold);
            let _ = write!(
                out,
                "<line x1=\"0\" x2=\"{WIDTH}\" y1=\"{at:.1}\" y2=\"{at:.1}\" stroke=\"#cf222e\" \
                 stroke-width=\"1\" stroke-dasharray=\"3 2\"/>"
            );
        }
        for (points, colour) in self.series.iter().zip(COLOURS) {
            let mut path = String::with_capacity(points.len() * 10);
            let mut pen_down = false;
            // Whole pixels across, and one point per pixel: the page stays small with many targets.
            let mut last_x = f64::NAN;
            for (t, v) in points.iter() {
                if !v.is_finite() {
                    pen_down = false;
                    continue;
                }
                let at = x(*t).round();
                if pen_down && at == last_x {
                    continue;
                }
                last_x = at;
                let command = if pen_down { 'L' } else { 'M' };
                let _ = write!(path, "{command}{at:.0} {:.1}", y(*v));
                pen_down = true;
            }
            if path.is_empty() {
                continue;
            }
            let _ = write!(
                out,
                "<path d=\"{path}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" \
                 stroke-linejoin=\"round\"/>"
            );
        }
        out.push_str("</svg>");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_break_the_line_and_the_threshold_is_drawn_in_range() {
        let points = [(0, 0.0), (10, 0.05), (20, f64::NAN), (30, 0.2), (40, 0.1)];
        let spark = Spark {
            series: vec![&points],
            from: 0,
            to: 40,
            threshold: Some(0.1),
            range: None,
            title: "latency",
        };
        let mut svg = String::new();
        spark.svg(&mut svg);
        // Two runs: M..L.. then M..L..
        let path = svg
            .split("<path d=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("a path");
        assert_eq!(path.matches('M').count(), 2, "{path}");
        assert_eq!(path.matches('L').count(), 2, "{path}");
        // The highest point (0.2) is at the top margin; the threshold line is at 0.1 of 0..0.2 → middle.
        assert!(path.contains("M90 1.0"), "{path}");
        assert!(svg.contains("y1=\"14.0\""), "{svg}");
    }
}
