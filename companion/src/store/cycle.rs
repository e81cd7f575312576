//! Cycling a session: the same session under a new id, the old id never answering again.
//!
//! A cycle moves a session to a new id in four steps:
//!
//! 1. **Seal** the live original with one `findOneAndUpdate` that matches only a live,
//!    unsealed document and sets `moved_to` to the id drawn for the copy. This step decides:
//!    of any number of concurrent cycles exactly one seals, the rest find nothing and answer
//!    404. From here the original is no session: reads, PATCH (its filter asks for an
//!    unsealed document) and the user's list pass it by. A PATCH applied before the seal is in
//!    the sealed document and so in the copy; one after it answers 404. Never 200 and lost.
//! 2. **Insert the copy** (the sealed document's contents, unsealed, with `created_at` kept,
//!    `last_seen_at` now, and the client's user agent and address when the cycle gave them)
//!    under the new id; a duplicate id draws another. If the insert fails, the original is
//!    unsealed (tried three times), and once it is, a copy that may have landed unseen is
//!    deleted: the session is back under its old id and the caller gets 503.
//! 3. **Record the old id's revocation** in the feed, by handle. It comes after the seal, so
//!    a proxy that reads it and looks the old id up again finds nothing. If it cannot be
//!    recorded, the cycle is undone as in step 2 (503): a proxy caching the old id would
//!    otherwise go on serving it, which is what a cycle at login is there to prevent.
//! 4. **Delete the sealed original.** If it is already gone, the session was deleted during
//!    the cycle (DELETE, log out everywhere, the TTL monitor, the per-user limit): the copy
//!    is deleted too and the cycle answers 404, as if it had come after. If this delete
//!    fails, the cycle still succeeds: the sealed original is no session and the TTL index
//!    removes it at its expiry.
//!
//! The steps run in a task of their own, so a caller that gives up (the filter's timeout,
//! the request timeout, a closed connection) does not stop a cycle half-way. A cycle whose
//! caller is gone once the copy is in is undone the same way as a failed insert, since
//! nobody would learn the new id (its feed entry, if written, then names a live session: a
//! proxy drops its copy and reads it again, no harm).
//!
//! What remains: if the process dies or exits between the seal and the insert or the unseal
//! (a shutdown waits for open requests, not for a cycle whose caller has left), or the
//! database answers none of the three unseal attempts, the session stays sealed: the API no
//! longer shows it, but it stays in the collection until it expires, and
//! `{$unset: {moved_to: ""}}` on its `_id` restores it (its `moved_to` names the copy, which
//! may also exist). If the caller goes away during step 4, or a cleanup cannot reach the
//! database, a copy lives on under an id nobody was told: unreachable by id, listed and
//! deleted with its user, gone at its expiry.

use super::sessions::Origin;
use super::{Store, StoreError, draw_id};
use bson::{DateTime, doc};
use mongodb::options::ReturnDocument;
use proto::{RevocationReason, Revoked, Session, SessionId, short_hash};
use std::sync::Arc;
use std::time::Duration;

/// Attempts at unsealing a session whose cycle failed before its copy was in.
const UNSEAL_ATTEMPTS: u32 = 3;

impl Store {
    /// The same session under a new id; the old id never answers again. `None` when there
    /// is no live session under `id`, or another cycle is moving it. In a task of its own
    /// that finishes even if the caller gives up: see the module's doc.
    pub async fn cycle(
        self: &Arc<Self>,
        id: &SessionId,
        origin: Origin,
        now: DateTime,
    ) -> Result<Option<Session>, StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let store = Arc::clone(self);
        let id = id.clone();
        tokio::spawn(async move {
            let outcome = store
                .cycle_to_the_end(&id, origin, now, || reply.is_closed())
                .await;
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
        session_id: &SessionId,
        origin: Origin,
        now: DateTime,
        caller_gone: impl Fn() -> bool,
    ) -> Result<Option<Session>, StoreError> {
        let id = session_id.as_str();
        let copy_id = draw_id()?;
        let seal = doc! {"$set": {"moved_to": &copy_id}};
        let sealed = self
            .bounded(
                self.sessions
                    .find_one_and_update(self.live(id, now), seal)
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
        copy.last_seen_at = Some(now);
        if origin.user_agent.is_some() || origin.client_address.is_some() {
            copy.user_agent = origin.user_agent;
            copy.client_address = origin.client_address;
        }
        if let Err(err) = self.insert_drawing_on_duplicate(&mut copy).await {
            if self.unseal(id, &copy_id).await {
                self.forget_copy(&copy.id).await;
            }
            return Err(err);
        }
        let revoked = Revoked::Session {
            handle: session_id.handle(),
        };
        if let Err(err) = self.record(revoked, RevocationReason::Cycled, None).await {
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
            Ok(deleted) if deleted.deleted_count == 1 => self.to_session(copy).map(Some),
            Ok(_) => {
                // Deleted during the cycle: the session ended, and its copy with it.
                self.forget_copy(&copy.id).await;
                Ok(None)
            }
            Err(err) => {
                tracing::warn!(error = %err, session = %short_hash(id.as_bytes()), "a cycled session's sealed original stays until its expiry");
                self.to_session(copy).map(Some)
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
}
