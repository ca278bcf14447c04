//! `--set KEY=VALUE`: one file, many clusters (a cluster per branch from
//! CI: `--set cluster.name=pr-42 --set cluster.ttl=6h`). Each flag edits the
//! file's text before it is read — the value replaced where the key stands,
//! or the key added under its section's header — so everything after sees
//! one document and checks it the same way. The value is written as the key
//! table says (`keys.rs`: a string quoted, an integer or boolean as is, a
//! list from `a,b` or `[…]`, a table from `k=v,…` or `{…}`), and where it
//! lands is remembered, so a problem in it is reported against the flag
//! that set it, not a line the user never wrote.
//!
//! Keys are `section.key` and, for pools, `pool.<name>.key` (pools are
//! addressed by name, as people think of them). Pure: text in, text out.
//!
//! Why flags and not `${BRANCH}` references in the file: Terraform (`-var`,
//! `TF_VAR_*`), Helm (`--set`) and eksctl (none) all keep the file free of
//! environment lookups, so the file a team reviews is the file that
//! applies; the CI job names what differs per branch on its command line,
//! and a saved plan records the result.

use std::ops::Range;

use toml::de::{DeTable, DeValue};

use super::keys::{self, Kind};

/// One `--set` flag, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Set {
    /// `KEY=VALUE` as given.
    pub flag: String,
    /// `cluster.name`, `pool.game.count`.
    pub key: String,
    pub value: String,
}

impl std::str::FromStr for Set {
    type Err = String;

    /// For clap: `KEY=VALUE` with a key shaped `section.key` or `pool.<name>.key`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((key, value)) = s.split_once('=') else {
            return Err(format!("`{s}` is not KEY=VALUE (e.g. cluster.name=pr-42, pool.game-servers.count=3)"));
        };
        let key = key.trim();
        let parts = key.split('.').count();
        if key.is_empty() || !(parts == 2 || (parts == 3 && key.starts_with("pool."))) {
            return Err(format!("`{key}` is not a key: write section.key (cluster.ttl) or pool.NAME.key (pool.win.count)"));
        }
        Ok(Set { flag: s.to_string(), key: key.to_string(), value: value.to_string() })
    }
}

/// Where a flag's value sits in the edited text, and in the flag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub in_source: Range<usize>,
    pub flag: String,
    /// The value's bytes within `--set <flag>` as shown.
    pub in_flag: Range<usize>,
}

/// A flag that cannot be applied, with the fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetError {
    pub flag: String,
    pub message: String,
    pub help: String,
}

impl std::fmt::Display for SetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "--set {}: {}\n  help: {}", self.flag, self.message, self.help)
    }
}

