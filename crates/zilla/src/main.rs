//! The `zilla` command: `zilla start` runs the gateway described by a zilla.yaml.

mod admin;
mod plugins;
mod workers;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use zilla_engine::{Engine, Exporter, Properties, Reload, StartError, Workers};

/// Event-streaming API gateway: Server-Sent Events proxy, JWT, schema validation, AsyncAPI.
#[derive(Debug, Parser)]
#[command(name = "zilla", disable_version_flag = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the engine in the foreground until SIGINT/SIGTERM.
    Start(StartArgs),
    /// Print the version.
    Version,
    /// Print the JSON Schema of zilla.yaml (for editors: yaml-language-server).
    Schema,
    /// Check a config as `start` would (schema, references, keystores, catalogs, AsyncAPI
    /// documents) without listening; print every error; exit 0 if valid, 1 if not.
    Validate(ValidateArgs),
    /// Print the current value of every metric the running engine records (the engine of
    /// this directory: `.zilla/engine`, or `-P zilla.engine.directory=DIR`).
    Metrics(MetricsArgs),
}

#[derive(Debug, clap::Args)]
struct MetricsArgs {
    /// Only this binding (or guard, catalog).
    #[arg(value_name = "BINDING")]
    name: Option<String>,
    /// Only this binding (same as the positional argument).
    #[arg(short = 'b', long = "binding", conflicts_with = "name")]
    binding: Option<String>,
    /// Only this namespace.
    #[arg(short = 'n', long = "namespace")]
    namespace: Option<String>,
    /// Engine property `name=value` (`zilla.engine.directory`); repeatable.
    #[arg(short = 'P', long = "property", value_name = "NAME=VALUE")]
    properties: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct ValidateArgs {
    /// Config file [default: ./zilla.yaml, then /etc/zilla/zilla.yaml].
    #[arg(short = 'c', long = "config")]
    config: Option<PathBuf>,
    /// Also print what the config generates (asyncapi namespaces).
    #[arg(short = 'v', long = "verbose")]
    verbose: bool,
    /// Engine property `name=value` (a bare name means `true`); repeatable.
    #[arg(short = 'P', long = "property", value_name = "NAME=VALUE")]
    properties: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct StartArgs {
    /// Config file [default: ./zilla.yaml, then /etc/zilla/zilla.yaml].
    #[arg(short = 'c', long = "config")]
    config: Option<PathBuf>,
    /// Print the effective config and per-stream events.
    #[arg(short = 'v', long = "verbose")]
    verbose: bool,
    /// Print error details and backtraces.
    #[arg(short = 'e', long = "exception-traces")]
    exception_traces: bool,
    /// Runtime worker threads [default: one per core].
    #[arg(short = 'w', long = "workers")]
    workers: Option<usize>,
    /// Engine property `name=value` (a bare name means `true`); repeatable.
    #[arg(short = 'P', long = "property", value_name = "NAME=VALUE")]
    properties: Vec<String>,
    /// Print events to stdout even without a configured exporter.
    #[arg(short = 'l', long = "logs")]
    logs: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("zilla version {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Schema => {
            plugins::link();
            let schema = zilla_engine::schema();
            println!(
                "{}",
                serde_json::to_string_pretty(&schema).expect("schema is JSON")
            );
            ExitCode::SUCCESS
        }
        Command::Start(args) => start(args),
        Command::Validate(args) => validate(args),
        Command::Metrics(args) => {
            let properties = Properties::from_args(args.properties.iter().map(String::as_str));
            let binding = args.name.or(args.binding);
            match admin::print(
                &admin::directory(&properties),
                args.namespace.as_deref(),
                binding.as_deref(),
            ) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("zilla: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

fn validate(args: ValidateArgs) -> ExitCode {
    plugins::link();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let path = match config_path(args.config) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("zilla: {e}");
            return ExitCode::from(1);
        }
    };
    let properties = Properties::from_args(args.properties.iter().map(String::as_str));
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("zilla: cannot start a runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let engine = Engine::new(&path, properties);
    match runtime.block_on(async { engine.validate() }) {
        Ok(checked) => {
            for w in &checked.warnings {
                eprintln!("zilla: warning: {w}");
            }
            if args.verbose {
                for (namespace, text) in &checked.generated {
                    println!("# generated: {namespace}\n---\n{}", text.trim_end());
                }
            }
            println!("{}: valid", path.display());
            ExitCode::SUCCESS
        }
        Err(d) => {
            eprintln!("{d}");
            eprintln!("zilla: {}: {} error(s)", path.display(), d.0.len());
            ExitCode::from(1)
        }
    }
}

fn config_path(given: Option<PathBuf>) -> Result<PathBuf, String> {
    if let Some(p) = given {
        return Ok(p);
    }
    for candidate in ["zilla.yaml", "/etc/zilla/zilla.yaml"] {
        if Path::new(candidate).exists() {
            return Ok(PathBuf::from(candidate));
        }
    }
    Err("no config found: neither ./zilla.yaml nor /etc/zilla/zilla.yaml exists; pass one with -c FILE \
         (examples/sse.proxy/zilla.yaml is a working example)"
        .into())
}

fn start(args: StartArgs) -> ExitCode {
    plugins::link();
    let filter = if args.verbose { "debug" } else { "info" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    raise_fd_limit();
    if args.exception_traces && std::env::var_os("RUST_BACKTRACE").is_none() {
        std::env::set_var("RUST_BACKTRACE", "1");
    }
    let path = match config_path(args.config) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("zilla: {e}");
            return ExitCode::from(1);
        }
    };
    let mut properties = Properties::from_args(args.properties.iter().map(String::as_str));
    if args.logs {
        properties.set("zilla.engine.verbose.events", "true");
    }
    if args.verbose {
        properties.set("zilla.engine.verbose", "true");
    }
    let workers = args
        .workers
        .or_else(|| {
            properties
                .get("zilla.engine.workers")
                .and_then(|w| w.parse().ok())
        })
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let workers = match workers::Workers::start(workers) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("zilla: cannot start {workers} worker threads: {e}");
            return ExitCode::from(1);
        }
    };
    let control = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("zilla: cannot start the control runtime: {e}");
            return ExitCode::from(1);
        }
    };
    // `-l` (or the property) prints events even when the config names no exporter.
    let exporters = if properties.bool("zilla.engine.verbose.events", false) {
        vec![exporter_stdout::stdout()]
    } else {
        Vec::new()
    };
    let code = control.block_on(run(
        path,
        properties,
        args.verbose,
        workers.handles(),
        exporters,
    ));
    control.shutdown_timeout(Duration::from_millis(100));
    workers.stop();
    code
}

