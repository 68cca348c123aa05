//! Sizes, rates and the result table.

use std::fmt::Write;
use std::time::Duration;

const MIB: f64 = (1u64 << 20) as f64;

/// MiB per second of `bytes` moved in `took`.
pub fn mib_per_s(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / MIB / took.as_secs_f64().max(1e-9)
}

/// A byte count in binary units: `1 GiB`, `8 MiB`, `1.5 KiB`, `17 B`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if value.fract() == 0.0 {
        format!("{value} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// One measured run of one scenario.
#[derive(Debug, Clone)]
pub struct Row {
    pub scenario: String,
    pub bytes: u64,
    pub took: Duration,
    /// The server's peak RSS, in bytes.
    pub peak_rss: u64,
    /// The server's user + system CPU seconds over its whole life.
    pub server_cpu: f64,
    /// Share of all CPUs busy with other work just before the run, 0 to 1.
    pub busy_before: f64,
    /// What else to know about the figure.
    pub note: String,
}

/// Says on stderr how one scenario went, as the run goes: its label padded
/// to `width`, and its rate.
pub fn announce(label: &str, bytes: u64, took: Duration, width: usize) {
    eprintln!("  {label:<width$}  {:>6.0} MiB/s", mib_per_s(bytes, took));
}

/// Renders rows as an aligned text table.
pub fn table(rows: &[Row]) -> String {
    let header = [
        "scenario",
        "MiB/s",
        "seconds",
        "peak RSS MiB",
        "server CPU s",
        "busy before",
        "note",
    ];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.scenario.clone(),
                format!("{:.0}", mib_per_s(r.bytes, r.took)),
                format!("{:.3}", r.took.as_secs_f64()),
                format!("{:.1}", r.peak_rss as f64 / MIB),
                format!("{:.2}", r.server_cpu),
                format!("{:.0}%", r.busy_before * 100.0),
                r.note.clone(),
            ]
        })
        .collect();
    render(&header, &cells)
}

/// Renders any table: the first column (names) and the last (notes)
/// left-aligned, the ones between (numbers) right-aligned, two spaces apart,
/// a line of dashes under the header, no trailing spaces. Rows shorter than
/// the header leave their last cells empty.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let last = header.len().saturating_sub(1);
    let mut out = String::new();
    let mut line = |cols: &[&str]| {
        let mut l = String::new();
        for (i, w) in widths.iter().copied().enumerate() {
            let c = cols.get(i).copied().unwrap_or("");
            match i {
                0 => write!(l, "{c:<w$}"),
                _ if i == last => write!(l, "  {c}"),
                _ => write!(l, "  {c:>w$}"),
            }
            .expect("write to a String");
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header);
    let dashes: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    line(&dashes.iter().map(String::as_str).collect::<Vec<_>>());
    for row in rows {
        line(&row.iter().map(String::as_str).collect::<Vec<_>>());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_rates() {
        assert_eq!(size(1 << 30), "1 GiB");
        assert_eq!(size(8 << 20), "8 MiB");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(17), "17 B");
        assert_eq!(mib_per_s(512 << 20, Duration::from_millis(500)), 1024.0);
    }

    #[test]
    fn the_table_lines_up() {
        let row = Row {
            scenario: "a".into(),
            bytes: 1 << 30,
            took: Duration::from_secs(1),
            peak_rss: 32 << 20,
            server_cpu: 1.5,
            busy_before: 0.03,
            note: "n".into(),
        };
        let t = table(&[row]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[2].starts_with("a       "), "{t}");
        assert!(
            lines[2].contains(" 1024 ")
                && lines[2].contains("32.0")
                && lines[2].contains(" 3% ")
                && lines[2].ends_with("n"),
            "{t}"
        );
        assert_eq!(
            lines[0].find("MiB/s").map(|i| i + 5),
            lines[2].find("1024").map(|i| i + 4),
            "{t}"
        );
    }
}
