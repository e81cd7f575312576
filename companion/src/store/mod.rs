//! The only module that talks to MongoDB. One collection of session documents
//! `{_id, data, user, ttl_seconds, browser_session, created_at, updated_at, expires_at}` with a
//! TTL index on `expires_at` (each document expires at its own time) and an index on `user`;
//! `moved_to` marks a document a cycle has sealed. Every read also checks `expires_at > now`,
//! because the TTL monitor runs only about once a minute. Every operation is bounded by the
//! configured timeout.
//!
//! Nothing here relies on transactions or a replica set (the test server is a single node,
//! production may be sharded on `_id`): every change that must be atomic is one single-document
//! operation, and a decision made on a read is written with a filter that still holds only
//! if what was read still stands.
//!
//! # Cycle
//!
//! A cycle moves a session to a new id in three steps:
//!
//! 1. **Seal** the live original with one `findOneAndUpdate` that matches only a live,
//!    unsealed document and sets `moved_to` to the id drawn for the copy. This step decides:
//!    of any number of concurrent cycles exactly one seals, the rest find nothing and answer
//!    404. From here the original is no session: reads, PATCH (its filter asks for an
//!    unsealed document) and the user's list pass it by. A PATCH applied before the seal is in
//!    the sealed document and so in the copy; one after it answers 404. Never 200 and lost.
//! 2. **Insert the copy** (the sealed document's contents, unsealed) under the new id; a
//!    duplicate id draws another. If the insert fails, the original is unsealed (tried three
//!    times), and once it is, a copy that may have landed unseen is deleted: the session is
//!    back under its old id and the caller gets 503.
//! 3. **Delete the sealed original.** If it is already gone, the session was deleted during
//!    the cycle (DELETE, log out everywhere, the TTL monitor): the copy is deleted too and
//!    the cycle answers 404, as if it had come after. If this delete fails, the cycle still
//!    succeeds: the sealed original is no session and the TTL index removes it at its expiry.
//!
//! The steps run in a task of their own, so a caller that gives up (the filter's timeout,
//! the request timeout, a closed connection) does not stop a cycle half-way. A cycle whose
//! caller is gone once the copy is in is undone the same way as a failed insert, since
//! nobody would learn the new id.
//!
//! What remains: if the process dies or exits between the seal and the insert or the unseal
//! (a shutdown waits for open requests, not for a cycle whose caller has left), or the
//! database answers none of the three unseal attempts, the session stays sealed: the API no
//! longer shows it, but it stays in the collection until it expires, and
//! `{$unset: {moved_to: ""}}` on its `_id` restores it (its `moved_to` names the copy, which
//! may also exist). If the caller goes away during step 3, or a cleanup cannot reach the
//! database, a copy lives on under an id nobody was told: unreachable by id, listed and
//! deleted with its user, gone at its expiry.

pub mod data;
pub mod keys;

use bson::{DateTime, Document, doc};
use futures::TryStreamExt;
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{ClientOptions, IndexOptions, ReturnDocument};
use mongodb::{Client, Collection, Database, IndexModel};
use proto::{Session, SessionId, Timestamp, short_hash};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

const TTL_INDEX: &str = "expires_at_ttl";
const USER_INDEX: &str = "user_1";
const DUPLICATE_KEY: i32 = 11000;
const NAMESPACE_NOT_FOUND: i32 = 26;
/// Attempts at unsealing a session whose cycle failed before its copy was in.
const UNSEAL_ATTEMPTS: u32 = 3;
/// Attempts at a touch whose lifetime changed between its read and its write.
const PATCH_ATTEMPTS: u32 = 5;

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

#[derive(Clone, Debug, Serialize, Deserialize)]
struct SessionDoc {
    #[serde(rename = "_id")]
    id: String,
    data: Document,
    user: Option<String>,
    ttl_seconds: i64,
    browser_session: bool,
    created_at: DateTime,
    updated_at: DateTime,
    expires_at: DateTime,
    /// Set when a cycle sealed this document, to the id it drew for the copy: the session
    /// moved (or is moving) there, and this document is no session any more (see the
    /// module's doc).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    moved_to: Option<String>,
}

impl SessionDoc {
    /// Live exactly when the query `Store::live` would match it.
    fn is_live(&self, now: DateTime) -> bool {
        self.expires_at > now && self.moved_to.is_none()
    }

