//! Conformance suites for the ports: one function per port that exercises the contract its
//! doc comments promise. The in-memory adapters run them in unit tests; the host adapters run
//! them inside their real runtime (`GET /api/_diag/conformance`), so every backend is held to
//! the same behaviour.

use serde::Serialize;

use crate::config::MIN_PART_BYTES;
use crate::error::StoreError;
use crate::ports::{
    Blobs, ByteRange, CachedObject, EdgeCache, Kv, Platform, Sql, SqlValue, Statement,
};

/// The outcome of one suite.
#[derive(Debug, Serialize)]
pub struct SuiteReport {
    /// The port tested.
    pub port: &'static str,
    /// Checks that passed before the first failure (all of them on success).
    pub passed: usize,
    /// The first failed check, if any.
    pub failure: Option<String>,
}

/// Counts checks and stops at the first failure.
struct Checker {
    passed: usize,
}

impl Checker {
    fn check(&mut self, ok: bool, what: &str) -> Result<(), String> {
        if ok {
            self.passed += 1;
            Ok(())
        } else {
            Err(what.to_owned())
        }
    }
}

fn fail(what: &str) -> impl Fn(StoreError) -> String + '_ {
    move |e| format!("{what}: {e}")
}

fn report(port: &'static str, passed: usize, result: Result<(), String>) -> SuiteReport {
    SuiteReport {
        port,
        passed,
        failure: result.err(),
    }
}

/// Runs every suite that the platform's ports support, with keys scoped by the current time
/// so that runs do not collide.
pub async fn run_all<P: Platform>(platform: &P) -> Vec<SuiteReport> {
    let scope = format!("conf-{}", platform.clock().now_ms());
    vec![
        kv(platform.kv(), &scope).await,
        blobs(platform.blobs(), &scope).await,
        sql(platform.sql(), &scope).await,
        edge_cache(platform.edge_cache(), &scope, platform.clock().now_ms()).await,
    ]
}

/// The [`EdgeCache`] contract: a missing key misses; a stored object reads back with its
/// bytes, type and expiry, a later put replaces it, delete forgets it (caches that store nothing, see
/// [`EdgeCache::STORES`], only miss).
pub async fn edge_cache<C: EdgeCache>(cache: &C, scope: &str, now_ms: u64) -> SuiteReport {
    let mut c = Checker { passed: 0 };
    let key = format!("http://localhost/_edge/conformance/{scope}");
    let object = |body: &[u8]| CachedObject {
        content_type: "application/octet-stream".into(),
        body: body.to_vec(),
        expires_at_ms: now_ms + 60_000,
    };
    let result = async {
        c.check(
            cache
                .get(&key)
                .await
                .map_err(fail("get missing"))?
                .is_none(),
            "a missing key misses",
        )?;
        let first = object(&[0, 255, 1, 2]);
        cache.put(&key, &first).await.map_err(fail("put"))?;
        let read = cache.get(&key).await.map_err(fail("get"))?;
        if !C::STORES {
            return c.check(read.is_none(), "a cache that stores nothing misses");
        }
        c.check(
            read.as_ref() == Some(&first),
            "a stored object reads back exactly",
        )?;
        let second = object(b"second");
        cache.put(&key, &second).await.map_err(fail("overwrite"))?;
        let read = cache.get(&key).await.map_err(fail("get"))?;
        c.check(read.as_ref() == Some(&second), "a later put replaces")?;
        cache.delete(&key).await.map_err(fail("delete"))?;
        c.check(
            cache.get(&key).await.map_err(fail("get"))?.is_none(),
            "delete forgets",
        )
    }
    .await;
    report("edge_cache", c.passed, result)
}

/// The [`Kv`] contract: missing keys read as `None`, writes read back, overwrite replaces,
/// delete removes and is idempotent, a TTL is accepted.
pub async fn kv<K: Kv>(kv: &K, scope: &str) -> SuiteReport {
    let mut c = Checker { passed: 0 };
    let key = format!("{scope}:kv");
    let result = async {
        c.check(
            kv.get(&key).await.map_err(fail("get missing"))?.is_none(),
            "missing key reads as None",
        )?;
        kv.put(&key, b"one", None).await.map_err(fail("put"))?;
        c.check(
            kv.get(&key).await.map_err(fail("get"))?.as_deref() == Some(b"one".as_slice()),
            "write reads back",
        )?;
        kv.put(&key, &[0, 255, 1], Some(120))
            .await
            .map_err(fail("overwrite"))?;
        c.check(
            kv.get(&key).await.map_err(fail("get"))?.as_deref() == Some([0u8, 255, 1].as_slice()),
            "overwrite replaces, binary safe",
        )?;
        kv.delete(&key).await.map_err(fail("delete"))?;
        c.check(
            kv.get(&key).await.map_err(fail("get"))?.is_none(),
            "delete removes",
        )?;
        kv.delete(&key).await.map_err(fail("second delete"))?;
        c.check(true, "deleting a missing key is not an error")
    }
    .await;
    report("kv", c.passed, result)
}

