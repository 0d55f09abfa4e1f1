//! Spec-scenario runner for zilla.
//!
//! A *scenario* is a directory holding a `zilla.yaml` and one or more
//! `*.spec` scripts. [`run_scenario`] allocates ports, binds the listeners
//! the scripts `accept` on, starts a real `zilla` binary with that
//! configuration, runs every script concurrently over real TCP sockets on
//! 127.0.0.1, and reports which side failed, where, and why.
//!
//! The script language is documented in `specs/README.md` and in
//! [`script`].
//!
//! ```no_run
//! use std::path::Path;
//!
//! let scenarios = zilla_spec::filter(zilla_spec::discover(Path::new("specs")), Some("tcp"));
//! for dir in scenarios {
//!     let outcome = zilla_spec::run_scenario(Path::new("target/debug/zilla"), &dir);
//!     if !outcome.passed() {
//!         eprintln!("FAIL {}\n{}", dir.display(), outcome.report());
//!     }
//! }
//! ```

use std::fs;
use std::path::{Path, PathBuf};

pub mod runner;
pub mod script;
mod side;
pub mod zilla;

pub use runner::{
    check_scenario, run_scenario, run_scenario_with, Failure, Options, Outcome, CONFIG_FILE,
};
pub use zilla::Zilla;

/// Finds scenario directories (directories containing `zilla.yaml`) under
/// `root`, including `root` itself, sorted by path.
///
/// Unreadable directories are skipped.
pub fn discover(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        if dir.join(CONFIG_FILE).is_file() {
            found.push(dir.clone());
        }
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                pending.push(path);
            }
        }
    }
    found.sort();
    found
}

/// Keeps the scenarios whose path contains `pattern` (all of them when
/// `pattern` is `None` or empty).
pub fn filter(scenarios: Vec<PathBuf>, pattern: Option<&str>) -> Vec<PathBuf> {
    match pattern {
        Some(p) if !p.is_empty() => scenarios
            .into_iter()
            .filter(|s| s.to_string_lossy().contains(p))
            .collect(),
        _ => scenarios,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovers_and_filters_scenarios() {
        let root = std::env::temp_dir().join(format!("zilla-spec-discover-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        for dir in ["tcp/b.case", "tcp/a.case", "echo/x", "empty/nothing"] {
            fs::create_dir_all(root.join(dir)).unwrap();
        }
        for dir in ["tcp/b.case", "tcp/a.case", "echo/x"] {
            fs::write(root.join(dir).join(CONFIG_FILE), "name: test\n").unwrap();
        }
        let all = discover(&root);
        let rel: Vec<_> = all
            .iter()
            .map(|p| {
                p.strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(rel, vec!["echo/x", "tcp/a.case", "tcp/b.case"]);
        assert_eq!(filter(all.clone(), Some("tcp/")).len(), 2);
        assert_eq!(filter(all.clone(), Some("b.case")).len(), 1);
        assert_eq!(filter(all.clone(), None).len(), 3);
        assert_eq!(filter(all, Some("")).len(), 3);
        let _ = fs::remove_dir_all(&root);
    }

    /// Every scenario in the repository's `specs/` directory is well formed.
    #[test]
    fn repository_scenarios_parse() {
        let specs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../specs");
        let scenarios = discover(&specs);
        assert!(
            !scenarios.is_empty(),
            "no scenarios under {}",
            specs.display()
        );
        let broken: Vec<String> = scenarios
            .iter()
            .filter_map(|dir| {
                check_scenario(dir)
                    .err()
                    .map(|f| format!("{}: {f}", dir.display()))
            })
            .collect();
        assert!(broken.is_empty(), "{}", broken.join("\n"));
    }
}
