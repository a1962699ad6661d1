//! Printing measurements: one table row per measurement, with its
//! percentiles from the HDR histogram.

use std::time::Duration;

use crate::load::Measured;

pub fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// The header of a table of measurements; `note` names the last column.
pub fn header(note: &str) {
    println!(
        "{:<50} {:>9} {:>9} {:>9} {:>9} {:>7}  {note}",
        "", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "errors"
    );
}

/// One measurement as a table row, `note` in the last column.
pub fn row(name: &str, measured: &Measured, note: &str) {
    println!(
        "{name:<50} {:>9.0} {:>9.2} {:>9.2} {:>9.2} {:>7}  {note}",
        measured.rate(),
        measured.quantile_ms(0.5),
        measured.quantile_ms(0.99),
        measured.quantile_ms(0.999),
        measured.errors,
    );
}

/// Says what went wrong with the calls of a measurement, if anything did.
pub fn errors(name: &str, measured: &Measured) {
    if let Some(error) = &measured.first_error {
        eprintln!(
            "{name}: {} calls failed, the first with: {error}",
            measured.errors
        );
    }
}

/// Resident memory of a process: `VmRSS` (now) and `VmHWM` (peak) from
/// `/proc/PID/status`, in MiB.
pub fn memory_of(pid: u32) -> anyhow::Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |key: &str| -> anyhow::Result<f64> {
        let line = status
            .lines()
            .find(|line| line.starts_with(key))
            .ok_or_else(|| anyhow::anyhow!("no {key} in /proc/{pid}/status"))?;
        let value = line
            .trim_start_matches(key)
            .trim()
            .trim_end_matches("kB")
            .trim();
        Ok(value.parse::<f64>()?)
    };
    Ok((kib("VmRSS:")? / 1024.0, kib("VmHWM:")? / 1024.0))
}

/// Prints the resident memory of process `pid` (when given) at `when`.
pub fn print_memory(pid: Option<u32>, when: &str) {
    let Some(pid) = pid else { return };
    match memory_of(pid) {
        Ok((rss, peak)) => {
            println!("server RSS {when}: {rss:.0} MiB (peak so far {peak:.0} MiB)")
        }
        Err(err) => eprintln!("cannot read the memory of process {pid}: {err}"),
    }
}