/// The [`Blobs`] contract: missing objects read as `None`, bytes round-trip exactly with
/// their content type, ranges and suffixes read the right bytes, list is prefix-scoped and
/// sorted, delete removes and is idempotent.
pub async fn blobs<B: Blobs>(blobs: &B, scope: &str) -> SuiteReport {
    let mut c = Checker { passed: 0 };
    let prefix = format!("conformance/{scope}/");
    let a = format!("{prefix}a.bin");
    let b = format!("{prefix}b.bin");
    let data: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    let result = async {
        blob_objects(blobs, &mut c, &a, &b, &data).await?;
        blob_ranges(blobs, &mut c, &a, &data).await?;
        let keys = blobs.list(&prefix).await.map_err(fail("list"))?;
        c.check(
            keys == vec![a.clone(), b.clone()],
            "list is scoped and sorted",
        )?;
        blobs.delete(&a).await.map_err(fail("delete"))?;
        blobs.delete(&b).await.map_err(fail("delete"))?;
        c.check(
            blobs.get(&a, None).await.map_err(fail("get"))?.is_none(),
            "delete removes",
        )?;
        blobs.delete(&a).await.map_err(fail("second delete"))?;
        blob_multipart(blobs, &mut c, &prefix).await
    }
    .await;
    report("blobs", c.passed, result)
}

/// Missing objects, a round trip with the content type, `head`.
async fn blob_objects<B: Blobs>(
    blobs: &B,
    c: &mut Checker,
    a: &str,
    b: &str,
    data: &[u8],
) -> Result<(), String> {
    c.check(
        blobs
            .get(a, None)
            .await
            .map_err(fail("get missing"))?
            .is_none(),
        "missing object reads as None",
    )?;
    c.check(
        blobs.head(a).await.map_err(fail("head missing"))?.is_none(),
        "missing object heads as None",
    )?;
    blobs
        .put(a, data.to_vec(), "video/mp2t")
        .await
        .map_err(fail("put"))?;
    blobs
        .put(b, b"b".to_vec(), "text/plain")
        .await
        .map_err(fail("put"))?;
    let whole = blobs.get(a, None).await.map_err(fail("get"))?;
    c.check(
        whole.as_ref().map(|w| w.bytes == data) == Some(true),
        "bytes round-trip",
    )?;
    let meta = blobs.head(a).await.map_err(fail("head"))?;
    c.check(
        meta.as_ref().map(|m| m.size) == Some(3000),
        "head reports the size",
    )?;
    c.check(
        meta.and_then(|m| m.content_type).as_deref() == Some("video/mp2t"),
        "content type is kept",
    )?;
    Ok(())
}

/// Ranges: a slice, an open range to the end, a suffix.
async fn blob_ranges<B: Blobs>(
    blobs: &B,
    c: &mut Checker,
    a: &str,
    data: &[u8],
) -> Result<(), String> {
    let range = blobs
        .get(
            a,
            Some(ByteRange::From {
                offset: 100,
                length: Some(10),
            }),
        )
        .await
        .map_err(fail("range get"))?;
    c.check(
        range.as_ref().map(|r| r.bytes == data[100..110]) == Some(true),
        "range reads the right bytes",
    )?;
    c.check(
        range.map(|r| r.meta.size) == Some(3000),
        "range reports the whole size",
    )?;
    let open = blobs
        .get(
            a,
            Some(ByteRange::From {
                offset: 2990,
                length: None,
            }),
        )
        .await
        .map_err(fail("open range get"))?;
    c.check(
        open.map(|r| r.bytes == data[2990..]) == Some(true),
        "open range reads to the end",
    )?;
    let suffix = blobs
        .get(a, Some(ByteRange::Suffix(5)))
        .await
        .map_err(fail("suffix get"))?;
    c.check(
        suffix.map(|r| r.bytes == data[2995..]) == Some(true),
        "suffix reads the last bytes",
    )?;
    Ok(())
}

