//! What a run does: built-in defaults, then a named preset, then a TOML file, then flags, each
//! layer overriding the one before. [`ScenarioArgs`] is both the flag set and the file format
//! (every field optional), so the two cannot drift apart.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What the connections do once joined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Draw strokes and move cursors at the configured rates.
    Traffic,
    /// Join and stay idle (for memory per connection).
    Idle,
    /// Fill one room with strokes, then measure sequential joins (JOIN_ROOM → INITIAL_STATE).
    Latejoin,
    /// A v1.1 board: each user adds a rect once, then takes turns drawing (`STROKE_PROGRESS`
    /// batches, then the final stroke as `CANVAS_UPDATE`), dragging its rect (`ELEMENTS_UPDATE`)
    /// or resting.
    Board,
}

/// The issue's benchmark scenarios.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// 1,000 connections in 100 rooms of 10, 10 strokes/s per connection.
    Fanout,
    /// As fanout at 20 strokes/s per connection, beyond what the servers can carry: judged on
    /// loss, not latency, so the drain waits up to 5 minutes for the backlog to clear.
    Overload,
    /// One room of 50 users, each 20 cursor moves/s and 2 strokes/s.
    Presence,
    /// 10,000 joined idle connections on one instance.
    Idle,
    /// A room holding 5,000 strokes; 100 sequential joins.
    Latejoin,
    /// One room of 50 users on protocol 1.1: at any time about a third draw (15
    /// `STROKE_PROGRESS`/s, then the final stroke) and a third drag a rect (20
    /// `ELEMENTS_UPDATE`/s).
    Board,
}

/// A duration written as `90`, `1.5` (seconds), `500ms`, `30s`, `2m` or `1h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl FromStr for Dur {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
            (n, 0.001)
        } else if let Some(n) = s.strip_suffix('s') {
            (n, 1.0)
        } else if let Some(n) = s.strip_suffix('m') {
            (n, 60.0)
        } else if let Some(n) = s.strip_suffix('h') {
            (n, 3600.0)
        } else {
            (s, 1.0)
        };
        let v: f64 = num
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not a duration (try 30s, 500ms, 2m)"))?;
        if !v.is_finite() || v < 0.0 || v * scale > 1e7 {
            return Err(format!("{s:?} is out of range"));
        }
        Ok(Dur(Duration::from_secs_f64(v * scale)))
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}s", self.0.as_secs_f64())
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(f64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Num(n) => Dur::from_str(&n.to_string()),
            Raw::Text(t) => Dur::from_str(&t),
        }
        .map_err(serde::de::Error::custom)
    }
}

