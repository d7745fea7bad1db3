//! `baton bench plan`: parsing, then validation plus planning, of a graph;
//! with `--peers`, the whole `baton plan --json` process beside Python's
//! graphlib and NetworkX doing the same on the same file.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use baton_core::{Format, Plan, load, validate};

use crate::figures::{median, peak_memory, show};
use crate::source::{GraphArgs, Source};

/// The peers' floors, as scripts `python3` runs.
const PEERS: [(&str, &str); 2] = [
    ("graphlib", include_str!("../peers/plan_graphlib.py")),
    ("networkx", include_str!("../peers/plan_networkx.py")),
];

pub(crate) fn plan(graph: &GraphArgs, samples: usize, peers: bool) -> anyhow::Result<()> {
    let source = graph.source()?;
    println!("graph: {}", source.label);
    let megabytes = source.text.len() as f64 / 1e6;
    let mut parses = Vec::with_capacity(samples);
    let mut workflow = None;
    for _ in 0..samples {
        let started = Instant::now();
        let loaded = load(&source.text, source.format);
        parses.push(started.elapsed());
        anyhow::ensure!(
            loaded.problems.is_empty(),
            "the spec has problems: {:?}",
            &loaded.problems[..1]
        );
        workflow = loaded.workflow;
    }
    let workflow = workflow.context("--samples must be at least 1")?;
    let tasks = workflow.tasks.len() as f64;
    let spelled = match source.format {
        Format::Json => "JSON",
        Format::Yaml => "YAML",
    };
    let rate = |time: Duration| megabytes / time.as_secs_f64();
    let first = parses[0];
    let (parse, fastest, slowest) = median(parses);
    println!(
        "parse {spelled} ({megabytes:.1} MB): median {} ({:.0} MB/s, {:.0} tasks/s), first {} ({:.0} MB/s, fresh memory), min {}, max {} over {samples} samples",
        show(parse),
        rate(parse),
        tasks / parse.as_secs_f64(),
        show(first),
        rate(first),
        show(fastest),
        show(slowest),
    );

    let mut times = Vec::with_capacity(samples);
    let mut edges = 0;
    let mut width = 0;
    for _ in 0..samples {
        let started = Instant::now();
        let dag =
            validate(&workflow).map_err(|problems| anyhow::anyhow!("invalid: {}", problems[0]))?;
        let plan = Plan::new(&workflow, &dag);
        times.push(started.elapsed());
        edges = dag.edge_count();
        width = plan.max_width;
        drop((dag, plan));
    }
    let (checked, fastest, slowest) = median(times);
    println!(
        "validate + plan ({edges} edges, max width {width}): median {}, min {}, max {} over {samples} samples",
        show(checked),
        show(fastest),
        show(slowest)
    );
    let dag =
        validate(&workflow).map_err(|problems| anyhow::anyhow!("invalid: {}", problems[0]))?;
    let mut times = Vec::with_capacity(samples);
    let mut crossings = 0;
    for _ in 0..samples {
        let started = Instant::now();
        crossings = baton_core::layout::layout(&dag, Default::default()).crossings;
        times.push(started.elapsed());
    }
    let (drawn, fastest, slowest) = median(times);
    println!(
        "layout for drawing (levels, barycentre ordering, {crossings} crossings left): median {}, min {}, max {} over {samples} samples",
        show(drawn),
        show(fastest),
        show(slowest)
    );
    if let Some(peak) = peak_memory() {
        println!(
            "peak memory (VmHWM, whole process): {:.0} MiB",
            peak as f64 / 1024.0
        );
    }
    drop(workflow);
    if peers {
        whole_processes(&source, samples)?;
    }
    Ok(())
}

/// `baton plan --json FILE` as a whole process, then each peer's script
/// on the same file, `samples` times each; medians side by side.
fn whole_processes(source: &Source, samples: usize) -> anyhow::Result<()> {
    anyhow::ensure!(
        source.format == Format::Json,
        "the peers read JSON: give a .json spec (baton bench gen writes one)"
    );
    let dir = tempfile::tempdir()?;
    let file = match &source.file {
        Some(file) => file.clone(),
        None => {
            let file = dir.path().join("graph.json");
            std::fs::write(&file, &source.text)?;
            file
        }
    };
    let baton = std::env::current_exe()?;
    println!("whole processes, output to /dev/null, median of {samples}:");
    let ours = time(samples, || {
        let mut command = Command::new(&baton);
        command.arg("plan").arg("--json").arg(&file);
        command
    })?;
    println!("  baton plan --json: {}", show(ours));
    for (name, script) in PEERS {
        let path = dir.path().join(format!("plan_{name}.py"));
        std::fs::write(&path, script)?;
        let theirs = match time(samples, || python(&path, &file)) {
            Ok(theirs) => theirs,
            Err(error) => {
                println!("  {name}: not measured ({error:#})");
                continue;
            }
        };
        println!(
            "  python3 {name}: {} (baton is {:.1}x faster)",
            show(theirs),
            theirs.as_secs_f64() / ours.as_secs_f64()
        );
    }
    Ok(())
}

fn python(script: &Path, file: &Path) -> Command {
    let mut command = Command::new("python3");
    command.arg(script).arg(file);
    command
}

/// The median wall time of `samples` runs of the command, after one
/// unmeasured run that warms the page cache.
fn time(samples: usize, command: impl Fn() -> Command) -> anyhow::Result<Duration> {
    let mut times = Vec::with_capacity(samples);
    for round in 0..=samples {
        let started = Instant::now();
        let output = command()
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()?;
        let elapsed = started.elapsed();
        anyhow::ensure!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
        if round > 0 {
            times.push(elapsed);
        }
    }
    Ok(median(times).0)
}
