use std::path::{Path, PathBuf};

use assert_cmd::Command;

pub(crate) fn baton() -> Command {
    let mut command = Command::cargo_bin("baton").expect("the baton binary is built");
    command.env("NO_COLOR", "1");
    command
}

/// The workspace root, where `examples/` and `schema/` live.
pub(crate) fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

pub(crate) fn specs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/specs")
}
