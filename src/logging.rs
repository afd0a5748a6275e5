//! Log output: human-readable text, or one flat JSON object per line for log collectors.
//!
//! A JSON line holds `timestamp`, `level`, `target`, `message`, the event's own fields at the
//! top level (never nested under `fields`), and the `instance` and `version` of the process, so
//! lines from many pods can be told apart without the collector's help. Errors that stop the
//! process before logging is set up ([`startup_error`]) are written in the same shape.

use std::fmt;
use std::io::IsTerminal;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The crate version, on every JSON line and in `drawbridge_build_info`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

impl Format {
    /// `log_format` as configured; anything but `json` is text (validation rejects the rest).
    pub fn parse(setting: &str) -> Self {
        if setting.eq_ignore_ascii_case("json") {
            Self::Json
        } else {
            Self::Text
        }
    }
}

/// Installs the global subscriber writing to stdout; `instance` goes on every JSON line.
pub fn init(format: Format, filter: EnvFilter, instance: &str) {
    // Colour codes only for a person at a terminal, not in files or a collector's pipe.
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal());
    match format {
        Format::Text => logs.init(),
        Format::Json => logs
            .event_format(FlatJson {
                instance: instance.to_owned(),
            })
            .init(),
    }
}

/// Reports an error that ends the process before (or instead of) serving, on stderr: in JSON
/// mode as one JSON line with `errors` as a list, else as a readable list.
pub fn startup_error(format: Format, instance: &str, message: &str, errors: &[String]) {
    match format {
        Format::Json => {
            let mut line = Map::new();
            line.insert("timestamp".into(), Value::String(timestamp()));
            line.insert("level".into(), Value::String("ERROR".into()));
            line.insert("target".into(), Value::String("drawbridge".into()));
            line.insert("message".into(), Value::String(message.into()));
            line.insert("errors".into(), errors.into());
            line.insert("instance".into(), Value::String(instance.into()));
            line.insert("version".into(), Value::String(VERSION.into()));
            eprintln!("{}", Value::Object(line));
        }
        Format::Text => {
            eprintln!("drawbridge: {message}:");
            for e in errors {
                eprintln!("  - {e}");
            }
        }
    }
}

fn timestamp() -> String {
    let mut out = String::new();
    if SystemTime.format_time(&mut Writer::new(&mut out)).is_err() {
        out.clear();
    }
    out
}

/// The JSON event format: flat fields plus the process's identity.
struct FlatJson {
    instance: String,
}

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert("timestamp".into(), Value::String(timestamp()));
        line.insert("level".into(), Value::String(meta.level().to_string()));
        line.insert("target".into(), Value::String(meta.target().into()));
        event.record(&mut Fields(&mut line));
        // The process's identity wins over an event field of the same name.
        line.insert("instance".into(), Value::String(self.instance.clone()));
        line.insert("version".into(), Value::String(VERSION.into()));
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// Records an event's fields as JSON values, numbers and booleans as such.
struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), Value::String(format!("{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().into(), Value::String(value.into()));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().into(), Value::String(value.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::MakeWriter;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    #[test]
    fn json_lines_are_flat_and_carry_instance_and_version() {
        let out = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(out.clone())
            .event_format(FlatJson {
                instance: "pod-1-abcd".into(),
            })
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(status = 200u64, route = "/ws", ok = true, "request");
        });
        let text = String::from_utf8(out.0.lock().expect("lock").clone()).expect("utf-8");
        let line: Value = serde_json::from_str(text.trim()).expect("one JSON line");
        assert_eq!(line["message"], "request");
        assert_eq!(line["status"], 200);
        assert_eq!(line["route"], "/ws");
        assert_eq!(line["ok"], true);
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["instance"], "pod-1-abcd");
        assert_eq!(line["version"], VERSION);
        assert!(line.get("fields").is_none(), "{line}");
    }
}
