//! `cargo xtask demo`: builds and runs the bundled SSE backend and `zilla start` on
//! `examples/sse.proxy/zilla.yaml`, until Ctrl-C. `cargo xtask demo jwt` runs
//! `examples/sse.proxy.jwt` instead (HTTPS on 7143 and its page), with a keystore and a JWT key
//! pair made for the run, and prints tokens to try.

use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::thread;
use std::time::Duration;

use crate::{cargo, target_dir, workspace_root};

/// Kills the child when dropped, so Ctrl-C or an error never leaves a process behind.
pub(crate) struct Guard(pub(crate) Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn run(args: &[String]) -> ExitCode {
    let jwt = match args {
        [] => false,
        [one] if one == "jwt" => true,
        _ => {
            eprintln!("usage: cargo xtask demo [jwt]");
            return ExitCode::from(2);
        }
    };
    let root = workspace_root();
    println!("==> cargo build --release -p zilla -p zilla-sse-backend");
    let built = cargo(&root)
        .args([
            "build",
            "--release",
            "-p",
            "zilla",
            "-p",
            "zilla-sse-backend",
        ])
        .status();
    if !built.is_ok_and(|s| s.success()) {
        eprintln!("demo: the build failed (see above)");
        return ExitCode::FAILURE;
    }
    let bin = target_dir(&root).join("release");
    let started = if jwt {
        crate::demo_jwt::start(&root, &bin)
    } else {
        start(&root, &bin)
    };
    match started {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn start(root: &Path, bin: &Path) -> Result<(), String> {
    let backend = Command::new(bin.join("zilla-sse-server"))
        .args(["--sse-port", "8001", "--input-port", "7001"])
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start zilla-sse-server: {e}"))?;
    let mut backend = Guard(backend);
    thread::sleep(Duration::from_millis(300));
    if let Ok(Some(status)) = backend.0.try_wait() {
        return Err(format!(
            "zilla-sse-server exited ({status}): are ports 8001 and 7001 free?"
        ));
    }
    let zilla = Command::new(bin.join("zilla"))
        .args(["start", "-c"])
        .arg(root.join("examples/sse.proxy/zilla.yaml"))
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start zilla: {e}"))?;
    let mut zilla = Guard(zilla);
    thread::sleep(Duration::from_millis(500));
    println!();
    println!("SSE proxy running (Ctrl-C stops both). Try, in two terminals:");
    println!("  curl -N http://localhost:7114/events");
    println!("  echo '{{\"data\":\"Hello, world\",\"id\":\"1\"}}' | curl -s --max-time 1 telnet://127.0.0.1:7001");
    println!();
    loop {
        if let Ok(Some(status)) = zilla.0.try_wait() {
            return if status.success() {
                Ok(())
            } else {
                Err(format!("zilla exited ({status})"))
            };
        }
        if let Ok(Some(status)) = backend.0.try_wait() {
            return Err(format!("zilla-sse-server exited ({status})"));
        }
        thread::sleep(Duration::from_millis(200));
    }
}
