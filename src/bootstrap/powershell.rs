//! What a Windows node runs: the bootstrap script without its comment
//! lines. EC2 takes 16 KiB of user data, and the script's comments (for
//! whoever reads the template or `hybrid render`'s copy) are a third of it
//! even compressed; the node needs none of them.
//!
//! Only whole lines that are comments go, and only where PowerShell reads
//! code: a `#` line inside a string (a YAML or TOML file carried in a
//! single-quoted string, a here-string) is content and stays. So the
//! script is read the way PowerShell's tokenizer reads quotes: single- and
//! double-quoted strings (`''` and a backtick escape), here-strings
//! (`@'`/`@"` at a line's end up to `'@`/`"@` at a line's start),
//! subexpressions inside double quotes (`$( … )`, which may hold quotes of
//! their own) and block comments (`<# … #>`, kept: the script has none,
//! and a kept one costs bytes, never code).

/// Where the reader is when a line starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Code; inside a `$( … )` of a double-quoted string when `depth` > 0.
    Code {
        depth: usize,
    },
    Single,
    Double,
    HereSingle,
    HereDouble,
    Block,
}

/// `script` without the lines that are nothing but a comment.
pub fn without_comment_lines(script: &str) -> String {
    let mut stack = vec![State::Code { depth: 0 }];
    let mut out = String::with_capacity(script.len());
    for line in script.split_inclusive('\n') {
        let at_code = matches!(stack.last(), Some(State::Code { .. }));
        if at_code && line.trim_start().starts_with('#') {
            continue;
        }
        // A here-string ends at a line starting with its closing quote.
        match stack.last() {
            Some(State::HereSingle) if line.starts_with("'@") => {
                stack.pop();
                read(&line[2..], &mut stack);
            }
            Some(State::HereDouble) if line.starts_with("\"@") => {
                stack.pop();
                read(&line[2..], &mut stack);
            }
            Some(State::HereSingle | State::HereDouble) => {}
            _ => read(line, &mut stack),
        }
        out.push_str(line);
    }
    out
}

/// Moves the state over one line's characters.
fn read(line: &str, stack: &mut Vec<State>) {
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let (c, next) = (chars[i], chars.get(i + 1).copied());
        let top = *stack.last().expect("the stack always holds the script's own code");
        match top {
            State::Code { depth } => match c {
                '#' => return, // a comment to the end of the line
                '<' if next == Some('#') => {
                    stack.push(State::Block);
                    i += 1;
                }
                '@' if matches!(next, Some('\'' | '"')) && chars[i + 2..].iter().all(|c| c.is_whitespace()) => {
                    stack.push(if next == Some('\'') { State::HereSingle } else { State::HereDouble });
                    return;
                }
                '\'' => stack.push(State::Single),
                '"' => stack.push(State::Double),
                '`' => i += 1,
                '(' if depth > 0 => *stack.last_mut().expect("non-empty") = State::Code { depth: depth + 1 },
                ')' if depth == 1 => {
                    stack.pop();
                }
                ')' if depth > 1 => *stack.last_mut().expect("non-empty") = State::Code { depth: depth - 1 },
                _ => {}
            },
            State::Single => {
                if c == '\'' {
                    if next == Some('\'') {
                        i += 1;
                    } else {
                        stack.pop();
                    }
                }
            }
            State::Double | State::HereDouble => match c {
                '`' => i += 1,
                '$' if next == Some('(') => {
                    stack.push(State::Code { depth: 1 });
                    i += 1;
                }
                '"' if top == State::Double => {
                    if next == Some('"') {
                        i += 1;
                    } else {
                        stack.pop();
                    }
                }
                _ => {}
            },
            State::HereSingle => {}
            State::Block => {
                if c == '#' && next == Some('>') {
                    stack.pop();
                    i += 1;
                }
            }
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::without_comment_lines;

    #[test]
    fn comment_lines_go_and_strings_keep_theirs() {
        let script = "# header\n$A = 1  # trailing stays\n  # indented goes\n$Yaml = '# kubeadm\nkind: x\n# it''s kept\n'\n# gone\n$H = @'\n# here\n'@\n# after here\n$D = \"$(Get-Date -Format 'o') # not a comment \"\"x\"\" `\"\n# in double\"\n# last\n";
        let want = "$A = 1  # trailing stays\n$Yaml = '# kubeadm\nkind: x\n# it''s kept\n'\n$H = @'\n# here\n'@\n$D = \"$(Get-Date -Format 'o') # not a comment \"\"x\"\" `\"\n# in double\"\n";
        assert_eq!(without_comment_lines(script), want);
    }

    #[test]
    fn subexpressions_hold_their_own_quotes() {
        let script = "$M = \"a $(\"b\" + ('c')) d\n# inside the string\"\n# code again\n$X = \"$(($Y | % { \"#\" }))\"\n# gone\n";
        assert_eq!(without_comment_lines(script), "$M = \"a $(\"b\" + ('c')) d\n# inside the string\"\n$X = \"$(($Y | % { \"#\" }))\"\n");
    }

    #[test]
    fn double_quoted_here_strings_and_block_comments_are_read_through() {
        let script = "$P = @\"\n# kept $(\"x\")\n\"@\n<# block\n# kept too #>\n# gone\n";
        assert_eq!(without_comment_lines(script), "$P = @\"\n# kept $(\"x\")\n\"@\n<# block\n# kept too #>\n");
    }
}
