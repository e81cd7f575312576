//! One session: read, create, change, delete, and the batched "seen" reports.

use super::session_doc::{SessionDoc, absolute_end, absolute_limit, within};
use super::{Store, StoreError, after, data, draw_id, is_duplicate_key, keys, seconds};
use bson::{DateTime, Document, doc};
use mongodb::options::ReturnDocument;
use proto::{RevocationReason, Revoked, Session, SessionId};
use serde_json::{Map, Value};

/// Attempts at a write whose expiry was computed from what it read, when that changed
/// between the read and the write.
const PATCH_ATTEMPTS: u32 = 5;

/// Where a request came from, as the filter saw it (already cut to the size limits).
#[derive(Clone, Debug, Default)]
pub struct Origin {
    pub user_agent: Option<String>,
    pub client_address: Option<String>,
}

/// A session to create.
pub struct NewSession {
    pub data: Map<String, Value>,
    pub user: Option<String>,
    pub ttl_seconds: u64,
    pub browser_session: bool,
    pub absolute_ttl_seconds: Option<u64>,
    pub origin: Origin,
}

/// Changes to apply to one session, in one atomic update.
pub struct Changes {
    pub set: Map<String, Value>,
    pub unset: Vec<String>,
    pub user: Option<String>,
    pub ttl_seconds: Option<u64>,
    pub browser_session: Option<bool>,
    pub touch: bool,
    pub absolute_ttl_seconds: Option<u64>,
}

pub enum PatchOutcome {
    Updated(Box<Session>),
    /// No live session under that id, or the change ended it (an absolute lifetime it is
    /// already past).
    NotFound,
    /// The data would grow to this many bytes, over the limit.
    TooLarge(usize),
}

