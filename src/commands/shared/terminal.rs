//! The terminal: output settings, the yes/no question, and the two ways of
//! showing progress. On a terminal (both stdout and stderr, `CI` unset) a
//! live display draws one line per pool with launched / running / joined /
//! Ready counts, elapsed time and the slowest node, and a spinner while
//! something is awaited; everywhere else each event is one timestamped
//! line, the same text a log has always shown (`progress::Event::plain_text`).

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use time::OffsetDateTime;

use crate::adapters::Cloud;
use crate::error::{Error, Result};
use crate::progress::{Event, NodeStage, Progress};

/// How progress is shown (`--progress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// Live on a terminal, plain lines otherwise (or when `CI` is set).
    Auto,
    /// Always the live display.
    Live,
    /// Always timestamped lines.
    Plain,
}

/// When to colour output (`--color`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Color {
    Auto,
    Always,
    Never,
}

/// Output settings shared by every command (from the global flags).
pub struct Ui {
    pub color: bool,
    pub api_stats: bool,
    pub live: bool,
    /// --quiet: no progress, only results and errors.
    pub quiet: bool,
}

impl Ui {
    pub fn new(color: Color, api_stats: bool, progress: ProgressMode) -> Self {
        let color = match color {
            Color::Always => true,
            Color::Never => false,
            Color::Auto => std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        };
        let in_ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
        let live = match progress {
            ProgressMode::Live => true,
            ProgressMode::Plain => false,
            ProgressMode::Auto => std::io::stdout().is_terminal() && std::io::stderr().is_terminal() && !in_ci,
        };
        Self { color, api_stats, live, quiet: false }
    }

    /// Where a command's progress goes.
    pub fn reporter(&self) -> Reporter {
        match (self.quiet, self.live) {
            (true, _) => Reporter::Quiet,
            (false, true) => Reporter::Live(Box::new(Live::new())),
            (false, false) => Reporter::Plain,
        }
    }
}

/// Asks "yes" on a terminal; refuses without `--yes` otherwise. The
/// question waits on its own thread, so a Ctrl-C (`Interrupt`) can end a
/// run left at the prompt and still give its lock back.
pub async fn confirm(question: &str, yes: bool) -> Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(Error::NotConfirmed("standard input is not a terminal; pass --yes to proceed without asking".into()));
    }
    eprint!("\n{question}\n  Only 'yes' will be accepted: ");
    std::io::stderr().flush().ok();
    let answer = tokio::task::spawn_blocking(|| {
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer).ok();
        answer
    })
    .await
    .unwrap_or_default();
    if answer.trim() == "yes" { Ok(()) } else { Err(Error::NotConfirmed("cancelled".into())) }
}

/// Ctrl-C, listened for from the moment this is made: a run that holds
/// the cluster lock must not die of the signal with the lock held, so the
/// command stops its work when `wait` returns, gives the lock back and
/// exits 130. Cloneable: every part of a run can wait on it.
#[derive(Clone)]
pub struct Interrupt(tokio::sync::watch::Receiver<bool>);

impl Interrupt {
    /// Takes SIGINT over now (not at the first poll of a future).
    pub fn listen() -> Self {
        let (tx, rx) = tokio::sync::watch::channel(false);
        #[cfg(unix)]
        {
            if let Ok(mut sig) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()) {
                tokio::spawn(async move {
                    sig.recv().await;
                    let _ = tx.send(true);
                });
            }
        }
        #[cfg(not(unix))]
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            let _ = tx.send(true);
        });
        Self(rx)
    }

    /// Returns once Ctrl-C was pressed.
    pub async fn wait(&self) {
        let mut rx = self.0.clone();
        let _ = rx.wait_for(|pressed| *pressed).await;
    }
}

pub fn print_api_stats<C: Cloud>(cloud: &C) {
    let counts = cloud.call_counts();
    let total: u64 = counts.values().sum();
    eprintln!("AWS API calls: {total}");
    for (op, n) in counts {
        eprintln!("  {op:<32} {n}");
    }
}

fn timestamped(message: &str) -> String {
    let t = OffsetDateTime::now_utc();
    format!("[{:02}:{:02}:{:02}] {message}", t.hour(), t.minute(), t.second())
}

/// A progress line on stderr with a timestamp.
pub fn progress(message: &str) {
    eprintln!("{}", timestamped(message));
}

/// The terminal's `Progress`.
pub enum Reporter {
    Plain,
    Live(Box<Live>),
    /// --quiet: results and warnings only.
    Quiet,
}

impl Reporter {
    /// A line on stdout (a plan, a result) that the live display neither
    /// draws over nor is pushed out of place by: the bars step aside for it.
    pub fn say(&self, text: &str) {
        match self {
            Reporter::Plain | Reporter::Quiet => println!("{text}"),
            Reporter::Live(live) => live.multi.suspend(|| println!("{text}")),
        }
    }

    /// A warning on stderr, above the live display when there is one.
    pub fn warn(&self, text: &str) {
        match self {
            Reporter::Plain | Reporter::Quiet => eprintln!("{text}"),
            Reporter::Live(live) => {
                let _ = live.multi.println(text);
            }
        }
    }
}

