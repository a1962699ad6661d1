//! Every request message of every RPC of the orgs services, discovered from the
//! served descriptor set, filled with generated hostile values (long, empty,
//! unicode and control characters, extreme numbers, unknown enum values, deep
//! and non-finite metadata, huge repeated fields) mixed with ids of real
//! resources so calls get past the first checks. Each is sent as raw protobuf
//! to a real server with an `orgs:admin` token and with an end user's token;
//! the answer must be OK or a documented client error, never INTERNAL,
//! UNKNOWN, a dropped connection or a panic. Server-streaming RPCs are opened
//! and cancelled.
//!
//! The run is seeded: `ORGS_FUZZ_SEED` (default fixed) varies the values,
//! `ORGS_FUZZ_CASES` the number of messages per RPC (default 16);
//! `ORGS_FUZZ_VERBOSE=1` prints every answer. At the end the answers are
//! counted by RPC and code, to show how far the requests got.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use orgs::proto::v1 as pb;
use proptest::prelude::*;
use proptest::strategy::{BoxedStrategy, Union};
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use prost::Message;
use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor,
    MethodDescriptor, Value,
};
use sha2::{Digest, Sha256};
use tonic::{Code, Status};

const DEFAULT_SEED: u64 = 20_261_201;
const DEFAULT_CASES: u32 = 16;
/// Nested messages generated at most this deep (metadata has its own depths).
const MAX_DEPTH: u32 = 3;

/// Codes a hostile request may get: OK or a documented client error.
const ALLOWED: &[Code] = &[
    Code::Ok,
    Code::InvalidArgument,
    Code::NotFound,
    Code::AlreadyExists,
    Code::FailedPrecondition,
    Code::PermissionDenied,
    Code::ResourceExhausted,
    Code::OutOfRange,
    Code::Aborted,
    Code::Unauthenticated,
];

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// Real resources, so that generated requests sometimes name them.
#[derive(Debug, Clone)]
struct Fixtures {
    organization_id: String,
    member_id: String,
    invitation_id: String,
    domain_id: String,
    domain_name: String,
    membership_request_id: String,
    period: String,
}

/// The end user of the fixtures: `org:admin` of their organization.
const END_USER: &str = "user_fuzz";

async fn fixtures(app: &TestApp, n: usize) -> Fixtures {
    let organization = create_org(app, &format!("Fuzz {n}"), Some(END_USER)).await;
    let member_id = format!("user_fuzz_member_{n}");
    add_member(app, &organization.id, &member_id, "org:member").await;
    let admin = Some(token("svc-onboarding", "orgs:admin"));
    let invitation = app
        .invitations(admin.clone())
        .create_invitation(pb::CreateInvitationRequest {
            organization_id: organization.id.clone(),
            email_address: format!("invitee{n}@fuzz.example.com"),
            ..Default::default()
        })
        .await
        .expect("invitation")
        .into_inner()
        .invitation
        .expect("invitation");
    let domain_name = format!("fuzz{n}.example.com");
    let domain = app
        .invitations(admin.clone())
        .create_domain(pb::CreateDomainRequest {
            organization_id: organization.id.clone(),
            name: domain_name.clone(),
            enrollment_mode: pb::EnrollmentMode::AutomaticSuggestion as i32,
            verified: true,
            ..Default::default()
        })
        .await
        .expect("domain")
        .into_inner()
        .domain
        .expect("domain");
    let membership_request = app
        .invitations(admin)
        .create_membership_request(pb::CreateMembershipRequestRequest {
            organization_id: organization.id.clone(),
            user_id: format!("user_fuzz_requester_{n}"),
            email_address: format!("requester@{domain_name}"),
            ..Default::default()
        })
        .await
        .expect("membership request")
        .into_inner()
        .membership_request
        .expect("membership request");
    Fixtures {
        organization_id: organization.id,
        member_id,
        invitation_id: invitation.id,
        domain_id: domain.id,
        domain_name,
        membership_request_id: membership_request.id,
        period: chrono::Utc::now().format("%Y-%m").to_string(),
    }
}

