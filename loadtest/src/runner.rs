//! A whole run: the timeline (ramp-up → warm-up → measured window → drain), the
//! live progress line, and the final report.

use std::io::{IsTerminal, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, sleep_until};

use crate::conn::{self, ConnPlan, Phase, Shared};
use crate::latejoin;
use crate::report::{Extra, Report};
use crate::scenario::{Mode, Scenario};
use crate::setup::{MAX_MESSAGE, create_rooms, raise_fd_limit, users};
use crate::stats::{Clock, Collector, Recorder, now_us};
use crate::target::Target;

/// The drain ends early once nothing has arrived for this long and every op is acknowledged.
const QUIET: Duration = Duration::from_secs(1);

/// Runs `scenario` to completion and reports what it measured.
pub async fn run(scenario: Scenario) -> Result<Report> {
    run_until(scenario, std::future::pending()).await
}

/// As [`run`], but `stop` (say, Ctrl-C) ends the traffic early; the report then says it was
/// interrupted.
pub async fn run_until(scenario: Scenario, stop: impl Future<Output = ()>) -> Result<Report> {
    scenario.validate()?;
    let mut targets = Vec::new();
    for url in scenario.active_urls() {
        targets.push(Arc::new(Target::resolve(url, scenario.allow_remote).await?));
    }
    raise_fd_limit(scenario.connections as u64 + scenario.joins as u64 + 256);
    match scenario.mode {
        Mode::Latejoin => latejoin::run(scenario, targets).await,
        Mode::Traffic | Mode::Idle | Mode::Board => run_connections(scenario, targets, stop).await,
    }
}

async fn run_connections(
    scenario: Scenario,
    targets: Vec<Arc<Target>>,
    stop: impl Future<Output = ()>,
) -> Result<Report> {
    tokio::pin!(stop);
    let sc = Arc::new(scenario);
    let n = sc.connections;
    let say = |msg: String| {
        if sc.progress {
            eprintln!("{msg}");
        }
    };
    say(format!(
        "preparing {} tokens and {} rooms on {} instance(s)",
        n + 1,
        sc.rooms,
        targets.len()
    ));
    let mut users = users(&sc, &targets, n + 1).await?;
    let creator = users.pop().context("no creator token")?;
    let rooms = create_rooms(&targets, &creator.token, sc.rooms).await?;

    let start = Instant::now() + Duration::from_millis(100);
    let start_us = now_us() + 100_000;
    // The measured window, from the start.
    let window_from = sc.ramp_up + sc.warmup;
    let window_to = window_from + sc.duration;
    let measure_to = start + window_to;
    let clock = Clock {
        start_us,
        measure_from_us: start_us + window_from.as_micros() as u64,
        measure_to_us: start_us + window_to.as_micros() as u64,
    };
    let collector = Collector::new(clock);
    if let Some(path) = std::env::var_os("LOADTEST_JOINED_LOG") {
        tokio::spawn(log_joined(path.into(), collector.clone()));
    }
    let members: Arc<[AtomicI64]> = (0..sc.rooms).map(|_| AtomicI64::new(0)).collect();
    let (phase_tx, phase_rx) = watch::channel(Phase::Running);
    let shared = Arc::new(Shared {
        scenario: sc.clone(),
        members: members.clone(),
        send_until: measure_to,
        phase: phase_rx,
        ws_config: conn::ws_config(MAX_MESSAGE),
    });

    let all_targets: Arc<[Arc<Target>]> = targets.clone().into();
    let mut tasks = JoinSet::new();
    for (i, user) in users.into_iter().enumerate() {
        // Consecutive connections share a room; round-robin targets put each room's members
        // on every instance, so fan-out crosses instances.
        let room_index = i * sc.rooms / n;
        // The first connection of room r is the smallest i with i * rooms / n == r.
        let first = |r: usize| (r * n).div_ceil(sc.rooms);
        let plan = ConnPlan {
            index: i as u32,
            room_index,
            room_slot: i - first(room_index),
            room_size: first(room_index + 1) - first(room_index),
            room_id: rooms[room_index].clone(),
            targets: all_targets.clone(),
            target_at: i % targets.len(),
            user,
            start_at: start + sc.ramp_up.mul_f64(i as f64 / n as f64),
        };
        tasks.spawn(conn::run_client(
            plan,
            shared.clone(),
            Recorder::new(collector.clone()),
        ));
    }

    let mut aborted = false;
    let progress = Progress::new(sc.progress);
    let mut next_line = start + Duration::from_millis(1300);
    // Ramp-up, warm-up and the measured window.
    loop {
        let now = Instant::now();
        if now >= measure_to {
            break;
        }
        tokio::select! {
            _ = sleep_until(next_line.min(measure_to)) => {}
            () = &mut stop => { aborted = true; break; }
        }
        if Instant::now() >= next_line {
            progress.line(&collector, &sc, start, "run");
            next_line += Duration::from_secs(1);
        }
    }
    let joined_at_end = collector.joined.load(Ordering::Relaxed);
    // Drain: outstanding ACKs and deliveries, bounded by --drain.
    let mut settled = false;
    if !aborted {
        let drain_until = Instant::now() + sc.drain;
        let mut last = collector.received_frames();
        let mut quiet_since = Instant::now();
        loop {
            tokio::select! {
                _ = sleep(Duration::from_millis(100)) => {}
                () = &mut stop => { aborted = true; break; }
            }
            let now = Instant::now();
            let rx = collector.received_frames();
            if rx != last {
                last = rx;
                quiet_since = now;
            }
            let quiet_and_acked = collector.unacked.load(Ordering::Relaxed) <= 0
                && now.duration_since(quiet_since) >= QUIET;
            if quiet_and_acked {
                settled = true;
                break;
            }
            if now >= drain_until {
                break;
            }
            if now >= next_line {
                progress.line(&collector, &sc, start, "drain");
                next_line += Duration::from_secs(1);
            }
        }
    }
    let _ = phase_tx.send(Phase::Closing);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !tasks.is_empty() {
        tokio::select! {
            r = tasks.join_next() => {
                if let Some(Err(e)) = r
                    && e.is_panic()
                {
                    bail!("a connection task panicked: {e}");
                }
            }
            _ = sleep_until(deadline) => {
                tasks.abort_all();
                while tasks.join_next().await.is_some() {}
            }
        }
    }
    progress.done();

    let unacked_at_end = collector.unacked.load(Ordering::Relaxed).max(0) as u64;
    let agg = collector.lock();
    let elapsed_secs = start.elapsed().as_secs_f64();
    let extra = Extra {
        started_at_unix: start_us / 1_000_000,
        elapsed_secs,
        measured_from_s: window_from.as_secs_f64(),
        // An interrupted run measured only until it stopped.
        measured_to_s: window_to.as_secs_f64().min(elapsed_secs),
        aborted,
        settled,
        joined_at_end,
        unacked_at_end,
        joins_extra: None,
    };
    Ok(Report::build((*sc).clone(), &agg, extra))
}

