use crate::helpers::*;
use companion::store::{Settings, Store};
use futures::TryStreamExt;
use mongodb::IndexModel;
use mongodb::bson::{Document, doc};
use mongodb::options::IndexOptions;
use std::time::Duration;

async fn store(database: &str) -> Store {
    let settings = Settings {
        timeout: Duration::from_secs(5),
        ..Settings::default()
    };
    Store::connect(&mongodb_uri(), database, settings)
        .await
        .unwrap()
}

async fn indexes(database: &str) -> Vec<IndexModel> {
    indexes_of(database, "sessions").await
}

async fn indexes_of(database: &str, collection: &str) -> Vec<IndexModel> {
    let client = mongodb::Client::with_uri_str(mongodb_uri()).await.unwrap();
    let coll = client.database(database).collection::<Document>(collection);
    coll.list_indexes()
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

fn ttl_of(models: &[IndexModel]) -> Option<(Option<String>, Option<Duration>)> {
    models
        .iter()
        .find(|m| m.keys == doc! {"expires_at": 1})
        .map(|m| {
            (
                m.options.as_ref().and_then(|o| o.name.clone()),
                m.options.as_ref().and_then(|o| o.expire_after),
            )
        })
}

#[tokio::test]
async fn ensuring_indexes_twice_is_harmless() {
    let database = unique_database();
    let s = store(&database).await;
    s.ensure_indexes().await.unwrap();
    s.ensure_indexes().await.unwrap();
    let models = indexes(&database).await;
    assert_eq!(
        ttl_of(&models),
        Some((Some("expires_at_ttl".into()), Some(Duration::ZERO)))
    );
    assert!(models.iter().any(|m| m.keys == doc! {"user": 1}));
    assert_eq!(models.len(), 3, "_id, expires_at and user: {models:?}");
    let feed = indexes_of(&database, "revocations").await;
    let ttl = feed.iter().find(|m| m.keys == doc! {"expire_at": 1});
    assert_eq!(
        ttl.and_then(|m| m.options.as_ref())
            .and_then(|o| o.expire_after),
        Some(Duration::ZERO),
        "{feed:?}"
    );
    assert_eq!(feed.len(), 2, "_id and expire_at: {feed:?}");
}

#[tokio::test]
async fn a_ttl_index_with_another_expiry_is_changed_in_place() {
    let database = unique_database();
    let client = mongodb::Client::with_uri_str(mongodb_uri()).await.unwrap();
    let coll = client
        .database(&database)
        .collection::<Document>("sessions");
    let old = IndexModel::builder()
        .keys(doc! {"expires_at": 1})
        .options(
            IndexOptions::builder()
                .name("legacy_ttl".to_string())
                .expire_after(Duration::from_secs(3600))
                .build(),
        )
        .build();
    coll.create_index(old).await.unwrap();
    coll.insert_one(doc! {"_id": "keep-me", "expires_at": mongodb::bson::DateTime::now()})
        .await
        .unwrap();

    store(&database).await.ensure_indexes().await.unwrap();
    let models = indexes(&database).await;
    assert_eq!(
        ttl_of(&models),
        Some((Some("legacy_ttl".into()), Some(Duration::ZERO))),
        "same index, new expiry"
    );
    assert_eq!(
        coll.count_documents(doc! {"_id": "keep-me"}).await.unwrap(),
        1,
        "nothing dropped"
    );
}

#[tokio::test]
async fn replicas_starting_at_once_both_succeed() {
    let database = unique_database();
    let (a, b) = (store(&database).await, store(&database).await);
    let (ra, rb) = tokio::join!(a.ensure_indexes(), b.ensure_indexes());
    ra.unwrap();
    rb.unwrap();
    let models = indexes(&database).await;
    assert_eq!(ttl_of(&models).and_then(|(_, e)| e), Some(Duration::ZERO));
    assert_eq!(models.len(), 3);
}