/// `source` with every flag applied, in order (a later flag for the same
/// key wins), and where each value went.
pub fn apply(source: &str, sets: &[Set]) -> Result<(String, Vec<Origin>), Vec<SetError>> {
    let mut text = source.to_string();
    let mut origins: Vec<Origin> = Vec::new();
    let mut errors = Vec::new();
    for set in sets {
        match edit(&text, set) {
            Ok((at, removed, inserted, value)) => {
                let delta = inserted.len() as isize - removed as isize;
                text.replace_range(at..at + removed, &inserted);
                origins.retain(|o| o.in_source.end <= at || o.in_source.start >= at + removed);
                for o in &mut origins {
                    if o.in_source.start >= at + removed {
                        o.in_source = shift(&o.in_source, delta);
                    }
                }
                let start = set.flag.len() - set.value.len();
                origins.push(Origin { in_source: value, flag: set.flag.clone(), in_flag: start..set.flag.len() });
            }
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() { Ok((text, origins)) } else { Err(errors) }
}

fn shift(r: &Range<usize>, delta: isize) -> Range<usize> {
    (r.start as isize + delta) as usize..(r.end as isize + delta) as usize
}

/// One edit: (where, how many bytes go, what comes in, where the value
/// lands in the edited text).
fn edit(text: &str, set: &Set) -> Result<(usize, usize, String, Range<usize>), SetError> {
    let fail = |message: String, help: String| SetError { flag: set.flag.clone(), message, help };
    let parts: Vec<&str> = set.key.split('.').collect();
    let (section_name, pool, key_name) = match parts[..] {
        [s, k] => (s, None, k),
        [s, p, k] => (s, Some(p), k),
        _ => return Err(fail(format!("`{}` is not a key", set.key), "write section.key or pool.NAME.key".into())),
    };
    let sections = || keys::SECTIONS.iter().map(|s| s.name);
    let Some(section) = keys::section(section_name) else {
        let help = keys::did_you_mean(section_name, sections())
            .map_or_else(|| format!("sections: {}", sections().collect::<Vec<_>>().join(", ")), |s| format!("did you mean `{s}`?"));
        return Err(fail(format!("there is no section [{section_name}]"), help));
    };
    if section.array != pool.is_some() {
        let help = if section.array {
            format!("address a pool by its name: pool.NAME.{key_name}")
        } else {
            format!("write {section_name}.{key_name}")
        };
        return Err(fail(format!("`{}` does not name a key of [{section_name}]", set.key), help));
    }
    let Some(key) = section.key(key_name) else {
        let names = section.keys.iter().map(|k| k.name);
        let help = keys::did_you_mean(key_name, names.clone()).map_or_else(
            || format!("keys of [{}]: {}", section.name, names.collect::<Vec<_>>().join(", ")),
            |k| format!("did you mean `{k}`?"),
        );
        return Err(fail(format!("[{}] has no key `{key_name}`", section.name), help));
    };
    if pool.is_some() && key.name == "name" {
        return Err(fail("a pool's name is how --set finds it".into(), "rename the pool in the file".into()));
    }
    let literal = literal(key.kind, &set.value).map_err(|(m, h)| fail(m, h))?;
    let root = DeTable::parse(text).map_err(|e| {
        fail(
            format!("the file is not valid TOML ({})", e.message().trim_end()),
            "fix the file first (`hybrid validate` shows where)".into(),
        )
    })?;
    let root = root.get_ref();
    // The table to edit, and the end of its header's line.
    let table = match (root.get(section_name).map(|v| v.get_ref()), pool) {
        (None, None) => {
            // No such section yet: append it.
            let sep = if text.is_empty() || text.ends_with('\n') { "" } else { "\n" };
            let head = format!("{sep}\n[{section_name}]\n{key_name} = ");
            let at = text.len();
            let value = at + head.len()..at + head.len() + literal.len();
            return Ok((at, 0, format!("{head}{literal}\n"), value));
        }
        (Some(DeValue::Table(t)), None) => (t, root.get(section_name).expect("just found").span()),
        (Some(DeValue::Array(pools)), Some(name)) => {
            let found = pools.iter().find_map(|p| match p.get_ref() {
                DeValue::Table(t) if t.get("name").and_then(|n| n.get_ref().as_str()) == Some(name) => Some((t, p.span())),
                _ => None,
            });
            match found {
                Some((t, span)) => (t, span),
                None => {
                    return Err(no_pool(set, name, pools.iter().filter_map(|p| p.get_ref().as_table()?.get("name")?.get_ref().as_str())));
                }
            }
        }
        (None, Some(name)) => return Err(no_pool(set, name, std::iter::empty())),
        _ => return Err(fail(format!("[{section_name}] in the file is not a table --set can edit"), "edit the file by hand".into())),
    };
    let (t, header) = table;
    if let Some(existing) = t.get(key_name) {
        let span = existing.span();
        return Ok((span.start, span.len(), literal.clone(), span.start..span.start + literal.len()));
    }
    if !text[header.clone()].starts_with('[') {
        return Err(fail(format!("[{section_name}] is an inline table in the file"), "write it as a [section] to use --set on it".into()));
    }
    let at = text[header.end..].find('\n').map_or(text.len(), |i| header.end + i + 1);
    let (lead, head) =
        if at == text.len() && !text.ends_with('\n') { ("\n", format!("{key_name} = ")) } else { ("", format!("{key_name} = ")) };
    let start = at + lead.len() + head.len();
    Ok((at, 0, format!("{lead}{head}{literal}\n"), start..start + literal.len()))
}

fn no_pool<'a>(set: &Set, name: &str, have: impl Iterator<Item = &'a str>) -> SetError {
    let have: Vec<&str> = have.collect();
    let help = match keys::did_you_mean(name, have.iter().copied()) {
        Some(p) => format!("did you mean `{p}`?"),
        None if have.is_empty() => "the file has no [[pool]]; add the pool to the file".into(),
        None => format!("pools in the file: {}", have.join(", ")),
    };
    SetError { flag: set.flag.clone(), message: format!("there is no pool named `{name}`"), help }
}

/// The TOML literal for `value` as `kind` wants it.
fn literal(kind: Kind, value: &str) -> Result<String, (String, String)> {
    let quote = |s: &str| serde_json::to_string(s).expect("a string serializes");
    let as_toml = |v: &str, what: &str, example: &str| -> Result<String, (String, String)> {
        let doc = format!("v = {v}");
        match doc.parse::<toml::Table>() {
            Ok(_) => Ok(v.to_string()),
            Err(e) => Err((format!("`{v}` is not {what}: {}", e.message().trim_end()), format!("e.g. {example}"))),
        }
    };
    match kind {
        Kind::Str | Kind::Choice(_) => Ok(quote(value)),
        Kind::Int { .. } => match value.trim().parse::<i64>() {
            Ok(n) => Ok(n.to_string()),
            Err(_) => Err((format!("must be an integer, found `{value}`"), "e.g. 3".into())),
        },
        Kind::Bool => match value.trim() {
            "true" | "false" => Ok(value.trim().to_string()),
            _ => Err((format!("must be true or false, found `{value}`"), "true or false".into())),
        },
        Kind::StrList if value.trim_start().starts_with('[') => as_toml(value.trim(), "a TOML array", "[\"a\", \"b\"]"),
        Kind::StrList => {
            let items: Vec<String> = value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(quote).collect();
            Ok(format!("[{}]", items.join(", ")))
        }
        Kind::StrMap if value.trim_start().starts_with('{') => as_toml(value.trim(), "a TOML inline table", "{ team = \"qa\" }"),
        Kind::StrMap => {
            let mut pairs = Vec::new();
            for pair in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let Some((k, v)) = pair.split_once('=') else {
                    return Err((format!("`{pair}` is not KEY=VALUE"), "e.g. team=qa,branch=pr-42".into()));
                };
                pairs.push(format!("{} = {}", quote(k.trim()), quote(v.trim())));
            }
            Ok(format!("{{ {} }}", pairs.join(", ")))
        }
    }
}

