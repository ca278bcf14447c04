//! Quoting filters: the only way a value enters a rendered script. Each turns
//! any value into one literal of its target language, so a hostile label
//! value can never become code. A test (`templates_quote_every_value`)
//! checks that every `{{ … }}` in every template ends in one of these.
//!
//! | filter | language | example |
//! |---|---|---|
//! | `sh` | POSIX shell | `{{ "it's" \| sh }}` → `'it'\''s'` |
//! | `ps` | PowerShell | `{{ "it's" \| ps }}` → `'it''s'` |
//! | `yaml` | YAML/JSON scalar or flow value | `{{ "a: b" \| yaml }}` → `"a: b"` |
//! | `yaml_block(indent=N)` | YAML block scalar for a whole file | `content: {{ text \| yaml_block(indent=4) }}` |
//! | `toml` | TOML basic string | `{{ "a\"b" \| toml }}` → `"a\"b"` |
//! | `systemd` | one word of a unit's command line | `{{ "50%" \| systemd }}` → `"50%%"` |

use std::collections::HashMap;

use tera::{Error, Result, Value};

pub const QUOTING_FILTERS: &[&str] = &["sh", "ps", "yaml", "yaml_block", "toml", "systemd"];

pub fn register(tera: &mut tera::Tera) {
    tera.register_filter("sh", sh_filter);
    tera.register_filter("ps", ps_filter);
    tera.register_filter("yaml", yaml_filter);
    tera.register_filter("yaml_block", yaml_block_filter);
    tera.register_filter("toml", toml_filter);
    tera.register_filter("systemd", systemd_filter);
}

/// Scalars as text; anything else is a template bug.
fn scalar(value: &Value, filter: &str) -> Result<String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(Error::msg(format!("filter `{filter}` quotes scalars only, got {other}"))),
    }
}

fn sh_filter(value: &Value, _: &HashMap<String, Value>) -> Result<Value> {
    Ok(Value::String(sh_quote(&scalar(value, "sh")?)))
}

fn ps_filter(value: &Value, _: &HashMap<String, Value>) -> Result<Value> {
    Ok(Value::String(ps_quote(&scalar(value, "ps")?)))
}

fn yaml_filter(value: &Value, _: &HashMap<String, Value>) -> Result<Value> {
    Ok(Value::String(yaml_value(value)))
}

fn yaml_block_filter(value: &Value, args: &HashMap<String, Value>) -> Result<Value> {
    let indent = args.get("indent").and_then(Value::as_u64).ok_or_else(|| Error::msg("yaml_block needs indent=N"))?;
    Ok(Value::String(yaml_block(&scalar(value, "yaml_block")?, indent as usize)))
}

fn toml_filter(value: &Value, _: &HashMap<String, Value>) -> Result<Value> {
    Ok(Value::String(toml_quote(&scalar(value, "toml")?)))
}

fn systemd_filter(value: &Value, _: &HashMap<String, Value>) -> Result<Value> {
    Ok(Value::String(systemd_quote(&scalar(value, "systemd")?)))
}

/// One word of a systemd command line (systemd.service(5), "Command
/// lines"): double-quoted with C-style escapes, and `%` (specifiers) and
/// `$` (variables) doubled, since systemd expands both inside quotes.
pub fn systemd_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '%' => out.push_str("%%"),
            '$' => out.push_str("$$"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A TOML basic string. JSON's string escapes (`\"`, `\\`, `\n`, `\uXXXX`)
/// are all valid TOML escapes, so serde_json's quoting is TOML's, except
/// that TOML also forbids a raw DEL.
pub fn toml_quote(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes").replace('\u{7f}', "\\u007f")
}

/// POSIX single quotes: nothing is special inside them but `'` itself, which
/// is closed, escaped and reopened.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// PowerShell single-quoted (verbatim) string. PowerShell also treats the
/// typographic quotes U+2018..U+201B as single quotes, so each is doubled
/// like `'` (a single one would end the string).
pub fn ps_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}') {
            out.push(c);
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// A YAML flow value: numbers and booleans bare, strings double-quoted with
/// JSON escapes (JSON is YAML), lists and maps as JSON flow collections.
pub fn yaml_value(value: &Value) -> String {
    match value {
        Value::String(s) => yaml_string(s),
        Value::Array(items) => format!("[{}]", items.iter().map(yaml_value).collect::<Vec<_>>().join(", ")),
        Value::Object(map) => {
            format!("{{{}}}", map.iter().map(|(k, v)| format!("{}: {}", yaml_string(k), yaml_value(v))).collect::<Vec<_>>().join(", "))
        }
        other => other.to_string(),
    }
}

