//! Real parsers and linters the rendered scripts must pass. They are
//! installed by scripts/setup.sh; a missing tool fails the test rather than
//! skipping it, so a green run always means the check ran.

use std::path::Path;
use std::process::Command;

use tree_sitter::{Node, Parser, Tree};

pub fn parse_powershell(script: &str) -> Tree {
    let mut parser = Parser::new();
    parser.set_language(&tree_sitter_powershell::LANGUAGE.into()).expect("the PowerShell grammar loads");
    parser.parse(script, None).expect("the parser returns a tree")
}

/// Every ERROR or MISSING node, with its position and text, for a message.
pub fn powershell_errors(script: &str) -> Vec<String> {
    let tree = parse_powershell(script);
    let mut out = Vec::new();
    walk(tree.root_node(), &mut |n| {
        if n.is_error() || n.is_missing() {
            let p = n.start_position();
            out.push(format!(
                "{}:{} {} `{}`",
                p.row + 1,
                p.column + 1,
                n.kind(),
                &script[n.byte_range()].chars().take(60).collect::<String>()
            ));
        }
    });
    out
}

/// The script as PowerShell's parser sees it, comments aside: every leaf
/// with its kind and text, in order (positions left out, so removed
/// comment lines do not count).
pub fn powershell_code(script: &str) -> Vec<(String, String)> {
    let tree = parse_powershell(script);
    let mut out = Vec::new();
    walk(tree.root_node(), &mut |n| {
        if n.child_count() == 0 && n.kind() != "comment" {
            out.push((n.kind().to_string(), script[n.byte_range()].to_string()));
        }
    });
    out
}

/// The text of every node of `kind`.
pub fn powershell_nodes<'a>(script: &'a str, kind: &str) -> Vec<&'a str> {
    nodes_of_kind(&parse_powershell(script), script, kind)
}

fn nodes_of_kind<'a>(tree: &Tree, script: &'a str, kind: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    walk(tree.root_node(), &mut |n| {
        if n.kind() == kind {
            out.push(&script[n.byte_range()]);
        }
    });
    out
}

fn walk(node: Node<'_>, f: &mut impl FnMut(Node<'_>)) {
    f(node);
    let mut cursor = node.walk();
    for child in node.children(&mut cursor) {
        walk(child, f);
    }
}

/// `cloud-init schema` from Debian's cloud-init: Ok or its complaint.
pub fn cloud_init_schema(file: &Path) -> Result<(), String> {
    let out = Command::new("cloud-init")
        .args(["schema", "--config-file"])
        .arg(file)
        .output()
        .expect("cloud-init is installed (scripts/setup.sh)");
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }
}

pub fn shellcheck(file: &Path, extra: &[&str]) -> Result<(), String> {
    let out = Command::new("shellcheck")
        .args(["--shell=bash", "--severity=style"])
        .args(extra)
        .arg(file)
        .output()
        .expect("shellcheck is installed (scripts/setup.sh)");
    if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stdout).into_owned()) }
}

/// Parses YAML (all documents) with the system Python's PyYAML, which
/// cloud-init itself depends on, and returns them as JSON.
pub fn yaml_to_json(text: &str) -> Result<serde_json::Value, String> {
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", "import sys, json, yaml; print(json.dumps(list(yaml.safe_load_all(sys.stdin))))"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3 with PyYAML is installed (cloud-init depends on it)");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

