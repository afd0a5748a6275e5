//! `loadtest`: drives drawbridge instances with simulated whiteboard users and reports delivery,
//! ordering and latency. See `loadtest --help`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;

use loadtest::scenario::ScenarioArgs;

// The generator must not be the bottleneck: many small frames on many threads.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit codes, documented in `--help`.
const EXIT_FAILED: u8 = 1;
const EXIT_ERROR: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "loadtest",
    version,
    about = "Load generator for drawbridge speaking its wire protocol (PROTOCOL.md)",
    long_about = "Load generator for drawbridge speaking its wire protocol (PROTOCOL.md).\n\n\
        Opens one WebSocket per simulated user, joins rooms, sends strokes (CANVAS_UPDATE) and \
        cursor moves at fixed rates (or, in board mode, v1.1 live strokes, STROKE_PROGRESS, and \
        drags, ELEMENTS_UPDATE, in turns), and measures per message kind: sent, delivered, \
        expected, delivery ratio, end-to-end latency (the send time travels in the strokeId or \
        in a relayed coordinate; sender and receivers share this machine's clock), ACK latency, join time and \
        INITIAL_STATE size, seq gaps/duplicates per room per receiver, close codes, errors and \
        reconnects. A live line goes to stderr once per second.\n\n\
        Settings are layered: built-in defaults, then --preset, then the --scenario TOML file \
        (keys are the flag names without the leading dashes, e.g. strokes-per-sec = 10, \
        url = [\"ws://127.0.0.1:8080\"]), \
        then flags.",
    after_help = "Exit status: 0 when the run passed; 1 when it saw seq gaps, duplicates, \
        out-of-order events, acknowledged ops missing at a receiver, never-acknowledged ops \
        (unless --fail-on-loss=false), or measured nothing at all; 2 when it could not run \
        (bad flags, unreachable server, room creation refused).\n\n\
        Example: loadtest --preset fanout --url ws://127.0.0.1:8080 --url ws://127.0.0.1:8081 \
        --jwt-secret \"$SECRET\" --out result.json --chart chart.svg"
)]
struct Cli {
    #[command(flatten)]
    scenario: ScenarioArgs,

    /// TOML file with scenario settings (same names as the flags); flags override it.
    #[arg(long = "scenario", value_name = "FILE")]
    scenario_file: Option<PathBuf>,

    /// Write the full result (totals, percentiles, per-second timeline) as JSON here.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,

    /// Write an SVG chart of latency percentiles and throughput per second here.
    #[arg(long, value_name = "FILE")]
    chart: Option<PathBuf>,

    /// Tokio worker threads for the client. Keep it small: the servers share this machine.
    #[arg(long, default_value_t = 2)]
    threads: usize,

    /// No live progress line.
    #[arg(long, short = 'q')]
    quiet: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(EXIT_FAILED),
        Err(e) => {
            eprintln!("loadtest: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn real_main(cli: Cli) -> Result<bool> {
    let file = cli
        .scenario_file
        .as_deref()
        .map(ScenarioArgs::from_file)
        .transpose()?;
    let mut scenario = ScenarioArgs::resolve(file.as_ref(), &cli.scenario);
    scenario.progress = !cli.quiet;
    scenario.validate()?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.threads.max(1))
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let interrupted = async {
        // If the handler cannot be installed, Ctrl-C just kills the process as usual.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let report = runtime.block_on(loadtest::run_until(scenario, interrupted))?;
    // Dropping a runtime with thousands of finished sockets can take a moment; do not wait.
    runtime.shutdown_background();

    println!("{}", report.table());
    if let Some(path) = &cli.out {
        let json = serde_json::to_string_pretty(&report).context("serializing the report")?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("result written to {}", path.display());
    }
    if let Some(path) = &cli.chart {
        loadtest::chart::render(&report, path)?;
        eprintln!("chart written to {}", path.display());
    }
    Ok(report.passed)
}
