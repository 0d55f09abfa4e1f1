//! The deployment files: the Helm chart under `deploy/helm/zilla`, the manifests rendered from it
//! in `deploy/kubernetes/zilla.yaml`, and the `Dockerfile`. What can be checked here is checked
//! (the config they carry starts, the probes read the ready file zilla writes, the grace period
//! covers the drain, the manifests agree with the chart's values); `helm lint`/`helm template`
//! and `docker build` run when those tools (and a Docker daemon) exist, and say they skipped
//! otherwise.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn manifests() -> Vec<Value> {
    let text = std::fs::read_to_string(root().join("deploy/kubernetes/zilla.yaml")).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind))
        .unwrap_or_else(|| panic!("no {kind}"))
}

#[test]
fn the_manifests_carry_a_config_zilla_loads_and_probes_it_answers() {
    let docs = manifests();
    let config = kind(&docs, "ConfigMap")["data"]["zilla.yaml"]
        .as_str()
        .unwrap()
        .to_string();
    // The chart's default config is the one the manifests carry.
    let values: Value = serde_yaml::from_str(
        &std::fs::read_to_string(root().join("deploy/helm/zilla/values.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(values["config"].as_str(), Some(config.as_str()));

    // zilla loads it.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("zilla.yaml"), &config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_zilla"))
        .args(["validate", "-c", "zilla.yaml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let deployment = kind(&docs, "Deployment");
    let pod = &deployment["spec"]["template"];
    let container = &pod["spec"]["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        args.contains(&"zilla.engine.directory=/var/run/zilla"),
        "{args:?}"
    );
    // Ready when zilla's ready file is there (it is written in the engine directory).
    let probe: Vec<&str> = container["readinessProbe"]["exec"]["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(probe, ["test", "-f", "/var/run/zilla/ready"]);
    // The pod outlives the drain.
    let drain: u64 = args
        .iter()
        .find_map(|a| a.strip_prefix("zilla.engine.drain.timeout="))
        .and_then(|d| d.trim_end_matches('s').parse().ok())
        .expect("a drain timeout");
    let grace = pod["spec"]["terminationGracePeriodSeconds"]
        .as_u64()
        .unwrap();
    assert!(grace > drain, "grace {grace} s, drain {drain} s");
    // Prometheus scrapes the port the config's exporter serves.
    let port = pod["metadata"]["annotations"]["prometheus.io/port"]
        .as_str()
        .unwrap();
    assert!(config.contains(&format!("port: {port}")), "{config}");
    // The image puts the engine directory where the probes look.
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    assert!(dockerfile.contains("\"zilla.engine.directory=/var/run/zilla\""));
    assert!(dockerfile.contains("test -f /var/run/zilla/ready"));
}

fn tool(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

#[test]
fn helm_lints_and_renders_the_chart_when_it_exists() {
    let Some(helm) = tool("helm") else {
        println!("skipped: helm is not installed (it cannot be installed on this machine); the manifests are checked without it");
        return;
    };
    let chart = root().join("deploy/helm/zilla");
    let lint = Command::new(&helm)
        .arg("lint")
        .arg(&chart)
        .output()
        .unwrap();
    assert!(
        lint.status.success(),
        "{}",
        String::from_utf8_lossy(&lint.stdout)
    );
    let rendered = Command::new(&helm)
        .args(["template", "zilla"])
        .arg(&chart)
        .output()
        .unwrap();
    assert!(rendered.status.success());
    let text = String::from_utf8_lossy(&rendered.stdout);
    assert!(
        text.contains("test, -f, /var/run/zilla/ready") || text.contains("/var/run/zilla/ready")
    );
}

#[test]
fn the_image_builds_and_runs_when_docker_exists() {
    let Some(docker) = tool("docker").or_else(|| tool("podman")) else {
        println!("skipped: neither docker nor podman is installed");
        return;
    };
    if !Command::new(&docker)
        .arg("info")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        println!(
            "skipped: {} has no daemon to talk to here",
            docker.display()
        );
        return;
    }
    let build = Command::new(&docker)
        .args(["build", "-t", "zilla:test", "."])
        .current_dir(root())
        .status()
        .unwrap();
    assert!(build.success(), "docker build failed");
    let version = Command::new(&docker)
        .args(["run", "--rm", "zilla:test", "version"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("zilla version"));
}