impl Progress for Reporter {
    fn event(&self, event: &Event<'_>) {
        match self {
            Reporter::Plain => {
                if let Some(text) = event.plain_text() {
                    progress(&text)
                }
            }
            Reporter::Live(live) => live.event(event),
            Reporter::Quiet => {}
        }
    }
}

/// One pool's line of the live display.
struct PoolLine {
    bar: ProgressBar,
    launched: usize,
    /// slot → (stage, EC2 said running).
    nodes: BTreeMap<String, (NodeStage, bool)>,
}

struct LiveState {
    pools: BTreeMap<String, PoolLine>,
    waiting: Option<ProgressBar>,
}

/// The live display (indicatif). Notes scroll above the pool lines.
pub struct Live {
    multi: MultiProgress,
    state: Mutex<LiveState>,
}

impl Live {
    fn new() -> Self {
        Self {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            state: Mutex::new(LiveState { pools: BTreeMap::new(), waiting: None }),
        }
    }

    fn spinner(&self) -> ProgressBar {
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("a valid progress template"));
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    }

    fn event(&self, event: &Event<'_>) {
        let mut state = self.state.lock().expect("progress state lock");
        match event {
            Event::Note(text) => {
                let _ = self.multi.println(timestamped(text));
            }
            Event::Launched { pool, slot, .. } => {
                if let Some(text) = event.plain_text() {
                    let _ = self.multi.println(timestamped(&text));
                }
                let line = self.pool_line(&mut state, pool);
                line.launched += 1;
                line.nodes.entry(slot.to_string()).or_insert((NodeStage::Launched, false));
                redraw(pool, line);
            }
            Event::NodeExpected { pool, slot, running, .. } => {
                let line = self.pool_line(&mut state, pool);
                let entry = line.nodes.entry(slot.to_string()).or_insert((NodeStage::Launched, *running));
                entry.1 |= *running;
                redraw(pool, line);
            }
            Event::NodeChanged { pool, slot, stage, .. } => {
                let line = self.pool_line(&mut state, pool);
                // A node that joined is certainly running.
                line.nodes.insert(slot.to_string(), (*stage, true));
                redraw(pool, line);
                if line.nodes.values().all(|(s, _)| *s == NodeStage::Ready) {
                    line.bar.finish();
                }
            }
            Event::Waiting { what, elapsed, .. } => {
                if state.waiting.is_none() {
                    state.waiting = Some(self.spinner());
                }
                if let Some(bar) = &state.waiting {
                    bar.set_message(format!("waiting for {what} ({}s)", elapsed.as_secs()));
                }
            }
            Event::Finished => {
                if let Some(bar) = state.waiting.take() {
                    bar.finish_and_clear();
                }
            }
        }
        // Anything but a wait means the wait is over.
        if !matches!(event, Event::Waiting { .. })
            && let Some(bar) = state.waiting.take()
        {
            bar.finish_and_clear();
        }
    }

    fn pool_line<'s>(&self, state: &'s mut LiveState, pool: &str) -> &'s mut PoolLine {
        state.pools.entry(pool.to_string()).or_insert_with(|| {
            // {elapsed} ticks on its own between events.
            let bar = self.multi.add(ProgressBar::new_spinner());
            bar.set_style(ProgressStyle::with_template("{spinner} {prefix} {elapsed:>4}{msg}").expect("a valid progress template"));
            bar.enable_steady_tick(Duration::from_millis(120));
            PoolLine { bar, launched: 0, nodes: BTreeMap::new() }
        })
    }
}

fn redraw(pool: &str, line: &PoolLine) {
    let count = |f: &dyn Fn(&(NodeStage, bool)) -> bool| line.nodes.values().filter(|n| f(n)).count();
    let running = count(&|(stage, running)| *running || *stage >= NodeStage::Joined);
    let joined = count(&|(stage, _)| *stage >= NodeStage::Joined);
    let ready = count(&|(stage, _)| *stage == NodeStage::Ready);
    // Slots are launched together, so the first one behind is the slowest.
    let slowest = line.nodes.iter().filter(|(_, (s, _))| *s != NodeStage::Ready).min_by_key(|(_, (s, _))| *s).map(|(slot, (s, _))| {
        let what = match s {
            NodeStage::Launched => "not registered",
            NodeStage::Joined => "joined, not Ready",
            NodeStage::Ready => "Ready",
        };
        format!("  slowest: {slot} ({what})")
    });
    line.bar.set_prefix(format!(
        "{pool:<20} launched {}  running {running}  joined {joined}  Ready {ready}/{}",
        line.launched.max(line.nodes.len()),
        line.nodes.len(),
    ));
    line.bar.set_message(slowest.unwrap_or_default());
}

impl Drop for Live {
    fn drop(&mut self) {
        // Interrupted or done: leave the last state on screen, stop spinning.
        if let Ok(state) = self.state.lock() {
            for line in state.pools.values() {
                line.bar.abandon();
            }
            if let Some(bar) = &state.waiting {
                bar.finish_and_clear();
            }
        }
    }
}
