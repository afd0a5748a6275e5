//! The conventional `process_*` metrics, read from `/proc/self` at each scrape (prometheus-client
//! has no process collector). Off Linux, or when `/proc` is unreadable, they are left out.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

#[derive(Debug)]
pub(super) struct ProcessCollector;

/// What one scrape reads; each figure is absent when its source could not be read.
#[derive(Debug, Default, PartialEq)]
struct Sample {
    cpu_seconds: Option<f64>,
    resident_bytes: Option<f64>,
    virtual_bytes: Option<f64>,
    start_time_seconds: Option<f64>,
    open_fds: Option<f64>,
    max_fds: Option<f64>,
    threads: Option<f64>,
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let sample = Sample::read();
        if let Some(v) = sample.cpu_seconds {
            let counter = ConstCounter::new(v);
            let metric = encoder.encode_descriptor(
                "process_cpu_seconds",
                "User and system CPU time spent, in seconds",
                None,
                counter.metric_type(),
            )?;
            counter.encode(metric)?;
        }
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                sample.resident_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                sample.virtual_bytes,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch, in seconds",
                sample.start_time_seconds,
            ),
            (
                "process_open_fds",
                "Open file descriptors (sockets included)",
                sample.open_fds,
            ),
            (
                "process_max_fds",
                "Limit on open file descriptors",
                sample.max_fds,
            ),
            ("process_threads", "OS threads", sample.threads),
        ];
        for (name, help, value) in gauges {
            if let Some(v) = value {
                let gauge = ConstGauge::new(v);
                let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
                gauge.encode(metric)?;
            }
        }
        Ok(())
    }
}

impl Sample {
    fn read() -> Self {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let boot_time = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| parse_boot_time(&s));
        let mut sample = parse_stat(&stat, clock_ticks(), page_size(), boot_time);
        sample.open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|dir| dir.count() as f64);
        sample.max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|s| parse_max_fds(&s));
        sample
    }
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

fn page_size() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 { size as f64 } else { 4096.0 }
}

/// `btime` of `/proc/stat`: boot time, seconds since the epoch.
fn parse_boot_time(proc_stat: &str) -> Option<f64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// `/proc/self/stat` (see proc(5)). The command name (field 2) is in parentheses and may hold
/// spaces, so fields are counted from the last `)`.
fn parse_stat(stat: &str, ticks: f64, page: f64, boot_time: Option<f64>) -> Sample {
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return Sample::default();
    };
    // `rest` starts at field 3 (state); field n is at index n - 3.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
    let cpu = match (field(14), field(15)) {
        (Some(user), Some(system)) => Some((user + system) / ticks),
        _ => None,
    };
    Sample {
        cpu_seconds: cpu,
        threads: field(20),
        start_time_seconds: boot_time.zip(field(22)).map(|(boot, t)| boot + t / ticks),
        virtual_bytes: field(23),
        resident_bytes: field(24).map(|pages| pages * page),
        ..Sample::default()
    }
}

/// The soft limit of the `Max open files` line of `/proc/self/limits`.
fn parse_max_fds(limits: &str) -> Option<f64> {
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|soft| soft.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        // A command name with spaces and a parenthesis, as proc(5) allows.
        let stat = "4242 (draw bridge) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                    250 150 0 0 20 0 7 0 5000 104857600 2560 18446744073709551615";
        let sample = parse_stat(stat, 100.0, 4096.0, Some(1_700_000_000.0));
        assert_eq!(sample.cpu_seconds, Some(4.0));
        assert_eq!(sample.threads, Some(7.0));
        assert_eq!(sample.start_time_seconds, Some(1_700_000_050.0));
        assert_eq!(sample.virtual_bytes, Some(104_857_600.0));
        assert_eq!(sample.resident_bytes, Some(2560.0 * 4096.0));
        assert_eq!(
            parse_stat("garbage", 100.0, 4096.0, None),
            Sample::default()
        );
    }

    #[test]
    fn limits_and_boot_time_are_found() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1048576              1048576              files\n";
        assert_eq!(parse_max_fds(limits), Some(1_048_576.0));
        assert_eq!(
            parse_boot_time("cpu  1 2 3\nbtime 1700000000\n"),
            Some(1_700_000_000.0)
        );
    }

    #[test]
    fn this_process_reads_its_own_figures() {
        let sample = Sample::read();
        if cfg!(target_os = "linux") {
            assert!(sample.resident_bytes.is_some_and(|b| b > 0.0), "{sample:?}");
            assert!(sample.open_fds.is_some_and(|n| n >= 3.0), "{sample:?}");
            assert!(sample.cpu_seconds.is_some(), "{sample:?}");
        }
    }
}
