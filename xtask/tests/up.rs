//! `cargo xtask up`: the whole stack starts, answers, and Ctrl-C leaves no
//! process behind.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Every process below `pid`, from /proc.
fn descendants(pid: u32) -> BTreeSet<u32> {
    let mut parent_of = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // Field 4, after the command name in parentheses.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let ppid: u32 = after.split(' ').nth(1).unwrap().parse().unwrap();
        parent_of.push((p, ppid));
    }
    let mut out = BTreeSet::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for (c, pp) in &parent_of {
            if *pp == p && out.insert(*c) {
                frontier.push(*c);
            }
        }
    }
    out
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s[s.rfind(')').unwrap() + 2..].starts_with('Z'))
        .unwrap_or(false)
}

#[test]
fn up_starts_everything_and_ctrl_c_stops_it_all() {
    let vote_port = testkit::free_port();
    let result_port = testkit::free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["up", "--no-build"])
        .args([
            "--vote-port",
            &vote_port.to_string(),
            "--result-port",
            &result_port.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut printed = String::new();
    loop {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "xtask up ended early:\n{printed}"
        );
        printed.push_str(&line);
        if line.starts_with("Ctrl-C stops everything") {
            break;
        }
    }
    assert!(
        printed.contains("redis     redis://127.0.0.1:"),
        "{printed}"
    );
    assert!(printed.contains("postgres  postgres://"), "{printed}");
    // Every long-running service of the stack, named here rather than taken
    // from the launcher's own list, so that one dropped from it fails here.
    for svc in ["worker", "vote", "result"] {
        assert!(
            printed.lines().any(|l| l.starts_with(svc)),
            "{svc} missing from:\n{printed}"
        );
    }
    for (svc, port) in [("vote", vote_port), ("result", result_port)] {
        let code = common::admin::probe(port, "/", Duration::from_secs(2)).unwrap();
        assert_eq!(code, 200, "{svc} page");
    }

    let procs = descendants(child.id());
    assert!(
        procs.len() >= 2,
        "expected redis and postgres below xtask, got {procs:?}"
    );
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "xtask up exited with {status}");
    let rest = out
        .lines()
        .map_while(Result::ok)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(rest.contains("stopping"), "{rest}");
    // Postgres's backends may take a moment to notice their postmaster is gone.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<u32> = procs.iter().copied().filter(|p| alive(*p)).collect();
        if left.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "processes left behind: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