fn weighted<T: std::fmt::Debug + 'static>(
    options: Vec<(u32, BoxedStrategy<T>)>,
) -> BoxedStrategy<T> {
    Union::new_weighted(options).boxed()
}

/// Strings that break things: empty, blank, long, unicode, control
/// characters, markup and SQL, near-misses of valid shapes.
fn hostile_string() -> BoxedStrategy<String> {
    weighted(vec![
        (3, Just(String::new()).boxed()),
        (1, Just("   ".to_string()).boxed()),
        (3, "\\PC{1,40}".boxed()),
        (2, "[\\x00-\\x1f\\x7f\\u{202e}\\u{feff}]{1,8}".boxed()),
        (2, (1usize..5_000).prop_map(|n| "a".repeat(n)).boxed()),
        (1, (1usize..70_000).prop_map(|n| "é".repeat(n)).boxed()),
        (1, Just("x".repeat(1 << 20)).boxed()),
        (
            2,
            prop_oneof![
                Just("'; DROP TABLE organizations; --".to_string()),
                Just("%_\\".to_string()),
                Just("org_".to_string()),
                Just("org_00000000000000000000000000".to_string()),
                Just("org:".to_string()),
                Just("org:a:b:c".to_string()),
                Just("a@b".to_string()),
                Just("@".to_string()),
                Just("-".to_string()),
                Just("0000-00".to_string()),
                Just("9999-99".to_string()),
                Just("https://".to_string()),
                Just("javascript:alert(1)".to_string()),
                Just("\u{0}".to_string()),
                Just("null".to_string()),
                Just("🏢".repeat(64)),
            ]
            .boxed(),
        ),
    ])
}

/// Valid-looking values for a field, by its name (and for `id` the message
/// it is in), from the fixtures.
fn plausible_string(field: &FieldDescriptor, fx: &Fixtures) -> Option<BoxedStrategy<String>> {
    let name = field.name();
    let values: Vec<String> = if name == "id" {
        match field.parent_message().name() {
            "Organization" => vec![fx.organization_id.clone()],
            "Invitation" => vec![fx.invitation_id.clone()],
            "Domain" => vec![fx.domain_id.clone()],
            "MembershipRequest" => vec![fx.membership_request_id.clone()],
            _ => return None,
        }
    } else if matches!(
        name,
        "page_token" | "etag" | "start_cursor" | "cursor" | "token"
    ) {
        // Opaque values the server handed out: none is a valid one.
        vec![String::new()]
    } else if name == "order_by" {
        vec![
            "name".into(),
            "create_time desc".into(),
            "members_count desc".into(),
        ]
    } else if name == "membership_request_id" {
        vec![fx.membership_request_id.clone()]
    } else if name.ends_with("organization_id") {
        vec![fx.organization_id.clone()]
    } else if name.ends_with("user_id") || name == "created_by" || name == "actor" {
        vec![END_USER.into(), fx.member_id.clone(), "user_unknown".into()]
    } else if name == "invitation_id" {
        vec![fx.invitation_id.clone()]
    } else if name == "domain_id" {
        vec![fx.domain_id.clone()]
    } else if name == "role" || name == "key" || name == "roles" {
        vec!["org:admin".into(), "org:member".into(), "org:fuzz".into()]
    } else if name.starts_with("permission") {
        vec!["org:fuzz:read".into(), "org:sys_memberships:manage".into()]
    } else if name.contains("email") {
        vec![
            format!("someone@{}", fx.domain_name),
            "someone@fuzz.example.com".into(),
            "user@gmail.com".into(),
        ]
    } else if name == "period" {
        vec![fx.period.clone(), "1970-01".into()]
    } else if name == "slug" {
        vec!["fuzz-org".into()]
    } else if name == "name" {
        vec![
            "Fuzz".into(),
            fx.domain_name.clone(),
            "other.example.org".into(),
        ]
    } else if name == "redirect_url" {
        vec!["https://app.example.com/accept".into()]
    } else if name == "code" {
        vec!["000000".into()]
    } else {
        return None;
    };
    Some(proptest::sample::select(values).boxed())
}

