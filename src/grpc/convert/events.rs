//! Events at the gRPC border: the filters of `EventService` and its events.

use super::enrollment::invitation;
use super::organizations::{membership, organization};
use super::timestamp;
use crate::domain::FieldViolation;
use crate::domain::events::{Event, EventKind, EventResource};
use crate::proto::v1 as pb;
use crate::service::events::{StreamItem, StreamMessage};

/// The most type names a filter may list: more than there are types.
const MAX_TYPES: usize = 64;

/// The `types` filter: exact event type names, each named by its index when
/// unknown; empty for every type. Repeated names count once.
pub fn event_types(field: &str, values: &[String]) -> Result<Vec<EventKind>, Vec<FieldViolation>> {
    if values.len() > MAX_TYPES {
        return Err(vec![FieldViolation::new(
            field,
            format!("must list at most {MAX_TYPES} types"),
        )]);
    }
    let mut kinds = Vec::with_capacity(values.len());
    let mut violations = Vec::new();
    for (index, value) in values.iter().enumerate() {
        match EventKind::parse(value.trim()) {
            Some(kind) => {
                if !kinds.contains(&kind) {
                    kinds.push(kind);
                }
            }
            None => violations.push(FieldViolation::new(
                format!("{field}[{index}]"),
                format!(
                    "{} is not an event type; see Event.type for the names",
                    crate::domain::quote::quote(value)
                ),
            )),
        }
    }
    if violations.is_empty() {
        kinds.sort();
        Ok(kinds)
    } else {
        Err(violations)
    }
}

/// An event as a caller sees it: private metadata only for platform
/// principals; never an invitation's token (events do not hold one).
pub fn event(event: Event, cursor: String, show_private: bool) -> pb::Event {
    use pb::event::Resource;
    let resource = match event.resource {
        EventResource::Organization(o) => Resource::Organization(organization(o, show_private)),
        EventResource::Membership(m) => Resource::Membership(membership(m, show_private)),
        EventResource::Invitation(i) => Resource::Invitation(invitation(i, show_private)),
        EventResource::Domain(d) => Resource::Domain(d.into()),
        EventResource::MembershipRequest(r) => Resource::MembershipRequest(r.into()),
        EventResource::Role(r) => Resource::Role(r.into()),
        EventResource::Permission(p) => Resource::Permission(p.into()),
        EventResource::Usage(u) => Resource::Usage(u.into()),
        EventResource::PeriodStarted(period) => Resource::Period(period),
        EventResource::Budget(b) => Resource::Budget(b.into()),
    };
    pb::Event {
        id: event.id,
        cursor,
        r#type: event.kind.as_str().to_string(),
        organization_id: event.organization_id,
        actor: event.actor,
        on_behalf_of: event.on_behalf_of,
        request_id: event.request_id,
        create_time: timestamp(event.create_time),
        resource: Some(resource),
    }
}

/// One message of `WatchEvents`.
pub fn stream_message(message: StreamMessage, show_private: bool) -> pb::WatchEventsResponse {
    use pb::watch_events_response::Message;
    let item = match message.item {
        StreamItem::Event(e) => Message::Event(event(*e, message.cursor.clone(), show_private)),
        StreamItem::Checkpoint(time) => Message::Checkpoint(pb::Checkpoint {
            time: timestamp(time),
        }),
    };
    pb::WatchEventsResponse {
        cursor: message.cursor,
        message: Some(item),
    }
}