fn ser_secs<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// A fully resolved scenario.
#[derive(Clone, Debug, Serialize)]
pub struct Scenario {
    pub preset: Option<Preset>,
    pub mode: Mode,
    /// Instances; connections are spread over them round-robin.
    pub urls: Vec<String>,
    /// Use only the first URL.
    pub single_instance: bool,
    pub connections: usize,
    pub rooms: usize,
    pub strokes_per_sec: f64,
    pub points_per_stroke: usize,
    pub cursor_per_sec: f64,
    #[serde(serialize_with = "ser_secs")]
    pub duration: Duration,
    #[serde(serialize_with = "ser_secs")]
    pub warmup: Duration,
    #[serde(serialize_with = "ser_secs")]
    pub ramp_up: Duration,
    /// Longest wait after sending stops for ACKs and deliveries to settle.
    #[serde(serialize_with = "ser_secs")]
    pub drain: Duration,
    /// Latejoin: strokes put in the room before the joins.
    pub prefill: usize,
    /// Latejoin: sequential joins measured.
    pub joins: usize,
    /// `protocol` sent with `JOIN_ROOM` (`None`: a v1 client, served the v1 subset).
    pub protocol: Option<String>,
    /// Board: a user's activity (draw, drag or rest) lasts one turn.
    #[serde(serialize_with = "ser_secs")]
    pub turn: Duration,
    /// Board: share of the turns a user spends drawing...
    pub draw_share: f64,
    /// ...and dragging its rect (the rest it rests).
    pub drag_share: f64,
    /// Board: `STROKE_PROGRESS` batches per second while drawing.
    pub progress_per_sec: f64,
    /// Board: new points in each batch.
    pub progress_points: usize,
    /// Board: how long one stroke is drawn before its final `CANVAS_UPDATE`.
    #[serde(serialize_with = "ser_secs")]
    pub stroke_duration: Duration,
    /// Board: `ELEMENTS_UPDATE`s per second while dragging.
    pub drag_per_sec: f64,
    /// Never written to the report.
    #[serde(skip)]
    pub jwt_secret: Option<String>,
    #[serde(serialize_with = "ser_secs")]
    pub token_ttl: Duration,
    pub fail_on_loss: bool,
    pub allow_remote: bool,
    pub reconnect: bool,
    #[serde(serialize_with = "ser_secs")]
    pub connect_timeout: Duration,
    /// Print the live line on stderr once per second (off for library callers such as tests;
    /// the binary turns it on unless `--quiet`).
    #[serde(skip)]
    pub progress: bool,
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            preset: None,
            mode: Mode::Traffic,
            urls: Vec::new(),
            single_instance: false,
            connections: 10,
            rooms: 1,
            strokes_per_sec: 1.0,
            points_per_stroke: 10,
            cursor_per_sec: 0.0,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            ramp_up: Duration::from_secs(1),
            drain: Duration::from_secs(10),
            prefill: 1000,
            joins: 10,
            protocol: None,
            turn: Duration::from_secs(3),
            draw_share: 1.0 / 3.0,
            drag_share: 1.0 / 3.0,
            progress_per_sec: 15.0,
            progress_points: 3,
            stroke_duration: Duration::from_secs(1),
            drag_per_sec: 20.0,
            jwt_secret: None,
            token_ttl: Duration::from_secs(3600),
            fail_on_loss: true,
            allow_remote: false,
            reconnect: true,
            connect_timeout: Duration::from_secs(10),
            progress: false,
        }
    }
}

impl Scenario {
    /// The defaults with `preset` applied.
    pub fn preset(preset: Preset) -> Self {
        let base = Self {
            preset: Some(preset),
            ..Self::default()
        };
        let s = Duration::from_secs;
        match preset {
            Preset::Fanout | Preset::Overload => Self {
                connections: 1000,
                rooms: 100,
                strokes_per_sec: if preset == Preset::Fanout { 10.0 } else { 20.0 },
                duration: s(60),
                warmup: s(10),
                ramp_up: s(10),
                drain: if preset == Preset::Fanout {
                    s(10)
                } else {
                    s(300)
                },
                ..base
            },
            Preset::Presence => Self {
                connections: 50,
                rooms: 1,
                strokes_per_sec: 2.0,
                cursor_per_sec: 20.0,
                duration: s(60),
                warmup: s(5),
                ramp_up: s(2),
                ..base
            },
            Preset::Idle => Self {
                mode: Mode::Idle,
                single_instance: true,
                connections: 10_000,
                rooms: 1000,
                strokes_per_sec: 0.0,
                duration: s(30),
                warmup: s(0),
                ramp_up: s(20),
                ..base
            },
            Preset::Latejoin => Self {
                mode: Mode::Latejoin,
                connections: 8,
                rooms: 1,
                prefill: 5000,
                joins: 100,
                warmup: s(0),
                ..base
            },
            Preset::Board => Self {
                mode: Mode::Board,
                connections: 50,
                rooms: 1,
                protocol: Some("1.1".into()),
                duration: s(60),
                warmup: s(5),
                ramp_up: s(2),
                ..base
            },
        }
    }

    /// Board: how many `STROKE_PROGRESS` batches make one stroke (at least one).
    pub fn batches_per_stroke(&self) -> u32 {
        (self.progress_per_sec * self.stroke_duration.as_secs_f64())
            .round()
            .max(1.0) as u32
    }

    /// The preset's name, or "custom".
    pub fn name(&self) -> String {
        self.preset
            .map_or_else(|| "custom".to_owned(), |p| format!("{p:?}").to_lowercase())
    }

    /// The URLs this run uses.
    pub fn active_urls(&self) -> &[String] {
        if self.single_instance {
            &self.urls[..self.urls.len().min(1)]
        } else {
            &self.urls
        }
    }

