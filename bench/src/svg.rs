//! Horizontal grouped bar charts written as SVG text.

use std::fmt::Write as _;

/// One series of a chart: its name and colour.
pub(crate) struct Series {
    pub(crate) name: &'static str,
    pub(crate) color: &'static str,
}

/// One group of bars: a label and one value per series (`None`: not measured).
pub(crate) struct Group {
    pub(crate) label: String,
    pub(crate) values: Vec<Option<f64>>,
    /// Text after the value of the first bar, e.g. a ratio.
    pub(crate) note: Option<String>,
    /// Colour of every bar of the group instead of the series colours.
    pub(crate) color: Option<&'static str>,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Formats a value for a bar label.
fn value_text(v: f64, unit: &str) -> String {
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    format!("{v:.digits$} {unit}")
}

/// Renders a chart. Bars share one linear scale starting at zero.
pub(crate) fn bar_chart(title: &str, unit: &str, series: &[Series], groups: &[Group]) -> String {
    const WIDTH: f64 = 760.0;
    const LABEL_W: f64 = 170.0;
    const VALUE_W: f64 = 190.0;
    const BAR_H: f64 = 16.0;
    const GAP: f64 = 12.0;
    const TOP: f64 = 48.0;
    let per_group = BAR_H * series.len() as f64 + GAP;
    let legend_h = 28.0;
    let height = TOP + per_group * groups.len() as f64 + legend_h;
    let max =
        groups.iter().flat_map(|g| g.values.iter().flatten()).copied().fold(0.0_f64, f64::max);
    let scale = if max > 0.0 { (WIDTH - LABEL_W - VALUE_W) / max } else { 0.0 };

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="10" y="22" font-size="15" font-weight="bold">{}</text>"#,
        escape(title)
    );
    let axis_x = LABEL_W;
    let _ = writeln!(
        s,
        r##"<line x1="{axis_x}" y1="{}" x2="{axis_x}" y2="{}" stroke="#444"/>"##,
        TOP - 6.0,
        TOP + per_group * groups.len() as f64 - GAP + 6.0
    );
    for (gi, g) in groups.iter().enumerate() {
        let y0 = TOP + per_group * gi as f64;
        let mid = y0 + BAR_H * series.len() as f64 / 2.0 + 4.0;
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{mid}" text-anchor="end">{}</text>"#,
            LABEL_W - 8.0,
            escape(&g.label)
        );
        for (si, se) in series.iter().enumerate() {
            let y = y0 + BAR_H * si as f64;
            let text_y = y + BAR_H - 4.0;
            match g.values.get(si).copied().flatten() {
                Some(v) => {
                    let w = (v * scale).max(1.0);
                    let _ = writeln!(
                        s,
                        r#"<rect x="{axis_x}" y="{y}" width="{w:.1}" height="{}" fill="{}"><title>{}: {}</title></rect>"#,
                        BAR_H - 2.0,
                        g.color.unwrap_or(se.color),
                        escape(se.name),
                        escape(&value_text(v, unit))
                    );
                    let mut label = value_text(v, unit);
                    if si == 0 {
                        if let Some(n) = &g.note {
                            let _ = write!(label, "  {n}");
                        }
                    }
                    let _ = writeln!(
                        s,
                        r#"<text x="{:.1}" y="{text_y}">{}</text>"#,
                        axis_x + w + 6.0,
                        escape(&label)
                    );
                }
                None => {
                    let _ = writeln!(
                        s,
                        r##"<text x="{}" y="{text_y}" fill="#888">not measured</text>"##,
                        axis_x + 6.0
                    );
                }
            }
        }
    }
    let ly = height - 10.0;
    let mut lx = LABEL_W;
    for se in series {
        let _ = writeln!(
            s,
            r#"<rect x="{lx}" y="{}" width="12" height="12" fill="{}"/>"#,
            ly - 10.0,
            se.color
        );
        let _ = writeln!(s, r#"<text x="{}" y="{ly}">{}</text>"#, lx + 16.0, escape(se.name));
        lx += 24.0 + 7.0 * se.name.len() as f64;
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_has_one_bar_per_measured_value_and_escapes_labels() {
        let series = [Series { name: "p50", color: "#999" }, Series { name: "p99", color: "#333" }];
        let groups = [
            Group {
                label: "a<b".into(),
                values: vec![Some(1.0), Some(2.0)],
                note: Some("x1.0".into()),
                color: None,
            },
            Group { label: "c".into(), values: vec![None, Some(4.0)], note: None, color: None },
        ];
        let svg = bar_chart("t", "ms", &series, &groups);
        assert_eq!(svg.matches("<title>").count(), 3);
        assert!(svg.contains("a&lt;b"));
        assert!(svg.contains("not measured"));
        assert!(svg.contains("x1.0"));
    }
}
