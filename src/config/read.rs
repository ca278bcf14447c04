//! The structural pass: TOML text to per-section values, checked against
//! the key table in `keys.rs`. Reports syntax errors, unknown sections and
//! keys (with a did-you-mean), wrong types, values outside a choice list and
//! missing required keys, every one with its span, and keeps going so the
//! user sees all of them at once. Defaults written as TOML literals in the
//! key table are applied here, so the table stays the one source of truth.

use std::collections::BTreeMap;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::keys::{self, Key, Kind, Section};
use crate::config::problems::Diagnostics;

/// Where each key's value sits in the file, by key path (`pool[0].count`).
#[derive(Debug, Default)]
pub struct Spans {
    map: BTreeMap<String, Range<usize>>,
}

impl Spans {
    fn insert(&mut self, key: String, span: Range<usize>) {
        self.map.insert(key, span);
    }

    /// The span of `key`, or of the nearest enclosing key that has one (a
    /// defaulted key points at its section header).
    pub fn get(&self, key: &str) -> Option<Range<usize>> {
        let mut k = key;
        loop {
            if let Some(span) = self.map.get(k) {
                return Some(span.clone());
            }
            k = &k[..k.rfind(['.', '['])?];
        }
    }
}

/// One section of the file (or one `[[pool]]` entry) after the structural pass.
pub struct SectionValues<'i> {
    pub path: String,
    section: &'static Section,
    table: DeTable<'i>,
}

/// Parses the text and reads every known section. Problems go to `diags`.
pub fn read<'i>(source: &'i str, diags: &mut Diagnostics, spans: &mut Spans) -> BTreeMap<&'static str, Vec<SectionValues<'i>>> {
    let (root, errors) = DeTable::parse_recoverable(source);
    for e in &errors {
        diags.error("toml", e.span(), format!("TOML syntax error: {}", e.message().trim_end())).help("see https://toml.io for the syntax");
    }
    let mut out: BTreeMap<&'static str, Vec<SectionValues<'i>>> = BTreeMap::new();
    if !errors.is_empty() {
        // After a syntax error the recovered tree may be missing keys the
        // user did write; reporting them as missing would only mislead.
        return out;
    }
    let root = root.into_inner();
    for (name, value) in root {
        let (name, name_span) = (name.get_ref().to_string(), name.span());
        let Some(section) = keys::section(&name) else {
            let d = diags.error(name.clone(), Some(name_span), format!("unknown section `{name}`"));
            match keys::did_you_mean(&name, keys::SECTIONS.iter().map(|s| s.name)) {
                Some(s) => d.help(format!("did you mean `{}`?", if s == "pool" { "[[pool]]" } else { s })),
                None => d.help(format!("known sections: {}", section_list())),
            };
            continue;
        };
        let value_span = value.span();
        let values = out.entry(section.name).or_default();
        match (section.array, value.into_inner()) {
            (false, DeValue::Table(table)) => {
                spans.insert(name.clone(), name_span.clone());
                values.push(SectionValues::new(name.clone(), section, table, name_span, diags));
            }
            (true, DeValue::Array(items)) => {
                spans.insert(name.clone(), name_span.clone());
                for (i, item) in items.into_iter().enumerate() {
                    let path = format!("{name}[{i}]");
                    let span = item.span();
                    spans.insert(path.clone(), span.start..span.start + 1);
                    match item.into_inner() {
                        DeValue::Table(table) => values.push(SectionValues::new(path, section, table, span.start..span.start + 1, diags)),
                        other => {
                            diags.error(path, Some(span), format!("must be a table, found {}", other.type_str()));
                        }
                    }
                }
            }
            (array, other) => {
                let want = if array { format!("an array of tables, written [[{name}]]") } else { format!("a table, written [{name}]") };
                diags.error(name, Some(value_span), format!("must be {want}, found {}", other.type_str()));
            }
        }
    }
    for s in keys::SECTIONS.iter().filter(|s| s.required && !out.contains_key(s.name)) {
        diags
            .error(s.name, Some(0..0), format!("missing required section [{}]", s.name))
            .help(format!("add a [{}] section; `hybrid schema` lists its keys", s.name));
    }
    out
}

fn section_list() -> String {
    keys::SECTIONS.iter().map(|s| if s.array { format!("[[{}]]", s.name) } else { format!("[{}]", s.name) }).collect::<Vec<_>>().join(", ")
}

impl<'i> SectionValues<'i> {
    fn new(path: String, section: &'static Section, table: DeTable<'i>, header: Range<usize>, diags: &mut Diagnostics) -> Self {
        for key in table.keys() {
            if section.key(key.get_ref()).is_none() {
                let name = key.get_ref();
                let d = diags.error(format!("{path}.{name}"), Some(key.span()), format!("unknown key `{name}` in [{}]", section.name));
                match keys::did_you_mean(name, section.keys.iter().map(|k| k.name)) {
                    Some(s) => d.help(format!("did you mean `{s}`?")),
                    None => d.help(format!("known keys: {}", section.keys.iter().map(|k| k.name).collect::<Vec<_>>().join(", "))),
                };
            }
        }
        for key in section.keys.iter().filter(|k| k.required) {
            if table.get(key.name).is_none() {
                diags
                    .error(format!("{path}.{}", key.name), Some(header.clone()), format!("missing required key `{}`", key.name))
                    .help(format!("add `{} = …` to [{}]: {}", key.name, section.name, key.doc));
            }
        }
        Self { path, section, table }
    }