async fn run(
    path: PathBuf,
    properties: Properties,
    verbose: bool,
    workers: Vec<tokio::runtime::Handle>,
    exporters: Vec<Arc<dyn Exporter>>,
) -> ExitCode {
    // Install the handlers before anything listens, so a signal is never the default (fatal) one.
    let signals = Signals::new();
    let engine = Engine::with_workers(path, properties, Workers::new(workers), exporters);
    let started = match engine.start() {
        Ok(s) => s,
        Err(StartError::Config(d)) => {
            eprintln!("{d}");
            eprintln!(
                "zilla: the config has {} error(s); nothing was started",
                d.0.len()
            );
            return ExitCode::from(1);
        }
        Err(StartError::Attach(e)) => {
            eprintln!("zilla: {e}");
            return ExitCode::from(1);
        }
    };
    for w in &started.warnings {
        eprintln!("zilla: warning: {w}");
    }
    if verbose {
        println!("{}", started.text.trim_end());
    }
    if verbose
        || engine
            .properties()
            .bool("zilla.engine.verbose.composites", false)
    {
        for (namespace, text) in &started.generated {
            println!("# generated: {namespace}\n---\n{}", text.trim_end());
        }
    }
    // The ready file before the listening lines: whoever waits for either finds both.
    let _admin = admin::serve(
        &admin::directory(engine.properties()),
        engine.metrics().clone(),
    );
    for (binding, endpoint) in &started.endpoints {
        println!("{binding} listening on {endpoint}");
    }

    if engine.properties().bool("zilla.engine.config.watch", true) {
        let interval = engine
            .properties()
            .duration("zilla.engine.config.watch.interval", Duration::from_secs(1));
        tokio::spawn(
            engine
                .clone()
                .watch(interval, move |outcome| match outcome {
                    Reload::Applied(endpoints) => {
                        tracing::info!("config reloaded");
                        for (binding, endpoint) in &endpoints {
                            println!("{binding} listening on {endpoint}");
                        }
                    }
                    Reload::Invalid(d) => {
                        eprintln!("{d}");
                        eprintln!("zilla: config not reloaded: the running config keeps serving");
                    }
                    Reload::AttachFailed(e) => {
                        eprintln!("zilla: {e}");
                        eprintln!("zilla: config not reloaded: the running config keeps serving");
                    }
                    Reload::Unchanged => {}
                }),
        );
    }

    let mut signals = signals;
    signals.wait().await;
    let drain = engine
        .properties()
        .duration("zilla.engine.drain.timeout", Duration::from_secs(30));
    let grace = engine
        .properties()
        .duration("zilla.engine.shutdown.grace", Duration::from_secs(5));
    tracing::info!(
        "stopping: no new connections; open streams go on for up to {drain:?} \
         (zilla.engine.drain.timeout), then end cleanly so their clients reconnect elsewhere; \
         a second signal stops at once"
    );
    // Only this engine's own ready file (not one another engine in the same directory wrote).
    if _admin.is_some() {
        let _ = std::fs::remove_file(admin::directory(engine.properties()).join("ready"));
    }
    tokio::select! {
        drained = engine.shutdown(drain, grace) => {
            if !drained {
                tracing::warn!(
                    open = engine.active_tasks(),
                    "streams still open after the grace period are closed"
                );
            }
        }
        () = signals.wait() => {
            tracing::warn!(open = engine.active_tasks(), "second signal: stopping now");
        }
    }
    ExitCode::SUCCESS
}

/// Raises the soft limit of open files to the hard one, as nginx's `worker_rlimit_nofile` and
/// Go's runtime do: each proxied client holds two descriptors (its connection and the
/// upstream's). Warns when the limit stays low.
fn raise_fd_limit() {
    let before = rlimit::getrlimit(rlimit::Resource::NOFILE).ok();
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(soft) => {
            tracing::debug!(before = ?before.map(|l| l.0), soft, hard = ?before.map(|l| l.1), "open files limit");
            if soft < 8192 {
                tracing::warn!(
                    limit = soft,
                    "the open files limit allows about {} proxied streams (two descriptors each): raise the hard limit (ulimit -Hn, LimitNOFILE=, or the container's nofile ulimit) for more",
                    soft / 2
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot raise the open files limit"),
    }
}

/// SIGINT and SIGTERM, registered up front.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Signals {
                term: signal(SignalKind::terminate()).expect("SIGTERM handler"),
                int: signal(SignalKind::interrupt()).expect("SIGINT handler"),
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    async fn wait(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}
