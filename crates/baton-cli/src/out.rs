//! Standard output, which a reader may close early (`baton run --json |
//! head`, `baton graph | head`). A closed pipe means "stop printing": it
//! is never a failure of the work (a run goes on to its end, recorded), and
//! never a panic, which is what `println!` does on one.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once a write to stdout fails; nothing is written after.
static CLOSED: AtomicBool = AtomicBool::new(false);

/// Prints like `println!`, unless stdout has closed.
macro_rules! out {
    () => {
        $crate::out::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::out::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use out;

/// Writes `text` to stdout, remembering a failure as the reader gone.
pub(crate) fn write(text: std::fmt::Arguments<'_>) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    if stdout
        .write_fmt(text)
        .and_then(|()| stdout.flush())
        .is_err()
    {
        CLOSED.store(true, Ordering::Relaxed);
    }
}

/// Writes `value` as indented JSON, straight from its type.
pub(crate) fn json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    if CLOSED.load(Ordering::Relaxed) {
        return Ok(());
    }
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let written = serde_json::to_writer_pretty(&mut out, value).and_then(|()| {
        out.write_all(b"\n")
            .and_then(|()| out.flush())
            .map_err(serde_json::Error::io)
    });
    settle(written)
}

/// A write's result: a failed write to stdout is the reader gone (nothing
/// more is written); a value that cannot be encoded is an error.
fn settle(written: serde_json::Result<()>) -> anyhow::Result<()> {
    match written {
        Err(error) if error.is_io() => {
            CLOSED.store(true, Ordering::Relaxed);
            Ok(())
        }
        Err(error) => Err(error.into()),
        Ok(()) => Ok(()),
    }
}

/// Prints `text` and a newline, unless stdout has closed.
pub(crate) fn emit(text: impl std::fmt::Display) {
    write(format_args!("{text}\n"));
}

/// Writes `value` as one line of compact JSON (`--json` event streams).
pub(crate) fn json_line(value: &impl serde::Serialize) -> anyhow::Result<()> {
    if CLOSED.load(Ordering::Relaxed) {
        return Ok(());
    }
    let mut stdout = std::io::stdout().lock();
    let written = serde_json::to_writer(&mut stdout, value)
        .and_then(|()| stdout.write_all(b"\n").map_err(serde_json::Error::io));
    settle(written)
}
