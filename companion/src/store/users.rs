//! A user's sessions: the listing, ending one by handle, ending all (or all but one), and
//! the per-user limit.
//!
//! # The per-user limit
//!
//! After a session is bound to a user (a create with a user, a PATCH setting one), the
//! binding request reads the user's sessions and ends all but the `N` most recently seen,
//! ranked by `(last_seen_at, _id)`, newest first. No transaction, no lock: each binding trims
//! by what it read, and every delete names the user (`{_id, user}`), so one rebound
//! meanwhile is left alone. Concurrent logins of one user stay within `N` once they all
//! finish: the binding whose insert was acknowledged last reads after every other binding's
//! write, so it sees every session and trims to the top `N`; and no trim ever ends one of
//! the top `N` of all sessions, since a session in the top `N` of everything is in the top
//! `N` of any part of it. The sessions ended are the least recently seen, by the ranking the
//! trims read (a session seen during the trim may be ranked by its earlier time).
//!
//! A session in the middle of a cycle counts while sealed (it is about to live again under
//! its copy's id), and its copy counts too: a trim at that moment may end one session more
//! than needed, never one less.

use super::session_doc::SessionDoc;
use super::{Store, StoreError, before};
use bson::{DateTime, Document, doc};
use futures::TryStreamExt;
use mongodb::options::FindOptions;
use proto::{RevocationReason, Revoked, SessionHandle, SessionId, SessionSummary};
use serde::Deserialize;
use std::cmp::Reverse;

/// The fields of a session that a user-wide operation decides by.
#[derive(Debug, Deserialize)]
struct SessionRow {
    #[serde(rename = "_id")]
    id: String,
    #[serde(default)]
    moved_to: Option<String>,
    #[serde(default)]
    last_seen_at: Option<DateTime>,
    #[serde(default)]
    updated_at: Option<DateTime>,
}

impl SessionRow {
    fn handle(&self) -> Option<SessionHandle> {
        SessionId::parse(&self.id).ok().map(|id| id.handle())
    }

    fn last_seen(&self) -> DateTime {
        self.last_seen_at
            .or(self.updated_at)
            .unwrap_or(DateTime::MIN)
    }
}

impl Store {
    /// The rows of `user`'s documents that match `filter` as well.
    async fn rows(&self, user: &str, filter: Document) -> Result<Vec<SessionRow>, StoreError> {
        let mut filter = filter;
        filter.insert("user", user);
        let projection = doc! {"_id": 1, "moved_to": 1, "last_seen_at": 1, "updated_at": 1};
        let options = FindOptions::builder().projection(projection).build();
        let rows = self.sessions.clone_with_type::<SessionRow>();
        self.bounded(async {
            rows.find(filter)
                .with_options(options)
                .await?
                .try_collect::<Vec<_>>()
                .await
        })
        .await
    }

    /// `user`'s documents that may still be sessions: unexpired, sealed ones included (a
    /// cycle in progress), within the default absolute lifetime.
    fn unexpired(&self, now: DateTime) -> Document {
        let mut filter = doc! {"expires_at": {"$gt": now}};
        if let Some(default) = self.settings.absolute_ttl_seconds {
            filter.insert("created_at", doc! {"$gt": before(now, default)});
        }
        filter
    }

    /// `user`'s live sessions, most recently seen first.
    pub async fn list_user(
        &self,
        user: &str,
        now: DateTime,
    ) -> Result<Vec<SessionSummary>, StoreError> {
        let mut filter = self.live_filter(now);
        filter.insert("user", user);
        let docs: Vec<SessionDoc> = self
            .bounded(async {
                self.sessions
                    .find(filter)
                    .await?
                    .try_collect::<Vec<_>>()
                    .await
            })
            .await?;
        let mut listed = docs
            .into_iter()
            .map(|doc| doc.into_summary(self.settings.absolute_ttl_seconds))
            .collect::<Result<Vec<_>, _>>()?;
        listed.sort_by(|a, b| {
            (b.last_seen_at, b.handle.as_str()).cmp(&(a.last_seen_at, a.handle.as_str()))
        });
        Ok(listed)
    }

