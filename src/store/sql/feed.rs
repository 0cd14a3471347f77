//! The change feed: on PostgreSQL every change made through a [`SqlKeyStore`] is announced with
//! `pg_notify` in its transaction (see `write.rs`), and every store listens, so that a change
//! made at one replica reaches the key caches of all of them.

use super::{SqlKeyStore, SqlStoreError};
use crate::store::Invalidation;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use std::str::FromStr;
use std::time::Duration;
use tokio::sync::oneshot;

/// The first wait before reconnecting a lost feed; it doubles up to [`LAST_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(100);
const LAST_RETRY: Duration = Duration::from_secs(5);

/// `application_name` of the listener's connection (after the pool's own, if it has one).
const APPLICATION_NAME: &str = "usage_plans_changes";

impl SqlKeyStore {
    /// Starts the change feed if it is not running: on PostgreSQL, a task listening (`LISTEN`)
    /// on the channel every change made through a `SqlKeyStore` (on any replica) notifies, which
    /// invalidates the key (or, after a plan change, every key) in this store's
    /// [`Invalidation`](crate::Invalidation). Does nothing on SQLite.
    ///
    /// [`connect`](Self::connect) calls it; call it for a store made with [`new`](Self::new).
    /// Calling it again while the feed runs does nothing. The listener has a connection of its
    /// own (outside the pool), made with the pool's options and the `application_name`
    /// `usage_plans_changes` (`<name>/usage_plans_changes` when the pool's URL sets an
    /// `application_name`). The task ends when the last clone of the store is dropped.
    ///
    /// Errors: [`Database`](super::SqlStoreErrorKind::Database) if the first connection or its
    /// `LISTEN` fails (the feed is then not running; call again to retry). Later losses are
    /// handled by the task: see the type's documentation, "Change feed".
    pub async fn watch_changes(&self) -> Result<(), SqlStoreError> {
        let url = &self.pool.connect_options().database_url;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Ok(());
        }
        let mut stop = self.feed.stop.lock().await;
        if stop.as_ref().is_some_and(|s| !s.is_closed()) {
            return Ok(());
        }
        let mut options =
            PgConnectOptions::from_str(url.as_str()).map_err(|e| SqlStoreError::db("change feed: read the URL", e))?;
        let name = match options.get_application_name() {
            Some(app) => format!("{app}/{APPLICATION_NAME}"),
            None => APPLICATION_NAME.to_owned(),
        };
        options = options.application_name(&name);
        let listener = listen(&options).await.map_err(|e| SqlStoreError::db("change feed: listen", e))?;
        let (tx, rx) = oneshot::channel();
        tokio::spawn(run(listener, options, self.invalidation.clone(), rx));
        *stop = Some(tx);
        Ok(())
    }
}

/// A listener on its own connection, listening on the store's channel.
async fn listen(options: &PgConnectOptions) -> Result<PgListener, sqlx::Error> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .max_lifetime(None)
        .idle_timeout(None)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options.clone())
        .await?;
    let mut listener = PgListener::connect_with(&pool).await?;
    // This loop reconnects (and says so), not sqlx behind its back.
    listener.eager_reconnect(false);
    listener.ignore_pool_close_event(true);
    let channel: String = sqlx::query_scalar(concat!("SELECT ", channel_sql!())).fetch_one(&mut listener).await?;
    listener.listen(&channel).await?;
    Ok(listener)
}

/// Feeds `invalidation` from `listener` until `stop` resolves (its sender, held by the store's
/// clones, is dropped), reconnecting with backoff when the connection is lost.
async fn run(
    mut listener: PgListener,
    options: PgConnectOptions,
    invalidation: Invalidation,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        loop {
            let next = tokio::select! {
                _ = &mut stop => return,
                next = listener.try_recv() => next,
            };
            match next {
                Ok(Some(notification)) => apply(&invalidation, notification.payload()),
                Ok(None) => {
                    tracing::warn!(
                        "change feed lost: changes made elsewhere reach this replica within the key cache TTL \
                         until it reconnects"
                    );
                    break;
                }
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        "change feed lost: changes made elsewhere reach this replica within the key cache TTL \
                         until it reconnects"
                    );
                    break;
                }
            }
        }
        drop(listener);
        let mut wait = FIRST_RETRY;
        listener = loop {
            tokio::select! {
                _ = &mut stop => return,
                () = tokio::time::sleep(wait) => {}
            }
            let attempt = tokio::select! {
                _ = &mut stop => return,
                attempt = listen(&options) => attempt,
            };
            match attempt {
                Ok(listener) => break listener,
                Err(e) => {
                    tracing::debug!(error = %e, retry_in = ?wait, "change feed: reconnecting failed");
                    wait = (wait * 2).min(LAST_RETRY);
                }
            }
        };
        // Notifications sent while the feed was down are lost: every cached key revalidates.
        invalidation.invalidate();
        tracing::info!("change feed reconnected; every cached key revalidates once");
    }
}

/// What one notification says: `key <id>` (one key changed) or anything else (`all`: every key).
fn apply(invalidation: &Invalidation, payload: &str) {
    match payload.strip_prefix("key ") {
        Some(id) => invalidation.invalidate_key(id),
        None => invalidation.invalidate(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_names_one_key_or_means_every_key() {
        let h = Invalidation::new();
        let g = h.generation();
        apply(&h, "key k1");
        assert!(h.outdates(g, "k1") && !h.outdates(g, "k2"));
        let g = h.generation();
        apply(&h, "all");
        assert!(h.outdates(g, "k2"));
        let g = h.generation();
        apply(&h, "something newer");
        assert!(h.outdates(g, "k3"), "an unknown payload invalidates everything");
    }
}