/// A multipart upload: a minimum-size first part and a short last one.
async fn blob_multipart<B: Blobs>(blobs: &B, c: &mut Checker, prefix: &str) -> Result<(), String> {
    let m = format!("{prefix}multipart");
    let first: Vec<u8> = (0..MIN_PART_BYTES).map(|i| (i % 241) as u8).collect();
    let last = b"the end".to_vec();
    let upload = blobs
        .begin_upload(&m, "video/mp4")
        .await
        .map_err(fail("begin upload"))?;
    let part2 = blobs
        .put_part(&m, &upload, 2, last.clone())
        .await
        .map_err(fail("put part 2"))?;
    let part1 = blobs
        .put_part(&m, &upload, 1, first.clone())
        .await
        .map_err(fail("put part 1"))?;
    c.check(
        blobs.head(&m).await.map_err(fail("head"))?.is_none(),
        "an upload is invisible before it completes",
    )?;
    blobs
        .complete_upload(&m, &upload, &[part1, part2])
        .await
        .map_err(fail("complete upload"))?;
    let whole = blobs.get(&m, None).await.map_err(fail("get"))?;
    c.check(
        whole.as_ref().map(|b| b.meta.size) == Some(MIN_PART_BYTES + last.len() as u64),
        "a completed upload has the parts' size",
    )?;
    c.check(
        whole.as_ref().is_some_and(|b| {
            b.bytes[..first.len()] == first[..] && b.bytes[first.len()..] == last[..]
        }),
        "a completed upload is its parts in order",
    )?;
    c.check(
        whole.and_then(|b| b.meta.content_type).as_deref() == Some("video/mp4"),
        "a completed upload keeps its content type",
    )?;
    let stray = blobs.put_part(&m, "no-such-upload", 1, last.clone()).await;
    c.check(stray.is_err(), "a part of an unknown upload is refused")?;
    blobs.delete(&m).await.map_err(fail("delete"))?;
    c.check(
        blobs.list(prefix).await.map_err(fail("list"))?.is_empty(),
        "nothing left",
    )
}

/// The [`Sql`] contract, on the `counters` table of the first migration: parameters bind,
/// `execute` counts changed rows, a duplicate key is `AlreadyExists`, a batch returns each
/// statement's rows and sees its own writes, a failing batch applies nothing.
pub async fn sql<S: Sql>(sql: &S, scope: &str) -> SuiteReport {
    let mut c = Checker { passed: 0 };
    let a = format!("{scope}.a");
    let b = format!("{scope}.b");
    let insert = |name: &str, value: i64| {
        Statement::new(
            "INSERT INTO counters (name, value) VALUES (?1, ?2)",
            vec![SqlValue::from(name), SqlValue::Integer(value)],
        )
    };
    let select = |name: &str| {
        Statement::new(
            "SELECT name, value FROM counters WHERE name = ?1",
            vec![SqlValue::from(name)],
        )
    };
    let result = async {
        let changed = sql.execute(&insert(&a, 41)).await.map_err(fail("insert"))?;
        c.check(changed == 1, "execute counts changed rows")?;
        let rows = sql.query(&select(&a)).await.map_err(fail("select"))?;
        c.check(rows.len() == 1, "query returns the row")?;
        c.check(
            rows[0].get("value").and_then(|v| v.as_i64()) == Some(41),
            "integers round-trip",
        )?;
        c.check(
            rows[0].get("name").and_then(|v| v.as_str()) == Some(a.as_str()),
            "text round-trips",
        )?;
        let duplicate = sql.execute(&insert(&a, 1)).await;
        c.check(
            matches!(duplicate, Err(StoreError::AlreadyExists(_))),
            "duplicate key is AlreadyExists",
        )?;
        let results = sql
            .batch(&[insert(&b, 7), select(&b)])
            .await
            .map_err(fail("batch"))?;
        c.check(
            results.len() == 2 && results[0].is_empty(),
            "a batch returns one (empty) row set per write",
        )?;
        c.check(
            results[1]
                .first()
                .and_then(|r| r.get("value"))
                .and_then(|v| v.as_i64())
                == Some(7),
            "a batch's select sees the batch's writes",
        )?;
        sql.execute(&Statement::new(
            "DELETE FROM counters WHERE name = ?1",
            vec![SqlValue::from(b.as_str())],
        ))
        .await
        .map_err(fail("delete"))?;
        let batch = sql.batch(&[insert(&b, 1), insert(&a, 2)]).await;
        c.check(batch.is_err(), "a batch with a failing statement fails")?;
        let rows = sql.query(&select(&b)).await.map_err(fail("select"))?;
        c.check(rows.is_empty(), "a failed batch applies nothing")?;
        let cleanup = Statement::new(
            "DELETE FROM counters WHERE name IN (?1, ?2)",
            vec![SqlValue::from(a.as_str()), SqlValue::from(b.as_str())],
        );
        let removed = sql.execute(&cleanup).await.map_err(fail("delete"))?;
        c.check(removed == 1, "delete counts removed rows")
    }
    .await;
    report("sql", c.passed, result)
}
