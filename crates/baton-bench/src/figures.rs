//! How figures are printed, the same way by every benchmark.

use std::time::Duration;

pub(crate) fn show(duration: Duration) -> String {
    let seconds = duration.as_secs_f64();
    if seconds >= 1.0 {
        format!("{seconds:.3} s")
    } else if seconds >= 0.001 {
        format!("{:.2} ms", seconds * 1e3)
    } else {
        format!("{:.1} µs", seconds * 1e6)
    }
}

/// The process's peak resident memory in KiB, from /proc on Linux.
pub(crate) fn peak_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The median, the fastest and the slowest of `times`.
pub(crate) fn median(mut times: Vec<Duration>) -> (Duration, Duration, Duration) {
    times.sort();
    (times[times.len() / 2], times[0], times[times.len() - 1])
}

/// An engine recording into a fresh SQLite store in `dir`, its tasks
/// working there: what the server benchmarks serve.
pub(crate) fn sqlite_engine(dir: &std::path::Path) -> anyhow::Result<baton_engine::Engine> {
    let store = baton_store::SqliteStore::open(dir.join("baton.db"))?;
    Ok(baton_engine::Engine::with_store(
        baton_engine::EngineConfig {
            state_dir: dir.to_path_buf(),
            workdir: dir.to_path_buf(),
            ..baton_engine::EngineConfig::default()
        },
        std::sync::Arc::new(store),
    ))
}

/// The value at `quantile` (0.5 for the median) of `sorted`, which must
/// not be empty.
pub(crate) fn quantile<T: Copy>(sorted: &[T], quantile: f64) -> T {
    sorted[((sorted.len() - 1) as f64 * quantile) as usize]
}

/// A statement on the PostgreSQL database at `url`.
async fn postgres(url: &str, statement: &str) -> anyhow::Result<()> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    client.batch_execute(statement).await?;
    Ok(())
}

/// A fresh schema for a benchmark to record into.
pub(crate) async fn create_schema(url: &str, schema: &str) -> anyhow::Result<()> {
    postgres(url, &format!("CREATE SCHEMA {schema}")).await
}

/// Drops the schema a benchmark recorded into.
pub(crate) async fn drop_schema(url: &str, schema: &str) -> anyhow::Result<()> {
    postgres(url, &format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await
}
