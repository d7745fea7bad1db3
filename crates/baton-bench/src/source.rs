//! Where a benchmark's graph comes from: the one generator, or any spec
//! file (a peer's graph included), so every figure can be taken again on
//! another graph with the same command.

use std::path::PathBuf;

use anyhow::Context;
use baton_core::generate::{Shape, generate};
use baton_core::{Format, Workflow};

/// `--nodes N --seed S`, or `--spec FILE`.
#[derive(clap::Args, Clone, Debug)]
pub struct GraphArgs {
    /// Tasks of the generated graph.
    #[arg(long, required_unless_present = "spec", conflicts_with = "spec")]
    nodes: Option<usize>,
    #[arg(long, default_value_t = 1, conflicts_with = "spec")]
    seed: u64,
    /// A spec file (YAML or JSON) instead of a generated graph.
    #[arg(long, value_name = "FILE")]
    spec: Option<PathBuf>,
}

/// A graph's text, how it is spelled, and what to call it.
pub(crate) struct Source {
    pub(crate) label: String,
    pub(crate) text: String,
    pub(crate) format: Format,
    /// The file it is in, if it is one.
    pub(crate) file: Option<PathBuf>,
}

impl GraphArgs {
    pub(crate) fn source(&self) -> anyhow::Result<Source> {
        match (&self.spec, self.nodes) {
            (Some(path), _) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                let name = path.display().to_string();
                Ok(Source {
                    format: Format::detect(Some(&name), &text),
                    label: name,
                    text,
                    file: Some(path.clone()),
                })
            }
            (None, Some(nodes)) => {
                let shape = Shape {
                    nodes,
                    seed: self.seed,
                };
                Ok(Source {
                    label: format!(
                        "{nodes} generated tasks, seed {} (baton bench gen --nodes {nodes} --seed {})",
                        shape.seed, shape.seed
                    ),
                    text: serde_json::to_string(&generate(&shape))?,
                    format: Format::Json,
                    file: None,
                })
            }
            (None, None) => anyhow::bail!("give --nodes N or --spec FILE"),
        }
    }

    /// The workflow itself, loaded.
    pub(crate) fn workflow(&self) -> anyhow::Result<(String, Workflow)> {
        let source = self.source()?;
        let workflow = source.load()?;
        Ok((source.label, workflow))
    }
}

impl Source {
    pub(crate) fn load(&self) -> anyhow::Result<Workflow> {
        let loaded = baton_core::load(&self.text, self.format);
        if let Some(problem) = loaded.problems.first() {
            anyhow::bail!("{} does not load: {problem}", self.label);
        }
        loaded
            .workflow
            .with_context(|| format!("{} does not load", self.label))
    }
}
