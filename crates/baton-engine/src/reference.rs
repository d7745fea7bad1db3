//! `name@version` references to files: how sub-workflows and task
//! templates are named and found in directories.

use std::path::PathBuf;

/// A parsed `name` or `name@version`.
pub(crate) struct Reference<'a> {
    pub(crate) name: &'a str,
    pub(crate) version: Option<u32>,
}

impl<'a> Reference<'a> {
    pub(crate) fn parse(reference: &'a str) -> Result<Reference<'a>, String> {
        match reference.split_once('@') {
            Some((name, version)) => {
                let version = version.parse::<u32>().map_err(|_| {
                    format!("`{reference}`: the version after `@` must be a whole number")
                })?;
                Ok(Reference {
                    name,
                    version: Some(version),
                })
            }
            None => Ok(Reference {
                name: reference,
                version: None,
            }),
        }
    }

    /// The files it may be in, in the order they are tried: per directory,
    /// `NAME@VERSION` then `NAME`, each as `.yaml`, `.yml`, `.json`.
    pub(crate) fn candidates(&self, dirs: &[PathBuf]) -> Vec<PathBuf> {
        let stems: Vec<String> = self
            .version
            .map(|version| format!("{}@{version}", self.name))
            .into_iter()
            .chain([self.name.to_owned()])
            .collect();
        let mut files = Vec::new();
        for dir in dirs {
            for stem in &stems {
                for extension in ["yaml", "yml", "json"] {
                    files.push(dir.join(format!("{stem}.{extension}")));
                }
            }
        }
        files
    }

    /// Whether a file of this name and `version` is the one asked for; a
    /// file of another name is a mistake worth saying.
    pub(crate) fn matches(
        &self,
        file: &std::path::Path,
        name: &str,
        version: Option<u32>,
    ) -> Result<bool, String> {
        if name != self.name {
            return Err(format!(
                "{} is named `{name}`, not `{}`",
                file.display(),
                self.name
            ));
        }
        Ok(self.version.is_none_or(|wanted| version == Some(wanted)))
    }
}

/// `dirs` for a message: "in a, b", or "in any DEFAULT" when there are none.
pub(crate) fn searched(dirs: &[PathBuf], none: &str) -> String {
    if dirs.is_empty() {
        return format!("any {none}");
    }
    dirs.iter()
        .map(|dir| dir.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