    /// Every problem at once, rather than one per attempt.
    pub fn validate(&self) -> Result<()> {
        let mut bad = Vec::new();
        if self.urls.is_empty() {
            bad.push("at least one --url is needed".to_owned());
        }
        if self.connections == 0 {
            bad.push("--connections must be at least 1".to_owned());
        }
        if self.rooms == 0 {
            bad.push("--rooms must be at least 1".to_owned());
        }
        if self.mode != Mode::Latejoin && self.rooms > self.connections {
            bad.push(format!(
                "--rooms ({}) exceeds --connections ({})",
                self.rooms, self.connections
            ));
        }
        for (name, v) in [
            ("--strokes-per-sec", self.strokes_per_sec),
            ("--cursor-per-sec", self.cursor_per_sec),
            ("--progress-per-sec", self.progress_per_sec),
            ("--drag-per-sec", self.drag_per_sec),
        ] {
            if !v.is_finite() || !(0.0..=10_000.0).contains(&v) {
                bad.push(format!("{name} must be in [0, 10000], got {v}"));
            }
        }
        if !(1..=5000).contains(&self.points_per_stroke) {
            bad.push("--points-per-stroke must be in [1, 5000]".to_owned());
        }
        if self.duration.is_zero() && self.mode != Mode::Latejoin {
            bad.push("--duration must be positive".to_owned());
        }
        if self.mode == Mode::Latejoin && self.joins == 0 {
            bad.push("--joins must be at least 1 in latejoin mode".to_owned());
        }
        if self.mode == Mode::Board {
            self.validate_board(&mut bad);
        }
        if self
            .protocol
            .as_deref()
            .is_some_and(|p| p.is_empty() || p.len() > 16)
        {
            bad.push("--protocol must be a short version such as 1.1".to_owned());
        }
        if self.token_ttl < self.ramp_up + self.warmup + self.duration + self.drain {
            bad.push("--token-ttl is shorter than the run".to_owned());
        }
        if bad.is_empty() {
            Ok(())
        } else {
            bail!("bad scenario:\n  {}", bad.join("\n  "))
        }
    }

    fn validate_board(&self, bad: &mut Vec<String>) {
        let share = |v: f64| v.is_finite() && (0.0..=1.0).contains(&v);
        if !share(self.draw_share) || !share(self.drag_share) {
            bad.push("--draw-share and --drag-share must be in [0, 1]".to_owned());
        } else if self.draw_share + self.drag_share > 1.0 + 1e-9 {
            bad.push("--draw-share plus --drag-share exceeds 1".to_owned());
        }
        if self.turn.is_zero() {
            bad.push("--turn must be positive".to_owned());
        }
        if self.stroke_duration.is_zero() {
            bad.push("--stroke-duration must be positive".to_owned());
        }
        if self.draw_share > 0.0 && self.progress_per_sec <= 0.0 {
            bad.push("--progress-per-sec must be positive when users draw".to_owned());
        }
        if self.drag_share > 0.0 && self.drag_per_sec <= 0.0 {
            bad.push("--drag-per-sec must be positive when users drag".to_owned());
        }
        // The final stroke holds every batch's points and the pointer-up point.
        let points = self.batches_per_stroke() as usize * self.progress_points + 1;
        if self.progress_points == 0 || points > 5000 {
            bad.push(format!(
                "--progress-points must be at least 1, and a whole stroke ({points} points) at \
                 most 5000"
            ));
        }
        if self.protocol.is_none() {
            bad.push("board mode needs --protocol (1.1): v1 clients are not sent elements".into());
        }
    }
}

