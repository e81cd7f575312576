//! One session: read, create, change, delete.

use super::session_doc::SessionDoc;
use super::{Store, StoreError, after, data, draw_id, is_duplicate_key, keys, seconds};
use bson::{DateTime, Document, doc};
use mongodb::options::ReturnDocument;
use proto::{Session, SessionId};
use serde_json::{Map, Value};

/// Attempts at a touch whose lifetime changed between its read and its write.
const PATCH_ATTEMPTS: u32 = 5;

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
    Updated(Box<Session>),
    NotFound,
    /// The data would grow to this many bytes, over the limit.
    TooLarge(usize),
}

impl Store {
    /// The session under `id` if it is live at `now`. The query names `_id` alone and the
    /// expiry is checked here, which answers exactly as `live` would: a query on `_id` alone
    /// is the server's fast path (mongod's IDHACK plan; SecantusDB plans `live` as a
    /// collection scan and takes about twice as long), and this read is every GET.
    pub(super) async fn find_live(
        &self,
        id: &str,
        now: DateTime,
    ) -> Result<Option<SessionDoc>, StoreError> {
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
    pub(super) async fn insert_drawing_on_duplicate(
        &self,
        doc: &mut SessionDoc,
    ) -> Result<(), StoreError> {
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
                Some(doc) => return Ok(PatchOutcome::Updated(Box::new(doc.into_session()?))),
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
}
