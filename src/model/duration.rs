//! The one way hybrid reads a length of time, in files and flags alike:
//! number-unit pairs, largest unit first, each unit at most once: `90s`,
//! `5m`, `10h`, `2d`, `1h30m`. A bare number is accepted only where a flag
//! always took one (in its old unit: `--lock-timeout 30` is seconds,
//! `bake --timeout 90` minutes), so no existing command line changes
//! meaning.

use std::time::Duration;

/// The unit a bare number means, where one is accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bare {
    Seconds,
    Minutes,
}

/// What `parse` says about text that is not a duration.
pub fn hint() -> &'static str {
    "write a duration such as 90s, 5m, 10h, 2d or 1h30m"
}

/// `text` as a duration; `bare` says what a lone number means (`None`:
/// a unit is required).
pub fn parse(text: &str, bare: Option<Bare>) -> Result<Duration, String> {
    let t = text.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        let n: u64 = t.parse().map_err(|_| format!("`{text}` is too large"))?;
        return match bare {
            Some(Bare::Seconds) => Ok(Duration::from_secs(n)),
            Some(Bare::Minutes) => Ok(Duration::from_secs(n.saturating_mul(60))),
            None => Err(format!("`{text}` has no unit; {}", hint())),
        };
    }
    let mut seconds: u64 = 0;
    let mut digits = String::new();
    let mut last_rank = 0;
    for c in t.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let (rank, factor) = match c {
            'd' => (1, 86_400),
            'h' => (2, 3_600),
            'm' => (3, 60),
            's' => (4, 1),
            _ => return Err(format!("`{text}`: `{c}` is not a unit (d, h, m, s); {}", hint())),
        };
        if digits.is_empty() || digits.len() > 7 || rank <= last_rank {
            return Err(format!("`{text}` is not a duration; {}", hint()));
        }
        seconds = seconds.saturating_add(digits.parse::<u64>().map_err(|_| format!("`{text}` is too large"))?.saturating_mul(factor));
        digits.clear();
        last_rank = rank;
    }
    if !digits.is_empty() || last_rank == 0 {
        return Err(format!("`{text}` is not a duration; {}", hint()));
    }
    Ok(Duration::from_secs(seconds))
}

/// For clap: a flag that takes a duration, bare numbers in seconds.
pub fn flag_seconds(text: &str) -> Result<Duration, String> {
    parse(text, Some(Bare::Seconds))
}

/// For clap: a flag that takes a duration, bare numbers in minutes.
pub fn flag_minutes(text: &str) -> Result<Duration, String> {
    parse(text, Some(Bare::Minutes))
}

/// The shortest text `parse` reads back as `d` (whole seconds).
pub fn show(d: Duration) -> String {
    let mut s = d.as_secs();
    if s == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)] {
        if s >= size {
            out.push_str(&format!("{}{unit}", s / size));
            s %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_syntax_for_every_duration() {
        assert_eq!(parse("90s", None), Ok(Duration::from_secs(90)));
        assert_eq!(parse("5m", None), Ok(Duration::from_secs(300)));
        assert_eq!(parse("10h", None), Ok(Duration::from_secs(36_000)));
        assert_eq!(parse("2d", None), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse("1h30m", None), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse("1d2h3m4s", None), Ok(Duration::from_secs(93_784)));
        for bad in ["", "h", "8x", "30m1h", "1h1h", "-1h", "8 h", "1.5h", "12345678h"] {
            assert!(parse(bad, Some(Bare::Seconds)).is_err(), "{bad}");
        }
        assert!(parse("30", None).unwrap_err().contains("no unit"));
        assert_eq!(parse("30", Some(Bare::Seconds)), Ok(Duration::from_secs(30)));
        assert_eq!(parse("90", Some(Bare::Minutes)), Ok(Duration::from_secs(5_400)));
    }

    #[test]
    fn shown_durations_read_back() {
        for secs in [0, 59, 60, 3_661, 90_061, 5_400] {
            let d = Duration::from_secs(secs);
            assert_eq!(parse(&show(d), None), Ok(d), "{}", show(d));
        }
        assert_eq!(show(Duration::from_secs(5_400)), "1h30m");
    }
}
