//! Artifacts: the files a task declares in `artifacts:`, kept by content
//! (SHA-256, so `sha256sum` agrees) under `<baton home>/artifacts`, and
//! placed in the working directory of the tasks that need their producer,
//! or of a task whose result is reused.
//!
//! An object is written once (a temporary file renamed into place) and
//! made read-only. Placing one copies it (`copy_file_range`, in the
//! kernel): a hard link would be cheaper, but it shares the object's inode,
//! and a task that writes into its input in place (as root, read-only does
//! not stop it) would silently change the stored object for every later
//! consumer. A file already holding the right content is left alone.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::SystemTime;

use baton_core::run::{Artifact, Digest};
use sha2::{Digest as _, Sha256};

/// Where an output too large to keep inline is placed for the tasks that
/// need it, relative to their working directory.
pub(crate) const OUTPUT_ARTIFACTS: &str = ".baton-outputs";

/// Why artifacts could not be stored, placed or swept.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("artifact `{pattern}` matches {path}, which is outside the task's directory")]
    Escapes { pattern: String, path: String },
    #[error("artifact `{pattern}` is not a path inside the task's directory")]
    Outside { pattern: String },
    #[error("artifact `{0}` matched no file")]
    Missing(String),
    #[error("artifact `{pattern}` is not a valid glob: {message}")]
    Pattern { pattern: String, message: String },
    #[error("artifact `{path}` ({digest}) is no longer in the artifact store")]
    Gone { path: String, digest: Digest },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> ArtifactError + '_ {
    move |source| ArtifactError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Whether `path` names a file under a task's directory: relative, with
/// no `..`, `.` or root in it (as every artifact's path is kept).
pub(crate) fn stays_inside(path: &str) -> bool {
    !path.is_empty()
        && Path::new(path)
            .components()
            .all(|part| matches!(part, Component::Normal(_)))
}

/// The content-addressed store.
#[derive(Clone, Debug)]
pub(crate) struct Cas {
    root: PathBuf,
}

impl Cas {
    pub(crate) fn new(state_dir: &Path) -> Cas {
        Cas {
            root: state_dir.join("artifacts"),
        }
    }

    /// Where the object with `digest` is kept: `sha256/ab/cdef…`.
    pub(crate) fn object(&self, digest: &Digest) -> PathBuf {
        let hex = digest.to_string();
        self.root.join("sha256").join(&hex[..2]).join(&hex[2..])
    }

    /// Stores every file `patterns` match under `dir` (a directory stands
    /// for the files beneath it), sorted by path.
    pub(crate) fn collect(
        &self,
        dir: &Path,
        patterns: &[String],
    ) -> Result<Vec<Artifact>, ArtifactError> {
        let base = dir.canonicalize().map_err(io_at(dir))?;
        let mut files: Vec<(String, PathBuf)> = Vec::new();
        for pattern in patterns {
            let found = matches(&base, pattern)?;
            if found.is_empty() {
                return Err(ArtifactError::Missing(pattern.clone()));
            }
            for path in found {
                let real = path.canonicalize().map_err(io_at(&path))?;
                let Ok(relative) = real.strip_prefix(&base) else {
                    return Err(ArtifactError::Escapes {
                        pattern: pattern.clone(),
                        path: real.display().to_string(),
                    });
                };
                files_under(&real, relative, &mut files)?;
            }
        }
        files.sort();
        files.dedup_by(|a, b| a.0 == b.0);
        files
            .into_iter()
            .map(|(path, real)| {
                let (digest, size) = self.put(&real)?;
                Ok(Artifact { path, digest, size })
            })
            .collect()
    }

    /// Copies `file` into the store, hashing it on the way.
    fn put(&self, file: &Path) -> Result<(Digest, u64), ArtifactError> {
        let source = File::open(file).map_err(io_at(file))?;
        self.put_from(source, file)
    }

