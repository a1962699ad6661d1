//! The server under load: its address, the bearer token, typed clients.

use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

use orgs::clients::{BillingServiceClient, EventServiceClient, OrganizationServiceClient};

#[derive(Clone)]
pub struct Bearer(pub MetadataValue<tonic::metadata::Ascii>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

pub type Billing = BillingServiceClient<InterceptedService<Channel, Bearer>>;
pub type Orgs = OrganizationServiceClient<InterceptedService<Channel, Bearer>>;
pub type Events = EventServiceClient<InterceptedService<Channel, Bearer>>;

pub struct Target {
    pub addr: String,
    pub bearer: Bearer,
}

impl Target {
    pub async fn channel(&self) -> anyhow::Result<Channel> {
        Ok(Endpoint::from_shared(self.addr.clone())?.connect().await?)
    }

    pub fn billing(&self, channel: Channel) -> Billing {
        BillingServiceClient::with_interceptor(channel, self.bearer.clone())
    }

    pub fn events(&self, channel: Channel) -> Events {
        EventServiceClient::with_interceptor(channel, self.bearer.clone())
    }

    pub fn orgs(&self, channel: Channel) -> Orgs {
        OrganizationServiceClient::with_interceptor(channel, self.bearer.clone())
    }
}
