//! The `stdout` exporter: prints every event as one line, in Zilla's format:
//!
//! ```text
//! example:north_http_server [22/Aug/2026:07:58:56 +0000] [0x0000000000000003d] BINDING_HTTP_REQUEST_ACCEPTED - GET ...
//! ```
//!
//! `zilla start -l` adds one even when the config names none.

use std::io::Write;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use zilla_engine::{
    ConfigErrors, Event, Exporter, ExporterDescriptor, Nothing, PluginContext, PluginFactory,
};

/// The `stdout` exporter type.
#[derive(Debug)]
pub struct StdoutFactory;

zilla_engine::inventory::submit! { ExporterDescriptor::new::<StdoutFactory>() }

impl PluginFactory<dyn Exporter> for StdoutFactory {
    const TYPE: &'static str = "stdout";
    type Options = Nothing;

    fn build(_: &PluginContext, _: Option<Nothing>) -> Result<Arc<dyn Exporter>, ConfigErrors> {
        Ok(Arc::new(Stdout))
    }
}

/// A stdout exporter, for embedders that add one without a config entry (`zilla start -l`).
pub fn stdout() -> Arc<dyn Exporter> {
    Arc::new(Stdout)
}

#[derive(Debug)]
struct Stdout;

impl Exporter for Stdout {
    fn event(&self, e: &Event) {
        let line = format_event(e);
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
    }
}

/// Formats one event line.
pub fn format_event(e: &Event) -> String {
    format!(
        "{} [{}] [0x{:016x}d] {} {}",
        e.source,
        clf_time(e.time),
        e.trace_id,
        e.name,
        e.message
    )
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `dd/MMM/yyyy:HH:mm:ss +0000` (UTC).
fn clf_time(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{d:02}/{}/{y:04}:{:02}:{:02}:{:02} +0000",
        MONTHS[(m - 1) as usize],
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), after Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_like_zilla() {
        let e = Event {
            source: "example:north_http_server".into(),
            name: "ENGINE_STARTED",
            trace_id: 3,
            message: "Engine Started.".into(),
            time: UNIX_EPOCH + Duration::from_secs(1_787_385_536),
        };
        assert_eq!(
            format_event(&e),
            "example:north_http_server [22/Aug/2026:07:58:56 +0000] [0x0000000000000003d] ENGINE_STARTED Engine Started."
        );
    }
}