/// How a request mixes well-formed and hostile values: a calm one has mostly
/// well-formed fields, so that it gets past validation into the service with
/// one hostile value now and then; a wild one is hostile throughout.
#[derive(Debug, Clone, Copy)]
struct Mix {
    plausible: u32,
    hostile: u32,
    absent: u32,
}

const CALM: Mix = Mix {
    plausible: 30,
    hostile: 1,
    absent: 1,
};
const WILD: Mix = Mix {
    plausible: 3,
    hostile: 2,
    absent: 1,
};

impl Mix {
    fn pick<T: std::fmt::Debug + 'static>(
        self,
        plausible: BoxedStrategy<T>,
        hostile: BoxedStrategy<T>,
    ) -> BoxedStrategy<T> {
        weighted(vec![(self.plausible, plausible), (self.hostile, hostile)])
    }
}

fn string_for(field: &FieldDescriptor, fx: &Fixtures, mix: Mix) -> BoxedStrategy<String> {
    let plausible =
        plausible_string(field, fx).unwrap_or_else(|| Just("fuzz value".to_string()).boxed());
    mix.pick(plausible, hostile_string())
}

fn hostile_i64() -> BoxedStrategy<i64> {
    prop_oneof![
        Just(0i64),
        Just(-1),
        Just(1),
        Just(i64::MIN),
        Just(i64::MAX),
        Just(i64::from(i32::MAX) + 1),
        0i64..1_000,
        any::<i64>(),
    ]
    .boxed()
}

fn hostile_i32() -> BoxedStrategy<i32> {
    prop_oneof![
        Just(0i32),
        Just(-1),
        Just(1),
        Just(i32::MIN),
        Just(i32::MAX),
        0i32..600,
        any::<i32>(),
    ]
    .boxed()
}

fn hostile_f64() -> BoxedStrategy<f64> {
    prop_oneof![
        Just(0.0f64),
        Just(-0.0),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(f64::MAX),
        Just(f64::MIN_POSITIVE),
        any::<f64>(),
    ]
    .boxed()
}

/// A metadata value: scalars of every kind, NaN and infinities included.
fn metadata_leaf() -> BoxedStrategy<prost_types::Value> {
    use prost_types::value::Kind as V;
    prop_oneof![
        hostile_f64().prop_map(V::NumberValue),
        hostile_string().prop_map(V::StringValue),
        any::<bool>().prop_map(V::BoolValue),
        Just(V::NullValue(0)),
    ]
    .prop_map(|kind| prost_types::Value { kind: Some(kind) })
    .boxed()
}

fn nest(levels: usize, leaf: prost_types::Value) -> prost_types::Struct {
    use prost_types::value::Kind as V;
    let mut value = leaf;
    for level in 1..levels {
        value = prost_types::Value {
            kind: Some(if level % 2 == 0 {
                V::ListValue(prost_types::ListValue {
                    values: vec![value],
                })
            } else {
                V::StructValue(prost_types::Struct {
                    fields: [("k".to_string(), value)].into(),
                })
            }),
        };
    }
    prost_types::Struct {
        fields: [("k".to_string(), value)].into(),
    }
}

