//! The late-join figure: fill one room with strokes (a few connections, a bounded window of
//! unacknowledged ops each), then join it again and again, one join at a time, measuring
//! `JOIN_ROOM` → `INITIAL_STATE` and the frame's size.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use tokio::time::{Instant, sleep, timeout};
use tokio_tungstenite::tungstenite::Message;

use crate::auth::User;
use crate::conn::{self, Client, JoinReply};
use crate::report::{Extra, Report};
use crate::scenario::Scenario;
use crate::setup::{MAX_MESSAGE, create_rooms, users};
use crate::stats::{Clock, Collector, Recorder, now_us};
use crate::target::Target;

/// Unacknowledged strokes each filler keeps in flight.
const WINDOW: usize = 32;
/// Strokes per second per filler: under the server's default per-connection op limit (100/s),
/// so the fill is not slowed down by `RATE_LIMITED` refusals.
const FILL_RATE: f64 = 80.0;
/// A filler that hears nothing for this long has stalled.
const STALL: Duration = Duration::from_secs(30);

pub async fn run(sc: Scenario, targets: Vec<Arc<Target>>) -> Result<Report> {
    let fillers = sc.connections.max(1);
    let say = |msg: String| {
        if sc.progress {
            eprintln!("{msg}");
        }
    };
    let mut all = users(&sc, &targets, fillers + sc.joins + 1).await?;
    let creator = all.pop().context("no creator token")?;
    let joiners = all.split_off(fillers);
    let room = create_rooms(&targets, &creator.token, 1)
        .await?
        .pop()
        .context("no room")?;

    let start = Instant::now();
    let start_us = now_us();
    let clock = Clock {
        start_us,
        measure_from_us: 0,
        measure_to_us: u64::MAX,
    };

    say(format!(
        "filling room {room} with {} strokes using {fillers} connection(s)",
        sc.prefill
    ));
    // The fill has its own collector: its joins are not the figure.
    let fill_collector = Collector::new(clock);
    let mut fill = tokio::task::JoinSet::new();
    for (i, user) in all.into_iter().enumerate() {
        let share = sc.prefill / fillers + usize::from(i < sc.prefill % fillers);
        let target = targets[i % targets.len()].clone();
        let recorder = Recorder::new(fill_collector.clone());
        let (room, points, limit) = (room.clone(), sc.points_per_stroke, sc.connect_timeout);
        fill.spawn(async move {
            fill_one(i as u32, target, user, room, share, points, limit, recorder).await
        });
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            r = fill.join_next() => match r {
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(e))) => return Err(e.context("filling the room")),
                Some(Err(e)) => bail!("a filler task failed: {e}"),
                None => break,
            },
            _ = tick.tick() => {
                let acked = fill_collector.lock().totals.acks;
                if sc.progress {
                    eprintln!("[{:6.1}s fill] {acked}/{} strokes acknowledged", start.elapsed().as_secs_f64(), sc.prefill);
                }
            }
        }
    }

    say(format!("measuring {} sequential joins", sc.joins));
    let collector = Collector::new(clock);
    let mut samples = Vec::with_capacity(sc.joins);
    let (mut min_strokes, mut max_strokes) = (usize::MAX, 0);
    for (j, user) in joiners.into_iter().enumerate() {
        let target = &targets[j % targets.len()];
        let mut client = Client::new(
            (fillers + j) as u32,
            &room,
            &user.user_id,
            sc.points_per_stroke,
            Recorder::new(collector.clone()),
        );
        let mut ws = match conn::connect(
            target,
            &user.token,
            conn::ws_config(MAX_MESSAGE),
            sc.connect_timeout,
        )
        .await
        {
            Ok(ws) => ws,
            Err(e) => {
                client.recorder.tallies.connect_failures += 1;
                crate::stats::Tallies::bump(&mut client.recorder.tallies.errors, &e);
                client.recorder.finish(0, None);
                continue;
            }
        };
        match client.join(&mut ws, sc.connect_timeout).await {
            Ok(JoinReply::Initial { strokes, .. }) => {
                samples.push(client.last_join_us as f64 / 1000.0);
                min_strokes = min_strokes.min(strokes);
                max_strokes = max_strokes.max(strokes);
            }
            Ok(_) | Err(_) => client.recorder.tallies.join_failures += 1,
        }
        let _ = ws.close(None).await;
        let _ = timeout(Duration::from_secs(2), async {
            while let Some(Ok(_)) = ws.next().await {}
        })
        .await;
        client.recorder.finish(0, None);
        if sc.progress && (j + 1) % 10 == 0 {
            eprintln!(
                "[{:6.1}s join] {}/{} joins",
                start.elapsed().as_secs_f64(),
                j + 1,
                sc.joins
            );
        }
    }

    let agg = collector.lock();
    let end_s = start.elapsed().as_secs_f64();
    let extra = Extra {
        started_at_unix: start_us / 1_000_000,
        elapsed_secs: end_s,
        measured_from_s: 0.0,
        measured_to_s: end_s,
        aborted: false,
        settled: true,
        joined_at_end: 0,
        unacked_at_end: 0,
        joins_extra: (!samples.is_empty()).then_some(((min_strokes, max_strokes), samples)),
    };
    Ok(Report::build(sc, &agg, extra))
}

/// One filler: joins, then sends `count` strokes keeping at most [`WINDOW`] unacknowledged.
#[allow(clippy::too_many_arguments)]
async fn fill_one(
    index: u32,
    target: Arc<Target>,
    user: User,
    room: Arc<str>,
    count: usize,
    points: usize,
    limit: Duration,
    recorder: Recorder,
) -> Result<()> {
    let mut client = Client::new(index, &room, &user.user_id, points, recorder);
    let mut ws = conn::connect(&target, &user.token, conn::ws_config(MAX_MESSAGE), limit)
        .await
        .map_err(|e| anyhow::anyhow!("filler {index}: {e}"))?;
    match client.join(&mut ws, limit).await {
        Ok(JoinReply::Initial { .. } | JoinReply::Replay) => {}
        other => bail!("filler {index}: join failed: {other:?}"),
    }
    let mut sent = 0usize;
    let mut pace = tokio::time::interval(Duration::from_secs_f64(1.0 / FILL_RATE));
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while sent < count || client.unacked() > 0 {
        let may_send = sent < count && client.unacked() < WINDOW;
        let rejected_before = client.rejected_total;
        let frame = tokio::select! {
            _ = pace.tick(), if may_send => {
                if !client.send_stroke(&mut ws, 0, 0).await {
                    bail!("filler {index}: send failed");
                }
                sent += 1;
                continue;
            }
            f = timeout(STALL, ws.next()) => f,
        };
        match frame {
            Ok(Some(Ok(Message::Text(t)))) => {
                client.on_frame(&t, now_us());
            }
            Ok(Some(Ok(Message::Close(f)))) => {
                bail!(
                    "filler {index}: server closed {}",
                    conn::close_code(f.as_ref())
                )
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => bail!("filler {index}: {e}"),
            Ok(None) => bail!("filler {index}: connection ended"),
            Err(_) => bail!("filler {index}: no answer for {STALL:?}"),
        }
        // A refused stroke (say, rate limited) is sent again as a new one after a pause.
        let refused = client.rejected_total - rejected_before;
        if refused > 0 {
            sent -= refused as usize;
            sleep(Duration::from_millis(200)).await;
        }
    }
    let _ = ws.close(None).await;
    client.recorder.finish(0, None);
    Ok(())
}
