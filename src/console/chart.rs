//! The billable organizations of a period as an SVG chart drawn on the
//! server: the cumulative count by day, with a `<title>`, a `<desc>` and a
//! data table that says the same in rows.

use chrono::{Datelike, NaiveDate};
use maud::{Markup, html};

/// The days of a `YYYY-MM` period, or `None` when it is not one.
pub fn days_of(period: &str) -> Option<Vec<NaiveDate>> {
    let first = NaiveDate::parse_from_str(&format!("{period}-01"), "%Y-%m-%d").ok()?;
    let next = if first.month() == 12 {
        NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)?
    } else {
        NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)?
    };
    Some(first.iter_days().take_while(|day| *day < next).collect())
}

/// For each day of the period, how many organizations became billable that
/// day and how many were billable by its end.
pub fn by_day(days: &[NaiveDate], billable_since: &[NaiveDate]) -> Vec<(NaiveDate, u32, u32)> {
    let mut total = 0;
    days.iter()
        .map(|day| {
            let new = billable_since.iter().filter(|since| *since == day).count() as u32;
            total += new;
            (*day, new, total)
        })
        .collect()
}

const WIDTH: u32 = 720;
const HEIGHT: u32 = 240;
const LEFT: u32 = 48;
const BOTTOM: u32 = 32;
const TOP: u32 = 16;

/// The chart of one period's cumulative billable organizations by day:
/// `rows` are the days so far, drawn on an axis of all `period_days`.
pub fn cumulative(period: &str, rows: &[(NaiveDate, u32, u32)], period_days: usize) -> Markup {
    let max = rows
        .iter()
        .map(|(_, _, total)| *total)
        .max()
        .unwrap_or(0)
        .max(1);
    let plot_width = WIDTH - LEFT - 8;
    let plot_height = HEIGHT - TOP - BOTTOM;
    let slot = plot_width / (period_days.max(rows.len()).max(1) as u32);
    let bar = slot.saturating_sub(2).max(1);
    let final_total = rows.last().map(|(_, _, total)| *total).unwrap_or(0);
    let description = format!(
        "Cumulative count of billable organizations by day of {period}: {final_total} by the end of the last day shown. The table below lists the same numbers."
    );
    html! {
        svg.chart role="img" aria-labelledby="chart-title chart-desc"
            viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } width=(WIDTH) height=(HEIGHT)
            xmlns="http://www.w3.org/2000/svg" {
            title id="chart-title" { "Billable organizations in " (period) }
            desc id="chart-desc" { (description) }
            line.axis x1=(LEFT) y1=(TOP + plot_height) x2=(WIDTH - 8) y2=(TOP + plot_height) {}
            line.axis x1=(LEFT) y1=(TOP) x2=(LEFT) y2=(TOP + plot_height) {}
            text.label x=(LEFT - 6) y=(TOP + plot_height) text-anchor="end" { "0" }
            text.label x=(LEFT - 6) y=(TOP + 10) text-anchor="end" { (max) }
            @for (index, (day, _, total)) in rows.iter().enumerate() {
                @let height = (u64::from(*total) * u64::from(plot_height) / u64::from(max)) as u32;
                @let x = LEFT + 1 + index as u32 * slot;
                rect.bar x=(x) y=(TOP + plot_height - height) width=(bar) height=(height) {
                    title { (day.format("%Y-%m-%d")) ": " (total) " billable" }
                }
            }
            @for index in 0..period_days.max(rows.len()) as u32 {
                @let day = index + 1;
                @if day == 1 || day % 5 == 0 {
                    text.label x=(LEFT + 1 + index * slot + bar / 2) y=(HEIGHT - 12) text-anchor="middle" { (day) }
                }
            }
        }
    }
}

/// The chart's numbers as a table: the days on which organizations became
/// billable.
pub fn table(period: &str, rows: &[(NaiveDate, u32, u32)]) -> Markup {
    let changes: Vec<_> = rows.iter().filter(|(_, new, _)| *new > 0).collect();
    html! {
        @if changes.is_empty() {
            p { "No organization has become billable in " (period) " yet." }
        } @else {
            table {
                caption { "Days of " (period) " on which organizations became billable" }
                thead { tr { th scope="col" { "Day" } th scope="col" { "Became billable" } th scope="col" { "Billable by the end of the day" } } }
                tbody {
                    @for (day, new, total) in changes {
                        tr {
                            th scope="row" { time datetime=(day.format("%Y-%m-%d")) { (day.format("%Y-%m-%d")) } }
                            td.number { (new) }
                            td.number { (total) }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_cumulative_counts() {
        assert_eq!(days_of("2026-02").map(|d| d.len()), Some(28));
        assert_eq!(days_of("2024-02").map(|d| d.len()), Some(29));
        assert_eq!(days_of("2026-12").map(|d| d.len()), Some(31));
        assert!(days_of("2026-13").is_none());
        let days = days_of("2026-12").unwrap();
        let d = |n| NaiveDate::from_ymd_opt(2026, 12, n).unwrap();
        let rows = by_day(&days, &[d(3), d(3), d(10)]);
        assert_eq!(rows[1], (d(2), 0, 0));
        assert_eq!(rows[2], (d(3), 2, 2));
        assert_eq!(rows[30], (d(31), 0, 3));
        let svg = cumulative("2026-12", &rows, 31).into_string();
        assert!(
            svg.contains("<title id=\"chart-title\">Billable organizations in 2026-12</title>")
        );
        assert!(svg.contains("3 by the end"));
    }
}