/// Scenario settings, as flags and as the keys of a `--scenario` TOML file (same names, with
/// dashes: `strokes-per-sec = 10`). Every one is optional: unset values come from the preset
/// (or the built-in defaults, noted per flag).
#[derive(Args, Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ScenarioArgs {
    /// Named scenario to start from: fanout, overload, presence, idle, latejoin or board (the
    /// issue's benchmark figures). Other flags override its values.
    #[arg(long, value_enum)]
    pub preset: Option<Preset>,

    /// traffic (strokes and cursors), idle (join and stay idle), latejoin (join-time figure) or
    /// board (v1.1: live strokes and drags in turns). [default: traffic]
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,

    /// A drawbridge instance: ws://host:port[/path], http://host:port or host:port (path
    /// defaults to /ws). Repeat for several instances; connections go round-robin.
    #[arg(long = "url", value_name = "URL")]
    #[serde(default)]
    pub url: Vec<String>,

    /// Use only the first --url (the idle preset sets this: memory of one instance).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub single_instance: Option<bool>,

    /// WebSocket connections (one simulated user each); in latejoin mode, the connections that
    /// fill the room (each paced at 80 strokes/s). [default: 10; latejoin preset 8]
    #[arg(long, short = 'c')]
    pub connections: Option<usize>,

    /// Rooms; connections are spread evenly, consecutive connections share a room and
    /// alternate between instances. [default: 1]
    #[arg(long, short = 'r')]
    pub rooms: Option<usize>,

    /// Strokes per second per connection (0 = none). [default: 1]
    #[arg(long)]
    pub strokes_per_sec: Option<f64>,

    /// Points in each stroke (drives frame size). [default: 10]
    #[arg(long)]
    pub points_per_stroke: Option<usize>,

    /// Cursor moves per second per connection (the server relays at most 20/s). [default: 0]
    #[arg(long)]
    pub cursor_per_sec: Option<f64>,

    /// Measured window (after ramp-up and warm-up), e.g. 60s or 2m. [default: 10s]
    #[arg(long, short = 'd')]
    pub duration: Option<Dur>,

    /// Time after ramp-up whose traffic is sent but left out of the totals. [default: 2s]
    #[arg(long)]
    pub warmup: Option<Dur>,

    /// Connections are opened evenly over this time. [default: 1s]
    #[arg(long)]
    pub ramp_up: Option<Dur>,

    /// Longest wait after sending stops for outstanding ACKs and deliveries. [default: 10s]
    #[arg(long)]
    pub drain: Option<Dur>,

    /// latejoin: strokes put into the room before the joins. [default: 1000; preset 5000]
    #[arg(long)]
    pub prefill: Option<usize>,

    /// latejoin: sequential joins measured. [default: 10; preset 100]
    #[arg(long)]
    pub joins: Option<usize>,

    /// `protocol` sent with `JOIN_ROOM`, e.g. 1.1 (absent: a v1 client, served the v1 subset).
    /// [default: none; board preset 1.1]
    #[arg(long)]
    pub protocol: Option<String>,

    /// board: each user's activity (draw, drag or rest) lasts one turn; turns start at
    /// different times for different users. [default: 3s]
    #[arg(long)]
    pub turn: Option<Dur>,

    /// board: share of users drawing at any time (of their turns). [default: 0.333]
    #[arg(long)]
    pub draw_share: Option<f64>,

    /// board: share of users dragging their rect at any time; the rest rest. [default: 0.333]
    #[arg(long)]
    pub drag_share: Option<f64>,

    /// board: STROKE_PROGRESS batches per second while drawing (the server relays at most
    /// `progress_per_sec`, 30 by default). [default: 15]
    #[arg(long)]
    pub progress_per_sec: Option<f64>,

    /// board: new points in each STROKE_PROGRESS batch. [default: 3]
    #[arg(long)]
    pub progress_points: Option<usize>,

    /// board: how long a stroke is drawn before its final CANVAS_UPDATE. [default: 1s]
    #[arg(long)]
    pub stroke_duration: Option<Dur>,

    /// board: ELEMENTS_UPDATE moves of the user's rect per second while dragging. [default: 20]
    #[arg(long)]
    pub drag_per_sec: Option<f64>,

    /// HS256 secret of the servers: tokens are minted locally (claims as PROTOCOL.md §2, users
    /// lt-<n>). Without it, tokens come from POST /api/v1/auth/guest, one request per user.
    /// Also read from LOADTEST_JWT_SECRET.
    #[arg(long, env = "LOADTEST_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// Lifetime of minted tokens. [default: 1h]
    #[arg(long)]
    pub token_ttl: Option<Dur>,

    /// Exit non-zero when any receiver saw a gap, a duplicate or a reordering in a room's seq,
    /// an acknowledged stroke never reached a member, or a stroke was never acknowledged:
    /// --fail-on-loss=false to only report them. [default: true]
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub fail_on_loss: Option<bool>,

    /// Allow targets outside the loopback range (refused by default, as a guard against
    /// loading the wrong host).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub allow_remote: Option<bool>,

    /// Reconnect after a slow-consumer close (1013), a drain (1001) or a dropped socket, and
    /// resume with JOIN_ROOM {since, epoch}. [default: true]
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub reconnect: Option<bool>,

    /// Limit for TCP connect + WebSocket handshake, and for a join's answer. [default: 10s]
    #[arg(long)]
    pub connect_timeout: Option<Dur>,
}