/// Metadata: empty, a few hostile keys and values, deep (past the
/// documented 16 levels and past the decoder's limit), or wide (past 8 KiB).
fn metadata(mix: Mix) -> BoxedStrategy<prost_types::Struct> {
    let plain = prost_types::Struct {
        fields: [
            (
                "plan".to_string(),
                prost_types::Value {
                    kind: Some(prost_types::value::Kind::StringValue("pro".into())),
                },
            ),
            (
                "seats".to_string(),
                prost_types::Value {
                    kind: Some(prost_types::value::Kind::NumberValue(5.0)),
                },
            ),
        ]
        .into(),
    };
    let plausible = prop_oneof![Just(prost_types::Struct::default()), Just(plain)].boxed();
    let hostile = weighted(vec![
        (
            2,
            proptest::collection::btree_map(hostile_string(), metadata_leaf(), 0..4)
                .prop_map(|fields| prost_types::Struct { fields })
                .boxed(),
        ),
        (
            2,
            (1usize..48, metadata_leaf())
                .prop_map(|(levels, leaf)| nest(levels, leaf))
                .boxed(),
        ),
        (
            1,
            (1usize..2_000)
                .prop_map(|keys| prost_types::Struct {
                    fields: (0..keys)
                        .map(|k| {
                            (
                                format!("key{k}"),
                                prost_types::Value {
                                    kind: Some(prost_types::value::Kind::NumberValue(k as f64)),
                                },
                            )
                        })
                        .collect(),
                })
                .boxed(),
        ),
    ]);
    mix.pick(plausible, hostile)
}

/// A `google.protobuf.Struct` as a dynamic message, built field by field:
/// decoding it would stop at the very recursion limit the test wants to pass.
fn struct_message(pool: &DescriptorPool, s: &prost_types::Struct) -> DynamicMessage {
    let struct_desc = pool
        .get_message_by_name("google.protobuf.Struct")
        .expect("Struct");
    let mut message = DynamicMessage::new(struct_desc);
    let fields = s
        .fields
        .iter()
        .map(|(key, value)| {
            (
                MapKey::String(key.clone()),
                Value::Message(value_message(pool, value)),
            )
        })
        .collect();
    message.set_field_by_name("fields", Value::Map(fields));
    message
}

fn value_message(pool: &DescriptorPool, value: &prost_types::Value) -> DynamicMessage {
    use prost_types::value::Kind as V;
    let desc = pool
        .get_message_by_name("google.protobuf.Value")
        .expect("Value");
    let mut message = DynamicMessage::new(desc);
    match &value.kind {
        None => {}
        Some(V::NullValue(n)) => message.set_field_by_name("null_value", Value::EnumNumber(*n)),
        Some(V::NumberValue(n)) => message.set_field_by_name("number_value", Value::F64(*n)),
        Some(V::StringValue(s)) => {
            message.set_field_by_name("string_value", Value::String(s.clone()))
        }
        Some(V::BoolValue(b)) => message.set_field_by_name("bool_value", Value::Bool(*b)),
        Some(V::StructValue(s)) => {
            message.set_field_by_name("struct_value", Value::Message(struct_message(pool, s)))
        }
        Some(V::ListValue(list)) => {
            let list_desc = pool
                .get_message_by_name("google.protobuf.ListValue")
                .expect("ListValue");
            let mut list_message = DynamicMessage::new(list_desc);
            list_message.set_field_by_name(
                "values",
                Value::List(
                    list.values
                        .iter()
                        .map(|v| Value::Message(value_message(pool, v)))
                        .collect(),
                ),
            );
            message.set_field_by_name("list_value", Value::Message(list_message))
        }
    }
    message
}

/// Builds strategies from the descriptors.
struct Generator {
    pool: DescriptorPool,
    fixtures: Fixtures,
}

impl Generator {
    /// A request: calm or wild.
    fn request(self: &Arc<Self>, desc: MessageDescriptor) -> BoxedStrategy<DynamicMessage> {
        prop_oneof![
            self.message(desc.clone(), 0, CALM),
            self.message(desc, 0, WILD),
        ]
        .boxed()
    }

