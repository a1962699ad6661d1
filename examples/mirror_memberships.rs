//! Mirrors every membership of every organization into a local map, from
//! `orgs.v1.EventService`, and keeps it in a state file that survives
//! restarts.
//!
//! ```sh
//! cargo run --example mirror_memberships -- http://127.0.0.1:50051 "$(orgs token --sub svc-mirror --scope orgs:read)" mirror.json
//! ```
//!
//! The state file holds the map (organization id → user id → role) and the
//! cursor of the last event applied, written together after each event (to a
//! temporary file, then renamed over the old one), so a restart, or a kill at
//! any moment, resumes right after the last event the map includes: no
//! change is applied twice or missed.
//!
//! Without a state file (or before its first event) it first reads the log
//! with `ListEvents` (oldest first), then watches from the last event it
//! listed. (When the log holds no membership event yet, it watches from now.) A stream that ends (a replica shutting down, a network
//! error) is resumed from the saved cursor; an expired cursor
//! (`CURSOR_EXPIRED`) means the mirror missed changes: delete the state file
//! to rebuild it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use orgs::clients::EventServiceClient;
use orgs::proto::v1 as pb;
use serde::{Deserialize, Serialize};
use tonic::Code;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// The event types the mirror follows.
const TYPES: &[&str] = &[
    "membership.created",
    "membership.updated",
    "membership.deleted",
    "membership.deactivated",
    "membership.reactivated",
    "organization.deleted",
];

#[derive(Parser)]
#[command(about = "Mirrors memberships from orgs.v1.EventService into a state file")]
struct Args {
    /// The server, for example http://127.0.0.1:50051.
    address: String,
    /// A bearer token with the orgs:read scope.
    token: String,
    /// Where the mirror and its cursor are kept.
    state_file: PathBuf,
}

/// What survives a restart.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    /// Resume right after this position; empty before the first event.
    cursor: String,
    /// Organization id → user id → role.
    memberships: BTreeMap<String, BTreeMap<String, String>>,
}

impl State {
    fn load(path: &Path) -> anyhow::Result<Option<State>> {
        match std::fs::read(path) {
            Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// Writes the state whole or not at all: a temporary file beside it,
    /// flushed to disk, renamed over the old one.
    fn save(&self, path: &Path) -> anyhow::Result<()> {
        let temporary = path.with_extension("tmp");
        let file = std::fs::File::create(&temporary)?;
        serde_json::to_writer(&file, self)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)?;
        Ok(())
    }

    /// Applies one event and moves the cursor past it.
    fn apply(&mut self, event: &pb::Event) {
        use pb::event::Resource;
        match (event.r#type.as_str(), event.resource.as_ref()) {
            ("organization.deleted", _) => {
                self.memberships.remove(&event.organization_id);
            }
            ("membership.deleted", Some(Resource::Membership(m))) => {
                if let Some(members) = self.memberships.get_mut(&m.organization_id) {
                    members.remove(&m.user_id);
                    if members.is_empty() {
                        self.memberships.remove(&m.organization_id);
                    }
                }
            }
            (_, Some(Resource::Membership(m))) => {
                self.memberships
                    .entry(m.organization_id.clone())
                    .or_default()
                    .insert(m.user_id.clone(), m.role.clone());
            }
            _ => {}
        }
        self.cursor = event.cursor.clone();
    }
}

/// Adds the bearer token to every call.
#[derive(Clone)]
struct Bearer(MetadataValue<Ascii>);

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

type Client = EventServiceClient<InterceptedService<Channel, Bearer>>;

fn client(channel: Channel, token: &str) -> anyhow::Result<Client> {
    let bearer = Bearer(format!("Bearer {token}").parse()?);
    Ok(EventServiceClient::with_interceptor(channel, bearer))
}

fn types() -> Vec<String> {
    TYPES.iter().map(|t| t.to_string()).collect()
}

/// Builds the mirror from the log as it is, page by page, saving as it goes.
async fn bootstrap(client: &mut Client, state: &mut State, path: &Path) -> anyhow::Result<()> {
    let mut page_token = String::new();
    loop {
        let page = client
            .list_events(pb::ListEventsRequest {
                types: types(),
                page_size: 500,
                page_token: page_token.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        for event in &page.events {
            state.apply(event);
        }
        state.save(path)?;
        if page.next_page_token.is_empty() {
            return Ok(());
        }
        page_token = page.next_page_token;
    }
}

/// Follows the stream from the saved cursor until it ends.
async fn follow(client: &mut Client, state: &mut State, path: &Path) -> Result<(), tonic::Status> {
    let mut stream = client
        .watch_events(pb::WatchEventsRequest {
            start_cursor: state.cursor.clone(),
            types: types(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let io = |err: anyhow::Error| tonic::Status::internal(format!("state file: {err}"));
    while let Some(message) = stream.message().await? {
        match message.message {
            Some(pb::watch_events_response::Message::Event(event)) => {
                state.apply(&event);
                state.save(path).map_err(io)?;
                println!("{} {}", event.r#type, event.id);
            }
            Some(pb::watch_events_response::Message::Checkpoint(_)) => {
                // The position moved past events of other types: keep the
                // cursor fresh, so it does not expire while nothing matches.
                state.cursor = message.cursor;
                state.save(path).map_err(io)?;
            }
            None => {}
        }
    }
    Err(tonic::Status::unavailable("the stream ended"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let channel = Channel::from_shared(args.address.clone())?.connect_lazy();
    let mut client = client(channel, &args.token)?;
    let mut state = State::load(&args.state_file)?.unwrap_or_default();
    if state.cursor.is_empty() {
        // Nothing applied yet (or nothing to apply last time): read the log.
        state = State::default();
        bootstrap(&mut client, &mut state, &args.state_file).await?;
    }
    loop {
        match follow(&mut client, &mut state, &args.state_file).await {
            Err(status) if status.code() == Code::OutOfRange => {
                anyhow::bail!(
                    "the saved cursor has expired ({}); delete {} to rebuild the mirror",
                    status.message(),
                    args.state_file.display()
                );
            }
            Err(status)
                if matches!(
                    status.code(),
                    Code::Unauthenticated | Code::PermissionDenied | Code::InvalidArgument
                ) =>
            {
                anyhow::bail!("refused: {status}");
            }
            Err(status) => {
                eprintln!("stream ended ({status}); resuming from the saved cursor");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Ok(()) => {}
        }
    }
}
