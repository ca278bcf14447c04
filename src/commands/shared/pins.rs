//! Checking a cluster's pins (`versions::pins`) before anything launches:
//! every file at its URL with its checksum source, every image with a
//! variant for each platform that pulls it. Requests go out a bounded
//! number at a time, and the whole check has a deadline. A set of pins
//! that passed is remembered by its key (in the user's cache folder) for
//! a week, so a no-op plan asks nothing; a failure is never remembered.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use futures_util::stream;
use serde_json::Value;

use crate::adapters::web::{Unreachable, Web};
use crate::error::{Error, Result};
use crate::model::ClusterSpec;
use crate::versions::pins::{ChecksumPin, FilePin, ImagePin, Pins, parse_image, pins, serves};

/// How long a passed check is trusted: releases and tags hybrid pins are
/// not taken back in a week, and a new pin is a new key.
const CACHE_LIFE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Requests in flight at once (Terraform refreshes ten at a time).
const IN_FLIGHT: usize = 8;
/// The whole check's deadline.
const DEADLINE: Duration = Duration::from_secs(60);
/// The test hook that sends every https request to a loopback stand-in.
pub const ENDPOINT_ENV: &str = "HYBRID_PIN_CHECK_ENDPOINT";

/// One pin's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// The server answered: it is not there (or not for a platform).
    Missing(String),
    /// No answer: the network, a proxy or the server is down.
    Unreachable(String),
}

/// What the check found.
#[derive(Debug)]
pub struct Report {
    pub key: String,
    /// (what, subject, outcome) in a stable order: files, then images.
    pub results: Vec<(String, String, Outcome)>,
    /// Answered from the cache, not the network.
    pub cached: bool,
    pub requests: u64,
    /// Private ECR images, which only the nodes' AWS credentials can read.
    pub not_checked: Vec<String>,
}

impl Report {
    pub fn failures(&self) -> impl Iterator<Item = &(String, String, Outcome)> {
        self.results.iter().filter(|(_, _, o)| *o != Outcome::Ok)
    }

    /// The one line plan and apply print.
    pub fn summary(&self) -> String {
        let (files, images) =
            (self.results.iter().filter(|r| r.0 == "file").count(), self.results.iter().filter(|r| r.0 == "image").count());
        let how = if self.cached { "checked before, remembered for a week" } else { "checked now" };
        let mut line =
            format!("Pinned downloads and images: {files} file(s) and {images} image(s) exist for every node's platform ({how}).");
        if !self.not_checked.is_empty() {
            line.push_str(&format!(
                " Not checked: {} (private ECR; bakes pull it with their role, nodes through kubelet's credential provider).",
                self.not_checked.join(", ")
            ));
        }
        line
    }

    /// The error plan and apply end with when something is missing.
    pub fn error(&self) -> Error {
        let mut text =
            String::from("these pinned downloads or images are not available; a node would fail at boot, so nothing was launched:\n");
        for (_, subject, outcome) in self.failures() {
            let why = match outcome {
                Outcome::Missing(why) | Outcome::Unreachable(why) => why,
                Outcome::Ok => continue,
            };
            text.push_str(&format!("  {subject}: {why}\n"));
        }
        if self.failures().any(|(_, _, o)| matches!(o, Outcome::Unreachable(_))) {
            text.push_str("check the network or proxy (HTTPS_PROXY), or pass --offline to skip this check (nodes still verify every download at boot)");
        } else {
            text.push_str("fix the version in the file (`hybrid versions FILE` shows what each node installs), or update hybrid's table (CONTRIBUTING.md)");
        }
        Error::Failed(text)
    }
}

fn cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).or_else(|| std::env::home_dir().map(|h| h.join(".cache")))?;
    Some(base.join("hybrid").join("pins"))
}

fn remembered(key: &str) -> bool {
    let Some(path) = cache_dir().map(|d| d.join(key)) else { return false };
    std::fs::metadata(path).and_then(|m| m.modified()).is_ok_and(|t| SystemTime::now().duration_since(t).is_ok_and(|age| age < CACHE_LIFE))
}

fn remember(key: &str) {
    if let Some(dir) = cache_dir() {
        // A cache that cannot be written only costs the next run a check.
        let _ = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(dir.join(key), b"ok\n"));
    }
}

/// What plan and apply do before anything launches: check the pins, or
/// say why not. `Ok(line)` is what to print; a missing pin is the error.
pub async fn gate(spec: &ClusterSpec, offline: bool, aws_emulated: bool) -> Result<String> {
    if offline {
        return Ok("Pinned downloads and images: not checked (--offline); nodes still verify every download at boot.".into());
    }
    if aws_emulated && std::env::var_os(ENDPOINT_ENV).is_none_or(|e| e.is_empty()) {
        return Ok(format!(
            "Pinned downloads and images: not checked (AWS is an emulator here, so the check does not go to the internet; set {ENDPOINT_ENV} or run `hybrid versions FILE --check`)."
        ));
    }
    let report = check(spec).await?;
    if report.failures().next().is_some() {
        return Err(report.error());
    }
    Ok(report.summary())
}

/// Checks `spec`'s pins, or answers from the cache when they passed before.
pub async fn check(spec: &ClusterSpec) -> Result<Report> {
    let endpoint = std::env::var(ENDPOINT_ENV).ok().filter(|e| !e.is_empty());
    let pins = pins(spec);
    // A stand-in's answers are its own: they are not remembered for the real thing.
    let key = format!("{}{}", pins.key(), endpoint.as_ref().map_or(String::new(), |e| format!("-{:x}", fnv(e))));
    let subjects = subjects(&pins);
    if remembered(&key) {
        let results = subjects.into_iter().map(|(what, subject)| (what, subject, Outcome::Ok)).collect();
        return Ok(Report { key, results, cached: true, requests: 0, not_checked: pins.private.clone() });
    }
    let web = Web::new(endpoint).map_err(Error::Failed)?;
    let report = run(&web, &pins, key).await;
    if report.failures().next().is_none() {
        remember(&report.key);
    }
    Ok(report)
}

fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}

fn subjects(pins: &Pins) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = pins.files.iter().map(|f| ("file".to_string(), format!("{} {}", f.label, f.url))).collect();
    out.extend(pins.images.iter().map(|i| ("image".to_string(), format!("{} ({})", i.image, i.label))));
    out
}

async fn run(web: &Web, pins: &Pins, key: String) -> Report {
    let subjects = subjects(pins);
    let files = pins.files.iter().map(|f| check_file(web, f));
    let images = pins.images.iter().map(|i| check_image(web, i));
    let futures: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = Outcome> + '_>>> =
        files.map(|f| Box::pin(f) as _).chain(images.map(|i| Box::pin(i) as _)).collect();
    let indexed = stream::iter(futures.into_iter().enumerate().map(|(i, f)| async move { (i, f.await) })).buffer_unordered(IN_FLIGHT);
    let mut done: BTreeMap<usize, Outcome> = BTreeMap::new();
    let collect = indexed.for_each(|(i, o)| {
        done.insert(i, o);
        async {}
    });
    let _ = tokio::time::timeout(DEADLINE, collect).await;
    let results = subjects
        .into_iter()
        .enumerate()
        .map(|(i, (what, subject))| {
            // Only a check cut off by its deadline leaves results out.
            let outcome =
                done.remove(&i).unwrap_or_else(|| Outcome::Unreachable(format!("no answer within the check's {}s", DEADLINE.as_secs())));
            (what, subject, outcome)
        })
        .collect();
    Report { key, results, cached: false, requests: web.requests(), not_checked: pins.private.clone() }
}

fn unreachable(e: Unreachable) -> Outcome {
    Outcome::Unreachable(format!("could not reach {}", e))
}

async fn check_file(web: &Web, pin: &FilePin) -> Outcome {
    match web.get(&pin.url, None, None).await {
        Ok(a) if a.status == 200 || a.status == 206 => {}
        Ok(a) if matches!(a.status, 403 | 404 | 410) => return Outcome::Missing(format!("not found (HTTP {})", a.status)),
        Ok(a) => return Outcome::Unreachable(format!("answered HTTP {}", a.status)),
        Err(e) => return unreachable(e),
    }
    match &pin.checksum {
        ChecksumPin::Recorded => Outcome::Ok,
        ChecksumPin::File(url) => match web.get(url, None, None).await {
            Ok(a) if a.status == 200 => {
                let text = String::from_utf8_lossy(&a.body);
                if text.split_whitespace().any(|w| w.len() == 64 && w.bytes().all(|b| b.is_ascii_hexdigit())) {
                    Outcome::Ok
                } else {
                    Outcome::Missing(format!("its checksum file {url} holds no SHA-256"))
                }
            }
            Ok(a) => Outcome::Missing(format!("its checksum file {url} is not there (HTTP {})", a.status)),
            Err(e) => unreachable(e),
        },
        ChecksumPin::GithubAsset { release_api, asset } => match web.get(release_api, Some("application/vnd.github+json"), None).await {
            Ok(a) if a.status == 200 => {
                let release: Value = serde_json::from_slice(&a.body).unwrap_or(Value::Null);
                let digest = release["assets"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|x| x["name"] == asset.as_str())
                    .and_then(|x| x["digest"].as_str());
                match digest {
                    Some(d) if d.starts_with("sha256:") => Outcome::Ok,
                    _ => Outcome::Missing(format!("the release {release_api} lists no SHA-256 digest for {asset}")),
                }
            }
            Ok(a) => Outcome::Missing(format!("its release {release_api} is not there (HTTP {})", a.status)),
            Err(e) => unreachable(e),
        },
        ChecksumPin::GitBlob { contents_api } => match web.get(contents_api, Some("application/vnd.github.object+json"), None).await {
            Ok(a) if a.status == 200 => {
                let v: Value = serde_json::from_slice(&a.body).unwrap_or(Value::Null);
                if v["sha"].as_str().is_some_and(|s| s.len() == 40) {
                    Outcome::Ok
                } else {
                    Outcome::Missing(format!("{contents_api} gives no blob id"))
                }
            }
            Ok(a) => Outcome::Missing(format!("{contents_api} is not there (HTTP {})", a.status)),
            Err(e) => unreachable(e),
        },
    }
}

async fn check_image(web: &Web, pin: &ImagePin) -> Outcome {
    let Some(image) = parse_image(&pin.image) else { return Outcome::Missing("is not an image reference".into()) };
    match web.image_variants(&image).await {
        Ok(None) => Outcome::Missing(format!("no tag {} in {}/{}", image.reference, image.registry, image.repository)),
        Ok(Some(variants)) => {
            let lacking: Vec<String> = pin.platforms.iter().filter(|p| !serves(&variants, **p)).map(|p| p.describe()).collect();
            if lacking.is_empty() {
                Outcome::Ok
            } else {
                let has: Vec<String> = variants.iter().map(|v| v.describe()).collect();
                Outcome::Missing(format!("no variant for {} (it has: {})", lacking.join(", "), has.join(", ")))
            }
        }
        Err(e) => unreachable(e),
    }
}