    fn message(
        self: &Arc<Self>,
        desc: MessageDescriptor,
        depth: u32,
        mix: Mix,
    ) -> BoxedStrategy<DynamicMessage> {
        let this = self.clone();
        match desc.full_name() {
            "google.protobuf.Struct" => {
                return metadata(mix)
                    .prop_map(move |s| struct_message(&this.pool, &s))
                    .boxed();
            }
            "google.protobuf.Timestamp" => {
                let now = chrono::Utc::now().timestamp();
                let seconds = mix.pick((now - 30 * 86_400..now + 60).boxed(), hostile_i64());
                let nanos = mix.pick((0i32..1_000_000_000).boxed(), hostile_i32());
                return (seconds, nanos)
                    .prop_map(move |(seconds, nanos)| {
                        let mut message = DynamicMessage::new(desc.clone());
                        message.set_field_by_name("seconds", Value::I64(seconds));
                        message.set_field_by_name("nanos", Value::I32(nanos));
                        message
                    })
                    .boxed();
            }
            _ => {}
        }
        let fields: Vec<FieldDescriptor> = desc.fields().collect();
        let strategies: Vec<BoxedStrategy<Option<Value>>> = fields
            .iter()
            .map(|field| self.field(field, depth, mix))
            .collect();
        strategies
            .prop_map(move |values| {
                let mut message = DynamicMessage::new(desc.clone());
                for (field, value) in fields.iter().zip(values) {
                    if let Some(value) = value {
                        message
                            .try_set_field(field, value)
                            .unwrap_or_else(|err| panic!("{}: {err}", field.full_name()));
                    }
                }
                message
            })
            .boxed()
    }

    /// A field's value, or `None` to leave it unset.
    fn field(
        self: &Arc<Self>,
        field: &FieldDescriptor,
        depth: u32,
        mix: Mix,
    ) -> BoxedStrategy<Option<Value>> {
        if field.is_map() {
            // No orgs message has map fields; Struct is handled whole.
            return Just(None).boxed();
        }
        let kind = field.kind();
        if matches!(kind, Kind::Message(_)) && depth >= MAX_DEPTH {
            return Just(None).boxed();
        }
        if let Kind::Message(desc) = &kind
            && desc.full_name() == "google.protobuf.FieldMask"
        {
            return self.update_mask(field, desc.clone(), mix);
        }
        let single = self.single(field, &kind, depth, mix);
        let value = if field.is_list() {
            let element = single.clone();
            weighted(vec![
                (
                    20,
                    proptest::collection::vec(single, 0..4)
                        .prop_map(Value::List)
                        .boxed(),
                ),
                // Past every documented batch size (100 invitations, 10,000
                // events): the same element repeated.
                (
                    1,
                    (
                        element,
                        prop_oneof![Just(101usize), Just(501), Just(10_001)],
                    )
                        .prop_map(|(value, n)| Value::List(vec![value; n]))
                        .boxed(),
                ),
            ])
        } else {
            single
        };
        weighted(vec![
            (mix.absent, Just(None).boxed()),
            (mix.plausible + mix.hostile, value.prop_map(Some).boxed()),
        ])
    }

    /// An update mask: paths of the message it masks (the other message
    /// field of the request) and made-up ones.
    fn update_mask(
        self: &Arc<Self>,
        field: &FieldDescriptor,
        desc: MessageDescriptor,
        mix: Mix,
    ) -> BoxedStrategy<Option<Value>> {
        // Fields an update could name; the masked message's others are
        // output only.
        const UPDATABLE: &[&str] = &[
            "name",
            "slug",
            "max_allowed_memberships",
            "public_metadata",
            "private_metadata",
            "role",
            "enrollment_mode",
            "description",
            "permissions",
        ];
        let mut paths: Vec<String> = field
            .parent_message()
            .fields()
            .filter_map(|f| match f.kind() {
                Kind::Message(m) if m.full_name() != "google.protobuf.FieldMask" => {
                    Some(m.fields().map(|f| f.name().to_string()).collect::<Vec<_>>())
                }
                _ => None,
            })
            .flatten()
            .filter(|name| UPDATABLE.contains(&name.as_str()))
            .collect();
        if paths.is_empty() {
            paths.push("name".into());
        }
        let path = mix.pick(proptest::sample::select(paths).boxed(), hostile_string());
        proptest::collection::vec(path, 1..4)
            .prop_map(move |paths| {
                let mut message = DynamicMessage::new(desc.clone());
                message.set_field_by_name(
                    "paths",
                    Value::List(paths.into_iter().map(Value::String).collect()),
                );
                Some(Value::Message(message))
            })
            .boxed()
    }

