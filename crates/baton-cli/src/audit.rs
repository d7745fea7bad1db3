//! Proving what a recorded run did: `baton verify`, `baton provenance`,
//! `baton replay`, `baton checkpoints`, `baton artifacts`.

use std::process::ExitCode;

use crate::runs::RunArgs;

pub(crate) async fn verify(args: RunArgs) -> anyhow::Result<ExitCode> {
    let engine = args.home.engine().await?;
    let verification = engine.verify(&args.run).await?;
    if args.json {
        crate::out::emit(serde_json::to_string_pretty(&verification)?);
    } else {
        for damage in &verification.damage {
            crate::out::emit(format_args!("DAMAGED: {damage}"));
        }
        if let Some(mismatch) = &verification.mismatch {
            crate::out::emit(format_args!(
                "MISMATCH at task `{}`: {}",
                mismatch.task, mismatch.problem
            ));
        }
        if verification.is_sound() {
            crate::out::emit(format_args!(
                "ok: {} events, each following the last; {} checkpoint(s) match them; {} provenance record(s) match; the store's pages are sound; root {}",
                verification.events,
                verification.checkpoints,
                verification.records,
                verification.root
            ));
        }
    }
    Ok(if verification.is_sound() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub(crate) async fn provenance(args: RunArgs) -> anyhow::Result<ExitCode> {
    let engine = args.home.engine().await?;
    let chain = engine.provenance(&args.run).await?;
    if args.json {
        crate::out::emit(serde_json::to_string_pretty(&chain)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::NOTHING);
    table.set_header([
        "task", "attempt", "record", "spec", "inputs", "output", "parents",
    ]);
    for record in &chain.records {
        table.add_row([
            record.task.clone(),
            record.attempt.to_string(),
            record.digest.short(),
            record.spec.short(),
            record.inputs.short(),
            record.output.short(),
            record.parents.len().to_string(),
        ]);
    }
    crate::out::emit(format_args!("{table}\nroot {}", chain.root));
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn replay(args: RunArgs) -> anyhow::Result<ExitCode> {
    let engine = args.home.engine().await?;
    let recorded = engine.trace(&args.run).await?;
    let replayed = engine.replay(&args.run).await?;
    if args.json {
        let line = match &replayed {
            Ok(trace) => serde_json::json!({
                "run_id": args.run, "trace": trace.to_string(), "matches": *trace == recorded,
            }),
            Err(divergence) => serde_json::json!({
                "run_id": args.run, "trace": null, "matches": false,
                "divergence": divergence.to_string(),
            }),
        };
        crate::out::emit(serde_json::to_string_pretty(&line)?);
    } else {
        match &replayed {
            Ok(trace) => crate::out::emit(format_args!(
                "trace {trace} (replayed without running a task; the record's is {recorded})"
            )),
            Err(divergence) => crate::out::emit(format_args!("the replay diverges: {divergence}")),
        }
    }
    Ok(match replayed {
        Ok(trace) if trace == recorded => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    })
}

pub(crate) async fn checkpoints(args: RunArgs) -> anyhow::Result<ExitCode> {
    let engine = args.home.engine().await?;
    let store = engine.store();
    let listed = store.checkpoints(&args.run).await?;
    let mut shown = Vec::with_capacity(listed.len());
    for info in listed {
        let sound = store
            .checkpoint(&args.run, info.events)
            .await
            .map_err(|error| error.to_string())
            .and_then(|sealed| sealed.open().map(|_| ()).map_err(|error| error.to_string()));
        shown.push((info, sound));
    }
    if args.json {
        let rows: Vec<_> = shown
            .iter()
            .map(|(info, sound)| {
                serde_json::json!({
                    "events": info.events, "sha256": info.digest.to_string(), "size": info.size,
                    "sound": sound.is_ok(), "problem": sound.as_ref().err(),
                })
            })
            .collect();
        crate::out::emit(serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::NOTHING);
    table.set_header(["after event", "sha256", "bytes", "state"]);
    for (info, sound) in &shown {
        table.add_row([
            info.events.to_string(),
            info.digest.to_string(),
            info.size.to_string(),
            match sound {
                Ok(()) => "sound".to_owned(),
                Err(problem) => format!("corrupt: {problem}"),
            },
        ]);
    }
    crate::out::emit(&table);
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn artifacts(args: RunArgs) -> anyhow::Result<ExitCode> {
    let engine = args.home.engine().await?;
    let workflow = engine.store().run(&args.run).await?.workflow;
    let id = |task: u32| workflow.tasks[task as usize].id.as_str();
    let rows = engine.store().artifacts(&args.run).await?;
    if args.json {
        let rows: Vec<_> = rows
            .iter()
            .map(|row| {
                let mut line = serde_json::to_value(row).unwrap_or_default();
                line["task"] = serde_json::Value::from(id(row.task));
                line
            })
            .collect();
        crate::out::emit(serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::NOTHING);
    table.set_header(["task", "attempt", "role", "path", "bytes", "sha256"]);
    for row in &rows {
        table.add_row([
            id(row.task).to_owned(),
            row.attempt.to_string(),
            row.role.name().to_owned(),
            row.artifact.path.clone(),
            row.artifact.size.to_string(),
            row.artifact.digest.to_string(),
        ]);
    }
    crate::out::emit(&table);
    Ok(ExitCode::SUCCESS)
}