impl ScenarioArgs {
    /// Reads a `--scenario` file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read scenario file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("bad scenario file {}", path.display()))
    }

    /// Sets every value this layer has.
    pub fn apply(&self, s: &mut Scenario) {
        macro_rules! set {
            ($($field:ident),*) => {$(
                if let Some(v) = self.$field.clone() { s.$field = v; }
            )*};
        }
        set!(
            mode,
            single_instance,
            connections,
            rooms,
            strokes_per_sec,
            points_per_stroke,
            cursor_per_sec,
            prefill,
            joins,
            draw_share,
            drag_share,
            progress_per_sec,
            progress_points,
            drag_per_sec,
            fail_on_loss,
            allow_remote,
            reconnect
        );
        macro_rules! set_dur {
            ($($field:ident),*) => {$(
                if let Some(Dur(v)) = self.$field { s.$field = v; }
            )*};
        }
        set_dur!(
            duration,
            warmup,
            ramp_up,
            drain,
            token_ttl,
            connect_timeout,
            turn,
            stroke_duration
        );
        if self.protocol.is_some() {
            s.protocol = self.protocol.clone();
        }
        if !self.url.is_empty() {
            s.urls = self.url.clone();
        }
        if self.jwt_secret.is_some() {
            s.jwt_secret = self.jwt_secret.clone();
        }
    }

    /// Defaults ← preset (flag, else file) ← file ← flags.
    pub fn resolve(file: Option<&ScenarioArgs>, flags: &ScenarioArgs) -> Scenario {
        let preset = flags.preset.or(file.and_then(|f| f.preset));
        let mut s = preset.map(Scenario::preset).unwrap_or_default();
        if let Some(f) = file {
            f.apply(&mut s);
        }
        flags.apply(&mut s);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_every_spelling() {
        let ms = |s: &str| Dur::from_str(s).map(|d| d.0.as_millis());
        assert_eq!(ms("90"), Ok(90_000));
        assert_eq!(ms("1.5"), Ok(1_500));
        assert_eq!(ms("500ms"), Ok(500));
        assert_eq!(ms("2m"), Ok(120_000));
        assert_eq!(ms(" 30s "), Ok(30_000));
        assert_eq!(ms("1h"), Ok(3_600_000));
        assert!(ms("soon").is_err());
        assert!(ms("-1s").is_err());
    }

    #[test]
    fn flags_override_the_file_which_overrides_the_preset() {
        let file: ScenarioArgs = toml::from_str(
            r#"
            preset = "fanout"
            url = ["ws://127.0.0.1:1"]
            connections = 20
            duration = "5s"
            warmup = 1
            "#,
        )
        .expect("toml");
        let flags = ScenarioArgs {
            connections: Some(4),
            ..ScenarioArgs::default()
        };
        let s = ScenarioArgs::resolve(Some(&file), &flags);
        assert_eq!(s.preset, Some(Preset::Fanout));
        assert_eq!(s.connections, 4);
        assert_eq!(s.rooms, 100);
        assert_eq!(s.duration, Duration::from_secs(5));
        assert_eq!(s.warmup, Duration::from_secs(1));
        assert_eq!(s.urls, vec!["ws://127.0.0.1:1".to_owned()]);
        // 4 connections cannot fill 100 rooms.
        assert!(s.validate().is_err());
        assert!(toml::from_str::<ScenarioArgs>("bogus = 1").is_err());
    }

    #[test]
    fn presets_are_valid_once_given_a_url() {
        for p in Preset::value_variants() {
            let mut s = Scenario::preset(*p);
            s.urls = vec!["ws://127.0.0.1:1".into()];
            s.validate().expect("preset validates");
        }
        let mut s = Scenario::preset(Preset::Idle);
        s.urls = vec!["a".into(), "b".into()];
        assert_eq!(s.active_urls().len(), 1);
    }

    /// The figures the README and the benchmarks quote for each preset.
    #[test]
    fn presets_hold_the_documented_figures() {
        let traffic = |p| {
            let s = Scenario::preset(p);
            (
                s.mode,
                s.connections,
                s.rooms,
                s.strokes_per_sec,
                s.cursor_per_sec,
            )
        };
        assert_eq!(
            traffic(Preset::Fanout),
            (Mode::Traffic, 1000, 100, 10.0, 0.0)
        );
        assert_eq!(
            traffic(Preset::Overload),
            (Mode::Traffic, 1000, 100, 20.0, 0.0)
        );
        assert_eq!(traffic(Preset::Presence), (Mode::Traffic, 50, 1, 2.0, 20.0));
        assert_eq!(
            Scenario::preset(Preset::Overload).drain,
            Duration::from_secs(300)
        );
        let idle = Scenario::preset(Preset::Idle);
        assert_eq!((idle.mode, idle.connections), (Mode::Idle, 10_000));
        assert!(idle.single_instance);
        let late = Scenario::preset(Preset::Latejoin);
        assert_eq!(
            (late.mode, late.prefill, late.joins),
            (Mode::Latejoin, 5000, 100)
        );
        assert_eq!(Scenario::preset(Preset::Latejoin).name(), "latejoin");
        assert_eq!(Scenario::default().name(), "custom");
        let board = Scenario::preset(Preset::Board);
        assert_eq!(
            (board.mode, board.connections, board.rooms),
            (Mode::Board, 50, 1)
        );
        assert_eq!(board.protocol.as_deref(), Some("1.1"));
        assert_eq!((board.progress_per_sec, board.drag_per_sec), (15.0, 20.0));
        assert!((board.draw_share - 1.0 / 3.0).abs() < 1e-9);
        assert!((board.drag_share - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(board.batches_per_stroke(), 15);
        assert_eq!(board.name(), "board");
    }

    #[test]
    fn board_settings_come_from_flags_and_files_and_are_checked() {
        let file: ScenarioArgs = toml::from_str(
            r#"
            preset = "board"
            url = ["ws://127.0.0.1:1"]
            turn = "2s"
            draw-share = 0.5
            drag-share = 0.25
            progress-per-sec = 10
            progress-points = 4
            stroke-duration = "500ms"
            drag-per-sec = 30
            "#,
        )
        .expect("toml");
        let s = ScenarioArgs::resolve(Some(&file), &ScenarioArgs::default());
        assert_eq!(s.turn, Duration::from_secs(2));
        assert_eq!((s.draw_share, s.drag_share), (0.5, 0.25));
        assert_eq!((s.progress_per_sec, s.progress_points), (10.0, 4));
        assert_eq!(s.stroke_duration, Duration::from_millis(500));
        assert_eq!((s.drag_per_sec, s.batches_per_stroke()), (30.0, 5));
        s.validate().expect("valid");
        let flags = ScenarioArgs {
            draw_share: Some(0.8),
            ..ScenarioArgs::default()
        };
        let s = ScenarioArgs::resolve(Some(&file), &flags);
        let e = s.validate().expect_err("shares above 1").to_string();
        assert!(e.contains("exceeds 1"), "{e}");
        let no_protocol = Scenario {
            protocol: None,
            ..s
        };
        let e = no_protocol.validate().expect_err("v1 board").to_string();
        assert!(e.contains("--protocol"), "{e}");
        let huge = Scenario {
            progress_points: 1000,
            urls: vec!["ws://127.0.0.1:1".into()],
            ..Scenario::preset(Preset::Board)
        };
        let e = huge.validate().expect_err("a stroke too long").to_string();
        assert!(e.contains("--progress-points"), "{e}");
    }
}