impl Store {
    /// The session under `id` if it is live at `now`. The query names `_id` alone and
    /// liveness is checked here, which answers exactly as `live` would: a query on `_id` alone
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
        Ok(found.filter(|doc| self.is_live(doc, now)))
    }

    pub(super) fn to_session(&self, doc: SessionDoc) -> Result<Session, StoreError> {
        doc.into_session(self.settings.absolute_ttl_seconds)
    }

    pub async fn get(&self, id: &SessionId, now: DateTime) -> Result<Option<Session>, StoreError> {
        self.find_live(id.as_str(), now)
            .await?
            .map(|doc| self.to_session(doc))
            .transpose()
    }

    /// Inserts a session under a fresh id. Its expiry is the idle lifetime from now, within
    /// the absolute one.
    pub async fn create(&self, new: NewSession, now: DateTime) -> Result<Session, StoreError> {
        let end = absolute_end(
            now,
            absolute_limit(self.settings.absolute_ttl_seconds, new.absolute_ttl_seconds),
        );
        let mut doc = SessionDoc {
            id: draw_id()?,
            data: data::object_to_document(&new.data, self.settings.max_key_bytes)?,
            user: new.user,
            ttl_seconds: seconds(new.ttl_seconds),
            browser_session: new.browser_session,
            created_at: now,
            updated_at: now,
            expires_at: within(after(now, new.ttl_seconds), end),
            last_seen_at: Some(now),
            absolute_ttl_seconds: new.absolute_ttl_seconds.map(seconds),
            user_agent: new.origin.user_agent,
            client_address: new.origin.client_address,
            moved_to: None,
        };
        self.insert_drawing_on_duplicate(&mut doc).await?;
        self.to_session(doc)
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
    /// together overshoot it by at most their own payloads. Every PATCH moves `last_seen_at`
    /// (never back: `$max`).
    ///
    /// A new expiry is computed from the session as read (its lifetimes, and its expiry when
    /// only the absolute lifetime changes), so the write holds only while what it was
    /// computed from stands; a concurrent change makes it read again.
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
        let max_key_bytes = self.settings.max_key_bytes;
        let mut set = Document::new();
        for (key, value) in &changes.set {
            set.insert(
                format!(
                    "data.{}",
                    keys::escape(key, max_key_bytes).map_err(data::DataError::from)?
                ),
                data::to_bson(value, max_key_bytes)?,
            );
        }
        let mut unset = Document::new();
        for key in &changes.unset {
            unset.insert(
                format!(
                    "data.{}",
                    keys::escape(key, max_key_bytes).map_err(data::DataError::from)?
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
        if let Some(ttl) = changes.ttl_seconds {
            set.insert("ttl_seconds", seconds(ttl));
        }
        if let Some(absolute) = changes.absolute_ttl_seconds {
            set.insert("absolute_ttl_seconds", seconds(absolute));
        }
        let renews = changes.touch || changes.ttl_seconds.is_some();
        let sets_expiry = renews || changes.absolute_ttl_seconds.is_some();
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
            let mut filter = self.live(id.as_str(), now);
            let mut set = set.clone();
            let mut guarded = false;
            if sets_expiry {
                let own_absolute = changes.absolute_ttl_seconds.or(current.own_absolute());
                let end = absolute_end(
                    current.created_at,
                    absolute_limit(self.settings.absolute_ttl_seconds, own_absolute),
                );
                let expires_at = if renews {
                    let ttl = changes
                        .ttl_seconds
                        .unwrap_or(u64::try_from(current.ttl_seconds).unwrap_or(0));
                    within(after(now, ttl), end)
                } else {
                    // A new absolute lifetime alone renews nothing; it can only end sooner.
                    within(current.expires_at, end)
                };
                set.insert("expires_at", expires_at);
                if changes.ttl_seconds.is_none() && renews {
                    filter.insert("ttl_seconds", current.ttl_seconds);
                    guarded = true;
                }
                if changes.absolute_ttl_seconds.is_none() {
                    filter.insert("absolute_ttl_seconds", current.absolute_ttl_seconds);
                    guarded = true;
                }
                if !renews {
                    // `expires_at` as read is after `now` (it was live), so equality keeps
                    // the live condition.
                    filter.insert("expires_at", current.expires_at);
                    guarded = true;
                }
            }
            let mut update = doc! {"$set": set, "$max": {"last_seen_at": now}};
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
                // A lifetime it is already past ended it.
                Some(doc) if !self.is_live(&doc, now) => return Ok(PatchOutcome::NotFound),
                Some(doc) => return Ok(PatchOutcome::Updated(Box::new(self.to_session(doc)?))),
                // Without a guard the filter is `live` alone: the session is gone.
                None if !guarded => return Ok(PatchOutcome::NotFound),
                // Gone, or what the expiry was computed from changed: the next read tells.
                None => continue,
            }
        }
        Err(StoreError::Unavailable(format!(
            "the session's lifetime changed under {PATCH_ATTEMPTS} writes in a row"
        )))
    }

    /// Idempotent: deleting what is not there is fine. The revocation is recorded either way,
    /// after the delete, so a retry after a failed record records it.
    pub async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        self.bounded(self.sessions.delete_one(doc! {"_id": id.as_str()}))
            .await?;
        self.record(
            Revoked::Session {
                handle: id.handle(),
            },
            RevocationReason::Deleted,
            None,
        )
        .await
        .map(|_| ())
    }

    /// Moves `last_seen_at` of the live sessions among `ids` to `now` (never back), in one
    /// write; unknown, expired and sealed ids are passed by. Returns how many matched.
    pub async fn seen(&self, ids: &[SessionId], now: DateTime) -> Result<u64, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut filter =
            doc! {"_id": {"$in": ids.iter().map(SessionId::as_str).collect::<Vec<_>>()}};
        filter.extend(self.live_filter(now));
        let update = doc! {"$max": {"last_seen_at": now}};
        Ok(self
            .bounded(self.sessions.update_many(filter, update))
            .await?
            .matched_count)
    }
}
