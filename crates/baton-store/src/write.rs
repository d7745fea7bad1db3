//! The writes a store's writer takes: each trait call that changes
//! something becomes one [`Write`], encoded here the same way for every
//! backend (the stores' write methods call [`Writes`]' own), and goes over a channel to the backend's single writer, which
//! commits whatever is waiting in one transaction (group commit) and
//! answers each caller only after the commit.

use std::sync::Mutex;

use baton_core::Duration;
use baton_core::run::{Control, Millis, Sealed};

use crate::owner::{Fence, Owner};
use crate::projection::Projection;
use crate::{
    ApiKey, ArtifactRow, AttemptRow, Batch, Error, Result, RunRecord, StoredWorkflow, TaskRow,
};

/// One write waiting for the writer; its answer is a number (a fence, a
/// control's sequence) or 0.
pub(crate) struct Write {
    /// The run (or workflow name, key id, owner id) it is about.
    pub(crate) subject: String,
    pub(crate) kind: WriteKind,
    pub(crate) reply: tokio::sync::oneshot::Sender<Result<u64>>,
}

pub(crate) enum WriteKind {
    Heartbeat {
        owner: Owner,
        expires_at: u64,
    },
    Create {
        workflow: String,
        /// The run's record as JSON.
        record: String,
        owner: String,
        now: u64,
    },
    Claim {
        owner: String,
        now: u64,
        steal: Option<Fence>,
    },
    Release(Fence),
    Append {
        first_seq: u64,
        fence: Fence,
        /// The batch's events as one JSON array.
        events: String,
        count: u64,
        projection: Projection,
        tasks: Vec<TaskRow>,
        attempts: Vec<AttemptRow>,
        artifacts: Vec<ArtifactRow>,
    },
    Checkpoint {
        fence: Fence,
        events: u64,
        digest: [u8; 32],
        data: Vec<u8>,
    },
    /// A control request as JSON.
    Control(String),
    Delete,
    PutWorkflow {
        version: u32,
        digest: [u8; 32],
        created_at: u64,
        /// The workflow as JSON.
        spec: String,
    },
    DeleteWorkflow,
    PutKey(ApiKey),
    RevokeKey {
        at: u64,
    },
    /// A schedule's tick; the subject is the workflow's name.
    PutTick {
        at: u64,
        outcome: &'static str,
        run_id: Option<String>,
        recorded_at: u64,
    },
}

fn encode(value: &(impl serde::Serialize + ?Sized)) -> Result<String> {
    serde_json::to_string(value).map_err(|source| Error::Encode { source })
}

/// The sending end of a writer's channel; closed when the store is
/// dropped, which lets the writer finish what it was given and stop.
pub(crate) struct Writes(Mutex<Option<tokio::sync::mpsc::UnboundedSender<Write>>>);

impl Writes {
    pub(crate) fn new(sender: tokio::sync::mpsc::UnboundedSender<Write>) -> Writes {
        Writes(Mutex::new(Some(sender)))
    }

    /// Sends a write to the writer; the answer comes after its commit.
    async fn send(&self, subject: &str, kind: WriteKind) -> Result<u64> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let Some(sender) = self.lock().clone() else {
            return Err(Error::WriterStopped);
        };
        let write = Write {
            subject: subject.to_owned(),
            kind,
            reply,
        };
        if sender.send(write).is_err() {
            return Err(Error::WriterStopped);
        }
        answer.await.unwrap_or(Err(Error::WriterStopped))
    }

    pub(crate) async fn heartbeat(&self, owner: &Owner, now: Millis, ttl: Duration) -> Result<()> {
        let kind = WriteKind::Heartbeat {
            owner: owner.clone(),
            expires_at: now.plus(ttl).0,
        };
        self.send(&owner.id, kind).await.map(drop)
    }

    pub(crate) async fn create_run(
        &self,
        record: &RunRecord,
        owner: &str,
        now: Millis,
    ) -> Result<Fence> {
        let kind = WriteKind::Create {
            workflow: record.workflow.name.clone(),
            record: encode(record)?,
            owner: owner.to_owned(),
            now: now.0,
        };
        self.send(&record.run_id, kind).await.map(Fence)
    }

    pub(crate) async fn claim(
        &self,
        run: &str,
        owner: &str,
        now: Millis,
        steal: Option<Fence>,
    ) -> Result<Fence> {
        let kind = WriteKind::Claim {
            owner: owner.to_owned(),
            now: now.0,
            steal,
        };
        self.send(run, kind).await.map(Fence)
    }

    pub(crate) async fn release(&self, run: &str, fence: Fence) -> Result<()> {
        self.send(run, WriteKind::Release(fence)).await.map(drop)
    }

    pub(crate) async fn write(
        &self,
        run: &str,
        first_seq: u64,
        fence: Fence,
        batch: Batch<'_>,
    ) -> Result<()> {
        let kind = WriteKind::Append {
            first_seq,
            fence,
            events: encode(batch.events)?,
            count: batch.events.len() as u64,
            projection: Projection::of(batch.events, true),
            tasks: batch.tasks.to_vec(),
            attempts: batch.attempts.to_vec(),
            artifacts: batch.artifacts.to_vec(),
        };
        self.send(run, kind).await.map(drop)
    }

    pub(crate) async fn put_checkpoint(
        &self,
        run: &str,
        fence: Fence,
        sealed: &Sealed,
    ) -> Result<()> {
        let kind = WriteKind::Checkpoint {
            fence,
            events: sealed.events,
            digest: sealed.digest.0,
            data: sealed.data.clone(),
        };
        self.send(run, kind).await.map(drop)
    }

    pub(crate) async fn request(&self, run: &str, control: &Control) -> Result<u64> {
        self.send(run, WriteKind::Control(encode(control)?)).await
    }

    pub(crate) async fn delete_run(&self, run: &str) -> Result<()> {
        self.send(run, WriteKind::Delete).await.map(drop)
    }

    pub(crate) async fn put_workflow(&self, workflow: &StoredWorkflow) -> Result<()> {
        let kind = WriteKind::PutWorkflow {
            version: workflow.version,
            digest: workflow.digest.0,
            created_at: workflow.created_at.0,
            spec: encode(&workflow.workflow)?,
        };
        self.send(&workflow.name, kind).await.map(drop)
    }

    pub(crate) async fn delete_workflow(&self, name: &str) -> Result<()> {
        self.send(name, WriteKind::DeleteWorkflow).await.map(drop)
    }

    pub(crate) async fn put_key(&self, key: &ApiKey) -> Result<()> {
        self.send(&key.id, WriteKind::PutKey(key.clone()))
            .await
            .map(drop)
    }

    pub(crate) async fn revoke_key(&self, id: &str, at: Millis) -> Result<()> {
        self.send(id, WriteKind::RevokeKey { at: at.0 })
            .await
            .map(drop)
    }

    pub(crate) async fn put_tick(&self, tick: &crate::Tick) -> Result<()> {
        let kind = WriteKind::PutTick {
            at: tick.at.0,
            outcome: tick.outcome.name(),
            run_id: tick.outcome.run_id().map(str::to_owned),
            recorded_at: tick.recorded_at.0,
        };
        self.send(&tick.workflow, kind).await.map(drop)
    }

    /// Closes the channel: writes sent so far are still committed.
    pub(crate) fn close(&self) {
        self.lock().take();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<tokio::sync::mpsc::UnboundedSender<Write>>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
