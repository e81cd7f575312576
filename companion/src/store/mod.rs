//! The only module that talks to MongoDB. One collection of session documents
//! `{_id, data, user, ttl_seconds, browser_session, created_at, updated_at, expires_at}` with a
//! TTL index on `expires_at` (each document expires at its own time) and an index on `user`;
//! `moved_to` marks a document a cycle has sealed (`cycle`). Every read also checks `expires_at > now`,
//! because the TTL monitor runs only about once a minute. Every operation is bounded by the
//! configured timeout.
//!
//! Nothing here relies on transactions or a replica set (the test server is a single node,
//! production may be sharded on `_id`): every change that must be atomic is one single-document
//! operation, and a decision made on a read is written with a filter that still holds only
//! if what was read still stands.

mod cycle;
pub mod data;
pub mod keys;
mod session_doc;
mod sessions;
mod users;

pub use sessions::{Changes, NewSession, PatchOutcome};

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

pub struct Store {
    db: Database,
    sessions: Collection<SessionDoc>,
    timeout: Duration,
    max_key_bytes: usize,
}

impl Store {
    /// Prepares a client. Connecting happens lazily, so the service starts while the database
    /// is down and recovers by itself when it comes back.
    pub async fn connect(
        uri: &str,
        database: &str,
        collection: &str,
        timeout: Duration,
        max_key_bytes: usize,
    ) -> Result<Self, StoreError> {
        let mut options = ClientOptions::parse(uri).await?;
        options.app_name = Some("edge-session-companion".into());
        // The driver's 30 s defaults would hold requests far past any proxy's patience.
        options.server_selection_timeout = Some(timeout);
        options.connect_timeout = Some(timeout);
        let client = Client::with_options(options)?;
        let db = client.database(database);
        let sessions = db.collection(collection);
        Ok(Self {
            db,
            sessions,
            timeout,
            max_key_bytes,
        })
    }

    /// Runs a driver operation within the timeout; the driver's own error stays inspectable.
    async fn bounded_raw<T>(
        &self,
        operation: impl IntoFuture<Output = mongodb::error::Result<T>>,
    ) -> Result<mongodb::error::Result<T>, StoreError> {
        tokio::time::timeout(self.timeout, operation)
            .await
            .map_err(|_| {
                StoreError::Unavailable(format!("no answer within {} ms", self.timeout.as_millis()))
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

    /// Creates the TTL index on `expires_at` and the index on `user`, or leaves them as they
    /// are when right. A TTL index with another `expireAfterSeconds` is changed in place with
    /// `collMod`, never dropped. Safe to run from any number of replicas at once: creating an
    /// identical index is a no-op.
    pub async fn ensure_indexes(&self) -> Result<(), StoreError> {
        let listed = self
            .bounded_raw(async {
                self.sessions
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
        let ttl = existing.iter().find(|m| m.keys == doc! {"expires_at": 1});
        match ttl.map(|m| m.options.as_ref().and_then(|o| o.expire_after)) {
            Some(Some(after)) if after == Duration::ZERO => {}
            Some(_) => {
                let name = self.sessions.name().to_string();
                let command = doc! {
                    "collMod": name,
                    "index": {"keyPattern": {"expires_at": 1}, "expireAfterSeconds": 0_i64},
                };
                self.bounded(self.db.run_command(command)).await?;
                tracing::info!("changed the TTL index on expires_at to expireAfterSeconds 0");
            }
            None => {
                let options = IndexOptions::builder()
                    .name(TTL_INDEX.to_string())
                    .expire_after(Duration::ZERO)
                    .build();
                let model = IndexModel::builder()
                    .keys(doc! {"expires_at": 1})
                    .options(options)
                    .build();
                self.bounded(self.sessions.create_index(model)).await?;
            }
        }
        let options = IndexOptions::builder().name(USER_INDEX.to_string()).build();
        let model = IndexModel::builder()
            .keys(doc! {"user": 1})
            .options(options)
            .build();
        self.bounded(self.sessions.create_index(model)).await?;
        Ok(())
    }

    /// The filter for a write that must not touch an expired session (no resurrection) nor
    /// one a cycle sealed.
    fn live(id: &str, now: DateTime) -> Document {
        doc! {"_id": id, "expires_at": {"$gt": now}, "moved_to": {"$exists": false}}
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

fn after(now: DateTime, seconds_later: u64) -> DateTime {
    DateTime::from_millis(
        now.timestamp_millis()
            .saturating_add(seconds(seconds_later).saturating_mul(1000)),
    )
}

fn is_duplicate_key(err: &mongodb::error::Error) -> bool {
    matches!(&*err.kind, ErrorKind::Write(WriteFailure::WriteError(e)) if e.code == DUPLICATE_KEY)
}

fn command_code(err: &mongodb::error::Error) -> Option<i32> {
    match &*err.kind {
        ErrorKind::Command(e) => Some(e.code),
        _ => None,
    }
}
