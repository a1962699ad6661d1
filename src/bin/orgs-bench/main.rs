//! The load generator: connects to a running server and measures, in one run,
//! a `grpc.health.v1.Health/Check` baseline and the paths under test (writes,
//! hot reads, the billing paths), so results read as ratios to the baseline
//! on whatever machine runs them. `bench/writes.sh` runs it against a fresh server.
//!
//! ```text
//! orgs-bench --token "$(orgs token --sub bench --scope 'billing:write billing:read orgs:admin')" activity
//! orgs-bench --token … watch --watchers 1000
//! orgs-bench --token … watch-events --streams 1000 --rate 20 --server-pid "$SERVER_PID"
//! orgs-bench --token … writes --record-activity --database-url "$ORGS_DATABASE_URL"
//! orgs-bench --token … reads --database-url "$ORGS_DATABASE_URL" --server-pid "$SERVER_PID"
//! orgs-bench --token … memory --database-url "$ORGS_DATABASE_URL" --server-pid "$SERVER_PID"
//! ```

mod activity;
mod health;
mod load;
mod memory;
mod meter;
mod raw;
mod reads;
mod report;
mod seed;
mod target;
mod watch;
mod watch_events;
mod writes;

use clap::{Parser, Subcommand};

use crate::target::{Bearer, Target};

#[derive(Parser)]
#[command(
    name = "orgs-bench",
    about = "Load generator for a running orgs server"
)]
struct Cli {
    /// The server.
    #[arg(
        long,
        env = "ORGS_BENCH_ADDR",
        default_value = "http://127.0.0.1:50051"
    )]
    addr: String,
    /// A bearer token with `billing:write billing:read orgs:admin`
    /// (`orgs token --sub bench --scope 'billing:write billing:read orgs:admin'`).
    #[arg(long, env = "ORGS_BENCH_TOKEN", hide_env_values = true)]
    token: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// RecordActivity events/s for several batch sizes, new users and repeats.
    Activity(activity::ActivityArgs),
    /// Delivery latency of billable transitions to many open watches.
    Watch(watch::WatchArgs),
    /// Delivery latency of changes to many open WatchEvents streams under a
    /// CreateMembership load, against Health/Check, and the server's memory.
    WatchEvents(watch_events::WatchEventsArgs),
    /// CreateOrganization and CreateMembership against Health/Check and
    /// against the same statements run straight on the database.
    Writes(writes::WritesArgs),
    /// CheckPermission and GetOrganization with random keys over a seeded
    /// data set against Health/Check, and the server's memory.
    Reads(reads::ReadsArgs),
    /// Seeds a data set for `reads --ids-file` straight into a database.
    Seed(seed::SeedCommand),
    /// The server's memory after a flood of CheckPermission calls for
    /// unknown organizations, and after reading many organizations with
    /// large metadata once each.
    Memory(memory::MemoryArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let bearer = Bearer(format!("Bearer {}", cli.token).parse()?);
    let target = Target {
        addr: cli.addr,
        bearer,
    };
    let run = ulid::Ulid::new().to_string().to_lowercase();
    match cli.command {
        Command::Activity(args) => activity::activity(&target, &run, args).await,
        Command::Watch(args) => watch::watch(&target, &run, args).await,
        Command::WatchEvents(args) => watch_events::watch_events(&target, &run, args).await,
        Command::Writes(args) => writes::writes(&target, &run, args).await,
        Command::Reads(args) => reads::reads(&target, &run, args).await,
        Command::Seed(args) => seed::seed_command(&run, args).await,
        Command::Memory(args) => memory::memory(&target, &run, args).await,
    }
}
