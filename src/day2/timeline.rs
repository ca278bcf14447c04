//! A node's boot timeline, read from its console output: every bootstrap
//! stage writes `HYBRID-TIMELINE <UTC time> <stage> <event> [detail]` to
//! the serial console (templates/linux/bootstrap.sh, windows/bootstrap.ps1),
//! which EC2 returns as the instance's console output. Pure.
//!
//! Console output is messy: EC2 keeps only its last 64 KB (the start may be
//! cut off), kernel or agent messages can land in the middle of a line, a
//! retried or rebooted bootstrap writes the same stage again, and a line
//! can be cut short. The parser takes every well-formed marker wherever it
//! appears in a line, ignores the rest, drops exact repeats (a line EC2
//! returned twice), and keeps the last attempt of each stage. What the
//! console no longer holds stays unknown (`None`), never guessed: a cut-off
//! start means no script start time, a stage seen only ending has no
//! duration. The fixtures in tests/fixtures/timeline/ hold such outputs.

use std::collections::BTreeMap;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub const MARKER: &str = "HYBRID-TIMELINE ";

/// The pseudo-stage of a reboot a stage asked for: from its `reboot`
/// marker to the script's next start.
pub const REBOOT: &str = "reboot";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Event {
    Start,
    Done,
    Skip,
    Fail,
    Reboot,
}

impl Event {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "start" => Self::Start,
            "done" => Self::Done,
            "skip" => Self::Skip,
            "fail" => Self::Fail,
            "reboot" => Self::Reboot,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mark {
    pub at: OffsetDateTime,
    pub stage: String,
    pub event: Event,
    pub detail: String,
}

/// Every well-formed marker in `console`, in the order written.
pub fn parse(console: &str) -> Vec<Mark> {
    let mut out = Vec::new();
    for line in console.lines() {
        let mut rest = line;
        while let Some(i) = rest.find(MARKER) {
            rest = &rest[i + MARKER.len()..];
            let mut words = rest.splitn(4, ' ');
            let (Some(at), Some(stage), Some(event)) = (words.next(), words.next(), words.next()) else { break };
            let (Ok(at), Some(event)) = (OffsetDateTime::parse(at, &Rfc3339), Event::parse(event.trim_end())) else { continue };
            if stage.is_empty() || !stage.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                continue;
            }
            // A second marker on the same line (interleaving) ends the detail.
            let detail = words.next().unwrap_or("");
            let detail = detail.split(MARKER).next().unwrap_or("").trim().to_string();
            out.push(Mark { at, stage: stage.to_string(), event, detail });
        }
    }
    out
}

/// One stage's last attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stage {
    pub name: String,
    pub started: Option<OffsetDateTime>,
    pub ended: Option<OffsetDateTime>,
    pub outcome: Option<Event>,
    /// How many times the stage started (retries, reboots).
    pub attempts: u32,
}

impl Stage {
    pub fn seconds(&self) -> Option<i64> {
        Some((self.ended? - self.started?).whole_seconds())
    }
}

/// What `hybrid status` shows per node.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Summary {
    /// When the bootstrap script first started (its first `bootstrap start`
    /// marker, if the console still holds it).
    pub script_started: Option<OffsetDateTime>,
    /// How many times the script started (a Windows node runs it again
    /// after the Containers feature's reboot, and after a failed stage).
    pub runs: u32,
    pub stages: Vec<Stage>,
    /// When the node finished joining (`join` or, on a control plane, `init`).
    pub joined: Option<OffsetDateTime>,
    pub finished: Option<OffsetDateTime>,
}

/// The stage called `name`, new ones in the order first seen.
fn entry<'a>(stages: &'a mut BTreeMap<String, Stage>, order: &mut Vec<String>, name: &str) -> &'a mut Stage {
    stages.entry(name.to_string()).or_insert_with(|| {
        order.push(name.to_string());
        Stage { name: name.to_string(), started: None, ended: None, outcome: None, attempts: 0 }
    })
}

