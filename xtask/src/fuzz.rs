//! `cargo xtask fuzz`: runs the `cargo fuzz` targets under `fuzz/` (libFuzzer), each from its
//! committed seed corpus, and prints the executions each made. A crash, a timeout or an
//! allocation over the limits fails the run, with the input written under `fuzz/artifacts/`.
//!
//! libFuzzer's instrumentation needs nightly flags: on a stable toolchain they are allowed with
//! `RUSTC_BOOTSTRAP=1` (no sanitizer: the code is `forbid(unsafe_code)`; the checks are the
//! targets' own assertions, panics, libFuzzer's timeout and memory limits).

use std::path::Path;
use std::process::ExitCode;

use crate::{cargo, workspace_root};

/// The targets, in the order they run.
pub(crate) const TARGETS: [&str; 6] = [
    "sse_parser",
    "http1_request",
    "http1_response",
    "config",
    "jwt",
    "json_tape",
];

struct Args {
    seconds: Option<u64>,
    runs: Option<u64>,
    targets: Vec<String>,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut out = Args {
        seconds: None,
        runs: None,
        targets: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| -> Result<u64, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{name} needs a number"))
        };
        match a.as_str() {
            "--smoke" => out.seconds = Some(30),
            "--seconds" => out.seconds = Some(value("--seconds")?),
            "--runs" => out.runs = Some(value("--runs")?),
            t if TARGETS.contains(&t) => out.targets.push(t.to_string()),
            other => {
                return Err(format!(
                    "unknown argument `{other}` (targets: {})",
                    TARGETS.join(", ")
                ))
            }
        }
    }
    if out.targets.is_empty() {
        out.targets = TARGETS.iter().map(|t| t.to_string()).collect();
    }
    if out.seconds.is_none() && out.runs.is_none() {
        out.seconds = Some(30);
    }
    Ok(out)
}

pub(crate) fn run(args: &[String]) -> ExitCode {
    let args = match parse_args(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "{e}\nusage: cargo xtask fuzz [--smoke | --seconds N | --runs N] [TARGET...]"
            );
            return ExitCode::from(2);
        }
    };
    let root = workspace_root();
    if !has_cargo_fuzz(&root) {
        println!("==> cargo install cargo-fuzz");
        let installed = cargo(&root)
            .args(["install", "cargo-fuzz", "--locked"])
            .status()
            .is_ok_and(|s| s.success());
        if !installed {
            eprintln!("cargo-fuzz could not be installed: cargo install cargo-fuzz");
            return ExitCode::from(1);
        }
    }
    let mut results = Vec::new();
    let mut failed = false;
    for target in &args.targets {
        println!("==> fuzzing {target}");
        let work = match tempdir() {
            Ok(d) => d,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(1);
            }
        };
        let mut limits = vec![
            "-rss_limit_mb=2048".to_string(),
            "-malloc_limit_mb=512".to_string(),
            "-timeout=10".to_string(),
            "-print_final_stats=1".to_string(),
        ];
        if let Some(s) = args.seconds {
            limits.push(format!("-max_total_time={s}"));
        }
        if let Some(r) = args.runs {
            limits.push(format!("-runs={r}"));
        }
        let out = cargo(&root)
            .env("RUSTC_BOOTSTRAP", "1")
            .args(["fuzz", "run", "--sanitizer", "none", "-O", target])
            .arg(work.path())
            .arg(root.join("fuzz/corpus").join(target))
            .arg("--")
            .args(&limits)
            .output();
        let out = match out {
            Ok(o) => o,
            Err(e) => {
                eprintln!("cannot run cargo fuzz: {e}");
                return ExitCode::from(1);
            }
        };
        let log = String::from_utf8_lossy(&out.stderr);
        let executions = log
            .lines()
            .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
            .and_then(|v| v.trim().parse::<u64>().ok());
        let ok = out.status.success();
        if !ok {
            failed = true;
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            for l in tail.into_iter().rev() {
                println!("    {l}");
            }
        }
        results.push((target.clone(), executions, ok));
    }
    println!("\n{:<16}{:>16}  result", "target", "executions");
    for (target, executions, ok) in &results {
        println!(
            "{target:<16}{:>16}  {}",
            executions.map_or("-".to_string(), |n| n.to_string()),
            if *ok {
                "no crash"
            } else {
                "FAILED (input under fuzz/artifacts/)"
            }
        );
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn has_cargo_fuzz(root: &Path) -> bool {
    cargo(root)
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A temporary directory for the corpus a run grows (the committed seeds stay as they are).
fn tempdir() -> Result<crate::bench::TempDir, String> {
    crate::bench::TempDir::new()
}
