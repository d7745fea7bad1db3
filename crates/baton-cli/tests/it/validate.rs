use std::fmt::Write;

use crate::util::{baton, specs, workspace};

/// One line per problem: `line:col code path: message (help)`, which is what
/// a reader of the snapshot needs to see that each problem is precise.
fn summarise(report: &serde_json::Value) -> String {
    let mut out = String::new();
    for problem in report["problems"].as_array().expect("problems") {
        let location = &problem["location"];
        let position = if location.is_null() {
            "-".to_owned()
        } else {
            format!("{}:{}", location["line"], location["column"])
        };
        let _ = write!(
            out,
            "{position} {} {}: {}",
            problem["code"].as_str().unwrap(),
            problem["path"].as_str().unwrap(),
            problem["message"].as_str().unwrap()
        );
        if let Some(help) = problem["help"].as_str() {
            let _ = write!(out, " ({help})");
        }
        out.push('\n');
    }
    out
}

#[test]
fn each_broken_spec_reports_every_problem_with_its_line_and_column() {
    let directory = specs().join("invalid");
    let mut names: Vec<_> = std::fs::read_dir(&directory)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "json")
            )
        })
        .collect();
    names.sort();
    assert!(names.len() >= 10, "the broken set is there");
    for spec in names {
        let output = baton()
            .arg("validate")
            .arg("--json")
            .arg(&spec)
            .output()
            .unwrap();
        assert_eq!(
            output.status.code(),
            Some(1),
            "{} must fail validation",
            spec.display()
        );
        let reports: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let report = &reports[0];
        assert_eq!(report["valid"], false);
        let expected = spec.with_extension(format!(
            "{}.expected",
            spec.extension().unwrap().to_str().unwrap()
        ));
        expect_test::expect_file![expected].assert_eq(&summarise(report));
    }
}

#[test]
fn a_directory_is_validated_file_by_file_and_fails_if_any_fails() {
    let output = baton()
        .arg("validate")
        .arg(specs().join("invalid"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("cycle.yaml: 2 problems"), "{stdout}");
    assert!(
        stdout.contains("tasks form a cycle: a -> b -> c -> a"),
        "{stdout}"
    );
}

#[test]
fn human_output_underlines_the_offending_source() {
    let output = baton()
        .arg("validate")
        .arg(specs().join("invalid/dependencies.yaml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        stdout.contains("[") && stdout.contains("dependencies.yaml:5:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("train: { run: ./train.sh, needs: [claen, train] }"),
        "{stdout}"
    );
    assert!(stdout.contains("help: did you mean `clean`?"), "{stdout}");
}

#[test]
fn the_examples_are_valid() {
    baton()
        .arg("validate")
        .arg(workspace().join("examples"))
        .assert()
        .success();
}

#[test]
fn a_required_input_missing_at_run_time_is_reported() {
    let spec = "name: w\ninputs:\n  branch: {type: string}\n  count: {type: integer, default: 1}\ntasks:\n  a: {run: echo \"$B\", env: {B: \"{{ inputs.branch }}\"}}\n";
    let output = baton()
        .args(["validate", "--json", "-i", "count=x", "-"])
        .write_stdin(spec)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let reports: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    expect_test::expect![[r#"
        3:11 missing-input inputs.branch: required input `branch` was not given (pass it with `-i branch=VALUE`)
        4:10 invalid-input inputs.count: input `count` must be of type integer, got "x"
    "#]]
    .assert_eq(&summarise(&reports[0]));
    baton()
        .args(["validate", "-i", "branch=main", "-"])
        .write_stdin(spec)
        .assert()
        .success();
}

#[test]
fn no_input_makes_validate_panic() {
    let inputs: [&[u8]; 8] = [
        b"",
        b"\xff\xfe",
        b"[[[[[[[[",
        b"tasks: 3",
        b"name: 1\ntasks: {a: []}",
        b"*x",
        b"{\"name\": \"x\", \"tasks\": {\"a\": {\"http\": {}}}}",
        b"&a [*a]",
    ];
    for input in inputs {
        let output = baton()
            .args(["validate", "-"])
            .write_stdin(input)
            .output()
            .unwrap();
        assert_ne!(
            output.status.code(),
            Some(101),
            "panicked on {:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn uses_templates_are_checked_with_the_spec() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("templates")).unwrap();
    std::fs::write(
        dir.path().join("templates/lint.yaml"),
        "name: lint\nparams:\n  path: {type: string}\ntask:\n  run: echo {{ params.path }}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("ok.yaml"),
        "name: ok\ntasks:\n  a: {uses: lint, with: {path: src}}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        "name: bad\ntasks:\n  a:\n    uses: lint\n    with: {paht: src}\n",
    )
    .unwrap();
    baton()
        .arg("validate")
        .arg(dir.path().join("ok.yaml"))
        .assert()
        .success();
    let output = baton()
        .arg("validate")
        .arg(dir.path().join("bad.yaml"))
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(output).unwrap();
    assert!(text.contains("`lint` needs parameter `path`"), "{text}");
    assert!(text.contains("`lint` has no parameter `paht`"), "{text}");
    assert!(text.contains("bad.yaml:5:12"), "{text}");
}

#[test]
fn a_problem_on_a_very_long_line_shows_a_window_of_it_with_its_column() {
    // 5,000 tasks on one line (a minified spec), one of them needing a task
    // that does not exist.
    let tasks: Vec<String> = (0..5000)
        .map(|index| match index {
            0 => "\"t0\":{\"run\":\"true\"}".to_owned(),
            2500 => "\"t2500\":{\"run\":\"true\",\"needs\":[\"nope\"]}".to_owned(),
            _ => format!(
                "\"t{index}\":{{\"run\":\"true\",\"needs\":[\"t{}\"]}}",
                index - 1
            ),
        })
        .collect();
    let spec = format!("{{\"name\":\"chain\",\"tasks\":{{{}}}}}", tasks.join(","));
    let column = spec.find("\"nope\"").unwrap() + 1;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("chain.json"), &spec).unwrap();
    let output = baton()
        .current_dir(dir.path())
        .args(["validate", "chain.json"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let shown = String::from_utf8(output.stdout).unwrap();
    assert!(
        shown.contains("task `t2500` needs `nope`, which does not exist")
            && shown.contains(&format!("chain.json:1:{column}"))
            && shown.contains(&format!("line 1 is {} bytes long", spec.len())),
        "{shown}"
    );
    assert!(
        shown.len() < 2048,
        "a window of the line, not all {} bytes of it: {} bytes shown",
        spec.len(),
        shown.len()
    );
}

#[test]
fn a_directory_without_specs_is_a_failed_validation_saying_so() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("empty")).unwrap();
    baton()
        .current_dir(dir.path())
        .args(["validate", "empty"])
        .assert()
        .code(1)
        .stderr("error: no spec in empty: it holds no .yaml, .yml or .json file\n");
}
