//! The revocation feed: every deletion, cycle (the old id), per-user-limit ending, user-wide
//! revocation and announced revocation, in one total order across companion replicas, so a
//! proxy that caches sessions can drop what was revoked elsewhere.
//!
//! # Writing
//!
//! An entry's number comes from one counter document (`_id: 0` in the same collection),
//! incremented with `findOneAndUpdate` and `$inc`: one single-document atomic operation, so
//! every replica draws distinct, increasing numbers without a transaction, and the counter
//! stays a plain document on a sharded cluster. The entry is then inserted under that number
//! (`_id: seq`) with `at`, the writer's clock just after the number came, and `expire_at`,
//! which the TTL index removes it at: `at` plus the retention, or the announced `until` when
//! later. An insert that fails is retried with the same number (a duplicate key means an
//! earlier attempt landed) while less than half the grace time has passed since the number
//! was drawn; after that the number is abandoned (a gap) and the caller gets an error.
//!
//! Entries are written after the change they report (the delete, a cycle's seal), so a proxy
//! that reads an entry and looks the session up again finds it gone.
//!
//! # Reading
//!
//! Numbers can become visible out of order (5 drawn before 6, 6 inserted first) or never (a
//! writer died between drawing and inserting). A page holds the entries after the cursor, in
//! number order, and a new cursor that never passes a number that may still appear: the
//! cursor moves along the entries while they are consecutive, and past a gap only when an
//! entry after the gap was numbered more than the grace time ago (the missing number was
//! drawn before that entry's, so its writer has given up). Entries past a young gap are in the
//! page too, and come again in the next page: readers skip the numbers they already applied.
//!
//! The cursor also carries a time no later than the numbering of every entry after it. A
//! cursor whose time is further back than the retention (less twice the grace time) may have
//! missed entries the TTL index has removed, and one whose time or number lies in the
//! future was not given by this feed: both get `Resync` with the current head.
//!
//! A read is one query on `_id` (the collection's own index): `_id >= cursor`, sorted by
//! `_id`, at most `limit + 2` documents. Only when the cursor's own entry is no longer kept is
//! the counter read too (one more read by `_id`).

use super::{Store, StoreError, is_duplicate_key};
use bson::{Bson, DateTime, doc};
use futures::TryStreamExt;
use mongodb::options::ReturnDocument;
use proto::{
    Revocation, RevocationCursor, RevocationPage, RevocationReason, Revoked, SessionHandle,
    Timestamp,
};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// The counter document's `_id`; entries are numbered from 1.
const COUNTER_ID: i64 = 0;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct EntryDoc {
    #[serde(rename = "_id")]
    seq: i64,
    at: DateTime,
    expire_at: DateTime,
    #[serde(flatten)]
    revoked: Revoked,
    reason: RevocationReason,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    until: Option<DateTime>,
}

/// A read of the feed.
#[derive(Debug)]
pub enum FeedRead {
    Page(RevocationPage),
    /// The cursor cannot be continued from: start again at this head.
    Resync(RevocationCursor),
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Unavailable(format!("the revocation feed has {what}"))
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn unix_millis(t: DateTime) -> u64 {
    u64::try_from(t.timestamp_millis()).unwrap_or(0)
}

fn shown(t: DateTime) -> Result<Timestamp, StoreError> {
    Timestamp::from_unix_nanos(i128::from(t.timestamp_millis()) * 1_000_000)
        .ok_or_else(|| corrupt("a time out of range"))
}

/// Tries at drawing a number while the counter document is being created.
const MAX_COUNTER_ATTEMPTS: usize = 8;
impl EntryDoc {
    fn into_revocation(self) -> Result<Revocation, StoreError> {
        Ok(Revocation {
            seq: u64::try_from(self.seq).map_err(|_| corrupt("a negative number"))?,
            at: shown(self.at)?,
            revoked: self.revoked,
            reason: self.reason,
            until: self.until.map(shown).transpose()?,
        })
    }
}

impl Store {
    fn entries(&self) -> mongodb::Collection<EntryDoc> {
        self.revocations.clone_with_type()
    }

    /// The highest number drawn so far; 0 before the first.
    async fn counter(&self) -> Result<u64, StoreError> {
        let found = self
            .bounded(self.revocations.find_one(doc! {"_id": COUNTER_ID}))
            .await?;
        match found.as_ref().and_then(|d| d.get("seq")) {
            None => Ok(0),
            Some(Bson::Int64(n)) => u64::try_from(*n).map_err(|_| corrupt("a negative counter")),
            Some(Bson::Int32(n)) => u64::try_from(*n).map_err(|_| corrupt("a negative counter")),
            Some(_) => Err(corrupt("a counter that is not a number")),
        }
    }

    /// Draws the next number.
    async fn allocate(&self) -> Result<i64, StoreError> {
        // Replicas creating the counter at once: one upsert inserts, the others get a
        // duplicate key and, tried again, increment. A server that does not retry upserts
        // itself (the test server among them) can answer several writers so at once, so a
        // few attempts are allowed, not one.
        for _ in 0..MAX_COUNTER_ATTEMPTS {
            let drawn = self
                .bounded_raw(
                    self.revocations
                        .find_one_and_update(
                            doc! {"_id": COUNTER_ID},
                            doc! {"$inc": {"seq": 1_i64}},
                        )
                        .upsert(true)
                        .return_document(ReturnDocument::After),
                )
                .await?;
            match drawn {
                Ok(Some(counter)) => {
                    return match counter.get("seq") {
                        Some(Bson::Int64(n)) if *n > 0 => Ok(*n),
                        Some(Bson::Int32(n)) if *n > 0 => Ok(i64::from(*n)),
                        _ => Err(corrupt("a counter that is not a positive number")),
                    };
                }
                Ok(None) => return Err(corrupt("no counter after an upsert")),
                Err(err) if is_duplicate_key(&err) => continue,
                Err(err) => return Err(err.into()),
            }
        }
        Err(StoreError::Unavailable(
            "the revocation counter could not be created".into(),
        ))
    }

