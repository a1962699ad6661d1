//! The codec of the served services: prost's, except that a request that
//! cannot be decoded (malformed, or nested deeper than prost's recursion limit
//! of 100 messages) is the caller's error: `INVALID_ARGUMENT` `FIELD_INVALID`
//! naming the top-level field where decoding stopped, instead of prost's
//! `INTERNAL` without details. The generated servers use it (build.rs); the
//! generated clients keep prost's codec.

use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic_prost::ProstEncoder;

use crate::domain::Error;

/// Encodes responses like prost's codec, decodes requests with
/// [`RequestDecoder`].
#[derive(Debug, Clone)]
pub struct RequestCodec<T, U> {
    _types: PhantomData<(T, U)>,
}

impl<T, U> Default for RequestCodec<T, U> {
    fn default() -> Self {
        RequestCodec {
            _types: PhantomData,
        }
    }
}

impl<T, U> Codec for RequestCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = RequestDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        RequestDecoder { _type: PhantomData }
    }
}

/// Decodes a request message; failures are `INVALID_ARGUMENT`.
#[derive(Debug, Clone)]
pub struct RequestDecoder<U> {
    _type: PhantomData<U>,
}

impl<U: Message + Default> Decoder for RequestDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Self::Error> {
        U::decode(buf)
            .map(Some)
            .map_err(|err| Status::from(undecodable(&err)))
    }
}

/// Whether `segment` is one `Message.field` entry of prost's location stack.
fn is_location(segment: &str) -> bool {
    let Some((message, field)) = segment.split_once('.') else {
        return false;
    };
    let ident = |s: &str| {
        s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    ident(message) && ident(field)
}

/// The caller's error for a request prost could not decode. prost's message
/// reads `failed to decode Protobuf message: Inner.field: …: Outer.field:
/// description`, innermost first; the last location names the request's own
/// field.
fn undecodable(err: &prost::DecodeError) -> Error {
    let text = err.to_string();
    let rest = text
        .strip_prefix("failed to decode Protobuf message: ")
        .unwrap_or(&text);
    let mut field = None;
    let mut description = rest;
    while let Some((segment, tail)) = description.split_once(": ") {
        if !is_location(segment) {
            break;
        }
        field = segment.split_once('.').map(|(_, f)| f);
        description = tail;
    }
    let description = if description == "recursion limit reached" {
        "is nested too deeply to be decoded".to_string()
    } else {
        format!("cannot be decoded: {description}")
    };
    Error::invalid(field.unwrap_or("request"), description)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::FieldViolation;
    use crate::proto::v1 as pb;
    use prost_types::{Struct, Value, value::Kind};

    fn violation<M: Message + Default + std::fmt::Debug>(bytes: &[u8]) -> FieldViolation {
        let err = M::decode(bytes).expect_err("undecodable");
        match undecodable(&err) {
            Error::InvalidArgument(mut violations) => violations.remove(0),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_requests_own_field_is_named() {
        let mut deep = Value {
            kind: Some(Kind::NumberValue(1.0)),
        };
        for _ in 0..40 {
            deep = Value {
                kind: Some(Kind::StructValue(Struct {
                    fields: [("a".to_string(), deep)].into(),
                })),
            };
        }
        let request = pb::CreateOrganizationRequest {
            public_metadata: Some(Struct {
                fields: [("a".to_string(), deep)].into(),
            }),
            ..Default::default()
        };
        let v = violation::<pb::CreateOrganizationRequest>(&request.encode_to_vec());
        assert_eq!(v.field, "public_metadata");
        assert_eq!(v.description, "is nested too deeply to be decoded");

        // `name` (field 1, a string) sent as a varint.
        let v = violation::<pb::CreateOrganizationRequest>(&[0x08, 0x01]);
        assert_eq!(v.field, "name");
        assert!(
            v.description
                .starts_with("cannot be decoded: invalid wire type"),
            "{v:?}"
        );

        // A key of tag 0 belongs to no field.
        let v = violation::<pb::CreateOrganizationRequest>(&[0x00]);
        assert_eq!(v.field, "request");
        assert_eq!(v.description, "cannot be decoded: invalid tag value: 0");
    }
}
