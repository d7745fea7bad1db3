//! `baton agents`: what serves agent capabilities, how each fares and
//! where its circuit breaker stands: this machine's settings, or a
//! server's registry with `--server`.

use std::process::ExitCode;

use baton_engine::{AgentHealth, AgentStatus, BreakerState};

use crate::home::Home;
use crate::remote::Remote;

#[derive(clap::Args)]
pub(crate) struct AgentsArgs {
    /// Print them as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    home: Home,
}

pub(crate) async fn agents(args: AgentsArgs, remote: Option<&Remote>) -> anyhow::Result<ExitCode> {
    let agents: Vec<AgentStatus> = match remote {
        Some(remote) => {
            let list: baton_server::api::AgentList = remote.get("/agents", &[]).await?;
            list.agents
        }
        None => args.home.engine().await?.agents(),
    };
    if args.json {
        crate::out::out!("{}", serde_json::to_string_pretty(&agents)?);
        return Ok(ExitCode::SUCCESS);
    }
    if agents.is_empty() {
        crate::out::out!(
            "no agents: name a chat endpoint in baton.toml (`[agents.CAPABILITY]` with `base_url` and `model`), or start workers against a server (`baton worker --server URL --key KEY --capability NAME`)"
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::NOTHING);
    table.set_header([
        "agent",
        "name",
        "serves",
        "labels",
        "endpoint",
        "model",
        "status",
        "breaker",
        "in flight",
        "ok",
        "failed",
    ]);
    for agent in &agents {
        let labels: Vec<String> = agent
            .labels
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        table.add_row([
            agent.id.clone(),
            agent.name.clone(),
            agent.capabilities.join(", "),
            labels.join(","),
            agent.endpoint.clone(),
            agent.model.clone().unwrap_or_default(),
            match agent.status {
                AgentHealth::Healthy => "healthy".to_owned(),
                AgentHealth::Unhealthy => "unhealthy".to_owned(),
                AgentHealth::Draining => "draining".to_owned(),
                AgentHealth::Dead => "dead".to_owned(),
            },
            match agent.breaker {
                BreakerState::Closed { failing: 0 } => "closed".to_owned(),
                BreakerState::Closed { failing } => format!("closed ({failing} failing)"),
                BreakerState::Open { retry_in_ms } => {
                    format!("open ({}s left)", retry_in_ms.div_ceil(1000))
                }
                BreakerState::HalfOpen => "half-open".to_owned(),
            },
            agent.in_flight.to_string(),
            agent.succeeded.to_string(),
            agent.failed.to_string(),
        ]);
    }
    crate::out::out!("{table}");
    if remote.is_none() {
        crate::out::out!(
            "(calls are counted by the process that makes them: `--server URL` shows a server's)"
        );
    }
    Ok(ExitCode::SUCCESS)
}