    /// Writes an entry and returns it. See the module's doc.
    pub(super) async fn record(
        &self,
        revoked: Revoked,
        reason: RevocationReason,
        until: Option<DateTime>,
    ) -> Result<Revocation, StoreError> {
        let seq = self.allocate().await?;
        let drawn = Instant::now();
        let at = super::now();
        let kept = DateTime::from_millis(at.timestamp_millis().saturating_add(
            i64::try_from(millis(self.settings.revocation_retention)).unwrap_or(i64::MAX),
        ));
        let entry = EntryDoc {
            seq,
            at,
            expire_at: until.map_or(kept, |until| until.max(kept)),
            revoked,
            reason,
            until,
        };
        let entries = self.entries();
        let deadline = self.settings.revocation_grace / 2;
        let mut attempt = 0_u32;
        loop {
            attempt += 1;
            let error = match self.bounded_raw(entries.insert_one(&entry)).await {
                // A duplicate key: an earlier attempt landed unseen.
                Ok(Ok(_)) => return entry.into_revocation(),
                Ok(Err(err)) if is_duplicate_key(&err) => return entry.into_revocation(),
                Ok(Err(err)) => StoreError::from(err),
                Err(err) => err,
            };
            let pause = Duration::from_millis(50 * u64::from(attempt));
            if drawn.elapsed() + pause + self.settings.timeout >= deadline {
                tracing::warn!(error = %error, seq, "a revocation's number is abandoned: its entry could not be written in time");
                return Err(error);
            }
            tokio::time::sleep(pause).await;
        }
    }

    /// Records a revocation a proxy announces, kept until `until` at least.
    pub async fn announce(
        &self,
        handle: SessionHandle,
        until: DateTime,
    ) -> Result<Revocation, StoreError> {
        self.record(
            Revoked::Session { handle },
            RevocationReason::Announced,
            Some(until),
        )
        .await
    }

    /// The cursor a new reader starts from: past every number drawn so far. A number drawn
    /// before this and seen later names a change made before this call, which a reader that
    /// starts caching after it cannot hold a stale copy of.
    pub async fn revocation_head(&self, now: DateTime) -> Result<RevocationCursor, StoreError> {
        let grace = millis(self.settings.revocation_grace);
        Ok(RevocationCursor::At {
            seq: self.counter().await?,
            since_millis: unix_millis(now).saturating_sub(grace),
        })
    }

    /// The entries after `cursor`, at most `limit`, and the cursor to read from next; or
    /// `Resync` for a cursor from the future or older than the retention. See the module's
    /// doc.
    pub async fn revocations_after(
        &self,
        cursor: RevocationCursor,
        limit: usize,
        now: DateTime,
    ) -> Result<FeedRead, StoreError> {
        let grace = millis(self.settings.revocation_grace);
        let retention = millis(self.settings.revocation_retention);
        let now_ms = unix_millis(now);
        let (from, since) = match cursor {
            RevocationCursor::Start => (0, None),
            RevocationCursor::At { seq, since_millis } => {
                let future = since_millis > now_ms.saturating_add(grace);
                let stale =
                    now_ms.saturating_sub(since_millis) > retention.saturating_sub(2 * grace);
                if future || stale {
                    return Ok(FeedRead::Resync(self.revocation_head(now).await?));
                }
                (seq, Some(since_millis))
            }
        };
        let first = i64::try_from(from.max(1)).unwrap_or(i64::MAX);
        let fetch = i64::try_from(limit.saturating_add(2)).unwrap_or(i64::MAX);
        let mut found: Vec<EntryDoc> = self
            .bounded(async {
                self.entries()
                    .find(doc! {"_id": {"$gte": first}})
                    .sort(doc! {"_id": 1})
                    .limit(fetch)
                    .await?
                    .try_collect()
                    .await
            })
            .await?;
        // The cursor's own entry, while kept, shows the cursor is not from the future;
        // without it the counter tells.
        if found.first().is_some_and(|e| e.seq.unsigned_abs() == from) {
            found.remove(0);
        } else if from > 0 && from > self.counter().await? {
            return Ok(FeedRead::Resync(self.revocation_head(now).await?));
        }
        let more_kept = found.len() > limit;
        found.truncate(limit);
        let mut frontier = from;
        let mut frontier_at = None;
        let mut walked = 0;
        for entry in &found {
            let seq = entry.seq.unsigned_abs();
            let at = unix_millis(entry.at);
            let consecutive = seq == frontier + 1;
            if !consecutive && now_ms.saturating_sub(at) <= grace {
                // A number before this one may still appear.
                break;
            }
            frontier = seq;
            frontier_at = Some(at);
            walked += 1;
        }
        let walked_all = walked == found.len();
        let mut since_millis = since.unwrap_or(0).max(frontier_at.unwrap_or(0));
        if (walked_all && !more_kept) || (since.is_none() && frontier_at.is_none()) {
            // Nothing kept lies past the cursor: whatever comes next is numbered from now on,
            // or within the grace time before.
            since_millis = since_millis.max(now_ms.saturating_sub(grace));
        }
        let entries = found
            .into_iter()
            .map(EntryDoc::into_revocation)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(FeedRead::Page(RevocationPage {
            entries,
            cursor: RevocationCursor::At {
                seq: frontier,
                since_millis: since_millis.min(now_ms),
            },
            more: more_kept && walked_all,
        }))
    }
}