    fn single(
        self: &Arc<Self>,
        field: &FieldDescriptor,
        kind: &Kind,
        depth: u32,
        mix: Mix,
    ) -> BoxedStrategy<Value> {
        match kind {
            Kind::String => string_for(field, &self.fixtures, mix)
                .prop_map(Value::String)
                .boxed(),
            Kind::Bytes => hostile_string()
                .prop_map(|s| Value::Bytes(s.into_bytes().into()))
                .boxed(),
            Kind::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => mix
                .pick((0i32..100).boxed(), hostile_i32())
                .prop_map(Value::I32)
                .boxed(),
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => mix
                .pick((0i64..100).boxed(), hostile_i64())
                .prop_map(Value::I64)
                .boxed(),
            Kind::Uint32 | Kind::Fixed32 => prop_oneof![Just(0u32), Just(u32::MAX), any::<u32>()]
                .prop_map(Value::U32)
                .boxed(),
            Kind::Uint64 | Kind::Fixed64 => prop_oneof![Just(0u64), Just(u64::MAX), any::<u64>()]
                .prop_map(Value::U64)
                .boxed(),
            Kind::Float => hostile_f64().prop_map(|f| Value::F32(f as f32)).boxed(),
            Kind::Double => hostile_f64().prop_map(Value::F64).boxed(),
            Kind::Enum(desc) => {
                let known: Vec<i32> = desc.values().map(|v| v.number()).collect();
                mix.pick(
                    proptest::sample::select(known).boxed(),
                    prop_oneof![Just(-1i32), Just(999), Just(i32::MAX), Just(i32::MIN)].boxed(),
                )
                .prop_map(Value::EnumNumber)
                .boxed()
            }
            Kind::Message(desc) => self
                .message(desc.clone(), depth + 1, mix)
                .prop_map(Value::Message)
                .boxed(),
        }
    }
}

/// The code of one call; streams are opened, read for a moment and cancelled.
async fn call(app: &TestApp, method: &MethodDescriptor, body: Vec<u8>, token: &str) -> Status {
    let path = format!("/{}/{}", method.parent_service().full_name(), method.name());
    if method.is_server_streaming() {
        match raw::server_streaming(app.channel(), &path, body.into(), Some(token)).await {
            Err(status) => status,
            Ok(mut stream) => {
                match tokio::time::timeout(Duration::from_millis(100), stream.message()).await {
                    Ok(Err(status)) => status,
                    _ => Status::ok(""),
                }
            }
        }
    } else {
        match raw::unary(app.channel(), &path, body.into(), Some(token)).await {
            Ok(_) => Status::ok(""),
            Err(status) => status,
        }
    }
}

fn seed_for(seed: u64, rpc: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(seed.to_le_bytes());
    hasher.update(rpc.as_bytes());
    hasher.finalize().into()
}

