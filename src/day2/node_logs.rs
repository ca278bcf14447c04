//! What `hybrid logs` collects from a node, per OS: file names and the
//! remote commands that produce them. Pure; `adapters::ssh` runs them.

use crate::model::{LinuxDistro, NodeOs};

/// (file written locally, command run on the node over SSH).
pub fn collectors(os: NodeOs) -> Vec<(&'static str, String)> {
    match os {
        NodeOs::Linux(_) => {
            // Readable by the default user on Ubuntu (adm group); sudo -n as a fallback.
            let try_sudo = |c: &str| format!("{c} 2>/dev/null || sudo -n {c}");
            vec![
                ("system.txt", "uname -a; uptime; df -h /".to_string()),
                ("hybrid-bootstrap.log", try_sudo("tail -n 2000 /var/log/hybrid-bootstrap.log")),
                ("cloud-init-output.log", try_sudo("tail -n 2000 /var/log/cloud-init-output.log")),
                ("kubelet.log", try_sudo("journalctl -u kubelet --no-pager -n 2000")),
                ("containerd.log", try_sudo("journalctl -u containerd --no-pager -n 500")),
            ]
        }
        NodeOs::Windows(_) => {
            let ps = |c: &str| format!("powershell -NoProfile -NonInteractive -Command \"{c}\"");
            vec![
                (
                    "system.txt",
                    ps(
                        "Get-ComputerInfo -Property OsName,OsBuildNumber,CsName | Format-List; Get-Service containerd,kubelet,sshd | Format-Table -AutoSize",
                    ),
                ),
                ("hybrid-bootstrap.log", ps("Get-Content -Tail 2000 C:\\hybrid\\bootstrap.log")),
                ("kubelet.log", ps("Get-Content -Tail 2000 C:\\var\\log\\kubelet\\kubelet.log")),
                ("containerd.log", ps("Get-Content -Tail 500 C:\\var\\log\\containerd.log")),
            ]
        }
    }
}

/// The login of the public images hybrid uses.
pub fn default_user(os: NodeOs) -> &'static str {
    match os {
        NodeOs::Linux(LinuxDistro::Al2023) => "ec2-user",
        NodeOs::Linux(_) => "ubuntu",
        NodeOs::Windows(_) => "Administrator",
    }
}

/// The lines worth showing first: the last `n` lines, and before them any
/// earlier line that mentions an error or failure (at most `n`).
pub fn tail_that_matters(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let cut = lines.len().saturating_sub(n);
    let problems: Vec<&str> = lines[..cut]
        .iter()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("error") || l.contains("fail") || l.contains("fatal")
        })
        .copied()
        .collect();
    let mut out = Vec::new();
    if !problems.is_empty() {
        out.extend(problems[problems.len().saturating_sub(n)..].iter().copied());
        out.push("...");
    }
    out.extend(&lines[cut..]);
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earlier_errors_are_kept_before_the_tail() {
        let text = "start\nerror: join failed\nok 1\nok 2\nok 3\n";
        assert_eq!(tail_that_matters(text, 2), "error: join failed\n...\nok 2\nok 3");
        assert_eq!(tail_that_matters("a\nb\n", 5), "a\nb");
    }

    #[test]
    fn collectors_per_os() {
        let linux: Vec<&str> = collectors(NodeOs::Linux(LinuxDistro::Ubuntu2404)).iter().map(|c| c.0).collect();
        assert!(linux.contains(&"kubelet.log") && linux.contains(&"cloud-init-output.log"));
        let win = collectors(NodeOs::Windows(crate::model::WindowsVersion::Ws2022));
        assert!(win.iter().any(|(f, c)| *f == "hybrid-bootstrap.log" && c.contains("C:\\hybrid\\bootstrap.log")));
        assert_eq!(default_user(NodeOs::Linux(LinuxDistro::Al2023)), "ec2-user");
    }
}
