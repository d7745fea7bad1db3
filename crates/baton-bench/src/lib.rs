//! `baton bench`: benchmarks that print their figures (BENCHMARKS.md keeps
//! them with the commands that produced them). Graphs come from the one
//! generator in `baton_core::generate`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use baton_core::generate::{Shape, generate};
use clap::{Subcommand, ValueEnum};

mod api;
mod crash;
mod engine;
mod failover;
mod figures;
mod live;
mod plan;
mod redis;
mod replicas;
mod resume;
mod source;
mod sse;
mod workers;

pub use source::GraphArgs;

#[derive(Subcommand)]
pub enum Command {
    /// Write a generated spec: N noop tasks in levels of width ~sqrt(N),
    /// each needing 3 random tasks of the level before.
    Gen {
        #[arg(long)]
        nodes: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, value_enum, default_value_t = SpecFormat::Json)]
        format: SpecFormat,
        /// Where to write; stdout when absent.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Time parsing, then validation plus planning, of a generated graph
    /// or a spec file.
    Plan {
        #[command(flatten)]
        graph: GraphArgs,
        /// Timed repetitions of each step; the median is reported.
        #[arg(long, default_value_t = 5)]
        samples: usize,
        /// Also time `baton plan --json` as a whole process beside Python's
        /// graphlib and NetworkX on the same file (needs python3; NetworkX
        /// is skipped when it is not installed).
        #[arg(long)]
        peers: bool,
    },
    /// Run a generated graph of no-op tasks, or a spec file, through the
    /// engine.
    Engine {
        #[command(flatten)]
        graph: GraphArgs,
        /// No needs at all: every task is ready at once.
        #[arg(long)]
        wide: bool,
        /// Persist events to a fresh SQLite store instead of memory.
        #[arg(long)]
        sqlite: bool,
        /// In memory, also keep the read models (task rows, provenance),
        /// which the SQLite store always keeps.
        #[arg(long, conflicts_with = "sqlite")]
        read_models: bool,
        /// Persist to a fresh schema of this PostgreSQL database (dropped
        /// afterwards) instead.
        #[arg(long, value_name = "URL", conflicts_with_all = ["sqlite", "read_models"])]
        postgres: Option<String>,
        /// With `--postgres`: engines (replicas) on the database, each
        /// running the graph at once; the figure is their total.
        #[arg(long, default_value_t = 1, requires = "postgres")]
        replicas: usize,
        #[arg(long, default_value_t = 5)]
        samples: usize,
    },
    /// Independent tasks that each sleep, with bounded concurrency: wall time
    /// against the ideal (tasks / concurrency x sleep).
    Sleep {
        #[arg(long, default_value_t = 64)]
        tasks: usize,
        #[arg(long, default_value_t = 50)]
        millis: u64,
        #[arg(long, default_value_t = 8)]
        concurrency: u32,
        #[arg(long, default_value_t = 5)]
        samples: usize,
    },
    /// Raw event appends to the SQLite store, from one writer, in batches.
    Store {
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Events per append (one transaction takes every append waiting).
        #[arg(long, default_value_t = 1000)]
        batch: u64,
        /// Appending runs at once, each on its own thread.
        #[arg(long, default_value_t = 1)]
        writers: u64,
    },
    /// A generated graph recorded on SQLite up to N events, crashed, and
    /// its state rebuilt as `baton resume` does (checkpoint + later events).
    Resume {
        #[arg(long, default_value_t = 100_000)]
        nodes: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Attempts per task, all but the last failing (two events each).
        #[arg(long, default_value_t = 6)]
        attempts: u32,
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Record the run without checkpoints: the rebuild replays every event.
        #[arg(long)]
        no_checkpoints: bool,
        #[arg(long, default_value_t = 5)]
        samples: usize,
    },
    /// The server under load: many runs at once through the API, start to
    /// first task, and `GET /api/v1/runs/{id}` with wrk.
    Api {
        /// Runs of a 10-task workflow started at once.
        #[arg(long, default_value_t = 1000)]
        runs: usize,
        /// Runs started one at a time for the start-to-first-task latency.
        #[arg(long, default_value_t = 200)]
        samples: usize,
        /// How long wrk loads `GET /api/v1/runs/{id}`.
        #[arg(long, default_value_t = 10)]
        wrk_seconds: u64,
    },
    /// A run still going (waiting at approvals): `GET /api/v1/runs/{id}`
    /// under wrk, and how long an approval takes to apply.
    Live {
        #[arg(long, default_value_t = 100_000)]
        tasks: usize,
        #[arg(long, default_value_t = 20)]
        approvals: usize,
        #[arg(long, default_value_t = 10)]
        wrk_seconds: u64,
    },
    /// A `foreach` over N no-op items, in memory and on SQLite.
    Foreach {
        #[arg(long, default_value_t = 10_000)]
        items: usize,
        #[arg(long, default_value_t = 5)]
        samples: usize,
    },
    /// Remote dispatch: `baton worker` processes taking no-op tasks over
    /// HTTP, lease latency, a chain on one worker, and routing alone.
    Workers {
        /// `baton worker` processes for the throughput figure.
        #[arg(long, default_value_t = 4)]
        workers: usize,
        #[arg(long, default_value_t = 20_000)]
        tasks: usize,
        /// Length of the sequential chain run on one worker.
        #[arg(long, default_value_t = 100)]
        chain: usize,
        /// Workers registered for the routing figure.
        #[arg(long, default_value_t = 1000)]
        registered: usize,
    },
    /// The time from `kill -9` of a replica to its run making progress on
    /// another replica of the same PostgreSQL database.
    /// The crash matrix: SIGKILL `baton run` and `baton resume` at random
    /// points of a workflow using every construct, then check that no
    /// finished task's side effect repeated and every run verifies.
    Crash {
        #[arg(long, default_value_t = 20)]
        trials: usize,
        /// Seeds the kill points: the same seed kills at the same times.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    Failover {
        #[arg(
            long,
            env = "BATON_TEST_PG",
            default_value = "postgres://postgres@127.0.0.1:5432/test"
        )]
        postgres: String,
        #[arg(long, default_value_t = 20)]
        trials: usize,
        /// Run the replica that is killed under another host name (`unshare
        /// --uts`, as root), so its lease must run out as on another machine.
        #[arg(long)]
        other_host: bool,
    },
    /// Event latency from the replica that drives a run to an SSE client
    /// of another replica of the same PostgreSQL database.
    Sse {
        #[arg(
            long,
            env = "BATON_TEST_PG",
            default_value = "postgres://postgres@127.0.0.1:5432/test"
        )]
        postgres: String,
        /// Publish to Redis Streams here and feed the stream from there.
        #[arg(long, value_name = "URL")]
        redis: Option<String>,
        #[arg(long, default_value_t = 20)]
        runs: usize,
        #[arg(long, default_value_t = 50)]
        tasks: usize,
    },
    /// How fast a recorded run's events reach Redis Streams.
    Redis {
        #[arg(
            long,
            env = "BATON_TEST_REDIS",
            default_value = "redis://127.0.0.1:6379"
        )]
        url: String,
        #[arg(long, default_value_t = 20_000)]
        tasks: usize,
    },
    /// Shell tasks (`true`) through the engine, against a bare spawn loop.
    Shell {
        #[arg(long, default_value_t = 2000)]
        tasks: usize,
        #[arg(long, default_value_t = 8)]
        concurrency: u32,
        #[arg(long, default_value_t = 3)]
        samples: usize,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum SpecFormat {
    Json,
    Yaml,
}

pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Gen {
            nodes,
            seed,
            format,
            output,
        } => {
            let workflow = generate(&Shape { nodes, seed });
            let text = match format {
                SpecFormat::Json => serde_json::to_string(&workflow)?,
                SpecFormat::Yaml => serde_saphyr::to_string(&workflow)?,
            };
            match output {
                Some(path) => std::fs::write(&path, text)
                    .with_context(|| format!("cannot write {}", path.display()))?,
                None => std::io::stdout().write_all(text.as_bytes())?,
            }
        }
        Command::Resume {
            nodes,
            seed,
            attempts,
            events,
            no_checkpoints,
            samples,
        } => {
            resume::resume(
                Shape { nodes, seed },
                attempts,
                events,
                !no_checkpoints,
                samples.max(1),
            )
            .await?
        }
        Command::Plan {
            graph,
            samples,
            peers,
        } => plan::plan(&graph, samples.max(1), peers)?,
        Command::Engine {
            graph,
            wide,
            sqlite,
            read_models,
            postgres,
            replicas,
            samples,
        } => {
            let store = match (postgres, sqlite, read_models) {
                (Some(url), ..) => engine::BenchStore::Postgres { url, replicas },
                (None, true, _) => engine::BenchStore::Sqlite,
                (None, false, true) => engine::BenchStore::Memory,
                (None, false, false) => engine::BenchStore::LogOnly,
            };
            engine::engine(&graph, wide, store, samples.max(1)).await?
        }
        Command::Sleep {
            tasks,
            millis,
            concurrency,
            samples,
        } => engine::sleep(tasks, millis, concurrency, samples.max(1)).await?,
        Command::Store {
            events,
            batch,
            writers,
        } => engine::store(events, batch.max(1), writers.max(1)).await?,
        Command::Api {
            runs,
            samples,
            wrk_seconds,
        } => api::api(runs.max(1), samples.max(1), wrk_seconds.max(1)).await?,
        Command::Live {
            tasks,
            approvals,
            wrk_seconds,
        } => {
            live::live(
                tasks.max(2 * approvals + 1),
                approvals.max(1),
                wrk_seconds.max(1),
            )
            .await?
        }
        Command::Foreach { items, samples } => engine::foreach(items, samples.max(1)).await?,
        Command::Shell {
            tasks,
            concurrency,
            samples,
        } => engine::shell(tasks, concurrency, samples.max(1)).await?,
        Command::Redis { url, tasks } => redis::redis(&url, tasks.max(1)).await?,
        Command::Sse {
            postgres,
            redis,
            runs,
            tasks,
        } => sse::sse(&postgres, redis.as_deref(), runs.max(1), tasks.max(1)).await?,
        Command::Crash { trials, seed } => crash::crash(trials.max(1), seed).await?,
        Command::Failover {
            postgres,
            trials,
            other_host,
        } => failover::failover(&postgres, trials.max(1), other_host).await?,
        Command::Workers {
            workers,
            tasks,
            chain,
            registered,
        } => {
            workers::workers(
                workers.max(1),
                tasks.max(1),
                chain.max(1),
                registered.max(1),
            )
            .await?
        }
    }
    Ok(())
}