    /// Stores `bytes` as an object.
    pub(crate) fn put_bytes(&self, bytes: &[u8]) -> Result<(Digest, u64), ArtifactError> {
        self.put_from(bytes, &self.root)
    }

    /// Stores what `source` (read from `origin`) holds. An object that is
    /// already there has its time renewed instead, so a sweep running now
    /// takes it for new and leaves it for the attempt that is storing it.
    fn put_from(
        &self,
        mut source: impl Read,
        origin: &Path,
    ) -> Result<(Digest, u64), ArtifactError> {
        let staging = self.root.join("tmp");
        fs::create_dir_all(&staging).map_err(io_at(&staging))?;
        let mut temporary = tempfile::NamedTempFile::new_in(&staging).map_err(io_at(&staging))?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0; 64 * 1024];
        let mut size = 0u64;
        loop {
            let read = source.read(&mut buffer).map_err(io_at(origin))?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
            temporary
                .write_all(&buffer[..read])
                .map_err(io_at(temporary.path()))?;
            size += read as u64;
        }
        let digest = Digest(hasher.finalize().into());
        let object = self.object(&digest);
        let renewed = File::open(&object).and_then(|stored| stored.set_modified(SystemTime::now()));
        match renewed {
            Ok(()) => {}
            Err(error) if error.kind() != io::ErrorKind::NotFound => {
                return Err(io_at(&object)(error));
            }
            Err(_) => {
                let parent = object.parent().unwrap_or(&self.root);
                fs::create_dir_all(parent).map_err(io_at(parent))?;
                let mut permissions = temporary
                    .as_file()
                    .metadata()
                    .map_err(io_at(temporary.path()))?
                    .permissions();
                permissions.set_readonly(true);
                fs::set_permissions(temporary.path(), permissions)
                    .map_err(io_at(temporary.path()))?;
                temporary
                    .persist(&object)
                    .map_err(|error| io_at(&object)(error.error))?;
            }
        }
        Ok((digest, size))
    }

    /// Removes the objects not in `keep`, and staging leftovers, last
    /// written before `before`: a younger object may belong to an attempt
    /// whose rows are not recorded yet.
    pub(crate) fn sweep(
        &self,
        keep: &HashSet<Digest>,
        before: SystemTime,
    ) -> Result<Swept, ArtifactError> {
        let mut swept = Swept::default();
        for path in two_levels(&self.root.join("sha256"))? {
            // A file that is not an object is not the sweep's to judge.
            if object_digest(&path).is_none_or(|digest| keep.contains(&digest)) {
                continue;
            }
            if let Some(size) = remove_if_older(&path, before)? {
                swept.objects += 1;
                swept.bytes += size;
            }
        }
        for path in one_level(&self.root.join("tmp"))? {
            if let Some(size) = remove_if_older(&path, before)? {
                swept.bytes += size;
            }
        }
        Ok(swept)
    }

    /// Places each artifact at its path under `dir`; a file already there
    /// with the same content is left alone, another one is replaced.
    pub(crate) fn place(&self, dir: &Path, artifacts: &[Artifact]) -> Result<(), ArtifactError> {
        for artifact in artifacts {
            let relative = Path::new(&artifact.path);
            if !stays_inside(&artifact.path) {
                return Err(ArtifactError::Outside {
                    pattern: artifact.path.clone(),
                });
            }
            let object = self.object(&artifact.digest);
            if !object.is_file() {
                return Err(ArtifactError::Gone {
                    path: artifact.path.clone(),
                    digest: artifact.digest,
                });
            }
            let target = dir.join(relative);
            let shared = relative.starts_with(OUTPUT_ARTIFACTS);
            if (shared && same_file(&target, &object)) || holds(&target, artifact)? {
                continue;
            }
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent).map_err(io_at(parent))?;
            }
            match fs::remove_file(&target) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => {
                    return Err(io_at(&target)(error));
                }
                _ => {}
            }
            // A large output is only read: its placement is the stored
            // object itself, read-only, so it takes no space twice. Where
            // a link cannot be made (another file system), it is copied.
            if shared && fs::hard_link(&object, &target).is_ok() {
                continue;
            }
            fs::copy(&object, &target).map_err(io_at(&target))?;
            // The copy is the task's own: writable, as a file it made would be.
            fs::set_permissions(&target, fs::Permissions::from_mode(0o644))
                .map_err(io_at(&target))?;
        }
        Ok(())
    }
}

