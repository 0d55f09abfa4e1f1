//! `cargo xtask test`: cargo tests plus spec scenarios, one summary line.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{ExitCode, Stdio};
use std::time::Instant;

use crate::{cargo, target_dir, workspace_root};

/// Passed/failed counts.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    passed: u64,
    failed: u64,
}

impl Counts {
    fn add(&mut self, other: Counts) {
        self.passed += other.passed;
        self.failed += other.failed;
    }
}

#[derive(Debug)]
struct Args {
    specs_only: bool,
    filter: Option<String>,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut parsed = Args {
        specs_only: false,
        filter: None,
    };
    for arg in args {
        match arg.as_str() {
            "--specs-only" => parsed.specs_only = true,
            flag if flag.starts_with("--") => return Err(format!("unknown option `{flag}`")),
            filter => {
                if parsed.filter.replace(filter.to_string()).is_some() {
                    return Err("at most one FILTER".into());
                }
            }
        }
    }
    Ok(parsed)
}

pub(crate) fn run(args: &[String]) -> ExitCode {
    let args = match parse_args(args) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("xtask test: {e}\nusage: cargo xtask test [--specs-only] [FILTER]");
            return ExitCode::from(2);
        }
    };
    let root = workspace_root();
    let mut total = Counts::default();
    let mut notes = Vec::new();

    // 1. build zilla, and the bundled SSE backend the replica tests run
    section("cargo build -p zilla -p zilla-sse-backend");
    let built = cargo(&root)
        .args(["build", "-p", "zilla", "-p", "zilla-sse-backend"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !built {
        println!("\nzilla failed to build; no scenario was run.");
        return finish(Counts {
            passed: 0,
            failed: 1,
        });
    }

    // 2. cargo tests
    let mut unit = None;
    if !args.specs_only {
        section("cargo test --workspace");
        let counts = cargo_test(&root);
        if counts.failed > 0 {
            notes.push(format!("cargo test: {} failed", counts.failed));
        }
        unit = Some(counts);
        total.add(counts);
    }

    // 3. scenarios
    let specs = root.join("specs");
    let zilla = target_dir(&root).join("debug").join("zilla");
    // FILTER matches the path relative to the workspace root, e.g.
    // `specs/tcp/rfc793/client.close`.
    let scenarios: Vec<_> = zilla_spec::discover(&specs)
        .into_iter()
        .map(|dir| {
            let rel = dir.strip_prefix(&root).unwrap_or(&dir).to_path_buf();
            (dir, rel)
        })
        .filter(|(_, rel)| {
            args.filter
                .as_deref()
                .is_none_or(|f| rel.to_string_lossy().contains(f))
        })
        .collect();
    section(&format!(
        "spec scenarios ({} under specs/{}) against {}",
        scenarios.len(),
        args.filter
            .as_deref()
            .map(|f| format!(" matching `{f}`"))
            .unwrap_or_default(),
        zilla.display()
    ));
    let mut spec_counts = Counts::default();
    let mut failed_scenarios = Vec::new();
    let started = Instant::now();
    for (i, (dir, rel)) in scenarios.iter().enumerate() {
        let outcome = zilla_spec::run_scenario(&zilla, dir);
        let progress = format!("[{}/{}]", i + 1, scenarios.len());
        let elapsed = outcome.elapsed.as_secs_f64();
        if outcome.passed() {
            spec_counts.passed += 1;
            println!("{progress} PASS {} ({elapsed:.2}s)", rel.display());
        } else {
            spec_counts.failed += 1;
            println!("{progress} FAIL {} ({elapsed:.2}s)", rel.display());
            for line in outcome.report().lines() {
                println!("    {line}");
            }
            failed_scenarios.push(rel.display().to_string());
        }
        let _ = std::io::stdout().flush();
    }
    if scenarios.is_empty() {
        match &args.filter {
            Some(f) => println!("no scenario path contains `{f}`"),
            None => println!("no scenarios found under {}", specs.display()),
        }
    }
    total.add(spec_counts);

    // 4. summary
    section("summary");
    if let Some(unit) = unit {
        println!(
            "cargo tests: {} passed, {} failed",
            unit.passed, unit.failed
        );
    } else {
        println!("cargo tests: skipped (--specs-only)");
    }
    println!(
        "scenarios:   {} passed, {} failed ({:.1}s)",
        spec_counts.passed,
        spec_counts.failed,
        started.elapsed().as_secs_f64()
    );
    for note in notes {
        println!("  {note}");
    }
    for name in failed_scenarios {
        println!("  FAIL {name}");
    }
    finish(total)
}

/// Prints the one final summary line and picks the exit code.
fn finish(total: Counts) -> ExitCode {
    println!("{} passed, {} failed", total.passed, total.failed);
    if total.failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn section(title: &str) {
    println!("\n==> {title}");
    let _ = std::io::stdout().flush();
}

/// Runs `cargo test --workspace`, passing its output through while
/// counting the `test result:` lines.
fn cargo_test(root: &Path) -> Counts {
    let child = cargo(root)
        .args(["test", "--workspace", "--no-fail-fast"])
        .stdout(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            println!("cannot run cargo test: {e}");
            return Counts {
                passed: 0,
                failed: 1,
            };
        }
    };
    let mut counts = Counts::default();
    let mut saw_failure_line = false;
    if let Some(stdout) = child.stdout.take() {
        let mut out = std::io::stdout();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
            if let Some(c) = parse_test_result(&line) {
                saw_failure_line |= c.failed > 0;
                counts.add(c);
            }
        }
    }
    let success = child.wait().map(|s| s.success()).unwrap_or(false);
    if !success && !saw_failure_line {
        // e.g. a compile error: no test reported failing, but it failed
        println!("cargo test failed without reporting a failing test (build error?)");
        counts.failed += 1;
    }
    counts
}

/// Parses `test result: ok. 3 passed; 1 failed; ...`.
fn parse_test_result(line: &str) -> Option<Counts> {
    let rest = &line[line.find("test result:")? + "test result:".len()..];
    let mut counts = Counts::default();
    let mut found = false;
    for part in rest.split([';', '.']) {
        let mut words = part.split_whitespace();
        let (Some(n), Some(what)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(n) = n.parse::<u64>() else { continue };
        match what {
            "passed" => {
                counts.passed = n;
                found = true;
            }
            "failed" => {
                counts.failed = n;
                found = true;
            }
            _ => {}
        }
    }
    found.then_some(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cargo_test_results() {
        assert_eq!(
            parse_test_result(
                "test result: ok. 35 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.55s"
            ),
            Some(Counts { passed: 35, failed: 0 })
        );
        assert_eq!(
            parse_test_result("test result: FAILED. 3 passed; 2 failed; 1 ignored; 0 measured"),
            Some(Counts {
                passed: 3,
                failed: 2
            })
        );
        assert_eq!(parse_test_result("test foo ... ok"), None);
        assert_eq!(parse_test_result("running 3 tests"), None);
    }

    #[test]
    fn parses_args() {
        let args = |a: &[&str]| parse_args(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let a = args(&["--specs-only", "tcp/"]).unwrap();
        assert!(a.specs_only);
        assert_eq!(a.filter.as_deref(), Some("tcp/"));
        let a = args(&[]).unwrap();
        assert!(!a.specs_only && a.filter.is_none());
        assert!(args(&["--nope"]).is_err());
        assert!(args(&["a", "b"]).is_err());
    }
}
