//! What every mode prepares before its traffic: tokens, rooms, and the open-files limit.

use std::ops::Range;
use std::sync::Arc;

use anyhow::{Context, Result};
use futures_util::stream::{self, StreamExt, TryStreamExt};

use crate::auth::{self, Minter, User};
use crate::http;
use crate::scenario::Scenario;
use crate::target::Target;

/// Concurrent HTTP calls while preparing (tokens, rooms).
const PREP_CONCURRENCY: usize = 16;
/// Largest frame accepted from the server (an `INITIAL_STATE` of a full room is big).
pub const MAX_MESSAGE: usize = 256 << 20;

/// Tokens for users `0..count`: minted with the secret, or from the guest endpoint.
pub async fn users(
    scenario: &Scenario,
    targets: &[Arc<Target>],
    count: usize,
) -> Result<Vec<User>> {
    match &scenario.jwt_secret {
        Some(secret) => {
            let minter = Minter::new(secret, auth::unix_now(), scenario.token_ttl.as_secs());
            (0..count).map(|n| minter.user(n)).collect()
        }
        None => {
            prepare(
                targets,
                0..count,
                |t, n| async move { auth::guest(&t, n).await },
            )
            .await
        }
    }
}

/// Creates `count` rooms, spread over the targets.
pub async fn create_rooms(
    targets: &[Arc<Target>],
    token: &str,
    count: usize,
) -> Result<Vec<Arc<str>>> {
    let rooms = prepare(targets, 0..count, |t, _| async move {
        http::create_room(&t, token).await
    })
    .await
    .context("creating rooms")?;
    Ok(rooms.into_iter().map(Arc::from).collect())
}

/// Runs `call(target, i)` for every `i` in `items`, a few at a time, round-robin over the
/// targets: the results in order, or the first error.
async fn prepare<T, F, Fut>(targets: &[Arc<Target>], items: Range<usize>, call: F) -> Result<Vec<T>>
where
    F: Fn(Arc<Target>, usize) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    stream::iter(items)
        .map(|i| call(targets[i % targets.len()].clone(), i))
        .buffered(PREP_CONCURRENCY)
        .try_collect()
        .await
}

/// Sets the soft open-files limit to at least `want` (up to the hard limit). Best effort:
/// without it thousands of sockets fail with EMFILE, which the report then shows.
pub fn raise_fd_limit(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < want {
            let new = libc::rlimit {
                rlim_cur: want.min(lim.rlim_max),
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &new) == 0 {
                return new.rlim_cur;
            }
        }
    }
    lim.rlim_cur
}