#[test]
fn every_rpc_answers_hostile_requests_with_ok_or_a_client_error() {
    let seed: u64 = env_or("ORGS_FUZZ_SEED", DEFAULT_SEED);
    let cases: u32 = env_or("ORGS_FUZZ_CASES", DEFAULT_CASES);
    eprintln!("fuzz seed {seed}, {cases} cases per RPC (ORGS_FUZZ_SEED, ORGS_FUZZ_CASES)");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let app = runtime.block_on(TestApp::spawn());
    let pool = DescriptorPool::decode(orgs::proto::FILE_DESCRIPTOR_SET).expect("descriptor set");
    let admin = token("svc-fuzz", "orgs:admin");
    let end_user = token(END_USER, "");
    runtime.block_on(async {
        let mut orgs = app.admin();
        orgs.create_permission(pb::CreatePermissionRequest {
            key: "org:fuzz:read".into(),
            name: "Fuzz read".into(),
            ..Default::default()
        })
        .await
        .expect("permission");
        orgs.create_role(pb::CreateRoleRequest {
            key: "org:fuzz".into(),
            name: "Fuzz".into(),
            permissions: vec!["org:fuzz:read".into()],
            ..Default::default()
        })
        .await
        .expect("role");
    });

    let methods: Vec<MethodDescriptor> = pool
        .services()
        .filter(|service| service.package_name() == "orgs.v1")
        .flat_map(|service| service.methods().collect::<Vec<_>>())
        .collect();
    assert!(methods.len() >= 43, "every RPC of the three services");
    // Answers by RPC and code, printed at the end to show how deep the
    // generated requests got.
    let answers =
        std::sync::Mutex::new(std::collections::BTreeMap::<(String, String), usize>::new());
    for (n, method) in methods.iter().enumerate() {
        let rpc = method.full_name().to_string();
        // Fresh resources for each RPC: the calls before may have deleted
        // the previous ones.
        let fixtures = runtime.block_on(fixtures(&app, n));
        let generator = Arc::new(Generator {
            pool: pool.clone(),
            fixtures,
        });
        let strategy = generator.request(method.input());
        let mut config = Config::with_cases(cases);
        config.failure_persistence = None;
        config.max_shrink_iters = 64;
        let mut runner = TestRunner::new_with_rng(
            config,
            TestRng::from_seed(RngAlgorithm::ChaCha, &seed_for(seed, &rpc)),
        );
        let result = runner.run(&strategy, |message| {
            let body = message.encode_to_vec();
            for (who, token) in [("orgs:admin", &admin), ("end user", &end_user)] {
                let status = runtime.block_on(call(&app, method, body.clone(), token));
                if std::env::var("ORGS_FUZZ_VERBOSE").is_ok() {
                    let message: String = status.message().chars().take(200).collect();
                    eprintln!("{} {who}: {:?} {message}", method.name(), status.code());
                }
                if let Ok(mut answers) = answers.lock() {
                    *answers
                        .entry((method.name().to_string(), format!("{:?}", status.code())))
                        .or_default() += 1;
                }
                if !ALLOWED.contains(&status.code()) {
                    let shown: String = format!("{message:?}").chars().take(2_000).collect();
                    return Err(TestCaseError::fail(format!(
                        "{rpc} as {who} answered {:?} {:?} to {shown}",
                        status.code(),
                        status.message(),
                    )));
                }
            }
            Ok(())
        });
        if let Err(failure) = result {
            panic!("{rpc} (ORGS_FUZZ_SEED={seed}): {failure}");
        }
    }
    // The server is still up and answering after all of it.
    runtime.block_on(async {
        app.admin()
            .list_roles(pb::ListRolesRequest::default())
            .await
            .expect("the server still answers");
    });
    let answers = answers.into_inner().unwrap_or_default();
    let mut by_rpc = std::collections::BTreeMap::<String, Vec<String>>::new();
    for ((rpc, code), count) in &answers {
        by_rpc
            .entry(rpc.clone())
            .or_default()
            .push(format!("{code} {count}"));
    }
    for (rpc, codes) in by_rpc {
        eprintln!("{rpc}: {}", codes.join(", "));
    }
    eprintln!(
        "{} calls to {} RPCs",
        answers.values().sum::<usize>(),
        methods.len()
    );
    drop(app);
    runtime.shutdown_timeout(Duration::from_secs(5));
}
