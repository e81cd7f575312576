//! The only module that talks to MongoDB. Two collections:
//!
//! - **sessions**: documents `{_id, data, user, ttl_seconds, browser_session, created_at,
//!   updated_at, expires_at, last_seen_at, absolute_ttl_seconds, user_agent, client_address}`
//!   with a TTL index on `expires_at` (each document expires at its own time) and an index on
//!   `user`; `moved_to` marks a document a cycle has sealed (`cycle`). Every read also checks
//!   `expires_at > now`, because the TTL monitor runs only about once a minute.
//! - **revocations**: the revocation feed (`revocations`), a counter document and one
//!   document per entry, with a TTL index on `expire_at`.
//!
//! Every operation is bounded by the configured timeout.
//!
//! Nothing here relies on transactions or a replica set (the test server is a single node,
//! production may be sharded on `_id`): every change that must be atomic is one single-document
//! operation, and a decision made on a read is written with a filter that still holds only
//! if what was read still stands.
//!
//! # Lifetimes
//!
//! A session has an idle lifetime (`ttl_seconds`, renewed by touches) and may have an
//! absolute one, counted from `created_at`, which a cycle keeps: the smaller of the
//! companion's default (`--absolute-ttl-seconds`) and the session's own
//! (`absolute_ttl_seconds`). Every write that sets `expires_at` sets
//! `min(now + ttl, created_at + absolute)`, so a session's own limit is always within
//! `expires_at`. The default is also checked on every read and in every write's filter
//! (`created_at > now - default`), so lowering or turning it on ends older sessions at once,
//! not at their next touch.

mod cycle;
pub mod data;
pub mod keys;
mod revocations;
mod session_doc;
mod sessions;
mod users;

pub use revocations::FeedRead;
pub use sessions::{Changes, NewSession, Origin, PatchOutcome};

use bson::{DateTime, Document, doc};
use futures::TryStreamExt;
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{ClientOptions, IndexOptions};
use mongodb::{Client, Collection, Database, IndexModel};
use session_doc::SessionDoc;
use std::future::IntoFuture;
use std::time::Duration;

const TTL_INDEX: &str = "expires_at_ttl";
const USER_INDEX: &str = "user_1";
const REVOCATION_TTL_INDEX: &str = "expire_at_ttl";
const DUPLICATE_KEY: i32 = 11000;
const NAMESPACE_NOT_FOUND: i32 = 26;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database did not answer in time or failed: the client should retry later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The request's data cannot be stored as given.
    #[error("{0}")]
    Data(String),
}

impl From<mongodb::error::Error> for StoreError {
    /// Server error messages can quote the documents involved (a duplicate key names its
    /// `_id`), and these messages are logged: keep only the code for those.
    fn from(err: mongodb::error::Error) -> Self {
        let described = match &*err.kind {
            ErrorKind::Command(e) => format!("server error {} ({})", e.code, e.code_name),
            ErrorKind::Write(WriteFailure::WriteError(e)) => format!("write error {}", e.code),
            ErrorKind::Write(WriteFailure::WriteConcernError(e)) => {
                format!("write concern error {}", e.code)
            }
            _ => err.to_string(),
        };
        Self::Unavailable(described)
    }
}

impl From<data::DataError> for StoreError {
    fn from(err: data::DataError) -> Self {
        Self::Data(err.to_string())
    }
}

/// Where the store keeps things and the rules it applies.
#[derive(Clone, Debug)]
pub struct Settings {
    pub collection: String,
    pub revocations_collection: String,
    /// The most any one database operation may take.
    pub timeout: Duration,
    pub max_key_bytes: usize,
    /// The companion's default absolute lifetime, in seconds.
    pub absolute_ttl_seconds: Option<u64>,
    /// The most live sessions one user may hold.
    pub max_sessions_per_user: Option<u64>,
    /// How long a revocation entry is kept at least.
    pub revocation_retention: Duration,
    /// How long a revocation's number may stay allocated without its entry appearing.
    pub revocation_grace: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            collection: "sessions".into(),
            revocations_collection: "revocations".into(),
            timeout: Duration::from_secs(1),
            max_key_bytes: 256,
            absolute_ttl_seconds: None,
            max_sessions_per_user: None,
            revocation_retention: Duration::from_secs(3600),
            revocation_grace: Duration::from_secs(10),
        }
    }
}

pub struct Store {
    db: Database,
    sessions: Collection<SessionDoc>,
    revocations: Collection<Document>,
    settings: Settings,
}