/// What a sweep of the artifact store removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Swept {
    pub(crate) objects: u64,
    /// Objects and staging leftovers.
    pub(crate) bytes: u64,
}

/// The digest an object's path (`ab/cdef…`) spells.
fn object_digest(path: &Path) -> Option<Digest> {
    let prefix = path.parent()?.file_name()?.to_str()?;
    let rest = path.file_name()?.to_str()?;
    format!("{prefix}{rest}").parse().ok()
}

/// Removes `path` if it was last written before `before`; its size if so.
fn remove_if_older(path: &Path, before: SystemTime) -> Result<Option<u64>, ArtifactError> {
    let metadata = fs::metadata(path).map_err(io_at(path))?;
    if metadata.modified().map_err(io_at(path))? >= before {
        return Ok(None);
    }
    fs::remove_file(path).map_err(io_at(path))?;
    Ok(Some(metadata.len()))
}

/// The entries of `dir` (none if it does not exist).
fn one_level(dir: &Path) -> Result<Vec<PathBuf>, ArtifactError> {
    match fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|entry| entry.map(|entry| entry.path()))
            .collect::<Result<_, _>>()
            .map_err(io_at(dir)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(error) => Err(io_at(dir)(error)),
    }
}

/// The entries of the directories in `dir`: objects under their prefixes.
fn two_levels(dir: &Path) -> Result<Vec<PathBuf>, ArtifactError> {
    let mut files = Vec::new();
    for prefix in one_level(dir)? {
        if prefix.is_dir() {
            files.extend(one_level(&prefix)?);
        }
    }
    Ok(files)
}

/// What `pattern` matches under `base`: a glob's matches, or the one path.
fn matches(base: &Path, pattern: &str) -> Result<Vec<PathBuf>, ArtifactError> {
    let relative = Path::new(pattern);
    if !relative
        .components()
        .all(|part| matches!(part, Component::Normal(_) | Component::CurDir))
    {
        return Err(ArtifactError::Outside {
            pattern: pattern.to_owned(),
        });
    }
    if !pattern.contains(['*', '?', '[']) {
        let path = base.join(relative);
        return Ok(if path.exists() {
            vec![path]
        } else {
            Vec::new()
        });
    }
    let full = format!(
        "{}/{pattern}",
        glob::Pattern::escape(&base.display().to_string())
    );
    let invalid = |message: String| ArtifactError::Pattern {
        pattern: pattern.to_owned(),
        message,
    };
    glob::glob(&full)
        .map_err(|error| invalid(error.to_string()))?
        .map(|entry| entry.map_err(|error| invalid(error.to_string())))
        .collect()
}