/// The once-a-second line on stderr.
pub struct Progress {
    enabled: bool,
    tty: bool,
}

impl Progress {
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            tty: std::io::stderr().is_terminal(),
        }
    }

    /// Prints the last complete second.
    pub fn line(&self, collector: &Collector, sc: &Scenario, start: Instant, phase: &str) {
        if !self.enabled {
            return;
        }
        let elapsed = start.elapsed().as_secs_f64();
        let sec = (elapsed as usize).saturating_sub(1);
        let joined = collector.joined.load(Ordering::Relaxed);
        let unacked = collector.unacked.load(Ordering::Relaxed);
        let agg = collector.lock();
        let line = match agg.timeline.get(sec) {
            Some(b) => {
                let s = crate::report::Second::from_bucket(sec as u32, b);
                let board = if sc.mode == crate::scenario::Mode::Board {
                    format!(" live {}/s drag {}/s", s.progress_sent, s.drags_sent)
                } else {
                    String::new()
                };
                let p99 = [
                    s.stroke_p99_ms,
                    s.cursor_p99_ms,
                    s.progress_p99_ms,
                    s.drag_p99_ms,
                ]
                .into_iter()
                .fold(0.0, f64::max);
                format!(
                    "[{elapsed:6.1}s {phase}] joined {joined}/{} | sent {}/s cur {}/s{board} | \
                     delivered {}/s | p99 {p99:.1}ms ack p99 {:.1}ms | unacked {unacked} | \
                     reconn {} err {} (total {})",
                    sc.connections,
                    s.strokes_sent,
                    s.cursors_sent,
                    s.strokes_delivered
                        + s.cursors_delivered
                        + s.progress_delivered
                        + s.drags_delivered,
                    s.ack_p99_ms,
                    s.reconnects,
                    s.errors,
                    agg.totals.errors,
                )
            }
            None => format!(
                "[{elapsed:6.1}s {phase}] joined {joined}/{}",
                sc.connections
            ),
        };
        drop(agg);
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[K{line}");
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }

    pub fn done(&self) {
        if self.enabled && self.tty {
            eprintln!();
        }
    }
}

/// Writes `<unix ms> <connections joined>` to `path` whenever the count changes (sampled every
/// 5 ms), so a script that kills an instance can tell when every client was back and caught up
/// (`scripts/reconnect-storm.sh`, `scripts/chaos.sh`). Ends with the process.
async fn log_joined(path: std::path::PathBuf, collector: Arc<crate::stats::Collector>) {
    let Ok(mut file) = std::fs::File::create(&path) else {
        eprintln!("cannot write {}", path.display());
        return;
    };
    let mut last = i64::MIN;
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    loop {
        tick.tick().await;
        let joined = collector.joined.load(Ordering::Relaxed);
        if joined != last {
            last = joined;
            let ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
            if writeln!(file, "{ms} {joined}").is_err() {
                return;
            }
        }
    }
}
