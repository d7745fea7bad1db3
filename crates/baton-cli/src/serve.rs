//! `baton serve`: the REST API and event streams over the local store.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use baton_server::{AppState, ServerConfig};

use crate::runs::Home;

#[derive(clap::Args)]
pub(crate) struct ServeArgs {
    /// The address and port to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR:PORT")]
    bind: SocketAddr,
    /// The largest request body accepted, in bytes.
    #[arg(long, default_value_t = ServerConfig::default().body_limit, value_name = "BYTES")]
    body_limit: usize,
    #[command(flatten)]
    home: Home,
}

pub(crate) fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    crate::runtime()?.block_on(async {
        let engine = args.home.engine()?;
        let state = AppState::new(
            engine,
            ServerConfig {
                body_limit: args.body_limit,
            },
        );
        let (resumed, failed) = state.recover()?;
        for error in &failed {
            eprintln!("warning: a run could not be resumed: {error}");
        }
        if !resumed.is_empty() {
            eprintln!("resumed {} run(s) the last server left unfinished", resumed.len());
        }
        let listener = tokio::net::TcpListener::bind(args.bind)
            .await
            .with_context(|| format!("cannot listen on {}", args.bind))?;
        let address = listener.local_addr()?;
        eprintln!(
            "warning: API keys are not implemented yet: anyone who can reach {address} can start and cancel runs"
        );
        // The line scripts and tests wait for: the port is open from here.
        println!("baton serving on http://{address}");
        baton_server::serve(listener, state, shutdown()).await?;
        Ok(ExitCode::SUCCESS)
    })
}

/// Ctrl-C or SIGTERM: stop taking requests. Runs in flight are recorded
/// and resume when the server starts again.
async fn shutdown() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