    /// Ends the session of `user` named by `handle`. `false` when the user has no such
    /// session. The user's documents are read by the `user` index and the handle of each is
    /// computed: handles are not stored, so every document, however old, can be named.
    ///
    /// The feed entry is written after the delete whatever it found, as every delete does:
    /// a retry after a delete that landed and an entry that did not (a 503) answers `false`
    /// and still records it. An entry naming a session that lives on costs a proxy one
    /// lookup, never a wrong answer.
    pub async fn delete_user_session(
        &self,
        user: &str,
        handle: &SessionHandle,
        now: DateTime,
    ) -> Result<bool, StoreError> {
        let rows = self.rows(user, self.unexpired(now)).await?;
        let deleted = match rows.iter().find(|r| r.handle().as_ref() == Some(handle)) {
            Some(row) => {
                self.bounded(
                    self.sessions
                        .delete_one(doc! {"_id": row.id.as_str(), "user": user}),
                )
                .await?
                .deleted_count
                    > 0
            }
            None => false,
        };
        self.record(
            Revoked::Session {
                handle: handle.clone(),
            },
            RevocationReason::Deleted,
            None,
        )
        .await?;
        Ok(deleted)
    }

    /// Ends every session of `user` ("log out everywhere"), or every one but the session
    /// named by `except` ("log out my other devices"; when it names none of the user's
    /// sessions, all are ended). Returns how many documents went. The feed gets one
    /// user-wide entry, recorded even when nothing was deleted, so proxies that never asked
    /// the companion (cookie-store sessions) learn of it too.
    pub async fn delete_user(
        &self,
        user: &str,
        except: Option<&SessionHandle>,
    ) -> Result<u64, StoreError> {
        let mut filter = doc! {"user": user};
        if let Some(except) = except {
            let rows = self.rows(user, Document::new()).await?;
            // A session being cycled is kept under both its ids: its copy is the session
            // that lives on.
            let keep: Vec<&str> = rows
                .iter()
                .filter(|r| r.handle().as_ref() == Some(except))
                .flat_map(|r| std::iter::once(r.id.as_str()).chain(r.moved_to.as_deref()))
                .collect();
            if !keep.is_empty() {
                filter.insert("_id", doc! {"$nin": keep});
            }
        }
        let deleted = self
            .bounded(self.sessions.delete_many(filter))
            .await?
            .deleted_count;
        self.record(
            Revoked::User {
                user: user.to_string(),
                except: except.cloned(),
            },
            RevocationReason::Deleted,
            None,
        )
        .await?;
        Ok(deleted)
    }

    /// Holds `user` to the per-user limit after a binding: ends their least recently seen
    /// sessions past the limit (see the module's doc). Returns how many this call ended.
    pub async fn enforce_session_limit(
        &self,
        user: &str,
        now: DateTime,
    ) -> Result<u64, StoreError> {
        let Some(limit) = self.settings.max_sessions_per_user else {
            return Ok(0);
        };
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let mut rows = self.rows(user, self.unexpired(now)).await?;
        if rows.len() <= limit {
            return Ok(0);
        }
        rows.sort_by_cached_key(|r| Reverse((r.last_seen(), r.id.clone())));
        let mut ended = 0;
        for row in &rows[limit..] {
            let deleted = self
                .bounded(
                    self.sessions
                        .delete_one(doc! {"_id": row.id.as_str(), "user": user}),
                )
                .await?
                .deleted_count;
            if deleted == 0 {
                // Another trim, a logout or a rebinding got there first.
                continue;
            }
            ended += 1;
            let Some(handle) = row.handle() else { continue };
            if let Err(err) = self
                .record(Revoked::Session { handle }, RevocationReason::Capped, None)
                .await
            {
                tracing::warn!(error = %err, "a session ended by the per-user limit is not in the revocation feed");
            }
        }
        Ok(ended)
    }
}