/// Runs bash on `script` and returns its stdout.
pub fn bash(script: &str) -> String {
    let out = Command::new("bash").args(["-c", script]).output().expect("bash runs");
    assert!(out.status.success(), "bash failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// One command of a parsed script: its name, its arguments as written, the
/// function it sits in, and (PowerShell) the `Stage` it runs under.
#[derive(Debug, Clone)]
pub struct ScriptCommand {
    pub name: String,
    pub args: Vec<String>,
    pub function: Option<String>,
    pub stage: Option<String>,
    /// Byte offset in the script: source order.
    pub start: usize,
}

impl ScriptCommand {
    /// A literal argument without its quotes (PowerShell `'…'` or shell `'…'`).
    pub fn literal(&self, i: usize) -> Option<String> {
        let a = self.args.get(i)?;
        let inner = a.strip_prefix('\'')?.strip_suffix('\'')?;
        Some(inner.replace("''", "'"))
    }
}

/// Every command in a PowerShell script, in source order.
pub fn powershell_commands(script: &str) -> Vec<ScriptCommand> {
    let tree = parse_powershell(script);
    let mut out = Vec::new();
    walk(tree.root_node(), &mut |n| {
        if n.kind() != "command" {
            return;
        }
        let Some(name) = n.child_by_field_name("command_name") else { return };
        let args: Vec<String> = n
            .child_by_field_name("command_elements")
            .map(|els| {
                let mut c = els.walk();
                els.children(&mut c).filter(|e| e.kind() != "command_argument_sep").map(|e| script[e.byte_range()].to_string()).collect()
            })
            .unwrap_or_default();
        let (mut function, mut stage) = (None, None);
        let mut up = n.parent();
        while let Some(p) = up {
            if p.kind() == "function_statement" && function.is_none() {
                let mut c = p.walk();
                function = p.children(&mut c).find(|k| k.kind() == "function_name").map(|k| script[k.byte_range()].to_string());
            }
            if p.kind() == "command" && stage.is_none() {
                let named = p.child_by_field_name("command_name").map(|k| &script[k.byte_range()]);
                if named == Some("Stage") {
                    let first = p.child_by_field_name("command_elements").and_then(|els| {
                        let mut c = els.walk();
                        els.children(&mut c).find(|e| e.kind() != "command_argument_sep").map(|e| script[e.byte_range()].to_string())
                    });
                    stage = first.map(|s| s.trim_matches('\'').to_string());
                }
            }
            up = p.parent();
        }
        out.push(ScriptCommand { name: script[name.byte_range()].to_string(), args, function, stage, start: n.start_byte() });
    });
    out
}

/// One `left = value` of a PowerShell script, with the function it sits in.
#[derive(Debug, Clone)]
pub struct Assignment {
    pub left: String,
    pub value: String,
    pub function: Option<String>,
    pub start: usize,
}

/// Every assignment in a PowerShell script, in source order.
pub fn powershell_assignments(script: &str) -> Vec<Assignment> {
    let tree = parse_powershell(script);
    let mut out = Vec::new();
    walk(tree.root_node(), &mut |n| {
        if n.kind() != "assignment_expression" {
            return;
        }
        let mut c = n.walk();
        let Some(left) = n.children(&mut c).find(|k| k.kind() == "left_assignment_expression") else { return };
        let mut c = n.walk();
        let value: Vec<String> = n.children_by_field_name("value", &mut c).map(|v| script[v.byte_range()].to_string()).collect();
        let mut function = None;
        let mut up = n.parent();
        while let Some(p) = up {
            if p.kind() == "function_statement" {
                let mut c = p.walk();
                function = p.children(&mut c).find(|k| k.kind() == "function_name").map(|k| script[k.byte_range()].to_string());
                break;
            }
            up = p.parent();
        }
        out.push(Assignment { left: script[left.byte_range()].to_string(), value: value.join(" "), function, start: n.start_byte() });
    });
    out
}

pub fn parse_bash(script: &str) -> Tree {
    let mut parser = Parser::new();
    parser.set_language(&tree_sitter_bash::LANGUAGE.into()).expect("the bash grammar loads");
    parser.parse(script, None).expect("the parser returns a tree")
}

/// Every simple command in a bash script, in source order (`stage` unused).
pub fn bash_commands(script: &str) -> Vec<ScriptCommand> {
    let tree = parse_bash(script);
    let mut out = Vec::new();
    walk(tree.root_node(), &mut |n| {
        if n.kind() != "command" {
            return;
        }
        let Some(name) = n.child_by_field_name("name") else { return };
        let mut c = n.walk();
        let args: Vec<String> = n.children_by_field_name("argument", &mut c).map(|a| script[a.byte_range()].to_string()).collect();
        let mut function = None;
        let mut up = n.parent();
        while let Some(p) = up {
            if p.kind() == "function_definition" {
                function = p.child_by_field_name("name").map(|k| script[k.byte_range()].to_string());
                break;
            }
            up = p.parent();
        }
        out.push(ScriptCommand { name: script[name.byte_range()].to_string(), args, function, stage: None, start: n.start_byte() });
    });
    out
}

/// The text of every node of `kind` in a bash script (e.g. `variable_assignment`).
pub fn bash_nodes<'a>(script: &'a str, kind: &str) -> Vec<&'a str> {
    nodes_of_kind(&parse_bash(script), script, kind)
}

/// Every function of a bash script: name to its whole definition's text.
pub fn bash_functions(script: &str) -> std::collections::BTreeMap<String, String> {
    let tree = parse_bash(script);
    let mut out = std::collections::BTreeMap::new();
    walk(tree.root_node(), &mut |n| {
        if n.kind() == "function_definition"
            && let Some(name) = n.child_by_field_name("name")
        {
            out.insert(script[name.byte_range()].to_string(), script[n.byte_range()].to_string());
        }
    });
    out
}

/// Whether the bash grammar found errors (with their text).
pub fn bash_errors(script: &str) -> Vec<String> {
    let tree = parse_bash(script);
    let mut out = Vec::new();
    walk(tree.root_node(), &mut |n| {
        if n.is_error() || n.is_missing() {
            out.push(format!("{}: `{}`", n.start_position().row + 1, &script[n.byte_range()].chars().take(60).collect::<String>()));
        }
    });
    out
}
