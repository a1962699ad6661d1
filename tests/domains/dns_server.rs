//! A real DNS server in-process on 127.0.0.1 (hickory-server with an
//! in-memory zone), whose TXT records a test publishes as it goes; and a UDP
//! socket that never answers.

use std::net::SocketAddr;
use std::sync::Arc;

use hickory_server::Server;
use hickory_server::proto::rr::rdata::{SOA, TXT};
use hickory_server::proto::rr::{LowerName, Name, RData, Record};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};
use tokio::net::UdpSocket;

/// An authoritative server for one zone, on an ephemeral UDP port.
pub struct DnsServer {
    pub addr: SocketAddr,
    zone: Arc<InMemoryZoneHandler>,
    _server: Server<Catalog>,
}

impl DnsServer {
    /// Serves the zone `origin` (for example `test.`) with only its SOA.
    pub async fn start(origin: &str) -> DnsServer {
        let origin = Name::from_ascii(origin).expect("zone name");
        let mut zone =
            InMemoryZoneHandler::empty(origin.clone(), ZoneType::Primary, AxfrPolicy::Deny);
        let soa = SOA::new(
            Name::from_ascii("ns.test.").expect("mname"),
            Name::from_ascii("hostmaster.test.").expect("rname"),
            1,
            3600,
            600,
            86_400,
            0,
        );
        assert!(zone.upsert_mut(Record::from_rdata(origin.clone(), 0, RData::SOA(soa)), 1));
        let zone = Arc::new(zone);
        let mut catalog = Catalog::new();
        catalog.upsert(LowerName::new(&origin), vec![zone.clone()]);
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind dns");
        let addr = socket.local_addr().expect("dns addr");
        let mut server = Server::new(catalog);
        server.register_socket(socket);
        DnsServer {
            addr,
            zone,
            _server: server,
        }
    }

    /// Adds a TXT record with `value` at `name` (records of one name add up).
    pub async fn publish_txt(&self, name: &str, value: &str) {
        let name = Name::from_ascii(format!("{name}.")).expect("record name");
        let record = Record::from_rdata(name, 0, RData::TXT(TXT::new(vec![value.to_string()])));
        assert!(self.zone.upsert(record, 1).await, "record added");
    }
}

/// A UDP socket on 127.0.0.1 that receives queries and never answers.
pub async fn silent_resolver() -> (SocketAddr, UdpSocket) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    (socket.local_addr().expect("addr"), socket)
}