pub fn summarize(marks: &[Mark]) -> Summary {
    let mut order: Vec<String> = Vec::new();
    let mut stages: BTreeMap<String, Stage> = BTreeMap::new();
    let (mut finished, mut script_started, mut runs) = (None, None, 0);
    let mut seen = std::collections::BTreeSet::new();
    for m in marks {
        if !seen.insert((m.at, m.stage.as_str(), m.event)) {
            continue;
        }
        if m.stage == "bootstrap" {
            match m.event {
                Event::Start => {
                    script_started.get_or_insert(m.at);
                    runs += 1;
                    // The script starting again ends the reboot before it.
                    if let Some(reboot) = stages.get_mut(REBOOT).filter(|r| r.outcome.is_none()) {
                        reboot.ended = Some(m.at);
                        reboot.outcome = Some(Event::Done);
                    }
                }
                Event::Done => finished = Some(m.at),
                _ => {}
            }
            continue;
        }
        let reboot = m.event == Event::Reboot;
        let s = entry(&mut stages, &mut order, if reboot { REBOOT } else { &m.stage });
        match m.event {
            Event::Start | Event::Reboot => {
                s.started = Some(m.at);
                s.ended = None;
                s.outcome = None;
                s.attempts += 1;
            }
            // Skipped because an earlier run did it: that run's figures stay.
            Event::Skip if s.outcome.is_some() => {}
            Event::Skip => {
                s.started.get_or_insert(m.at);
                s.ended = Some(m.at);
                s.outcome = Some(Event::Skip);
            }
            e => {
                s.ended = Some(m.at);
                s.outcome = Some(e);
            }
        }
    }
    let joined = ["join", "init"].iter().find_map(|n| stages.get(*n).filter(|s| s.outcome == Some(Event::Done)).and_then(|s| s.ended));
    Summary { script_started, runs, stages: order.into_iter().filter_map(|n| stages.remove(&n)).collect(), joined, finished }
}

impl Summary {
    /// The stage that took longest (done ones only), with its seconds.
    pub fn slowest(&self) -> Option<(&str, i64)> {
        self.stages
            .iter()
            .filter(|s| s.outcome == Some(Event::Done))
            .filter_map(|s| Some((s.name.as_str(), s.seconds()?)))
            .max_by_key(|(_, s)| *s)
    }

    /// The stage that failed last and has not succeeded since, if any.
    pub fn failing(&self) -> Option<&Stage> {
        self.stages.iter().find(|s| s.outcome == Some(Event::Fail))
    }
}

/// How a bake builder's script ended, by the last `bake done` or `bake
/// fail` marker it wrote: only `Sealed` means the image is made the way the
/// script intends (installed, cleaned, reset for a new instance). A builder
/// that stopped without either (a maintenance event, someone stopping it,
/// a script that died) must not become an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BakeEnd {
    Sealed,
    Failed(String),
    Unfinished,
}

pub fn bake_end(console: &str) -> BakeEnd {
    let last = parse(console).into_iter().rfind(|m| m.stage == "bake" && matches!(m.event, Event::Done | Event::Fail));
    match last {
        Some(Mark { event: Event::Done, .. }) => BakeEnd::Sealed,
        Some(m) => BakeEnd::Failed(m.detail),
        None => BakeEnd::Unfinished,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_found_inside_noise_and_bad_ones_ignored() {
        let console = "[    3.1] random kernel line\n\
            HYBRID-TIMELINE 2026-12-01T10:00:00.000Z containerd start\n\
            [   9.9] eth0: link up HYBRID-TIMELINE 2026-12-01T10:00:12.500Z containerd done\n\
            HYBRID-TIMELINE not-a-time kubelet start\n\
            HYBRID-TIMELINE 2026-12-01T10:00:13Z kubelet frobnicate\n\
            HYBRID-TIMELINE 2026-12-01T10:00:14Z kube";
        let marks = parse(console);
        assert_eq!(marks.len(), 2, "{marks:?}");
        assert_eq!(summarize(&marks).stages[0].seconds(), Some(12));
    }

    #[test]
    fn only_the_bake_scripts_own_last_word_seals_an_image() {
        let done = "HYBRID-TIMELINE 2026-12-01T10:00:00Z images done\nHYBRID-TIMELINE 2026-12-01T10:01:00Z bake done\n";
        assert_eq!(bake_end(done), BakeEnd::Sealed);
        let failed = "HYBRID-TIMELINE 2026-12-01T10:01:00Z bake fail EC2Launch reset exit 1\n";
        assert_eq!(bake_end(failed), BakeEnd::Failed("EC2Launch reset exit 1".into()));
        // A retried run that failed after an earlier seal attempt: the last word counts.
        assert_eq!(bake_end(&format!("{done}{failed}")), BakeEnd::Failed("EC2Launch reset exit 1".into()));
        assert_eq!(bake_end("HYBRID-TIMELINE 2026-12-01T10:00:00Z images done\nreboot: Power down\n"), BakeEnd::Unfinished);
        assert_eq!(bake_end("HYBRID-TIMELINE 2026-12-01T10:00:00Z bake start\n"), BakeEnd::Unfinished);
    }
}