/// The origin a span of the edited text lies in, if a flag put it there.
pub fn origin_of<'a>(origins: &'a [Origin], span: &Range<usize>) -> Option<&'a Origin> {
    origins.iter().find(|o| o.in_source.start <= span.start && span.end <= o.in_source.end.max(o.in_source.start + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(s: &str) -> Set {
        s.parse().unwrap()
    }

    const FILE: &str = "# dev\n[cluster]\nname = \"dev\"  # the name\nregion = \"eu-west-1\"\n\n[control_plane]\ninstance_type = \"t3.large\"\n\n[[pool]]\nname = \"game\"\nos = \"linux\"\ninstance_type = \"c6i.large\"\n\n[[pool]]\nname = \"win\"\nos = \"windows-2022\"\ninstance_type = \"m6i.xlarge\"\ncount = 1\n";

    #[test]
    fn values_are_replaced_where_they_stand_and_keys_added_under_their_header() {
        let (text, origins) = apply(
            FILE,
            &[
                set("cluster.name=pr-42"),
                set("pool.win.count=3"),
                set("pool.game.count=2"),
                set("cluster.ttl=6h"),
                set("network.admin_cidrs=10.0.0.0/8, 192.0.2.0/24"),
            ],
        )
        .unwrap();
        assert!(text.contains("name = \"pr-42\"  # the name\n"), "{text}");
        assert!(text.contains("[cluster]\nttl = \"6h\"\nname"), "{text}");
        assert!(text.contains("name = \"win\"\nos = \"windows-2022\"\ninstance_type = \"m6i.xlarge\"\ncount = 3\n"), "{text}");
        assert!(text.contains("[[pool]]\ncount = 2\nname = \"game\""), "{text}");
        assert!(text.ends_with("\n[network]\nadmin_cidrs = [\"10.0.0.0/8\", \"192.0.2.0/24\"]\n"), "{text}");
        let t: toml::Table = text.parse().unwrap();
        assert_eq!(t["cluster"]["name"].as_str(), Some("pr-42"));
        // Every origin still points at its value after the later edits.
        for o in &origins {
            let shown = &o.flag[o.in_flag.clone()];
            let literal = &text[o.in_source.clone()];
            assert!(literal.contains(shown.split(',').next().unwrap().trim()), "{literal} vs {shown}");
        }
        assert_eq!(origins.len(), 5);
    }

    #[test]
    fn the_last_flag_for_a_key_wins() {
        let (text, origins) = apply(FILE, &[set("cluster.ttl=1h"), set("cluster.ttl=2h")]).unwrap();
        assert!(text.contains("ttl = \"2h\"") && !text.contains("1h"), "{text}");
        assert_eq!(origins.len(), 1);
    }

    #[test]
    fn mistakes_name_the_flag_and_the_fix() {
        let errors = apply(
            FILE,
            &[
                set("pool.gamez.count=3"),
                set("cluster.nmae=x"),
                set("pool.game.count=three"),
                set("clustr.name=x"),
                set("cluster.tags=team"),
            ],
        )
        .unwrap_err();
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(
            shown[0].starts_with("--set pool.gamez.count=3: there is no pool named `gamez`") && shown[0].contains("did you mean `game`?"),
            "{shown:?}"
        );
        assert!(shown[1].contains("has no key `nmae`") && shown[1].contains("did you mean `name`?"), "{shown:?}");
        assert!(shown[2].contains("must be an integer, found `three`"), "{shown:?}");
        assert!(shown[3].contains("did you mean `cluster`?"), "{shown:?}");
        assert!(shown[4].contains("`team` is not KEY=VALUE"), "{shown:?}");
        assert!("name".parse::<Set>().is_err());
        assert!("cluster=x".parse::<Set>().is_err());
        assert!(apply(FILE, &[set("pool.count=3")]).unwrap_err()[0].help.contains("pool.NAME.count"));
    }

    #[test]
    fn strings_are_quoted_so_a_value_never_becomes_toml() {
        let (text, _) = apply(FILE, &[set("cluster.name=x\"\n[evil]\na = 1")]).unwrap();
        let t: toml::Table = text.parse().unwrap();
        assert_eq!(t["cluster"]["name"].as_str(), Some("x\"\n[evil]\na = 1"));
        assert!(t.get("evil").is_none());
    }
}