    /// A stored document as the API shows it. Documents this service wrote always convert;
    /// one that does not was written by something else and is reported, not guessed at.
    fn into_session(self) -> Result<Session, StoreError> {
        let corrupt = |what: &str| StoreError::Unavailable(format!("stored session has {what}"));
        Ok(Session {
            id: SessionId::parse(&self.id).map_err(|_| corrupt("a malformed id"))?,
            data: data::document_to_object(&self.data),
            user: self.user,
            ttl_seconds: u64::try_from(self.ttl_seconds)
                .map_err(|_| corrupt("a negative ttl_seconds"))?,
            browser_session: self.browser_session,
            created_at: timestamp(self.created_at)
                .ok_or_else(|| corrupt("created_at out of range"))?,
            updated_at: timestamp(self.updated_at)
                .ok_or_else(|| corrupt("updated_at out of range"))?,
            expires_at: timestamp(self.expires_at)
                .ok_or_else(|| corrupt("expires_at out of range"))?,
        })
    }
}

fn timestamp(t: DateTime) -> Option<Timestamp> {
    Timestamp::from_unix_nanos(i128::from(t.timestamp_millis()) * 1_000_000)
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

/// A session to create.
pub struct NewSession {
    pub data: Map<String, Value>,
    pub user: Option<String>,
    pub ttl_seconds: u64,
    pub browser_session: bool,
}

/// Changes to apply to one session, in one atomic update.
pub struct Changes {
    pub set: Map<String, Value>,
    pub unset: Vec<String>,
    pub user: Option<String>,
    pub ttl_seconds: Option<u64>,
    pub browser_session: Option<bool>,
    pub touch: bool,
}

pub enum PatchOutcome {
    Updated(Session),
    NotFound,
    /// The data would grow to this many bytes, over the limit.
    TooLarge(usize),
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

    /// The session under `id` if it is live at `now`. The query names `_id` alone and the
    /// expiry is checked here, which answers exactly as `live` would: a query on `_id` alone
    /// is the server's fast path (mongod's IDHACK plan; SecantusDB plans `live` as a
    /// collection scan and takes about twice as long), and this read is every GET.
    async fn find_live(&self, id: &str, now: DateTime) -> Result<Option<SessionDoc>, StoreError> {
        let found = self
            .bounded(self.sessions.find_one(doc! {"_id": id}))
            .await?;
        Ok(found.filter(|doc| doc.is_live(now)))
    }

    pub async fn get(&self, id: &SessionId, now: DateTime) -> Result<Option<Session>, StoreError> {
        self.find_live(id.as_str(), now)
            .await?
            .map(SessionDoc::into_session)
            .transpose()
    }

    /// Inserts a session under a fresh id.
    pub async fn create(&self, new: NewSession, now: DateTime) -> Result<Session, StoreError> {
        let mut doc = SessionDoc {
            id: draw_id()?,
            data: data::object_to_document(&new.data, self.max_key_bytes)?,
            user: new.user,
            ttl_seconds: seconds(new.ttl_seconds),
            browser_session: new.browser_session,
            created_at: now,
            updated_at: now,
            expires_at: after(now, new.ttl_seconds),
            moved_to: None,
        };
        self.insert_drawing_on_duplicate(&mut doc).await?;
        doc.into_session()
    }

    /// Inserts `doc` under its id, drawing another on a duplicate (a collision, at 2^-256).
    /// On failure `doc.id` is the last id tried, whose insert may have landed unseen (a
    /// timeout).
    async fn insert_drawing_on_duplicate(&self, doc: &mut SessionDoc) -> Result<(), StoreError> {
        for _ in 0..3 {
            match self.bounded_raw(self.sessions.insert_one(&*doc)).await? {
                Ok(_) => return Ok(()),
                Err(err) if is_duplicate_key(&err) => doc.id = draw_id()?,
                Err(err) => return Err(err.into()),
            }
        }
        Err(StoreError::Unavailable(
            "three id collisions in a row".into(),
        ))
    }

    /// Applies `changes` as one atomic update (`$set`/`$unset` on `data.<key>` paths), so
    /// concurrent writers to different keys never lose each other's change. The size limit
    /// is checked against the session as read just before the update; concurrent writers can
    /// together overshoot it by at most their own payloads.
    pub async fn patch(
        &self,
        id: &SessionId,
        changes: Changes,
        now: DateTime,
        max_data_bytes: usize,
    ) -> Result<PatchOutcome, StoreError> {
        if let Some(key) = changes.unset.iter().find(|k| changes.set.contains_key(*k)) {
            return Err(StoreError::Data(format!(
                "key {key:?} is both set and unset"
            )));
        }
        let mut set = Document::new();
        for (key, value) in &changes.set {
            set.insert(
                format!(
                    "data.{}",
                    keys::escape(key, self.max_key_bytes).map_err(data::DataError::from)?
                ),
                data::to_bson(value, self.max_key_bytes)?,
            );
        }
        let mut unset = Document::new();
        for key in &changes.unset {
            unset.insert(
                format!(
                    "data.{}",
                    keys::escape(key, self.max_key_bytes).map_err(data::DataError::from)?
                ),
                "",
            );
        }
        set.insert("updated_at", now);
        if let Some(user) = &changes.user {
            set.insert("user", user.as_str());
        }
        if let Some(browser) = changes.browser_session {
            set.insert("browser_session", browser);
        }
        if let Some(new_ttl) = changes.ttl_seconds {
            set.insert("ttl_seconds", seconds(new_ttl));
            set.insert("expires_at", after(now, new_ttl));
        }
        // A touch that keeps the lifetime computes the expiry from the lifetime it read, so
        // its write holds only while that lifetime stands; a concurrent change of lifetime
        // makes it read again.
        let touch_as_read = changes.touch && changes.ttl_seconds.is_none();
        for _ in 0..PATCH_ATTEMPTS {
            let Some(current) = self.find_live(id.as_str(), now).await? else {
                return Ok(PatchOutcome::NotFound);
            };
            // The data as it would become: concurrent patches each pass this against what
            // they read, so together they can overshoot the limit by at most their own
            // payloads (each within the limit); the next growing patch is then refused.
            let mut merged = data::document_to_object(&current.data);
            for key in &changes.unset {
                merged.remove(key);
            }
            for (key, value) in &changes.set {
                merged.insert(key.clone(), value.clone());
            }
            let size = data::json_size(&merged);
            if size > max_data_bytes {
                return Ok(PatchOutcome::TooLarge(size));
            }
            let mut filter = Self::live(id.as_str(), now);
            let mut set = set.clone();
            if touch_as_read {
                filter.insert("ttl_seconds", current.ttl_seconds);
                let ttl = u64::try_from(current.ttl_seconds).unwrap_or(0);
                set.insert("expires_at", after(now, ttl));
            }
            let mut update = doc! {"$set": set};
            if !unset.is_empty() {
                update.insert("$unset", unset.clone());
            }
            let updated = self
                .bounded(
                    self.sessions
                        .find_one_and_update(filter, update)
                        .return_document(ReturnDocument::After),
                )
                .await?;
            match updated {
                Some(doc) => return Ok(PatchOutcome::Updated(doc.into_session()?)),
                // Without the lifetime guard the filter is `live` alone: the session is gone.
                None if !touch_as_read => return Ok(PatchOutcome::NotFound),
                // Gone, or its lifetime changed since the read: the next read tells which.
                None => continue,
            }
        }
        Err(StoreError::Unavailable(format!(
            "the session's lifetime changed under {PATCH_ATTEMPTS} touches in a row"
        )))
    }

    /// Idempotent: deleting what is not there is fine.
    pub async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        self.bounded(self.sessions.delete_one(doc! {"_id": id.as_str()}))
            .await
            .map(|_| ())
    }

    /// The same session under a new id; the old id never answers again. `None` when there
    /// is no live session under `id`, or another cycle is moving it. Seal, copy, delete, in a
    /// task of its own that finishes even if the caller gives up: see the module's doc.
    pub async fn cycle(
        self: &Arc<Self>,
        id: &SessionId,
        now: DateTime,
    ) -> Result<Option<Session>, StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let store = Arc::clone(self);
        let id = id.clone();
        tokio::spawn(async move {
            let outcome = store.cycle_to_the_end(&id, now, || reply.is_closed()).await;
            let _ = reply.send(outcome);
        });
        answer.await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(
                "the cycle ended without an answer".into(),
            ))
        })
    }

    async fn cycle_to_the_end(
        &self,
        id: &SessionId,
        now: DateTime,
        caller_gone: impl Fn() -> bool,
    ) -> Result<Option<Session>, StoreError> {
        let id = id.as_str();
        let copy_id = draw_id()?;
        let seal = doc! {"$set": {"moved_to": &copy_id}};
        let sealed = self
            .bounded(
                self.sessions
                    .find_one_and_update(Self::live(id, now), seal)
                    .return_document(ReturnDocument::After),
            )
            .await;
        let mut copy = match sealed {
            Ok(Some(doc)) => doc,
            Ok(None) => return Ok(None),
            Err(err) => {
                // The seal may have landed unseen (a timeout): take it back.
                self.unseal(id, &copy_id).await;
                return Err(err);
            }
        };
        copy.id = copy_id.clone();
        copy.moved_to = None;
        copy.updated_at = now;
        if let Err(err) = self.insert_drawing_on_duplicate(&mut copy).await {
            if self.unseal(id, &copy_id).await {
                self.forget_copy(&copy.id).await;
            }
            return Err(err);
        }
        if caller_gone() {
            if self.unseal(id, &copy_id).await {
                self.forget_copy(&copy.id).await;
            }
            return Err(StoreError::Unavailable(
                "the caller left before the cycle ended: undone".into(),
            ));
        }
        let original = doc! {"_id": id, "moved_to": &copy_id};
        match self.bounded(self.sessions.delete_one(original)).await {
            Ok(deleted) if deleted.deleted_count == 1 => copy.into_session().map(Some),
            Ok(_) => {
                // Deleted during the cycle: the session ended, and its copy with it.
                self.forget_copy(&copy.id).await;
                Ok(None)
            }
            Err(err) => {
                tracing::warn!(error = %err, session = %short_hash(id.as_bytes()), "a cycled session's sealed original stays until its expiry");
                copy.into_session().map(Some)
            }
        }
    }

    /// Makes the document this cycle sealed a session again. `false` when the database did
    /// not answer any attempt: the session stays sealed, and the copy is all that is left.
    async fn unseal(&self, id: &str, copy_id: &str) -> bool {
        let filter = doc! {"_id": id, "moved_to": copy_id};
        let update = doc! {"$unset": {"moved_to": ""}};
        for attempt in 1..=UNSEAL_ATTEMPTS {
            match self
                .bounded(self.sessions.update_one(filter.clone(), update.clone()))
                .await
            {
                Ok(_) => return true,
                Err(err) if attempt == UNSEAL_ATTEMPTS => {
                    tracing::error!(error = %err, session = %short_hash(id.as_bytes()), "a failed cycle left its session sealed: unset moved_to on its _id to restore it");
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await,
            }
        }
        false
    }

    /// Deletes a copy that nobody will learn the id of, as far as the database answers.
    async fn forget_copy(&self, copy_id: &str) {
        if let Err(err) = self
            .bounded(self.sessions.delete_one(doc! {"_id": copy_id}))
            .await
        {
            tracing::warn!(error = %err, session = %short_hash(copy_id.as_bytes()), "an unused cycle copy stays until its expiry");
        }
    }

    pub async fn list_user(&self, user: &str, now: DateTime) -> Result<Vec<Session>, StoreError> {
        let filter =
            doc! {"user": user, "expires_at": {"$gt": now}, "moved_to": {"$exists": false}};
        let docs = self
            .bounded(async {
                self.sessions
                    .find(filter)
                    .await?
                    .try_collect::<Vec<_>>()
                    .await
            })
            .await?;
        docs.into_iter().map(SessionDoc::into_session).collect()
    }

    pub async fn delete_user(&self, user: &str) -> Result<u64, StoreError> {
        Ok(self
            .bounded(self.sessions.delete_many(doc! {"user": user}))
            .await?
            .deleted_count)
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

fn is_duplicate_key(err: &mongodb::error::Error) -> bool {
    matches!(&*err.kind, ErrorKind::Write(WriteFailure::WriteError(e)) if e.code == DUPLICATE_KEY)
}

fn command_code(err: &mongodb::error::Error) -> Option<i32> {
    match &*err.kind {
        ErrorKind::Command(e) => Some(e.code),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expiring_at(millis: i64) -> SessionDoc {
        let at = DateTime::from_millis(millis);
        SessionDoc {
            id: "x".into(),
            data: Document::new(),
            user: None,
            ttl_seconds: 60,
            browser_session: false,
            created_at: at,
            updated_at: at,
            expires_at: at,
            moved_to: None,
        }
    }

    #[test]
    fn a_session_is_live_until_the_millisecond_it_expires_as_the_query_says() {
        let doc = expiring_at(1_000);
        assert!(doc.is_live(DateTime::from_millis(999)));
        // `expires_at > now`: at the same millisecond it is already gone.
        assert!(!doc.is_live(DateTime::from_millis(1_000)));
        assert!(!doc.is_live(DateTime::from_millis(1_001)));
    }
}