impl Store {
    /// Prepares a client. Connecting happens lazily, so the service starts while the database
    /// is down and recovers by itself when it comes back.
    pub async fn connect(
        uri: &str,
        database: &str,
        settings: Settings,
    ) -> Result<Self, StoreError> {
        let mut options = ClientOptions::parse(uri).await?;
        options.app_name = Some("edge-session-companion".into());
        // The driver's 30 s defaults would hold requests far past any proxy's patience.
        options.server_selection_timeout = Some(settings.timeout);
        options.connect_timeout = Some(settings.timeout);
        let client = Client::with_options(options)?;
        let db = client.database(database);
        Ok(Self {
            sessions: db.collection(&settings.collection),
            revocations: db.collection(&settings.revocations_collection),
            db,
            settings,
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Runs a driver operation within the timeout; the driver's own error stays inspectable.
    async fn bounded_raw<T>(
        &self,
        operation: impl IntoFuture<Output = mongodb::error::Result<T>>,
    ) -> Result<mongodb::error::Result<T>, StoreError> {
        let timeout = self.settings.timeout;
        tokio::time::timeout(timeout, operation).await.map_err(|_| {
            StoreError::Unavailable(format!("no answer within {} ms", timeout.as_millis()))
        })
    }

    async fn bounded<T>(
        &self,
        operation: impl IntoFuture<Output = mongodb::error::Result<T>>,
    ) -> Result<T, StoreError> {
        Ok(self.bounded_raw(operation).await??)
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        self.bounded(self.db.run_command(doc! {"ping": 1}))
            .await
            .map(|_| ())
    }

    /// Creates the TTL index on `expires_at` and the index on `user` of the sessions, and the
    /// TTL index on `expire_at` of the revocations, or leaves them as they are when right. A
    /// TTL index with another `expireAfterSeconds` is changed in place with `collMod`, never
    /// dropped. Safe to run from any number of replicas at once: creating an identical index
    /// is a no-op.
    pub async fn ensure_indexes(&self) -> Result<(), StoreError> {
        self.ensure_ttl_index(&self.sessions.clone_with_type(), "expires_at", TTL_INDEX)
            .await?;
        let options = IndexOptions::builder().name(USER_INDEX.to_string()).build();
        let model = IndexModel::builder()
            .keys(doc! {"user": 1})
            .options(options)
            .build();
        self.bounded(self.sessions.create_index(model)).await?;
        self.ensure_ttl_index(&self.revocations, "expire_at", REVOCATION_TTL_INDEX)
            .await
    }

    /// A TTL index on `field` with `expireAfterSeconds: 0`: each document expires at the time
    /// it holds there.
    async fn ensure_ttl_index(
        &self,
        collection: &Collection<Document>,
        field: &str,
        name: &str,
    ) -> Result<(), StoreError> {
        let listed = self
            .bounded_raw(async {
                collection
                    .list_indexes()
                    .await?
                    .try_collect::<Vec<_>>()
                    .await
            })
            .await?;
        let existing = match listed {
            Ok(list) => list,
            // No collection yet: no indexes either.
            Err(err) if command_code(&err) == Some(NAMESPACE_NOT_FOUND) => Vec::new(),
            Err(err) => return Err(err.into()),
        };
        let keys = doc! {field: 1};
        let ttl = existing.iter().find(|m| m.keys == keys);
        match ttl.map(|m| m.options.as_ref().and_then(|o| o.expire_after)) {
            Some(Some(after)) if after == Duration::ZERO => {}
            Some(_) => {
                let command = doc! {
                    "collMod": collection.name(),
                    "index": {"keyPattern": keys, "expireAfterSeconds": 0_i64},
                };
                self.bounded(self.db.run_command(command)).await?;
                tracing::info!(
                    collection = collection.name(),
                    "changed the TTL index on {field} to expireAfterSeconds 0"
                );
            }
            None => {
                let options = IndexOptions::builder()
                    .name(name.to_string())
                    .expire_after(Duration::ZERO)
                    .build();
                let model = IndexModel::builder().keys(keys).options(options).build();
                self.bounded(collection.create_index(model)).await?;
            }
        }
        Ok(())
    }

    /// The conditions of a live session: not expired, not sealed by a cycle, and within the
    /// companion's default absolute lifetime.
    fn live_filter(&self, now: DateTime) -> Document {
        let mut filter = doc! {"expires_at": {"$gt": now}, "moved_to": {"$exists": false}};
        if let Some(default) = self.settings.absolute_ttl_seconds {
            filter.insert("created_at", doc! {"$gt": before(now, default)});
        }
        filter
    }

    /// The filter for a write that must not touch an expired session (no resurrection) nor
    /// one a cycle sealed.
    fn live(&self, id: &str, now: DateTime) -> Document {
        let mut filter = doc! {"_id": id};
        filter.extend(self.live_filter(now));
        filter
    }

    /// Whether `doc` is live at `now`, exactly as `live` would match it.
    fn is_live(&self, doc: &SessionDoc, now: DateTime) -> bool {
        doc.is_live(now, self.settings.absolute_ttl_seconds)
    }
}

/// A fresh session id, as stored.
fn draw_id() -> Result<String, StoreError> {
    crate::ids::new_session_id()
        .map(|id| id.as_str().to_string())
        .map_err(|e| {
            StoreError::Unavailable(format!("no randomness from the operating system: {e}"))
        })
}

/// The current time as the store compares it.
pub fn now() -> DateTime {
    DateTime::now()
}

fn seconds(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn after(at: DateTime, seconds_later: u64) -> DateTime {
    DateTime::from_millis(
        at.timestamp_millis()
            .saturating_add(seconds(seconds_later).saturating_mul(1000)),
    )
}

fn before(at: DateTime, seconds_earlier: u64) -> DateTime {
    DateTime::from_millis(
        at.timestamp_millis()
            .saturating_sub(seconds(seconds_earlier).saturating_mul(1000)),
    )
}

fn is_duplicate_key(err: &mongodb::error::Error) -> bool {
    match &*err.kind {
        ErrorKind::Write(WriteFailure::WriteError(e)) => e.code == DUPLICATE_KEY,
        ErrorKind::Command(e) => e.code == DUPLICATE_KEY,
        _ => false,
    }
}

fn command_code(err: &mongodb::error::Error) -> Option<i32> {
    match &*err.kind {
        ErrorKind::Command(e) => Some(e.code),
        _ => None,
    }
}