fn yaml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            // YAML forbids other C0/C1 controls, DEL and the BOM unescaped.
            c if c.is_control() || c == '\u{FEFF}' => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A literal block scalar (`|`) holding `text` verbatim, every line indented
/// by `indent` spaces. Text a block cannot carry (control characters) falls
/// back to a quoted string, which can carry anything.
pub fn yaml_block(text: &str, indent: usize) -> String {
    let blockable = text.chars().all(|c| c == '\n' || c == '\t' || !(c.is_control() || c == '\u{FEFF}'));
    if text.is_empty() || !blockable {
        return yaml_string(text);
    }
    // An explicit indentation indicator keeps a first line that starts with
    // a space (or a lone `#`-looking line) from changing the block's indent.
    let indicator = if text.starts_with([' ', '\n']) { indent.to_string() } else { String::new() };
    let trailing = text.len() - text.trim_end_matches('\n').len();
    let chomp = match trailing {
        0 => "-",
        1 => "",
        _ => "+",
    };
    let pad = " ".repeat(indent);
    let mut out = format!("|{indicator}{chomp}");
    for line in text.trim_end_matches('\n').split('\n') {
        out.push('\n');
        if !line.is_empty() {
            out.push_str(&pad);
            out.push_str(line);
        }
    }
    for _ in 1..trailing {
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod test_sh {
    use super::sh_quote;

    #[test]
    fn quotes_plain_values() {
        assert_eq!(sh_quote("abc"), "'abc'");
        assert_eq!(sh_quote(""), "''");
    }

    #[test]
    fn escapes_single_quotes_by_closing_and_reopening() {
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn leaves_substitutions_inert() {
        assert_eq!(sh_quote("$(reboot) `id` \"x\"\nnext"), "'$(reboot) `id` \"x\"\nnext'");
    }
}

#[cfg(test)]
mod test_ps {
    use super::ps_quote;

    #[test]
    fn doubles_ascii_and_typographic_single_quotes() {
        assert_eq!(ps_quote("it's"), "'it''s'");
        assert_eq!(
            ps_quote("a\u{2018}b\u{2019}c\u{201A}d\u{201B}"),
            "'a\u{2018}\u{2018}b\u{2019}\u{2019}c\u{201A}\u{201A}d\u{201B}\u{201B}'"
        );
    }

    #[test]
    fn leaves_subexpressions_and_backticks_alone() {
        assert_eq!(ps_quote("$(Stop-Computer) `n"), "'$(Stop-Computer) `n'");
    }
}

#[cfg(test)]
mod test_yaml {
    use super::{yaml_block, yaml_value};
    use serde_json::json;

    #[test]
    fn strings_are_double_quoted_with_escapes() {
        assert_eq!(yaml_value(&json!("a: b")), r#""a: b""#);
        assert_eq!(yaml_value(&json!("q\"\\\n\u{7f}")), r#""q\"\\\n\u007F""#);
    }

    #[test]
    fn numbers_and_bools_stay_bare_and_collections_are_flow() {
        assert_eq!(yaml_value(&json!(4096)), "4096");
        assert_eq!(yaml_value(&json!(true)), "true");
        assert_eq!(yaml_value(&json!([{"key": "os", "effect": "NoSchedule"}])), r#"[{"effect": "NoSchedule", "key": "os"}]"#);
    }

    #[test]
    fn blocks_indent_every_line_and_keep_the_trailing_newline() {
        assert_eq!(yaml_block("a\nb\n", 2), "|\n  a\n  b");
        assert_eq!(yaml_block("a", 2), "|-\n  a");
        assert_eq!(yaml_block("a\n\n", 2), "|+\n  a\n");
        assert_eq!(yaml_block("a\n\nb\n", 2), "|\n  a\n\n  b");
    }

    #[test]
    fn blocks_starting_with_space_get_an_indentation_indicator() {
        assert_eq!(yaml_block(" x\n", 4), "|4\n     x");
    }

    #[test]
    fn blocks_fall_back_to_quoted_strings_for_control_characters() {
        assert_eq!(yaml_block("a\u{1b}b", 2), r#""a\u001Bb""#);
    }
}

#[cfg(test)]
mod test_systemd {
    use super::systemd_quote;

    #[test]
    fn specifiers_variables_quotes_and_lines_stay_literal() {
        assert_eq!(systemd_quote("--cluster-id=hybrid-dev-eu-west-1"), "\"--cluster-id=hybrid-dev-eu-west-1\"");
        assert_eq!(systemd_quote("50% of $HOME"), "\"50%% of $$HOME\"");
        assert_eq!(systemd_quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(systemd_quote("x\ny\u{7}"), "\"x\\ny\\u0007\"");
    }
}
