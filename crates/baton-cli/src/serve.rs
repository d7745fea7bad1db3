//! `baton serve`: the REST API and event streams over the store, alone on
//! a laptop or as one of several replicas on one PostgreSQL database.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use baton_engine::Engine;
use baton_server::{AppState, ServerConfig};

use crate::config::Retention;
use crate::home::Home;

#[derive(clap::Args)]
#[command(after_long_help = "\
Several replicas share one PostgreSQL database (and, optionally, Redis):

  export BATON_STORE__URL=postgres://baton@db:5432/baton   # or [store] url, or --store
  baton keys create --name ops --scope admin
  baton serve --bind 10.0.0.11:8080     # one per machine, behind a load balancer
  baton serve --bind 10.0.0.12:8080
  baton serve --bind 10.0.0.13:8080

Any replica serves any run; when one dies, another takes its runs over
once its lease runs out and resumes them from their events. With
[events] redis = \"redis://...\" every event also goes to Redis Streams.
docs/deploy.md has the whole walk-through.")]
pub(crate) struct ServeArgs {
    /// The address and port to listen on (port 0 picks a free one)
    /// [default: 127.0.0.1:8080, or `server.bind`].
    #[arg(long, value_name = "ADDR:PORT")]
    bind: Option<SocketAddr>,
    /// The largest request body accepted, in bytes [default: 2 MiB, or
    /// `server.body_limit`].
    #[arg(long, value_name = "BYTES")]
    body_limit: Option<usize>,
    /// Accept requests without an API key: for a laptop, never for a
    /// shared address.
    #[arg(long)]
    insecure_no_auth: bool,
    #[command(flatten)]
    home: Home,
}

pub(crate) async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = args.home.config.load()?;
    let bind = args.bind.unwrap_or(config.server.bind);
    let insecure = args.insecure_no_auth || config.server.insecure_no_auth;
    for (name, trigger) in &config.triggers {
        if let Some(problem) = trigger.problem() {
            anyhow::bail!("trigger `{name}`: {problem}");
        }
    }
    async {
        let mut engine_config = config.engine_config();
        if let Some(endpoint) = &config.telemetry.otlp_endpoint {
            engine_config.spans = Some(baton_server::otlp::export(
                endpoint,
                &config.telemetry.service_name,
            ));
            tracing::info!("telemetry: exporting traces to {endpoint} over OTLP/HTTP");
        }
        let engine = args.home.engine_with(engine_config, &config.store).await?;
        if config.retention.older_than.is_some() {
            tokio::spawn(retain(engine.clone(), config.retention.clone()));
        }
        let state = AppState::new(
            engine.clone(),
            ServerConfig {
                body_limit: args.body_limit.unwrap_or(config.server.body_limit),
                require_keys: !insecure,
                max_connections: config.server.max_connections,
                header_read_timeout: config.server.header_read_timeout.as_std(),
                allowed_hosts: config.server.allowed_hosts.clone(),
                max_active_runs: config.server.max_active_runs,
                triggers: config.triggers.clone(),
                ..ServerConfig::default()
            },
        );
        if let Some(redis) = config.events.redis() {
            tracing::info!("events: publishing to Redis Streams `{}` at {}", redis.global_stream(), redis.url);
            baton_server::publish_to_redis(state.clone(), redis);
        }
        let (resumed, failed) = state.recover().await?;
        for error in &failed {
            tracing::warn!("warning: a run could not be resumed: {error}");
        }
        if !resumed.is_empty() {
            tracing::info!("resumed {} run(s) the last server left unfinished", resumed.len());
        }
        let lease = engine_lease(&config);
        tokio::spawn(state.clone().keep_recovering(lease.as_std() / 8));
        baton_server::schedules::keep_scheduling(state.clone(), std::time::Duration::from_secs(1));
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .with_context(|| format!("cannot listen on {bind}"))?;
        let address = listener.local_addr()?;
        if insecure {
            tracing::warn!(
                "warning: --insecure-no-auth: anyone who can reach {address} can run any command as this user (an inline spec runs its commands), and cancel and decide runs"
            );
        } else if state
            .store()
            .keys()
            .await?
            .iter()
            .all(|key| key.revoked_at.is_some())
        {
            tracing::info!(
                "note: no API key yet, so every API request is refused; make one with `baton keys create --name NAME --scope admin`"
            );
        }
        // Listened for before the line below: a stop asked for right after
        // it drains like any other.
        let stop = crate::signals::Stop::listen()?;
        // The line scripts and tests wait for: the port is open from here.
        crate::out::out!("baton serving on http://{address}");
        let grace = config.server.drain_grace;
        baton_server::serve(listener, state, drain(engine, grace, stop)).await?;
        Ok(ExitCode::SUCCESS)
    }.await
}

