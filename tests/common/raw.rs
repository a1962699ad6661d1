//! Calls with raw protobuf bytes over a generic tonic client, for requests
//! the generated clients cannot send (undecodable bytes, messages built from
//! the descriptor set).

use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::Bytes;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::{Request, Status, Streaming};

/// Passes message bytes through unchanged.
#[derive(Debug, Clone, Default)]
pub struct BytesCodec;

#[derive(Debug, Clone, Default)]
pub struct BytesCoder;

impl Encoder for BytesCoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        use prost::bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for BytesCoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        use prost::bytes::Buf;
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

impl Codec for BytesCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = BytesCoder;
    type Decoder = BytesCoder;

    fn encoder(&mut self) -> BytesCoder {
        BytesCoder
    }

    fn decoder(&mut self) -> BytesCoder {
        BytesCoder
    }
}

fn with_token(body: Bytes, token: Option<&str>) -> Request<Bytes> {
    let mut request = Request::new(body);
    if let Some(token) = token {
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("token metadata"),
        );
    }
    request
}

/// A unary call of `path` with `body` as the encoded request message.
pub async fn unary(
    channel: Channel,
    path: &str,
    body: Bytes,
    token: Option<&str>,
) -> Result<Bytes, Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let path = PathAndQuery::try_from(path.to_string()).expect("rpc path");
    grpc.unary(with_token(body, token), path, BytesCodec)
        .await
        .map(|response| response.into_inner())
}

/// Opens a server-streaming call of `path` with `body` as the request.
pub async fn server_streaming(
    channel: Channel,
    path: &str,
    body: Bytes,
    token: Option<&str>,
) -> Result<Streaming<Bytes>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let path = PathAndQuery::try_from(path.to_string()).expect("rpc path");
    grpc.server_streaming(with_token(body, token), path, BytesCodec)
        .await
        .map(|response| response.into_inner())
}
