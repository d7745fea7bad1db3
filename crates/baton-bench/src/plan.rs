//! `baton bench plan`: parsing, then validation plus planning, of a graph.

use std::time::Instant;

use anyhow::Context;
use baton_core::generate::{Shape, generate};
use baton_core::{Format, Plan, load, validate};

use crate::figures::{peak_memory, show};

pub(crate) fn plan(shape: Shape, samples: usize) -> anyhow::Result<()> {
    println!(
        "graph: {} tasks, seed {} (baton bench gen --nodes {} --seed {})",
        shape.nodes, shape.seed, shape.nodes, shape.seed
    );
    let text = serde_json::to_string(&generate(&shape))?;
    let started = Instant::now();
    let loaded = load(&text, Format::Json);
    let parse = started.elapsed();
    anyhow::ensure!(
        loaded.problems.is_empty(),
        "the generated spec has problems: {:?}",
        &loaded.problems[..1]
    );
    let workflow = loaded.workflow.context("the generated spec did not load")?;
    println!(
        "parse JSON ({:.1} MiB): {} ({:.0} tasks/s)",
        text.len() as f64 / (1024.0 * 1024.0),
        show(parse),
        shape.nodes as f64 / parse.as_secs_f64()
    );
    drop(text);

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
    times.sort();
    println!(
        "validate + plan ({edges} edges, max width {width}): median {}, min {}, max {} over {samples} samples",
        show(times[samples / 2]),
        show(times[0]),
        show(times[samples - 1])
    );
    if let Some(peak) = peak_memory() {
        println!(
            "peak memory (VmHWM, whole process): {:.0} MiB",
            peak as f64 / 1024.0
        );
    }
    Ok(())
}
