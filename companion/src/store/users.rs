//! A user's sessions: the listing and "log out everywhere".

use super::session_doc::SessionDoc;
use super::{Store, StoreError};
use bson::{DateTime, doc};
use futures::TryStreamExt;
use proto::Session;

impl Store {
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