/// `baton health`: asks `--server` (or the local default address) whether
/// it is ready. Not ready (draining, or its store not answering) and not
/// reachable both exit 1, so an orchestrator stops sending it work.
pub(crate) async fn health(remote: Option<&crate::remote::Remote>) -> anyhow::Result<ExitCode> {
    let local;
    let remote = match remote {
        Some(remote) => remote,
        None => {
            local = crate::remote::Remote::new("http://127.0.0.1:8080", None)?;
            &local
        }
    };
    match remote.ready(std::time::Duration::from_secs(5)).await {
        Ok((true, said)) => {
            crate::out::out!("{}: {said}", remote.server());
            Ok(ExitCode::SUCCESS)
        }
        Ok((false, said)) => {
            eprintln!("{} is not ready: {said}", remote.server());
            Ok(ExitCode::from(1))
        }
        Err(error) => {
            eprintln!("{error:#}");
            Ok(ExitCode::from(1))
        }
    }
}

/// How long this server's hold on its runs lasts: half of it is how often
/// it looks for runs another server left.
fn engine_lease(config: &crate::config::Config) -> baton_core::Duration {
    config.engine_config().lease
}

/// The retention policy: every `every`, what `baton gc --older-than` would
/// delete. A failed round is reported and tried again next time.
async fn retain(engine: Engine, policy: Retention) {
    let Some(older_than) = policy.older_than else {
        return;
    };
    let mut every =
        tokio::time::interval(policy.every.as_std().max(std::time::Duration::from_secs(1)));
    loop {
        every.tick().await;
        match engine.prune(older_than, baton_engine::wall_clock()).await {
            Ok(pruned) if !pruned.runs.is_empty() => tracing::info!(
                "retention: deleted {} run(s) that finished over {older_than} ago, {} artifact(s)",
                pruned.runs.len(),
                pruned.objects
            ),
            Err(error) => tracing::warn!("retention: {error}"),
            _ => {}
        }
    }
}

/// Waits for Ctrl-C or SIGTERM, then drains: `/readyz` answers 503 and no
/// run starts, attempts in flight finish for up to `grace`, and every run
/// is handed back (to another replica at once, or to this server when it
/// starts again). A second signal cuts the grace short. Requests are
/// served until the drain is over, so workers can report what they finish.
async fn drain(engine: Engine, grace: baton_core::Duration, mut stop: crate::signals::Stop) {
    stop.next().await;
    tracing::info!(
        "draining: no new work; attempts in flight have {grace} to finish, then runs are handed back (signal again to stop now)"
    );
    let drained = tokio::select! {
        drained = engine.drain(grace.as_std()) => drained,
        () = stop.next() => engine.drain(std::time::Duration::ZERO).await,
    };
    if drained.cut_short.is_empty() {
        tracing::info!("drained: every run was handed back at a clean point");
    } else {
        tracing::warn!(
            "drained: {} run(s) had attempts still running; they were stopped and run again wherever the runs go on: {}",
            drained.cut_short.len(),
            drained.cut_short.join(", ")
        );
    }
}
