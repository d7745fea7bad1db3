//! Reading specs from files, directories and stdin.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use baton_core::{Format, Problem, Valid};

/// A spec's text with the name it is shown under.
pub(crate) struct SpecFile {
    pub(crate) name: String,
    pub(crate) text: Arc<String>,
    pub(crate) format: Format,
}

impl SpecFile {
    /// Reads a file, or stdin for `-`.
    pub(crate) fn read(path: &Path) -> anyhow::Result<SpecFile> {
        let (name, text) = if path == Path::new("-") {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read the spec from stdin")?;
            ("<stdin>".to_owned(), text)
        } else {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            (path.display().to_string(), text)
        };
        let format = Format::detect(Some(&name), &text);
        Ok(SpecFile {
            name,
            text: Arc::new(text),
            format,
        })
    }

    pub(crate) fn check(&self) -> Result<Valid, Vec<Problem>> {
        baton_core::check_source(&self.text, self.format)
    }
}

/// A directory given as specs that holds none.
#[derive(Debug)]
pub(crate) struct NoSpecs(PathBuf);

impl std::fmt::Display for NoSpecs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "no spec in {}: it holds no .yaml, .yml or .json file",
            self.0.display()
        )
    }
}

impl std::error::Error for NoSpecs {}

/// Files as given, with each directory replaced by the specs inside it
/// (`.yaml`, `.yml`, `.json`, recursively, sorted).
pub(crate) fn expand(paths: &[PathBuf]) -> anyhow::Result<Vec<SpecFile>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found = Vec::new();
            collect(path, &mut found)?;
            if found.is_empty() {
                return Err(NoSpecs(path.clone()).into());
            }
            found.sort();
            for file in found {
                files.push(SpecFile::read(&file)?);
            }
        } else {
            files.push(SpecFile::read(path)?);
        }
    }
    Ok(files)
}

fn collect(directory: &Path, found: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let entries = std::fs::read_dir(directory)
        .with_context(|| format!("cannot list {}", directory.display()))?;
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() {
            // Task templates are not workflows: they are checked through
            // the specs that `uses` them.
            if path.file_name().is_some_and(|name| name == "templates") {
                continue;
            }
            collect(&path, found)?;
        } else if matches!(
            path.extension().and_then(|extension| extension.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            found.push(path);
        }
    }
    Ok(())
}
