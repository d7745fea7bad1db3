//! The deployment files in `deploy/` and the `Dockerfile`, checked by the
//! tools that would read them: `kubectl kustomize` renders both
//! Kubernetes layouts and `kubernetes-validate` checks every resource
//! against the Kubernetes schemas; `docker-compose config` checks the
//! compose file; BuildKit's parser (the `dockerfile` package) reads the
//! Dockerfile; and `baton config` takes the settings they carry. (No
//! image is built here: this machine has no Docker engine.)

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::util::{baton, workspace};

/// `program args` in the workspace; none (said loudly) when the program is
/// not installed.
fn tool(program: &str, args: &[&str], installed_by: &str) -> Option<Output> {
    match Command::new(program)
        .args(args)
        .current_dir(workspace())
        .output()
    {
        Ok(output) => Some(output),
        Err(_) => {
            eprintln!("SKIPPED: {program} is not installed ({installed_by})");
            None
        }
    }
}

fn succeeded(what: &str, output: &Output) {
    assert!(
        output.status.success(),
        "{what}:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The rendered manifests of a kustomization, written to a file of `dir`.
fn kustomized(layout: &str, dir: &Path) -> Option<PathBuf> {
    let output = tool(
        "kubectl",
        &["kustomize", &format!("deploy/k8s/{layout}")],
        "kubectl comes with this machine's image",
    )?;
    succeeded(&format!("kubectl kustomize {layout}"), &output);
    let rendered = dir.join(format!("{}.yaml", layout.replace('/', "-")));
    std::fs::write(&rendered, &output.stdout).unwrap();
    Some(rendered)
}

#[test]
fn both_kubernetes_layouts_render_and_every_resource_matches_the_kubernetes_schemas() {
    let dir = tempfile::tempdir().unwrap();
    for layout in ["base", "overlays/production"] {
        let Some(rendered) = kustomized(layout, dir.path()) else {
            return;
        };
        let Some(output) = tool(
            "kubernetes-validate",
            &["--strict", "--quiet", rendered.to_str().unwrap()],
            "`.ci/run` installs it from PyPI",
        ) else {
            return;
        };
        succeeded(&format!("kubernetes-validate {layout}"), &output);
        let manifests = std::fs::read_to_string(&rendered).unwrap();
        for kind in [
            "kind: Deployment",
            "kind: Service\n",
            "kind: ConfigMap",
            "kind: HorizontalPodAutoscaler",
            "kind: PodDisruptionBudget",
            "kind: NetworkPolicy",
            "kind: ServiceMonitor",
        ] {
            assert!(manifests.contains(kind), "{layout} lacks {kind}");
        }
        for must in [
            "path: /readyz",
            "path: /healthz",
            "readOnlyRootFilesystem: true",
            "runAsNonRoot: true",
            "secretKeyRef",
        ] {
            assert!(manifests.contains(must), "{layout} lacks {must}");
        }
    }
}

#[test]
fn the_server_settings_of_the_kubernetes_layout_are_ones_baton_takes() {
    let output = baton()
        .current_dir(workspace())
        .args(["config", "--config", "deploy/k8s/base/baton.toml"])
        .output()
        .unwrap();
    succeeded("baton config", &output);
    let shown = String::from_utf8_lossy(&output.stdout);
    assert!(shown.contains("drain_grace = \"30s\""), "{shown}");
}

#[test]
fn the_compose_file_is_valid_compose_and_its_settings_are_ones_baton_takes() {
    let Some(output) = tool(
        "docker-compose",
        &["-f", "deploy/compose.yaml", "config"],
        "`.ci/run` installs Debian's docker-compose",
    ) else {
        return;
    };
    succeeded("docker-compose config", &output);
    let resolved = String::from_utf8_lossy(&output.stdout);
    for service in [
        "postgres:",
        "redis:",
        "baton-a:",
        "baton-b:",
        "worker:",
        "prometheus:",
        "grafana:",
    ] {
        assert!(resolved.contains(service), "no {service} in {resolved}");
    }
    // The settings the replicas get, as baton reads them.
    let output = baton()
        .current_dir(workspace())
        .args(["config"])
        .env(
            "BATON_STORE__URL",
            "postgres://baton:baton@postgres:5432/baton",
        )
        .env("BATON_EVENTS__REDIS", "redis://redis:6379")
        .env("BATON_SERVER__ALLOWED_HOSTS", r#"["baton-a", "baton-b"]"#)
        .env("BATON_SERVER__BIND", "0.0.0.0:8080")
        .output()
        .unwrap();
    succeeded("baton config", &output);
    let compose = std::fs::read_to_string(workspace().join("deploy/compose.yaml")).unwrap();
    for line in [
        "BATON_STORE__URL: postgres://baton:baton@postgres:5432/baton",
        "BATON_EVENTS__REDIS: redis://redis:6379",
        r#"BATON_SERVER__ALLOWED_HOSTS: '["baton-a", "baton-b"]'"#,
    ] {
        assert!(
            compose.contains(line),
            "the test's settings are the file's: {line}"
        );
    }
}

/// The Dockerfile's instructions as BuildKit's parser reads them:
/// `(instruction, flags then arguments)`.
fn dockerfile_instructions() -> Option<Vec<(String, Vec<String>)>> {
    let script = "import dockerfile, json, sys\n\
        print(json.dumps([[c.cmd, list(c.flags) + list(c.value)] for c in dockerfile.parse_file(sys.argv[1])]))";
    let output = tool(
        "python3",
        &["-c", script, "Dockerfile"],
        "python3 comes with this machine's image",
    )?;
    if String::from_utf8_lossy(&output.stderr).contains("No module named 'dockerfile'") {
        eprintln!(
            "SKIPPED: the dockerfile package is not installed (`.ci/run` installs it from PyPI)"
        );
        return None;
    }
    succeeded("parsing the Dockerfile", &output);
    Some(serde_json::from_slice(&output.stdout).unwrap())
}

#[test]
fn the_dockerfile_builds_in_one_stage_and_runs_unprivileged_in_another_with_a_health_check() {
    let Some(instructions) = dockerfile_instructions() else {
        return;
    };
    let known = [
        "FROM",
        "RUN",
        "COPY",
        "WORKDIR",
        "ENV",
        "USER",
        "VOLUME",
        "EXPOSE",
        "HEALTHCHECK",
        "STOPSIGNAL",
        "ENTRYPOINT",
        "CMD",
    ];
    for (instruction, _) in &instructions {
        assert!(
            known.contains(&instruction.as_str()),
            "unknown instruction {instruction}"
        );
    }
    let stages: Vec<usize> = instructions
        .iter()
        .enumerate()
        .filter(|(_, (instruction, _))| instruction == "FROM")
        .map(|(index, _)| index)
        .collect();
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage");
    let runtime = &instructions[*stages.last().unwrap()..];
    let of = |name: &str| {
        runtime
            .iter()
            .filter(|(instruction, _)| instruction == name)
            .map(|(_, arguments)| arguments.clone())
            .collect::<Vec<_>>()
    };
    let user = of("USER");
    assert_eq!(user.len(), 1);
    let uid: u32 = user[0][0]
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("a numeric user");
    assert_ne!(uid, 0, "the runtime runs unprivileged");
    let health = of("HEALTHCHECK");
    assert_eq!(health.len(), 1);
    assert!(
        health[0].ends_with(&["CMD".to_owned(), "baton".to_owned(), "health".to_owned()]),
        "{health:?}"
    );
    assert_eq!(of("COPY")[0][0], "--from=build", "{:?}", of("COPY"));
    for (instruction, arguments) in runtime {
        assert!(
            !arguments.iter().any(|argument| argument.contains("latest")),
            "{instruction} names a moving tag"
        );
    }
    // What the image runs is a command this binary has.
    baton().arg("health").arg("--help").assert().success();
}