    fn key(&self, name: &str) -> &'static Key {
        // A name missing from the table is a bug in hybrid, not in the file.
        self.section.key(name).unwrap_or_else(|| panic!("key {name} is not in the key table for [{}]", self.section.name))
    }

    pub fn key_path(&self, name: &str) -> String {
        format!("{}.{}", self.path, name)
    }

    pub fn is_set(&self, name: &str) -> bool {
        self.table.get(name).is_some()
    }

    /// The value of `name` if present and of the declared kind, else the
    /// table's literal default; `None` when missing or wrong (already reported).
    fn value(&self, name: &str, diags: &mut Diagnostics, spans: &mut Spans) -> Option<(DeValue<'i>, Option<Range<usize>>)> {
        let key = self.key(name);
        let path = self.key_path(name);
        match self.table.get(name) {
            Some(v) => {
                spans.insert(path.clone(), v.span());
                if kind_matches(key.kind, v.get_ref()) {
                    Some((v.get_ref().clone(), Some(v.span())))
                } else {
                    diags.error(path, Some(v.span()), format!("must be {}, found {}", key.kind.describe(), v.get_ref().type_str()));
                    None
                }
            }
            None => {
                let default = key.default.and_then(|d| DeValue::parse(d).ok()).map(Spanned::into_inner)?;
                kind_matches(key.kind, &default).then_some((default, None))
            }
        }
    }

    pub fn str(&self, name: &str, diags: &mut Diagnostics, spans: &mut Spans) -> Option<String> {
        let (v, span) = self.value(name, diags, spans)?;
        let s = v.as_str()?.to_string();
        if let Kind::Choice(choices) = self.key(name).kind
            && !choices.contains(&s.as_str())
        {
            let d = diags.error(self.key_path(name), span, format!("`{s}` is not one of {}", choices.join(", ")));
            if let Some(m) = keys::did_you_mean(&s, choices.iter().copied()) {
                d.help(format!("did you mean `{m}`?"));
            }
            return None;
        }
        Some(s)
    }

    pub fn int(&self, name: &str, diags: &mut Diagnostics, spans: &mut Spans) -> Option<i64> {
        let (v, span) = self.value(name, diags, spans)?;
        let Kind::Int { min, max } = self.key(name).kind else { unreachable!("kind checked by value()") };
        let n = v.as_integer().and_then(|i| i64::from_str_radix(i.as_str(), i.radix()).ok());
        match n {
            Some(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                let shown = v.as_integer().map_or(String::new(), |i| i.as_str().to_string());
                diags.error(self.key_path(name), span, format!("{shown} is out of range; allowed: {min} to {max}"));
                None
            }
        }
    }

    pub fn bool(&self, name: &str, diags: &mut Diagnostics, spans: &mut Spans) -> Option<bool> {
        self.value(name, diags, spans)?.0.as_bool()
    }

    /// A string array; each element's span is recorded as `key[i]`. Elements
    /// of the wrong type are reported and left out.
    pub fn str_list(&self, name: &str, diags: &mut Diagnostics, spans: &mut Spans) -> Option<Vec<String>> {
        let (v, _) = self.value(name, diags, spans)?;
        let mut out = Vec::new();
        for (i, item) in v.as_array()?.iter().enumerate() {
            let path = format!("{}[{i}]", self.key_path(name));
            spans.insert(path.clone(), item.span());
            match item.get_ref().as_str() {
                Some(s) => out.push(s.to_string()),
                None => {
                    diags.error(path, Some(item.span()), format!("must be a string, found {}", item.get_ref().type_str()));
                }
            }
        }
        Some(out)
    }

    /// A table of strings; each value's span is recorded as `key."k"`.
    pub fn str_map(&self, name: &str, diags: &mut Diagnostics, spans: &mut Spans) -> Option<BTreeMap<String, String>> {
        let (v, _) = self.value(name, diags, spans)?;
        let mut out = BTreeMap::new();
        let mut ok = true;
        for (k, item) in v.as_table()? {
            let path = format!("{}.{:?}", self.key_path(name), k.get_ref());
            spans.insert(path.clone(), item.span());
            spans.insert(format!("{path}#key"), k.span());
            match item.get_ref().as_str() {
                Some(s) => {
                    out.insert(k.get_ref().to_string(), s.to_string());
                }
                None => {
                    diags.error(path, Some(item.span()), format!("must be a string, found {}", item.get_ref().type_str()));
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }
}

fn kind_matches(kind: Kind, v: &DeValue<'_>) -> bool {
    match kind {
        Kind::Str | Kind::Choice(_) => v.is_str(),
        Kind::Int { .. } => v.is_integer(),
        Kind::Bool => v.is_bool(),
        Kind::StrList => v.is_array(),
        Kind::StrMap => v.is_table(),
    }
}
