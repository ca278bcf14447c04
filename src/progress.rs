//! What long-running stages (execute, converge, bake) report while they
//! work, as structured events rather than text, so the terminal can draw
//! them live (one line per pool) or print them as timestamped lines. Pure:
//! the renderers live in `commands::shared::terminal`.
//!
//! Every event has one plain-text form (`Event::plain_text`), which is what
//! a log or CI sees; the live display only rearranges the same facts.

use std::time::Duration;

/// How far a node has come, as the wait for Ready sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum NodeStage {
    /// The instance exists; no Node object has registered yet.
    Launched,
    /// kubelet registered the Node (the join worked); not Ready yet.
    Joined,
    Ready,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Event<'a> {
    /// A free-form line: "vpc vpc-1 created".
    Note(&'a str),
    /// `pool`'s `n`-th of `total` launches this run.
    Launched { pool: &'a str, slot: &'a str, instance: &'a str, n: usize, total: usize },
    /// Still waiting for `what` ("the API server"). Sent on every poll so a
    /// spinner can turn; `report` marks the polls a plain log should show
    /// (every 30 s or so), so logs stay short.
    Waiting { what: &'a str, elapsed: Duration, report: bool },
    /// A node the cluster phase waits for, announced once before the wait.
    NodeExpected { pool: &'a str, slot: &'a str, node: &'a str, running: bool },
    /// A node reached `stage` after `elapsed` of the wait.
    NodeChanged { pool: &'a str, slot: &'a str, node: &'a str, stage: NodeStage, elapsed: Duration },
    /// A wait (or the whole phase) is over: spinners stop.
    Finished,
}

impl Event<'_> {
    /// The line a log shows for this event, or `None` for events only a
    /// live display draws.
    pub fn plain_text(&self) -> Option<String> {
        match self {
            Event::Note(text) => Some((*text).to_string()),
            Event::Launched { pool, slot, instance, n, total } => Some(format!("[{pool}] {slot} launched {instance} ({n}/{total})")),
            Event::Waiting { what, elapsed, report: true } => Some(format!("waiting for {what} ({}s)", elapsed.as_secs())),
            Event::Waiting { report: false, .. } | Event::NodeExpected { .. } | Event::Finished => None,
            Event::NodeChanged { slot, node, stage, elapsed, .. } => Some(format!(
                "node {slot} ({node}): {}",
                match stage {
                    NodeStage::Launched => "waiting to register".to_string(),
                    NodeStage::Joined => "registered, not Ready yet".to_string(),
                    NodeStage::Ready => format!("Ready ({}s)", elapsed.as_secs()),
                }
            )),
        }
    }
}

/// Where events go: the terminal (live or plain), a log, or a test.
pub trait Progress {
    fn event(&self, event: &Event<'_>);

    fn line(&self, message: &str) {
        self.event(&Event::Note(message));
    }
}

/// A closure receives each event's plain text (tests, simple callers).
impl<F: Fn(&str)> Progress for F {
    fn event(&self, event: &Event<'_>) {
        if let Some(text) = event.plain_text() {
            self(&text)
        }
    }
}

/// Discards everything.
pub struct Silent;

impl Progress for Silent {
    fn event(&self, _: &Event<'_>) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_keeps_the_log_lines_short() {
        let quiet = Event::Waiting { what: "the API server", elapsed: Duration::from_secs(3), report: false };
        assert_eq!(quiet.plain_text(), None);
        let loud = Event::Waiting { what: "the API server", elapsed: Duration::from_secs(30), report: true };
        assert_eq!(loud.plain_text().unwrap(), "waiting for the API server (30s)");
        let ready = Event::NodeChanged { pool: "p", slot: "p-0", node: "ip-1", stage: NodeStage::Ready, elapsed: Duration::from_secs(61) };
        assert_eq!(ready.plain_text().unwrap(), "node p-0 (ip-1): Ready (61s)");
    }
}