/// `real` if it is a file, else every file beneath it, with their paths
/// relative to the task's directory.
fn files_under(
    real: &Path,
    relative: &Path,
    files: &mut Vec<(String, PathBuf)>,
) -> Result<(), ArtifactError> {
    if !real.is_dir() {
        let name = relative
            .components()
            .map(|part| part.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        files.push((name, real.to_path_buf()));
        return Ok(());
    }
    let mut entries: Vec<_> = fs::read_dir(real)
        .map_err(io_at(real))?
        .collect::<Result<_, _>>()
        .map_err(io_at(real))?;
    entries.sort_by_key(fs::DirEntry::file_name);
    for entry in entries {
        let name = entry.file_name();
        let kind = entry.file_type().map_err(io_at(&entry.path()))?;
        // A link inside an artifact directory could point anywhere.
        if kind.is_symlink() {
            continue;
        }
        files_under(&entry.path(), &relative.join(name), files)?;
    }
    Ok(())
}

/// Whether `target` already holds the artifact's content.
/// Whether `path` is `object` itself (a link to it).
fn same_file(path: &Path, object: &Path) -> bool {
    match (fs::metadata(path), fs::metadata(object)) {
        (Ok(path), Ok(object)) => path.dev() == object.dev() && path.ino() == object.ino(),
        _ => false,
    }
}

fn holds(target: &Path, artifact: &Artifact) -> Result<bool, ArtifactError> {
    let Ok(metadata) = fs::symlink_metadata(target) else {
        return Ok(false);
    };
    if !metadata.is_file() || metadata.len() != artifact.size {
        return Ok(false);
    }
    let mut file = File::open(target).map_err(io_at(target))?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher).map_err(io_at(target))?;
    Ok(Digest(hasher.finalize().into()) == artifact.digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    #[test]
    fn collected_files_are_stored_by_their_sha256_and_placed_back() {
        let home = tempfile::tempdir().unwrap();
        let work = tempfile::tempdir().unwrap();
        write(&work.path().join("dist/app.tar.gz"), "app");
        write(&work.path().join("dist/docs/index.html"), "<h1>");
        write(&work.path().join("report.txt"), "ok\n");
        let cas = Cas::new(home.path());

        let artifacts = cas
            .collect(work.path(), &["dist".to_owned(), "*.txt".to_owned()])
            .unwrap();
        let paths: Vec<&str> = artifacts.iter().map(|a| a.path.as_str()).collect();
        assert_eq!(
            paths,
            ["dist/app.tar.gz", "dist/docs/index.html", "report.txt"]
        );
        // What `printf 'ok\n' | sha256sum` prints.
        assert_eq!(
            artifacts[2].digest.to_string(),
            "dc51b8c96c2d745df3bd5590d990230a482fd247123599548e0632fdbf97fc22"
        );
        assert_eq!(artifacts[2].size, 3);
        let stored = fs::read(cas.object(&artifacts[2].digest)).unwrap();
        assert_eq!(stored, b"ok\n");

        let consumer = tempfile::tempdir().unwrap();
        cas.place(consumer.path(), &artifacts).unwrap();
        assert_eq!(
            fs::read_to_string(consumer.path().join("dist/docs/index.html")).unwrap(),
            "<h1>"
        );
        // Placing again over the same content, or over a changed file.
        write(&consumer.path().join("report.txt"), "changed");
        cas.place(consumer.path(), &artifacts).unwrap();
        assert_eq!(
            fs::read_to_string(consumer.path().join("report.txt")).unwrap(),
            "ok\n"
        );
    }

    #[test]
    fn a_link_out_of_the_task_directory_is_refused() {
        let home = tempfile::tempdir().unwrap();
        let work = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        write(&outside.path().join("secret"), "s");
        std::os::unix::fs::symlink(outside.path().join("secret"), work.path().join("leak"))
            .unwrap();
        let error = Cas::new(home.path())
            .collect(work.path(), &["leak".to_owned()])
            .unwrap_err();
        assert!(matches!(error, ArtifactError::Escapes { .. }), "{error}");
        assert!(error.to_string().contains("outside the task's directory"));
    }

    #[test]
    fn a_declared_file_that_was_not_made_is_an_error() {
        let home = tempfile::tempdir().unwrap();
        let work = tempfile::tempdir().unwrap();
        let cas = Cas::new(home.path());
        let missing = cas.collect(work.path(), &["out.bin".to_owned()]);
        assert!(matches!(missing, Err(ArtifactError::Missing(_))));
        let climbing = cas.collect(work.path(), &["../x".to_owned()]);
        assert!(matches!(climbing, Err(ArtifactError::Outside { .. })));
    }
}
