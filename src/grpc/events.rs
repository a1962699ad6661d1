//! `orgs.v1.EventService`.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::caller;
use super::convert::clamp;
use super::convert::events::{event, event_types, stream_message};
use crate::auth::{Authorizer, Target};
use crate::domain::Error;
use crate::domain::events::EventFilter;
use crate::domain::ids::OrganizationId;
use crate::domain::types::page_size;
use crate::domain::{Actor, FieldViolation};
use crate::proto::v1::{self as pb, event_service_server::EventService};
use crate::service::Events;
use crate::telemetry::metrics::Metrics;

/// The handlers of `EventService` and what they call.
pub struct EventApi {
    pub authorizer: Authorizer,
    pub events: Events,
    /// Counts open streams.
    pub metrics: Metrics,
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchEventsResponse, Status>> + Send>>;

/// The filters of a request, every bad field named.
fn filter(organization_id: &str, types: &[String]) -> Result<EventFilter, Error> {
    let organization = OrganizationId::parse_optional("organization_id", organization_id);
    let kinds = event_types("types", types);
    match (organization, kinds) {
        (Ok(organization_id), Ok(kinds)) => Ok(EventFilter {
            kinds,
            organization_id,
        }),
        (organization, kinds) => {
            let mut violations: Vec<FieldViolation> = Vec::new();
            if let Err(violation) = organization {
                violations.push(violation);
            }
            if let Err(more) = kinds {
                violations.extend(more);
            }
            Err(Error::InvalidArgument(violations))
        }
    }
}

impl EventApi {
    /// Platform readers see every organization's events; an end user only
    /// its own organization's, and must name it.
    async fn authorize(
        &self,
        caller: &crate::auth::Caller,
        filter: &EventFilter,
    ) -> Result<Actor, Error> {
        let target = match &filter.organization_id {
            Some(organization) => Target::Organization(organization, None),
            None => Target::AllOrganizations {
                field: "organization_id",
            },
        };
        self.authorizer.authorize(caller, target).await
    }
}

#[tonic::async_trait]
impl EventService for EventApi {
    type WatchEventsStream = WatchStream;

    async fn watch_events(
        &self,
        request: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let filter = filter(&req.organization_id, &req.types);
        let cursor = self.events.cursor("start_cursor", &req.start_cursor);
        let (filter, cursor) = match (filter, cursor) {
            (Ok(filter), Ok(cursor)) => (filter, cursor),
            (Err(err), _) | (_, Err(err)) => return Err(err.into()),
        };
        let actor = self.authorize(&caller, &filter).await?;
        let show_private = actor.platform;
        let receiver = self.events.open(cursor, filter).await?;
        // Counted as open until the stream is dropped.
        let open = self.metrics.watch_stream_opened();
        let stream = ReceiverStream::new(receiver).map(move |item| {
            let _open = &open;
            item.map(|message| stream_message(message, show_private))
                .map_err(Status::from)
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn list_events(
        &self,
        request: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let filter = filter(&req.organization_id, &req.types);
        let size = page_size("page_size", req.page_size);
        let (filter, size) = match (filter, size) {
            (Ok(filter), Ok(size)) => (filter, size),
            (Err(Error::InvalidArgument(mut violations)), Err(violation)) => {
                violations.push(violation);
                return Err(Error::InvalidArgument(violations).into());
            }
            (Err(err), _) => return Err(err.into()),
            (_, Err(violation)) => return Err(Error::InvalidArgument(vec![violation]).into()),
        };
        let actor = self.authorize(&caller, &filter).await?;
        let page = self.events.list(filter, size, &req.page_token).await?;
        Ok(Response::new(pb::ListEventsResponse {
            next_page_token: page.next_page_token,
            total_size: clamp(page.total_size),
            events: page
                .items
                .into_iter()
                .map(|listed| event(listed.event, listed.cursor, actor.platform))
                .collect(),
        }))
    }
}
