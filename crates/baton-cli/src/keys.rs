//! `baton keys`: the API keys `baton serve` accepts, managed on the store
//! directly (so the first admin key needs no server).

use std::process::ExitCode;

use baton_engine::wall_clock as now;
use baton_store::Scope;

use crate::home::Home;

#[derive(clap::Subcommand)]
pub(crate) enum Command {
    /// Make a key and print it; it is shown this once and stored hashed.
    Create {
        /// What holds the key (a person, a CI job); decisions record it.
        #[arg(long)]
        name: String,
        /// read: read runs and workflows; write: also start registered
        /// workflows, cancel and decide; execute: also run inline specs;
        /// admin: also manage workflows and keys.
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(["read", "write", "execute", "admin", "worker"]))]
        scope: String,
        #[command(flatten)]
        home: Home,
    },
    /// List keys (never their secrets).
    List {
        /// One JSON object per key, a line each.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        home: Home,
    },
    /// Revoke a key by its id; it stops working at once.
    Revoke {
        id: String,
        #[command(flatten)]
        home: Home,
    },
}

pub(crate) async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Create { name, scope, home } => {
            let scope: Scope = scope.parse().map_err(anyhow::Error::msg)?;
            baton_server::check_key_name(&name)?;
            let engine = home.engine().await?;
            let (key, token) = baton_server::issue(&name, scope, now());
            engine.store().put_key(&key).await?;
            crate::out::emit(&token);
            eprintln!(
                "key {} ({scope}) for {name}: keep it now, it is not shown again",
                key.id
            );
        }
        Command::List { json, home } => {
            let keys = home.engine().await?.store().keys().await?;
            if json {
                for key in &keys {
                    let line = serde_json::json!({
                        "id": key.id, "name": key.name, "scope": key.scope,
                        "created_at": key.created_at, "revoked_at": key.revoked_at,
                    });
                    crate::out::emit(line);
                }
                return Ok(ExitCode::SUCCESS);
            }
            let mut table = comfy_table::Table::new();
            table.load_preset(comfy_table::presets::NOTHING);
            table.set_header(["id", "name", "scope", "state"]);
            for key in &keys {
                let state = if key.revoked_at.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                table.add_row([key.id.as_str(), key.name.as_str(), key.scope.name(), state]);
            }
            crate::out::emit(&table);
        }
        Command::Revoke { id, home } => {
            home.engine().await?.store().revoke_key(&id, now()).await?;
            crate::out::emit(format_args!("key {id} revoked"));
        }
    }
    Ok(ExitCode::SUCCESS)
}
